//! `drover deployment list` and `drover deployment status <deployment>`.

use super::{Io, api_command, api_command_with_args, print_json, report, resolve_prefix};
use crate::flags::FlagSpec;
use crate::output::{cells, display_id, key_values, table, time_text};
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
        let fields = [
            ("ID", display_id(&deployment.id, flags.is_set("verbose"))),
            ("Job ID", deployment.job_id.clone()),
            ("Job Version", deployment.job_version.to_string()),
            ("Status", deployment.status.as_str().to_owned()),
            ("Description", deployment.status_description.clone()),
        ];
        let _ = write!(io.out, "{}", key_values(&fields));
        let _ = write!(io.out, "\nDeployed\n{}", groups_table(&deployment));
        Ok(0)
    })
}

/// One row per task group; the auto-revert and canary columns only when some group uses
/// them, as Nomad shows them.
pub fn groups_table(deployment: &Deployment) -> String {
    let auto_revert = deployment.has_auto_revert();
    let canaries = deployment.task_groups.values().any(|g| g.desired_canaries > 0);
    let mut header = vec!["Task Group"];
    if auto_revert {
        header.push("Auto Revert");
    }
    if canaries {
        header.push("Promoted");
    }
    header.push("Desired");
    if canaries {
        header.push("Canaries");
    }
    header.extend(["Placed", "Healthy", "Unhealthy", "Progress Deadline"]);
    let mut rows = vec![cells(&header)];
    for (name, group) in &deployment.task_groups {
        let mut row = vec![name.clone()];
        if auto_revert {
            row.push(group.auto_revert.to_string());
        }
        if canaries {
            row.push(group.promoted.to_string());
        }
        row.push(group.desired_total.to_string());
        if canaries {
            row.push(group.desired_canaries.to_string());
        }
        let deadline = if group.require_progress_by.is_unset() {
            "N/A".to_owned()
        } else {
            time_text(group.require_progress_by.0)
        };
        row.extend([
            group.placed_allocs.to_string(),
            group.healthy_allocs.to_string(),
            group.unhealthy_allocs.to_string(),
            deadline,
        ]);
        rows.push(row);
    }
    table(&rows)
}
