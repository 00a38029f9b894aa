//! Real cluster agents on loopback: servers from HCL configuration files with the
//! cluster's own CA, killed with SIGKILL and restarted on their data directories.

use drover_tests::{ClusterAgent, Scratch, free_port, poll_until, sleeper_hcl, try_http_request};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a region may take to elect a leader, first start or after a kill.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// One server's ports.
struct Ports {
    http: u16,
    rpc: u16,
    serf: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports { http: free_port(), rpc: free_udp_port(), serf: free_udp_port() }
    }
}

/// A UDP port nothing is bound to right now (QUIC and gossip are UDP).
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    socket.local_addr().expect("bound").port()
}

/// The cluster's CA and a server certificate in `dir`, made by `drover tls`.
fn make_tls(scratch: &Scratch) {
    for args in [&["tls", "ca", "create"][..], &["tls", "cert", "create", "-server"][..]] {
        let made = scratch.drover(args);
        assert_eq!(made.code, 0, "{made}");
    }
}

/// An agent's configuration file, as an operator writes it: `blocks` between the common
/// head and the `tls` block of the certificate for `role` (`server` or `client`).
fn agent_hcl(name: &str, data_dir: &Path, blocks: &str, role: &str) -> String {
    regional_agent_hcl(name, "global", data_dir, blocks, role)
}

/// [`agent_hcl`] for an agent of `region`, with that region's certificate.
fn regional_agent_hcl(
    name: &str,
    region: &str,
    data_dir: &Path,
    blocks: &str,
    role: &str,
) -> String {
    format!(
        r#"name      = "{name}"
region    = "{region}"
data_dir  = "{data_dir}"
bind_addr = "127.0.0.1"
{blocks}
tls {{
  ca_file   = "drover-agent-ca.pem"
  cert_file = "{region}-{role}-drover.pem"
  key_file  = "{region}-{role}-drover-key.pem"
}}
"#,
        data_dir = data_dir.display(),
    )
}

/// Loopback addresses of `ports`, as an HCL list.
fn hcl_addrs(ports: &[u16]) -> String {
    let addrs: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    addrs.join(", ")
}

/// A server's configuration file: `expect` servers, joined through the `join` serf ports.
fn server_hcl(name: &str, data_dir: &Path, ports: &Ports, expect: usize, join: &[u16]) -> String {
    encrypted_server_hcl(name, data_dir, ports, expect, join, None)
}

/// [`server_hcl`] with the region's gossip key, if any.
fn encrypted_server_hcl(
    name: &str,
    data_dir: &Path,
    ports: &Ports,
    expect: usize,
    join: &[u16],
    gossip_key: Option<&str>,
) -> String {
    let blocks = server_blocks(ports, expect, join, gossip_key);
    agent_hcl(name, data_dir, &blocks, "server")
}

/// A server's `ports` and `server` blocks: `expect` servers, joined through the `join`
/// serf ports, gossip sealed with `gossip_key` if any.
fn server_blocks(ports: &Ports, expect: usize, join: &[u16], gossip_key: Option<&str>) -> String {
    let encrypt =
        gossip_key.map(|key| format!("\n  encrypt          = \"{key}\"")).unwrap_or_default();
    format!(
        r#"ports {{
  http = {http}
  rpc  = {rpc}
  serf = {serf}
}}
server {{
  enabled          = true
  bootstrap_expect = {expect}{encrypt}
  server_join {{
    retry_join = [{join}]
  }}
}}"#,
        http = ports.http,
        rpc = ports.rpc,
        serf = ports.serf,
        join = hcl_addrs(join),
    )
}

/// A batch job as the API takes it: nothing to place it on, so it only has to be stored.
fn job(id: &str) -> Vec<u8> {
    let job = json!({ "Job": {
        "ID": id, "Name": id, "Type": "batch", "Datacenters": ["dc1"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": { "command": "/bin/true" },
            "Resources": { "CPU": 10, "MemoryMB": 16 },
        }]}],
    }});
    serde_json::to_vec(&job).expect("JSON")
}

/// A small seeded generator (splitmix64), so a failing run can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn await_leader(agent: &ClusterAgent) -> String {
    poll_until(LEADER_TIMEOUT, || agent.leader()).expect("a leader within the timeout")
}

/// The ids of `ids` the agent does not have.
fn missing(agent: &ClusterAgent, ids: &[String]) -> Vec<String> {
    let present = |id: &String| {
        let path = format!("/v1/job/{id}");
        try_http_request(&agent.http_addr, "GET", &path, b"").is_some_and(|r| r.status == 200)
    };
    ids.iter().filter(|id| !present(id)).cloned().collect()
}

#[test]
fn kill_9_while_registering_jobs_loses_no_acknowledged_job() {
    let seed = std::env::var("DROVER_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ 0x5eed);
    println!("seed {seed} (DROVER_E2E_SEED={seed} replays the kill points)");
    let mut rng = seed;
    let scratch = Scratch::new("kill9-registrations");
    make_tls(&scratch);
    let ports = Ports::free();
    let data_dir = scratch.path.join("data");
    let hcl = server_hcl("solo", &data_dir, &ports, 1, &[]);
    std::fs::write(scratch.path.join("server.hcl"), hcl).expect("write the config");
    let args: Vec<String> = ["agent", "-config", "server.hcl"].map(str::to_owned).to_vec();
    let http_addr = format!("127.0.0.1:{}", ports.http);
    let mut agent = ClusterAgent::start(&scratch.path, &http_addr, &args);
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        await_leader(&agent);
        assert_eq!(missing(&agent, &acknowledged), Vec::<String>::new(), "round {round}");
        let addr = agent.http_addr.clone();
        let registering = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0.. {
                let id = format!("job-{round}-{i}");
                match try_http_request(&addr, "PUT", "/v1/jobs", &job(&id)) {
                    Some(answer) if answer.status == 200 => acked.push(id),
                    Some(answer) => panic!("{id}: {} {}", answer.status, answer.text()),
                    None => return acked,
                }
            }
            acked
        });
        let kill_after = Duration::from_millis(100 + next(&mut rng) % 400);
        std::thread::sleep(kill_after);
        agent.kill9();
        let acked = registering.join().expect("the registering thread");
        println!(
            "round {round}: killed after {kill_after:?}, {} registrations acknowledged",
            acked.len()
        );
        assert!(!acked.is_empty(), "round {round} acknowledged nothing before the kill");
        acknowledged.extend(acked);
        agent = ClusterAgent::start(&scratch.path, &http_addr, &args);
    }
    let started = Instant::now();
    await_leader(&agent);
    println!("restarted to leader in {:?}", started.elapsed());
    assert_eq!(missing(&agent, &acknowledged), Vec::<String>::new());
    let listed = agent.http("GET", "/v1/jobs", b"").json();
    let listed = listed.as_array().map_or(0, Vec::len);
    assert!(
        listed >= acknowledged.len(),
        "{listed} jobs listed, {} acknowledged",
        acknowledged.len()
    );
}

/// A client's configuration file: it reports to `servers` (RPC ports on loopback).
fn client_hcl(name: &str, data_dir: &Path, http: u16, servers: &[u16]) -> String {
    let blocks = format!(
        "ports {{\n  http = {http}\n}}\nclient {{\n  enabled = true\n  servers = [{}]\n}}",
        hcl_addrs(servers)
    );
    agent_hcl(name, data_dir, &blocks, "client")
}

