//! What a server exchanges with its peers, its API callers and its runtime.
//!
//! Values are named by destination: a [`PeerMessage`] goes to another server of the
//! region, an [`ApiReply`] to an HTTP/CLI caller, a [`SchedulePass`] to a worker thread.

use crate::model::{
    AllocationMetric, DesiredUpdates, DrainSpec, Evaluation, Job, JobDiff, NodeEligibility, Plan,
    PlanResult,
};
use crate::raft::{Message, NodeId};
use crate::rpc::{ClientRpc, ServerRpc};
use crate::scheduler::{ScheduleOutput, SchedulerConfig};
use crate::state::Snapshot;
use serde::{Deserialize, Serialize};

/// An opaque connection id the runtime chose for a client, so replies find their way.
pub type ClientConn = u64;
/// A worker slot on one server.
pub type WorkerId = u32;
/// One scheduling pass handed to the runtime.
pub type PassId = u64;

/// One request from an API caller, with the id its reply echoes and the region it names
/// (empty: this server's region).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    pub request_id: u64,
    pub region: String,
    pub request: ApiRequest,
}

/// What an operator (CLI, HTTP API) asks of the region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiRequest {
    /// `enforce_index`: the `JobModifyIndex` the caller saw (`Some(0)`: must not exist).
    JobRegister {
        job: Box<Job>,
        enforce_index: Option<u64>,
    },
    JobDeregister {
        namespace: String,
        job_id: String,
        purge: bool,
    },
    /// A dry run: schedule the job against a snapshot and commit nothing.
    JobPlan {
        job: Box<Job>,
    },
    JobEvaluate {
        namespace: String,
        job_id: String,
    },
    /// Registers a kept version again; `enforce_prior_version` must match the current
    /// version when given.
    JobRevert {
        namespace: String,
        job_id: String,
        version: u64,
        enforce_prior_version: Option<u64>,
    },
    JobScale {
        namespace: String,
        job_id: String,
        group: String,
        count: i64,
    },
    /// Launches a periodic job now (`POST /v1/job/:id/periodic/force`), whatever its
    /// schedule and `prohibit_overlap`; the reply names the child's evaluation.
    JobPeriodicForce {
        namespace: String,
        job_id: String,
    },
    /// `None` cancels the drain.
    NodeDrain {
        node_id: String,
        drain: Option<DrainSpec>,
    },
    NodeEligibility {
        node_id: String,
        eligibility: NodeEligibility,
    },
    /// `alloc stop`: marks a live allocation for migration and evaluates its job, so the
    /// scheduler stops it and places a replacement (Nomad's `Alloc.Stop`).
    AllocStop {
        alloc_id: String,
    },
    /// `deployment promote`: every group's canaries (`all`) or those of `groups`.
    DeploymentPromote {
        deployment_id: String,
        all: bool,
        groups: Vec<String>,
    },
    DeploymentFail {
        deployment_id: String,
    },
    /// `deployment pause` (`pause`) or `deployment resume`.
    DeploymentPause {
        deployment_id: String,
        pause: bool,
    },
    /// `operator raft remove-peer`: removes a server from the Raft configuration, named
    /// by its id or its RPC address.
    RaftRemovePeer {
        id: Option<u64>,
        address: Option<String>,
    },
    /// `deployment allocation-health`: the operator's health verdicts for allocations of
    /// a deployment whose groups use `health_check = "manual"`.
    DeploymentAllocHealth {
        deployment_id: String,
        healthy: Vec<String>,
        unhealthy: Vec<String>,
    },
    /// A read, answered once the table behind `query` passes `min_index` or `wait_ms` ends.
    Read {
        query: Query,
        min_index: u64,
        wait_ms: u64,
    },
    // Appended: frames are decoded by variant position (see `codec`).
    /// `operator autopilot set-config`: replaces the region's autopilot configuration;
    /// with `cas_index`, only if its modify index is still that. Answered with
    /// [`ApiReply::CasWrite`].
    AutopilotSetConfig {
        config: crate::state::AutopilotConfig,
        cas_index: Option<u64>,
    },
    /// `PUT /v1/node/:id/purge`: forgets a node, evaluating every job it ran (and every
    /// system job) so the scheduler marks its allocations lost.
    NodePurge {
        node_id: String,
    },
}

