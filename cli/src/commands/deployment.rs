//! `drover deployment list` and `drover deployment status <deployment>`.

use super::{Io, api_command, api_command_with_args, print_json, report, resolve_prefix};
use crate::flags::FlagSpec;
use crate::output::{cells, display_id, table};
use drover_core::model::Deployment;

const LIST_HELP: &str = "\
Usage: drover deployment list [options]

  List is used to list the set of deployments tracked by drover.

List Options:

  -json
    Output the deployments in a JSON format.

  -verbose
    Display full information.
";

const STATUS_HELP: &str = "\
Usage: drover deployment status [options] <deployment id>

  Status is used to display the status of a deployment. The status will display
  the number of desired changes as well as the currently applied changes.

Status Options:

  -json
    Output the deployment in its JSON format.

  -verbose
    Display full information.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::bool("verbose")];

pub fn list(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, LIST_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let (mut deployments, _) = client
            .get::<Vec<Deployment>>("/v1/deployments", &[], None)
            .map_err(|error| format!("Error retrieving deployments: {error}"))?;
        // The API lists by ID; the table shows the newest first, as Nomad's does.
        deployments.sort_by_key(|d| std::cmp::Reverse(d.create_index));
        if flags.is_set("json") {
            return print_json(&deployments, io);
        }
        if deployments.is_empty() {
            let _ = writeln!(io.out, "No deployments found");
            return Ok(0);
        }
        let verbose = flags.is_set("verbose");
        let mut rows = vec![cells(&["ID", "Job ID", "Job Version", "Status", "Description"])];
        rows.extend(deployments.iter().map(|d| {
            vec![
                display_id(&d.id, verbose),
                d.job_id.clone(),
                d.job_version.to_string(),
                d.status.as_str().to_owned(),
                d.status_description.clone(),
            ]
        }));
        let _ = write!(io.out, "{}", table(&rows));
        Ok(0)
    })
}

pub fn status(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) =
        match api_command_with_args(args, FLAGS, STATUS_HELP, &["<deployment id>"], io) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
    report(io, |io| {
        let id = resolve_prefix(&client, "/v1/deployments", &flags.args[0], "deployment")?;
        let (deployment, _) = client
            .get::<Deployment>(&format!("/v1/deployment/{id}"), &[], None)
            .map_err(|error| format!("Error retrieving deployment: {error}"))?;
        if flags.is_set("json") {
            return print_json(&deployment, io);
        }
        let text = crate::render::deployment::status_text(&deployment, flags.is_set("verbose"));
        let _ = write!(io.out, "{text}");
        Ok(0)
    })
}
