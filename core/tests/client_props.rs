//! Client property tests: a client driven by random server replies (lost, refused,
//! redirected, duplicated), random driver reports and random time steps must keep its
//! safety rules:
//! - a task is never started while an earlier attempt of it may still run;
//! - in mode `fail`, restarts never exceed the attempts within the first interval, nor
//!   twice the attempts within any interval;
//! - reports are bounded: at most `updates_batch_max` per request, at most
//!   `task_events_max` events per task, at most three requests in flight;
//! - once every allocation is stopped and the servers answer again, every task that was
//!   started is eventually stopped and every task ends dead.

use drover_core::client::{
    Client, ClientConfig, ClientEvent, DriverCommand, DriverEvent, TaskExit, TaskRef,
};
use drover_core::model::{
    AllocDesiredStatus, Allocation, DurationNs, Job, JobType, Node, RestartPolicy, Task, TaskGroup,
    TaskLifecycle, TaskStateKind, task_event,
};
use drover_core::rpc::{ClientRequest, ClientRpc, ServerReply, ServerRpc};
use drover_core::time::Millis;
use proptest::prelude::*;
use std::collections::BTreeMap;

const NODE_ID: &str = "node-1";
const BATCH_MAX: usize = 2;
const TASK_EVENTS_MAX: usize = 10;
const HOOKS: [&str; 5] = ["", "prestart", "prestart-sidecar", "poststart", "poststop"];

#[derive(Clone, Debug)]
struct AllocSpec {
    batch: bool,
    hooks: Vec<usize>,
    leader: bool,
    attempts: i32,
    interval_s: i64,
    delay_s: i64,
    fail_mode: bool,
}

#[derive(Clone, Debug)]
enum Reply {
    Ok,
    NotLeader,
    Error,
    Lost,
    SendFailed,
    Duplicate,
}

#[derive(Clone, Debug)]
enum Action {
    AddAlloc(AllocSpec),
    StopAlloc(usize),
    /// The servers garbage-collect the n-th allocation if it is stopped.
    Gc(usize),
    /// Answer the n-th newest outstanding request.
    Reply(Reply, usize),
    /// Answer the n-th outstanding start: started, or failed (recoverable or not).
    AnswerStart(usize, u8),
    /// The n-th running task exits with this code.
    Exit(usize, i32),
    /// The n-th task told to stop exits.
    StopExit(usize),
    Advance(u64),
}

fn alloc_spec() -> impl Strategy<Value = AllocSpec> {
    (
        any::<bool>(),
        prop::collection::vec(0..HOOKS.len(), 1..4),
        any::<bool>(),
        0..4i32,
        5..60i64,
        1..10i64,
        any::<bool>(),
    )
        .prop_map(|(batch, hooks, leader, attempts, interval_s, delay_s, fail_mode)| {
            AllocSpec { batch, hooks, leader, attempts, interval_s, delay_s, fail_mode }
        })
}

fn action() -> impl Strategy<Value = Action> {
    let reply = prop_oneof![
        6 => Just(Reply::Ok),
        1 => Just(Reply::NotLeader),
        1 => Just(Reply::Error),
        1 => Just(Reply::Lost),
        1 => Just(Reply::SendFailed),
        1 => Just(Reply::Duplicate),
    ];
    prop_oneof![
        2 => alloc_spec().prop_map(Action::AddAlloc),
        1 => (0..4usize).prop_map(Action::StopAlloc),
        1 => (0..4usize).prop_map(Action::Gc),
        8 => (reply, 0..3usize).prop_map(|(how, n)| Action::Reply(how, n)),
        4 => (0..4usize, 0..6u8).prop_map(|(n, how)| Action::AnswerStart(n, how)),
        3 => (0..4usize, prop_oneof![Just(0), Just(1)]).prop_map(|(n, c)| Action::Exit(n, c)),
        2 => (0..4usize).prop_map(Action::StopExit),
        3 => prop_oneof![1..500u64, 1_000..20_000u64, 20_000..90_000u64].prop_map(Action::Advance),
    ]
}

