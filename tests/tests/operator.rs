//! End-to-end tests of the operator commands against a real `drover agent -dev`: the
//! README quick start as an operator types it, transcripts as snapshots.
//!
//! IDs, times, ages and the agent's port change from run to run; `redact` replaces them
//! with fixed words so the snapshots show only what must not change.

use drover_tests::{Scratch, Transcript, drover_binary};
use regex::{Captures, Regex};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the agent may take to say it is ready.
const AGENT_READY_TIMEOUT_MS: u64 = 30_000;
/// How long a state the test waits for (a task running, a log line) may take to appear.
const SETTLE_TIMEOUT_MS: u64 = 30_000;
const SETTLE_POLL_MS: u64 = 100;

/// The README's job: a raw_exec task that says hello and stays up.
const HELLO_JOB: &str = r#"job "hello" {
  group "hello" {
    task "hello" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo hello; sleep 1000"]
      }
    }
  }
}
"#;

/// A `drover agent -dev` on a free port, stopped (SIGTERM, so it stops its tasks) when
/// dropped.
struct Agent {
    child: Child,
    address: String,
}

impl Agent {
    fn start(scratch: &Scratch) -> Agent {
        let port = free_port();
        let mut child = Command::new(drover_binary())
            .args(["agent", "-dev", "-node", "drover-e2e", "-http-port", &port.to_string()])
            .current_dir(&scratch.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the agent starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("agent: ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let agent = Agent { child, address: format!("http://127.0.0.1:{port}") };
        ready_rx
            .recv_timeout(Duration::from_millis(AGENT_READY_TIMEOUT_MS))
            .expect("the agent is ready in time");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_millis(AGENT_READY_TIMEOUT_MS);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(SETTLE_POLL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// One operator session against its own agent: each command's redacted transcript is
/// kept. The agent stops (field order) before its scratch directory is removed.
struct Session {
    agent: Agent,
    scratch: Scratch,
    transcripts: Vec<String>,
}

impl Session {
    /// A scratch directory holding `files` and an agent started in it.
    fn start(name: &str, files: &[(&str, &str)]) -> Session {
        let scratch = Scratch::new(name);
        for (file, contents) in files {
            std::fs::write(scratch.path.join(file), contents).expect("write a job file");
        }
        let agent = Agent::start(&scratch);
        Session { agent, scratch, transcripts: Vec::new() }
    }

    fn drover(&self, args: &[&str]) -> Transcript {
        self.scratch.drover_with_env(args, &[("NOMAD_ADDR", &self.agent.address)])
    }

    /// Runs a command and keeps its transcript for the snapshot.
    fn record(&mut self, args: &[&str]) -> Transcript {
        let transcript = self.drover(args);
        self.transcripts.push(redact(&transcript.to_string(), &self.agent.address));
        transcript
    }

    /// Runs `args` until its stdout contains `expect` (a state the cluster reaches on its
    /// own time), then records that run.
    fn record_once(&mut self, args: &[&str], expect: &str) {
        self.record_when(args, expect, |transcript| transcript.contains(expect));
    }

    /// Runs `args` until `done` holds for its redacted transcript, then records that run.
    fn record_when(&mut self, args: &[&str], expect: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
        loop {
            let transcript = redact(&self.drover(args).to_string(), &self.agent.address);
            if done(&transcript) {
                self.transcripts.push(transcript);
                return;
            }
            assert!(Instant::now() < deadline, "never saw {expect:?}:\n{transcript}");
            std::thread::sleep(Duration::from_millis(SETTLE_POLL_MS));
        }
    }
}

/// Replaces what differs between runs: full and short IDs, times, ages, the agent's
/// address and Raft indexes in messages (and the one on a command line). The monitor's `Evaluation status changed` line
/// is dropped: it is printed only when the monitor happened to see the evaluation
/// pending, which depends on timing, as in Nomad.
fn redact(text: &str, address: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>"),
        (r"\b[0-9a-f]{8}\b", "<--id-->"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "YYYY-MM-DDThh:mm:ssZ"),
        (r"conflicting job modify index: \d+", "conflicting job modify index: <index>"),
        (r"Job Modify Index: \d+", "Job Modify Index: <index>"),
        (r"(?m)^drover job run -check-index \d+", "drover job run -check-index <index>"),
        (r"-check-index=\d+", "-check-index=<index>"),
    ];
    let mut text = text.replace(address, "http://127.0.0.1:<port>");
    text = text
        .lines()
        .filter(|line| !line.contains("Evaluation status changed"))
        .collect::<Vec<_>>()
        .join("\n");
    for (pattern, word) in rules {
        text = Regex::new(pattern).unwrap().replace_all(&text, *word).into_owned();
    }
    // An age (`5s ago`, `1m2s ago`) and the padding after it become one fixed word.
    let ages = Regex::new(r"(\d+[dhms])+ ago( {2,})?").unwrap();
    text = ages
        .replace_all(&text, |c: &Captures<'_>| {
            if c.get(2).is_some() { "<age>  ".to_owned() } else { "<age>".to_owned() }
        })
        .into_owned();
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

#[test]
fn quick_start_against_a_dev_agent() {
    let mut session = Session::start("operator-quick-start", &[("hello.nomad.hcl", HELLO_JOB)]);

    let run = session.record(&["job", "run", "hello.nomad.hcl"]);
    assert_eq!(run.code, 0, "{run}");
    session.record_once(&["job", "status", "hello"], "run      running");
    let status = session.drover(&["job", "status", "hello"]);
    let alloc_id = status.stdout.lines().last().and_then(|l| l.split(' ').next()).unwrap();
    let alloc_id = alloc_id.to_owned();
    session.record_once(&["alloc", "status", &alloc_id], "Client Status       = running");
    session.record_once(&["alloc", "logs", &alloc_id], "--- stdout\nhello");
    session.record(&["alloc", "logs", "-tail", "-n", "1", &alloc_id, "hello"]);
    session.record(&["alloc", "logs", "-stderr", &alloc_id]);
    session.record(&["alloc", "logs", &alloc_id, "absent"]);
    session.record(&["job", "status"]);
    session.record(&["node", "status"]);
    session.record(&["server", "members"]);
    let stop = session.record(&["job", "stop", "hello"]);
    assert_eq!(stop.code, 0, "{stop}");
    let stale = session.record(&["job", "run", "-check-index", "1", "hello.nomad.hcl"]);
    assert_eq!(stale.code, 1, "{stale}");
    session.record(&["job", "status", "nope"]);
    insta::assert_snapshot!("quick_start_against_a_dev_agent", session.transcripts.join("\n\n"));
}

#[test]
fn autopilot_get_and_set_config() {
    let mut session = Session::start("operator-autopilot", &[]);
    session.record(&["operator", "autopilot", "get-config"]);
    let set = session.record(&[
        "operator",
        "autopilot",
        "set-config",
        "-cleanup-dead-servers=false",
        "-server-stabilization-time=30s",
        "-min-quorum",
        "1",
    ]);
    assert_eq!(set.code, 0, "{set}");
    session.record(&["operator", "autopilot", "get-config"]);
    let unchanged = session.record(&["operator", "autopilot", "set-config"]);
    assert_eq!(unchanged.code, 0, "{unchanged}");
    for refused in [
        &["-last-contact-threshold", "soon"][..],
        &["-max-trailing-logs=-3"],
        &["-cleanup-dead-servers=yes"],
        &["-last-contact-threshold=0s"],
        &["-enable-redundancy-zones"],
    ] {
        let args = [&["operator", "autopilot", "set-config"][..], refused].concat();
        let transcript = session.record(&args);
        assert_eq!(transcript.code, 1, "{transcript}");
    }
    session.record(&["operator", "autopilot", "get-config"]);
    insta::assert_snapshot!("autopilot_get_and_set_config", session.transcripts.join("\n\n"));
}

#[test]
fn versions_evaluations_nodes_and_raft() {
    let changed = HELLO_JOB.replace("echo hello", "echo bonjour");
    let files = [("hello.nomad.hcl", HELLO_JOB), ("bonjour.nomad.hcl", changed.as_str())];
    let mut session = Session::start("operator-versions", &files);

    let detached = session.record(&["job", "run", "-detach", "hello.nomad.hcl"]);
    let eval_id = detached.stdout.trim_end().rsplit(' ').next().unwrap().to_owned();
    session.record_once(&["eval", "status", &eval_id[..8]], "Status             = complete");
    let plan = session.record(&["job", "plan", "bonjour.nomad.hcl"]);
    assert_eq!(plan.code, 1, "{plan}");
    let index = plan.stdout.lines().find_map(|l| l.strip_prefix("Job Modify Index: ")).unwrap();
    let index = index.to_owned();
    let check_index = format!("-check-index={index}");
    session.record(&["job", "run", "-detach", &check_index, "bonjour.nomad.hcl"]);
    session.record(&["job", "history", "hello"]);
    let reverted = session.record(&["job", "revert", "hello", "0"]);
    assert_eq!(reverted.code, 0, "{reverted}");
    session.record(&["job", "revert", "hello", "zero"]);
    session.record(&["node", "eligibility", "-disable", "-self"]);
    session.record(&["node", "status"]);
    session.record(&["node", "eligibility", "-enable", "-self"]);
    session.record(&["node", "drain", "-self"]);
    session.record(&["deployment", "list"]);
    session.record(&["operator", "raft", "list-peers"]);
    session.record(&["alloc", "status", "zz"]);
    insta::assert_snapshot!(
        "versions_evaluations_nodes_and_raft",
        session.transcripts.join("\n\n")
    );

    // `job inspect` prints what `job run -json` reads back: the latest version, reverted.
    let inspected = session.drover(&["job", "inspect", "hello"]);
    assert_eq!(inspected.code, 0, "{inspected}");
    let document: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(document["Job"]["Version"], 2);
    assert_eq!(
        document["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["args"][1],
        "echo hello; sleep 1000"
    );
    std::fs::write(session.scratch.path.join("inspected.json"), &inspected.stdout).unwrap();
    let rerun = session.drover(&["job", "run", "-json", "-detach", "inspected.json"]);
    assert_eq!(rerun.code, 0, "{rerun}");
    let stopped = session.drover(&["job", "stop", "-purge", "hello"]);
    assert_eq!(stopped.code, 0, "{stopped}");
}

/// A job no node can run: its constraint excludes the only node.
const WINDOWS_JOB: &str = r#"job "windows" {
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "windows"
  }

  group "windows" {
    task "windows" {
      driver = "raw_exec"

      config {
        command = "/bin/true"
      }
    }
  }
}
"#;

#[test]
fn placement_failures_exit_2_and_say_why() {
    let mut session = Session::start("operator-placement", &[("windows.nomad.hcl", WINDOWS_JOB)]);
    let run = session.record(&["job", "run", "windows.nomad.hcl"]);
    assert_eq!(run.code, 2, "{run}");
    session.record(&["job", "status", "windows"]);
    session.record(&["job", "run", "-check-index", "0", "windows.nomad.hcl"]);
    insta::assert_snapshot!(
        "placement_failures_exit_2_and_say_why",
        session.transcripts.join("\n\n")
    );
}

/// A task that exits at once and is never restarted: its allocation turns unhealthy and,
/// with no progress deadline to wait for a replacement, the deployment fails at once.
const BROKEN_JOB: &str = r#"job "broken" {
  group "broken" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    update {
      min_healthy_time  = "1s"
      healthy_deadline  = "5s"
      progress_deadline = "0s"
    }

    task "broken" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "exit 1"]
      }
    }
  }
}
"#;

