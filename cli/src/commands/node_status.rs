//! `drover node status [node]`: every client node as a table, or one node with its
//! resources and allocations.

use super::{Io, api_command, print_json, report, resolve_prefix};
use crate::api::Client;
use crate::flags::FlagSpec;
use crate::output::{key_values, table};
use drover_core::model::{Allocation, Node};

const HELP: &str = "\
Usage: drover node status [options] <node>

  Display status information about a given node. The list of nodes returned
  includes only nodes which jobs may be scheduled to, and includes status and
  other high-level information.

  If a node ID is passed, information for that specific node will be displayed,
  including resource usage statistics. If no node ID's are passed, then a
  short-hand list of all nodes will be displayed.

Node Status Options:

  -json
    Output the node in its JSON format.

  -verbose
    Display full information: IDs are not shortened.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let verbose = flags.is_set("verbose");
    let json = flags.is_set("json");
    report(io, |io| match flags.args.as_slice() {
        [] => list(&client, json, verbose, io),
        [prefix] => detail(&client, prefix, json, verbose, io),
        _ => Err("This command takes either no arguments or one: <node>\n\
                  For additional help try 'drover node status -help'"
            .to_owned()),
    })
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".to_owned() } else { text.to_owned() }
}

fn list(client: &Client, json: bool, verbose: bool, io: &mut Io<'_>) -> Result<u8, String> {
    let (rows, _) = client
        .get::<Vec<serde_json::Value>>("/v1/nodes", &[], None)
        .map_err(|error| format!("Error querying node status: {error}"))?;
    if json {
        return print_json(&rows, io);
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let mut table_rows = vec![crate::output::cells(&[
        "ID",
        "Node Pool",
        "DC",
        "Name",
        "Class",
        "Drain",
        "Eligibility",
        "Status",
    ])];
    for row in rows {
        // The stub's `Drain` is not a field of the full node.
        let drain = row["Drain"].as_bool().unwrap_or(false);
        let node: Node = drover_core::model::decode_api_json(row)
            .map_err(|error| format!("Error decoding node: {error}"))?;
        table_rows.push(vec![
            crate::output::display_id(&node.id, verbose),
            node.node_pool.clone(),
            node.datacenter.clone(),
            node.name.clone(),
            or_none(&node.node_class),
            drain.to_string(),
            node.scheduling_eligibility.as_str().to_owned(),
            node.status.as_str().to_owned(),
        ]);
    }
    let _ = write!(io.out, "{}", table(&table_rows));
    Ok(0)
}

fn detail(
    client: &Client,
    prefix: &str,
    json: bool,
    verbose: bool,
    io: &mut Io<'_>,
) -> Result<u8, String> {
    let node_id = resolve_prefix(client, "/v1/nodes", prefix, "node")?;
    let (node, _) = client
        .get::<Node>(&format!("/v1/node/{node_id}"), &[], None)
        .map_err(|error| format!("Error querying node info: {error}"))?;
    if json {
        return print_json(&node, io);
    }
    let (allocs, _) = client
        .get::<Vec<Allocation>>(&format!("/v1/node/{node_id}/allocations"), &[], None)
        .map_err(|error| format!("Error querying node allocations: {error}"))?;
    let drivers: Vec<&str> = node
        .drivers
        .iter()
        .filter(|(_, info)| info.detected)
        .map(|(name, _)| name.as_str())
        .collect();
    let fields = [
        ("ID", crate::output::display_id(&node.id, verbose)),
        ("Name", node.name.clone()),
        ("Node Pool", node.node_pool.clone()),
        ("Class", or_none(&node.node_class)),
        ("DC", node.datacenter.clone()),
        ("Drain", node.is_draining().to_string()),
        ("Eligibility", node.scheduling_eligibility.as_str().to_owned()),
        ("Status", node.status.as_str().to_owned()),
        ("Driver Status", drivers.join(",")),
    ];
    let _ = write!(io.out, "{}", key_values(&fields));
    let _ = write!(io.out, "\nAllocated Resources\n{}", allocated_table(&node, &allocs));
    let _ = writeln!(io.out, "\nAllocations");
    let live: Vec<Allocation> = allocs.into_iter().filter(|a| !a.is_terminal()).collect();
    if live.is_empty() {
        let _ = writeln!(io.out, "No allocations placed");
    } else {
        let _ = write!(io.out, "{}", crate::render::allocs::alloc_table(&live, verbose));
    }
    Ok(0)
}

/// What the node's live allocations hold of its schedulable capacity.
fn allocated_table(node: &Node, allocs: &[Allocation]) -> String {
    let mut used = drover_core::model::ComparableResources::default();
    for alloc in allocs.iter().filter(|a| !a.is_terminal()) {
        let total = alloc.allocated_resources.comparable();
        used.cpu_shares += total.cpu_shares;
        used.memory_mb += total.memory_mb;
        used.disk_mb += total.disk_mb;
    }
    let capacity = node.schedulable_capacity();
    let rows = vec![
        crate::output::cells(&["CPU", "Memory", "Disk"]),
        vec![
            format!("{}/{} MHz", used.cpu_shares, capacity.cpu_shares),
            format!("{} MiB/{} MiB", used.memory_mb, capacity.memory_mb),
            format!("{} MiB/{} MiB", used.disk_mb, capacity.disk_mb),
        ],
    ];
    table(&rows)
}
