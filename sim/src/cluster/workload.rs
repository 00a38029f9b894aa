//! The operator's workload, drawn from the seed: register, update in place and
//! destructively, scale, stop, purge and re-register service, batch, system, sysbatch and
//! periodic batch jobs, force a periodic job's launch, and drain nodes. Each call goes to
//! a random server of either region and names the job's region, so about half of them
//! are forwarded to the other region.
//!
//! A service or system job may start its destructive updates with canaries, promoted
//! automatically once healthy.
//!
//! A periodic job launches every one to three minutes (a seven-field cron, seconds
//! first), with `prohibit_overlap` on half of them; its children are batch jobs whose
//! tasks exit within half a minute.
//!
//! Demand stays well under the clients' capacity, so every job can converge once faults
//! stop.

use super::client::node_id;
use super::params::REGIONS;
use super::world::{NodeKey, region_name};
use crate::rng::SimRng;
use drover_core::jobspec::{ParseOptions, parse};
use drover_core::model::DurationNs;
use drover_core::model::{DrainSpec, Job, NodeEligibility};
use drover_core::server::{ApiCall, ApiReply, ApiRequest};
use drover_core::state::State;
use std::collections::{BTreeMap, BTreeSet};

/// Jobs a region holds at most, so demand stays under capacity.
pub const JOBS_PER_REGION_MAX: usize = 6;
/// A group's count at most.
pub const COUNT_MAX: u64 = 3;

#[derive(Clone, Debug)]
struct JobModel {
    job_type: &'static str,
    count: u64,
    cpu: u64,
    memory_mb: u64,
    port: bool,
    /// Bumped by a destructive update (it changes the task's env).
    generation: u64,
    priority: u64,
    stopped: bool,
    /// A periodic batch job: launches every this many minutes, with or without
    /// `prohibit_overlap`.
    periodic: Option<(u64, bool)>,
    /// A service or system job whose destructive updates start with canaries,
    /// promoted automatically once healthy: one for a service group, half the nodes
    /// (rounded up) for a system group.
    canary: bool,
}

pub struct Workload {
    next_job: u64,
    next_request: u64,
    jobs: BTreeMap<(u8, String), JobModel>,
    purged: BTreeMap<(u8, String), JobModel>,
    /// Client nodes per region, to drain.
    clients: BTreeMap<u8, Vec<NodeKey>>,
    draining: BTreeMap<NodeKey, bool>,
    /// Per job, the last call sent about it that leaves it registered (register, update,
    /// re-register, scale), by request id; `None` once a stop or purge was ever sent.
    registrations: BTreeMap<(u8, String), Option<u64>>,
    /// Batch and sysbatch jobs ever registered: they finish, and GC then reaps them.
    finishing: BTreeSet<(u8, String)>,
}

/// One call for the supervisor to send: to `server`, described for the trace.
#[derive(Clone)]
pub struct Op {
    pub server: NodeKey,
    pub call: ApiCall,
    pub what: String,
}

impl Workload {
    pub fn new(clients: &[NodeKey]) -> Workload {
        let mut by_region: BTreeMap<u8, Vec<NodeKey>> = BTreeMap::new();
        for &client in clients {
            by_region.entry(client.region).or_default().push(client);
        }
        Workload {
            next_job: 1,
            next_request: 1,
            jobs: BTreeMap::new(),
            purged: BTreeMap::new(),
            clients: by_region,
            draining: BTreeMap::new(),
            registrations: BTreeMap::new(),
            finishing: BTreeSet::new(),
        }
    }