/// Kills, by pid, every process whose command line holds `marker` when dropped: the
/// tasks a test started, which outlive a `kill -9` of their agent by design.
struct TaskReaper {
    marker: String,
}

impl TaskReaper {
    fn pids(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&self.marker)
            })
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect()
    }
}

impl Drop for TaskReaper {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn service_job(id: &str, marker: &str) -> Vec<u8> {
    let job = json!({ "Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{ "Name": "g", "Count": 2, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": { "command": "/bin/sh", "args": ["-c", format!("sleep 1000 # {marker}")] },
            "Resources": { "CPU": 100, "MemoryMB": 64 },
        }]}],
    }});
    serde_json::to_vec(&job).expect("JSON")
}

/// How many of the job's allocations the agent says run.
fn running_allocs(agent: &ClusterAgent, job: &str) -> Option<usize> {
    let path = format!("/v1/job/{job}/allocations");
    let answer = try_http_request(&agent.http_addr, "GET", &path, b"")?;
    let allocs: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let running = allocs.as_array()?.iter().filter(|a| a["ClientStatus"] == "running");
    Some(running.count())
}

/// The tasks a client agent runs itself.
fn allocs_running_here(agent: &ClusterAgent) -> Option<u64> {
    let answer = try_http_request(&agent.http_addr, "GET", "/v1/agent/self", b"")?;
    let this: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    this["stats"]["client"]["num_allocations"].as_str()?.parse().ok()
}

/// The servers an agent lists in `agent/members`, by name.
fn member_names(agent: &ClusterAgent) -> Option<Vec<String>> {
    let answer = try_http_request(&agent.http_addr, "GET", "/v1/agent/members", b"")?;
    let members: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let names = members["Members"].as_array()?.iter().map(|m| m["Name"].as_str().map(String::from));
    names.collect()
}

fn raft_last_index(agent: &ClusterAgent) -> Option<u64> {
    let answer = try_http_request(&agent.http_addr, "GET", "/v1/agent/self", b"")?;
    let this: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    this["stats"]["raft"]["last_log_index"].as_str()?.parse().ok()
}

#[test]
fn three_servers_survive_a_kill_9_of_the_leader_and_it_rejoins_and_clients_reattach() {
    let scratch = Scratch::new("three-servers");
    make_tls(&scratch);
    let made = scratch.drover(&["tls", "cert", "create", "-client"]);
    assert_eq!(made.code, 0, "{made}");
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    let serf: Vec<u16> = ports.iter().map(|p| p.serf).collect();
    let rpc: Vec<u16> = ports.iter().map(|p| p.rpc).collect();
    let mut servers: Vec<Option<ClusterAgent>> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let data_dir = scratch.path.join(format!("server{i}"));
        let file = format!("server{i}.hcl");
        std::fs::write(
            scratch.path.join(&file),
            server_hcl(&format!("s{i}"), &data_dir, p, 3, &serf),
        )
        .expect("write the config");
        let args = ["agent".to_owned(), "-config".to_owned(), file];
        let http_addr = format!("127.0.0.1:{}", p.http);
        servers.push(Some(ClusterAgent::start(&scratch.path, &http_addr, &args)));
    }
    let mut clients: Vec<ClusterAgent> = Vec::new();
    for i in 0..2 {
        let http = free_port();
        let data_dir = scratch.path.join(format!("client{i}"));
        let file = format!("client{i}.hcl");
        std::fs::write(
            scratch.path.join(&file),
            client_hcl(&format!("c{i}"), &data_dir, http, &rpc),
        )
        .expect("write the config");
        let args = ["agent".to_owned(), "-config".to_owned(), file];
        clients.push(ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{http}"), &args));
    }
    let first = servers[0].as_ref().expect("started");
    let leader = await_leader(first);
    println!("leader {leader}");
    let nodes_ready = poll_until(LEADER_TIMEOUT, || {
        let nodes = try_http_request(&first.http_addr, "GET", "/v1/nodes", b"")?;
        let nodes: serde_json::Value = serde_json::from_slice(&nodes.body).ok()?;
        let ready = nodes.as_array()?.iter().filter(|n| n["Status"] == "ready").count();
        (ready == 2).then_some(())
    });
    assert!(nodes_ready.is_some(), "both clients registered");
    let members = poll_until(LEADER_TIMEOUT, || {
        let names = member_names(first)?;
        (names.len() == 3).then_some(names)
    });
    assert_eq!(members, Some(vec!["s0.global".into(), "s1.global".into(), "s2.global".into()]));
    let server_self = first.http("GET", "/v1/agent/self", b"");
    let server_self: serde_json::Value = serde_json::from_slice(&server_self.body).expect("JSON");
    let config = &server_self["config"];
    assert_eq!(
        (&config["DevMode"], &config["Server"]["BootstrapExpect"], &config["Client"]["Enabled"]),
        (&serde_json::json!(false), &serde_json::json!(3), &serde_json::json!(false)),
        "a server agent's own configuration: {config}"
    );
    let client_self = clients[0].http("GET", "/v1/agent/self", b"");
    let client_self: serde_json::Value = serde_json::from_slice(&client_self.body).expect("JSON");
    assert_eq!(
        (&client_self["config"]["Server"]["Enabled"], &client_self["member"]),
        (&serde_json::json!(false), &serde_json::Value::Null),
        "a client agent is no server and no gossip member"
    );
    let marker = format!("drover-e2e-cluster-{}", std::process::id());
    let reaper = TaskReaper { marker: marker.clone() };
    let registered = first.http("PUT", "/v1/jobs", &service_job("web", &marker));
    assert_eq!(registered.status, 200, "{}", registered.text());
    let running = poll_until(LEADER_TIMEOUT, || (running_allocs(first, "web")? == 2).then_some(()));
    assert!(running.is_some(), "two allocations running");

    let leader_index =
        rpc.iter().position(|p| leader.ends_with(&format!(":{p}"))).expect("a server leads");
    let old = servers[leader_index].take().expect("the leader runs");
    let old_args = (old.http_addr.clone(), old.args.clone());
    old.kill9();
    let killed = Instant::now();
    let survivor = servers.iter().flatten().next().expect("two servers left");
    let new_leader = poll_until(LEADER_TIMEOUT, || survivor.leader().filter(|l| *l != leader))
        .expect("a new leader");
    let failover = killed.elapsed();
    println!("new leader {new_leader} {failover:?} after kill -9 of the leader");
    assert!(failover < Duration::from_secs(10), "{failover:?}");
    // The agents' logs tell the story: the new leader took over, and gossip found the
    // old one failed.
    let new_leader_agent = (0..servers.len())
        .filter(|&i| new_leader.ends_with(&format!(":{}", rpc[i])))
        .find_map(|i| servers[i].as_ref())
        .expect("the new leader runs");
    let logged = |agent: &ClusterAgent, line: &str| {
        poll_until(LEADER_TIMEOUT, || agent.said().contains(line).then_some(())).is_some()
    };
    assert!(
        logged(new_leader_agent, "[INFO]  nomad: cluster leadership acquired: term="),
        "{}",
        new_leader_agent.said()
    );
    let failed_line = format!("[WARN]  nomad.gossip: member failed: name=s{leader_index}");
    assert!(logged(survivor, &failed_line), "{}", survivor.said());
    for client in &clients {
        let registered = "[INFO]  client: node registration complete: server=";
        assert!(client.said().contains(registered), "{}", client.said());
    }
    let still_running =
        poll_until(LEADER_TIMEOUT, || (running_allocs(survivor, "web")? == 2).then_some(()));
    assert!(still_running.is_some(), "the job's allocations still run after the failover");

    let restarted = ClusterAgent::start(&scratch.path, &old_args.0, &old_args.1);
    let target = raft_last_index(survivor).expect("the survivor's raft index");
    let caught_up = poll_until(LEADER_TIMEOUT, || {
        let index = raft_last_index(&restarted)?;
        (index >= target && restarted.leader().is_some()).then_some(index)
    });
    assert!(caught_up.is_some(), "the old leader rejoined and caught up to index {target}");
    let job = restarted.http("GET", "/v1/job/web", b"");
    assert_eq!(job.status, 200, "{}", job.text());
    // A client-only agent answers the API through a server, over the RPC transport. A
    // call it sends to the restarted server on the connection of that server's previous
    // life is lost until the connection's idle timeout; the caller gets an error and
    // asks again.
    let through_client = poll_until(LEADER_TIMEOUT, || {
        let answer = try_http_request(&clients[0].http_addr, "GET", "/v1/job/web", b"")?;
        (answer.status == 200).then_some(answer)
    })
    .expect("a client agent answers the API through a server");
    assert_eq!(through_client.json()["ID"], "web");

    // Both clients die with kill -9 and come back on their data directories: each is the
    // same node, re-learns its allocations from the servers and reattaches to the tasks
    // still running instead of starting them again.
    let tasks_before = reaper.pids();
    assert_eq!(tasks_before.len(), 2, "one process per task");
    let client_args: Vec<(String, Vec<String>)> =
        clients.iter().map(|c| (c.http_addr.clone(), c.args.clone())).collect();
    for client in clients.drain(..) {
        client.kill9();
    }
    for (http_addr, args) in &client_args {
        clients.push(ClusterAgent::start(&scratch.path, http_addr, args));
    }
    let reattached = poll_until(LEADER_TIMEOUT, || {
        let here: Option<Vec<u64>> = clients.iter().map(allocs_running_here).collect();
        (here?.iter().sum::<u64>() == 2).then_some(())
    });
    assert!(reattached.is_some(), "the restarted clients run both tasks again");
    assert_eq!(reaper.pids(), tasks_before, "reattached, not started twice");
    assert_eq!(running_allocs(survivor, "web"), Some(2));

    // A client agent carries a restart to the other client when that one runs the
    // allocation (both answer the API through the servers).
    let allocs = survivor.http("GET", "/v1/job/web/allocations", b"").json();
    let alloc_id = allocs[0]["ID"].as_str().expect("an allocation").to_owned();
    let node_id = allocs[0]["NodeID"].as_str().expect("placed on a node");
    let node = survivor.http("GET", &format!("/v1/node/{node_id}"), b"").json();
    let elsewhere = if node["Name"] == "c0" { &clients[1] } else { &clients[0] };
    let restart_path = format!("/v1/client/allocation/{alloc_id}/restart");
    let restarted = elsewhere.http("POST", &restart_path, b"{}");
    assert_eq!(restarted.status, 200, "{}", restarted.text());
    let reported = poll_until(LEADER_TIMEOUT, || {
        let alloc = survivor.http("GET", &format!("/v1/allocation/{alloc_id}"), b"").json();
        (alloc["TaskStates"]["t"]["Restarts"] == 1).then_some(())
    });
    assert!(reported.is_some(), "the allocation's client restarted its task");

    let stopped = survivor.http("DELETE", "/v1/job/web?purge=true", b"");
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let gone = poll_until(LEADER_TIMEOUT, || reaper.pids().is_empty().then_some(()));
    assert!(gone.is_some(), "the tasks stop with their job");
    drop(clients);
}

