//! End-to-end tests of `drover agent -dev` and its HTTP API: a real agent on a free
//! loopback port, requests over a plain TCP connection, the exchanges as snapshots with
//! IDs, indexes and times redacted.

use drover_tests::{DevAgent, HttpResponse, Scratch, http_exchange, sleeper_hcl};
use regex::Regex;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a job may take to reach the state a test waits for.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An agent and the transcript of what was asked of it.
struct Session {
    agent: DevAgent,
    transcript: Vec<String>,
}

impl Session {
    fn start() -> Session {
        Session { agent: DevAgent::start(), transcript: Vec::new() }
    }

    /// Sends a request and records it with the named fields of its JSON answer (every
    /// field when `keys` is empty; the text when the answer is not JSON).
    fn check(&mut self, method: &str, path: &str, body: &[u8], keys: &[&str]) -> HttpResponse {
        let response = self.agent.http(method, path, body);
        self.record(method, path, &response, keys);
        response
    }

    fn record(&mut self, method: &str, path: &str, response: &HttpResponse, keys: &[&str]) {
        let shown = match serde_json::from_slice::<Value>(&response.body) {
            Ok(value) => pick(&value, keys).to_string(),
            Err(_) => response.text(),
        };
        let index = response.header("x-nomad-index").map_or("", |_| " X-Nomad-Index");
        let line = format!("{method} {path} -> {}{index}\n{shown}", response.status);
        self.transcript.push(redact(&line));
    }

    /// Polls `path` until `done` holds for its JSON answer.
    fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let answer = self.agent.http("GET", path, b"").json();
            if done(&answer) {
                return answer;
            }
            assert!(Instant::now() < deadline, "{what}: not within {SETTLE_TIMEOUT:?}: {answer}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn snapshot(name: &str, transcript: &[String]) {
    insta::assert_snapshot!(name, transcript.join("\n\n"));
}

/// The named fields of an object, or of each object of a list.
fn pick(value: &Value, keys: &[&str]) -> Value {
    match value {
        Value::Object(map) if !keys.is_empty() => {
            keys.iter().filter_map(|k| map.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect()
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| pick(i, keys)).collect()),
        other => other.clone(),
    }
}

/// IDs, indexes and times vary between runs; their shape does not.
fn redact(text: &str) -> String {
    let rules = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>"),
        (r#""(\w*Index)":\d+"#, r#""$1":<index>"#),
        (r"index: \d+", "index: <index>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
    ];
    rules.iter().fold(text.to_owned(), |text, (pattern, with)| {
        Regex::new(pattern).expect("a valid pattern").replace_all(&text, *with).into_owned()
    })
}

fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

/// Whether any process's command line holds `marker`.
fn process_with(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
    })
}

/// Opens a followed log and reads until `text` arrives (the answer never ends by itself).
fn follow_until(addr: &str, path: &str, text: &str) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(SETTLE_TIMEOUT)).expect("timeout");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write the request");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read @ 1..) = stream.read(&mut buffer) {
        seen.extend_from_slice(&buffer[..read]);
        if String::from_utf8_lossy(&seen).contains(text) {
            return true;
        }
    }
    false
}

fn first_alloc_id(allocs: &Value) -> String {
    allocs[0]["ID"].as_str().expect("an allocation ID").to_owned()
}