/// A fake region and fake drivers around one client, checking its rules as it goes.
struct World {
    client: Client,
    now: Millis,
    allocs: BTreeMap<String, Allocation>,
    policies: BTreeMap<String, AllocSpec>,
    index: u64,
    requests: Vec<ClientRpc>,
    /// Attempts asked to start and not yet ended (start failed or exited).
    live: BTreeMap<TaskRef, u32>,
    starting: Vec<(TaskRef, u32)>,
    running: Vec<(TaskRef, u32)>,
    stopping: Vec<(TaskRef, u32)>,
    received_at: BTreeMap<String, Millis>,
    restarts: BTreeMap<TaskRef, Vec<Millis>>,
    /// The sequence number of the last report sent for each allocation.
    report_seqs: BTreeMap<String, u64>,
}

impl World {
    fn new() -> World {
        let node = Node { id: NODE_ID.into(), ..Node::default() };
        let mut config = ClientConfig::new(node, vec!["s1".into(), "s2".into()], 7);
        config.updates_batch_max = BATCH_MAX;
        config.task_events_max = TASK_EVENTS_MAX;
        let now = Millis(1_700_000_000_000);
        let mut world = World {
            client: Client::new(now, config).expect("a valid config"),
            now,
            allocs: BTreeMap::new(),
            policies: BTreeMap::new(),
            index: 1,
            requests: Vec::new(),
            live: BTreeMap::new(),
            starting: Vec::new(),
            running: Vec::new(),
            stopping: Vec::new(),
            received_at: BTreeMap::new(),
            restarts: BTreeMap::new(),
            report_seqs: BTreeMap::new(),
        };
        world.drain();
        world
    }

    fn add_alloc(&mut self, spec: AllocSpec) {
        let id = format!("a{}", self.policies.len());
        let tasks = spec
            .hooks
            .iter()
            .enumerate()
            .map(|(i, &hook)| Task {
                name: format!("t{i}"),
                driver: "mock".into(),
                leader: spec.leader && i == 0,
                lifecycle: (hook > 0).then(|| TaskLifecycle {
                    hook: HOOKS[hook].trim_end_matches("-sidecar").into(),
                    sidecar: HOOKS[hook].ends_with("-sidecar"),
                }),
                ..Task::default()
            })
            .collect();
        let restart_policy = Some(RestartPolicy {
            attempts: spec.attempts,
            interval: DurationNs::from_secs(spec.interval_s),
            delay: DurationNs::from_secs(spec.delay_s),
            mode: if spec.fail_mode { "fail" } else { "delay" }.into(),
            render_templates: false,
        });
        let group = TaskGroup { name: "g".into(), tasks, restart_policy, ..TaskGroup::default() };
        let job_type = if spec.batch { JobType::Batch } else { JobType::Service };
        let job = Job { id: id.clone(), job_type, task_groups: vec![group], ..Job::default() };
        self.index += 1;
        let alloc = Allocation {
            id: id.clone(),
            node_id: NODE_ID.into(),
            job: Some(Box::new(job)),
            task_group: "g".into(),
            alloc_modify_index: self.index,
            // As if an earlier run of the client had reported it this many times.
            client_report_seq: self.index * 3,
            ..Allocation::default()
        };
        self.allocs.insert(id.clone(), alloc);
        self.policies.insert(id, spec);
    }

    fn stop_alloc(&mut self, n: usize) {
        let Some(alloc) = self.allocs.values_mut().nth(n) else { return };
        if alloc.desired_status == AllocDesiredStatus::Run {
            self.index += 1;
            alloc.desired_status = AllocDesiredStatus::Stop;
            alloc.alloc_modify_index = self.index;
        }
    }

    fn gc(&mut self, n: usize) {
        let stopped = self.allocs.iter().nth(n).filter(|(_, a)| a.server_terminal());
        if let Some(alloc_id) = stopped.map(|(id, _)| id.clone()) {
            self.allocs.remove(&alloc_id);
            self.index += 1;
        }
    }

