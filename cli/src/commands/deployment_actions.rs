//! `drover deployment promote|fail|pause|resume <deployment>`: an operator's actions on a
//! deployment, with Nomad's texts; the ones that create an evaluation monitor it unless
//! `-detach` is given.

use super::{Io, api_command_with_args, report, resolve_prefix};
use crate::api::{Client, encode_component};
use crate::flags::{FlagSpec, Parsed};
use crate::output::display_id;
use serde_json::{Value, json};

/// The `-detach` and `-verbose` options of the actions that create an evaluation.
macro_rules! detach_verbose_help {
    () => {
        "  -detach
    Return immediately instead of entering monitor mode. After deployment
    resume, the evaluation ID will be printed to the screen, which can be used
    to examine the evaluation using the eval-status command.

  -verbose
    Display full information.
"
    };
}

const PROMOTE_HELP: &str = concat!(
    "\
Usage: drover deployment promote [options] <deployment id>

  Promote is used to promote task groups in a deployment. Promotion should occur
  when the deployment has placed canaries for a task group and those canaries
  have been deemed healthy. When a task group is promoted, the rolling upgrade
  of the remaining allocations is unblocked. If the canaries are found to be
  unhealthy, the deployment may either be failed using the \"drover deployment
  fail\" command, the job can be failed forward by submitting a new version or
  failed backwards by reverting to an older version using the \"drover job
  revert\" command.

Promote Options:

  -group
    Group may be specified many times and is used to promote that particular
    group. If no specific groups are specified, all groups are promoted.

",
    detach_verbose_help!()
);

const FAIL_HELP: &str = concat!(
    "\
Usage: drover deployment fail [options] <deployment id>

  Fail is used to mark a deployment as failed. Failing a deployment will
  stop the placement of new allocations as part of rolling deployment and
  if the job is configured to auto revert, the job will attempt to roll back to a
  stable version.

Fail Options:

",
    detach_verbose_help!()
);

const PAUSE_HELP: &str = "\
Usage: drover deployment pause [options] <deployment id>

  Pause is used to pause a deployment. Pausing a deployment will pause the
  placement of new allocations as part of rolling deployment.

Pause Options:

  -verbose
    Display full information.
";

const RESUME_HELP: &str = concat!(
    "\
Usage: drover deployment resume [options] <deployment id>

  Resume is used to unpause a paused deployment. Resuming a deployment will
  resume the placement of new allocations as part of rolling deployment.

Resume Options:

",
    detach_verbose_help!()
);

const FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("detach"), FlagSpec::bool("verbose"), FlagSpec::repeated("group")];

/// One action: its endpoint and body, the verb of its error text, and the line it
/// prints on success (`None`: it prints nothing before the monitor).
struct Action {
    endpoint: &'static str,
    body: Value,
    verb: &'static str,
    done: Option<&'static str>,
}

pub fn promote(args: &[String], io: &mut Io<'_>) -> u8 {
    run(args, io, PROMOTE_HELP, |flags| {
        let groups = flags.all("group");
        let body =
            if groups.is_empty() { json!({ "All": true }) } else { json!({ "Groups": groups }) };
        Action { endpoint: "promote", body, verb: "promoting", done: None }
    })
}

pub fn fail(args: &[String], io: &mut Io<'_>) -> u8 {
    run(args, io, FAIL_HELP, |_| Action {
        endpoint: "fail",
        body: json!({}),
        verb: "failing",
        done: Some("failed"),
    })
}

pub fn pause(args: &[String], io: &mut Io<'_>) -> u8 {
    run(args, io, PAUSE_HELP, |_| Action {
        endpoint: "pause",
        body: json!({ "Pause": true }),
        verb: "pausing",
        done: Some("paused"),
    })
}

pub fn resume(args: &[String], io: &mut Io<'_>) -> u8 {
    run(args, io, RESUME_HELP, |_| Action {
        endpoint: "pause",
        body: json!({ "Pause": false }),
        verb: "resuming",
        done: Some("resumed"),
    })
}

fn run(args: &[String], io: &mut Io<'_>, help: &str, action: impl Fn(&Parsed) -> Action) -> u8 {
    let (flags, client) = match api_command_with_args(args, FLAGS, help, &["<deployment id>"], io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let action = action(&flags);
    report(io, |io| {
        let id = resolve_prefix(&client, "/v1/deployments", &flags.args[0], "deployment")?;
        let eval_id = act(&client, &id, &action)?;
        if let Some(done) = action.done {
            let shown = display_id(&id, flags.is_set("verbose"));
            let _ = writeln!(io.out, "Deployment {shown:?} {done}");
        }
        if eval_id.is_empty() || flags.is_set("detach") {
            return Ok(0);
        }
        if action.done.is_some() {
            let _ = writeln!(io.out);
        }
        Ok(crate::monitor::monitor(&client, &eval_id, flags.is_set("verbose"), io))
    })
}

/// Sends the action; the evaluation it created, if any.
fn act(client: &Client, id: &str, action: &Action) -> Result<String, String> {
    let path = format!("/v1/deployment/{}/{}", action.endpoint, encode_component(id));
    let answer: Value = client
        .write("PUT", &path, &[], Some(&action.body))
        .map_err(|error| format!("Error {} deployment: {error}", action.verb))?;
    Ok(answer["EvalID"].as_str().unwrap_or_default().to_owned())
}
