//! Allocation lists as Nomad's commands print them (`job status`, `node status`, and the
//! deployment monitor's `-verbose` view).

use crate::output::{cells, display_id, now_ns, table, time_ago};
use drover_core::model::Allocation;

/// A job's or node's allocations: ID, node, group, version, desired and client status,
/// created and modified, newest first as Nomad lists them.
pub fn alloc_table(allocs: &[Allocation], verbose: bool) -> String {
    let id = |id: &str| display_id(id, verbose);
    let now = now_ns();
    let mut sorted: Vec<&Allocation> = allocs.iter().collect();
    sorted.sort_by(|a, b| b.create_index.cmp(&a.create_index).then_with(|| a.id.cmp(&b.id)));
    let mut rows = vec![cells(&[
        "ID",
        "Node ID",
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ])];
    rows.extend(sorted.iter().map(|alloc| {
        vec![
            id(&alloc.id),
            id(&alloc.node_id),
            alloc.task_group.clone(),
            alloc.job_version.to_string(),
            alloc.desired_status.as_str().to_owned(),
            alloc.client_status.as_str().to_owned(),
            time_ago(alloc.create_time, now),
            time_ago(alloc.modify_time, now),
        ]
    }));
    table(&rows)
}