impl ApiRequest {
    pub fn is_write(&self) -> bool {
        !matches!(self, ApiRequest::Read { .. } | ApiRequest::JobPlan { .. })
    }
}

/// What a read asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Job {
        namespace: String,
        job_id: String,
    },
    Jobs,
    Node {
        node_id: String,
    },
    Nodes,
    JobAllocs {
        namespace: String,
        job_id: String,
    },
    /// The allocations placed for a deployment (`[]` for an unknown one).
    DeploymentAllocs {
        deployment_id: String,
    },
    NodeAllocs {
        node_id: String,
    },
    Eval {
        eval_id: String,
    },
    Evals,
    /// A job's kept versions, newest first.
    JobVersions {
        namespace: String,
        job_id: String,
    },
    JobSummary {
        namespace: String,
        job_id: String,
    },
    JobEvals {
        namespace: String,
        job_id: String,
    },
    JobDeployments {
        namespace: String,
        job_id: String,
    },
    /// One allocation with the job version it runs.
    Alloc {
        alloc_id: String,
    },
    Allocs,
    Deployment {
        deployment_id: String,
    },
    Deployments,
    /// The events kept in the server's ring after `after_index`; it blocks until there
    /// is one, even from index 0, so a stream's first read waits for its first event.
    Events {
        after_index: u64,
    },
    /// The autopilot configuration the region runs with.
    AutopilotConfig,
    // Appended: frames are decoded by variant position (see `codec`).
    /// A client's watch of its own node's allocations: what `NodeAllocs` answers, but it
    /// blocks until the servers change one of them (`NodeAllocs::server_index`), not
    /// until any allocation anywhere changes. The answer's index is still the allocation
    /// table's, which only grows, so the client can tell a lagging server's answer.
    ClientAllocs {
        node_id: String,
    },
}

/// The answer to an [`ApiCall`], echoing its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    pub request_id: u64,
    pub reply: ApiReply,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiReply {
    /// A committed write (Nomad's `WriteMeta` plus the evaluation it created).
    Write {
        index: u64,
        job_modify_index: u64,
        eval_ids: Vec<String>,
        eval_create_index: u64,
    },
    /// A dry run's outcome: what the scheduler would do, nothing committed.
    Plan {
        job_modify_index: u64,
        /// The annotated, contextual diff from the running job (`JobPlanResponse.Diff`).
        diff: Box<JobDiff>,
        desired_updates: std::collections::BTreeMap<String, DesiredUpdates>,
        failed_tg_allocs: std::collections::BTreeMap<String, AllocationMetric>,
        created_evals: Vec<Evaluation>,
        plan: Box<Plan>,
    },
    Read {
        index: u64,
        result: QueryResult,
    },
    /// This server cannot serve the write and knows no leader to forward it to.
    NotLeader {
        leader: Option<String>,
    },
    Error {
        message: String,
    },
    // Appended: frames are decoded by variant position (see `codec`).
    /// A committed check-and-set write: whether it wrote (a write without a check
    /// always does).
    CasWrite {
        index: u64,
        updated: bool,
    },
}

