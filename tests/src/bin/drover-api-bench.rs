//! `drover-api-bench [--jobs N] [--clients C]`: starts `drover agent -dev` and prints
//! its start-to-ready time, its idle resident memory, and how many job registrations a
//! second its HTTP API takes from C keep-alive clients registering N jobs in all.
//!
//! Each job is a raw_exec service whose constraint no node meets, so every registration
//! goes the whole way (Raft commit, evaluation, a scheduling pass, a blocked evaluation)
//! without starting processes. Run it in release mode:
//! `cargo build --release -p drover-cli && cargo run --release -p drover-tests --bin
//! drover-api-bench`.
//!
//! `drover-api-bench allocs [--count N] [--runs R]`: for each of R runs, a fresh agent,
//! one raw_exec job of N `sleep` tasks, and the time from the register call to every
//! allocation reporting `ClientStatus == running` (`allocs=N to_running_ms=T`, with when
//! all N were placed, `to_placed_ms`; then the median over the runs), watched through blocking queries. Each allocation takes 10 MB
//! of disk from the node, which offers the free space of the agent's temporary data
//! directory: point `TMPDIR` at a filesystem with room for N × 10 MB.

use drover_tests::DevAgent;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the agent idles before its memory is read.
const IDLE_BEFORE_RSS: Duration = Duration::from_secs(2);

/// How long the allocations of the `allocs` mode may take to run before the run fails.
const ALLOCS_RUNNING_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a blocking query of the `allocs` mode waits for a change.
const ALLOCS_WATCH_WAIT: &str = "5s";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
    };
    // The `drover` binary built with this one (`cargo build --release -p drover-cli`).
    let exe = std::env::current_exe().expect("the bench's own path");
    let drover = exe.with_file_name("drover");
    assert!(drover.exists(), "build drover first: no {}", drover.display());
    if args.first().is_some_and(|a| a == "allocs") {
        return allocs_to_running(&drover, flag("--count", 100), flag("--runs", 3).max(1));
    }
    let jobs = flag("--jobs", 5_000);
    let clients = flag("--clients", 8).max(1);

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

/// The `allocs` mode: for each run, a fresh agent and the time from registering one job
/// of `count` raw_exec `sleep` tasks to all of them running; then the median.
fn allocs_to_running(drover: &std::path::Path, count: usize, runs: usize) {
    let mut times_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let agent = DevAgent::start_binary(drover);
        let body = sleepers_body(count);
        let started = Instant::now();
        let answer = drover_tests::http_request(&agent.http_addr, "PUT", "/v1/jobs", &body);
        assert_eq!(answer.status, 200, "registration refused: {}", answer.text());
        let mut index = 0u64;
        let mut placed_ms = None;
        loop {
            let path =
                format!("/v1/job/sleepers/allocations?index={index}&wait={ALLOCS_WATCH_WAIT}");
            let allocs = drover_tests::http_request(&agent.http_addr, "GET", &path, b"");
            index = allocs.header("x-nomad-index").and_then(|i| i.parse().ok()).unwrap_or(0);
            let allocs = allocs.json();
            let allocs = allocs.as_array().map_or(&[][..], Vec::as_slice);
            if allocs.len() >= count && placed_ms.is_none() {
                placed_ms = Some(started.elapsed().as_millis());
            }
            let running = allocs.iter().filter(|a| a["ClientStatus"] == "running").count();
            if running >= count {
                break;
            }
            assert!(
                started.elapsed() < ALLOCS_RUNNING_TIMEOUT,
                "{running} of {count} running; /v1/job/sleepers/evaluations says what did not \
                 fit (each allocation takes 10 MB of the agent's temporary directory's free disk)"
            );
        }
        let to_running_ms = started.elapsed().as_millis();
        let to_placed_ms = placed_ms.unwrap_or(to_running_ms);
        println!("allocs={count} to_running_ms={to_running_ms} to_placed_ms={to_placed_ms}");
        times_ms.push(to_running_ms);
        let (code, _) = agent.stop();
        assert_eq!(code, 0, "the agent did not stop cleanly");
    }
    times_ms.sort_unstable();
    println!("allocs={count} runs={runs} median_to_running_ms={}", times_ms[runs / 2]);
}

/// One raw_exec service of `count` tasks that only sleep, small enough that they all fit
/// on one node.
fn sleepers_body(count: usize) -> Vec<u8> {
    serde_json::json!({
        "Job": {
            "ID": "sleepers",
            "Type": "service",
            "Datacenters": ["*"],
            "TaskGroups": [{
                "Name": "g",
                "Count": count,
                // The smallest disk Nomad allows, and logs that fit in it: the node offers
                // its data directory's free disk, which bounds how many allocations fit.
                "EphemeralDisk": { "SizeMB": 10 },
                "Tasks": [{
                    "Name": "sleep",
                    "Driver": "raw_exec",
                    "LogConfig": { "MaxFiles": 2, "MaxFileSizeMB": 1 },
                    "Config": { "command": "/bin/sleep", "args": ["1000"] },
                    "Resources": { "CPU": 10, "MemoryMB": 10 }
                }]
            }]
        }
    })
    .to_string()
    .into_bytes()
}
