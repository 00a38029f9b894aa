//! The replicated state machine: jobs and their versions, nodes, allocations, evaluations,
//! deployments, job summaries and the operator's autopilot configuration.
//!
//! Every log entry is applied by [`State::apply`] with the entry's Raft index and the
//! leader's stamped time, never a clock, so every replica computes the same state. Each
//! object carries its create and modify index and each table its own index (the value a
//! blocking query waits on). [`State`] clones in O(1) (tables are [`table::Table`]s), so
//! a clone *is* the immutable snapshot a scheduler works on: see [`Snapshot`].
//!
//! Allocations are stored without their `Job` (a million copies of a job would dwarf the
//! allocations themselves); [`State::alloc_job`] finds the version they run in the job's
//! version history.

mod apply;
mod autopilot;
mod bytes;
mod events;
mod summary;
pub mod table;

pub use apply::{AllocClientUpdate, ApplyError, ApplyOutcome, Command, multi_error};
pub use autopilot::{
    AUTOPILOT_COUNT_MAX, AutopilotConfig, AutopilotConfigRecord, LAST_CONTACT_THRESHOLD_MIN_MS,
};
pub use bytes::{SNAPSHOT_FORMAT_VERSION, SnapshotError};
pub use events::{Event, EventPayload, EventType};
pub use summary::{JobSummary, TaskGroupSummary};

use crate::model::{
    Allocation, ComparableResources, Deployment, Evaluation, Job, Node, NodeCapacity,
};
use crate::scheduler::feasible::FnvHasher;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use table::{FNV_OFFSET_BASIS, IdKey, Table, TableKey, fnv1a};

/// How many versions of a job the state keeps, newest first (Nomad keeps 6).
pub const JOB_VERSIONS_RETAINED_MAX: usize = 6;

/// A job's identity: namespace and ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    pub namespace: String,
    pub id: String,
}

impl JobKey {
    pub fn new(namespace: &str, id: &str) -> JobKey {
        JobKey { namespace: namespace.to_owned(), id: id.to_owned() }
    }

    pub fn of_job(job: &Job) -> JobKey {
        JobKey::new(&job.namespace, &job.id)
    }
}

impl TableKey for JobKey {
    fn table_hash(&self) -> u64 {
        let hash = fnv1a(FNV_OFFSET_BASIS, self.namespace.as_bytes());
        fnv1a(fnv1a(hash, &[0]), self.id.as_bytes())
    }
}

/// One node's allocations and what the live ones use, kept current on every write so a
/// fit check costs O(1) instead of a walk over the node's allocations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeAllocs {
    pub allocs: BTreeMap<IdKey, Arc<Allocation>>,
    /// Sum over non-terminal allocations.
    pub used: ComparableResources,
    /// Host ports held by non-terminal allocations, with how many hold each (more than one
    /// would be a collision, which the plan applier never commits).
    pub ports: BTreeMap<i32, u32>,
    /// The highest `alloc_modify_index` among the allocations: the last change the
    /// servers made to what the node runs. The client's watch waits on it, so a status
    /// report, its own or another node's, wakes no watch.
    pub server_index: u64,
}

impl NodeAllocs {
    fn add(&mut self, key: IdKey, alloc: &Arc<Allocation>) {
        if let Some(old) = self.allocs.insert(key, alloc.clone()) {
            self.account(&old, -1);
        }
        self.account(alloc, 1);
        self.server_index = self.server_index.max(alloc.alloc_modify_index);
    }

    /// Drops a terminal allocation. The server index is derived again from those left,
    /// as a restore would derive it.
    fn remove(&mut self, id: &str) {
        let Some(removed) = self.allocs.remove(id) else { return };
        if removed.alloc_modify_index == self.server_index {
            self.server_index =
                self.allocs.values().map(|a| a.alloc_modify_index).max().unwrap_or(0);
        }
    }