/// The rows a read returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueryResult {
    Job(Option<Box<Job>>),
    Jobs(Vec<Job>),
    Node(Option<Box<crate::model::Node>>),
    Nodes(Vec<crate::model::Node>),
    Allocs(Vec<crate::model::Allocation>),
    Eval(Option<Box<Evaluation>>),
    Evals(Vec<Evaluation>),
    JobVersions(Vec<Job>),
    JobSummary(Option<Box<crate::state::JobSummary>>),
    Alloc(Option<Box<crate::model::Allocation>>),
    Deployment(Option<Box<crate::model::Deployment>>),
    Deployments(Vec<crate::model::Deployment>),
    /// Oldest first; the ring may have dropped events older than the ones asked for.
    Events(Vec<crate::state::Event>),
    /// The operator's configuration, or the server's own with indexes 0.
    AutopilotConfig(crate::state::AutopilotConfigRecord),
}

/// A message from one server to another in the same region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Raft traffic, tagged with the sender's Raft group ([`crate::raft::Membership`]'s
    /// `cluster_id`).
    Raft {
        cluster_id: u64,
        message: Message,
    },
    /// A follower hands an API write to the leader.
    Forward {
        forward_id: u64,
        call: ApiCall,
    },
    ForwardReply {
        forward_id: u64,
        reply: ApiReply,
    },
    /// A follower's idle worker asks the leader's broker for an evaluation.
    Dequeue {
        worker: WorkerId,
        seq: u64,
    },
    /// An evaluation, its broker token, and the index the worker's state must reach.
    DequeueReply {
        worker: WorkerId,
        seq: u64,
        eval: Option<(Box<Evaluation>, String, u64)>,
    },
    /// A worker's plan for the leader's plan queue; `followups` commit with a full plan.
    SubmitPlan {
        worker: WorkerId,
        seq: u64,
        plan: Box<Plan>,
        followups: Vec<Evaluation>,
    },
    /// The applier's verdict (`Err` when refused before evaluation).
    PlanReply {
        worker: WorkerId,
        seq: u64,
        result: Result<PlanVerdict, String>,
    },
    /// The worker's final evaluations (the evaluation itself, its blocked successor): the
    /// leader commits them and acks the evaluation.
    Finish {
        eval_id: String,
        token: String,
        evals: Vec<Evaluation>,
    },
    Nack {
        eval_id: String,
        token: String,
    },
}

/// What a worker needs of a committed plan: how many of its placements committed, and
/// how new its state must be before it plans again. The committed allocations themselves
/// reach every server through the log, so the reply does not carry them again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanVerdict {
    pub placed: u64,
    /// Non-zero on a partial commit (see `PlanResult::refresh_index`).
    pub refresh_index: u64,
    /// The Raft index the result was committed at.
    pub alloc_index: u64,
}

impl PlanVerdict {
    pub fn of(result: &PlanResult, alloc_index: u64) -> PlanVerdict {
        let placed: usize = result.node_allocation.values().map(Vec::len).sum();
        PlanVerdict { placed: placed as u64, refresh_index: result.refresh_index, alloc_index }
    }
}

/// A message to a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerEnvelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: PeerMessage,
}

/// A reply for a caller: a client node or an API caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Client { conn: ClientConn, rpc: ServerRpc },
    Api(ApiResponse),
}

/// A request from a client node, with the connection it came on.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientCall {
    pub conn: ClientConn,
    pub rpc: ClientRpc,
}

/// A scheduling pass for the runtime to run on a worker thread:
/// `scheduler::schedule(&snapshot, &eval, seed, now_ns, config)`, reported back with
/// [`super::Server::handle_schedule_output`].
#[derive(Clone, Debug)]
pub struct SchedulePass {
    pub pass_id: PassId,
    pub eval: Evaluation,
    pub snapshot: Snapshot,
    pub seed: u64,
    pub now_ns: i64,
    pub config: SchedulerConfig,
}

impl SchedulePass {
    /// Runs the pass in place (the simulator's and the tests' worker thread).
    pub fn run(&self) -> ScheduleOutput {
        crate::scheduler::schedule(&self.snapshot, &self.eval, self.seed, self.now_ns, self.config)
    }
}

/// An API call naming another region, for the runtime to send to one of its servers.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionForward {
    pub region: String,
    pub call: ApiCall,
}
