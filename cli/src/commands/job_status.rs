//! `drover job status [job]`: every job as a table, or one job with its summary and
//! allocations.

use super::{Io, api_command, report, resolve_prefix};
use crate::api::{Client, encode_component};
use crate::flags::FlagSpec;
use crate::output::{cells, key_values, table, time_text};
use drover_core::model::{Allocation, EvalStatus, Evaluation, Job};
use drover_core::state::JobSummary;

const HELP: &str = "\
Usage: drover job status [options] <job>
Alias: drover status <job>

  Display status information about a job. If no job ID is given, a list of all
  known jobs will be displayed.

Status Options:

  -verbose
    Display full information: IDs are not shortened.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let verbose = flags.is_set("verbose");
    report(io, |io| match flags.args.as_slice() {
        [] => list(&client, io),
        [prefix] => detail(&client, prefix, verbose, io),
        _ => Err("This command takes either no arguments or one: <job>\n\
                  For additional help try 'drover job status -help'"
            .to_owned()),
    })
}

fn list(client: &Client, io: &mut Io<'_>) -> Result<u8, String> {
    let (jobs, _) = client
        .get::<Vec<Job>>("/v1/jobs", &[], None)
        .map_err(|error| format!("Error querying jobs: {error}"))?;
    if jobs.is_empty() {
        let _ = writeln!(io.out, "No running jobs");
        return Ok(0);
    }
    let mut rows = vec![cells(&["ID", "Type", "Priority", "Status", "Submit Date"])];
    rows.extend(jobs.iter().map(|job| {
        vec![
            job.id.clone(),
            job.job_type.as_str().to_owned(),
            job.priority.to_string(),
            job.status.clone(),
            time_text(job.submit_time),
        ]
    }));
    let _ = write!(io.out, "{}", table(&rows));
    Ok(0)
}

fn detail(client: &Client, prefix: &str, verbose: bool, io: &mut Io<'_>) -> Result<u8, String> {
    let job_id = resolve_prefix(client, "/v1/jobs", prefix, "job")?;
    let base = format!("/v1/job/{}", encode_component(&job_id));
    let (job, _) =
        client.get::<Job>(&base, &[], None).map_err(|e| format!("Error querying job: {e}"))?;
    let (summary, _) = client
        .get::<JobSummary>(&format!("{base}/summary"), &[], None)
        .map_err(|e| format!("Error querying job summary: {e}"))?;
    let (allocs, _) = client
        .get::<Vec<Allocation>>(&format!("{base}/allocations"), &[], None)
        .map_err(|e| format!("Error querying job allocations: {e}"))?;
    let _ = write!(io.out, "{}", key_values(&job_fields(&job)));
    let _ = write!(io.out, "\nSummary\n{}", summary_table(&summary));
    let (evals, _) = client
        .get::<Vec<Evaluation>>(&format!("{base}/evaluations"), &[], None)
        .map_err(|e| format!("Error querying job evaluations: {e}"))?;
    if let Some(failed) = unresolved_failure(&evals) {
        let _ = write!(io.out, "\nPlacement Failure\n{}", failure_text(failed));
    }
    let _ = writeln!(io.out, "\nAllocations");
    if allocs.is_empty() {
        let _ = writeln!(io.out, "No allocations placed");
    } else {
        let _ = write!(io.out, "{}", crate::render::allocs::alloc_table(&allocs, verbose));
    }
    Ok(0)
}

/// The newest evaluation that failed to place something, while a blocked evaluation still
/// waits to place the rest (once none waits, the failure is history).
fn unresolved_failure(evals: &[Evaluation]) -> Option<&Evaluation> {
    if !evals.iter().any(|e| e.status == EvalStatus::Blocked) {
        return None;
    }
    evals.iter().filter(|e| !e.failed_tg_allocs.is_empty()).max_by_key(|e| e.create_index)
}

/// `Task Group "web":` and its reasons, per group.
fn failure_text(eval: &Evaluation) -> String {
    let groups: Vec<String> = eval
        .failed_tg_allocs
        .iter()
        .map(|(group, metric)| {
            let lines: String = crate::monitor::metric_lines(metric)
                .iter()
                .map(|line| format!("  {line}\n"))
                .collect();
            format!("Task Group {group:?}:\n{lines}")
        })
        .collect();
    groups.join("\n")
}

fn job_fields(job: &Job) -> Vec<(&'static str, String)> {
    vec![
        ("ID", job.id.clone()),
        ("Name", job.name.clone()),
        ("Submit Date", time_text(job.submit_time)),
        ("Type", job.job_type.as_str().to_owned()),
        ("Priority", job.priority.to_string()),
        ("Datacenters", job.datacenters.join(",")),
        ("Namespace", job.namespace.clone()),
        ("Node Pool", job.node_pool.clone()),
        ("Status", job.status.clone()),
        ("Periodic", job.periodic.is_some().to_string()),
        ("Parameterized", job.parameterized_job.is_some().to_string()),
    ]
}

fn summary_table(summary: &JobSummary) -> String {
    let mut rows = vec![cells(&[
        "Task Group",
        "Queued",
        "Starting",
        "Running",
        "Failed",
        "Complete",
        "Lost",
        "Unknown",
    ])];
    rows.extend(summary.summary.iter().map(|(group, counts)| {
        let numbers = [
            counts.queued,
            counts.starting,
            counts.running,
            counts.failed,
            counts.complete,
            counts.lost,
            counts.unknown,
        ];
        std::iter::once(group.clone()).chain(numbers.iter().map(u64::to_string)).collect()
    }));
    table(&rows)
}