/// How long servers started after bootstrap may take to become voters: gossip, a
/// learner's catch-up, autopilot's 10 s stabilization, one change at a time.
const JOIN_TIMEOUT: Duration = Duration::from_secs(40);

/// `operator/raft/configuration`'s servers as (ID, Address, Voter), in its order.
fn raft_servers(agent: &ClusterAgent) -> Option<Vec<(String, String, bool)>> {
    let answer = try_http_request(&agent.http_addr, "GET", "/v1/operator/raft/configuration", b"")?;
    let configuration: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let servers = configuration["Servers"].as_array()?.iter().map(|s| {
        Some((
            s["ID"].as_str()?.to_owned(),
            s["Address"].as_str()?.to_owned(),
            s["Voter"].as_bool()?,
        ))
    });
    servers.collect()
}

/// Starts server `i` of a region expecting `expect` servers, joining through the `join`
/// serf ports, its gossip sealed with `gossip_key`.
fn start_server(
    scratch: &Scratch,
    (i, expect): (usize, usize),
    ports: &Ports,
    join: &[u16],
    gossip_key: &str,
) -> ClusterAgent {
    let data_dir = scratch.path.join(format!("server{i}"));
    let file = format!("server{i}.hcl");
    let name = format!("s{i}");
    let hcl = encrypted_server_hcl(&name, &data_dir, ports, expect, join, Some(gossip_key));
    std::fs::write(scratch.path.join(&file), hcl).expect("write the config");
    let args = ["agent".to_owned(), "-config".to_owned(), file];
    ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{}", ports.http), &args)
}

/// A new gossip key from `drover operator gossip keyring generate`.
fn generate_gossip_key(scratch: &Scratch) -> String {
    let generated = scratch.drover_with_env(&["operator", "gossip", "keyring", "generate"], &[]);
    assert_eq!(generated.code, 0, "{generated}");
    generated.stdout.trim().to_owned()
}

