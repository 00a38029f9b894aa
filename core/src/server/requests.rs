//! Requests: client RPCs and API calls turned into commands, forwarded to the leader, or
//! answered from local state (blocking until the table read passes the caller's index).

use super::leader::{GcConfig, PlanOrigin};
use super::{
    ApiReply, ApiRequest, ApiResponse, BLOCKING_QUERIES_MAX, BLOCKING_WAIT_MAX_MS, ClientCall,
    ClientConn, DryRun, FORWARDS_PENDING_MAX, Forwarded, PeerMessage, Query, QueryResult, Reply,
    SchedulePass, Server,
};
use crate::id::seed_from;
use crate::model::{
    AllocClientStatus, Allocation, DeploymentStatus, DrainStrategy, Evaluation, Job,
    NodeEligibility, NodeStatus, SchedulerType, Timestamp, TriggeredBy, deployment_description,
};
use crate::raft::{Index, NodeId, Term};
use crate::rpc::{ClientRequest, NODE_NOT_FOUND, ServerReply, ServerRpc};
use crate::state::{AllocClientUpdate, ApplyOutcome, AutopilotConfig, Command, JobKey, State};
use crate::time::Millis;
use rand_core::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Who asked an API question: a local caller, or a follower that forwarded it.
#[derive(Clone, Debug)]
pub(super) enum Caller {
    Api(u64),
    Peer { peer: NodeId, forward_id: u64 },
}

/// What a committed write must be answered with.
#[derive(Clone, Debug)]
pub(super) enum Waiter {
    Api {
        caller: Caller,
        eval_ids: Vec<String>,
    },
    /// Node register or heartbeat: the node's TTL.
    Heartbeat {
        conn: ClientConn,
        request_id: u64,
        node_id: String,
        ttl_ms: u64,
    },
    AllocUpdate {
        conn: ClientConn,
        request_id: u64,
    },
    Plan {
        origin: PlanOrigin,
        eval_id: String,
        token: String,
    },
    /// A check-and-set write: answered with whether it wrote.
    Cas {
        caller: Caller,
    },
    /// A worker's final evaluations: ack the evaluation once they are stored.
    Finish {
        eval_id: String,
        token: String,
    },
    /// The leader's own housekeeping.
    Leader,
}

/// A command to commit and the IDs of the evaluations it creates.
type WriteCommand = (Command, Vec<String>);

#[derive(Clone, Debug)]
pub(super) struct PendingWrite {
    pub term: Term,
    pub waiter: Waiter,
}

#[derive(Clone, Debug)]
pub(super) enum ReadCaller {
    Api(Caller),
    Client { conn: ClientConn, request_id: u64 },
}

#[derive(Clone, Debug)]
pub(super) struct ParkedRead {
    caller: ReadCaller,
    query: Query,
    min_index: u64,
    pub deadline: Millis,
}

impl Server {
    pub(super) fn on_client_rpc(&mut self, now: Millis, call: ClientCall) {
        let (conn, request_id) = (call.conn, call.rpc.request_id);
        let is_read = matches!(call.rpc.request, ClientRequest::NodeAllocs { .. });
        if self.leader.is_none() && !is_read {
            let reply = ServerReply::NotLeader {
                leader: self.leader_id().and_then(|id| self.peer_addr(id)),
            };
            return self.reply_client(conn, request_id, reply);
        }
        match call.rpc.request {
            ClientRequest::NodeRegister { node } => {
                self.node_register(now, conn, request_id, *node)
            }
            ClientRequest::NodeHeartbeat { node_id, status } => {
                self.node_heartbeat(now, conn, request_id, &node_id, status)
            }
            ClientRequest::AllocUpdate { node_id, updates } => {
                self.alloc_update(now, conn, request_id, &node_id, updates)
            }
            // Reads are served by any server, from its own state.
            ClientRequest::NodeAllocs { node_id, min_index, wait_ms } => {
                let caller = ReadCaller::Client { conn, request_id };
                self.read(now, caller, Query::ClientAllocs { node_id }, min_index, wait_ms)
            }
        }
    }

    fn reply_client(&mut self, conn: ClientConn, request_id: u64, reply: ServerReply) {
        self.replies.push_back(Reply::Client { conn, rpc: ServerRpc { request_id, reply } });
    }

    fn node_register(
        &mut self,
        now: Millis,
        conn: ClientConn,
        request_id: u64,
        node: crate::model::Node,
    ) {
        if node.id.is_empty() {
            let message = "missing node ID for client registration".to_owned();
            return self.reply_client(conn, request_id, ServerReply::Error { message });
        }
        let ttl_ms = self.reset_heartbeat(now, &node.id);
        let ready = node.status == NodeStatus::Ready;
        let node_id = node.id.clone();
        let waiter = Waiter::Heartbeat { conn, request_id, node_id: node_id.clone(), ttl_ms };
        self.propose(Command::NodeRegister { node }, now, waiter);
        // A new ready node may run system jobs: evaluate them for it.
        let evals: Vec<Evaluation> =
            if ready { self.system_job_evals(now, &node_id) } else { Vec::new() };
        if !evals.is_empty() {
            self.propose(Command::EvalUpsert { evals }, now, Waiter::Leader);
        }
    }

    fn system_job_evals(&mut self, now: Millis, node_id: &str) -> Vec<Evaluation> {
        let keys: Vec<JobKey> = self
            .state
            .jobs()
            .filter(|j| {
                matches!(
                    j.job_type,
                    crate::model::JobType::System | crate::model::JobType::Sysbatch
                ) && !j.stop
            })
            .map(|j| JobKey::of_job(j))
            .collect();
        keys.iter()
            .filter_map(|k| self.job_eval(now, k, TriggeredBy::NodeUpdate))
            .map(|e| Evaluation { node_id: node_id.to_owned(), ..e })
            .collect()
    }