    fn account(&mut self, alloc: &Allocation, sign: i64) {
        if alloc.is_terminal() {
            return;
        }
        let r = alloc.allocated_resources.comparable();
        self.used.cpu_shares += sign * r.cpu_shares;
        self.used.memory_mb += sign * r.memory_mb;
        self.used.disk_mb += sign * r.disk_mb;
        for port in alloc_ports(alloc) {
            let count = self.ports.entry(port).or_default();
            if sign > 0 {
                *count += 1;
            } else {
                *count = count.checked_sub(1).expect("port count never negative");
                if *count == 0 {
                    self.ports.remove(&port);
                }
            }
        }
        assert!(self.used.cpu_shares >= 0 && self.used.memory_mb >= 0, "usage never negative");
    }
}

/// Every host port an allocation holds, without duplicates.
pub fn alloc_ports(alloc: &Allocation) -> Vec<i32> {
    let shared = &alloc.allocated_resources.shared;
    let task_networks = alloc.allocated_resources.tasks.values().any(|t| !t.networks.is_empty());
    if shared.ports.is_empty() && shared.networks.is_empty() && !task_networks {
        return Vec::new();
    }
    let mut ports: Vec<i32> = shared.ports.iter().map(|p| p.value).collect();
    let networks = shared
        .networks
        .iter()
        .chain(alloc.allocated_resources.tasks.values().flat_map(|t| &t.networks));
    for network in networks {
        ports.extend(network.reserved_ports.iter().chain(&network.dynamic_ports).map(|p| p.value));
    }
    ports.retain(|&p| p > 0);
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The index of each table: the Raft index of its last write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub jobs: u64,
    pub job_versions: u64,
    pub job_summary: u64,
    pub nodes: u64,
    pub allocs: u64,
    pub evals: u64,
    pub deployments: u64,
    pub autopilot_config: u64,
}

/// The whole replicated state. Clone it to take a snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    latest_index: u64,
    indexes: TableIndexes,
    jobs: Table<JobKey, Arc<Job>>,
    /// Newest first, at most [`JOB_VERSIONS_RETAINED_MAX`].
    job_versions: Table<JobKey, Arc<Vec<Arc<Job>>>>,
    job_summaries: Table<JobKey, Arc<JobSummary>>,
    nodes: Table<String, Arc<Node>>,
    allocs: Table<IdKey, Arc<Allocation>>,
    allocs_by_node: Table<String, Arc<NodeAllocs>>,
    allocs_by_job: Table<JobKey, Arc<BTreeMap<IdKey, Arc<Allocation>>>>,
    evals: Table<String, Arc<Evaluation>>,
    /// Per job, the highest index that wrote one of its evaluations or committed a plan
    /// touching one of its allocations (derived from the evaluations' modify indexes and
    /// the allocations' `alloc_modify_index`, and derived again for the jobs a reap took
    /// some from, so a restored state holds the same). A worker must plan from state at least
    /// this new, or it could miss the plan of the job's previous evaluation, or an
    /// earlier delivery's plan of its own (committed, its answer lost), and place the
    /// same allocations again. Nomad's `getWaitIndex` counts only evaluations.
    job_wait_index: Table<JobKey, u64>,
    /// Per job, the ID of its blocked evaluation (derived from `evals`). A job has at most
    /// one: writing a blocked evaluation cancels the job's older one in the same entry, so
    /// no state, not even for one entry, holds two (Nomad #15858 let them pile up).
    blocked_evals: Table<JobKey, String>,
    deployments: Table<String, Arc<Deployment>>,
    /// Per job, the ID of its newest deployment (derived from `deployments`).
    latest_deployments: Table<JobKey, String>,
    /// The IDs of the deployments still in progress (derived), which the watcher follows.
    active_deployments: Table<String, ()>,
    /// Per periodic job, the unix ns of its last launch (Nomad's `PeriodicLaunch` table);
    /// before its first launch, when it was registered. A new leader's dispatcher starts
    /// from here, so a failover neither launches a time twice nor forgets a missed one.
    periodic_launches: Table<JobKey, i64>,
    /// The autopilot configuration an operator set; `None` until one does, and then the
    /// servers run with their agent's `autopilot` block.
    autopilot_config: Option<AutopilotConfigRecord>,
    /// Every node in table order, built on first read after a node write: schedulers
    /// scan the node list once per evaluation, and a flat vector scans fastest.
    node_list: NodeListCache,
    /// The events of the command being applied by [`State::apply_recording`].
    recorder: events::EventRecorder,
}