#[test]
fn a_failed_deployment_fails_job_run() {
    let mut session = Session::start("operator-failed-deploy", &[("broken.nomad.hcl", BROKEN_JOB)]);
    // The evaluation places the allocation; the deployment then fails on its health.
    let run = session.record(&["job", "run", "broken.nomad.hcl"]);
    assert_eq!(run.code, 1, "{run}");
    session.record(&["deployment", "list"]);
    insta::assert_snapshot!("a_failed_deployment_fails_job_run", session.transcripts.join("\n\n"));
}

#[test]
fn alloc_restart_in_place_and_alloc_stop_replaces() {
    let mut session = Session::start("operator-alloc", &[("hello.nomad.hcl", HELLO_JOB)]);
    let run = session.drover(&["job", "run", "hello.nomad.hcl"]);
    assert_eq!(run.code, 0, "{run}");
    session.record_once(&["job", "status", "hello"], "run      running");
    let status = session.drover(&["job", "status", "hello"]);
    let alloc_id = status.stdout.lines().last().and_then(|l| l.split(' ').next()).unwrap();
    let alloc_id = alloc_id.to_owned();

    let restarted = session.record(&["alloc", "restart", &alloc_id]);
    assert_eq!(restarted.code, 0, "{restarted}");
    // Restarted once, outside the policy, and running again: the newest event is the
    // second start.
    let expect = "Total Restarts = 1 and the newest event a start";
    session.record_when(&["alloc", "status", &alloc_id], expect, |transcript| {
        let newest = transcript.lines().skip_while(|l| !l.starts_with("Time ")).nth(1);
        transcript.contains("Total Restarts = 1")
            && newest.is_some_and(|l| l.contains("Task started by client"))
    });
    let absent = session.record(&["alloc", "restart", &alloc_id, "absent"]);
    assert_eq!(absent.code, 1, "{absent}");

    let stopped = session.record(&["alloc", "stop", &alloc_id]);
    assert_eq!(stopped.code, 0, "{stopped}");
    session.record_once(&["job", "status", "hello"], "stop     complete");
    // The job has no update block, so no deployment to act on.
    let promote = session.record(&["deployment", "promote", "nope"]);
    assert_eq!(promote.code, 1, "{promote}");
    insta::assert_snapshot!(
        "alloc_restart_in_place_and_alloc_stop_replaces",
        session.transcripts.join("\n\n")
    );
}