    fn node_heartbeat(
        &mut self,
        now: Millis,
        conn: ClientConn,
        request_id: u64,
        node_id: &str,
        status: NodeStatus,
    ) {
        let Some(node) = self.state.node(node_id) else {
            let message = format!("node not found: {node_id}");
            return self.reply_client(conn, request_id, ServerReply::Error { message });
        };
        let changed = node.status != status;
        let ttl_ms = self.reset_heartbeat(now, node_id);
        let waiter = Waiter::Heartbeat { conn, request_id, node_id: node_id.to_owned(), ttl_ms };
        if changed {
            let evals = if status == NodeStatus::Ready {
                self.node_evals(now, node_id, TriggeredBy::NodeUpdate)
            } else {
                Vec::new()
            };
            let command = Command::NodeStatus { node_id: node_id.to_owned(), status, evals };
            return self.propose(command, now, waiter);
        }
        self.resolve_write(now, self.state.latest_index(), waiter, Ok(ApplyOutcome::default()));
    }

    fn alloc_update(
        &mut self,
        now: Millis,
        conn: ClientConn,
        request_id: u64,
        node_id: &str,
        updates: Vec<AllocClientUpdate>,
    ) {
        // Only the node's own allocations may be reported by it.
        let foreign = updates
            .iter()
            .find(|u| self.state.alloc(&u.alloc_id).is_some_and(|a| a.node_id != node_id));
        if let Some(update) = foreign {
            let message = format!("allocation {} does not run on node {node_id}", update.alloc_id);
            return self.reply_client(conn, request_id, ServerReply::Error { message });
        }
        let mut failed_jobs: Vec<JobKey> = updates
            .iter()
            .filter(|u| u.client_status == AllocClientStatus::Failed)
            .filter_map(|u| self.state.alloc(&u.alloc_id))
            .filter(|a| a.client_status != AllocClientStatus::Failed)
            .map(|a| JobKey::new(&a.namespace, &a.job_id))
            .collect();
        failed_jobs.sort();
        failed_jobs.dedup();
        let evals = failed_jobs
            .iter()
            .filter_map(|k| self.job_eval(now, k, TriggeredBy::AllocFailure))
            .collect();
        let command = Command::AllocClientUpdate { updates, evals };
        self.propose(command, now, Waiter::AllocUpdate { conn, request_id });
    }

    // ------------------------------------------------------------------ API calls

    pub(super) fn on_api_call(&mut self, now: Millis, caller: Caller, request: ApiRequest) {
        match request {
            ApiRequest::Read { query, min_index, wait_ms } => {
                self.read(now, ReadCaller::Api(caller), query, min_index, wait_ms)
            }
            ApiRequest::JobPlan { job } => self.dry_run(now, caller, *job),
            request if self.leader.is_some() => self.write(now, caller, request),
            request => self.forward_or_refuse(now, caller, request),
        }
    }

    fn forward_or_refuse(&mut self, now: Millis, caller: Caller, request: ApiRequest) {
        let leader = self.leader_id().filter(|&id| id != self.config.id);
        match (leader, &caller) {
            (Some(leader), Caller::Api(request_id))
                if self.forwards.len() < FORWARDS_PENDING_MAX =>
            {
                self.next_forward += 1;
                let forward_id = self.next_forward;
                let deadline = now + Millis(self.config.peer_rpc_timeout_ms);
                self.forwards.insert(forward_id, Forwarded { request_id: *request_id, deadline });
                let call =
                    super::ApiCall { request_id: *request_id, region: String::new(), request };
                self.send(leader, PeerMessage::Forward { forward_id, call });
            }
            _ => {
                let leader = self.leader_id().and_then(|id| self.peer_addr(id));
                self.answer(caller, ApiReply::NotLeader { leader });
            }
        }
    }

    /// A follower's forwarded write: served if leading, never forwarded again.
    pub(super) fn on_forward(
        &mut self,
        now: Millis,
        from: NodeId,
        forward_id: u64,
        call: super::ApiCall,
    ) {
        let caller = Caller::Peer { peer: from, forward_id };
        if self.leader.is_some() && call.request.is_write() {
            return self.write(now, caller, call.request);
        }
        let leader = self.leader_id().and_then(|id| self.peer_addr(id));
        self.answer(caller, ApiReply::NotLeader { leader });
    }

    pub(super) fn answer(&mut self, caller: Caller, reply: ApiReply) {
        match caller {
            Caller::Api(request_id) => {
                self.replies.push_back(Reply::Api(ApiResponse { request_id, reply }))
            }
            Caller::Peer { peer, forward_id } => {
                self.send(peer, PeerMessage::ForwardReply { forward_id, reply })
            }
        }
    }

    fn write(&mut self, now: Millis, caller: Caller, request: ApiRequest) {
        // Stopping a job that does not exist succeeds at once and commits nothing (Nomad).
        if let ApiRequest::JobDeregister { namespace, job_id, .. } = &request
            && self.state.job(namespace, job_id).is_none()
        {
            let index = self.state.latest_index();
            let reply = ApiReply::Write {
                index,
                job_modify_index: 0,
                eval_ids: vec![],
                eval_create_index: 0,
            };
            return self.answer(caller, reply);
        }
        if let ApiRequest::RaftRemovePeer { id, address } = request {
            return self.remove_peer(now, caller, id, address);
        }
        if let ApiRequest::AutopilotSetConfig { config, cas_index } = request {
            if let Err(message) = config.check() {
                return self.answer(caller, ApiReply::Error { message });
            }
            let command = Command::AutopilotSetConfig { config, cas_index };
            return self.propose(command, now, Waiter::Cas { caller });
        }
        match self.command_for(now, request) {
            Ok((command, eval_ids)) => self.propose(command, now, Waiter::Api { caller, eval_ids }),
            Err(message) => self.answer(caller, ApiReply::Error { message }),
        }
    }

