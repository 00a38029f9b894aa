//! Stable, readable text for scheduling passes: what scenario snapshots and traces show.
//!
//! Allocation IDs are seeded but meaningless to a reader, so lines name allocations by
//! their `job.group[i]` name and nodes by ID; lines are sorted within each section so the
//! text depends only on the decisions, not on map order.

use super::worker::EvalRun;
use crate::model::{AllocClientStatus, Allocation, AllocationMetric, Plan, PlanResult};
use std::fmt::Write;

/// One evaluation's passes, plan by plan, then its failures and follow-ups.
pub fn render_run(run: &EvalRun, start_ns: i64) -> String {
    let eval = &run.eval;
    let mut out = format!(
        "eval {} {} ({}) -> {}\n",
        eval.triggered_by.as_str(),
        eval.job_id,
        eval.scheduler.as_str(),
        eval.status.as_str()
    );
    for (n, (plan, evaluated)) in run.attempts.iter().enumerate() {
        let _ = writeln!(out, "  attempt {} (snapshot index {}):", n + 1, plan.snapshot_index);
        out.push_str(&render_plan(plan));
        out.push_str(&render_first_metrics(plan));
        out.push_str(&render_result(plan, &evaluated.result));
        for rejection in &evaluated.rejected {
            let _ = writeln!(out, "    rejected {}: {}", rejection.node_id, rejection.reason);
        }
    }
    if run.attempts.is_empty() {
        out.push_str("  no changes\n");
    }
    for (group, metric) in &run.output.failed_tg_allocs {
        let queued = run.output.queued.get(group).copied().unwrap_or(0);
        let _ = writeln!(out, "  failed {group}: queued={queued} {}", render_metric(metric));
    }
    for followup in &run.output.followups {
        let wait = (followup.wait_until.0 - start_ns) as f64 / 1e9;
        let _ = writeln!(out, "  follow-up {} at t={wait}s", followup.triggered_by.as_str());
    }
    if let Some(blocked) = &run.blocked {
        let eligible = blocked.class_eligibility.values().filter(|&&e| e).count();
        let _ = writeln!(
            out,
            "  blocked eval ({}): classes eligible={eligible} ineligible={} escaped={}",
            blocked.triggered_by.as_str(),
            blocked.class_eligibility.len() - eligible,
            blocked.escaped_computed_class
        );
    }
    out
}

/// Stops, then placements and updates, each sorted by name then node.
pub fn render_plan(plan: &Plan) -> String {
    let mut lines: Vec<String> = Vec::new();
    for alloc in plan.node_update.values().flatten() {
        let lost = if alloc.client_status == AllocClientStatus::Lost { " (lost)" } else { "" };
        lines.push(format!(
            "    stop   {} on {}: {}{lost}",
            alloc.name, alloc.node_id, alloc.desired_description
        ));
    }
    let mut placed: Vec<String> =
        plan.node_allocation.values().flatten().map(|a| render_placement(plan, a)).collect();
    lines.sort();
    placed.sort();
    lines.extend(placed);
    lines.extend(render_deployment(plan));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The deployment a plan creates (per group: desired total and canaries) and the
/// deployments it ends.
fn render_deployment(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(deployment) = &plan.deployment {
        let groups: Vec<String> = deployment
            .task_groups
            .iter()
            .map(|(name, g)| {
                let mut text = format!("{name}: total={}", g.desired_total);
                if g.desired_canaries > 0 {
                    let _ = write!(text, " canaries={}", g.desired_canaries);
                }
                if g.auto_promote {
                    text.push_str(" auto_promote");
                }
                if g.auto_revert {
                    text.push_str(" auto_revert");
                }
                text
            })
            .collect();
        lines.push(format!(
            "    deployment for v{} ({})",
            deployment.job_version,
            groups.join(", ")
        ));
    }
    for update in &plan.deployment_updates {
        lines.push(format!(
            "    deployment {}: {}",
            update.status.as_str(),
            update.status_description
        ));
    }
    lines
}

fn render_placement(plan: &Plan, alloc: &Allocation) -> String {
    if alloc.create_index != 0 {
        let version = plan.job.as_ref().map_or(alloc.job_version, |j| j.version);
        if !alloc.followup_eval_id.is_empty() && alloc.client_status == AllocClientStatus::Failed {
            return format!(
                "    mark   {} on {}: reschedule by follow-up eval",
                alloc.name, alloc.node_id
            );
        }
        return format!("    update {} on {}: in place to v{version}", alloc.name, alloc.node_id);
    }
    let r = alloc.allocated_resources.comparable();
    let mut line = format!(
        "    place  {} on {}: cpu={} mem={} disk={}",
        alloc.name, alloc.node_id, r.cpu_shares, r.memory_mb, r.disk_mb
    );
    let ports = &alloc.allocated_resources.shared.ports;
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(|p| format!("{}:{}", p.label, p.value)).collect();
        let _ = write!(line, " ports={}", list.join(","));
    }
    if !alloc.previous_allocation.is_empty() {
        line.push_str(" (replacement)");
    }
    if alloc.is_canary() {
        line.push_str(" (canary)");
    }
    if let Some(tracker) = &alloc.reschedule_tracker {
        let _ = write!(line, " reschedules={}", tracker.events.len());
    }
    line
}

/// For each group, how its first new placement saw the cluster, when anything was turned
/// away: shows which filters acted even when every placement succeeded.
fn render_first_metrics(plan: &Plan) -> String {
    let mut firsts: std::collections::BTreeMap<&str, &Allocation> =
        std::collections::BTreeMap::new();
    for alloc in plan.node_allocation.values().flatten().filter(|a| a.create_index == 0) {
        let kept = firsts.entry(alloc.task_group.as_str()).or_insert(alloc);
        if alloc.name < kept.name {
            *kept = alloc;
        }
    }
    let mut out = String::new();
    for (group, alloc) in firsts {
        let m = &alloc.metrics;
        if m.nodes_filtered > 0 || m.nodes_exhausted > 0 {
            let _ = writeln!(out, "    first {group} placement: {}", render_metric(m));
        }
    }
    out
}

fn render_result(plan: &Plan, result: &PlanResult) -> String {
    let (full, expected, actual) = result.is_full_commit(plan);
    let mut line = format!("    committed {actual}/{expected} placements");
    if !full || result.refresh_index != 0 {
        let _ = write!(line, ", refresh index {}", result.refresh_index);
    }
    line.push('\n');
    line
}

/// The metric as `job run` explains a failure: filters by constraint, exhaustion by
/// dimension.
pub fn render_metric(m: &AllocationMetric) -> String {
    let mut text = format!("evaluated={} filtered={}", m.nodes_evaluated, m.nodes_filtered);
    for (constraint, n) in &m.constraint_filtered {
        let _ = write!(text, " [{constraint}: {n}]");
    }
    let _ = write!(text, " exhausted={}", m.nodes_exhausted);
    for (dimension, n) in &m.dimension_exhausted {
        let _ = write!(text, " [{dimension}: {n}]");
    }
    if m.coalesced_failures > 0 {
        let _ = write!(text, " coalesced={}", m.coalesced_failures);
    }
    text
}
