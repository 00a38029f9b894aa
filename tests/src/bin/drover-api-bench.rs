//! `drover-api-bench [--jobs N] [--clients C]`: starts `drover agent -dev` and prints
//! its start-to-ready time, its idle resident memory, and how many job registrations a
//! second its HTTP API takes from C keep-alive clients registering N jobs in all.
//!
//! Each job is a raw_exec service whose constraint no node meets, so every registration
//! goes the whole way (Raft commit, evaluation, a scheduling pass, a blocked evaluation)
//! without starting processes. Run it in release mode:
//! `cargo build --release -p drover-cli && cargo run --release -p drover-tests --bin
//! drover-api-bench`.

use drover_tests::DevAgent;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the agent idles before its memory is read.
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
    };
    let jobs = flag("--jobs", 5_000);
    let clients = flag("--clients", 8).max(1);

    // The `drover` binary built with this one (`cargo build --release -p drover-cli`).
    let exe = std::env::current_exe().expect("the bench's own path");
    let drover = exe.with_file_name("drover");
    assert!(drover.exists(), "build drover first: no {}", drover.display());
    let started = Instant::now();
    let agent = DevAgent::start_binary(&drover);
    let ready_ms = started.elapsed().as_millis();
    std::thread::sleep(IDLE_BEFORE_RSS);
    let rss_kib = agent.rss_kib();
    println!("agent-dev ready_ms={ready_ms} idle_rss_kib={rss_kib}");

    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let addr = agent.http_addr.clone();
            let mine: Vec<usize> = (client..jobs).step_by(clients).collect();
            std::thread::spawn(move || register_all(&addr, &mine))
        })
        .collect();
    let registered: usize = workers.into_iter().map(|w| w.join().expect("a client")).sum();
    let wall_s = started.elapsed().as_secs_f64();
    println!(
        "job-register jobs={registered} clients={clients} wall_s={wall_s:.3} per_s={:.0}",
        registered as f64 / wall_s
    );
    println!("idle_rss_after_kib={}", agent.rss_kib());
    let (code, _) = agent.stop();
    assert_eq!(code, 0, "the agent did not stop cleanly");
}

/// Registers jobs `bench-<i>` over one keep-alive connection; returns how many succeeded.
fn register_all(addr: &str, indexes: &[usize]) -> usize {
    let stream = TcpStream::connect(addr).expect("connect to the agent");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    let mut done = 0;
    for &i in indexes {
        let body = job_body(i);
        let head = format!(
            "PUT /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).expect("write the head");
        writer.write_all(body.as_bytes()).expect("write the body");
        let (status, answer) = read_response(&mut reader);
        assert_eq!(status, 200, "registration {i} refused: {answer}");
        done += 1;
    }
    done
}

/// Reads one response with a `content-length` body.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("a status line");
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn job_body(i: usize) -> String {
    serde_json::json!({
        "Job": {
            "ID": format!("bench-{i}"),
            "Type": "service",
            "Datacenters": ["*"],
            "Constraints": [{ "LTarget": "${attr.kernel.name}", "RTarget": "plan9", "Operand": "=" }],
            "TaskGroups": [{
                "Name": "g",
                "Count": 1,
                "Tasks": [{
                    "Name": "t",
                    "Driver": "raw_exec",
                    "Config": { "command": "/bin/true" },
                    "Resources": { "CPU": 10, "MemoryMB": 10 }
                }]
            }]
        }
    })
    .to_string()
}