    /// The command a write commits, and the evaluations it creates.
    fn command_for(&mut self, now: Millis, request: ApiRequest) -> Result<WriteCommand, String> {
        match request {
            ApiRequest::JobRegister { job, enforce_index } => {
                if job.id.is_empty() {
                    return Err("Missing job ID for registration".into());
                }
                let eval = self.eval_unless_template(now, &job, TriggeredBy::JobRegister);
                let ids = eval.iter().map(|e| e.id.clone()).collect();
                Ok((Command::JobRegister { job: *job, enforce_index, eval }, ids))
            }
            ApiRequest::JobDeregister { namespace, job_id, purge } => {
                let job = self.stored_job(&namespace, &job_id)?;
                let eval = self.eval_unless_template(now, &job, TriggeredBy::JobDeregister);
                let ids = eval.iter().map(|e| e.id.clone()).collect();
                Ok((Command::JobDeregister { namespace, job_id, purge, eval }, ids))
            }
            ApiRequest::JobEvaluate { namespace, job_id } => {
                let job = self.state.job(&namespace, &job_id).ok_or("job not found")?.clone();
                if job.periodic.is_some() {
                    return Err("can't evaluate periodic job".into());
                }
                if job.parameterized_job.is_some() {
                    return Err("can't evaluate parameterized job".into());
                }
                let eval = self.new_eval(now, &job, TriggeredBy::JobRegister);
                let ids = vec![eval.id.clone()];
                Ok((Command::EvalUpsert { evals: vec![eval] }, ids))
            }
            ApiRequest::JobRevert { namespace, job_id, version, enforce_prior_version } => {
                self.revert_command(now, (&namespace, &job_id), version, enforce_prior_version)
            }
            ApiRequest::JobScale { namespace, job_id, group, count } => {
                self.scale_command(now, (&namespace, &job_id), &group, count)
            }
            ApiRequest::JobPeriodicForce { namespace, job_id } => {
                self.periodic_force_command(now, &namespace, &job_id)
            }
            ApiRequest::NodeDrain { node_id, drain } => {
                self.stored_node(&node_id)?;
                // Cancelling a drain may make the node schedulable again: its system jobs
                // must be evaluated for it, as when it is marked eligible.
                let evals = match drain {
                    Some(_) => self.node_evals(now, &node_id, TriggeredBy::NodeDrain),
                    None => self.node_evals(now, &node_id, TriggeredBy::NodeUpdate),
                };
                let drain = drain.map(|s| DrainStrategy::start(s, Timestamp(Server::now_ns(now))));
                let ids = evals.iter().map(|e| e.id.clone()).collect();
                Ok((Command::NodeDrain { node_id, drain, evals }, ids))
            }
            ApiRequest::NodeEligibility { node_id, eligibility } => {
                self.stored_node(&node_id)?;
                let evals = match eligibility {
                    NodeEligibility::Eligible => {
                        self.node_evals(now, &node_id, TriggeredBy::NodeUpdate)
                    }
                    NodeEligibility::Ineligible => Vec::new(),
                };
                let ids = evals.iter().map(|e| e.id.clone()).collect();
                Ok((Command::NodeEligibility { node_id, eligibility, evals }, ids))
            }
            ApiRequest::NodePurge { node_id } => {
                self.stored_node(&node_id)?;
                let evals = self.node_evals(now, &node_id, TriggeredBy::NodeUpdate);
                // A purged node is no longer expected to heartbeat; one that still does is
                // told it is unknown and registers again.
                self.clear_heartbeat(&node_id);
                let ids = evals.iter().map(|e| e.id.clone()).collect();
                Ok((Command::NodeDeregister { node_id, evals }, ids))
            }
            ApiRequest::AllocStop { alloc_id } => self.alloc_stop_command(now, &alloc_id),
            ApiRequest::DeploymentPromote { deployment_id, all, groups } => {
                let eval = self.deployment_eval(now, &deployment_id, "promote")?;
                let ids = vec![eval.id.clone()];
                let eval = Some(eval);
                Ok((Command::DeploymentPromote { deployment_id, all, groups, eval }, ids))
            }
            ApiRequest::DeploymentFail { deployment_id } => {
                let eval = self.deployment_eval(now, &deployment_id, "fail")?;
                let status = (DeploymentStatus::Failed, deployment_description::FAILED_BY_USER);
                Ok(deployment_status_change(deployment_id, status, Some(eval)))
            }
            ApiRequest::DeploymentPause { deployment_id, pause: true } => {
                self.deployment_eval(now, &deployment_id, "pause")?;
                let status = (DeploymentStatus::Paused, deployment_description::PAUSED);
                Ok(deployment_status_change(deployment_id, status, None))
            }
            ApiRequest::DeploymentPause { deployment_id, pause: false } => {
                let eval = self.deployment_eval(now, &deployment_id, "resume")?;
                let deployment =
                    self.state.deployment(&deployment_id).ok_or("deployment not found")?;
                let description = if deployment.requires_promotion() {
                    deployment_description::RUNNING_NEEDS_PROMOTION
                } else {
                    deployment_description::RUNNING
                };
                let status = (DeploymentStatus::Running, description);
                Ok(deployment_status_change(deployment_id, status, Some(eval)))
            }
            ApiRequest::DeploymentAllocHealth { deployment_id, healthy, unhealthy } => {
                let eval =
                    self.deployment_eval(now, &deployment_id, "set health of allocations for a")?;
                let ids = vec![eval.id.clone()];
                let eval = Some(eval);
                let command =
                    Command::DeploymentAllocHealth { deployment_id, healthy, unhealthy, eval };
                Ok((command, ids))
            }
            ApiRequest::Read { .. }
            | ApiRequest::JobPlan { .. }
            | ApiRequest::RaftRemovePeer { .. }
            | ApiRequest::AutopilotSetConfig { .. } => Err("not a command".into()),
        }
    }

