//! Interaction tests for `core::client`, in the style of `raft_scenarios.rs`.
//!
//! Each file under `tests/client/` is a script of commands, each followed by `----` and the
//! outputs the client produced, drained in its documented order and prefixed with the time
//! since the script began: driver commands, requests sent, observable events. The test
//! replays the script and compares the whole file. After a deliberate change, run
//! `REWRITE=1 cargo test -p drover-core --test client_scenarios` and commit the diff only
//! if you understand every line of it.
//!
//! Commands (time starts at 0 and moves only with `tick`):
//! - `client [servers=s1,s2] [seed=N] [batch=N]`: a client for node `node-1`
//! - `alloc ID type=service|batch tasks=NAME[:HOOK],... [restart=ATTEMPTS/INTERVAL/DELAY/MODE]
//!   [kill=DURATION] [leader=NAME] [deploy=MIN_HEALTHY/HEALTHY_DEADLINE]`: an allocation
//!   the servers hold for the node, in a deployment when `deploy` is given; HOOK is
//!   `prestart`, `prestart-sidecar`, `poststart`, `poststart-sidecar` or `poststop`
//! - `stop ID`: the servers mark the allocation desired `stop`
//! - `restart ID [TASK]`: an operator restarts a task, or every running task (shows
//!   `restart refused: WHY` when nothing restarts)
//! - `signal ID SIGNAL [TASK]`: an operator signals a task, or every running task (shows
//!   `signal refused: WHY` when refused)
//! - `reply TARGET REPLY`: answer the newest outstanding request of a kind (`register`,
//!   `heartbeat`, `allocs`, `update`) or request `#N`, with `ok [ttl=D] [servers=a,b]`,
//!   `allocs index=N [IDS...]`, `update-ok`, `not-leader [ADDR]`, `error TEXT`, or
//!   `send-failed` (the runtime could not deliver it)
//! - `lose TARGET`: the request is lost; no reply will ever come
//! - `autoreply KINDS [ttl=D]` / `autoreply off`: answer every request of these kinds
//!   (`heartbeat`, `update`) with success as soon as it is sent (shown as `=> ok`)
//! - `driver started|exited|start-failed TASK [code=N] [signal=N] [attempt=N]
//!   [unrecoverable]`: a driver report for `ALLOC/TASK` (or `ALLOC/*`: every task with a
//!   start outstanding), for the task's latest attempt unless `attempt` says otherwise
//! - `allocs-index N`: the servers' last change to the node's allocations, which every
//!   heartbeat reply carries from now on (0 until set)
//! - `tick DURATION`: advance time, firing deadlines as they fall due
//! - `status`: the client's view of its connection and allocations

#[path = "script/mod.rs"]
mod script;

use drover_core::client::{
    Client, ClientConfig, ClientEvent, DriverCommand, DriverEvent, TaskAction, TaskExit, TaskRef,
};
use drover_core::model::{
    AllocDesiredStatus, Allocation, DurationNs, Job, JobType, Node, RestartPolicy, Task, TaskGroup,
    TaskLifecycle, TaskStateKind, UpdateStrategy,
};
use drover_core::rpc::{ClientRequest, ServerReply, ServerRpc};
use drover_core::state::AllocClientUpdate;
use drover_core::time::Millis;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The wall clock the scripts start at (2023-11-14T22:13:20Z), so timestamps look real.
const EPOCH: Millis = Millis(1_700_000_000_000);
const NODE_ID: &str = "node-1";

#[derive(Default)]
struct Env {
    client: Option<Client>,
    now: Millis,
    allocs: BTreeMap<String, Allocation>,
    /// Requests sent and not yet answered or lost: id → kind.
    outstanding: BTreeMap<u64, &'static str>,
    /// Each task's latest attempt, and whether its start is still unanswered.
    attempts: BTreeMap<TaskRef, (u32, bool)>,
    /// Kinds of request answered with success at once, and the TTL heartbeats get.
    autoreply: Vec<String>,
    autoreply_ttl_ms: u64,
    /// What heartbeat replies carry as `allocs_index`.
    allocs_index: u64,
    out: String,
}