/// A task that says so each time it gets SIGHUP, and stays up.
const TRAP_JOB: &str = r#"job "trap" {
  group "trap" {
    task "trap" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo got SIGHUP' HUP; echo ready; while true; do sleep 0.1; done"]
      }
    }
  }
}
"#;

#[test]
fn alloc_signal_reaches_the_task_and_is_recorded() {
    let mut session = Session::start("operator-signal", &[("trap.nomad.hcl", TRAP_JOB)]);
    let run = session.drover(&["job", "run", "trap.nomad.hcl"]);
    assert_eq!(run.code, 0, "{run}");
    session.record_once(&["job", "status", "trap"], "run      running");
    let status = session.drover(&["job", "status", "trap"]);
    let alloc_id = status.stdout.lines().last().and_then(|l| l.split(' ').next()).unwrap();
    let alloc_id = alloc_id.to_owned();
    // The trap is set before "ready" is printed.
    session.record_once(&["alloc", "logs", &alloc_id], "ready");

    let signalled = session.record(&["alloc", "signal", "-s", "SIGHUP", &alloc_id, "trap"]);
    assert_eq!(signalled.code, 0, "{signalled}");
    session.record_once(&["alloc", "logs", &alloc_id], "got SIGHUP");
    session.record_once(&["alloc", "status", &alloc_id], "Task being sent signal SIGHUP");
    let unknown = session.record(&["alloc", "signal", "-s", "SIGNOPE", &alloc_id]);
    assert_eq!(unknown.code, 1, "{unknown}");
    let absent = session.record(&["alloc", "signal", "-s", "SIGHUP", &alloc_id, "absent"]);
    assert_eq!(absent.code, 1, "{absent}");
    // Every running task, and still running afterwards: a signal is not a stop.
    let all = session.record(&["alloc", "signal", "-s", "SIGHUP", &alloc_id]);
    assert_eq!(all.code, 0, "{all}");
    session.record_when(&["alloc", "logs", &alloc_id], "two SIGHUPs", |transcript| {
        transcript.matches("got SIGHUP").count() == 2
    });
    session.record_when(&["alloc", "status", &alloc_id], "two Signaling events", |transcript| {
        transcript.matches("Task being sent signal SIGHUP").count() == 2
            && transcript.contains("Client Status       = running")
    });
    insta::assert_snapshot!(
        "alloc_signal_reaches_the_task_and_is_recorded",
        session.transcripts.join("\n\n")
    );
}

