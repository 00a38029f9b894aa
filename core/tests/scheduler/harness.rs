//! The scenario harness: a tiny command language over a real state store, scheduler and
//! plan applier, whose transcript is the snapshot.
//!
//! ```text
//! node n1 cpu=4000 mem=8192 attr.kernel.name=linux meta.rack=r1 driver=docker class=large
//! job                       # HCL follows until a line `end`; registers the job
//! stop-job web | node-status n1 down | node-eligibility n1 ineligible | drain n1
//! alloc web.api[0] failed   # client update of the live allocation with that name
//! health web.api[0] healthy # its deployment health (healthy|unhealthy), as a client reports it
//! promote web | show deployment web   # the job's latest deployment
//! fail-deployment web       # what the watcher proposes without a progress deadline
//! allow-reschedule web.api[0] # what it proposes with one: the replacement is allowed
//! time +30s | stale | run | show allocs
//! ```
//! `run` processes every evaluation that is ready (FIFO), including blocked ones that a
//! capacity change released; `run-job J` only J's. `stale` keeps the state as it is now;
//! `run-stale` processes the first queued evaluation with its first pass planned against
//! that snapshot. `eval J` re-evaluates a job (`job eval`).

#![allow(dead_code)]

use drover_core::broker::blocked::BlockedEvals;
use drover_core::id::IdGen;
use drover_core::jobspec::{ParseOptions, parse};
use drover_core::model::{
    AllocClientStatus, AllocDeploymentStatus, Allocation, DeploymentStatus, DeploymentStatusUpdate,
    DesiredTransition, DrainSpec, DrainStrategy, DriverInfo, EvalStatus, Evaluation, JobType, Node,
    NodeEligibility, NodeStatus, SchedulerType, Timestamp, TriggeredBy, deployment_description,
};
use drover_core::scheduler::render::render_run;
use drover_core::scheduler::worker::{Log, process};
use drover_core::scheduler::{Algorithm, SchedulerConfig};
use drover_core::state::{AllocClientUpdate, ApplyOutcome, Command, Snapshot, State};
use std::collections::{BTreeMap, VecDeque};

#[path = "../render/mod.rs"]
mod render;
use std::fmt::Write;
use std::sync::Arc;

pub const START_NS: i64 = 1_700_000_000_000_000_000;