    fn answer(&self, rpc: &ClientRpc) -> ServerReply {
        match &rpc.request {
            ClientRequest::NodeRegister { .. } | ClientRequest::NodeHeartbeat { .. } => {
                ServerReply::HeartbeatOk {
                    index: self.index,
                    heartbeat_ttl_ms: 10_000,
                    servers: vec!["s1".into(), "s2".into()],
                    allocs_index: self
                        .allocs
                        .values()
                        .map(|a| a.alloc_modify_index)
                        .max()
                        .unwrap_or(0),
                }
            }
            ClientRequest::NodeAllocs { .. } => ServerReply::NodeAllocs {
                index: self.index,
                allocs: self.allocs.values().cloned().collect(),
            },
            ClientRequest::AllocUpdate { .. } => ServerReply::AllocUpdateOk { index: self.index },
        }
    }

    fn reply(&mut self, how: &Reply, newest: usize) {
        if self.requests.is_empty() {
            return;
        }
        let rpc = self.requests.remove(self.requests.len() - 1 - newest % self.requests.len());
        let request_id = rpc.request_id;
        let now = self.now;
        match how {
            Reply::Lost => {}
            Reply::SendFailed => self.client.handle_send_failed(now, request_id),
            Reply::Duplicate => {
                let reply = ServerRpc { request_id, reply: self.answer(&rpc) };
                self.client.handle_reply(now, reply.clone());
                self.drain();
                self.client.handle_reply(now, reply);
            }
            other => {
                let reply = match other {
                    Reply::NotLeader => ServerReply::NotLeader { leader: Some("s2".into()) },
                    Reply::Error => ServerReply::Error { message: "no leader".into() },
                    _ => self.answer(&rpc),
                };
                self.client.handle_reply(now, ServerRpc { request_id, reply });
            }
        }
        self.drain();
    }

    fn driver_event(&mut self, event: DriverEvent) {
        if matches!(event, DriverEvent::Exited { .. } | DriverEvent::StartFailed { .. }) {
            let task = event.task();
            if self.live.get(task) == Some(&event.attempt()) {
                self.live.remove(task);
            }
            let key = (task.clone(), event.attempt());
            self.running.retain(|r| *r != key);
            self.stopping.retain(|r| *r != key);
        }
        let now = self.now;
        self.client.handle_driver_event(now, event);
        self.drain();
    }

    fn answer_start(&mut self, n: usize, how: u8) {
        if self.starting.is_empty() {
            return;
        }
        let (task, attempt) = self.starting.remove(n % self.starting.len());
        let event = match how {
            0 => {
                DriverEvent::StartFailed { task, attempt, error: "boom".into(), recoverable: true }
            }
            1 => {
                DriverEvent::StartFailed { task, attempt, error: "bad".into(), recoverable: false }
            }
            _ => {
                self.running.push((task.clone(), attempt));
                DriverEvent::Started { task, attempt, handle: "h".into() }
            }
        };
        self.driver_event(event);
    }

    fn exit(&mut self, n: usize, code: i32) {
        if self.running.is_empty() {
            return;
        }
        let (task, attempt) = self.running[n % self.running.len()].clone();
        let exit = TaskExit { exit_code: code, ..TaskExit::default() };
        self.driver_event(DriverEvent::Exited { task, attempt, exit });
    }

    fn stop_exit(&mut self, n: usize) {
        if self.stopping.is_empty() {
            return;
        }
        let (task, attempt) = self.stopping[n % self.stopping.len()].clone();
        let exit = TaskExit { signal: 2, ..TaskExit::default() };
        self.driver_event(DriverEvent::Exited { task, attempt, exit });
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + Millis(ms);
        while let Some(deadline) = self.client.poll_timeout().filter(|d| *d <= end) {
            self.now = self.now.max(deadline);
            let now = self.now;
            self.client.handle_timeout(now);
            self.drain();
        }
        self.now = end;
    }