/// A service of two that rolls out under one canary; `{promote}` and `{message}` are
/// filled in per test and version. Its disk is small: the node offers what its disk has
/// free, and a canary runs beside both old allocations.
const CANARY_JOB: &str = r#"job "web" {
  group "web" {
    count = 2

    ephemeral_disk {
      size = 10
    }

    update {
      max_parallel     = 1
      canary           = 1
      auto_promote     = {promote}
      min_healthy_time = "1s"
      healthy_deadline = "30s"
    }

    task "web" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo {message}; sleep 1000"]
      }

      logs {
        max_files     = 2
        max_file_size = 1
      }
    }
  }
}
"#;

/// A session that ran version 0 of the canary job (its first deployment succeeds) and
/// then `job run` of version 1, whose transcript it returns.
fn canary_rollout(name: &str, auto_promote: bool) -> (Session, Transcript) {
    let version = |message: &str| {
        CANARY_JOB.replace("{promote}", &auto_promote.to_string()).replace("{message}", message)
    };
    let (v0, v1) = (version("v0"), version("v1"));
    let files = [("v0.nomad.hcl", v0.as_str()), ("v1.nomad.hcl", v1.as_str())];
    let mut session = Session::start(name, &files);
    let first = session.record(&["job", "run", "v0.nomad.hcl"]);
    assert_eq!(first.code, 0, "{first}");
    let second = session.record(&["job", "run", "v1.nomad.hcl"]);
    (session, second)
}

