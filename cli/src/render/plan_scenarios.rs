//! `job plan` scenarios: each `tests/plan/<name>.txt` gives the running job, the submitted
//! one, what the dry run found and the flags; the snapshot holds the exit code, the text
//! `job plan` prints and the `Diff` JSON the plan endpoint returns.
//!
//! A scenario is sections, each opened by a `== <name>` line:
//! - `old`, `new`: a jobspec, or `none` (a new job; a removed job). The old job gets
//!   server-set fields (version, indexes, status), which no diff may show.
//! - `plan`: `updates <group> <kind>=<n>…` (kinds as `DesiredUpdates`' fields),
//!   `failed <group> evaluated=<n> exhausted=<n> dimension=<name>:<n>
//!   constraint=<text>:<n> coalesced=<n>`, `index <n>`, `rolling-update <seconds>`.
//! - `flags`: `verbose`, `no-diff`, `not-contextual`, `var <k=v>`, `var-file <path>`.

use super::plan::{PlanOutcome, PlanRequest, plan_exit_code, render_plan};
use drover_core::jobspec::{self, ParseOptions};
use drover_core::model::{
    AllocationMetric, DesiredUpdates, DurationNs, Evaluation, Job, TriggeredBy, job_diff,
};
use drover_core::scheduler::annotate::{annotate, plan_diff};
use std::collections::BTreeMap;

const JOB_FILE: &str = "example.nomad.hcl";

#[derive(Default)]
struct Scenario {
    old: Option<Job>,
    new: Option<Job>,
    desired: BTreeMap<String, DesiredUpdates>,
    failed: BTreeMap<String, AllocationMetric>,
    created_evals: Vec<Evaluation>,
    job_modify_index: u64,
    verbose: bool,
    show_diff: bool,
    contextual: bool,
    vars: Vec<String>,
    var_files: Vec<String>,
}

/// Runs one scenario file and snapshots what `job plan` would print and return.
fn check(name: &str) {
    let path = format!("{}/tests/plan/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let scenario = parse_scenario(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (old, new, desired) = (scenario.old.as_ref(), scenario.new.as_ref(), &scenario.desired);
    // A plan always submits a job and asks for a contextual diff; the other cases go
    // through the parts `plan_diff` is made of.
    let diff = match new {
        Some(new) if scenario.contextual => plan_diff(old, new, desired),
        _ => job_diff(old, new, scenario.contextual).map(|mut diff| {
            annotate(&mut diff, old, new, desired);
            diff
        }),
    }
    .expect("the scenario's jobs share an ID");
    let job = scenario.new.as_ref().or(scenario.old.as_ref()).expect("a job on one side");
    let outcome = PlanOutcome {
        diff: &diff,
        job_type: job.job_type,
        failed_tg_allocs: &scenario.failed,
        created_evals: &scenario.created_evals,
        job_modify_index: scenario.job_modify_index,
        warnings: "",
    };
    let request = PlanRequest {
        show_diff: scenario.show_diff,
        verbose: scenario.verbose,
        path: JOB_FILE,
        vars: &scenario.vars,
        var_files: &scenario.var_files,
    };
    let json = serde_json::to_string_pretty(&diff).expect("a diff serialises");
    let transcript = format!(
        "exit code: {}\n--- output\n{}--- diff JSON\n{json}\n",
        plan_exit_code(Some((&diff, &scenario.desired))),
        render_plan(&outcome, &request)
    );
    insta::assert_snapshot!(name, transcript);
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    let mut scenario = Scenario { show_diff: true, contextual: true, ..Scenario::default() };
    for (section, body) in sections(text)? {
        match section.as_str() {
            "old" => scenario.old = parse_job(&body)?.map(as_stored),
            "new" => scenario.new = parse_job(&body)?,
            "plan" => body.lines().try_for_each(|line| plan_line(&mut scenario, line))?,
            "flags" => body.lines().try_for_each(|line| flag_line(&mut scenario, line))?,
            other => return Err(format!("unknown section {other:?}")),
        }
    }
    Ok(scenario)
}

/// `(name, body)` for every `== name` section; lines before the first are comments.
fn sections(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            sections.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if sections.is_empty() { Err("no sections".into()) } else { Ok(sections) }
}

fn parse_job(body: &str) -> Result<Option<Job>, String> {
    if body.trim() == "none" {
        return Ok(None);
    }
    jobspec::parse(JOB_FILE, body.as_bytes(), &ParseOptions::default())
        .map(Some)
        .map_err(|report| report.to_string())
}

/// The old job as the state store holds it, with the fields only servers set.
fn as_stored(job: Job) -> Job {
    Job {
        status: "running".into(),
        version: 3,
        stable: true,
        submit_time: 1_700_000_000_000_000_000,
        create_index: 10,
        modify_index: 42,
        job_modify_index: 40,
        ..job
    }
}

fn plan_line(scenario: &mut Scenario, line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(()),
        ["updates", group, counts @ ..] => {
            let updates = scenario.desired.entry((*group).to_owned()).or_default();
            counts.iter().try_for_each(|pair| set_update(updates, pair))
        }
        ["failed", group, facts @ ..] => {
            let metric = scenario.failed.entry((*group).to_owned()).or_default();
            facts.iter().try_for_each(|fact| set_metric(metric, fact))
        }
        ["index", index] => {
            scenario.job_modify_index = index.parse().map_err(|_| format!("bad index {index}"))?;
            Ok(())
        }
        ["rolling-update", seconds] => {
            let seconds: i64 = seconds.parse().map_err(|_| format!("bad wait {seconds}"))?;
            scenario.created_evals.push(Evaluation {
                triggered_by: TriggeredBy::RollingUpdate,
                wait: DurationNs::from_secs(seconds),
                ..Evaluation::default()
            });
            Ok(())
        }
        _ => Err(format!("bad plan line {line:?}")),
    }
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("not a count: {text:?}"))
}

