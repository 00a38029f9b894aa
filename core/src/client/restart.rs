//! The restart policy: after a task attempt ends, restart it (and when) or let it die.
//!
//! Nomad's semantics: attempts are counted in windows of `interval` that open when the
//! task runner is created and reopen at the first exit after a window closed; within a
//! window at most `attempts` restarts happen, each after `delay` plus up to a quarter of
//! it as jitter. Past that, mode `fail` fails the task and mode `delay` waits for the
//! window to close. A batch task (and any prestart, poststart or poststop task that is
//! not a sidecar) that exits successfully is done, not restarted.

use crate::model::{DurationNs, RestartPolicy};
use crate::time::Millis;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

pub const REASON_NO_RESTARTS_ALLOWED: &str = "Policy allows no restarts";
pub const REASON_UNRECOVERABLE: &str = "Error was unrecoverable";
pub const REASON_WITHIN_POLICY: &str = "Restart within policy";
pub const REASON_DELAY: &str = "Exceeded allowed attempts, applying a delay";
pub const REASON_SUCCESSFUL: &str = "Restart unnecessary as task terminated successfully";

/// Nomad adds up to this fraction of the delay as jitter, so tasks that failed together do
/// not restart together.
const RESTART_JITTER_PERCENT: u64 = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartMode {
    Fail,
    Delay,
}

/// A restart policy checked for the client's use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestartRules {
    pub attempts: u32,
    pub interval_ms: u64,
    pub delay_ms: u64,
    pub mode: RestartMode,
    pub interval: DurationNs,
}

impl RestartRules {
    /// The policy as the client runs it, or why it cannot be run.
    pub fn from_policy(policy: &RestartPolicy) -> Result<RestartRules, String> {
        let mode = match policy.mode.as_str() {
            "fail" => RestartMode::Fail,
            "delay" => RestartMode::Delay,
            other => return Err(format!("restart mode must be fail or delay, got {other:?}")),
        };
        let attempts = u32::try_from(policy.attempts).map_err(|_| {
            format!("restart attempts must not be negative, got {}", policy.attempts)
        })?;
        if policy.interval.0 < 0 || policy.delay.0 < 0 {
            return Err("restart interval and delay must not be negative".to_owned());
        }
        Ok(RestartRules {
            attempts,
            interval_ms: policy.interval.as_millis(),
            delay_ms: policy.delay.as_millis(),
            mode,
            interval: policy.interval,
        })
    }
}