    /// A launch of a periodic job at `now` (Nomad's `Job.PeriodicForce`, same texts).
    fn periodic_force_command(
        &mut self,
        now: Millis,
        namespace: &str,
        job_id: &str,
    ) -> Result<WriteCommand, String> {
        let job = self.state.job(namespace, job_id).ok_or("job not found")?.clone();
        if !job.is_periodic_active() {
            return Err("can't force launch non-periodic job".into());
        }
        let launch_secs = (now.as_u64() / 1000) as i64;
        if self.state.job(namespace, &super::child_job_id(job_id, launch_secs)).is_some() {
            return Err(format!("periodic job {job_id} was already launched at {launch_secs}"));
        }
        let eval_id = self.ids.next_id();
        let now_ns = Server::now_ns(now);
        let command =
            super::periodic::launch_command(&job, launch_secs, eval_id.clone(), now_ns, true);
        Ok((command, vec![eval_id]))
    }

    /// Registers a kept version again, as Nomad's `Job.Revert` (same texts); with a prior
    /// version to enforce, the registration enforces the current job modify index too.
    fn revert_command(
        &mut self,
        now: Millis,
        (namespace, job_id): (&str, &str),
        version: u64,
        enforce_prior_version: Option<u64>,
    ) -> Result<WriteCommand, String> {
        let Some(current) = self.state.job(namespace, job_id).cloned() else {
            return Err(format!("job {job_id:?} not found"));
        };
        if version == current.version {
            return Err("can't revert to current version".into());
        }
        let Some(old) = self.state.job_version(namespace, job_id, version) else {
            return Err(format!(
                "job {job_id:?} in namespace {namespace:?} at version {version} not found"
            ));
        };
        if let Some(prior) = enforce_prior_version.filter(|&p| p != current.version) {
            let current = current.version;
            return Err(format!("Current job has version {current}; enforcing version {prior}"));
        }
        let enforce_index = enforce_prior_version.map(|_| current.job_modify_index);
        let job = (*old).clone();
        let eval = self.eval_unless_template(now, &job, TriggeredBy::JobRegister);
        let ids = eval.iter().map(|e| e.id.clone()).collect();
        Ok((Command::JobRegister { job, enforce_index, eval }, ids))
    }

    /// Sets a group's count, as Nomad's `Job.Scale` (same texts).
    fn scale_command(
        &mut self,
        now: Millis,
        (namespace, job_id): (&str, &str),
        group: &str,
        count: i64,
    ) -> Result<WriteCommand, String> {
        let Some(mut job) = self.state.job(namespace, job_id).map(|j| (**j).clone()) else {
            return Err(format!("job {job_id:?} not found"));
        };
        if count < 0 {
            return Err("scaling action count can't be negative".into());
        }
        if job.job_type == crate::model::JobType::System && count > 1 {
            return Err("jobs of type \"system\" can only be scaled to 1 or 0".into());
        }
        let Some(target) = job.task_groups.iter_mut().find(|g| g.name == group) else {
            return Err(format!(
                "task group {group:?} specified for scaling does not exist in job"
            ));
        };
        target.count = count as _;
        let enforce_index = Some(job.job_modify_index);
        let eval = self.eval_unless_template(now, &job, TriggeredBy::JobScaling);
        let ids = eval.iter().map(|e| e.id.clone()).collect();
        Ok((Command::JobRegister { job, enforce_index, eval }, ids))
    }

    /// Marks an allocation for migration with an `alloc-stop` evaluation of its job, as
    /// Nomad's `Alloc.Stop` does; the scheduler then stops and replaces it.
    fn alloc_stop_command(&mut self, now: Millis, alloc_id: &str) -> Result<WriteCommand, String> {
        let alloc = self.state.alloc(alloc_id).ok_or("alloc not found")?.clone();
        let job = self.stored_job(&alloc.namespace, &alloc.job_id)?;
        let eval = self.new_eval(now, &job, TriggeredBy::AllocStop);
        let ids = vec![eval.id.clone()];
        let transition =
            crate::model::DesiredTransition { migrate: Some(true), ..Default::default() };
        let transitions = [(alloc.id.clone(), transition)].into_iter().collect();
        Ok((Command::AllocDesiredTransition { transitions, evals: vec![eval] }, ids))
    }

    /// The evaluation an operator's deployment action creates for the deployment's job
    /// (Nomad's deployment endpoints refuse a terminal deployment with `can't <action>
    /// terminal deployment`, before anything is committed).
    fn deployment_eval(
        &mut self,
        now: Millis,
        deployment_id: &str,
        action: &str,
    ) -> Result<Evaluation, String> {
        let deployment = self.state.deployment(deployment_id).ok_or("deployment not found")?;
        if !deployment.is_active() {
            return Err(format!("can't {action} terminal deployment"));
        }
        let deployment = deployment.clone();
        let job = self.stored_job(&deployment.namespace, &deployment.job_id)?;
        let mut eval = self.new_eval(now, &job, TriggeredBy::DeploymentWatcher);
        eval.deployment_id = deployment.id.clone();
        Ok(eval)
    }

    fn stored_job(&self, namespace: &str, job_id: &str) -> Result<Job, String> {
        self.state
            .job(namespace, job_id)
            .map(|j| (**j).clone())
            .ok_or_else(|| "job not found".to_owned())
    }