fn set_update(updates: &mut DesiredUpdates, pair: &str) -> Result<(), String> {
    let (kind, count) = pair.split_once('=').ok_or(format!("bad update {pair:?}"))?;
    let slot = match kind {
        "ignore" => &mut updates.ignore,
        "place" => &mut updates.place,
        "migrate" => &mut updates.migrate,
        "stop" => &mut updates.stop,
        "in_place_update" => &mut updates.in_place_update,
        "destructive_update" => &mut updates.destructive_update,
        "canary" => &mut updates.canary,
        _ => return Err(format!("unknown update kind {kind:?}")),
    };
    *slot = number(count)?;
    Ok(())
}

fn set_metric(metric: &mut AllocationMetric, fact: &str) -> Result<(), String> {
    let (key, value) = fact.split_once('=').ok_or(format!("bad metric {fact:?}"))?;
    let keyed = |value: &str| -> Result<(String, u64), String> {
        let (name, count) = value.rsplit_once(':').ok_or(format!("bad {key} {value:?}"))?;
        Ok((name.replace('_', " "), number(count)?))
    };
    match key {
        "evaluated" => metric.nodes_evaluated = number(value)?,
        "exhausted" => metric.nodes_exhausted = number(value)?,
        "coalesced" => metric.coalesced_failures = number(value)?,
        "dimension" => metric.dimension_exhausted.extend([keyed(value)?]),
        "constraint" => metric.constraint_filtered.extend([keyed(value)?]),
        _ => return Err(format!("unknown metric {key:?}")),
    }
    Ok(())
}

fn flag_line(scenario: &mut Scenario, line: &str) -> Result<(), String> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [] => {}
        ["verbose"] => scenario.verbose = true,
        ["no-diff"] => scenario.show_diff = false,
        ["not-contextual"] => scenario.contextual = false,
        ["var", value] => scenario.vars.push((*value).to_owned()),
        ["var-file", path] => scenario.var_files.push((*path).to_owned()),
        _ => return Err(format!("bad flag line {line:?}")),
    }
    Ok(())
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
    };
}

scenarios!(
    new_job,
    deleted_job,
    unchanged_job,
    field_edit,
    job_meta_add_remove,
    datacenters_set,
    constraint_added_removed,
    group_count_up,
    task_config_destructive,
    task_meta_change,
    task_kill_timeout_in_place,
    new_task,
    deleted_group,
    env_change,
    resources_change,
    network_ports,
    nested_blocks,
    service_change_in_place,
    not_contextual,
    verbose_new_group,
    placement_failure,
    system_job_failure,
);
