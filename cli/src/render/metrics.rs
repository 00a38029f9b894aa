//! Why placements failed, as Nomad's CLI explains an `AllocationMetric`
//! (`formatAllocMetrics`): one `* …` line per reason. `job run`'s monitor and `job plan`
//! print it.

use super::go_quote;
use drover_core::model::AllocationMetric;
use std::fmt::Write;

/// The reasons in `metric`, one line each, every line starting with `prefix`, without a
/// final newline. Maps are printed in key order.
pub fn format_alloc_metrics(metric: &AllocationMetric, prefix: &str) -> String {
    let mut out = String::new();
    if metric.nodes_evaluated == 0 {
        let _ = writeln!(out, "{prefix}* No nodes were eligible for evaluation");
    }
    for (datacenter, _) in metric.nodes_available.iter().filter(|(_, n)| **n == 0) {
        let dc = go_quote(datacenter);
        let _ = writeln!(out, "{prefix}* No nodes are available in datacenter {dc}");
    }
    for (class, count) in &metric.class_filtered {
        let class = go_quote(class);
        let _ = writeln!(out, "{prefix}* Class {class}: {count} nodes excluded by filter");
    }
    for (constraint, count) in &metric.constraint_filtered {
        let constraint = go_quote(constraint);
        let _ =
            writeln!(out, "{prefix}* Constraint {constraint}: {count} nodes excluded by filter");
    }
    if metric.nodes_exhausted > 0 {
        let _ = writeln!(out, "{prefix}* Resources exhausted on {} nodes", metric.nodes_exhausted);
    }
    for (class, count) in &metric.class_exhausted {
        let _ = writeln!(out, "{prefix}* Class {} exhausted on {count} nodes", go_quote(class));
    }
    for (dimension, count) in &metric.dimension_exhausted {
        let dimension = go_quote(dimension);
        let _ = writeln!(out, "{prefix}* Dimension {dimension} exhausted on {count} nodes");
    }
    for dimension in &metric.quota_exhausted {
        let _ = writeln!(out, "{prefix}* Quota limit hit {}", go_quote(dimension));
    }
    out.truncate(out.trim_end_matches('\n').len());
    out
}