    fn stored_node(&self, node_id: &str) -> Result<(), String> {
        self.state.node(node_id).map(drop).ok_or_else(|| NODE_NOT_FOUND.to_owned())
    }

    /// The evaluation a change of `job` creates, as Nomad's job endpoints do: none for a
    /// periodic or parameterized job, which is a template that never runs itself (its
    /// launches and dispatches are the jobs that get allocations).
    pub(super) fn eval_unless_template(
        &mut self,
        now: Millis,
        job: &Job,
        trigger: TriggeredBy,
    ) -> Option<Evaluation> {
        (!job.is_template()).then(|| self.new_eval(now, job, trigger))
    }

    fn new_eval(&mut self, now: Millis, job: &Job, trigger: TriggeredBy) -> Evaluation {
        Evaluation::for_job(self.ids.next_id(), job, trigger, Server::now_ns(now))
    }

    // ------------------------------------------------------------------ dry runs

    /// `job plan`: the job registered on a private copy of the state, scheduled as a pass,
    /// answered with what the scheduler would do. Nothing reaches Raft.
    fn dry_run(&mut self, now: Millis, caller: Caller, job: Job) {
        let running = self.state.job(&job.namespace, &job.id).map(|j| (**j).clone());
        let job_modify_index = running.as_ref().map_or(0, |j| j.job_modify_index);
        let submitted = job.clone();
        let mut eval = self.new_eval(now, &job, TriggeredBy::JobRegister);
        eval.annotate_plan = true;
        let mut snapshot = self.state.snapshot();
        let index = snapshot.latest_index() + 1;
        let register = Command::JobRegister { job, enforce_index: None, eval: Some(eval.clone()) };
        if let Err(error) = snapshot.apply(index, Server::now_ns(now), register) {
            return self.answer(caller, ApiReply::Error { message: error.to_string() });
        }
        let eval = snapshot.eval(&eval.id).map(|e| (**e).clone()).unwrap_or(eval);
        self.next_pass += 1;
        let pass_id = self.next_pass;
        self.dry_runs.insert(pass_id, DryRun { caller, job_modify_index, running, submitted });
        let seed = seed_from(&eval.id, index);
        let config = self.config.scheduler;
        let now_ns = Server::now_ns(now);
        self.passes.push_back(SchedulePass { pass_id, eval, snapshot, seed, now_ns, config });
    }

    pub(super) fn answer_dry_run(
        &mut self,
        dry_run: DryRun,
        output: crate::scheduler::ScheduleOutput,
    ) {
        let diff = crate::scheduler::annotate::plan_diff(
            dry_run.running.as_ref(),
            &dry_run.submitted,
            &output.desired_updates,
        );
        let diff = match diff {
            Ok(diff) => diff,
            Err(error) => {
                let message = format!("failed to create job diff: {error}");
                return self.answer(dry_run.caller, ApiReply::Error { message });
            }
        };
        let reply = ApiReply::Plan {
            job_modify_index: dry_run.job_modify_index,
            diff: Box::new(diff),
            desired_updates: output.desired_updates,
            failed_tg_allocs: output.failed_tg_allocs,
            created_evals: output.followups,
            plan: Box::new(output.plan),
        };
        self.answer(dry_run.caller, reply);
    }

    // ------------------------------------------------------------------ write outcomes

    pub(super) fn resolve_write(
        &mut self,
        now: Millis,
        index: Index,
        waiter: Waiter,
        result: Result<ApplyOutcome, String>,
    ) {
        match (waiter, result) {
            (Waiter::Api { caller, eval_ids }, Ok(outcome)) => {
                let eval_create_index = if eval_ids.is_empty() { 0 } else { index };
                let job_modify_index = outcome.job_modify_index;
                let reply =
                    ApiReply::Write { index, job_modify_index, eval_ids, eval_create_index };
                self.answer(caller, reply);
            }
            (Waiter::Cas { caller }, Ok(outcome)) => {
                self.answer(caller, ApiReply::CasWrite { index, updated: outcome.updated })
            }
            (Waiter::Heartbeat { conn, request_id, node_id, ttl_ms }, Ok(_)) => {
                let servers = self.voter_addrs();
                let allocs_index = self.state.node_server_index(&node_id);
                let reply = ServerReply::HeartbeatOk {
                    index,
                    heartbeat_ttl_ms: ttl_ms,
                    servers,
                    allocs_index,
                };
                self.reply_client(conn, request_id, reply);
            }
            (Waiter::AllocUpdate { conn, request_id }, Ok(_)) => {
                self.reply_client(conn, request_id, ServerReply::AllocUpdateOk { index })
            }
            (Waiter::Plan { origin, eval_id, token }, result) => {
                self.plan_applied(now, &eval_id, &token);
                let result = result.and_then(|_| self.committed_plan(index));
                self.answer_plan(now, &origin, result);
            }
            (Waiter::Finish { eval_id, token }, Ok(_)) => {
                if let Some(leader) = self.leader.as_mut() {
                    let _ = leader.broker.handle_ack(now, &eval_id, &token);
                }
            }
            (waiter, Err(message)) => self.fail_waiter(now, waiter, message),
            (Waiter::Leader, Ok(_)) => {}
        }
    }

    /// The verdict on the plan committed at `index` (read from the log entry).
    fn committed_plan(&mut self, index: Index) -> Result<super::PlanVerdict, String> {
        match self.committed_plans.remove(&index) {
            Some(verdict) => Ok(verdict),
            None => Err("the plan's entry did not hold a plan".into()),
        }
    }