    /// The next operation, or `None` when the one drawn has nothing to act on.
    /// `servers` are each region's servers now; the call goes to one of either region.
    pub fn next(&mut self, rng: &mut SimRng, servers: &BTreeMap<u8, Vec<NodeKey>>) -> Option<Op> {
        let region = rng.range(1, REGIONS as u64 + 1) as u8;
        let server_region = rng.range(1, REGIONS as u64 + 1) as u8;
        let server = rng.pick(servers.get(&server_region).map_or(&[][..], Vec::as_slice))?;
        let roll = rng.range(0, 100);
        let existing: Vec<String> =
            self.jobs.keys().filter(|(r, _)| *r == region).map(|(_, id)| id.clone()).collect();
        let (request, what) = match roll {
            0..30 => self.register_new(region, rng)?,
            30..45 => self.update(region, rng.pick_cloned(&existing)?, rng, false)?,
            45..55 => self.update(region, rng.pick_cloned(&existing)?, rng, true)?,
            55..67 => self.scale(region, rng.pick_cloned(&existing)?, rng)?,
            67..75 => self.stop(region, rng.pick_cloned(&existing)?, false),
            75..80 => self.stop(region, rng.pick_cloned(&existing)?, true),
            80..87 => self.reregister(region, rng)?,
            87..91 => self.force(region, rng)?,
            _ => self.drain(region, rng)?,
        };
        let request_id = self.next_request;
        self.next_request += 1;
        self.note_call(region, &request, request_id);
        let call = ApiCall { request_id, region: region_name(region), request };
        Some(Op { server, call, what })
    }

    fn register_new(&mut self, region: u8, rng: &mut SimRng) -> Option<(ApiRequest, String)> {
        if self.jobs.keys().filter(|(r, _)| *r == region).count() >= JOBS_PER_REGION_MAX {
            return None;
        }
        let id = format!("job{}", self.next_job);
        self.next_job += 1;
        let kind = rng.range(0, 6) as usize;
        let job_type = ["service", "service", "batch", "system", "sysbatch", "batch"][kind];
        let periodic = (kind == 5).then(|| (rng.range(1, 4), rng.chance(0.5)));
        let canary = matches!(job_type, "service" | "system") && rng.chance(0.3);
        let model = JobModel {
            job_type,
            count: rng.range(1, COUNT_MAX + 1),
            cpu: rng.range(50, 300),
            memory_mb: rng.range(32, 256),
            // A dynamic port: the applier must still never give one port twice.
            port: rng.chance(0.4),
            generation: 0,
            priority: 50,
            stopped: false,
            periodic,
            canary,
        };
        let request = register(&id, &model);
        let periodic = periodic.map_or(String::new(), |(m, o)| {
            format!(" periodic every {m}m{}", if o { " no-overlap" } else { "" })
        });
        let canary = if model.canary { " canary" } else { "" };
        let what = format!("register {id} {job_type} count={}{periodic}{canary}", model.count);
        self.jobs.insert((region, id), model);
        Some((request, what))
    }

    fn update(
        &mut self,
        region: u8,
        id: String,
        rng: &mut SimRng,
        destructive: bool,
    ) -> Option<(ApiRequest, String)> {
        let model = self.jobs.get_mut(&(region, id.clone()))?;
        model.stopped = false;
        if destructive {
            model.generation += 1;
        } else {
            // Priority is not a task change: running allocations take it in place.
            model.priority = rng.range(30, 90);
        }
        let kind = if destructive { "destructive" } else { "in-place" };
        Some((register(&id, model), format!("update {id} {kind}")))
    }

    fn scale(&mut self, region: u8, id: String, rng: &mut SimRng) -> Option<(ApiRequest, String)> {
        let model = self.jobs.get_mut(&(region, id.clone()))?;
        if matches!(model.job_type, "system" | "sysbatch") {
            return None;
        }
        model.count = rng.range(0, COUNT_MAX + 1);
        let request = ApiRequest::JobScale {
            namespace: "default".into(),
            job_id: id.clone(),
            group: "g".into(),
            count: model.count as i64,
        };
        Some((request, format!("scale {id} to {}", model.count)))
    }

    fn stop(&mut self, region: u8, id: String, purge: bool) -> (ApiRequest, String) {
        if purge {
            if let Some(model) = self.jobs.remove(&(region, id.clone())) {
                self.purged.insert((region, id.clone()), model);
            }
        } else if let Some(model) = self.jobs.get_mut(&(region, id.clone())) {
            model.stopped = true;
        }
        let what = format!("{} {id}", if purge { "purge" } else { "stop" });
        (ApiRequest::JobDeregister { namespace: "default".into(), job_id: id, purge }, what)
    }