#[test]
fn a_raw_exec_job_runs_logs_and_stops_and_the_agent_leaves_nothing_behind() {
    let marker = format!("drover-e2e-{}", std::process::id());
    let mut s = Session::start();
    s.check("GET", "/v1/agent/health", b"", &[]);
    s.check("GET", "/v1/status/leader", b"", &[]);
    s.check("GET", "/v1/status/peers", b"", &[]);
    s.check("GET", "/v1/regions", b"", &[]);
    s.check("GET", "/v1/operator/raft/configuration", b"", &[]);
    s.check("GET", "/v1/nodes", b"", &["Status", "SchedulingEligibility", "Drain", "Drivers"]);
    let metrics = s.agent.http("GET", "/v1/metrics?format=prometheus", b"").text();
    assert!(metrics.contains("# TYPE nomad_server_raft_syncs gauge"), "{metrics}");
    let hcl = sleeper_hcl("hello", &marker);
    let parsed =
        s.check("POST", "/v1/jobs/parse", &body(&json!({ "JobHCL": hcl })), &["ID", "Type"]);
    let job = parsed.json();
    let register = json!({ "Job": job });
    s.check("PUT", "/v1/jobs", &body(&register), &[]);
    let allocs_path = "/v1/job/hello/allocations";
    let running = s.wait_for(allocs_path, "the allocation runs", |allocs| {
        allocs[0]["ClientStatus"] == "running"
    });
    let alloc_id = first_alloc_id(&running);
    // The same job again: nothing to change, so the dry run places nothing.
    let plan = body(&json!({ "Job": job, "Diff": true }));
    s.check("POST", "/v1/job/hello/plan", &plan, &["Annotations", "FailedTGAllocs", "Diff"]);
    s.check("GET", allocs_path, b"", &["Name", "TaskGroup", "DesiredStatus", "ClientStatus"]);
    let alloc_path = format!("/v1/allocation/{alloc_id}");
    s.check("GET", &alloc_path, b"", &["Name", "JobID", "ClientStatus"]);
    s.check("GET", "/v1/job/hello/summary", b"", &[]);
    let logs = format!("/v1/client/fs/logs/{alloc_id}?task=t&type=stdout");
    s.check("GET", &format!("{logs}&plain=true"), b"", &[]);
    s.check("GET", &logs, b"", &[]);
    s.check("GET", &format!("{logs}&origin=end&offset=3&plain=true"), b"", &[]);
    assert!(follow_until(&s.agent.http_addr, &format!("{logs}&follow=true&plain=true"), "hello"));
    let versions = s.agent.http("GET", "/v1/job/hello/versions", b"").json();
    assert_eq!(versions["Versions"].as_array().map(Vec::len), Some(1), "{versions}");
    s.check("DELETE", "/v1/job/hello", b"", &["EvalID"]);
    s.wait_for(allocs_path, "the allocation completes", |allocs| {
        allocs[0]["ClientStatus"] == "complete"
    });
    s.check("GET", allocs_path, b"", &["Name", "DesiredStatus", "ClientStatus"]);
    s.check("GET", "/v1/job/hello", b"", &["ID", "Status", "Stop"]);
    assert!(!process_with(&marker), "the stopped task still runs");

    // A task still running when the agent is interrupted is stopped with it.
    s.check("PUT", "/v1/jobs", &body(&register), &["EvalID"]);
    s.wait_for(allocs_path, "the new allocation runs", |allocs| {
        allocs.as_array().is_some_and(|a| a.iter().any(|a| a["ClientStatus"] == "running"))
    });
    assert!(process_with(&marker), "the task runs");
    let data_dir = s
        .agent
        .banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("Data Dir: "))
        .expect("the banner names the data directory")
        .to_owned();
    assert!(std::path::Path::new(&data_dir).join("alloc").exists());
    let Session { agent, transcript } = s;
    let banner = agent.banner.clone();
    let (code, said) = agent.stop();
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("Gracefully shutting down"), "{said}");
    // The agent's log, at its default level: leadership and registration before the
    // ready line, then the tasks' events.
    let log = format!("{banner}{said}");
    for line in [
        "[INFO]  nomad: cluster leadership acquired: term=",
        "[INFO]  client: node registration complete: server=",
        "[INFO]  client.alloc_runner.task_runner: Task event: alloc_id=",
        "type=Started msg=\"Task started by client\" failed=false",
        "type=Killed msg=\"Task successfully killed\" failed=false",
    ] {
        assert!(log.contains(line), "no {line:?} in the agent's log:\n{log}");
    }
    assert!(!log.contains("[DEBUG]"), "debug lines at the default level:\n{log}");
    assert!(!process_with(&marker), "a task outlived the agent");
    assert!(!std::path::Path::new(&data_dir).exists(), "the data directory outlived the agent");
    snapshot("agent_raw_exec_job", &transcript);
}