/// Servers whose gossip is sealed with the region's key form the region and later ones
/// join it; a server with another key, started beside them and joining the same
/// addresses, is neither heard nor hears them.
#[test]
fn servers_started_after_bootstrap_join_as_voters_and_a_dead_one_is_removed() {
    let scratch = Scratch::new("five-servers");
    make_tls(&scratch);
    let gossip_key = generate_gossip_key(&scratch);
    let ports: Vec<Ports> = (0..5).map(|_| Ports::free()).collect();
    let serf: Vec<u16> = ports[..3].iter().map(|p| p.serf).collect();
    let mut servers: Vec<Option<ClusterAgent>> = (0..3)
        .map(|i| Some(start_server(&scratch, (i, 3), &ports[i], &serf, &gossip_key)))
        .collect();
    let intruder_key = generate_gossip_key(&scratch);
    assert_ne!(intruder_key, gossip_key);
    // A region of its own (bootstrap_expect = 1) under the same name: with the same key
    // autopilot would add it as a learner.
    let intruder_ports = Ports::free();
    let intruder = start_server(&scratch, (5, 1), &intruder_ports, &serf, &intruder_key);
    let first = servers[0].as_ref().expect("started");
    await_leader(first);
    // The first write may reach the leader before its loop runs: asked again.
    let registered = poll_until(LEADER_TIMEOUT, || {
        let answer = try_http_request(&first.http_addr, "PUT", "/v1/jobs", &job("kept"))?;
        (answer.status == 200).then_some(())
    });
    assert!(registered.is_some(), "the job registered");
    let bootstrapped = poll_until(LEADER_TIMEOUT, || {
        let servers = raft_servers(first)?;
        (servers.len() == 3 && servers.iter().all(|s| s.2)).then_some(servers)
    });
    assert!(bootstrapped.is_some(), "three voters after bootstrap");

    // Two more servers with the same configuration shape (bootstrap_expect = 3): they
    // see a region that already holds Raft state, so they wait to be added.
    let started = Instant::now();
    for (i, ports) in ports.iter().enumerate().skip(3) {
        servers.push(Some(start_server(&scratch, (i, 3), ports, &serf, &gossip_key)));
    }
    let first = servers[0].as_ref().expect("runs");
    let five = poll_until(JOIN_TIMEOUT, || {
        let servers = raft_servers(first)?;
        (servers.len() == 5 && servers.iter().all(|s| s.2)).then_some(servers)
    });
    let five = five.expect("five voters");
    println!("five voters {:?} after the 4th and 5th servers started", started.elapsed());
    let first_addr = format!("http://{}", first.http_addr);
    let cli = |args: &[&str]| scratch.drover_with_env(args, &[("NOMAD_ADDR", &first_addr)]);
    let listed = cli(&["operator", "raft", "list-peers"]);
    assert_eq!(listed.code, 0, "{listed}");
    let voters = listed.stdout.lines().filter(|l| l.split_whitespace().nth(4) == Some("true"));
    assert_eq!(voters.count(), 5, "{listed}");
    for server in &servers[3..] {
        let job = server.as_ref().expect("runs").http("GET", "/v1/job/kept", b"");
        assert_eq!(job.status, 200, "a joined server holds the job: {}", job.text());
    }
    // The server with another key announced itself to the same three all along.
    assert!(five.iter().all(|s| s.1 != format!("127.0.0.1:{}", intruder_ports.rpc)), "{five:?}");
    assert_eq!(member_names(first).map(|m| m.len()), Some(5), "{:?}", member_names(first));
    assert_eq!(member_names(&intruder), Some(vec!["s5.global".to_owned()]));
    let metrics = first.http("GET", "/v1/metrics", b"").json();
    let refused = metrics["Gauges"].as_array().and_then(|gauges| {
        let gauge = gauges.iter().find(|g| g["Name"] == "nomad.gossip.datagrams_refused")?;
        gauge["Value"].as_f64()
    });
    assert!(refused.is_some_and(|n| n > 0.0), "the intruder's datagrams refused: {metrics}");
    drop(intruder);

    // A follower dies; the operator removes it by id.
    let leader = await_leader(first);
    let victim = (1..5).find(|&i| format!("127.0.0.1:{}", ports[i].rpc) != leader).expect("one");
    let victim_addr = format!("127.0.0.1:{}", ports[victim].rpc);
    let victim_id = five.iter().find(|s| s.1 == victim_addr).expect("listed").0.clone();
    servers[victim].take().expect("runs").kill9();
    let first = servers[0].as_ref().expect("runs");
    let removed = cli(&["operator", "raft", "remove-peer", "-peer-id", &victim_id]);
    assert_eq!(removed.code, 0, "{removed}");
    assert_eq!(removed.stdout, format!("Removed peer with id \"{victim_id}\"\n"));
    // Gossip may still report it alive for a few seconds, and autopilot adds an alive
    // server back (as a learner) as Nomad's does; once gossip declares it failed, it is
    // removed for good.
    let four = poll_until(JOIN_TIMEOUT, || {
        let servers = raft_servers(first)?;
        let gone = servers.iter().all(|s| s.0 != victim_id && s.2);
        (servers.len() == 4 && gone).then_some(servers)
    });
    assert!(four.is_some(), "four voters without {victim_id}: {:?}", raft_servers(first));
    let peers = first.http("GET", "/v1/status/peers", b"").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(4), "{peers}");
    let unknown = cli(&["operator", "raft", "remove-peer", "-peer-id", "1"]);
    assert_eq!(unknown.code, 1, "{unknown}");
    assert_eq!(
        unknown.stderr,
        "Error removing peer: Unexpected response code: 500 (id \"1\" was not found in the \
         Raft configuration)\n"
    );

    // The region keeps a leader and the job.
    for server in servers.iter().flatten() {
        let leader = poll_until(LEADER_TIMEOUT, || server.leader());
        assert!(leader.is_some(), "{} knows a leader", server.http_addr);
        let job = server.http("GET", "/v1/job/kept", b"");
        assert_eq!(job.status, 200, "{}", job.text());
    }
    let registered = first.http("PUT", "/v1/jobs", &job("after"));
    assert_eq!(registered.status, 200, "{}", registered.text());
}

/// A one-server region and one client agent, each on its own data directory.
fn server_and_client(scratch: &Scratch) -> (ClusterAgent, ClusterAgent) {
    make_tls(scratch);
    let made = scratch.drover(&["tls", "cert", "create", "-client"]);
    assert_eq!(made.code, 0, "{made}");
    let ports = Ports::free();
    let server_file = server_hcl("s0", &scratch.path.join("server"), &ports, 1, &[ports.serf]);
    std::fs::write(scratch.path.join("server.hcl"), server_file).expect("write the config");
    let args = ["agent".to_owned(), "-config".to_owned(), "server.hcl".to_owned()];
    let server = ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{}", ports.http), &args);
    let http = free_port();
    let client_file = client_hcl("c0", &scratch.path.join("client"), http, &[ports.rpc]);
    std::fs::write(scratch.path.join("client.hcl"), client_file).expect("write the config");
    let args = ["agent".to_owned(), "-config".to_owned(), "client.hcl".to_owned()];
    let client = ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{http}"), &args);
    await_leader(&server);
    (server, client)
}

/// A service job of one allocation with two tasks that stay up, restarted 1 s after a
/// failure.
fn two_task_job(id: &str, marker: &str) -> Vec<u8> {
    let task = |name: &str| {
        json!({
            "Name": name, "Driver": "raw_exec",
            "Config": { "command": "/bin/sh", "args": ["-c", format!("sleep 1000 # {marker}")] },
            "Resources": { "CPU": 100, "MemoryMB": 64 },
        })
    };
    let job = json!({ "Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g", "Count": 1,
            "RestartPolicy": { "Attempts": 2, "Interval": 1_800_000_000_000u64,
                               "Delay": 1_000_000_000u64, "Mode": "fail" },
            "Tasks": [task("recorded"), task("lost")],
        }],
    }});
    serde_json::to_vec(&job).expect("JSON")
}

/// The pids an executor recorded for a task it runs: (executor, task).
fn task_pids(client_data_dir: &Path, alloc_id: &str, task: &str) -> (i32, i32) {
    let path = client_data_dir.join("executor").join(alloc_id).join(task).join("running.json");
    let running: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("running.json")).expect("JSON");
    let pid = |field: &str| running[field].as_i64().expect("a pid") as i32;
    (pid("executor_pid"), pid("task_pid"))
}

/// `kill -9` of a process group (an executor and its task each lead their own).
fn kill_9_group(leader: i32) {
    let group = format!("-{leader}");
    let killed = std::process::Command::new("kill").args(["-9", "--", &group]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -9 -- {group}");
}

fn process_gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_none_or(|s| s == "Z")
}

/// A task's event types and its state, as the servers know them.
fn task_events(agent: &ClusterAgent, alloc_id: &str, task: &str) -> Option<(Vec<String>, String)> {
    let answer =
        try_http_request(&agent.http_addr, "GET", &format!("/v1/allocation/{alloc_id}"), b"")?;
    let alloc: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let state = &alloc["TaskStates"][task];
    let types = state["Events"].as_array()?.iter().map(|e| e["Type"].as_str().map(String::from));
    Some((types.collect::<Option<_>>()?, state["State"].as_str()?.to_owned()))
}

