//! Renderings the scenario harnesses share, so a deployment reads the same in every
//! script (scheduler and server).

use drover_core::model::DeploymentState;

/// One task group of a deployment: `<name>: desired=… canaries=placed/desired promoted=…
/// placed=… healthy=… unhealthy=…`.
pub fn deployment_group_line(name: &str, group: &DeploymentState) -> String {
    format!(
        "{name}: desired={} canaries={}/{} promoted={} placed={} healthy={} unhealthy={}",
        group.desired_total,
        group.placed_canaries.len(),
        group.desired_canaries,
        group.promoted,
        group.placed_allocs,
        group.healthy_allocs,
        group.unhealthy_allocs
    )
}