/// A lazily built list of the nodes. Derived data: equal states may differ in whether
/// it is built, so it never takes part in equality.
#[derive(Clone, Debug, Default)]
struct NodeListCache(std::sync::OnceLock<NodeList>);

impl PartialEq for NodeListCache {
    fn eq(&self, _: &NodeListCache) -> bool {
        true
    }
}

/// Every node in table order, with what a scheduler reads of each node on every scan laid
/// out flat (one entry per node, same position): schedulers visit thousands of nodes per
/// evaluation, and chasing each node's fields and its allocation index through pointers
/// cost more than the scheduling itself. Built on the first read after a node write;
/// [`NodeList::used`] is kept current on every allocation write.
#[derive(Clone, Debug, Default)]
pub struct NodeList {
    fixed: Arc<NodeListFixed>,
    used: Arc<Vec<ComparableResources>>,
}

/// The part of a [`NodeList`] that only node writes change.
#[derive(Debug, Default)]
struct NodeListFixed {
    nodes: Vec<Arc<Node>>,
    class: Vec<u32>,
    classes: Vec<String>,
    scope: Vec<u32>,
    scopes: Vec<(String, String)>,
    schedulable: Vec<bool>,
    capacity: Vec<NodeCapacity>,
    position: HashMap<String, u32, BuildHasherDefault<FnvHasher>>,
}

impl NodeList {
    fn build(state: &State) -> NodeList {
        let mut fixed = NodeListFixed::default();
        let mut classes: BTreeMap<&str, u32> = BTreeMap::new();
        let mut scopes: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        let mut used = Vec::with_capacity(state.nodes.len());
        for (i, node) in state.nodes.values().enumerate() {
            let next = classes.len() as u32;
            let class = *classes.entry(node.computed_class.as_str()).or_insert_with(|| {
                fixed.classes.push(node.computed_class.clone());
                next
            });
            let next = scopes.len() as u32;
            let scope = *scopes
                .entry((node.datacenter.as_str(), node.node_pool.as_str()))
                .or_insert_with(|| {
                    fixed.scopes.push((node.datacenter.clone(), node.node_pool.clone()));
                    next
                });
            fixed.class.push(class);
            fixed.scope.push(scope);
            fixed.schedulable.push(node.is_schedulable());
            fixed.capacity.push(node.schedulable_capacity());
            fixed.position.insert(node.id.clone(), i as u32);
            used.push(
                state.allocs_by_node.get(node.id.as_str()).map(|b| b.used).unwrap_or_default(),
            );
            fixed.nodes.push(node.clone());
        }
        NodeList { fixed: Arc::new(fixed), used: Arc::new(used) }
    }

    pub fn len(&self) -> usize {
        self.fixed.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fixed.nodes.is_empty()
    }