    /// Registers a stopped or purged job again, as it was.
    fn reregister(&mut self, region: u8, rng: &mut SimRng) -> Option<(ApiRequest, String)> {
        let stopped: Vec<String> = self
            .jobs
            .iter()
            .filter(|((r, _), m)| *r == region && m.stopped)
            .map(|((_, id), _)| id.clone())
            .collect();
        let purged: Vec<String> =
            self.purged.keys().filter(|(r, _)| *r == region).map(|(_, id)| id.clone()).collect();
        if let Some(id) = rng.pick_cloned(&stopped) {
            let model = self.jobs.get_mut(&(region, id.clone()))?;
            model.stopped = false;
            return Some((register(&id, model), format!("re-register stopped {id}")));
        }
        let id = rng.pick_cloned(&purged)?;
        if self.jobs.keys().filter(|(r, _)| *r == region).count() >= JOBS_PER_REGION_MAX {
            return None;
        }
        let model = self.purged.remove(&(region, id.clone()))?;
        let request = register(&id, &model);
        self.jobs.insert((region, id.clone()), model);
        Some((request, format!("re-register purged {id}")))
    }

    /// `job periodic force` on one of the region's periodic jobs.
    fn force(&mut self, region: u8, rng: &mut SimRng) -> Option<(ApiRequest, String)> {
        let periodic: Vec<String> = self
            .jobs
            .iter()
            .filter(|((r, _), m)| *r == region && m.periodic.is_some())
            .map(|((_, id), _)| id.clone())
            .collect();
        let id = rng.pick_cloned(&periodic)?;
        let what = format!("force {id}");
        Some((ApiRequest::JobPeriodicForce { namespace: "default".into(), job_id: id }, what))
    }

    /// Remembers what a call does to its job's registration.
    fn note_call(&mut self, region: u8, request: &ApiRequest, request_id: u64) {
        match request {
            ApiRequest::JobRegister { job, .. } => {
                if job.finishes() && !job.is_template() {
                    self.finishing.insert((region, job.id.clone()));
                }
                let seen = self.registrations.entry((region, job.id.clone())).or_insert(Some(0));
                if seen.is_some() {
                    *seen = Some(request_id);
                }
            }
            ApiRequest::JobScale { job_id, .. } => {
                if let Some(Some(last)) = self.registrations.get_mut(&(region, job_id.clone())) {
                    *last = request_id;
                }
            }
            ApiRequest::JobDeregister { job_id, .. } => {
                self.registrations.insert((region, job_id.clone()), None);
            }
            _ => {}
        }
    }

    /// Nothing acknowledged is lost: every job whose last call (a registration or a
    /// scale) was acknowledged, and that was never stopped or purged, must be in its
    /// region's state after the liveness phase, not stopped. (A job ever stopped is left
    /// out: a stop sent earlier may apply later, and GC may then purge it. A batch or
    /// sysbatch job may be missing: once it finished, GC reaps it whole.)
    pub fn lost_acknowledged(
        &self,
        replies: &BTreeMap<u64, ApiReply>,
        states: &BTreeMap<u8, &State>,
    ) -> Vec<String> {
        let mut lost = Vec::new();
        for ((region, id), last) in &self.registrations {
            let Some(request_id) = last else { continue };
            if !matches!(replies.get(request_id), Some(ApiReply::Write { .. })) {
                continue;
            }
            let Some(state) = states.get(region) else { continue };
            match state.job("default", id) {
                Some(job) if !job.stop => {}
                Some(_) => lost
                    .push(format!("r{region}: acknowledged job {id} (#{request_id}) is stopped")),
                None if self.finishing.contains(&(*region, id.clone())) => {}
                None => {
                    lost.push(format!("r{region}: acknowledged job {id} (#{request_id}) is lost"))
                }
            }
        }
        lost
    }

