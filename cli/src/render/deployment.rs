//! A deployment as `deployment status` prints it (Nomad's `formatDeployment`): the
//! `key = value` block, then the `Deployed` table, one row per task group. `job run`'s
//! deployment monitor prints the same text.

use crate::output::{cells, display_id, key_values, table, time_text};
use drover_core::model::Deployment;

/// The status block and, when the deployment has groups, the `Deployed` table.
pub fn status_text(deployment: &Deployment, verbose: bool) -> String {
    let fields = [
        ("ID", display_id(&deployment.id, verbose)),
        ("Job ID", deployment.job_id.clone()),
        ("Job Version", deployment.job_version.to_string()),
        ("Status", deployment.status.as_str().to_owned()),
        ("Description", deployment.status_description.clone()),
    ];
    let block = key_values(&fields);
    if deployment.task_groups.is_empty() {
        return block;
    }
    format!("{block}\nDeployed\n{}", groups_table(deployment))
}

/// One row per task group. The auto-revert and canary columns appear only when some group
/// uses them, and the progress deadline only when some group has one, as Nomad shows
/// them; a group without canaries is `N/A` under `Promoted`.
pub fn groups_table(deployment: &Deployment) -> String {
    let groups = deployment.task_groups.values();
    let auto_revert = deployment.has_auto_revert();
    let canaries = groups.clone().any(|g| g.desired_canaries > 0);
    let deadlines = groups.clone().any(|g| g.progress_deadline.0 != 0);
    let mut header = vec!["Task Group"];
    if auto_revert {
        header.push("Auto Revert");
    }
    if canaries {
        header.push("Promoted");
    }
    header.push("Desired");
    if canaries {
        header.push("Canaries");
    }
    header.extend(["Placed", "Healthy", "Unhealthy"]);
    if deadlines {
        header.push("Progress Deadline");
    }
    let mut rows = vec![cells(&header)];
    for (name, group) in &deployment.task_groups {
        let mut row = vec![name.clone()];
        if auto_revert {
            row.push(group.auto_revert.to_string());
        }
        if canaries {
            let promoted =
                if group.desired_canaries > 0 { group.promoted.to_string() } else { na() };
            row.push(promoted);
        }
        row.push(group.desired_total.to_string());
        if canaries {
            row.push(group.desired_canaries.to_string());
        }
        row.extend([
            group.placed_allocs.to_string(),
            group.healthy_allocs.to_string(),
            group.unhealthy_allocs.to_string(),
        ]);
        if deadlines {
            let by = group.require_progress_by;
            row.push(if by.is_unset() { na() } else { time_text(by.0) });
        }
        rows.push(row);
    }
    table(&rows)
}

fn na() -> String {
    "N/A".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::model::{DeploymentState, DeploymentStatus, DurationNs, Timestamp};

    fn check(deployment: &Deployment, verbose: bool, expected: &str) {
        assert_eq!(status_text(deployment, verbose), expected);
    }

    fn deployment() -> Deployment {
        Deployment {
            id: "0123456789abcdef".into(),
            job_id: "web".into(),
            job_version: 3,
            status: DeploymentStatus::Running,
            status_description: "Deployment is running".into(),
            ..Deployment::default()
        }
    }

    #[test]
    fn a_deployment_without_groups_is_its_block_alone() {
        let text = "\
ID          = 01234567
Job ID      = web
Job Version = 3
Status      = running
Description = Deployment is running
";
        check(&deployment(), false, text);
        let full = text.replace("01234567", "0123456789abcdef");
        check(&deployment(), true, &full);
    }

    #[test]
    fn columns_follow_what_the_groups_use() {
        let mut plain = deployment();
        let state = DeploymentState {
            desired_total: 2,
            placed_allocs: 1,
            progress_deadline: DurationNs::from_secs(600),
            require_progress_by: Timestamp(1_700_000_000_000_000_000),
            ..DeploymentState::default()
        };
        plain.task_groups.insert("api".into(), state.clone());
        let unplaced = DeploymentState { require_progress_by: Timestamp(0), ..state.clone() };
        plain.task_groups.insert("db".into(), unplaced);
        let expected = "\
Task Group  Desired  Placed  Healthy  Unhealthy  Progress Deadline
api         2        1       0        0          2023-11-14T22:13:20Z
db          2        1       0        0          N/A
";
        assert_eq!(groups_table(&plain), expected);

        let mut canary = deployment();
        let with_canary = DeploymentState {
            auto_revert: true,
            desired_canaries: 1,
            progress_deadline: DurationNs(0),
            ..state.clone()
        };
        canary.task_groups.insert("api".into(), with_canary);
        let without = DeploymentState { progress_deadline: DurationNs(0), ..state };
        canary.task_groups.insert("db".into(), without);
        let expected = "\
Task Group  Auto Revert  Promoted  Desired  Canaries  Placed  Healthy  Unhealthy
api         true         false     2        1         1       0        0
db          false        N/A       2        0         1       0        0
";
        assert_eq!(groups_table(&canary), expected);
    }
}
