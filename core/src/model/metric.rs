//! Placement metrics.
//!
//! [`AllocationMetric`] explains a placement: how many nodes were looked at, which filter
//! or which resource dimension turned each one away, and how the best candidates scored.
//! It is what `nomad job run` prints under "failed to place all allocations", so every
//! counter keeps Nomad's name.

use super::node::Node;
use super::resources::Resources;
use super::value::DurationNs;
use super::vec_map::VecMap;
use serde::{Deserialize, Serialize};

/// How many of the best node scores a metric keeps (Nomad's `MaxRetainedNodeScores`).
pub const NODE_SCORES_RETAINED_MAX: usize = 5;

/// Why and where one placement did or did not land.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocationMetric {
    pub nodes_evaluated: u64,
    pub nodes_filtered: u64,
    pub nodes_in_pool: u64,
    /// Ready nodes per datacenter when the placement was attempted.
    pub nodes_available: VecMap<String, u64>,
    pub class_filtered: VecMap<String, u64>,
    /// Keyed by the constraint's text, e.g. `${attr.kernel.name} = linux`.
    pub constraint_filtered: VecMap<String, u64>,
    pub nodes_exhausted: u64,
    pub class_exhausted: VecMap<String, u64>,
    /// Keyed by dimension: `cpu`, `memory`, `disk`, `network: reserved port collision`, ….
    pub dimension_exhausted: VecMap<String, u64>,
    pub quota_exhausted: Vec<String>,
    /// Per task, the resources that did not fit.
    pub resources_exhausted: VecMap<String, Resources>,
    /// The best few nodes, highest normalized score first.
    pub score_meta_data: Vec<NodeScoreMeta>,
    pub allocation_time: DurationNs,
    /// Further allocations of the same group that failed for the same reasons.
    pub coalesced_failures: u64,
}

/// One node's scores, by scorer name (`binpack`, `job-anti-affinity`, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeScoreMeta {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub scores: VecMap<String, f64>,
    pub norm_score: f64,
}

impl AllocationMetric {
    /// A node entered the feasibility chain.
    pub fn evaluate_node(&mut self) {
        self.nodes_evaluated += 1;
    }

    /// A feasibility check rejected `node`; `constraint` names the check ("" if unnamed).
    pub fn filter_node(&mut self, node: &Node, constraint: &str) {
        self.nodes_filtered += 1;
        bump(&mut self.class_filtered, &node.node_class);
        bump(&mut self.constraint_filtered, constraint);
    }

    /// `node` was feasible but had no room left in `dimension`.
    pub fn exhausted_node(&mut self, node: &Node, dimension: &str) {
        self.nodes_exhausted += 1;
        bump(&mut self.class_exhausted, &node.node_class);
        bump(&mut self.dimension_exhausted, dimension);
    }

    /// A namespace quota, not a node, ran out.
    pub fn exhaust_quota(&mut self, dimensions: &[String]) {
        self.quota_exhausted.extend(dimensions.iter().cloned());
    }

    /// Keeps `score` if it is among the [`NODE_SCORES_RETAINED_MAX`] best seen so far.
    /// Ties keep the earlier node, so the order is a function of the evaluation order.
    pub fn record_score(&mut self, score: NodeScoreMeta) {
        let position = self
            .score_meta_data
            .iter()
            .position(|kept| kept.norm_score < score.norm_score)
            .unwrap_or(self.score_meta_data.len());
        if position < NODE_SCORES_RETAINED_MAX {
            self.score_meta_data.insert(position, score);
            self.score_meta_data.truncate(NODE_SCORES_RETAINED_MAX);
        }
    }

    /// True when nothing was filtered or exhausted: the failure was not about nodes.
    pub fn is_empty_failure(&self) -> bool {
        self.nodes_filtered == 0 && self.nodes_exhausted == 0 && self.quota_exhausted.is_empty()
    }
}

/// Counts one more under `key`; empty keys (no class, unnamed check) are not counted.
/// The key is copied only the first time it is counted.
fn bump(counts: &mut VecMap<String, u64>, key: &str) {
    if key.is_empty() {
        return;
    }
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => drop(counts.insert(key.to_owned(), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_score_keeps_the_best_few_in_order() {
        let mut metric = AllocationMetric::default();
        for (index, score) in [0.1, 0.9, 0.5, 0.9, 0.2, 0.7, 0.3].into_iter().enumerate() {
            let node_id = format!("n{index}");
            metric.record_score(NodeScoreMeta { node_id, norm_score: score, ..Default::default() });
        }
        let kept: Vec<_> = metric.score_meta_data.iter().map(|m| m.node_id.as_str()).collect();
        assert_eq!(kept, ["n1", "n3", "n5", "n2", "n6"]);
    }
}