    fn drain(&mut self, region: u8, rng: &mut SimRng) -> Option<(ApiRequest, String)> {
        let clients = self.clients.get(&region)?.clone();
        let client = rng.pick(&clients)?;
        self.draining.entry(client).or_default();
        // At most one drained node per region at a time, so capacity stays ample.
        let others = self
            .draining
            .iter()
            .filter(|(k, d)| **d && k.region == region && **k != client)
            .count();
        let draining = self.draining.get_mut(&client)?;
        if *draining {
            *draining = false;
            if rng.chance(0.5) {
                let request = ApiRequest::NodeDrain { node_id: node_id(client), drain: None };
                return Some((request, format!("cancel drain of {}", client.name())));
            }
            let request = ApiRequest::NodeEligibility {
                node_id: node_id(client),
                eligibility: NodeEligibility::Eligible,
            };
            return Some((request, format!("mark {} eligible", client.name())));
        }
        if others > 0 {
            return None;
        }
        *draining = true;
        let deadline = DurationNs(rng.range(1, 60) as i64 * 1_000_000_000);
        let drain = DrainSpec { deadline, ignore_system_jobs: rng.chance(0.5) };
        let request = ApiRequest::NodeDrain { node_id: node_id(client), drain: Some(drain) };
        Some((request, format!("drain {}", client.name())))
    }

    /// Calls that undo every drain, for the liveness phase: on every client, since a
    /// drain or an undrain the workload sent may have been lost or answered by no one.
    pub fn undrain_all(&mut self, servers: &BTreeMap<u8, Vec<NodeKey>>) -> Vec<Op> {
        let clients: Vec<NodeKey> = self.clients.values().flatten().copied().collect();
        let mut ops = Vec::new();
        for client in clients {
            self.draining.insert(client, false);
            for request in [
                ApiRequest::NodeDrain { node_id: node_id(client), drain: None },
                ApiRequest::NodeEligibility {
                    node_id: node_id(client),
                    eligibility: NodeEligibility::Eligible,
                },
            ] {
                let request_id = self.next_request;
                self.next_request += 1;
                let call = ApiCall { request_id, region: region_name(client.region), request };
                let Some(&server) = servers.get(&client.region).and_then(|s| s.first()) else {
                    continue;
                };
                ops.push(Op { server, call, what: format!("undrain {}", client.name()) });
            }
        }
        ops
    }
}

fn register(id: &str, model: &JobModel) -> ApiRequest {
    let job = job(id, model);
    ApiRequest::JobRegister { job: Box::new(job), enforce_index: None }
}

fn job(id: &str, model: &JobModel) -> Job {
    let count = match model.job_type {
        "system" | "sysbatch" => String::new(),
        _ => format!("    count = {}\n", model.count),
    };
    let network = if model.port { "    network {\n      port \"http\" {}\n    }\n" } else { "" };
    let update = match (model.canary, model.job_type) {
        (true, "system") => "    update {\n      canary = 50\n      auto_promote = true\n    }\n",
        (true, _) => "    update {\n      canary = 1\n      auto_promote = true\n    }\n",
        (false, _) => "",
    };
    let periodic = model.periodic.map_or(String::new(), |(minutes, overlap)| {
        format!(
            "  periodic {{\n    crons = [\"0 */{minutes} * * * * *\"]\n    prohibit_overlap = {overlap}\n  }}\n"
        )
    });
    let hcl = format!(
        "job \"{id}\" {{\n  type = \"{}\"\n  priority = {}\n{periodic}  group \"g\" {{\n{count}{network}{update}    restart {{\n      attempts = 2\n      interval = \"1m\"\n      delay = \"2s\"\n      mode = \"fail\"\n    }}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n      }}\n      env {{\n        GENERATION = \"{}\"\n      }}\n      resources {{\n        cpu = {}\n        memory = {}\n      }}\n    }}\n  }}\n}}\n",
        model.job_type, model.priority, model.generation, model.cpu, model.memory_mb
    );
    match parse("sim.nomad.hcl", hcl.as_bytes(), &ParseOptions::default()) {
        Ok(job) => job,
        Err(report) => panic!("the simulator's job does not parse:\n{report}\n{hcl}"),
    }
}
