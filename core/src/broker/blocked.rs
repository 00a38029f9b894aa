//! Blocked evaluations: jobs waiting for capacity (Nomad's `blocked_evals.go`).
//!
//! A pass that could not place everything leaves a `blocked` evaluation carrying, per
//! computed node class, whether the job could run there, and whether some constraint
//! escaped the class. The tracker keeps at most one per job (a newer one cancels the
//! older) and releases them when capacity appears: an escaped evaluation on any change,
//! a captured one when the changed class was eligible or never seen. A change that
//! happened after the evaluation's snapshot but before it was blocked is not missed: the
//! tracker remembers the index of the last change per class and releases at once.
//!
//! Draining order: after any `block` or `unblock_*` call, take [`BlockedEvals::drain_unblocked`]
//! (ready to enqueue, status still `blocked`; the caller sets `pending`) and
//! [`BlockedEvals::drain_cancelled`] (to store as `canceled`).

use crate::model::{EvalStatus, Evaluation};
use std::collections::{BTreeMap, VecDeque};

/// How many distinct classes' last-unblock indexes are remembered.
pub const UNBLOCK_INDEXES_MAX: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct BlockedEvals {
    /// (namespace, job) → the job's blocked evaluation.
    by_job: BTreeMap<(String, String), Evaluation>,
    /// Class → Raft index of the last capacity change seen there.
    unblock_indexes: BTreeMap<String, u64>,
    /// Index of the last change that released everything (escaped or not).
    unblock_all_index: u64,
    unblocked: VecDeque<Evaluation>,
    cancelled: VecDeque<Evaluation>,
}

/// Counters for `/v1/metrics`-style reporting; never negative by construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedStats {
    pub total_blocked: usize,
    pub total_escaped: usize,
}

impl BlockedEvals {
    pub fn len(&self) -> usize {
        self.by_job.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_job.is_empty()
    }

    pub fn stats(&self) -> BlockedStats {
        BlockedStats {
            total_blocked: self.by_job.len(),
            total_escaped: self.by_job.values().filter(|e| e.escaped_computed_class).count(),
        }
    }

    pub fn contains_job(&self, namespace: &str, job_id: &str) -> bool {
        self.by_job.contains_key(&(namespace.to_owned(), job_id.to_owned()))
    }

    /// Tracks `eval` (status `blocked`). An older blocked evaluation of the same job is
    /// cancelled; a newer one already tracked wins and `eval` is cancelled instead.
    pub fn block(&mut self, eval: Evaluation) {
        assert_eq!(eval.status, EvalStatus::Blocked, "only blocked evaluations are tracked");
        let key = (eval.namespace.clone(), eval.job_id.clone());
        if self.missed_unblock(&eval) {
            // The job's older blocked evaluation is superseded all the same (the state
            // cancelled it when this one was written); it must not be released later.
            if self.by_job.get(&key).is_some_and(|kept| eval.replaces_blocked(kept)) {
                let older = self.by_job.remove(&key).expect("just looked up");
                self.cancel(older);
            }
            self.unblocked.push_back(eval);
            return;
        }
        match self.by_job.get(&key) {
            Some(kept) if !eval.replaces_blocked(kept) => self.cancel(eval),
            _ => {
                if let Some(older) = self.by_job.insert(key, eval) {
                    self.cancel(older);
                }
            }
        }
    }

    fn cancel(&mut self, mut eval: Evaluation) {
        eval.supersede();
        self.cancelled.push_back(eval);
    }

    /// Whether capacity appeared, for a class this evaluation could use, after the state
    /// its scheduler saw.
    fn missed_unblock(&self, eval: &Evaluation) -> bool {
        let seen = eval.snapshot_index;
        if self.unblock_all_index > seen {
            return true;
        }
        self.unblock_indexes.iter().any(|(class, &index)| index > seen && releases(eval, class))
    }

    /// Capacity changed on `class` at Raft `index`.
    pub fn unblock_class(&mut self, class: &str, index: u64) {
        if self.unblock_indexes.len() >= UNBLOCK_INDEXES_MAX
            && !self.unblock_indexes.contains_key(class)
        {
            // Forget per-class detail rather than grow without bound; remember the
            // change conservatively as one that releases everything.
            self.unblock_indexes.clear();
            self.unblock_all_index = index;
        }
        self.unblock_indexes.insert(class.to_owned(), index);
        let released: Vec<_> = self
            .by_job
            .iter()
            .filter(|(_, e)| releases(e, class))
            .map(|(k, _)| k.clone())
            .collect();
        for key in released {
            let eval = self.by_job.remove(&key).expect("key from the map");
            self.unblocked.push_back(eval);
        }
    }

    /// Releases every blocked evaluation (e.g. on leadership gain, or a failed-eval retry).
    pub fn unblock_all(&mut self, index: u64) {
        self.unblock_all_index = index;
        let all = std::mem::take(&mut self.by_job);
        self.unblocked.extend(all.into_values());
    }

    /// Drops a job's blocked evaluation (the job was deregistered or re-evaluated).
    pub fn untrack(&mut self, namespace: &str, job_id: &str) -> Option<Evaluation> {
        self.by_job.remove(&(namespace.to_owned(), job_id.to_owned()))
    }

    #[must_use]
    pub fn drain_unblocked(&mut self) -> Vec<Evaluation> {
        self.unblocked.drain(..).collect()
    }

    #[must_use]
    pub fn drain_cancelled(&mut self) -> Vec<Evaluation> {
        self.cancelled.drain(..).collect()
    }
}

/// Escaped evaluations wake on any change; captured ones when the class was eligible or
/// never seen by their scheduler.
fn releases(eval: &Evaluation, class: &str) -> bool {
    eval.escaped_computed_class || eval.class_eligibility.get(class).copied().unwrap_or(true)
}