    pub(super) fn fail_waiter(&mut self, now: Millis, waiter: Waiter, message: String) {
        match waiter {
            Waiter::Api { caller, .. } | Waiter::Cas { caller } => {
                self.answer(caller, ApiReply::Error { message })
            }
            Waiter::Heartbeat { conn, request_id, .. }
            | Waiter::AllocUpdate { conn, request_id } => {
                self.reply_client(conn, request_id, ServerReply::Error { message })
            }
            Waiter::Plan { origin, eval_id, token } => {
                self.plan_applied(now, &eval_id, &token);
                self.answer_plan(now, &origin, Err(message))
            }
            Waiter::Finish { .. } | Waiter::Leader => {}
        }
    }

    // ------------------------------------------------------------------ reads

    fn read(
        &mut self,
        now: Millis,
        caller: ReadCaller,
        query: Query,
        min_index: u64,
        wait_ms: u64,
    ) {
        if self.read_ready(&query, min_index)
            || wait_ms == 0
            || self.parked.len() >= BLOCKING_QUERIES_MAX
        {
            return self.answer_read(caller, &query);
        }
        let wait_ms = wait_ms.min(BLOCKING_WAIT_MAX_MS);
        let jitter_ms = self.rng.next_u64() % (wait_ms / 16).max(1);
        let deadline = now + Millis(wait_ms + jitter_ms);
        self.parked.push(ParkedRead { caller, query, min_index, deadline });
    }

    /// Whether a read can be answered: index 0 answers at once, except an event read,
    /// which waits for an event after the one it names. A client's watch waits for a
    /// change the servers made to its node's allocations.
    fn read_ready(&self, query: &Query, min_index: u64) -> bool {
        match query {
            Query::Events { after_index } => {
                self.events.back().is_some_and(|last| last.index > *after_index)
            }
            Query::ClientAllocs { node_id } => {
                min_index == 0 || self.state.node_server_index(node_id) > min_index
            }
            _ => min_index == 0 || table_index(&self.state, query) > min_index,
        }
    }

    fn answer_read(&mut self, caller: ReadCaller, query: &Query) {
        let (index, result) = match query {
            Query::Events { after_index } => {
                let index = self.events.back().map_or(*after_index, |last| last.index);
                let after = self.events.iter().filter(|e| e.index > *after_index);
                (index.max(*after_index), QueryResult::Events(after.cloned().collect()))
            }
            _ => {
                let result = run_query(&self.state, query, self.config.autopilot);
                (table_index(&self.state, query), result)
            }
        };
        match caller {
            ReadCaller::Api(caller) => self.answer(caller, ApiReply::Read { index, result }),
            ReadCaller::Client { conn, request_id } => {
                let allocs = match result {
                    QueryResult::Allocs(allocs) => allocs,
                    _ => Vec::new(),
                };
                self.reply_client(conn, request_id, ServerReply::NodeAllocs { index, allocs });
            }
        }
    }

    /// Answers parked reads whose table passed their index.
    pub(super) fn answer_parked(&mut self, _now: Millis) {
        let parked = std::mem::take(&mut self.parked);
        for read in parked {
            if self.read_ready(&read.query, read.min_index) {
                self.answer_read(read.caller, &read.query);
            } else {
                self.parked.push(read);
            }
        }
    }

    pub(super) fn expire_parked(&mut self, now: Millis) {
        let parked = std::mem::take(&mut self.parked);
        for read in parked {
            if read.deadline <= now {
                self.answer_read(read.caller, &read.query);
            } else {
                self.parked.push(read);
            }
        }
    }

    pub(super) fn expire_forwards(&mut self, now: Millis) {
        let expired: Vec<u64> =
            self.forwards.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            let forwarded = self.forwards.remove(&id).expect("listed above");
            let message = "rpc error: timeout waiting for the leader".to_owned();
            self.answer(Caller::Api(forwarded.request_id), ApiReply::Error { message });
        }
    }
}

/// The command of an operator's deployment status change and the evaluation it creates.
fn deployment_status_change(
    deployment_id: String,
    (status, description): (DeploymentStatus, &str),
    eval: Option<Evaluation>,
) -> WriteCommand {
    let ids = eval.iter().map(|e| e.id.clone()).collect();
    let update = crate::model::DeploymentStatusUpdate {
        deployment_id,
        status,
        status_description: description.to_owned(),
    };
    (Command::DeploymentStatusChange { update, eval }, ids)
}

/// The index of the table a query reads: what a blocking query waits on.
fn table_index(state: &State, query: &Query) -> u64 {
    let indexes = state.table_indexes();
    match query {
        Query::Job { .. } | Query::Jobs => indexes.jobs,
        Query::JobVersions { .. } => indexes.job_versions,
        Query::JobSummary { .. } => indexes.job_summary,
        Query::Node { .. } | Query::Nodes => indexes.nodes,
        Query::JobAllocs { .. }
        | Query::DeploymentAllocs { .. }
        | Query::NodeAllocs { .. }
        | Query::ClientAllocs { .. }
        | Query::Alloc { .. }
        | Query::Allocs => indexes.allocs,
        Query::Eval { .. } | Query::Evals | Query::JobEvals { .. } => indexes.evals,
        Query::Deployment { .. } | Query::Deployments | Query::JobDeployments { .. } => {
            indexes.deployments
        }
        Query::AutopilotConfig => indexes.autopilot_config,
        // Served from the server's ring, not a table (see `Server::read_ready`).
        Query::Events { .. } => state.latest_index(),
    }
}

