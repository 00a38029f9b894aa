//! End-to-end test of `GET /v1/event/stream` against `drover agent -dev`: a subscriber
//! sees a job registered and its allocation placed and running, as Nomad's frames.

use drover_tests::DevAgent;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long the stream may take to carry what the test waits for.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// An open event stream: the JSON lines it sent so far.
struct Stream {
    socket: std::net::TcpStream,
    pending: Vec<u8>,
}

impl Stream {
    fn open(addr: &str, query: &str) -> Stream {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect to the agent");
        socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let head = format!("GET /v1/event/stream?{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(head.as_bytes()).expect("write the request");
        Stream { socket, pending: Vec::new() }
    }

    /// Frames until `done` holds for every frame read so far. The answer is chunked;
    /// every frame is one line of its own chunk, so lines starting with `{` are frames.
    fn frames_until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + STREAM_TIMEOUT;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let frames: Vec<Value> = String::from_utf8_lossy(&self.pending)
                .lines()
                .filter(|line| line.starts_with('{'))
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            if done(&frames) {
                return frames;
            }
            assert!(Instant::now() < deadline, "the stream did not deliver: {frames:?}");
            if let Ok(read) = self.socket.read(&mut buffer) {
                self.pending.extend_from_slice(&buffer[..read]);
            }
        }
    }
}

fn events(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter_map(|f| f["Events"].as_array()).flatten().collect()
}

fn seen(frames: &[Value], topic: &str, kind: &str, check: impl Fn(&Value) -> bool) -> bool {
    events(frames).iter().any(|e| e["Topic"] == topic && e["Type"] == kind && check(e))
}

#[test]
fn a_subscriber_sees_a_job_registered_and_its_allocation_run() {
    let agent = DevAgent::start();
    let refused = agent.http("GET", "/v1/event/stream?topic=Job:a:b", b"");
    assert_eq!(
        (refused.status, refused.text()),
        (400, "Invalid key value pair for topic: \"Job:a:b\"".to_owned())
    );
    let missing = agent.http("PUT", "/v1/deployment/fail/nope", b"");
    assert_eq!((missing.status, missing.text()), (404, "deployment not found".to_owned()));
    let mut stream = Stream::open(&agent.http_addr, "topic=Job:*&topic=Allocation:events");
    let hcl = r#"job "events" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["1000"]
      }
    }
  }
}
"#;
    let job = agent.http("POST", "/v1/jobs/parse", json!({ "JobHCL": hcl }).to_string().as_bytes());
    let register = json!({ "Job": job.json() }).to_string();
    assert_eq!(agent.http("PUT", "/v1/jobs", register.as_bytes()).status, 200);
    let frames = stream.frames_until(|frames| {
        seen(frames, "Job", "JobRegistered", |_| true)
            && seen(frames, "Allocation", "AllocationUpdated", |e| {
                e["Payload"]["Allocation"]["ClientStatus"] == "running"
            })
    });
    // Every frame holds the events of one index, in index order.
    let indexes: Vec<u64> = frames.iter().filter_map(|f| f["Index"].as_u64()).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    for frame in &frames {
        let all_at_frame_index = frame["Events"]
            .as_array()
            .is_some_and(|events| events.iter().all(|e| e["Index"] == frame["Index"]));
        assert!(all_at_frame_index, "{frame}");
    }
    let registered = events(&frames)
        .into_iter()
        .find(|e| e["Type"] == "JobRegistered")
        .expect("seen above")
        .clone();
    let keys: Vec<&str> =
        registered.as_object().expect("an object").keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["Topic", "Type", "Key", "Namespace", "FilterKeys", "Index", "Payload"]);
    assert_eq!(
        (&registered["Key"], &registered["Namespace"], &registered["FilterKeys"]),
        (&json!("events"), &json!("default"), &Value::Null)
    );
    assert_eq!(registered["Payload"]["Job"]["ID"], "events");
    let placed = events(&frames).into_iter().find(|e| e["Topic"] == "Allocation").expect("seen");
    assert_eq!(placed["FilterKeys"][0], "events", "an allocation is found by its job");
    // A service job gets the default update block, so its first version is rolled out
    // under a deployment, which the job's latest deployment names.
    let latest = agent.http("GET", "/v1/job/events/deployment", b"");
    assert_eq!(latest.status, 200, "{}", latest.text());
    let deployment: Value = serde_json::from_slice(&latest.body).expect("a deployment");
    assert_eq!((&deployment["JobID"], &deployment["JobVersion"]), (&json!("events"), &json!(0)));
    // Only the topics asked for, and only this job's allocations.
    let kinds: BTreeSet<String> = events(&frames)
        .iter()
        .map(|e| {
            format!("{} {}", e["Topic"].as_str().unwrap_or("?"), e["Type"].as_str().unwrap_or("?"))
        })
        .collect();
    insta::assert_snapshot!("event_stream_kinds", kinds.into_iter().collect::<Vec<_>>().join("\n"));
}
