//! Following an evaluation to its end, then the deployment it placed for, printing what
//! changes as Nomad's `job run` does: `==> ` info lines and 4-space output lines, each
//! starting with the time, IDs cut to 8 characters unless `-verbose`. Used by every command
//! that makes an evaluation (`job run`, `job stop`, `job revert`, deployment actions).

mod deployment;

use crate::api::{ApiError, Blocking, Client};
use crate::commands::Io;
use crate::output::{display_id, now_ns, time_text};
use drover_core::model::{Allocation, AllocationMetric, EvalStatus, Evaluation};
use std::collections::BTreeMap;

/// How long one blocking read of the evaluation waits before allocations are looked at
/// again anyway.
const EVAL_WAIT_MS: u64 = 1_000;

/// Exit codes of a monitored evaluation (Nomad's `job run`): a deployment that did not
/// succeed is an error.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_PLACEMENT_FAILED: u8 = 2;

/// What has been printed about the evaluation so far.
#[derive(Default)]
struct Seen {
    /// IDs are printed whole.
    verbose: bool,
    status: Option<EvalStatus>,
    job: bool,
    deployment: bool,
    /// Allocation ID → its client status when last printed.
    allocs: BTreeMap<String, String>,
}

/// Follows `eval_id` (and the evaluations it chains to) until it finishes, then the
/// deployment the last one placed for, if any; `verbose` prints IDs whole. The exit code is
/// 2 when some allocation could not be placed, 1 when the deployment did not succeed.
pub fn monitor(client: &Client, eval_id: &str, verbose: bool, io: &mut Io<'_>) -> u8 {
    let followed = match follow(client, eval_id, verbose, io) {
        Ok(followed) => followed,
        Err(error) => {
            let _ = writeln!(io.err, "Error reading evaluation: {error}");
            return EXIT_ERROR;
        }
    };
    // A deployment short of allocations that could not be placed makes no progress until
    // capacity appears (Nomad's monitor would wait on it, possibly for ever): say what
    // the evaluation said and leave it.
    if !followed.placed_all {
        return EXIT_PLACEMENT_FAILED;
    }
    if followed.deployment_id.is_empty() {
        return EXIT_OK;
    }
    let shown = display_id(&followed.deployment_id, verbose);
    info(io, &format!("Monitoring deployment {shown:?}"));
    match deployment::follow(client, &followed.deployment_id, verbose, io) {
        Ok(true) => EXIT_OK,
        Ok(false) => EXIT_ERROR,
        Err(error) => {
            let now = time_text(now_ns());
            let _ = writeln!(io.err, "{now}: Error fetching deployment: {error}");
            EXIT_ERROR
        }
    }
}

/// How the evaluation chain ended.
struct Followed {
    /// No evaluation of the chain failed to place an allocation.
    placed_all: bool,
    /// The deployment the last evaluation placed for, if any.
    deployment_id: String,
}

fn info(io: &mut Io<'_>, message: &str) {
    let _ = writeln!(io.out, "==> {}: {message}", time_text(now_ns()));
}

fn output(io: &mut Io<'_>, message: &str) {
    let _ = writeln!(io.out, "    {}: {message}", time_text(now_ns()));
}

fn follow(
    client: &Client,
    first_eval_id: &str,
    verbose: bool,
    io: &mut Io<'_>,
) -> Result<Followed, ApiError> {
    let mut eval_id = first_eval_id.to_owned();
    let mut placed_all = true;
    loop {
        info(io, &format!("Monitoring evaluation {:?}", display_id(&eval_id, verbose)));
        let eval = follow_one(client, &eval_id, verbose, io)?;
        placed_all &= eval.failed_tg_allocs.is_empty();
        if eval.next_eval.is_empty() {
            return Ok(Followed { placed_all, deployment_id: eval.deployment_id });
        }
        eval_id = eval.next_eval;
    }
}

/// Follows one evaluation to a terminal status and prints how it ended.
fn follow_one(
    client: &Client,
    eval_id: &str,
    verbose: bool,
    io: &mut Io<'_>,
) -> Result<Evaluation, ApiError> {
    let mut seen = Seen { verbose, ..Seen::default() };
    let mut index = 0;
    loop {
        let blocking = Blocking { index, wait_ms: EVAL_WAIT_MS };
        let (eval, meta) =
            client.get::<Evaluation>(&format!("/v1/evaluation/{eval_id}"), &[], Some(blocking))?;
        index = meta.last_index;
        let allocs = eval_allocations(client, &eval)?;
        print_changes(&mut seen, &eval, &allocs, io);
        if eval.status.is_terminal() {
            print_end(&eval, verbose, io);
            return Ok(eval);
        }
    }
}