    /// Drains the client and checks each output against the rules.
    fn drain(&mut self) {
        while let Some(command) = self.client.poll_driver_command() {
            match command {
                DriverCommand::Start { task, attempt, .. } => {
                    let earlier = self.live.insert(task.clone(), attempt);
                    assert_eq!(earlier, None, "{task} #{attempt} started while #{earlier:?} runs");
                    self.starting.push((task, attempt));
                }
                DriverCommand::Stop { task, attempt, .. } => {
                    let key = (task, attempt);
                    if self.running.contains(&key) && !self.stopping.contains(&key) {
                        self.stopping.push(key);
                    }
                }
                DriverCommand::Signal { .. }
                | DriverCommand::ForceKill { .. }
                | DriverCommand::Destroy { .. } => {}
            }
        }
        while let Some((_, rpc)) = self.client.poll_send() {
            if let ClientRequest::AllocUpdate { updates, .. } = &rpc.request {
                assert!(updates.len() <= BATCH_MAX, "{} updates in one request", updates.len());
                for update in updates {
                    for state in update.task_states.values() {
                        assert!(state.events.len() <= TASK_EVENTS_MAX);
                    }
                    // Every report is newer than the servers' and than the last one sent,
                    // so the servers never take an older one for the newest.
                    let held = self.allocs.get(&update.alloc_id).map_or(0, |a| a.client_report_seq);
                    let sent = self.report_seqs.insert(update.alloc_id.clone(), update.report_seq);
                    assert!(update.report_seq > sent.unwrap_or(held), "{update:?}");
                }
            }
            self.requests.push(rpc);
        }
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::AllocAdded { alloc_id } => {
                    self.received_at.insert(alloc_id, self.now);
                }
                ClientEvent::Task { task, event } if event.event_type == task_event::RESTARTING => {
                    self.restarts.entry(task).or_default().push(self.now);
                }
                _ => {}
            }
        }
        assert!(self.client.requests_in_flight() <= 3);
        // Queued statuses all belong to allocations the client still holds.
        assert!(self.client.updates_pending() <= self.client.alloc_ids().count());
        self.check_restart_bounds();
    }

    fn check_restart_bounds(&self) {
        for (task, times) in &self.restarts {
            let spec = &self.policies[&task.alloc_id];
            if !spec.fail_mode {
                continue;
            }
            let attempts = spec.attempts as usize;
            let interval = Millis(spec.interval_s as u64 * 1000);
            let received = self.received_at[&task.alloc_id];
            let first = times.iter().filter(|t| **t <= received + interval).count();
            assert!(first <= attempts, "{task}: {first} restarts in the first interval");
            for (i, start) in times.iter().enumerate() {
                let within = times[i..].iter().take_while(|t| **t <= *start + interval).count();
                assert!(within <= 2 * attempts, "{task}: {within} restarts within an interval");
            }
        }
    }

    /// Stops everything, heals the network, and answers drivers until the client rests.
    fn settle(&mut self) {
        for n in 0..self.allocs.len() {
            self.stop_alloc(n);
        }
        for _ in 0..20_000 {
            while !self.requests.is_empty() {
                self.reply(&Reply::Ok, 0);
            }
            while !self.starting.is_empty() {
                self.answer_start(0, 2);
            }
            while !self.stopping.is_empty() {
                self.stop_exit(0);
            }
            if self.all_dead() && self.live.is_empty() {
                break;
            }
            // Until the stop reaches the client (a lost watch waits for its timeout),
            // running tasks exit on their own and may be restarted.
            if !self.running.is_empty() {
                self.exit(0, 0);
                continue;
            }
            let deadline = self.client.poll_timeout().expect("a registered client has deadlines");
            let step = deadline.saturating_since(self.now).as_u64();
            self.advance(step.max(1));
        }
    }

    fn all_dead(&self) -> bool {
        self.client.alloc_ids().all(|id| {
            let report = self.client.alloc_report(id).expect("a listed allocation");
            report.task_states.values().all(|s| s.state == TaskStateKind::Dead)
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn client_safety_rules_hold(actions in prop::collection::vec(action(), 10..150)) {
        let mut world = World::new();
        for action in &actions {
            match action {
                Action::AddAlloc(spec) => world.add_alloc(spec.clone()),
                Action::StopAlloc(n) => world.stop_alloc(*n),
                Action::Gc(n) => world.gc(*n),
                Action::Reply(how, newest) => world.reply(how, *newest),
                Action::AnswerStart(n, how) => world.answer_start(*n, *how),
                Action::Exit(n, code) => world.exit(*n, *code),
                Action::StopExit(n) => world.stop_exit(*n),
                Action::Advance(ms) => world.advance(*ms),
            }
        }
        world.settle();
        prop_assert!(world.live.is_empty(), "attempts still running: {:?}", world.live);
        prop_assert!(world.all_dead(), "tasks left alive after every allocation stopped");
    }
}