/// The rows `query` reads; `own_autopilot` is this server's autopilot configuration,
/// what the region runs with until an operator sets one.
fn run_query(state: &State, query: &Query, own_autopilot: AutopilotConfig) -> QueryResult {
    match query {
        Query::Job { namespace, job_id } => {
            QueryResult::Job(state.job(namespace, job_id).map(|j| Box::new(owned(j))))
        }
        Query::Jobs => QueryResult::Jobs(state.jobs().map(owned).collect()),
        Query::JobVersions { namespace, job_id } => QueryResult::JobVersions(
            state.job_versions(namespace, job_id).iter().map(owned).collect(),
        ),
        Query::JobSummary { namespace, job_id } => QueryResult::JobSummary(
            state.job_summary(namespace, job_id).map(|s| Box::new(owned(s))),
        ),
        Query::Node { node_id } => {
            QueryResult::Node(state.node(node_id).map(|n| Box::new(owned(n))))
        }
        Query::Nodes => QueryResult::Nodes(state.nodes().map(owned).collect()),
        Query::JobAllocs { namespace, job_id } => {
            QueryResult::Allocs(state.job_allocs(namespace, job_id).iter().map(owned).collect())
        }
        Query::DeploymentAllocs { deployment_id } => {
            let allocs = state.deployment(deployment_id).map(|d| {
                let mine = state.job_allocs(&d.namespace, &d.job_id);
                mine.iter().filter(|a| a.deployment_id == *deployment_id).map(owned).collect()
            });
            QueryResult::Allocs(allocs.unwrap_or_default())
        }
        Query::NodeAllocs { node_id } | Query::ClientAllocs { node_id } => {
            // Clients need the job each allocation runs; state stores it once per version.
            let allocs =
                state.node_allocs(node_id).map(|n| n.allocs.values().cloned().collect::<Vec<_>>());
            let with_job = allocs.unwrap_or_default().into_iter().map(|a| with_job(state, &a));
            QueryResult::Allocs(with_job.collect())
        }
        Query::Alloc { alloc_id } => {
            QueryResult::Alloc(state.alloc(alloc_id).map(|a| Box::new(with_job(state, a))))
        }
        Query::Allocs => QueryResult::Allocs(state.allocs().map(owned).collect()),
        Query::Eval { eval_id } => {
            QueryResult::Eval(state.eval(eval_id).map(|e| Box::new(owned(e))))
        }
        Query::Evals => QueryResult::Evals(state.evals().map(owned).collect()),
        Query::JobEvals { namespace, job_id } => QueryResult::Evals(
            state
                .evals()
                .filter(|e| e.namespace == *namespace && e.job_id == *job_id)
                .map(owned)
                .collect(),
        ),
        Query::Deployment { deployment_id } => {
            QueryResult::Deployment(state.deployment(deployment_id).map(|d| Box::new(owned(d))))
        }
        Query::Deployments => QueryResult::Deployments(state.deployments().map(owned).collect()),
        Query::JobDeployments { namespace, job_id } => QueryResult::Deployments(
            state
                .deployments()
                .filter(|d| d.namespace == *namespace && d.job_id == *job_id)
                .map(owned)
                .collect(),
        ),
        Query::Events { .. } => QueryResult::Events(Vec::new()),
        Query::AutopilotConfig => {
            QueryResult::AutopilotConfig(state.autopilot_config_or(own_autopilot))
        }
    }
}

fn owned<T: Clone>(shared: &Arc<T>) -> T {
    (**shared).clone()
}

/// An allocation with the job version it runs filled in (state keeps each version once).
fn with_job(state: &State, alloc: &Arc<crate::model::Allocation>) -> crate::model::Allocation {
    let mut alloc_with_job = owned(alloc);
    alloc_with_job.job = state.alloc_job(alloc).map(|j| Box::new(owned(&j)));
    alloc_with_job
}

/// An allocation may be reaped once it is terminal on the servers' side and its client
/// is done with it too: a client still starting or running it (Nomad refuses running
/// ones) will report it, and its job summary counts it until then. A client whose node
/// is down or gone will never report, so its allocations go as soon as they are terminal.
fn alloc_gc_eligible(state: &State, alloc: &Allocation) -> bool {
    let node_gone = state.node(&alloc.node_id).is_none_or(|n| n.status == NodeStatus::Down);
    alloc.is_terminal() && (alloc.client_status.is_terminal() || node_gone)
}

/// Whether the evaluation pass must leave `eval` to its job: a batch or sysbatch
/// evaluation of a job that exists and is not stopped and dead.
pub fn batch_eval_kept(state: &State, eval: &Evaluation) -> bool {
    eval.scheduler.finishes()
        && state.job(&eval.namespace, &eval.job_id).is_some_and(|j| !j.batch_evals_reapable())
}

/// What the evaluation pass may reap of a batch evaluation its live job keeps
/// (Nomad's `olderVersionTerminalAllocs`): its allocations that are `reapable` and ran
/// an earlier version or registration of the job, which the scheduler no longer counts
/// as work done; and the evaluation with them (`true`) once all its allocations are
/// such. A sysbatch job's finished allocations count whatever their version, so its
/// evaluations keep all.
pub fn batch_eval_superseded<'a, A: AsRef<Allocation>>(
    state: &State,
    eval: &Evaluation,
    allocs: &[&'a A],
    reapable: impl Fn(&State, &Allocation) -> bool,
) -> (bool, Vec<&'a A>) {
    let job = state.job(&eval.namespace, &eval.job_id);
    let Some(job) = job.filter(|_| eval.scheduler == SchedulerType::Batch) else {
        return (false, Vec::new());
    };
    let superseded: Vec<&A> = allocs
        .iter()
        .copied()
        .filter(|a| a.as_ref().ran_earlier_job(job) && reapable(state, a.as_ref()))
        .collect();
    (superseded.len() == allocs.len(), superseded)
}