    /// Every node, in table order; positions index the other accessors.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.fixed.nodes
    }

    /// The position of a node by ID.
    pub fn position(&self, node_id: &str) -> Option<usize> {
        self.fixed.position.get(node_id).map(|&i| i as usize)
    }

    /// The node's computed class as a small number (an index into [`NodeList::classes`]).
    pub fn class_id(&self, i: usize) -> u32 {
        self.fixed.class[i]
    }

    /// Distinct computed classes, by class ID.
    pub fn classes(&self) -> &[String] {
        &self.fixed.classes
    }

    /// The node's (datacenter, node pool) as a small number (an index into
    /// [`NodeList::scopes`]).
    pub fn scope_id(&self, i: usize) -> u32 {
        self.fixed.scope[i]
    }

    /// Distinct (datacenter, node pool) pairs, by scope ID.
    pub fn scopes(&self) -> &[(String, String)] {
        &self.fixed.scopes
    }

    /// [`Node::is_schedulable`] of the node at `i`.
    pub fn schedulable(&self, i: usize) -> bool {
        self.fixed.schedulable[i]
    }

    /// [`Node::schedulable_capacity`] of the node at `i`.
    pub fn capacity(&self, i: usize) -> NodeCapacity {
        self.fixed.capacity[i]
    }

    /// What the live allocations on the node at `i` use ([`NodeAllocs::used`]).
    pub fn used(&self, i: usize) -> ComparableResources {
        self.used[i]
    }
}

