//! `drover job plan <path>`: a dry run of the scheduler for a job, and the index to submit
//! it with so that nothing changed in between.
//!
//! The job diff (what changed field by field) is printed by the plan renderer once the
//! server computes diffs; until then the output is Nomad's `-diff=false` form: the
//! scheduler's verdict and the `-check-index` hint.

use super::{Io, api_command, load_job_arg};
use crate::api::encode_component;
use crate::flags::FlagSpec;
use drover_core::model::{AllocationMetric, DesiredUpdates, PlanAnnotations};
use serde_json::json;
use std::collections::BTreeMap;

const HELP: &str = concat!(
    "\
Usage: drover job plan [options] <path>
Alias: drover plan

  Plan invokes a dry-run of the scheduler to determine the effects of submitting
  either a new or updated version of a job. The plan will not result in any
  changes to the cluster but gives insight into whether the job could be run
  successfully and how it would affect existing allocations.

  A job modify index is returned with the plan. This value can be used when
  submitting the job using \"drover job run -check-index\", which will check
  that the job was not modified between the plan and run command before
  invoking the scheduler. This ensures the job has not been modified since the
  plan.

  Plan will return one of the following exit codes:
    * 0: No allocations created or destroyed.
    * 1: Allocations created or destroyed.
    * 255: Error determining plan results.

Plan Options:

",
    job_file_options_help!()
);

const FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("json"), FlagSpec::repeated("var"), FlagSpec::repeated("var-file")];

/// Nomad's `job plan` exit codes.
const EXIT_NO_CHANGE: u8 = 0;
const EXIT_CHANGES: u8 = 1;
const EXIT_ERROR: u8 = 255;

/// What `POST /v1/job/:id/plan` answers that the output uses.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PlanAnswer {
    job_modify_index: u64,
    annotations: PlanAnnotations,
    #[serde(rename = "FailedTGAllocs")]
    failed_tg_allocs: BTreeMap<String, AllocationMetric>,
}

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(_) => return EXIT_ERROR,
    };
    let Ok(job) = load_job_arg(&flags, HELP, io) else { return EXIT_ERROR };
    let path = format!("/v1/job/{}/plan", encode_component(&job.id));
    let body = json!({ "Job": job, "Diff": true });
    let answer: PlanAnswer = match client.write("PUT", &path, &[], Some(&body)) {
        Ok(answer) => answer,
        Err(error) => {
            let _ = writeln!(io.err, "Error during plan: {error}");
            return EXIT_ERROR;
        }
    };
    let _ = write!(io.out, "{}", scheduler_text(&answer));
    let _ = write!(io.out, "\n{}", check_index_hint(answer.job_modify_index, args));
    if answer.annotations.desired_tg_updates.values().any(changes_allocations) {
        EXIT_CHANGES
    } else {
        EXIT_NO_CHANGE
    }
}

/// Whether a group's plan creates or destroys allocations.
fn changes_allocations(updates: &DesiredUpdates) -> bool {
    updates.place + updates.stop + updates.migrate + updates.destructive_update + updates.canary > 0
}

fn scheduler_text(answer: &PlanAnswer) -> String {
    let mut text = String::from("Scheduler dry-run:\n");
    if answer.failed_tg_allocs.is_empty() {
        text.push_str("- All tasks successfully allocated.\n");
        return text;
    }
    text.push_str("- WARNING: Failed to place all allocations.\n");
    for (group, metric) in &answer.failed_tg_allocs {
        let count = metric.coalesced_failures + 1;
        let noun = if count == 1 { "allocation" } else { "allocations" };
        text.push_str(&format!("  Task Group {group:?} (failed to place {count} {noun}):\n"));
        for line in crate::monitor::metric_lines(metric) {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

/// `Job Modify Index: N` and the `job run -check-index N …` command to submit exactly
/// what was planned, with the plan's own flags and path.
fn check_index_hint(index: u64, args: &[String]) -> String {
    format!(
        "Job Modify Index: {index}\n\
         To submit the job with version verification run:\n\n\
         drover job run -check-index {index} {}\n\n\
         When running the job with the check-index flag, the job will only be run if the\n\
         job modify index given matches the server-side version. If the index has\n\
         changed, another user has modified the job and the plan's results are\n\
         potentially invalid.\n",
        args.join(" ")
    )
}