#[test]
fn tasks_that_exit_while_their_client_is_down_follow_the_restart_policy() {
    let scratch = Scratch::new("exited-while-down");
    let (server, client) = server_and_client(&scratch);
    let marker = format!("drover-e2e-exited-{}", std::process::id());
    let reaper = TaskReaper { marker: marker.clone() };
    let registered = server.http("PUT", "/v1/jobs", &two_task_job("pair", &marker));
    assert_eq!(registered.status, 200, "{}", registered.text());
    let alloc_id = running_alloc(&server, "pair");
    let client_dir = scratch.path.join("client");

    // While the client is down, one task dies under its executor, which records the
    // exit; the other dies with its executor, which records nothing.
    let client_args = (client.http_addr.clone(), client.args.clone());
    client.kill9();
    let (_, recorded_task) = task_pids(&client_dir, &alloc_id, "recorded");
    let (lost_executor, lost_task) = task_pids(&client_dir, &alloc_id, "lost");
    kill_9_group(recorded_task);
    kill_9_group(lost_executor);
    kill_9_group(lost_task);
    let exit_file = client_dir.join("executor").join(&alloc_id).join("recorded/exit.json");
    let settled = poll_until(LEADER_TIMEOUT, || {
        let gone = [recorded_task, lost_executor, lost_task].into_iter().all(process_gone);
        (gone && exit_file.exists()).then_some(())
    });
    assert!(settled.is_some(), "the tasks died and the exit was recorded");

    let _client = ClusterAgent::start(&scratch.path, &client_args.0, &client_args.1);
    let tail = ["Started", "Terminated", "Restarting", "Started"].map(String::from);
    for task in ["recorded", "lost"] {
        let restarted = poll_until(LEADER_TIMEOUT, || {
            let (types, state) = task_events(&server, &alloc_id, task)?;
            (types.ends_with(&tail) && state == "running").then_some(types)
        });
        assert!(restarted.is_some(), "{task}: reported exited, then restarted by the policy");
    }
    let alloc = server.http("GET", &format!("/v1/allocation/{alloc_id}"), b"").json();
    let terminated = |task: &str| {
        let events = alloc["TaskStates"][task]["Events"].as_array().expect("events").clone();
        events.into_iter().find(|e| e["Type"] == "Terminated").expect("a Terminated event")
    };
    assert_eq!(terminated("recorded")["Signal"], 9, "the exit its executor recorded");
    let lost = terminated("lost");
    let message = lost["Message"].as_str().unwrap_or_default();
    assert!(message.contains("task lost while the agent was down"), "{lost}");
    for task in ["recorded", "lost"] {
        assert_eq!(alloc["TaskStates"][task]["Restarts"], 1, "{task}: one restart");
    }
    assert_eq!(reaper.pids().len(), 2, "each task runs again, once");
    let stopped = server.http("DELETE", "/v1/job/pair?purge=true", b"");
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let gone = poll_until(LEADER_TIMEOUT, || reaper.pids().is_empty().then_some(()));
    assert!(gone.is_some(), "the tasks stop with their job");
}

/// A one-server region whose API speaks HTTPS, `tls` holding what `https.hcl` adds to
/// the `tls` block: the agent and the address to reach it by.
fn https_server(scratch: &Scratch, name: &str, tls: &str) -> (ClusterAgent, String) {
    let ports = Ports::free();
    let server_file = server_hcl(name, &scratch.path.join(name), &ports, 1, &[ports.serf]);
    let server_path = format!("{name}.hcl");
    std::fs::write(scratch.path.join(&server_path), server_file).expect("write the config");
    let https_path = format!("{name}-https.hcl");
    std::fs::write(scratch.path.join(&https_path), format!("tls {{\n{tls}\n}}\n"))
        .expect("write the config");
    let args = ["agent", "-config", &server_path, "-config", &https_path].map(str::to_owned);
    let agent = ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{}", ports.http), &args);
    (agent, format!("https://127.0.0.1:{}", ports.http))
}

#[test]
fn the_api_over_https_needs_the_ca_and_with_verify_https_client_a_client_certificate() {
    let scratch = Scratch::new("https");
    make_tls(&scratch);
    let made = scratch.drover(&["tls", "cert", "create", "-client"]);
    assert_eq!(made.code, 0, "{made}");
    // `-ca-path`: a directory of CA files.
    std::fs::create_dir(scratch.path.join("cas")).expect("make the CA directory");
    std::fs::copy(scratch.path.join("drover-agent-ca.pem"), scratch.path.join("cas/agent.pem"))
        .expect("copy the CA");
    let (_https, https_addr) = https_server(&scratch, "s0", "  http = true");
    let (_mutual, mutual_addr) =
        https_server(&scratch, "s1", "  http = true\n  verify_https_client = true");
    let ca = ["-ca-cert", "drover-agent-ca.pem"];
    let client_cert =
        ["-client-cert", "global-client-drover.pem", "-client-key", "global-client-drover-key.pem"];
    // A transcript, headed by the environment it ran with.
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let said: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let head = if said.is_empty() { String::new() } else { format!("# {}\n", said.join(" ")) };
        let transcript = scratch.drover_with_env(args, env);
        (transcript.code, format!("{head}{transcript}"))
    };
    let status = |address: &str, flags: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["status", "-address", address];
        args.extend_from_slice(flags);
        run(&args, env)
    };
    let whole: Vec<&str> = ca.iter().chain(&client_cert).copied().collect();
    for address in [&https_addr, &mutual_addr] {
        let ready =
            poll_until(LEADER_TIMEOUT, || (status(address, &whole, &[]).0 == 0).then_some(()));
        assert!(
            ready.is_some(),
            "{address} answers over HTTPS: {}",
            status(address, &whole, &[]).1
        );
    }
    let plain_addr = https_addr.replace("https://", "http://");
    let transcripts = [
        status(&https_addr, &ca, &[]),
        status(&https_addr, &[], &[("NOMAD_CACERT", "drover-agent-ca.pem")]),
        status(&https_addr, &["-ca-path", "cas"], &[]),
        status(&https_addr, &[], &[("NOMAD_CAPATH", "cas")]),
        status(&https_addr, &[], &[]),
        status(&https_addr, &["-ca-cert", "missing.pem"], &[]),
        status(
            &https_addr,
            &["-ca-cert", "drover-agent-ca.pem", "-tls-server-name", "server.eu.drover"],
            &[],
        ),
        status(&https_addr, &["-tls-skip-verify"], &[]),
        status(&plain_addr, &[], &[]),
        status(&mutual_addr, &ca, &[]),
        status(&mutual_addr, &whole, &[]),
        status(
            &mutual_addr,
            &[],
            &[
                ("NOMAD_CACERT", "drover-agent-ca.pem"),
                ("NOMAD_CLIENT_CERT", "global-client-drover.pem"),
                ("NOMAD_CLIENT_KEY", "global-client-drover-key.pem"),
            ],
        ),
    ];
    let autopilot = run(
        &[
            "operator",
            "autopilot",
            "get-config",
            "-address",
            &https_addr,
            "-ca-cert",
            "drover-agent-ca.pem",
        ],
        &[],
    );
    let port = regex::Regex::new(r"127\.0\.0\.1:\d+").expect("regex");
    let rendered: Vec<String> = transcripts
        .iter()
        .chain([&autopilot])
        .map(|(_, text)| port.replace_all(text, "127.0.0.1:PORT").into_owned())
        .collect();
    insta::assert_snapshot!("https", rendered.join("\n\n"));
}

