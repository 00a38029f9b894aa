//! Scoring: bin-pack (Nomad's "BestFit v3") or spread fit, node affinities, and spread
//! blocks with or without targets. Every score lies in [-1, 1]; the stack averages the
//! scores that apply to a node (Nomad's score normalisation).

use super::feasible::{self, Compiled};
use crate::model::{ComparableResources, Node, NodeCapacity, Spread};
use std::collections::BTreeMap;

/// The scheduler configuration's placement algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    Binpack,
    Spread,
}

/// The largest raw fit score (20 − 10^0 − 10^0).
const FIT_SCORE_MAX: f64 = 18.0;

/// BestFit v3: free = 1 − used/capacity for CPU and memory; bin-pack scores
/// 20 − (10^freeCpu + 10^freeMem), spread scores (10^freeCpu + 10^freeMem) − 2; both
/// clamped to [0, 18] and divided by 18.
pub fn fit_score(
    algorithm: Algorithm,
    used: &ComparableResources,
    ask: &ComparableResources,
    capacity: &NodeCapacity,
) -> f64 {
    let free = |used: i64, ask: i64, cap: i64| {
        if cap <= 0 { 0.0 } else { 1.0 - (used + ask) as f64 / cap as f64 }
    };
    let free_cpu = free(used.cpu_shares, ask.cpu_shares, capacity.cpu_shares);
    let free_mem = free(used.memory_mb, ask.memory_mb, capacity.memory_mb);
    // 10^x as e^(x·ln 10): the same value, and `exp` is cheaper than `powf` on the
    // scheduler's hottest path.
    let total =
        (free_cpu * std::f64::consts::LN_10).exp() + (free_mem * std::f64::consts::LN_10).exp();
    let raw = match algorithm {
        Algorithm::Binpack => 20.0 - total,
        Algorithm::Spread => total - 2.0,
    };
    raw.clamp(0.0, FIT_SCORE_MAX) / FIT_SCORE_MAX
}

/// Σ weights of matching affinities / Σ |weights|; `None` when nothing applies.
pub fn affinity_score(affinities: &[(Compiled, i8)], node: &Node) -> Option<f64> {
    if affinities.is_empty() {
        return None;
    }
    let total: f64 = affinities.iter().map(|(_, w)| f64::from(*w).abs()).sum();
    let matched: f64 =
        affinities.iter().filter(|(c, _)| c.holds(node)).map(|(_, w)| f64::from(*w)).sum();
    (total > 0.0 && matched != 0.0).then(|| matched / total)
}

/// One spread block and the group's allocations per attribute value.
#[derive(Clone, Debug)]
pub struct SpreadTracker {
    attribute: String,
    weight: f64,
    /// Value → desired count; `*` holds the remainder when targets do not sum to 100 %.
    desired: BTreeMap<String, f64>,
    counts: BTreeMap<String, u32>,
}

impl SpreadTracker {
    pub fn new(spread: &Spread, count: u32, counts: BTreeMap<String, u32>) -> SpreadTracker {
        let mut desired = BTreeMap::new();
        let mut percent_sum = 0u32;
        for target in &spread.spread_target {
            desired
                .insert(target.value.clone(), f64::from(target.percent) / 100.0 * f64::from(count));
            percent_sum += u32::from(target.percent);
        }
        if !desired.is_empty() && percent_sum < 100 {
            desired.insert("*".into(), f64::from(100 - percent_sum) / 100.0 * f64::from(count));
        }
        SpreadTracker {
            attribute: spread.attribute.clone(),
            weight: f64::from(spread.weight.max(0)),
            desired,
            counts,
        }
    }

    pub fn record(&mut self, node: &Node) {
        if let Some(value) = feasible::resolve(&self.attribute, node) {
            *self.counts.entry(value.to_owned()).or_default() += 1;
        }
    }

    /// This block's boost for `node`, before weighting, in [-1, 1].
    fn boost(&self, node: &Node) -> f64 {
        let Some(value) = feasible::resolve(&self.attribute, node) else { return -1.0 };
        let used = f64::from(self.counts.get(value).copied().unwrap_or(0));
        if self.desired.is_empty() {
            return self.even_boost(used);
        }
        let desired =
            self.desired.get(value).or_else(|| self.desired.get("*")).copied().unwrap_or(0.0);
        if desired <= 0.0 {
            return -1.0;
        }
        ((desired - used) / desired).clamp(-1.0, 1.0)
    }

    /// Without targets: favour values with fewer allocations than the busiest one.
    fn even_boost(&self, used: f64) -> f64 {
        let Some(max) = self.counts.values().max().map(|&m| f64::from(m)) else { return 0.0 };
        let min = self.counts.values().min().map_or(0.0, |&m| f64::from(m));
        if used == 0.0 && max > 0.0 {
            return 1.0;
        }
        if used > min {
            return -((used - min) / used);
        }
        if max > min { (max - min) / max } else { 0.0 }
    }
}

/// The weighted sum of spread boosts; `None` without spread blocks.
pub fn spread_score(spreads: &[SpreadTracker], node: &Node) -> Option<f64> {
    if spreads.is_empty() {
        return None;
    }
    let total: f64 = spreads.iter().map(|s| s.weight).sum();
    if total <= 0.0 {
        return None;
    }
    Some(spreads.iter().map(|s| s.boost(node) * s.weight / total).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binpack_prefers_fuller_nodes() {
        let capacity = NodeCapacity { cpu_shares: 4000, memory_mb: 8192, disk_mb: 0 };
        let ask = ComparableResources { cpu_shares: 500, memory_mb: 256, disk_mb: 0 };
        let empty = fit_score(Algorithm::Binpack, &ComparableResources::default(), &ask, &capacity);
        let busy = ComparableResources { cpu_shares: 3000, memory_mb: 6000, disk_mb: 0 };
        let full = fit_score(Algorithm::Binpack, &busy, &ask, &capacity);
        assert!(full > empty, "{full} > {empty}");
        let spread_empty =
            fit_score(Algorithm::Spread, &ComparableResources::default(), &ask, &capacity);
        let spread_full = fit_score(Algorithm::Spread, &busy, &ask, &capacity);
        assert!(spread_empty > spread_full);
        assert!((0.0..=1.0).contains(&empty));
    }
}