/// What a scheduler reads: an immutable clone of [`State`].
pub type Snapshot = State;

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// The Raft index of the last applied entry.
    pub fn latest_index(&self) -> u64 {
        self.latest_index
    }

    pub fn table_indexes(&self) -> TableIndexes {
        self.indexes
    }

    /// An O(1) immutable copy for a scheduler.
    pub fn snapshot(&self) -> Snapshot {
        // Build the node list here, so every snapshot until the next node write shares it.
        let _ = self.node_list();
        self.clone()
    }

    pub fn job(&self, namespace: &str, id: &str) -> Option<&Arc<Job>> {
        self.jobs.get(&JobKey::new(namespace, id))
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs.values()
    }

    /// The kept versions of a job, newest first.
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<Arc<Job>> {
        self.job_versions.get(&JobKey::new(namespace, id)).map(|v| v.to_vec()).unwrap_or_default()
    }

    pub fn job_version(&self, namespace: &str, id: &str, version: u64) -> Option<Arc<Job>> {
        let versions = self.job_versions.get(&JobKey::new(namespace, id))?;
        versions.iter().find(|j| j.version == version).cloned()
    }

    pub fn job_summary(&self, namespace: &str, id: &str) -> Option<&Arc<JobSummary>> {
        self.job_summaries.get(&JobKey::new(namespace, id))
    }

    pub fn node(&self, id: &str) -> Option<&Arc<Node>> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.values()
    }

    /// Every node (in table order) with its scheduling data, cached until a node changes.
    pub fn node_list(&self) -> &NodeList {
        self.node_list.0.get_or_init(|| NodeList::build(self))
    }

    /// Keeps the built node list's usage of `node_id` equal to `used`.
    fn note_node_usage(&mut self, node_id: &str, used: ComparableResources) {
        let Some(list) = self.node_list.0.get_mut() else { return };
        if let Some(i) = list.position(node_id) {
            Arc::make_mut(&mut list.used)[i] = used;
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn alloc(&self, id: &str) -> Option<&Arc<Allocation>> {
        self.allocs.get(id)
    }

    pub fn allocs(&self) -> impl Iterator<Item = &Arc<Allocation>> {
        self.allocs.values()
    }

    pub fn alloc_count(&self) -> usize {
        self.allocs.len()
    }

    /// A node's allocations and their live usage (empty if it has none).
    pub fn node_allocs(&self, node_id: &str) -> Option<&Arc<NodeAllocs>> {
        self.allocs_by_node.get(node_id)
    }

    /// The last change the servers made to a node's allocations
    /// ([`NodeAllocs::server_index`]); 0 for a node without any.
    pub fn node_server_index(&self, node_id: &str) -> u64 {
        self.node_allocs(node_id).map_or(0, |n| n.server_index)
    }

    /// Every allocation of a job, terminal ones included, keyed by alloc ID.
    pub fn job_allocs(&self, namespace: &str, id: &str) -> Vec<Arc<Allocation>> {
        self.job_allocs_iter(namespace, id).cloned().collect()
    }

    /// The job's allocations in place, for a reader that needs no list of its own.
    pub fn job_allocs_iter(
        &self,
        namespace: &str,
        id: &str,
    ) -> impl Iterator<Item = &Arc<Allocation>> + '_ {
        let key = JobKey::new(namespace, id);
        self.allocs_by_job.get(&key).into_iter().flat_map(|m| m.values())
    }

    /// The job version an allocation runs, if the history still holds it.
    pub fn alloc_job(&self, alloc: &Allocation) -> Option<Arc<Job>> {
        self.job_version(&alloc.namespace, &alloc.job_id, alloc.job_version)
    }

    pub fn eval(&self, id: &str) -> Option<&Arc<Evaluation>> {
        self.evals.get(id)
    }

    pub fn evals(&self) -> impl Iterator<Item = &Arc<Evaluation>> {
        self.evals.values()
    }

    /// The index a worker's snapshot must reach before it schedules an evaluation of
    /// this job: the newest write to any of the job's evaluations, or of a plan to any
    /// of its allocations.
    pub fn job_wait_index(&self, namespace: &str, job_id: &str) -> u64 {
        self.job_wait_index.get(&JobKey::new(namespace, job_id)).copied().unwrap_or(0)
    }

    /// Raises the job's wait index to `index`; looked up before written, as a plan
    /// writes many allocations of one job.
    fn raise_job_wait_index(&mut self, key: &JobKey, index: u64) {
        if index > 0 && self.job_wait_index.get(key).is_none_or(|&kept| kept < index) {
            self.job_wait_index.insert(key.clone(), index);
        }
    }

    pub fn deployment(&self, id: &str) -> Option<&Arc<Deployment>> {
        self.deployments.get(id)
    }

    pub fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.deployments.values()
    }

    /// The deployments still in progress, in ID order.
    pub fn active_deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        let ids = self.active_deployments.sorted();
        ids.into_iter().filter_map(|(id, ())| self.deployments.get(id))
    }

    /// The job's newest deployment (Nomad's `LatestDeploymentByJobID`), which may belong
    /// to an earlier job of the same ID.
    pub fn latest_deployment(&self, namespace: &str, job_id: &str) -> Option<&Arc<Deployment>> {
        let id = self.latest_deployments.get(&JobKey::new(namespace, job_id))?;
        self.deployments.get(id)
    }

    /// The last launch of a periodic job (unix ns), or when it was registered if it
    /// never launched.
    pub fn periodic_launch(&self, namespace: &str, job_id: &str) -> Option<i64> {
        self.periodic_launches.get(&JobKey::new(namespace, job_id)).copied()
    }

    /// Every periodic launch record, in key order.
    pub fn periodic_launches(&self) -> Vec<(&JobKey, i64)> {
        self.periodic_launches.sorted().into_iter().map(|(k, v)| (k, *v)).collect()
    }

    /// The jobs a periodic job launched (children whose `ParentID` names it).
    pub fn periodic_children<'a>(&'a self, parent: &'a Job) -> impl Iterator<Item = &'a Arc<Job>> {
        self.jobs
            .values()
            .filter(move |j| j.parent_id == parent.id && j.namespace == parent.namespace)
    }

    /// Nomad's `RunningChildren`: whether a child of `parent` has an evaluation or an
    /// allocation that is not terminal yet (what `prohibit_overlap` waits for).
    pub fn periodic_child_running(&self, parent: &Job) -> bool {
        self.periodic_children(parent).any(|child| self.job_active(child))
    }

    /// Whether a job has a non-terminal evaluation or allocation.
    fn job_active(&self, job: &Job) -> bool {
        let key = JobKey::of_job(job);
        self.allocs_by_job.get(&key).is_some_and(|m| m.values().any(|a| !a.is_terminal()))
            || self
                .evals
                .values()
                .any(|e| e.job_id == job.id && e.namespace == job.namespace && !e.is_terminal())
    }
}