/// A service job of one task that writes `local/greeting.txt` in its task directory, says
/// it started, then says so for every SIGHUP and appends `hup-<n>` to `local/hups.txt`;
/// its command line holds `marker`.
fn hup_job(id: &str, marker: &str) -> Vec<u8> {
    // The loop's short sleeps let the shell run the trap soon after the signal.
    let script = format!(
        "echo fs-says-hi > local/greeting.txt; \
         trap 'echo got-hup; n=$((n+1)); echo hup-$n >> local/hups.txt' HUP; echo started; \
         while :; do sleep 0.1; done # {marker}"
    );
    let job = json!({ "Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": { "command": "/bin/sh", "args": ["-c", script] },
            "Resources": { "CPU": 100, "MemoryMB": 64 },
        }]}],
    }});
    serde_json::to_vec(&job).expect("JSON")
}

/// The ID of the job's one running allocation, once it runs.
fn running_alloc(agent: &ClusterAgent, job: &str) -> String {
    let running = poll_until(LEADER_TIMEOUT, || (running_allocs(agent, job)? == 1).then_some(()));
    assert!(running.is_some(), "{job}'s allocation runs");
    let allocs = agent.http("GET", &format!("/v1/job/{job}/allocations"), b"").json();
    allocs[0]["ID"].as_str().expect("an allocation").to_owned()
}

/// `drover alloc logs -f` (or `alloc fs -f`) as a child whose stdout lines arrive on the
/// receiver.
fn follow_logs(
    scratch: &Scratch,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(drover_tests::drover_binary())
        .args(args)
        .current_dir(&scratch.path)
        .env_remove("NOMAD_ADDR")
        .env_remove("DROVER_ADDR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("drover runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, received)
}

/// Waits for a line holding `wanted` among the lines still to come.
fn await_line(lines: &std::sync::mpsc::Receiver<String>, wanted: &str) -> bool {
    let deadline = Instant::now() + LEADER_TIMEOUT;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains(wanted) {
            return true;
        }
    }
    false
}

