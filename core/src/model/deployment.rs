//! Deployments: the rollout of one job version, group by group.
//!
//! A deployment exists while a service (or system) job moves to a new version under an
//! `update` block: it counts placed, healthy and unhealthy allocations per group, holds
//! canaries until they are promoted, and fails when progress stops before its deadline.
//! The deployment watcher on the leader drives it; the scheduler only reads it. JSON keys
//! follow `api/deployments.go`.

use super::alloc::Allocation;
use super::timestamp::Timestamp;
use super::value::DurationNs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    #[default]
    Running,
    Paused,
    Failed,
    Successful,
    /// Superseded by a newer job version (Nomad spells it with two `l`s, unlike evals).
    Cancelled,
    /// Multiregion: created, waiting for the other regions.
    Initializing,
    Pending,
    Blocked,
    Unblocking,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Paused => "paused",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Successful => "successful",
            DeploymentStatus::Cancelled => "cancelled",
            DeploymentStatus::Initializing => "initializing",
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Blocked => "blocked",
            DeploymentStatus::Unblocking => "unblocking",
        }
    }

    /// Still in progress: the watcher tracks it and the scheduler places against it.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Failed | DeploymentStatus::Successful | DeploymentStatus::Cancelled
        )
    }
}

/// Nomad's `StatusDescription` texts, which `deployment status` prints.
pub mod deployment_description {
    pub const RUNNING: &str = "Deployment is running";
    pub const RUNNING_NEEDS_PROMOTION: &str = "Deployment is running but requires manual promotion";
    pub const RUNNING_AUTO_PROMOTION: &str = "Deployment is running pending automatic promotion";
    pub const PAUSED: &str = "Deployment is paused";
    pub const SUCCESSFUL: &str = "Deployment completed successfully";
    pub const STOPPED_JOB: &str = "Cancelled because job is stopped";
    pub const NEWER_JOB: &str = "Cancelled due to newer version of job";
    pub const FAILED_ALLOCATIONS: &str = "Failed due to unhealthy allocations";
    pub const PROGRESS_DEADLINE: &str = "Failed due to progress deadline";
    pub const FAILED_BY_USER: &str = "Deployment marked as failed";
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub job_modify_index: u64,
    /// The job's `JobModifyIndex` for the spec being deployed (ignores scaling-only edits).
    pub job_spec_modify_index: u64,
    pub job_create_index: u64,
    pub is_multiregion: bool,
    pub task_groups: BTreeMap<String, DeploymentState>,
    pub status: DeploymentStatus,
    pub status_description: String,
    pub eval_priority: i32,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
}

impl Deployment {
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// Every group with canaries has been promoted (or none needs it).
    pub fn is_promoted(&self) -> bool {
        self.task_groups.values().all(|g| g.desired_canaries == 0 || g.promoted)
    }

    /// Whether a manual `deployment promote` is what the deployment is waiting for.
    pub fn requires_promotion(&self) -> bool {
        self.task_groups.values().any(|g| g.desired_canaries > 0 && !g.promoted)
    }

    /// The deployment waits for an operator: a group that does not promote itself has all
    /// its canaries healthy and is not promoted yet.
    pub fn awaits_manual_promotion(&self) -> bool {
        self.task_groups.values().any(|g| {
            g.desired_canaries > 0
                && !g.promoted
                && !g.auto_promote
                && g.healthy_allocs >= g.desired_canaries
        })
    }

    /// Every group has all its allocations placed and healthy.
    pub fn is_complete(&self) -> bool {
        self.task_groups.values().all(DeploymentState::is_complete)
    }

    /// Whether any group asked for a rollback to the last stable version on failure.
    pub fn has_auto_revert(&self) -> bool {
        self.task_groups.values().any(|g| g.auto_revert)
    }
}

/// One group's progress within a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentState {
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub progress_deadline: DurationNs,
    /// Leader time by which another allocation must turn healthy, or the deployment fails.
    pub require_progress_by: Timestamp,
    pub promoted: bool,
    /// IDs of the canary allocations placed so far.
    pub placed_canaries: Vec<String>,
    pub desired_canaries: i32,
    pub desired_total: i32,
    pub placed_allocs: i32,
    pub healthy_allocs: i32,
    pub unhealthy_allocs: i32,
}

impl DeploymentState {
    pub fn is_complete(&self) -> bool {
        let canaries_done = self.desired_canaries == 0 || self.promoted;
        canaries_done && self.healthy_allocs >= self.desired_total
    }

    /// How many of the group's placed canaries still run and are healthy, each looked up
    /// by `alloc`: what promotion counts. A failed canary that was replaced stays in
    /// `placed_canaries` but no longer counts.
    pub fn healthy_canaries<'a>(&self, alloc: impl Fn(&str) -> Option<&'a Allocation>) -> usize {
        self.placed_canaries
            .iter()
            .filter_map(|id| alloc(id))
            .filter(|a| !a.is_terminal() && a.deployment_healthy() == Some(true))
            .count()
    }

    /// Whether `healthy` canaries are enough to promote the group (Nomad's rule: as many
    /// as it asked for).
    pub fn enough_canaries(&self, healthy: usize) -> bool {
        healthy >= usize::try_from(self.desired_canaries).unwrap_or(0)
    }
}

/// A status change for a deployment, carried in plans and applied with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentStatusUpdate {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub status_description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_spell_like_nomad() {
        assert_eq!(serde_json::to_value(DeploymentStatus::Cancelled).unwrap(), "cancelled");
        assert!(DeploymentStatus::Blocked.is_active());
        assert!(DeploymentStatus::Successful.is_terminal());
    }

    #[test]
    fn promotion_and_completion() {
        let mut deployment = Deployment::default();
        let state = DeploymentState { desired_canaries: 1, desired_total: 2, ..Default::default() };
        deployment.task_groups.insert("web".into(), state);
        assert!(deployment.requires_promotion() && !deployment.is_promoted());
        let web = deployment.task_groups.get_mut("web").unwrap();
        web.promoted = true;
        web.healthy_allocs = 2;
        assert!(deployment.is_promoted() && deployment.is_complete());
    }
}
