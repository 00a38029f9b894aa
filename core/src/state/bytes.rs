//! State snapshots as bytes, for Raft log compaction and `operator snapshot save`.
//!
//! The layout is a codec frame (kind `SNAPSHOT`) holding `(format version, body)`, where
//! the body is itself postcard bytes. The version is read before the body is decoded, so a
//! snapshot of another format is refused with a clear error and nothing is loaded; a
//! restore builds a fresh [`State`] and only returns it whole. Secondary indexes (allocs
//! by node and by job, node usage) are not stored: restore rebuilds them.

use super::table::IdKey;
use super::{AutopilotConfigRecord, JobKey, JobSummary, State, TableIndexes};
use crate::codec::{self, CodecError, FrameKind};
use crate::model::{Allocation, Deployment, EvalStatus, Evaluation, Job, Node};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The body layout this build writes and reads.
/// Version 2 added the periodic launch table, version 3 the autopilot configuration,
/// version 4 each allocation's client report sequence.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 4;

#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotError {
    Codec(CodecError),
    UnsupportedVersion { found: u32, supported: u32 },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Codec(error) => write!(f, "state snapshot unreadable: {error}"),
            SnapshotError::UnsupportedVersion { found, supported } => write!(
                f,
                "state snapshot has format version {found}, but this build reads only version {supported}"
            ),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    latest_index: u64,
    indexes: TableIndexes,
    jobs: Vec<Job>,
    /// Per job, newest first.
    job_versions: Vec<Vec<Job>>,
    job_summaries: Vec<JobSummary>,
    nodes: Vec<Node>,
    allocs: Vec<Allocation>,
    evals: Vec<Evaluation>,
    deployments: Vec<Deployment>,
    periodic_launches: Vec<(JobKey, i64)>,
    autopilot_config: Option<AutopilotConfigRecord>,
}

/// [`Body`] as it is written: the same fields in the same order, borrowing every row
/// instead of copying it (a state holds millions of allocations), so it encodes to the
/// same bytes.
#[derive(Serialize)]
struct BodyRef<'a> {
    latest_index: u64,
    indexes: TableIndexes,
    jobs: Vec<&'a Job>,
    job_versions: Vec<Vec<&'a Job>>,
    job_summaries: Vec<&'a JobSummary>,
    nodes: Vec<&'a Node>,
    allocs: Vec<&'a Allocation>,
    evals: Vec<&'a Evaluation>,
    deployments: Vec<&'a Deployment>,
    periodic_launches: Vec<(&'a JobKey, i64)>,
    autopilot_config: Option<AutopilotConfigRecord>,
}

fn rows<K: super::table::TableKey, T>(table: &super::table::Table<K, Arc<T>>) -> Vec<&T> {
    table.sorted().into_iter().map(|(_, v)| &**v).collect()
}

impl State {
    /// The whole state as one frame.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = BodyRef {
            latest_index: self.latest_index,
            indexes: self.indexes,
            jobs: rows(&self.jobs),
            job_versions: self
                .job_versions
                .sorted()
                .into_iter()
                .map(|(_, v)| v.iter().map(|j| &**j).collect())
                .collect(),
            job_summaries: rows(&self.job_summaries),
            nodes: rows(&self.nodes),
            allocs: rows(&self.allocs),
            evals: rows(&self.evals),
            deployments: rows(&self.deployments),
            periodic_launches: self.periodic_launches(),
            autopilot_config: self.autopilot_config,
        };
        let body = postcard::to_allocvec(&body)
            .map_err(|e| SnapshotError::Codec(CodecError::Encode { message: e.to_string() }))?;
        codec::encode(FrameKind::SNAPSHOT, &(SNAPSHOT_FORMAT_VERSION, body))
            .map_err(SnapshotError::Codec)
    }

    /// Rebuilds a state from [`State::to_snapshot_bytes`] output, or refuses it whole.
    pub fn from_snapshot_bytes(
        bytes: &[u8],
        frame_len_max_bytes: usize,
    ) -> Result<State, SnapshotError> {
        let (version, body): (u32, Vec<u8>) =
            codec::decode(FrameKind::SNAPSHOT, bytes, frame_len_max_bytes)
                .map_err(SnapshotError::Codec)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let body: Body = codec::decode_payload(&body).map_err(SnapshotError::Codec)?;
        Ok(State::from_body(body))
    }

    fn from_body(body: Body) -> State {
        let mut state = State {
            latest_index: body.latest_index,
            indexes: body.indexes,
            autopilot_config: body.autopilot_config,
            ..State::default()
        };
        for job in body.jobs {
            state.jobs.insert(JobKey::of_job(&job), Arc::new(job));
        }
        for versions in body.job_versions {
            let Some(first) = versions.first() else { continue };
            let key = JobKey::of_job(first);
            state.job_versions.insert(key, Arc::new(versions.into_iter().map(Arc::new).collect()));
        }
        for summary in body.job_summaries {
            state
                .job_summaries
                .insert(JobKey::new(&summary.namespace, &summary.job_id), Arc::new(summary));
        }
        for node in body.nodes {
            state.nodes.insert(node.id.clone(), Arc::new(node));
        }
        for alloc in body.allocs {
            state.restore_alloc(alloc);
        }
        for eval in body.evals {
            let key = JobKey::new(&eval.namespace, &eval.job_id);
            state.raise_job_wait_index(&key, eval.modify_index);
            if eval.status == EvalStatus::Blocked {
                // The derived index: a state keeps one blocked evaluation per job, so this
                // finds it; were there more, the newest would count as the job's.
                let newer = state
                    .blocked_evals
                    .get(&key)
                    .and_then(|id| state.evals.get(id))
                    .is_none_or(|kept| eval.replaces_blocked(kept));
                if newer {
                    state.blocked_evals.insert(key, eval.id.clone());
                }
            }
            state.evals.insert(eval.id.clone(), Arc::new(eval));
        }
        for deployment in body.deployments {
            let key = JobKey::new(&deployment.namespace, &deployment.job_id);
            let newer = state
                .latest_deployment(&key.namespace, &key.id)
                .is_none_or(|latest| latest.create_index < deployment.create_index);
            if newer {
                state.latest_deployments.insert(key, deployment.id.clone());
            }
            if deployment.is_active() {
                state.active_deployments.insert(deployment.id.clone(), ());
            }
            state.deployments.insert(deployment.id.clone(), Arc::new(deployment));
        }
        for (key, launch_ns) in body.periodic_launches {
            state.periodic_launches.insert(key, launch_ns);
        }
        state
    }

    /// Inserts an allocation and its secondary indexes, leaving summaries as restored.
    fn restore_alloc(&mut self, alloc: Allocation) {
        let alloc = Arc::new(alloc);
        let id = IdKey::new(&alloc.id);
        self.allocs.insert(id.clone(), alloc.clone());
        let by_node =
            self.allocs_by_node.get_or_insert_with(alloc.node_id.clone(), Default::default);
        Arc::make_mut(by_node).add(id.clone(), &alloc);
        let key = JobKey::new(&alloc.namespace, &alloc.job_id);
        self.raise_job_wait_index(&key, alloc.alloc_modify_index);
        let by_job = self.allocs_by_job.get_or_insert_with(key, Default::default);
        Arc::make_mut(by_job).insert(id, alloc);
    }
}
