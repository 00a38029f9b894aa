//! Following a deployment after its evaluation, as Nomad's `job run` does: blocking reads
//! of `/v1/deployment/:id` until the deployment ends, is paused or blocked, or waits for an
//! operator to promote its canaries. On a terminal the status block is redrawn in place
//! at each change; otherwise only the block the watch ended on is printed, so a log shows
//! one outcome, not every step.

use super::info;
use crate::api::{ApiError, Blocking, Client, encode_component};
use crate::commands::Io;
use crate::output::{display_id, now_ns, time_text};
use crate::render::{allocs::alloc_table, deployment::status_text};
use drover_core::model::{Allocation, Deployment, DeploymentStatus};

/// How long one blocking read of the deployment waits for a change.
const DEPLOYMENT_WAIT_MS: u64 = 5_000;

/// Why the monitor stops watching a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WatchEnd {
    /// Successful, failed or cancelled.
    Terminal,
    Paused,
    /// A multiregion deployment waiting for its peers.
    Blocked,
    /// Healthy canaries wait for `deployment promote`.
    AwaitsPromotion,
}

fn watch_end(deployment: &Deployment) -> Option<WatchEnd> {
    match deployment.status {
        status if status.is_terminal() => Some(WatchEnd::Terminal),
        DeploymentStatus::Paused => Some(WatchEnd::Paused),
        DeploymentStatus::Blocked => Some(WatchEnd::Blocked),
        _ if deployment.awaits_manual_promotion() => Some(WatchEnd::AwaitsPromotion),
        _ => None,
    }
}

/// Follows the deployment until the watch ends; whether it ended successful.
pub fn follow(client: &Client, id: &str, verbose: bool, io: &mut Io<'_>) -> Result<bool, ApiError> {
    let path = format!("/v1/deployment/{}", encode_component(id));
    let mut index = 0;
    let mut drawn_lines = 0;
    loop {
        let blocking = Blocking { index, wait_ms: DEPLOYMENT_WAIT_MS };
        let (deployment, meta) = client.get::<Deployment>(&path, &[], Some(blocking))?;
        index = meta.last_index;
        let end = watch_end(&deployment);
        if io.tty || end.is_some() {
            let text = block(client, &deployment, verbose)?;
            if io.tty && drawn_lines > 0 {
                // Cursor up over the last block, then erase to the end of the screen.
                let _ = write!(io.out, "\x1b[{drawn_lines}A\x1b[J");
            }
            let _ = write!(io.out, "{text}");
            drawn_lines = text.lines().count();
        }
        if let Some(end) = end {
            print_end(&deployment, end, verbose, io);
            return Ok(deployment.status == DeploymentStatus::Successful);
        }
    }
}

/// The time, the status block and, with `-verbose`, the deployment's allocations.
fn block(client: &Client, deployment: &Deployment, verbose: bool) -> Result<String, ApiError> {
    let mut text = format!("\n{}\n{}", time_text(now_ns()), status_text(deployment, verbose));
    if verbose {
        let path = format!("/v1/deployment/allocations/{}", encode_component(&deployment.id));
        let (allocs, _) = client.get::<Vec<Allocation>>(&path, &[], None)?;
        text.push_str("\nAllocations\n");
        if allocs.is_empty() {
            text.push_str("No allocations placed\n");
        } else {
            text.push_str(&alloc_table(&allocs, verbose));
        }
    }
    Ok(text)
}

/// Says why the watch ended when the block alone does not: a deployment still running is
/// left to the operator; on a terminal, the outcome is marked as Nomad marks it.
fn print_end(deployment: &Deployment, end: WatchEnd, verbose: bool, io: &mut Io<'_>) {
    let id = display_id(&deployment.id, verbose);
    let status = deployment.status.as_str();
    match end {
        WatchEnd::Terminal if io.tty => {
            let mark = if deployment.status == DeploymentStatus::Successful { "✓" } else { "!" };
            let _ = writeln!(io.out, "\n  {mark} Deployment {id:?} {status}");
        }
        WatchEnd::Terminal => {}
        WatchEnd::Paused => {
            let hint = format!("drover deployment resume {id}");
            info(io, &format!("Deployment {id:?} is paused: {hint:?} continues it"));
        }
        WatchEnd::Blocked => info(io, &format!("Deployment {id:?} is blocked")),
        WatchEnd::AwaitsPromotion => {
            let hint = format!("drover deployment promote {id}");
            info(
                io,
                &format!("Deployment {id:?} requires manual promotion: {hint:?} continues it"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::model::DeploymentState;

    fn check(status: DeploymentStatus, group: DeploymentState, expected: Option<WatchEnd>) {
        let mut deployment = Deployment { status, ..Deployment::default() };
        deployment.task_groups.insert("web".into(), group);
        assert_eq!(watch_end(&deployment), expected, "{status:?}");
    }

    #[test]
    fn the_watch_ends_when_the_deployment_needs_nothing_more_from_the_cluster() {
        let rolling = DeploymentState { desired_total: 2, placed_allocs: 1, ..Default::default() };
        check(DeploymentStatus::Running, rolling.clone(), None);
        for status in
            [DeploymentStatus::Successful, DeploymentStatus::Failed, DeploymentStatus::Cancelled]
        {
            check(status, rolling.clone(), Some(WatchEnd::Terminal));
        }
        check(DeploymentStatus::Paused, rolling.clone(), Some(WatchEnd::Paused));
        check(DeploymentStatus::Blocked, rolling, Some(WatchEnd::Blocked));

        let canary =
            DeploymentState { desired_total: 2, desired_canaries: 1, ..Default::default() };
        check(DeploymentStatus::Running, canary.clone(), None);
        let healthy = DeploymentState { healthy_allocs: 1, ..canary };
        check(DeploymentStatus::Running, healthy.clone(), Some(WatchEnd::AwaitsPromotion));
        let automatic = DeploymentState { auto_promote: true, ..healthy.clone() };
        check(DeploymentStatus::Running, automatic, None);
        let promoted = DeploymentState { promoted: true, ..healthy };
        check(DeploymentStatus::Running, promoted, None);
    }
}
