//! `drover job inspect <job>`: the job as the API holds it, `{"Job": …}`; `job history`
//! lists its kept versions.

use super::{Io, api_command_with_args, print_json, report, resolve_prefix};
use crate::api::{Client, encode_component};
use crate::flags::FlagSpec;
use crate::output::{key_values, time_text};
use drover_core::model::Job;

const INSPECT_HELP: &str = "\
Usage: drover job inspect [options] <job>
Alias: drover inspect

  Inspect is used to see the specification of a submitted job, as the JSON the
  API holds, wrapped as {\"Job\": ...} so that \"drover job run -json\" reads it
  back.

Inspect Options:

  -json
    Output the job in its JSON format (the default).

  -version <job version>
    Display the job at the given job version.
";

const INSPECT_FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::value("version")];

const HISTORY_HELP: &str = "\
Usage: drover job history [options] <job>

  History is used to display the known versions of a particular job, newest
  first.

History Options:

  -json
    Output the job versions in a JSON format.
";

const HISTORY_FLAGS: &[FlagSpec] = &[FlagSpec::bool("json")];

/// `GET /v1/job/:id/versions`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JobVersions {
    versions: Vec<Job>,
}

pub fn inspect(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) =
        match api_command_with_args(args, INSPECT_FLAGS, INSPECT_HELP, &["<job>"], io) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
    report(io, |io| {
        let job_id = resolve_prefix(&client, "/v1/jobs", &flags.args[0], "job")?;
        let job = match flags.last("version") {
            None => {
                client
                    .get::<Job>(&format!("/v1/job/{}", encode_component(&job_id)), &[], None)
                    .map_err(|error| format!("Error inspecting job: {error}"))?
                    .0
            }
            Some(text) => {
                let version: u64 =
                    text.parse().map_err(|_| format!("Error parsing version value {text:?}"))?;
                let versions = versions(&client, &job_id)?;
                versions
                    .into_iter()
                    .find(|job| job.version == version)
                    .ok_or_else(|| format!("Job {job_id:?} has no version {version}"))?
            }
        };
        print_json(&drover_core::model::job_to_api_json(&job), io)
    })
}

fn versions(client: &Client, job_id: &str) -> Result<Vec<Job>, String> {
    let path = format!("/v1/job/{}/versions", encode_component(job_id));
    let (answer, _) = client
        .get::<JobVersions>(&path, &[], None)
        .map_err(|error| format!("Error retrieving job versions: {error}"))?;
    Ok(answer.versions)
}

pub fn history(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) =
        match api_command_with_args(args, HISTORY_FLAGS, HISTORY_HELP, &["<job>"], io) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
    report(io, |io| {
        let job_id = resolve_prefix(&client, "/v1/jobs", &flags.args[0], "job")?;
        let mut versions = versions(&client, &job_id)?;
        versions.sort_by_key(|job| std::cmp::Reverse(job.version));
        if flags.is_set("json") {
            return print_json(&versions, io);
        }
        let blocks: Vec<String> = versions
            .iter()
            .map(|job| {
                key_values(&[
                    ("Version", job.version.to_string()),
                    ("Stable", job.stable.to_string()),
                    ("Submit Date", time_text(job.submit_time)),
                ])
            })
            .collect();
        let _ = write!(io.out, "{}", blocks.join("\n"));
        Ok(0)
    })
}
