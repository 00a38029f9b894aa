//! `drover server members`: the region's servers as gossip knows them.

use super::{Io, api_command, report};
use crate::api::ServerMembers;
use crate::flags::FlagSpec;
use crate::output::table;

const HELP: &str = "\
Usage: drover server members [options]

  Display a list of the known servers and their status. Only drover servers are
  able to service this command.

Server Members Options:

  -json
    Output the members in JSON format.
";

const FLAGS: &[FlagSpec] = &[FlagSpec::bool("json"), FlagSpec::bool("verbose")];

pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (flags, client) = match api_command(args, FLAGS, HELP, io) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    report(io, |io| {
        let (members, _) = client
            .get::<ServerMembers>("/v1/agent/members", &[], None)
            .map_err(|error| format!("Error querying servers: {error}"))?;
        // The leader's RPC address, `ip:port`; a cluster without one shows no leader.
        let leader = client.get::<String>("/v1/status/leader", &[], None).map(|(l, _)| l);
        let leader = leader.unwrap_or_default();
        if flags.is_set("json") {
            let rows: Vec<serde_json::Value> = members
                .members
                .iter()
                .map(|m| serde_json::json!({ "Name": m.name, "Addr": m.addr, "Port": m.port, "Status": m.status, "Tags": m.tags }))
                .collect();
            return super::print_json(&rows, io);
        }
        let mut rows = vec![crate::output::cells(&[
            "Name",
            "Address",
            "Port",
            "Status",
            "Leader",
            "Raft Version",
            "Build",
            "Datacenter",
            "Region",
        ])];
        rows.extend(members.members.iter().map(|member| {
            let tag = |key: &str| member.tags.get(key).cloned().unwrap_or_default();
            let is_leader = format!("{}:{}", member.addr, tag("port")) == leader;
            vec![
                member.name.clone(),
                member.addr.clone(),
                member.port.to_string(),
                member.status.clone(),
                is_leader.to_string(),
                tag("raft_vsn"),
                tag("build"),
                tag("dc"),
                tag("region"),
            ]
        }));
        let _ = write!(io.out, "{}", table(&rows));
        Ok(0)
    })
}
