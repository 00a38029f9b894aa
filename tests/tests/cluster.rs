//! Real cluster agents on loopback: servers from HCL configuration files with the
//! cluster's own CA, killed with SIGKILL and restarted on their data directories.

use drover_tests::{ClusterAgent, Scratch, free_port, poll_until, try_http_request};
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

/// A server's configuration file, as an operator writes it.
fn server_hcl(name: &str, data_dir: &Path, ports: &Ports, expect: usize, join: &[u16]) -> String {
    let join: Vec<String> = join.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        r#"name      = "{name}"
data_dir  = "{data_dir}"
bind_addr = "127.0.0.1"

ports {{
  http = {http}
  rpc  = {rpc}
  serf = {serf}
}}

server {{
  enabled          = true
  bootstrap_expect = {expect}
  server_join {{
    retry_join = [{join}]
  }}
}}

tls {{
  ca_file   = "drover-agent-ca.pem"
  cert_file = "global-server-drover.pem"
  key_file  = "global-server-drover-key.pem"
}}
"#,
        data_dir = data_dir.display(),
        http = ports.http,
        rpc = ports.rpc,
        serf = ports.serf,
        join = join.join(", "),
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