pub struct Cluster {
    pub state: State,
    pub index: u64,
    pub now_ns: i64,
    ids: IdGen,
    queue: VecDeque<Evaluation>,
    pub blocked: BlockedEvals,
    stale: Option<Snapshot>,
    pub config: SchedulerConfig,
    pub out: String,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            state: State::new(),
            index: 0,
            now_ns: START_NS,
            ids: IdGen::new(1),
            queue: VecDeque::new(),
            blocked: BlockedEvals::default(),
            stale: None,
            config: SchedulerConfig::default(),
            out: String::new(),
        }
    }

    pub fn commit(&mut self, command: Command) -> Result<ApplyOutcome, String> {
        self.index += 1;
        let outcome =
            self.state.apply(self.index, self.now_ns, command).map_err(|e| e.to_string())?;
        self.absorb(&outcome);
        Ok(outcome)
    }

    /// Pending evaluations queue up; blocked ones go to the tracker; capacity changes
    /// release blocked ones.
    fn absorb(&mut self, outcome: &ApplyOutcome) {
        for eval in &outcome.evals {
            if eval.status == EvalStatus::Blocked {
                self.blocked.block((**eval).clone());
            } else if eval.status == EvalStatus::Pending {
                self.queue.push_back((**eval).clone());
            }
        }
        for class in &outcome.capacity_changed {
            self.blocked.unblock_class(class, self.index);
        }
        drop(self.blocked.drain_cancelled());
        for mut eval in self.blocked.drain_unblocked() {
            eval.status = EvalStatus::Pending;
            self.queue.push_back(eval);
        }
    }

    /// Pending evaluations that are due, without taking them off the queue.
    pub fn due_evals(&self) -> Vec<Evaluation> {
        self.queue.iter().filter(|e| e.wait_until.0 <= self.now_ns).cloned().collect()
    }

    pub fn take_stale(&mut self) {
        self.stale = Some(self.state.snapshot());
    }

    pub fn run_stale(&mut self) {
        if let (Some(eval), Some(stale)) = (self.queue.pop_front(), self.stale.take()) {
            let text = self.process(&eval, Some(stale));
            self.out.push_str(&text);
        }
    }

    pub fn step_line(&mut self, line: &str) -> Result<(), String> {
        self.step(line)
    }

    pub fn eval_for(&mut self, job_id: &str, trigger: TriggeredBy) -> Option<Evaluation> {
        let job = self.state.job("default", job_id)?;
        Some(Evaluation::for_job(self.ids.next_id(), job, trigger, 0))
    }

    /// Evaluations for every job with live allocations on `node`, and every system job.
    fn node_evals(&mut self, node_id: &str, trigger: TriggeredBy) -> Vec<Evaluation> {
        let mut jobs: Vec<String> = self
            .state
            .node_allocs(node_id)
            .map(|n| {
                n.allocs.values().filter(|a| !a.is_terminal()).map(|a| a.job_id.clone()).collect()
            })
            .unwrap_or_default();
        jobs.extend(
            self.state
                .jobs()
                .filter(|j| matches!(j.job_type, JobType::System | JobType::Sysbatch) && !j.stop)
                .map(|j| j.id.clone()),
        );
        jobs.sort();
        jobs.dedup();
        jobs.iter()
            .filter_map(|j| self.eval_for(j, trigger))
            .map(|e| Evaluation { node_id: node_id.into(), ..e })
            .collect()
    }

    pub fn run_script(&mut self, script: &str) -> String {
        let mut lines = script.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "job" {
                let hcl: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "end").collect();
                self.register(&hcl.join("\n"));
                continue;
            }
            let _ = writeln!(self.out, "> {line}");
            if let Err(error) = self.step(line) {
                let _ = writeln!(self.out, "error: {error}");
            }
        }
        std::mem::take(&mut self.out)
    }

    pub fn register(&mut self, hcl: &str) {
        let job = match parse("scenario.hcl", hcl.as_bytes(), &ParseOptions::default()) {
            Ok(job) => job,
            Err(report) => panic!("scenario job does not parse:\n{report}"),
        };
        self.register_job(job);
    }

    pub fn register_job(&mut self, job: drover_core::model::Job) {
        let _ = writeln!(self.out, "> job {} registered", job.id);
        let eval = Evaluation {
            id: self.ids.next_id(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            scheduler: SchedulerType::from(job.job_type),
            triggered_by: TriggeredBy::JobRegister,
            job_id: job.id.clone(),
            status: EvalStatus::Pending,
            ..Evaluation::default()
        };
        let eval = (!job.is_template()).then_some(eval);
        if let Err(error) = self.commit(Command::JobRegister { job, enforce_index: None, eval }) {
            let _ = writeln!(self.out, "error: {error}");
        }
    }

    fn step(&mut self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["node", id, rest @ ..] => self.add_node(id, rest),
            ["stop-job", id] => {
                let eval = self.eval_for(id, TriggeredBy::JobDeregister);
                self.commit(Command::JobDeregister {
                    namespace: "default".into(),
                    job_id: (*id).into(),
                    purge: false,
                    eval,
                })?;
                Ok(())
            }
            ["node-status", id, status] => {
                let status = match *status {
                    "down" => NodeStatus::Down,
                    "ready" => NodeStatus::Ready,
                    other => return Err(format!("unknown status {other}")),
                };
                let evals = self.node_evals(id, TriggeredBy::NodeUpdate);
                self.commit(Command::NodeStatus { node_id: (*id).into(), status, evals }).map(drop)
            }
            ["node-eligibility", id, value] => {
                let eligibility = if *value == "eligible" {
                    NodeEligibility::Eligible
                } else {
                    NodeEligibility::Ineligible
                };
                let evals = self.node_evals(id, TriggeredBy::NodeUpdate);
                self.commit(Command::NodeEligibility { node_id: (*id).into(), eligibility, evals })
                    .map(drop)
            }
            ["drain", id, rest @ ..] => {
                let spec = DrainSpec {
                    ignore_system_jobs: rest.contains(&"ignore-system"),
                    ..DrainSpec::default()
                };
                let drain = Some(DrainStrategy::start(spec, Timestamp(self.now_ns)));
                let evals = self.node_evals(id, TriggeredBy::NodeDrain);
                self.commit(Command::NodeDrain { node_id: (*id).into(), drain, evals }).map(drop)
            }
            ["alloc", name, status] => self.alloc_status(name, status),
            ["health", name, verdict] => self.alloc_health(name, *verdict == "healthy"),
            ["promote", job] => {
                let deployment = self.latest_deployment(job)?;
                let eval = self.eval_for(job, TriggeredBy::DeploymentWatcher);
                let all = true;
                let command = Command::DeploymentPromote {
                    deployment_id: deployment,
                    all,
                    groups: vec![],
                    eval,
                };
                self.commit(command).map(drop)
            }
            ["fail-deployment", job] => {
                // What the deployment watcher proposes on an unhealthy allocation.
                let deployment_id = self.latest_deployment(job)?;
                let update = DeploymentStatusUpdate {
                    deployment_id,
                    status: DeploymentStatus::Failed,
                    status_description: deployment_description::FAILED_ALLOCATIONS.into(),
                };
                let eval = self.eval_for(job, TriggeredBy::DeploymentWatcher);
                self.commit(Command::DeploymentWatcherUpdate { update, revert: None, eval })
                    .map(drop)
            }
            ["allow-reschedule", name] => {
                // What the deployment watcher proposes for an unhealthy allocation of a
                // group with a progress deadline whose reschedule policy has attempts left.
                let alloc = self
                    .state
                    .allocs()
                    .filter(|a| a.name == *name && !a.server_terminal())
                    .max_by_key(|a| a.create_index)
                    .cloned()
                    .ok_or_else(|| format!("no allocation named {name}"))?;
                let allow = DesiredTransition { reschedule: Some(true), ..Default::default() };
                let transitions = BTreeMap::from([(alloc.id.clone(), allow)]);
                let evals = self.eval_for(&alloc.job_id, TriggeredBy::DeploymentWatcher);
                let evals = evals.into_iter().collect();
                self.commit(Command::AllocDesiredTransition { transitions, evals }).map(drop)
            }
            ["show", "deployment", job] => {
                self.show_deployment(job)?;
                Ok(())
            }
            ["time", delta] => {
                let secs: i64 = delta
                    .trim_start_matches('+')
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|_| "bad time")?;
                self.now_ns += secs * 1_000_000_000;
                Ok(())
            }
            ["stale"] => {
                self.stale = Some(self.state.snapshot());
                Ok(())
            }
            ["algorithm", "spread"] => {
                self.config.algorithm = Algorithm::Spread;
                Ok(())
            }
            ["run"] => {
                self.run();
                Ok(())
            }
            ["run-job", job] => {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    self.queue.drain(..).partition(|e| e.job_id == *job);
                self.queue.extend(rest);
                for eval in mine {
                    let text = self.process(&eval, None);
                    self.out.push_str(&text);
                }
                Ok(())
            }
            ["run-stale"] => {
                let eval = self.queue.pop_front().ok_or("no queued evaluation")?;
                let stale = self.stale.take().ok_or("no stale snapshot taken")?;
                let text = self.process(&eval, Some(stale));
                self.out.push_str(&text);
                Ok(())
            }
            ["eval", job] => {
                let eval = self.eval_for(job, TriggeredBy::JobRegister).ok_or("no such job")?;
                self.commit(Command::EvalUpsert { evals: vec![eval] }).map(drop)
            }
            ["show", "allocs"] => {
                self.show_allocs();
                Ok(())
            }
            _ => Err(format!("unknown command: {line}")),
        }
    }

    fn add_node(&mut self, id: &str, words: &[&str]) -> Result<(), String> {
        let mut node =
            Node { id: id.into(), name: id.into(), status: NodeStatus::Ready, ..Node::default() };
        node.node_resources.cpu.cpu_shares = 4000;
        node.node_resources.memory.memory_mb = 8192;
        node.node_resources.disk.disk_mb = 100_000;
        node.attributes.insert("kernel.name".into(), "linux".into());
        node.attributes.insert("unique.hostname".into(), id.into());
        let mut drivers = vec!["docker", "exec", "raw_exec"];
        for word in words {
            let (key, value) =
                word.split_once('=').ok_or_else(|| format!("expected key=value: {word}"))?;
            let number = || value.parse::<i64>().map_err(|_| format!("not a number: {word}"));
            match key {
                "dc" => node.datacenter = value.into(),
                "pool" => node.node_pool = value.into(),
                "class" => node.node_class = value.into(),
                "cpu" => node.node_resources.cpu.cpu_shares = number()?,
                "mem" => node.node_resources.memory.memory_mb = number()?,
                "disk" => node.node_resources.disk.disk_mb = number()?,
                "reserved_ports" => {
                    node.reserved_resources.networks.reserved_host_ports = value.into()
                }
                "drivers" => drivers = value.split(',').collect(),
                "status" if value == "down" => node.status = NodeStatus::Down,
                _ if key.starts_with("attr.") => {
                    drop(node.attributes.insert(key[5..].into(), value.into()))
                }
                _ if key.starts_with("meta.") => {
                    drop(node.meta.insert(key[5..].into(), value.into()))
                }
                _ => return Err(format!("unknown node field {key}")),
            }
        }
        for driver in drivers {
            node.drivers.insert(
                driver.into(),
                DriverInfo { detected: true, healthy: true, ..DriverInfo::default() },
            );
        }
        let existing = self.state.node(id).is_some();
        self.commit(Command::NodeRegister { node })?;
        if !existing {
            let evals = self.node_evals(id, TriggeredBy::NodeUpdate);
            if !evals.is_empty() {
                self.commit(Command::EvalUpsert { evals })?;
            }
        }
        Ok(())
    }

    fn latest_deployment(&self, job: &str) -> Result<String, String> {
        let deployment = self.state.latest_deployment("default", job).ok_or("no deployment")?;
        Ok(deployment.id.clone())
    }

    /// The newest allocation named `name` that neither the server nor its client has ended;
    /// `name@node` picks the one on that node (a system job's are all named `job.g[0]`).
    fn newest_live_alloc(&self, name: &str) -> Result<Arc<Allocation>, String> {
        let (name, node) = match name.split_once('@') {
            Some((name, node)) => (name, Some(node)),
            None => (name, None),
        };
        self.state
            .allocs()
            .filter(|a| a.name == name && node.is_none_or(|n| a.node_id == n))
            .filter(|a| !a.server_terminal() && !a.client_status.is_terminal())
            .max_by_key(|a| a.create_index)
            .cloned()
            .ok_or_else(|| match node {
                Some(node) => format!("no live allocation named {name} on {node}"),
                None => format!("no live allocation named {name}"),
            })
    }

    /// The client's health verdict for the newest live allocation named `name`.
    fn alloc_health(&mut self, name: &str, healthy: bool) -> Result<(), String> {
        let alloc = self.newest_live_alloc(name)?;
        let status = AllocDeploymentStatus {
            healthy: Some(healthy),
            timestamp: Timestamp(self.now_ns),
            canary: alloc.is_canary(),
            modify_index: 0,
        };
        let update = AllocClientUpdate {
            alloc_id: alloc.id.clone(),
            client_status: AllocClientStatus::Running,
            deployment_status: Some(status),
            deployment_id: alloc.deployment_id.clone(),
            report_seq: self.index + 1,
            ..AllocClientUpdate::default()
        };
        self.commit(Command::AllocClientUpdate { updates: vec![update], evals: vec![] }).map(drop)
    }

    fn show_deployment(&mut self, job: &str) -> Result<(), String> {
        let id = self.latest_deployment(job)?;
        let d = self.state.deployment(&id).expect("latest exists").clone();
        let _ = writeln!(
            self.out,
            "  deployment v{} {}: {}",
            d.job_version,
            d.status.as_str(),
            d.status_description
        );
        for (name, group) in &d.task_groups {
            let _ = writeln!(self.out, "    {}", render::deployment_group_line(name, group));
        }
        Ok(())
    }

    fn alloc_status(&mut self, name: &str, status: &str) -> Result<(), String> {
        let client_status = match status {
            "running" => AllocClientStatus::Running,
            "failed" => AllocClientStatus::Failed,
            "complete" => AllocClientStatus::Complete,
            other => return Err(format!("unknown client status {other}")),
        };
        let alloc = self.newest_live_alloc(name)?;
        let update = AllocClientUpdate {
            alloc_id: alloc.id.clone(),
            client_status,
            client_description: String::new(),
            report_seq: self.index + 1,
            ..AllocClientUpdate::default()
        };
        let evals = if client_status == AllocClientStatus::Failed {
            self.eval_for(&alloc.job_id, TriggeredBy::AllocFailure).into_iter().collect()
        } else {
            Vec::new()
        };
        self.commit(Command::AllocClientUpdate { updates: vec![update], evals }).map(drop)
    }

    /// Processes ready evaluations until none is left (bounded, so a livelock fails).
    pub fn run(&mut self) {
        let mut waiting = Vec::new();
        for _ in 0..100 {
            let Some(eval) = self.queue.pop_front() else { break };
            if eval.wait_until.0 > self.now_ns {
                waiting.push(eval);
                continue;
            }
            let text = self.process(&eval, None);
            self.out.push_str(&text);
        }
        self.queue.extend(waiting);
    }

    pub fn process(&mut self, eval: &Evaluation, stale: Option<Snapshot>) -> String {
        let mut log = Log {
            state: &mut self.state,
            next_index: &mut self.index,
            now_ns: self.now_ns,
            record: true,
        };
        let run = process(&mut log, eval, stale, self.config);
        for outcome in &run.outcomes {
            self.absorb(outcome);
        }
        render_run(&run, START_NS)
    }

    pub fn show_allocs(&mut self) {
        let mut allocs: Vec<_> = self.state.allocs().cloned().collect();
        allocs.sort_by(|a, b| (&a.name, a.create_index).cmp(&(&b.name, b.create_index)));
        for a in allocs {
            let _ = writeln!(
                self.out,
                "  {} on {}: desired={} client={} v{}",
                a.name,
                a.node_id,
                a.desired_status.as_str(),
                a.client_status.as_str(),
                a.job_version
            );
            if let Some(status) = &a.deployment_status {
                let health = match status.healthy {
                    Some(true) => "healthy",
                    Some(false) => "unhealthy",
                    None => "health unset",
                };
                let canary = if status.canary { " canary" } else { "" };
                let _ = writeln!(self.out, "    deployment: {health}{canary}");
            }
        }
    }
}