/// The allocations the evaluation placed or changed.
fn eval_allocations(client: &Client, eval: &Evaluation) -> Result<Vec<Allocation>, ApiError> {
    if eval.job_id.is_empty() {
        return Ok(Vec::new());
    }
    let path = format!("/v1/job/{}/allocations", crate::api::encode_component(&eval.job_id));
    let params = [("all", "true".to_owned())];
    let (allocs, _) = client.get::<Vec<Allocation>>(&path, &params, None)?;
    Ok(allocs.into_iter().filter(|a| a.eval_id == eval.id).collect())
}

fn print_changes(seen: &mut Seen, eval: &Evaluation, allocs: &[Allocation], io: &mut Io<'_>) {
    let verbose = seen.verbose;
    let shown = |id: &str| display_id(id, verbose);
    if !seen.job && !eval.job_id.is_empty() {
        seen.job = true;
        output(io, &format!("Evaluation triggered by job {:?}", eval.job_id));
    }
    if !seen.deployment && !eval.deployment_id.is_empty() {
        seen.deployment = true;
        let deployment = shown(&eval.deployment_id);
        output(io, &format!("Evaluation within deployment: {deployment:?}"));
    }
    for alloc in allocs {
        let status = alloc.client_status.as_str().to_owned();
        match seen.allocs.insert(alloc.id.clone(), status.clone()) {
            None => {
                let verb =
                    if alloc.create_index < eval.create_index { "modified" } else { "created" };
                output(
                    io,
                    &format!(
                        "Allocation {:?} {verb}: node {:?}, group {:?}",
                        shown(&alloc.id),
                        shown(&alloc.node_id),
                        alloc.task_group
                    ),
                );
            }
            Some(before) if before != status => {
                let description = if alloc.client_description.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", alloc.client_description)
                };
                output(
                    io,
                    &format!(
                        "Allocation {:?} status changed: {before:?} -> {status:?}{description}",
                        shown(&alloc.id)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    // A change is only reported once a status was seen: the first look is no change.
    if let Some(before) = seen.status
        && before != eval.status
        && eval.status != EvalStatus::Pending
    {
        output(
            io,
            &format!(
                "Evaluation status changed: {:?} -> {:?}",
                before.as_str(),
                eval.status.as_str()
            ),
        );
    }
    seen.status = Some(eval.status);
}

fn print_end(eval: &Evaluation, verbose: bool, io: &mut Io<'_>) {
    let shown = |id: &str| display_id(id, verbose);
    let id = shown(&eval.id);
    let status = eval.status.as_str();
    if eval.failed_tg_allocs.is_empty() {
        info(io, &format!("Evaluation {id:?} finished with status {status:?}"));
        return;
    }
    info(
        io,
        &format!(
            "Evaluation {id:?} finished with status {status:?} but failed to place all allocations:"
        ),
    );
    for (group, metric) in &eval.failed_tg_allocs {
        let count = metric.coalesced_failures + 1;
        let noun = if count == 1 { "allocation" } else { "allocations" };
        output(io, &format!("Task Group {group:?} (failed to place {count} {noun}):"));
        for line in metric_lines(metric) {
            let _ = writeln!(io.out, "  {line}");
        }
    }
    if !eval.blocked_eval.is_empty() {
        let blocked = shown(&eval.blocked_eval);
        output(
            io,
            &format!("Evaluation {blocked:?} waiting for additional capacity to place remainder"),
        );
    }
}

/// Why allocations could not be placed, one `* …` line per reason, as Nomad lists them.
pub fn metric_lines(metric: &AllocationMetric) -> Vec<String> {
    crate::render::metrics::format_alloc_metrics(metric, "").lines().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_failures_name_every_reason() {
        let mut metric =
            AllocationMetric { nodes_evaluated: 2, nodes_exhausted: 1, ..Default::default() };
        metric.constraint_filtered.insert("${attr.kernel.name} = windows".into(), 1);
        metric.dimension_exhausted.insert("memory".into(), 1);
        metric.nodes_available.insert("dc2".into(), 0);
        assert_eq!(
            metric_lines(&metric),
            [
                "* No nodes are available in datacenter \"dc2\"",
                "* Constraint \"${attr.kernel.name} = windows\": 1 nodes excluded by filter",
                "* Resources exhausted on 1 nodes",
                "* Dimension \"memory\" exhausted on 1 nodes",
            ]
        );
        let none = AllocationMetric::default();
        assert_eq!(metric_lines(&none), ["* No nodes were eligible for evaluation"]);
    }
}
