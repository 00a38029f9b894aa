//! `drover node drain` and `drover node eligibility`: whether a node takes new
//! allocations, and moving its allocations away.

use super::{Io, api_command, report, resolve_prefix};
use crate::api::Client;
use crate::flags::{FlagSpec, Parsed};
use serde_json::{Value, json};

const DRAIN_HELP: &str = "\
Usage: drover node drain [options] <node>

  Toggles node draining on a specified node. It is required that either
  -enable or -disable is specified, but not both. The -self flag is useful to
  drain the local node.

Node Drain Options:

  -disable
    Disable draining for the specified node.

  -enable
    Enable draining for the specified node.

  -deadline <duration>
    Set the deadline by which all allocations must be moved off the node.
    Remaining allocations after the deadline are forced removed from the node.
    Defaults to 1 hour.

  -force
    Force remove allocations off the node immediately.

  -no-deadline
    No deadline allows the allocations to drain off the node without being
    force stopped after a certain deadline.

  -ignore-system
    Ignore system allows the drain to complete without stopping system job
    allocations. By default system jobs are stopped last.

  -keep-ineligible
    Keep ineligible will maintain the node's scheduling ineligibility even if
    the drain is being disabled.

  -self
    Set the drain status of the local node.

  -detach
    Return immediately instead of entering monitor mode.

  -yes
    Automatic yes to prompts.
";

const DRAIN_FLAGS: &[FlagSpec] = &[
    FlagSpec::bool("enable"),
    FlagSpec::bool("disable"),
    FlagSpec::value("deadline"),
    FlagSpec::bool("force"),
    FlagSpec::bool("no-deadline"),
    FlagSpec::bool("ignore-system"),
    FlagSpec::bool("keep-ineligible"),
    FlagSpec::bool("self"),
    FlagSpec::bool("detach"),
    FlagSpec::bool("yes"),
];

const ELIGIBILITY_HELP: &str = "\
Usage: drover node eligibility [options] <node>

  Toggles the nodes scheduling eligibility. When a node is marked as ineligible,
  no new allocations will be placed on it but existing allocations will remain.
  To remove existing allocations, use the node drain command.

  It is required that either -enable or -disable is specified, but not both.
  The -self flag is useful to set the scheduling eligibility of the local node.

Node Eligibility Options:

  -enable
    Enable scheduling eligibility.

  -disable
    Disable scheduling eligibility.

  -self
    Set the eligibility of the local node.
";

const ELIGIBILITY_FLAGS: &[FlagSpec] =
    &[FlagSpec::bool("enable"), FlagSpec::bool("disable"), FlagSpec::bool("self")];

/// Nomad's default drain deadline: one hour, in nanoseconds.
const DRAIN_DEADLINE_DEFAULT_NS: i64 = 3_600 * 1_000_000_000;
/// A deadline below zero forces the drain at once (Nomad's `-force`).
const DRAIN_DEADLINE_FORCE_NS: i64 = -1;

pub fn drain(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, DRAIN_FLAGS, DRAIN_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let enable = enable_or_disable(&flags)?;
        let node_id = target_node(&client, &flags)?;
        let body = if enable {
            let spec = json!({
                "Deadline": deadline_ns(&flags)?,
                "IgnoreSystemJobs": flags.is_set("ignore-system"),
            });
            json!({ "DrainSpec": spec, "MarkEligible": false })
        } else {
            json!({ "DrainSpec": Value::Null, "MarkEligible": !flags.is_set("keep-ineligible") })
        };
        post(&client, &format!("/v1/node/{node_id}/drain"), &body, "updating drain specification")?;
        let verb = if enable { "set" } else { "unset" };
        let _ = writeln!(io.out, "Node {node_id:?} drain strategy {verb}");
        Ok(0)
    })
}

pub fn eligibility(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, ELIGIBILITY_FLAGS, ELIGIBILITY_HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let enable = enable_or_disable(&flags)?;
        let node_id = target_node(&client, &flags)?;
        let eligibility = if enable { "eligible" } else { "ineligible" };
        let body = json!({ "Eligibility": eligibility });
        let path = format!("/v1/node/{node_id}/eligibility");
        post(&client, &path, &body, "updating scheduling eligibility")?;
        let _ = writeln!(
            io.out,
            "Node {node_id:?} scheduling eligibility set: {eligibility} for scheduling"
        );
        Ok(0)
    })
}

/// `-enable` or `-disable`, exactly one of them.
fn enable_or_disable(flags: &Parsed) -> Result<bool, String> {
    match (flags.is_set("enable"), flags.is_set("disable")) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        _ => Err("Either the '-enable' or '-disable' flag must be set".to_owned()),
    }
}

/// The node named by prefix, or with `-self` the agent's own client node.
fn target_node(client: &Client, flags: &Parsed) -> Result<String, String> {
    match (flags.is_set("self"), flags.args.as_slice()) {
        (true, []) => self_node_id(client),
        (false, [prefix]) => resolve_prefix(client, "/v1/nodes", prefix, "node"),
        _ => Err("This command takes either the -self flag or one argument: <node>".to_owned()),
    }
}

fn self_node_id(client: &Client) -> Result<String, String> {
    let (agent, _) = client
        .get::<Value>("/v1/agent/self", &[], None)
        .map_err(|error| format!("Error querying agent info: {error}"))?;
    agent["stats"]["client"]["node_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "Command not valid on non-client node".to_owned())
}

fn deadline_ns(flags: &Parsed) -> Result<i64, String> {
    let chosen =
        [flags.is_set("force"), flags.is_set("no-deadline"), flags.last("deadline").is_some()];
    if chosen.iter().filter(|set| **set).count() > 1 {
        return Err("only one of -deadline, -force and -no-deadline may be given".to_owned());
    }
    if flags.is_set("force") {
        return Ok(DRAIN_DEADLINE_FORCE_NS);
    }
    if flags.is_set("no-deadline") {
        return Ok(0);
    }
    match flags.last("deadline") {
        None => Ok(DRAIN_DEADLINE_DEFAULT_NS),
        Some(text) => {
            let ns = drover_core::jobspec::parse_duration(text)
                .map_err(|error| format!("Failed to parse deadline {text:?}: {error}"))?;
            if ns <= 0 {
                return Err("A positive drain deadline must be given".to_owned());
            }
            Ok(ns)
        }
    }
}

fn post(client: &Client, path: &str, body: &Value, doing: &str) -> Result<(), String> {
    client
        .write::<Value>("PUT", path, &[], Some(body))
        .map(drop)
        .map_err(|error| format!("Error {doing}: {error}"))
}