fn arg<'a>(args: &'a [&'a str], key: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn number(text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// `500ms`, `15s`, `30m`, `24h`.
fn duration_ms(text: &str) -> u64 {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (value, unit) = text.split_at(split);
    let value = number(value);
    match unit {
        "ms" => value,
        "s" => value * 1000,
        "m" => value * 60_000,
        "h" => value * 3_600_000,
        other => panic!("unknown duration unit {other:?} in {text:?}"),
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Env {
    fn line(&mut self, text: impl AsRef<str>) {
        let elapsed = self.now - EPOCH;
        let _ = writeln!(self.out, "{elapsed} {}", text.as_ref());
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("a `client` command comes first")
    }

    fn run(&mut self, command: &str) -> String {
        self.out.clear();
        if self.now == Millis::ZERO {
            self.now = EPOCH;
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        let (name, args) = words.split_first().expect("a command");
        match *name {
            "client" => self.start_client(args),
            "alloc" => self.define_alloc(args),
            "stop" => {
                let alloc = self.allocs.get_mut(args[0]).expect("a defined allocation");
                alloc.desired_status = AllocDesiredStatus::Stop;
                alloc.alloc_modify_index += 1;
            }
            "restart" => self.task_action("restart", args[0], args.get(1), TaskAction::Restart),
            "signal" => {
                let action = TaskAction::Signal(args[1].to_owned());
                self.task_action("signal", args[0], args.get(2), action);
            }
            "reply" => self.reply(args[0], &args[1..]),
            "lose" => {
                let id = self.target(args[0]);
                self.outstanding.remove(&id);
                self.line(format!("#{id} lost"));
            }
            "driver" => self.driver(args),
            "autoreply" => {
                self.autoreply = if args[0] == "off" { Vec::new() } else { list(args[0]) };
                self.autoreply_ttl_ms = arg(args, "ttl").map_or(10_000, duration_ms);
            }
            "allocs-index" => self.allocs_index = number(args[0]),
            "tick" => self.tick(duration_ms(args[0])),
            "status" => self.status(),
            other => panic!("unknown command {other:?}"),
        }
        self.drain();
        if self.out.is_empty() {
            self.out.push_str("ok\n");
        }
        std::mem::take(&mut self.out)
    }

    fn start_client(&mut self, args: &[&str]) {
        let servers = list(arg(args, "servers").unwrap_or("s1"));
        let node = Node { id: NODE_ID.into(), name: "node-1".into(), ..Node::default() };
        let seed = arg(args, "seed").map_or(1, number);
        let mut config = ClientConfig::new(node, servers, seed);
        if let Some(batch) = arg(args, "batch") {
            config.updates_batch_max = number(batch) as usize;
        }
        let now = self.now;
        self.client = Some(Client::new(now, config).expect("a valid config"));
    }

    fn define_alloc(&mut self, args: &[&str]) {
        let id = args[0];
        let job_type = JobType::parse(arg(args, "type").unwrap_or("service")).expect("a type");
        let kill_timeout =
            arg(args, "kill").map(|d| DurationNs::from_millis(duration_ms(d) as i64));
        let leader = arg(args, "leader");
        let tasks = list(arg(args, "tasks").expect("tasks=..."))
            .iter()
            .map(|spec| {
                let (name, hook) = spec.split_once(':').unwrap_or((spec, ""));
                let lifecycle = (!hook.is_empty()).then(|| TaskLifecycle {
                    hook: hook.trim_end_matches("-sidecar").to_owned(),
                    sidecar: hook.ends_with("-sidecar"),
                });
                Task {
                    name: name.to_owned(),
                    driver: "mock".into(),
                    lifecycle,
                    leader: leader == Some(name),
                    kill_timeout: kill_timeout.unwrap_or(DurationNs::from_secs(5)),
                    ..Task::default()
                }
            })
            .collect();
        let restart_policy = arg(args, "restart").map(|text| {
            let parts: Vec<&str> = text.split('/').collect();
            RestartPolicy {
                attempts: number(parts[0]) as i32,
                interval: DurationNs::from_millis(duration_ms(parts[1]) as i64),
                delay: DurationNs::from_millis(duration_ms(parts[2]) as i64),
                mode: parts[3].to_owned(),
                render_templates: false,
            }
        });
        let update = arg(args, "deploy").map(|text| {
            let (min, deadline) = text.split_once('/').expect("MIN/DEADLINE");
            UpdateStrategy {
                min_healthy_time: DurationNs::from_millis(duration_ms(min) as i64),
                healthy_deadline: DurationNs::from_millis(duration_ms(deadline) as i64),
                health_check: "task_states".into(),
                ..UpdateStrategy::default()
            }
        });
        let deployment_id = if update.is_some() { format!("d-{id}") } else { String::new() };
        let group =
            TaskGroup { name: "g".into(), tasks, restart_policy, update, ..TaskGroup::default() };
        let job =
            Job { id: format!("job-{id}"), job_type, task_groups: vec![group], ..Job::default() };
        let alloc = Allocation {
            id: id.to_owned(),
            name: format!("{}.g[0]", job.id),
            node_id: NODE_ID.into(),
            job_id: job.id.clone(),
            job: Some(Box::new(job)),
            task_group: "g".into(),
            alloc_modify_index: 1,
            deployment_id,
            ..Allocation::default()
        };
        self.allocs.insert(id.to_owned(), alloc);
    }

    /// A request id: `#N`, or the newest outstanding request of a kind.
    fn target(&self, target: &str) -> u64 {
        if let Some(id) = target.strip_prefix('#') {
            return number(id);
        }
        let found = self.outstanding.iter().rev().find(|(_, kind)| **kind == target);
        *found.unwrap_or_else(|| panic!("no outstanding {target} request")).0
    }

    fn reply(&mut self, target: &str, args: &[&str]) {
        let request_id = self.target(target);
        self.outstanding.remove(&request_id);
        let now = self.now;
        let reply = match args[0] {
            "ok" => ServerReply::HeartbeatOk {
                index: 1,
                heartbeat_ttl_ms: arg(args, "ttl").map_or(10_000, duration_ms),
                servers: list(arg(args, "servers").unwrap_or("")),
                allocs_index: self.allocs_index,
            },
            "allocs" => {
                let index = number(arg(args, "index").expect("index=N"));
                let allocs = args[2..].iter().map(|id| self.allocs[*id].clone()).collect();
                ServerReply::NodeAllocs { index, allocs }
            }
            "update-ok" => ServerReply::AllocUpdateOk { index: 1 },
            "not-leader" => ServerReply::NotLeader { leader: args.get(1).map(|s| s.to_string()) },
            "error" => ServerReply::Error { message: args[1..].join(" ") },
            "send-failed" => {
                self.client().handle_send_failed(now, request_id);
                return;
            }
            other => panic!("unknown reply {other:?}"),
        };
        self.client().handle_reply(now, ServerRpc { request_id, reply });
    }

    fn driver(&mut self, args: &[&str]) {
        let (alloc_id, task) = args[1].split_once('/').expect("ALLOC/TASK");
        let targets: Vec<TaskRef> = if task == "*" {
            let starting = self
                .attempts
                .iter()
                .filter(|(t, (_, starting))| t.alloc_id == alloc_id && *starting);
            starting.map(|(t, _)| t.clone()).collect()
        } else {
            vec![TaskRef::new(alloc_id, task)]
        };
        for task in targets {
            let latest = self.attempts.get(&task).map_or(0, |(attempt, _)| *attempt);
            let attempt = arg(args, "attempt").map_or(latest, |a| number(a) as u32);
            let event = match args[0] {
                "started" => {
                    self.attempts.insert(task.clone(), (latest, false));
                    DriverEvent::Started { handle: format!("h-{task}-{attempt}"), task, attempt }
                }
                "exited" => {
                    let exit = TaskExit {
                        exit_code: arg(args, "code").map_or(0, |c| c.parse().expect("a code")),
                        signal: arg(args, "signal").map_or(0, |s| s.parse().expect("a signal")),
                        error: None,
                    };
                    DriverEvent::Exited { task, attempt, exit }
                }
                "start-failed" => {
                    self.attempts.insert(task.clone(), (latest, false));
                    let recoverable = !args.contains(&"unrecoverable");
                    let error = "image not found".to_owned();
                    DriverEvent::StartFailed { task, attempt, error, recoverable }
                }
                other => panic!("unknown driver report {other:?}"),
            };
            let now = self.now;
            self.client().handle_driver_event(now, event);
            self.drain();
        }
    }

    fn tick(&mut self, ms: u64) {
        let end = self.now + Millis(ms);
        for _ in 0..100_000 {
            match self.client().poll_timeout() {
                Some(deadline) if deadline <= end => {
                    self.now = self.now.max(deadline);
                    let now = self.now;
                    self.client().handle_timeout(now);
                    self.drain();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("tick did not settle");
    }

    /// Drains the client's outputs in the documented order, rendering each, until the
    /// requests answered automatically stop producing more.
    fn drain(&mut self) {
        while self.drain_once() {}
    }

    fn drain_once(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else { return false };
        let mut lines = Vec::new();
        let mut answers = Vec::new();
        while let Some(command) = client.poll_driver_command() {
            if let DriverCommand::Start { task, attempt, .. } = &command {
                self.attempts.insert(task.clone(), (*attempt, true));
            }
            lines.push(describe_command(&command));
        }
        while let Some((server, rpc)) = client.poll_send() {
            let (kind, text) = describe_request(&rpc.request);
            let mut line = format!("send {server} #{} {text}", rpc.request_id);
            if self.autoreply.iter().any(|k| k == kind) {
                let reply = match kind {
                    "update" => ServerReply::AllocUpdateOk { index: 1 },
                    _ => ServerReply::HeartbeatOk {
                        index: 1,
                        heartbeat_ttl_ms: self.autoreply_ttl_ms,
                        servers: Vec::new(),
                        allocs_index: self.allocs_index,
                    },
                };
                answers.push(ServerRpc { request_id: rpc.request_id, reply });
                line.push_str(" => ok");
            } else {
                self.outstanding.insert(rpc.request_id, kind);
            }
            lines.push(line);
        }
        while let Some(event) = client.poll_event() {
            lines.push(describe_event(&event));
        }
        let now = self.now;
        for answer in &answers {
            client.handle_reply(now, answer.clone());
        }
        for line in lines {
            self.line(line);
        }
        !answers.is_empty()
    }

    /// An operator's action on an allocation's tasks; shows why it was refused, if so.
    fn task_action(&mut self, verb: &str, alloc_id: &str, task: Option<&&str>, action: TaskAction) {
        let now = self.now;
        let task = task.copied();
        if let Err(why) = self.client().handle_task_action(now, alloc_id, task, &action) {
            self.line(format!("{verb} refused: {why}"));
        }
    }

    fn status(&mut self) {
        let client = self.client.as_ref().expect("a client");
        let mut lines = vec![format!(
            "node registered={} connected={} server={} servers={} index={} in_flight={} dirty={} next={}",
            client.is_registered(),
            client.is_connected(),
            client.current_server(),
            client.servers().join(","),
            client.alloc_index(),
            client.requests_in_flight(),
            client.updates_pending(),
            client.poll_timeout().map_or("-".into(), |t| (t - EPOCH).to_string()),
        )];
        let ids: Vec<String> = client.alloc_ids().map(str::to_owned).collect();
        for alloc_id in ids {
            let report = client.alloc_report(&alloc_id).expect("a listed allocation");
            lines.push(describe_update(&report));
        }
        for line in lines {
            self.line(line);
        }
    }
}

fn describe_command(command: &DriverCommand) -> String {
    match command {
        DriverCommand::Start { task, attempt, spec, .. } => {
            format!("driver start {task} #{attempt} ({})", spec.driver)
        }
        DriverCommand::Stop { task, attempt, signal, kill_timeout_ms, .. } => {
            format!("driver stop {task} #{attempt} {signal} {}", Millis(*kill_timeout_ms))
        }
        DriverCommand::Signal { task, attempt, signal, .. } => {
            format!("driver signal {task} #{attempt} {signal}")
        }
        DriverCommand::ForceKill { task, attempt, .. } => {
            format!("driver force-kill {task} #{attempt}")
        }
        DriverCommand::Destroy { task, attempt, .. } => format!("driver destroy {task} #{attempt}"),
    }
}

fn describe_request(request: &ClientRequest) -> (&'static str, String) {
    match request {
        ClientRequest::NodeRegister { node } => {
            ("register", format!("NodeRegister node={} status={}", node.id, node.status.as_str()))
        }
        ClientRequest::NodeHeartbeat { node_id, status } => {
            ("heartbeat", format!("NodeHeartbeat node={node_id} status={}", status.as_str()))
        }
        ClientRequest::NodeAllocs { min_index, wait_ms, .. } => {
            ("allocs", format!("NodeAllocs min_index={min_index} wait={}", Millis(*wait_ms)))
        }
        ClientRequest::AllocUpdate { updates, .. } => {
            let shown: Vec<String> = updates.iter().map(describe_update).collect();
            ("update", format!("AllocUpdate {}", shown.join(" ")))
        }
    }
}

/// `a1:running[init=dead main=running/r1 side=dead/failed]`.
fn describe_update(update: &AllocClientUpdate) -> String {
    let tasks: Vec<String> = update
        .task_states
        .iter()
        .map(|(name, state)| {
            let kind = match state.state {
                TaskStateKind::Pending => "pending",
                TaskStateKind::Running => "running",
                TaskStateKind::Dead => "dead",
            };
            let failed = if state.failed { "/failed" } else { "" };
            let restarts =
                if state.restarts > 0 { format!("/r{}", state.restarts) } else { String::new() };
            format!("{name}={kind}{failed}{restarts}")
        })
        .collect();
    let health = match update.deployment_status.as_ref().and_then(|d| d.healthy) {
        Some(true) => " healthy",
        Some(false) => " unhealthy",
        None => "",
    };
    let status = update.client_status.as_str();
    format!("{}:{status}[{}]{health}", update.alloc_id, tasks.join(" "))
}

fn describe_event(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Registered { server } => format!("event registered with {server}"),
        ClientEvent::Disconnected { server } => format!("event disconnected from {server}"),
        ClientEvent::Reconnected { server } => format!("event reconnected to {server}"),
        ClientEvent::ServersChanged { servers } => format!("event servers {}", servers.join(",")),
        ClientEvent::AllocAdded { alloc_id } => format!("event alloc {alloc_id} added"),
        ClientEvent::AllocRefused { alloc_id, reason } => {
            format!("event alloc {alloc_id} refused: {reason}")
        }
        ClientEvent::AllocRemoved { alloc_id } => format!("event alloc {alloc_id} removed"),
        ClientEvent::AllocHealth { alloc_id, healthy } => {
            format!("event alloc {alloc_id} {}", if *healthy { "healthy" } else { "unhealthy" })
        }
        ClientEvent::AllocStatus { alloc_id, status, description } => {
            format!("event alloc {alloc_id} {}: {description}", status.as_str())
        }
        ClientEvent::Task { task, event } => {
            format!("event {task} {}: {}", event.event_type, event.display_message)
        }
        ClientEvent::WatchRenewed { watch_index, allocs_index } => {
            format!("event watch renewed: index {watch_index} behind {allocs_index}")
        }
        ClientEvent::ReplyIgnored { request_id } => format!("event reply #{request_id} ignored"),
        ClientEvent::DriverEventIgnored { task, attempt } => {
            format!("event driver report for {task} #{attempt} ignored")
        }
    }
}

/// Replays one script and compares (or, with REWRITE=1, rewrites) its expected output.
fn check(name: &str) {
    let mut env = Env::default();
    script::check_script("client", name, |line| env.run(line));
}

#[test]
fn register_and_heartbeat() {
    check("register_heartbeat.txt");
}

#[test]
fn alloc_starts_and_reports_running() {
    check("alloc_running.txt");
}

#[test]
fn batch_task_exits_zero_and_completes() {
    check("batch_complete.txt");
}

#[test]
fn restarts_with_delay_then_fails_in_mode_fail() {
    check("restart_fail.txt");
}

#[test]
fn mode_delay_waits_for_the_interval() {
    check("restart_delay.txt");
}

#[test]
fn restart_counter_resets_after_the_interval() {
    check("restart_reset.txt");
}

#[test]
fn lifecycle_hooks_and_sidecars() {
    check("lifecycle.txt");
}

#[test]
fn prestart_failure_fails_the_alloc() {
    check("prestart_failure.txt");
}

#[test]
fn leader_death_kills_siblings() {
    check("leader.txt");
}

#[test]
fn server_stop_kills_with_timeout_then_forces() {
    check("stop_kill.txt");
}

#[test]
fn stop_while_starting_and_poststop_after_stop() {
    check("stop_poststop.txt");
}

#[test]
fn redirects_are_bounded() {
    check("redirects.txt");
}

#[test]
fn unreachable_servers_retry_redirect_and_resync() {
    check("disconnect.txt");
}

#[test]
fn unknown_node_registers_again() {
    check("reregister.txt");
}

#[test]
fn duplicate_and_late_replies_are_ignored() {
    check("late_replies.txt");
}

#[test]
fn a_watch_behind_the_heartbeats_is_asked_again() {
    check("watch_lost.txt");
}

#[test]
fn updates_are_batched_and_bounded() {
    check("batching.txt");
}

#[test]
fn deployment_health_from_task_states() {
    check("health.txt");
}

#[test]
fn bad_allocations_are_refused() {
    check("refused.txt");
}

#[test]
fn an_operator_restart_stops_and_starts_a_task_outside_the_policy() {
    check("restart_signal.txt");
}

#[test]
fn an_operator_signal_reaches_running_tasks_only() {
    check("alloc_signal.txt");
}