#[test]
fn a_server_carries_logs_signals_and_restarts_to_the_node_that_runs_the_allocation() {
    let scratch = Scratch::new("forward");
    let (server, client) = server_and_client(&scratch);
    let marker = format!("drover-e2e-forward-{}", std::process::id());
    let _reaper = TaskReaper { marker: marker.clone() };
    let registered = server.http("PUT", "/v1/jobs", &hup_job("hup", &marker));
    assert_eq!(registered.status, 200, "{}", registered.text());
    let alloc_id = running_alloc(&server, "hup");
    let address = format!("http://{}", server.http_addr);
    let drover = |args: &[&str]| {
        let mut all = vec![args[0], args[1], "-address", &address];
        all.extend_from_slice(&args[2..]);
        scratch.drover(&all)
    };
    // Polls `alloc logs` through the server until the task's stdout holds `text` as
    // often as asked.
    let logs_hold = |text: &str, times: usize| {
        poll_until(LEADER_TIMEOUT, || {
            let logs = drover(&["alloc", "logs", &alloc_id, "t"]);
            (logs.code == 0 && logs.stdout.matches(text).count() >= times).then_some(())
        })
        .is_some()
    };
    assert!(logs_hold("started", 1), "{}", drover(&["alloc", "logs", &alloc_id, "t"]));

    // A signal through the server reaches the task, whose trap writes to its log.
    let signalled = drover(&["alloc", "signal", "-s", "SIGHUP", &alloc_id, "t"]);
    assert_eq!(signalled.code, 0, "{signalled}");
    assert!(logs_hold("got-hup", 1), "{}", drover(&["alloc", "logs", &alloc_id, "t"]));

    // A followed log streams through the server: what the task writes next arrives.
    let (mut follower, lines) =
        follow_logs(&scratch, &["alloc", "logs", "-address", &address, "-f", &alloc_id, "t"]);
    assert!(await_line(&lines, "started"), "the followed log starts with what was written");
    assert!(await_line(&lines, "got-hup"), "and holds the first signal's line");
    let signalled = drover(&["alloc", "signal", "-s", "SIGHUP", &alloc_id, "t"]);
    assert_eq!(signalled.code, 0, "{signalled}");
    assert!(await_line(&lines, "got-hup"), "the second signal's line arrives while following");
    let _ = follower.kill();
    let _ = follower.wait();

    // The allocation's directory through the server: a listing, a file, its facts, its
    // end, and a path that leads outside, refused.
    let listing = drover(&["alloc", "fs", &alloc_id, "t/local"]);
    assert_eq!(listing.code, 0, "{listing}");
    let row =
        regex::Regex::new(r"(?m)^-rw-\S+  11 B  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  greeting.txt$");
    assert!(listing.stdout.starts_with("Mode "), "{listing}");
    assert!(row.expect("regex").is_match(&listing.stdout), "{listing}");
    let root = drover(&["alloc", "fs", &alloc_id]);
    let names: Vec<&str> =
        root.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(names, ["alloc/", "t/"], "{root}");
    let cat = drover(&["alloc", "fs", &alloc_id, "t/local/greeting.txt"]);
    assert_eq!((cat.code, cat.stdout.as_str()), (0, "fs-says-hi\n"), "{cat}");
    let tail = drover(&["alloc", "fs", "-tail", "-c", "3", &alloc_id, "t/local/greeting.txt"]);
    assert_eq!((tail.code, tail.stdout.as_str()), (0, "hi\n"), "{tail}");
    let stat = drover(&["alloc", "fs", "-stat", "-H", &alloc_id, "t/local/greeting.txt"]);
    assert!(stat.stdout.contains("Content Type"), "{stat}");
    assert!(stat.stdout.contains("  11  "), "{stat}");
    assert!(stat.stdout.contains("  text/plain; charset=utf-8  greeting.txt"), "{stat}");
    let escape = drover(&["alloc", "fs", &alloc_id, "t/../.."]);
    assert_eq!(escape.code, 1, "{escape}");
    let refused = "Unexpected response code: 500 (Path escapes the alloc directory)";
    assert_eq!(escape.stderr.trim_end(), refused, "{escape}");
    let ls_path = format!("/v1/client/fs/ls/{alloc_id}?path=t/local");
    let files = server.http("GET", &ls_path, b"").json();
    let keys: Vec<&str> =
        files[0].as_object().expect("an AllocFileInfo").keys().map(String::as_str).collect();
    assert_eq!(keys, ["Name", "IsDir", "Size", "FileMode", "ModTime"], "{files}");
    let by_job = drover(&["alloc", "fs", "-job", "hup", "t/local/greeting.txt"]);
    assert_eq!((by_job.code, by_job.stdout.as_str()), (0, "fs-says-hi\n"), "{by_job}");
    let no_job = drover(&["alloc", "fs", "-job", "nope", "t/local/greeting.txt"]);
    let none = "Error fetching allocations: job \"nope\" doesn't exist or it has no allocations";
    assert_eq!((no_job.code, no_job.stderr.trim_end()), (1, none), "{no_job}");
    let stream_path =
        format!("/v1/client/fs/stream/{alloc_id}?path=t/local/greeting.txt&follow=false");
    let framed = server.http("GET", &stream_path, b"");
    let frame = r#"{"Offset":11,"Data":"ZnMtc2F5cy1oaQo=","File":"t/local/greeting.txt"}"#;
    assert_eq!((framed.status, framed.text()), (200, frame.to_owned()));

    // A followed file through the server, from its last line on: what the task appends
    // arrives as it is written.
    let hups = ["alloc", "fs", "-address", &address, "-f", "-tail", "-n", "1"];
    let (mut follower, lines) =
        follow_logs(&scratch, &[&hups[..], &["-job", "hup", "t/local/hups.txt"]].concat());
    let first = lines.recv_timeout(LEADER_TIMEOUT);
    assert_eq!(first.as_deref(), Ok("hup-2"), "the file's end, the second signal's line");
    let signalled = drover(&["alloc", "signal", "-s", "SIGHUP", &alloc_id, "t"]);
    assert_eq!(signalled.code, 0, "{signalled}");
    assert!(await_line(&lines, "hup-3"), "the third signal's line arrives while following");
    let _ = follower.kill();
    let _ = follower.wait();

    // A restart through the server: the client restarts the task and reports it.
    let restarted = drover(&["alloc", "restart", &alloc_id, "t"]);
    assert_eq!(restarted.code, 0, "{restarted}");
    let reported = poll_until(LEADER_TIMEOUT, || {
        let (types, state) = task_events(&server, &alloc_id, "t")?;
        let alloc = server.http("GET", &format!("/v1/allocation/{alloc_id}"), b"").json();
        let restarts = alloc["TaskStates"]["t"]["Restarts"].as_u64()?;
        (types.contains(&"Restart Signaled".to_owned())
            && types.ends_with(&["Restarting".to_owned(), "Started".to_owned()])
            && state == "running"
            && restarts == 1)
            .then_some(())
    });
    assert!(reported.is_some(), "restarted once: {:?}", task_events(&server, &alloc_id, "t"));
    assert!(logs_hold("started", 2), "the new attempt wrote to the same log");

    // An allocation nobody knows is 404 without asking any node; a node whose agent is
    // gone is Nomad's "No path to node", at once rather than after a hang.
    let unknown = "/v1/client/allocation/00000000-0000-0000-0000-000000000000/signal";
    let answer = server.http("POST", unknown, br#"{"Signal":"SIGHUP"}"#);
    assert_eq!((answer.status, answer.text()), (404, "Unknown allocation".to_owned()));
    client.kill9();
    let began = Instant::now();
    let signal_path = format!("/v1/client/allocation/{alloc_id}/signal");
    let answer = server.http("POST", &signal_path, br#"{"Signal":"SIGHUP","Task":"t"}"#);
    assert_eq!((answer.status, answer.text()), (500, "No path to node".to_owned()));
    let logs_path = format!("/v1/client/fs/logs/{alloc_id}?task=t&type=stdout&plain=true");
    let answer = server.http("GET", &logs_path, b"");
    assert_eq!((answer.status, answer.text()), (500, "No path to node".to_owned()));
    assert!(began.elapsed() < Duration::from_secs(20), "answered within the bound");
}

#[test]
fn over_https_with_client_certificates_a_server_carries_logs_and_restarts_to_the_node() {
    let scratch = Scratch::new("forward-https");
    make_tls(&scratch);
    let made = scratch.drover(&["tls", "cert", "create", "-client"]);
    assert_eq!(made.code, 0, "{made}");
    let https = "tls {\n  http                = true\n  verify_https_client = true\n}\n";
    std::fs::write(scratch.path.join("https.hcl"), https).expect("write the config");
    let ports = Ports::free();
    let server_file = server_hcl("s0", &scratch.path.join("server"), &ports, 1, &[ports.serf]);
    std::fs::write(scratch.path.join("server.hcl"), server_file).expect("write the config");
    let args = ["agent", "-config", "server.hcl", "-config", "https.hcl"].map(str::to_owned);
    let _server = ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{}", ports.http), &args);
    let http = free_port();
    let client_file = client_hcl("c0", &scratch.path.join("client"), http, &[ports.rpc]);
    std::fs::write(scratch.path.join("client.hcl"), client_file).expect("write the config");
    let args = ["agent", "-config", "client.hcl", "-config", "https.hcl"].map(str::to_owned);
    let _client = ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{http}"), &args);

    let address = format!("https://127.0.0.1:{}", ports.http);
    let drover = |args: &[&str]| {
        let mut all = vec![args[0], args[1], "-address", &address, "-ca-cert"];
        all.extend_from_slice(&["drover-agent-ca.pem", "-client-cert", "global-client-drover.pem"]);
        all.extend_from_slice(&["-client-key", "global-client-drover-key.pem"]);
        all.extend_from_slice(&args[2..]);
        scratch.drover(&all)
    };
    let marker = format!("drover-e2e-forward-https-{}", std::process::id());
    let _reaper = TaskReaper { marker: marker.clone() };
    let job = sleeper_hcl("sleeper", &marker);
    std::fs::write(scratch.path.join("sleeper.nomad.hcl"), job).expect("write the job");
    let registered = poll_until(LEADER_TIMEOUT, || {
        let run = drover(&["job", "run", "-detach", "sleeper.nomad.hcl"]);
        (run.code == 0).then_some(run)
    });
    assert!(registered.is_some(), "{}", drover(&["job", "run", "-detach", "sleeper.nomad.hcl"]));
    // The running allocation's short ID, from `job status`'s Allocations table.
    let row = regex::Regex::new(r"(?m)^([0-9a-f]{8}) .* running ").expect("regex");
    let alloc_id = poll_until(LEADER_TIMEOUT, || {
        let status = drover(&["job", "status", "sleeper"]);
        Some(row.captures(&status.stdout)?[1].to_owned())
    })
    .expect("the allocation runs");
    let logs_hold = |times: usize| {
        poll_until(LEADER_TIMEOUT, || {
            let logs = drover(&["alloc", "logs", &alloc_id, "t"]);
            (logs.code == 0 && logs.stdout.matches("hello").count() >= times).then_some(())
        })
        .is_some()
    };
    assert!(logs_hold(1), "{}", drover(&["alloc", "logs", &alloc_id, "t"]));
    let restarted = drover(&["alloc", "restart", &alloc_id, "t"]);
    assert_eq!(restarted.code, 0, "{restarted}");
    assert!(logs_hold(2), "{}", drover(&["alloc", "logs", &alloc_id, "t"]));
}

/// How long a purged client agent may take to register again: its next heartbeat comes
/// at most one TTL (Nomad's 10 s minimum, doubled by the random part) after its last.
const REREGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// The job's allocations as (ID, desired status, client status, node ID).
fn job_allocs(agent: &ClusterAgent, job: &str) -> Vec<(String, String, String, String)> {
    let allocs = agent.http("GET", &format!("/v1/job/{job}/allocations"), b"").json();
    let field = |a: &serde_json::Value, key: &str| a[key].as_str().unwrap_or_default().to_owned();
    let rows = allocs.as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|a| {
            let status = (field(a, "DesiredStatus"), field(a, "ClientStatus"));
            (field(a, "ID"), status.0, status.1, field(a, "NodeID"))
        })
        .collect()
}

#[test]
fn a_purged_node_registers_again_and_once_gone_its_allocations_logs_are_unknown() {
    let scratch = Scratch::new("purge");
    let (server, client) = server_and_client(&scratch);
    let marker = format!("drover-e2e-purge-{}", std::process::id());
    let _reaper = TaskReaper { marker: marker.clone() };
    let registered = server.http("PUT", "/v1/jobs", &hup_job("purged", &marker));
    assert_eq!(registered.status, 200, "{}", registered.text());
    let first_alloc = running_alloc(&server, "purged");
    let alloc = server.http("GET", &format!("/v1/allocation/{first_alloc}"), b"").json();
    let node_id = alloc["NodeID"].as_str().expect("placed on a node").to_owned();
    let purge_path = format!("/v1/node/{node_id}/purge");

    // A purge while the client agent runs: the node is forgotten and its job evaluated.
    let purged = server.http("PUT", &purge_path, b"");
    assert_eq!(purged.status, 200, "{}", purged.text());
    let answer = purged.json();
    for key in ["EvalIDs", "EvalCreateIndex", "NodeModifyIndex"] {
        assert!(answer.get(key).is_some(), "{key} in {answer}");
    }
    let purge_index = answer["NodeModifyIndex"].as_u64().expect("an index");
    assert!(purge_index > 0, "{answer}");
    let eval_ids = answer["EvalIDs"].as_array().expect("a list");
    assert_eq!((eval_ids.len(), answer["EvalCreateIndex"].as_u64()), (1, Some(purge_index)));
    let eval_id = eval_ids[0].as_str().expect("an ID");
    let eval = server.http("GET", &format!("/v1/evaluation/{eval_id}"), b"").json();
    assert_eq!(
        (eval["TriggeredBy"].as_str(), eval["NodeID"].as_str()),
        (Some("node-update"), Some(node_id.as_str()))
    );

    // Its heartbeat answered "node not found", the client registers again (a new node
    // record, created after the purge), and the job's allocation, lost with the node,
    // is replaced on it.
    let reregistered = poll_until(REREGISTER_TIMEOUT, || {
        let node = try_http_request(&server.http_addr, "GET", &format!("/v1/node/{node_id}"), b"")?;
        let node: serde_json::Value = serde_json::from_slice(&node.body).ok()?;
        node["CreateIndex"].as_u64().filter(|&created| created > purge_index)
    });
    assert!(reregistered.is_some(), "the purged node registers again");
    let replaced = poll_until(REREGISTER_TIMEOUT, || {
        let allocs = job_allocs(&server, "purged");
        let first = allocs.iter().find(|a| a.0 == first_alloc)?;
        let running = allocs.iter().find(|a| a.0 != first_alloc && a.2 == "running")?;
        (first.1 == "stop").then(|| running.0.clone())
    });
    let Some(alloc_id) = replaced else {
        panic!("the lost allocation is replaced: {:?}", job_allocs(&server, "purged"));
    };

    // Purged once its agent is gone, the node stays unknown: a request for its
    // allocation's logs finds no node to carry it to.
    client.kill9();
    let purged = server.http("POST", &purge_path, b"");
    assert_eq!(purged.status, 200, "{}", purged.text());
    let logs_path = format!("/v1/client/fs/logs/{alloc_id}?task=t&type=stdout&plain=true");
    let answer = server.http("GET", &logs_path, b"");
    assert_eq!((answer.status, answer.text()), (500, "Unknown node".to_owned()));
    let address = format!("http://{}", server.http_addr);
    let logs = scratch.drover(&["alloc", "logs", "-address", &address, &alloc_id, "t"]);
    let refused = "Error reading file: Unexpected response code: 500 (Unknown node)";
    assert_eq!((logs.code, logs.stderr.trim_end()), (1, refused), "{logs}");

    // Purging a node the servers do not know is Nomad's "node not found".
    for unknown in [node_id.as_str(), "00000000-0000-0000-0000-000000000000"] {
        let answer = server.http("PUT", &format!("/v1/node/{unknown}/purge"), b"");
        assert_eq!((answer.status, answer.text()), (404, "node not found".to_owned()));
    }
}

/// Two regions, one server each, in one gossip pool: a request naming the other region is
/// forwarded there (once), its answer comes back, and nothing is replicated between them.
#[test]
fn a_request_naming_another_region_is_forwarded_there() {
    let scratch = Scratch::new("two-regions");
    for args in [
        &["tls", "ca", "create"][..],
        &["tls", "cert", "create", "-server", "-region", "east"][..],
        &["tls", "cert", "create", "-server", "-region", "west"][..],
    ] {
        let made = scratch.drover(args);
        assert_eq!(made.code, 0, "{made}");
    }
    let (east_ports, west_ports) = (Ports::free(), Ports::free());
    let start = |region: &str, ports: &Ports, join: &[u16]| {
        let blocks = server_blocks(ports, 1, join, None);
        let data_dir = scratch.path.join(region);
        let hcl = regional_agent_hcl(&format!("{region}1"), region, &data_dir, &blocks, "server");
        let file = format!("{region}.hcl");
        std::fs::write(scratch.path.join(&file), hcl).expect("write the config");
        let args = ["agent".to_owned(), "-config".to_owned(), file];
        ClusterAgent::start(&scratch.path, &format!("127.0.0.1:{}", ports.http), &args)
    };
    let east = start("east", &east_ports, &[]);
    let west = start("west", &west_ports, &[east_ports.serf]);
    await_leader(&east);
    await_leader(&west);
    let regions = poll_until(LEADER_TIMEOUT, || {
        let answer = try_http_request(&east.http_addr, "GET", "/v1/regions", b"")?;
        let regions: Vec<String> = serde_json::from_slice(&answer.body).ok()?;
        (regions.len() == 2).then_some(regions)
    });
    assert_eq!(regions, Some(vec!["east".to_owned(), "west".to_owned()]));
    let own = east.http("GET", "/v1/agent/self", b"").json();
    assert_eq!(own["stats"]["nomad"]["known_regions"], "2", "{own}");

    // Registered through east, naming west: it lands in west only.
    let registered = poll_until(LEADER_TIMEOUT, || {
        let answer =
            try_http_request(&east.http_addr, "PUT", "/v1/jobs?region=west", &job("travels"))?;
        (answer.status == 200).then_some(answer.json())
    });
    let registered = registered.expect("the job registered in west through east");
    assert!(registered["EvalID"].as_str().is_some_and(|id| !id.is_empty()), "{registered}");
    assert_eq!(west.http("GET", "/v1/job/travels", b"").status, 200);
    let in_east = east.http("GET", "/v1/job/travels", b"");
    assert_eq!(in_east.status, 404, "nothing is replicated between regions: {}", in_east.text());
    // A read naming west through east is west's answer, with west's index.
    let read = east.http("GET", "/v1/job/travels?region=west", b"");
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["ID"], "travels");
    // The CLI's -region flag takes the same path.
    let east_addr = format!("http://{}", east.http_addr);
    let status = scratch.drover_with_env(
        &["job", "status", "-region", "west", "travels"],
        &[("NOMAD_ADDR", &east_addr)],
    );
    assert_eq!(status.code, 0, "{status}");
    assert!(status.stdout.contains("travels"), "{status}");

    let nowhere = east.http("GET", "/v1/jobs?region=north", b"");
    assert_eq!(nowhere.status, 500, "{}", nowhere.text());
    assert!(nowhere.text().contains("No path to region"), "{}", nowhere.text());
}