/// How an attempt ended, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    Success,
    Failure,
    StartError { recoverable: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Restart {
        delay_ms: u64,
        reason: &'static str,
    },
    /// No restart; `failed` says whether the task counts as failed.
    Stop {
        failed: bool,
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct RestartTracker {
    rules: RestartRules,
    restart_on_success: bool,
    /// Restarts decided in the current window.
    count: u32,
    window_start: Millis,
}

impl RestartTracker {
    pub fn new(now: Millis, rules: RestartRules, restart_on_success: bool) -> RestartTracker {
        RestartTracker { rules, restart_on_success, count: 0, window_start: now }
    }

    pub fn decide(&mut self, now: Millis, end: AttemptEnd, rng: &mut ChaCha8Rng) -> Verdict {
        let done = end == AttemptEnd::Success && !self.restart_on_success;
        if self.rules.attempts == 0 {
            return Verdict::Stop { failed: !done, reason: REASON_NO_RESTARTS_ALLOWED.into() };
        }
        // A window that ends exactly now is over: restarting "in 0 s" at its edge would
        // only spin the task.
        let window_end = self.window_start + Millis(self.rules.interval_ms);
        if now >= window_end {
            self.count = 0;
            self.window_start = now;
        }
        if end == (AttemptEnd::StartError { recoverable: false }) {
            return Verdict::Stop { failed: true, reason: REASON_UNRECOVERABLE.into() };
        }
        if done {
            return Verdict::Stop { failed: false, reason: REASON_SUCCESSFUL.into() };
        }
        self.count += 1;
        if self.count <= self.rules.attempts {
            return Verdict::Restart {
                delay_ms: self.jittered_delay(rng),
                reason: REASON_WITHIN_POLICY,
            };
        }
        match self.rules.mode {
            RestartMode::Fail => Verdict::Stop {
                failed: true,
                reason: format!(
                    "Exceeded allowed attempts {} in interval {} and mode is \"fail\"",
                    self.rules.attempts, self.rules.interval
                ),
            },
            RestartMode::Delay => {
                let window_end = self.window_start + Millis(self.rules.interval_ms);
                Verdict::Restart {
                    delay_ms: window_end.saturating_since(now).0,
                    reason: REASON_DELAY,
                }
            }
        }
    }

    fn jittered_delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        let delay_ms = self.rules.delay_ms;
        let jitter_max_ms = delay_ms * RESTART_JITTER_PERCENT / 100;
        delay_ms + rng.next_u64() % (jitter_max_ms + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn rules(attempts: u32, mode: RestartMode) -> RestartRules {
        RestartRules {
            attempts,
            interval_ms: 60_000,
            delay_ms: 1_000,
            mode,
            interval: DurationNs::from_mins(1),
        }
    }

    #[test]
    fn fail_mode_stops_after_attempts_within_the_window() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut tracker = RestartTracker::new(Millis(0), rules(2, RestartMode::Fail), true);
        for at in [1_000, 2_000] {
            let verdict = tracker.decide(Millis(at), AttemptEnd::Failure, &mut rng);
            assert!(matches!(verdict, Verdict::Restart { delay_ms: 1_000..=1_250, .. }));
        }
        let verdict = tracker.decide(Millis(3_000), AttemptEnd::Failure, &mut rng);
        assert!(matches!(verdict, Verdict::Stop { failed: true, .. }), "{verdict:?}");
    }

    #[test]
    fn a_new_window_resets_the_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut tracker = RestartTracker::new(Millis(0), rules(1, RestartMode::Fail), true);
        assert!(matches!(
            tracker.decide(Millis(1_000), AttemptEnd::Failure, &mut rng),
            Verdict::Restart { .. }
        ));
        assert!(matches!(
            tracker.decide(Millis(61_000), AttemptEnd::Failure, &mut rng),
            Verdict::Restart { .. }
        ));
    }

    #[test]
    fn delay_mode_waits_for_the_window_to_close() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut tracker = RestartTracker::new(Millis(0), rules(1, RestartMode::Delay), true);
        let _ = tracker.decide(Millis(1_000), AttemptEnd::Failure, &mut rng);
        let verdict = tracker.decide(Millis(10_000), AttemptEnd::Failure, &mut rng);
        assert_eq!(verdict, Verdict::Restart { delay_ms: 50_000, reason: REASON_DELAY });
    }

    #[test]
    fn delay_mode_at_the_window_edge_opens_a_new_window() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut tracker = RestartTracker::new(Millis(0), rules(1, RestartMode::Delay), true);
        let _ = tracker.decide(Millis(1_000), AttemptEnd::Failure, &mut rng);
        let verdict = tracker.decide(Millis(60_000), AttemptEnd::Failure, &mut rng);
        assert!(matches!(verdict, Verdict::Restart { reason: REASON_WITHIN_POLICY, .. }));
    }

    #[test]
    fn successful_batch_exit_is_done_and_unrecoverable_start_fails() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut tracker = RestartTracker::new(Millis(0), rules(3, RestartMode::Fail), false);
        let verdict = tracker.decide(Millis(5), AttemptEnd::Success, &mut rng);
        assert!(matches!(verdict, Verdict::Stop { failed: false, .. }));
        let verdict =
            tracker.decide(Millis(6), AttemptEnd::StartError { recoverable: false }, &mut rng);
        assert_eq!(verdict, Verdict::Stop { failed: true, reason: REASON_UNRECOVERABLE.into() });
    }
}
