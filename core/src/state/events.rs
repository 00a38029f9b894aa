//! Events: what each applied command changed, as Nomad's event stream names it.
//!
//! While [`super::State::apply_recording`] applies a command, every object it writes (a
//! job, node, allocation, evaluation or deployment) becomes one [`Event`] at the entry's
//! index. The event's type is the command's, as in Nomad, where the Raft message type
//! names every event of the transaction (`nomad/state/events.go`): a plan's placements
//! and the evaluations it updates are all `PlanResult`. Objects only deleted (a job purge,
//! garbage collection) make no event, as in Nomad, except a purged node: Nomad announces
//! its deregistration with the node as it was. Events share the stored objects
//! (`Arc`), so recording one costs a pointer, not a copy.

use super::Command;
use crate::model::{Allocation, Deployment, Evaluation, Job, Node};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// Nomad's event types (`structs.Type*`), one per kind of command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    JobRegistered,
    JobDeregistered,
    NodeRegistration,
    /// A node's status changed (Nomad's `TypeNodeEvent`).
    NodeStreamEvent,
    /// A drain started or ended, or the eligibility changed: Nomad names both `NodeDrain`.
    NodeDrain,
    EvaluationUpdated,
    PlanResult,
    AllocationUpdated,
    AllocationUpdateDesiredStatus,
    DeploymentStatusUpdate,
    DeploymentPromotion,
    DeploymentAllocHealth,
    /// A node was purged (Nomad's `TypeNodeDeregistration`).
    NodeDeregistration,
}

