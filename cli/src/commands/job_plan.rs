//! `drover job plan <path>`: a dry run of the scheduler for a job, and the index to submit
//! it with so that nothing changed in between.
//!
//! The output is `render::plan`'s: the annotated job diff the server computed, the
//! scheduler's verdict and the `-check-index` hint.

use super::{Io, api_command, load_job_arg};
use crate::api::encode_component;
use crate::flags::FlagSpec;
use crate::render::plan::{PlanOutcome, PlanRequest, plan_exit_code, render_plan};
use drover_core::model::{AllocationMetric, Evaluation, JobDiff, PlanAnnotations};
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

  -diff
    Determines whether the diff between the remote job and planned job is shown.
    Defaults to true.

  -verbose
    Increase diff verbosity.

",
    job_file_options_help!()
);

const FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("diff"),
    FlagSpec::bool("verbose"),
    FlagSpec::bool("json"),
    FlagSpec::repeated("var"),
    FlagSpec::repeated("var-file"),
];

/// Nomad's `job plan` exit code for an error; the others come from `plan_exit_code`.
const EXIT_ERROR: u8 = 255;

/// What `POST /v1/job/:id/plan` answers that the output uses.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PlanAnswer {
    job_modify_index: u64,
    diff: Option<JobDiff>,
    annotations: PlanAnnotations,
    #[serde(rename = "FailedTGAllocs")]
    failed_tg_allocs: BTreeMap<String, AllocationMetric>,
    created_evals: Vec<Evaluation>,
    warnings: String,
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
    let Some(diff) = answer.diff.as_ref() else {
        let _ = writeln!(io.err, "Error during plan: the server answered without a job diff");
        return EXIT_ERROR;
    };
    let outcome = PlanOutcome {
        diff,
        job_type: job.job_type,
        failed_tg_allocs: &answer.failed_tg_allocs,
        created_evals: &answer.created_evals,
        job_modify_index: answer.job_modify_index,
        warnings: &answer.warnings,
    };
    let request = PlanRequest {
        // `-diff` is on unless given as false, as in Nomad.
        show_diff: flags.last("diff").is_none_or(|value| value == "true"),
        verbose: flags.is_set("verbose"),
        path: flags.args.first().map_or("", String::as_str),
        vars: flags.all("var"),
        var_files: flags.all("var-file"),
    };
    let _ = write!(io.out, "{}", render_plan(&outcome, &request));
    plan_exit_code(Some((diff, &answer.annotations.desired_tg_updates)))
}
