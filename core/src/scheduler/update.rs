//! Nomad's `tasksUpdated`: does a job change force new allocations (destructive) or can
//! running ones take the new version in place?
//!
//! Destructive: a different set of tasks, or a task's driver, user, config, env, meta,
//! artifacts, templates, volume mounts, CPU or memory changed; or the group's networks,
//! ephemeral disk, volumes or meta; or the job's meta. Everything else (count, update
//! strategy, restart and reschedule policies, services, constraints, …) is in place.

use crate::model::{Job, Task, TaskGroup};

pub fn tasks_updated(old_job: &Job, old: &TaskGroup, new_job: &Job, new: &TaskGroup) -> bool {
    if old.tasks.len() != new.tasks.len()
        || old.networks != new.networks
        || old.ephemeral_disk != new.ephemeral_disk
        || old.volumes != new.volumes
        || old.meta != new.meta
        || old_job.meta != new_job.meta
    {
        return true;
    }
    old.tasks.iter().any(|task| match new.task(&task.name) {
        None => true,
        Some(other) => task_updated(task, other),
    })
}

/// Whether one task's change forces its allocations to be replaced (the per-task part of
/// [`tasks_updated`]).
pub fn task_updated(a: &Task, b: &Task) -> bool {
    let (ra, rb) = (&a.resources, &b.resources);
    a.driver != b.driver
        || a.user != b.user
        || a.config != b.config
        || a.env != b.env
        || a.meta != b.meta
        || a.artifacts != b.artifacts
        || a.templates != b.templates
        || a.volume_mounts != b.volume_mounts
        || ra.cpu_mhz != rb.cpu_mhz
        || ra.cores != rb.cores
        || ra.memory_mb != rb.memory_mb
        || ra.memory_max_mb != rb.memory_max_mb
        || ra.disk_mb != rb.disk_mb
        || ra.networks != rb.networks
}