/// Whether `job status` lists the two allocations of version 1 running and the two of
/// version 0 stopped.
fn rolled_to_version_1(transcript: &str) -> bool {
    let count = |version_and_status: &str| {
        transcript.lines().filter(|l| l.contains(version_and_status)).count()
    };
    count("1        run      running") == 2 && count("0        stop     complete") == 2
}

#[test]
fn a_canary_is_promoted_automatically_and_the_rollout_completes() {
    // The canary is placed beside the two old allocations, promoted once healthy, and the
    // old allocations replaced; `job run` returns with the deployment successful.
    let (mut session, second) = canary_rollout("operator-canary-auto", true);
    assert_eq!(second.code, 0, "{second}");
    session.record_when(&["job", "status", "web"], "version 1 rolled out", rolled_to_version_1);
    insta::assert_snapshot!(
        "a_canary_is_promoted_automatically_and_the_rollout_completes",
        session.transcripts.join("\n\n")
    );
}

#[test]
fn a_canary_waits_for_deployment_promote() {
    // `job run` returns once the canary is healthy: the deployment waits for an operator,
    // and has not succeeded.
    let (mut session, second) = canary_rollout("operator-canary-manual", false);
    assert_eq!(second.code, 1, "{second}");
    let deployment = second.stdout.split("Monitoring deployment \"").nth(1).unwrap();
    let deployment = deployment.split('"').next().unwrap().to_owned();
    session.record(&["deployment", "status", &deployment]);
    let promoted = session.record(&["deployment", "promote", &deployment]);
    assert_eq!(promoted.code, 0, "{promoted}");
    session.record_when(&["job", "status", "web"], "version 1 rolled out", rolled_to_version_1);
    insta::assert_snapshot!(
        "a_canary_waits_for_deployment_promote",
        session.transcripts.join("\n\n")
    );
}