impl EventType {
    /// The type a command gives its events; `None` for commands that make none.
    pub fn of(command: &Command) -> Option<EventType> {
        Some(match command {
            // A launch registers the child job (Nomad's dispatcher does it through a
            // job registration).
            Command::JobRegister { .. } | Command::PeriodicLaunch { .. } => {
                EventType::JobRegistered
            }
            Command::JobDeregister { .. } => EventType::JobDeregistered,
            Command::NodeRegister { .. } => EventType::NodeRegistration,
            Command::NodeStatus { .. } => EventType::NodeStreamEvent,
            Command::NodeEligibility { .. } | Command::NodeDrain { .. } => EventType::NodeDrain,
            Command::NodeDeregister { .. } => EventType::NodeDeregistration,
            Command::EvalUpsert { .. } => EventType::EvaluationUpdated,
            Command::PlanApply { .. } => EventType::PlanResult,
            Command::AllocClientUpdate { .. } => EventType::AllocationUpdated,
            Command::DeploymentUpsert { .. } => EventType::DeploymentStatusUpdate,
            Command::AllocDesiredTransition { .. } => EventType::AllocationUpdateDesiredStatus,
            Command::DeploymentPromote { .. } => EventType::DeploymentPromotion,
            Command::DeploymentStatusChange { .. } | Command::DeploymentWatcherUpdate { .. } => {
                EventType::DeploymentStatusUpdate
            }
            Command::DeploymentAllocHealth { .. } => EventType::DeploymentAllocHealth,
            Command::Reap { .. } | Command::AutopilotSetConfig { .. } => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobRegistered => "JobRegistered",
            EventType::JobDeregistered => "JobDeregistered",
            EventType::NodeRegistration => "NodeRegistration",
            EventType::NodeStreamEvent => "NodeStreamEvent",
            EventType::NodeDrain => "NodeDrain",
            EventType::EvaluationUpdated => "EvaluationUpdated",
            EventType::PlanResult => "PlanResult",
            EventType::AllocationUpdated => "AllocationUpdated",
            EventType::AllocationUpdateDesiredStatus => "AllocationUpdateDesiredStatus",
            EventType::DeploymentStatusUpdate => "DeploymentStatusUpdate",
            EventType::DeploymentPromotion => "DeploymentPromotion",
            EventType::DeploymentAllocHealth => "DeploymentAllocHealth",
            EventType::NodeDeregistration => "NodeDeregistration",
        }
    }
}

/// The object an event is about, as it was stored by the command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventPayload {
    Job(#[serde(with = "shared")] Arc<Job>),
    Node(#[serde(with = "shared")] Arc<Node>),
    Allocation(#[serde(with = "shared")] Arc<Allocation>),
    Evaluation(#[serde(with = "shared")] Arc<Evaluation>),
    Deployment(#[serde(with = "shared")] Arc<Deployment>),
}

/// One change at one Raft index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub event_type: EventType,
    pub payload: EventPayload,
}

impl Event {
    /// Nomad's topic: the kind of object.
    pub fn topic(&self) -> &'static str {
        match &self.payload {
            EventPayload::Job(_) => "Job",
            EventPayload::Node(_) => "Node",
            EventPayload::Allocation(_) => "Allocation",
            EventPayload::Evaluation(_) => "Evaluation",
            EventPayload::Deployment(_) => "Deployment",
        }
    }

    /// The object's ID.
    pub fn key(&self) -> &str {
        match &self.payload {
            EventPayload::Job(job) => &job.id,
            EventPayload::Node(node) => &node.id,
            EventPayload::Allocation(alloc) => &alloc.id,
            EventPayload::Evaluation(eval) => &eval.id,
            EventPayload::Deployment(deployment) => &deployment.id,
        }
    }

    /// The object's namespace; empty for nodes, which belong to none.
    pub fn namespace(&self) -> &str {
        match &self.payload {
            EventPayload::Job(job) => &job.namespace,
            EventPayload::Node(_) => "",
            EventPayload::Allocation(alloc) => &alloc.namespace,
            EventPayload::Evaluation(eval) => &eval.namespace,
            EventPayload::Deployment(deployment) => &deployment.namespace,
        }
    }

    /// The other keys a subscription may name the event by (Nomad's `FilterKeys`): the
    /// job and deployment of an allocation or evaluation, the job of a deployment.
    pub fn filter_keys(&self) -> Vec<&str> {
        match &self.payload {
            EventPayload::Job(_) | EventPayload::Node(_) => Vec::new(),
            EventPayload::Allocation(alloc) => vec![&alloc.job_id, &alloc.deployment_id],
            EventPayload::Evaluation(eval) => vec![&eval.job_id, &eval.deployment_id],
            EventPayload::Deployment(deployment) => vec![&deployment.job_id],
        }
    }

    /// Whether a subscription to `topic` (`*` for all) with `key` (`*` for all) takes it:
    /// the key matches the event's key or one of its filter keys.
    pub fn matches(&self, topic: &str, key: &str) -> bool {
        (topic == "*" || topic == self.topic())
            && (key == "*" || key == self.key() || self.filter_keys().contains(&key))
    }
}

/// The events of the command being applied, if the caller records them.
#[derive(Debug, Default)]
pub(super) struct EventRecorder(Option<Recording>);

#[derive(Debug)]
struct Recording {
    index: u64,
    event_type: EventType,
    events: Vec<Event>,
}

impl EventRecorder {
    pub(super) fn start(&mut self, index: u64, event_type: EventType) {
        assert!(self.0.is_none(), "one command is recorded at a time");
        self.0 = Some(Recording { index, event_type, events: Vec::new() });
    }

    pub(super) fn finish(&mut self) -> Vec<Event> {
        self.0.take().map(|r| r.events).unwrap_or_default()
    }

    /// Records a change; `payload` is built only while recording.
    pub(super) fn record(&mut self, payload: impl FnOnce() -> EventPayload) {
        if let Some(recording) = self.0.as_mut() {
            let (index, event_type) = (recording.index, recording.event_type);
            recording.events.push(Event { index, event_type, payload: payload() });
        }
    }
}

/// A state's copy (a scheduler's snapshot) records nothing of the original's command.
impl Clone for EventRecorder {
    fn clone(&self) -> EventRecorder {
        EventRecorder(None)
    }
}

/// Recording is the caller's bookkeeping, never part of the replicated state.
impl PartialEq for EventRecorder {
    fn eq(&self, _: &EventRecorder) -> bool {
        true
    }
}

/// Serde for a shared object: written as the object, read into a new `Arc`.
mod shared {
    use super::{Arc, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(value, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}
