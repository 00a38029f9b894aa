//! The plan queue (leader only): plans from all workers wait here for the one applier.
//!
//! Ordered by priority (high first), then arrival (FIFO), as Nomad's `plan_queue.go`.
//! Bounded by [`PlanQueue::plans_pending_max`]: a full queue refuses a plan rather than
//! grow, and the worker nacks its evaluation to retry later. Draining order: the applier
//! calls [`PlanQueue::poll_next`] whenever it is idle, evaluates the plan against the
//! latest state, commits the result, and answers the plan's ticket.

use crate::model::Plan;
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// Plans waiting at once before the queue refuses more.
pub const PLANS_PENDING_MAX_DEFAULT: usize = 1024;

/// Identifies a queued plan, so its worker can be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlanTicket(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanQueueError {
    Full { plans_pending_max: usize },
}

#[derive(Clone, Debug)]
pub struct PlanQueue {
    plans_pending_max: usize,
    next: u64,
    /// (priority high first, arrival) → plan.
    pending: BTreeMap<(Reverse<i32>, u64), Plan>,
}

impl PlanQueue {
    pub fn new(plans_pending_max: usize) -> PlanQueue {
        PlanQueue { plans_pending_max, next: 0, pending: BTreeMap::new() }
    }

    pub fn plans_pending_max(&self) -> usize {
        self.plans_pending_max
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn handle_enqueue(&mut self, plan: Plan) -> Result<PlanTicket, PlanQueueError> {
        if self.pending.len() >= self.plans_pending_max {
            return Err(PlanQueueError::Full { plans_pending_max: self.plans_pending_max });
        }
        self.next += 1;
        self.pending.insert((Reverse(plan.priority), self.next), plan);
        Ok(PlanTicket(self.next))
    }

    /// The next plan to apply: highest priority, then oldest.
    #[must_use]
    pub fn poll_next(&mut self) -> Option<(PlanTicket, Plan)> {
        let ((_, ticket), plan) = self.pending.pop_first()?;
        Some((PlanTicket(ticket), plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_fifo_and_bounded() {
        let mut queue = PlanQueue::new(3);
        let plan = |id: &str, priority| Plan { eval_id: id.into(), priority, ..Plan::default() };
        queue.handle_enqueue(plan("a", 50)).unwrap();
        queue.handle_enqueue(plan("b", 70)).unwrap();
        queue.handle_enqueue(plan("c", 50)).unwrap();
        assert_eq!(
            queue.handle_enqueue(plan("d", 99)),
            Err(PlanQueueError::Full { plans_pending_max: 3 })
        );
        let order: Vec<String> =
            std::iter::from_fn(|| queue.poll_next().map(|(_, p)| p.eval_id)).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert!(queue.is_empty());
    }
}