/// One reap being gathered, in whole units: an evaluation with its allocations, a job
/// with everything it left. A unit is taken only while the evaluations and allocations
/// stay within `bound` each, so no reap takes an evaluation without its allocations
/// (nothing would reap those later: the evaluation pass finds allocations through their
/// evaluation) nor a job's allocations without the job. A unit larger than `bound` is
/// taken alone, in a pass of its own.
struct ReapBatch {
    eval_ids: BTreeSet<String>,
    alloc_ids: BTreeSet<String>,
    jobs: Vec<JobKey>,
    bound: usize,
}

impl ReapBatch {
    fn new(bound: usize) -> ReapBatch {
        ReapBatch { eval_ids: BTreeSet::new(), alloc_ids: BTreeSet::new(), jobs: Vec::new(), bound }
    }

    /// Adds the unit if it fits; says whether it did.
    fn take(&mut self, evals: &[&Evaluation], allocs: &[&Arc<Allocation>]) -> bool {
        let new_evals = evals.iter().filter(|e| !self.eval_ids.contains(&e.id)).count();
        let new_allocs = allocs.iter().filter(|a| !self.alloc_ids.contains(&a.id)).count();
        let empty = self.eval_ids.is_empty() && self.alloc_ids.is_empty();
        let fits = self.eval_ids.len() + new_evals <= self.bound
            && self.alloc_ids.len() + new_allocs <= self.bound;
        if !(fits || empty) {
            return false;
        }
        self.eval_ids.extend(evals.iter().map(|e| e.id.clone()));
        self.alloc_ids.extend(allocs.iter().map(|a| a.id.clone()));
        true
    }

    /// No further evaluation fits: the evaluation pass may stop walking.
    fn evals_full(&self) -> bool {
        self.eval_ids.len() >= self.bound
    }
}

/// What garbage collection may reap now: terminal evaluations past their threshold with
/// their terminal allocations, dead jobs past theirs with everything they left, and down
/// nodes past theirs that run nothing, within `reap_batch_max` of each kind (`ReapBatch`;
/// the next pass takes the rest). A batch or sysbatch evaluation of a job that is not
/// stopped and dead stays: the scheduler counts a live batch job's completed allocations
/// as work done, and would run again what GC took (seed 19173). Such a job goes whole
/// once it finishes; until then only what its older versions ran goes
/// (`batch_eval_superseded`).
pub(super) fn gc_candidates(state: &State, now_ns: i64, gc: &GcConfig) -> Command {
    let older = |time_ns: i64, threshold_ms: u64| {
        now_ns.saturating_sub(time_ns) >= (threshold_ms as i64).saturating_mul(1_000_000)
    };
    let bound = gc.reap_batch_max;
    let mut batch = ReapBatch::new(bound);
    for eval in state.evals() {
        // What is left (an allocation-only unit of a kept batch evaluation included)
        // waits for the next pass.
        if batch.evals_full() {
            break;
        }
        let threshold = if eval.scheduler.finishes() {
            gc.batch_eval_gc_threshold_ms
        } else {
            gc.eval_gc_threshold_ms
        };
        if !eval.is_terminal() || !older(eval.modify_time, threshold) {
            continue;
        }
        // A kept sysbatch evaluation keeps all it placed: its allocations are not read.
        let kept = batch_eval_kept(state, eval);
        if kept && eval.scheduler != SchedulerType::Batch {
            continue;
        }
        let allocs = state.job_allocs(&eval.namespace, &eval.job_id);
        let mine: Vec<_> = allocs.iter().filter(|a| a.eval_id == eval.id).collect();
        if kept {
            let (whole, superseded) = batch_eval_superseded(state, eval, &mine, alloc_gc_eligible);
            let evals: &[&Evaluation] = if whole { &[eval] } else { &[] };
            batch.take(evals, &superseded);
            continue;
        }
        if mine.iter().any(|a| !alloc_gc_eligible(state, a)) {
            continue;
        }
        batch.take(&[eval], &mine);
    }
    // The dead jobs with their evaluations, gathered in one walk of the evaluations (not
    // one per job), in the jobs' order.
    let mut dead: BTreeMap<JobKey, (&Job, Vec<&Evaluation>)> = state
        .jobs()
        .filter(|j| j.is_reapable_dead())
        .map(|j| (JobKey::of_job(j), (&**j, Vec::new())))
        .collect();
    if !dead.is_empty() {
        for eval in state.evals() {
            if let Some((_, evals)) = dead.get_mut(&JobKey::new(&eval.namespace, &eval.job_id)) {
                evals.push(eval);
            }
        }
    }
    for (key, (job, evals)) in dead {
        if batch.jobs.len() >= bound {
            break;
        }
        let newest =
            evals.iter().map(|e| e.modify_time).chain([job.submit_time]).max().unwrap_or(0);
        let allocs = state.job_allocs(&job.namespace, &job.id);
        if evals.iter().any(|e| !e.is_terminal())
            || !older(newest, gc.job_gc_threshold_ms)
            || allocs.iter().any(|a| !alloc_gc_eligible(state, a))
        {
            continue;
        }
        let allocs: Vec<_> = allocs.iter().collect();
        if batch.take(&evals, &allocs) {
            batch.jobs.push(key);
        }
    }
    let node_ids = state
        .nodes()
        .filter(|n| {
            n.status == NodeStatus::Down
                && older(n.status_updated_at.saturating_mul(1_000_000_000), gc.node_gc_threshold_ms)
        })
        .filter(|n| {
            state.node_allocs(&n.id).is_none_or(|a| a.allocs.values().all(|a| a.is_terminal()))
        })
        .map(|n| n.id.clone())
        .take(bound)
        .collect();
    Command::Reap {
        eval_ids: batch.eval_ids.into_iter().collect(),
        alloc_ids: batch.alloc_ids.into_iter().collect(),
        jobs: batch.jobs,
        node_ids,
    }
}
