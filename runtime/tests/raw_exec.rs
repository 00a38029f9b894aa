//! raw_exec with real processes: output into rotated logs, the task environment, stop with
//! the kill signal then SIGKILL, reattaching after an agent restart (never a second
//! start), and a lost executor.

use drover_runtime::driver::alloc_dir::AllocDir;
use drover_runtime::driver::executor::ExecutorSpec;
use drover_runtime::driver::raw_exec::{
    DriverError, RawExec, RawExecConfig, Recovered, StartTask, signal_by_name,
};
use rustix::process::{Pid, Signal};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    _root: tempfile::TempDir,
    driver: RawExec,
    alloc: AllocDir,
    config: RawExecConfig,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let config = RawExecConfig {
        executor: vec![env!("CARGO_BIN_EXE_drover-executor").to_string()],
        state_root: root.path().join("state"),
    };
    let alloc = AllocDir::new(&root.path().join("alloc"), "a1");
    alloc.build(["web"]).unwrap();
    Fixture { driver: RawExec::new(config.clone()), alloc, config, _root: root }
}

/// The one helper: a `/bin/sh -c script` task named `web` in allocation `a1`.
fn task(fixture: &Fixture, script: &str) -> StartTask {
    let dirs = fixture.alloc.task_dirs("web");
    let env = BTreeMap::from([
        ("NOMAD_PORT_http".to_string(), "8080".to_string()),
        ("NOMAD_TASK_DIR".to_string(), dirs.task_dir.clone()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ]);
    let spec = ExecutorSpec {
        command: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env,
        cwd: fixture.alloc.task_root("web"),
        logs_dir: fixture.alloc.logs_dir(),
        task_name: "web".into(),
        log_files_max: 2,
        log_file_size_max_bytes: 1024,
    };
    StartTask { alloc_id: "a1".into(), spec }
}

fn log(alloc: &AllocDir, file: &str) -> String {
    fs::read_to_string(alloc.logs_dir().join(file)).unwrap_or_default()
}

#[test]
fn a_task_runs_with_its_environment_and_its_output_lands_in_the_logs() {
    let f = fixture();
    let script =
        "echo port=$NOMAD_PORT_http dir=$NOMAD_TASK_DIR; echo oops >&2; pwd > local/cwd; exit 3";
    let mut handle = f.driver.start(&task(&f, script)).unwrap();
    let exit = f.driver.wait(&mut handle, WAIT).unwrap().expect("the task ends");
    assert_eq!((exit.exit_code, exit.signal), (3, 0));
    let dirs = f.alloc.task_dirs("web");
    assert_eq!(log(&f.alloc, "web.stdout.0"), format!("port=8080 dir={}\n", dirs.task_dir));
    assert_eq!(log(&f.alloc, "web.stderr.0"), "oops\n");
    let cwd = fs::read_to_string(Path::new(&dirs.task_dir).join("cwd")).unwrap();
    assert_eq!(cwd.trim(), f.alloc.task_root("web").display().to_string());
}

#[test]
fn output_rotates_and_keeps_the_newest_files() {
    let f = fixture();
    // 5,000 bytes of output in 1,024-byte files, two kept.
    let script = "i=0; while [ $i -lt 100 ]; do echo 0123456789012345678901234567890123456789012345678; i=$((i+1)); done";
    let mut handle = f.driver.start(&task(&f, script)).unwrap();
    assert!(f.driver.wait(&mut handle, WAIT).unwrap().unwrap().successful());
    let mut files: Vec<String> = fs::read_dir(f.alloc.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("web.stdout"))
        .collect();
    files.sort();
    assert_eq!(files, ["web.stdout.3", "web.stdout.4"]);
    assert_eq!(log(&f.alloc, "web.stdout.3").len(), 1024);
}

#[test]
fn stop_sends_the_kill_signal_then_sigkill_after_the_timeout() {
    let f = fixture();
    let mut polite = f.driver.start(&task(&f, "exec sleep 30")).unwrap();
    let exit = f.driver.stop(&mut polite, Signal::TERM, Duration::from_secs(5)).unwrap();
    assert_eq!(exit.signal, 15, "{exit:?}");

    let stubborn = task(&f, "trap '' TERM; echo ready; while true; do sleep 0.05; done");
    f.driver.destroy("a1", "web").unwrap();
    let mut handle = f.driver.start(&stubborn).unwrap();
    while !log(&f.alloc, "web.stdout.0").contains("ready") {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let exit = f.driver.stop(&mut handle, Signal::TERM, Duration::from_millis(300)).unwrap();
    assert_eq!(exit.signal, 9, "{exit:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_restarted_agent_reattaches_instead_of_starting_twice() {
    let f = fixture();
    let spec = task(&f, "sleep 0.5; echo done; exit 7");
    let first_agent = f.driver.start(&spec).unwrap();
    let executor_pid = first_agent.running.executor_pid;
    drop(first_agent); // the agent goes away; the executor and the task do not

    let restarted = RawExec::new(f.config.clone());
    let Recovered::Running(mut handle) = restarted.recover("a1", "web").unwrap() else {
        panic!("the task still runs");
    };
    assert_eq!(handle.running.executor_pid, executor_pid);
    let refused = restarted.start(&spec).expect_err("a second start is refused");
    assert!(matches!(refused, DriverError::AlreadyRunning { .. }), "{refused}");
    let exit = restarted.wait(&mut handle, WAIT).unwrap().expect("the task ends");
    assert_eq!(exit.exit_code, 7);
    assert_eq!(log(&f.alloc, "web.stdout.0"), "done\n");
    let Recovered::Exited(exit) = restarted.recover("a1", "web").unwrap() else {
        panic!("an ended task is reported with its exit");
    };
    assert_eq!(exit.exit_code, 7);
}

#[test]
fn a_task_whose_executor_died_is_lost_and_a_never_started_one_unknown() {
    let f = fixture();
    assert!(matches!(f.driver.recover("a1", "web").unwrap(), Recovered::Unknown));
    let handle = f.driver.start(&task(&f, "exec sleep 30")).unwrap();
    let kill = |pid: i32, group: bool| {
        let pid = Pid::from_raw(pid).unwrap();
        let result = if group {
            rustix::process::kill_process_group(pid, Signal::KILL)
        } else {
            rustix::process::kill_process(pid, Signal::KILL)
        };
        result.unwrap();
    };
    kill(handle.running.executor_pid, false);
    kill(handle.running.task_pid, true);
    drop(handle);
    let deadline = Instant::now() + WAIT;
    loop {
        match f.driver.recover("a1", "web").unwrap() {
            Recovered::Lost => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_command_that_cannot_start_is_an_error_that_says_why() {
    let f = fixture();
    let mut spec = task(&f, "");
    spec.spec.command = "/nonexistent/binary".into();
    let error = f.driver.start(&spec).expect_err("it cannot start");
    assert!(error.to_string().contains("cannot start \"/nonexistent/binary\""), "{error}");
}

#[test]
fn kill_signals_are_named_as_in_jobspecs() {
    assert_eq!(signal_by_name("SIGINT"), Some(Signal::INT));
    assert_eq!(signal_by_name(""), Some(Signal::TERM));
    assert_eq!(signal_by_name("SIGBOGUS"), None);
}