#[test]
fn bad_inputs_get_nomads_status_and_message() {
    let mut s = Session::start();
    s.check("PUT", "/v1/jobs", b"{not json", &[]);
    s.check("PUT", "/v1/jobs", b"{}", &[]);
    s.check("PUT", "/v1/jobs", br#"{"Job": {"ID": "x", "TaskGroups": 3}}"#, &[]);
    s.check("GET", "/v1/job/nope", b"", &[]);
    s.check("GET", "/v1/job/nope/summary", b"", &[]);
    s.check("GET", "/v1/allocation/nope", b"", &[]);
    s.check("GET", "/v1/jobs?index=abc", b"", &[]);
    s.check("GET", "/v1/client/fs/logs/nope?type=stdout", b"", &[]);
    s.check("GET", "/v1/client/fs/logs/nope?task=t&type=stdout", b"", &[]);
    s.check("GET", "/v1/not-an-endpoint", b"", &[]);

    let hcl = sleeper_hcl("web", "bad-inputs");
    let job = s.agent.http("POST", "/v1/jobs/parse", &body(&json!({ "JobHCL": hcl }))).json();
    s.check("PUT", "/v1/jobs", &body(&json!({ "Job": job })), &["JobModifyIndex"]);
    let again = json!({ "Job": job, "EnforceIndex": true, "JobModifyIndex": 0 });
    s.check("PUT", "/v1/jobs", &body(&again), &[]);
    let stale = json!({ "Job": job, "EnforceIndex": true, "JobModifyIndex": 999_999 });
    s.check("PUT", "/v1/jobs", &body(&stale), &[]);
    s.check("PUT", "/v1/job/other", &body(&json!({ "Job": job })), &[]);
    s.check("POST", "/v1/validate/job", &body(&json!({ "Job": { "ID": "v" } })), &[]);

    // Larger than the bound: refused from the declared length, before any of it is sent.
    let head = format!(
        "PUT /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        9 * 1024 * 1024
    );
    let oversized = http_exchange(&s.agent.http_addr, head.as_bytes(), b"");
    s.record("PUT", "/v1/jobs (9 MiB)", &oversized, &[]);

    // A blocking query whose index has not moved answers when its wait ends.
    let jobs = s.agent.http("GET", "/v1/jobs", b"");
    let index = jobs.header("x-nomad-index").expect("an index header").to_owned();
    let started = Instant::now();
    let blocked = s.agent.http("GET", &format!("/v1/jobs?index={index}&wait=300ms"), b"");
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(blocked.header("x-nomad-index"), Some(index.as_str()));
    snapshot("agent_bad_inputs", &s.transcript);
}

#[test]
fn the_autopilot_configuration_is_set_through_raft_with_check_and_set() {
    let mut s = Session::start();
    let path = "/v1/operator/autopilot/configuration";
    let unset = s.check("GET", path, b"", &[]).json();
    assert_eq!((unset["CreateIndex"].as_u64(), unset["ModifyIndex"].as_u64()), (Some(0), Some(0)));
    s.check("PUT", path, b"{not json", &[]);
    s.check("PUT", path, br#"{"MaxTrailingLogs": -1}"#, &[]);
    s.check("PUT", path, br#"{"LastContactThreshold": "soon"}"#, &[]);
    s.check("PUT", path, br#"{"LastContactThreshold": "-1s"}"#, &[]);
    s.check("PUT", path, br#"{"ServerStabilizationTime": "10s"}"#, &[]);
    let enterprise = json!({ "LastContactThreshold": "200ms", "EnableRedundancyZones": true });
    s.check("PUT", path, &body(&enterprise), &[]);
    let wanted = json!({
        "CleanupDeadServers": false,
        "LastContactThreshold": "1.5s",
        "MaxTrailingLogs": 500,
        "MinQuorum": 3,
        "ServerStabilizationTime": "1m30s",
    });
    s.check("PUT", &format!("{path}?cas=abc"), &body(&wanted), &[]);
    let written = s.check("PUT", &format!("{path}?cas=0"), &body(&wanted), &[]);
    assert_eq!(written.json(), json!(true), "{}", written.text());
    let set = s.check("GET", path, b"", &[]).json();
    let modify_index = set["ModifyIndex"].as_u64().expect("a modify index");
    assert!(modify_index > 0 && set["CreateIndex"] == set["ModifyIndex"], "{set}");
    let again = json!({ "CleanupDeadServers": true, "LastContactThreshold": "200ms" });
    let stale = s.check("PUT", &format!("{path}?cas=0"), &body(&again), &[]);
    assert_eq!(stale.json(), json!(false), "a stale check-and-set writes nothing");
    assert_eq!(s.agent.http("GET", path, b"").json(), set);
    let unchecked = s.check("PUT", path, &body(&again), &[]);
    assert_eq!(unchecked.json(), json!(true));
    let last = s.check("GET", path, b"", &[]).json();
    assert_eq!(last["CreateIndex"].as_u64(), Some(modify_index), "{last}");
    assert!(last["ModifyIndex"].as_u64() > Some(modify_index), "{last}");
    snapshot("agent_autopilot_configuration", &s.transcript);
}

#[test]
fn a_dev_agent_takes_a_config_file_and_serves_https_from_its_tls_block() {
    let scratch = Scratch::new("dev-https");
    for args in [&["tls", "ca", "create"][..], &["tls", "cert", "create", "-server"][..]] {
        let made = scratch.drover(args);
        assert_eq!(made.code, 0, "{made}");
    }
    let tls = r#"tls {
  http      = true
  ca_file   = "drover-agent-ca.pem"
  cert_file = "global-server-drover.pem"
  key_file  = "global-server-drover-key.pem"
}
"#;
    std::fs::write(scratch.path.join("dev.hcl"), tls).expect("write the config");
    let refused = "client {\n  servers = [\"10.0.0.2:4647\"]\n}\n";
    std::fs::write(scratch.path.join("cluster.hcl"), refused).expect("write the config");
    let agent = DevAgent::start_in(&scratch.path, &["-config", "dev.hcl"]);
    let https = format!("https://{}", agent.http_addr);
    assert!(agent.banner.contains(&format!("HTTP API on {https}")), "{}", agent.banner);
    let port = Regex::new(r"127\.0\.0\.1:\d+").expect("a valid pattern");
    let transcripts: Vec<String> = [
        scratch.drover(&["status", "-address", &https, "-ca-cert", "drover-agent-ca.pem"]),
        scratch.drover(&["status", "-address", &https]),
        scratch.drover(&["status", "-address", &format!("http://{}", agent.http_addr)]),
        scratch.drover(&["agent", "-dev", "-config", "cluster.hcl"]),
        scratch.drover(&["agent", "-dev", "-log-level", "loud"]),
    ]
    .iter()
    .map(|transcript| port.replace_all(&transcript.to_string(), "127.0.0.1:PORT").into_owned())
    .collect();
    snapshot("agent_dev_https", &transcripts);
}
