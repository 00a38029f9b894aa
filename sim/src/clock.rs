//! A node's local clock: simulated time seen through a drifting oscillator.
//!
//! Each server reads `local(t) = base_local + (t - base_global) * rate_ppm / 10^6`, in whole
//! milliseconds (rounded down), where `rate_ppm` is drawn per server from the seed. A
//! forward jump (an NTP step, a VM resumed with a stale clock) moves `base_local` ahead
//! and rebases at the current instant. The mapping is monotonic between steps, so the
//! `now` a running node sees never goes backwards. A step back ([`Clock::step`]) is the
//! wall clock an operator or NTP set back: the cluster simulator applies it only when a
//! node boots, because a running agent's `now` is its start's unix time plus a monotonic
//! clock and never sees a wall-clock step; a process started after the step reads the
//! earlier time, below what its previous life saw, and the core must tolerate that
//! (Raft's timers restart, replicated state only uses leader-stamped times, and the
//! periodic dispatcher never launches before the recorded last launch). and [`Clock::global_at`] inverts it to schedule timers:
//! a deadline in local time fires at the first simulated instant that reaches it.

use drover_core::time::Millis;

/// The rate of an ideal clock, in parts per million of simulated time.
pub const RATE_IDEAL_PPM: u64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    rate_ppm: u64,
    base_global: Millis,
    base_local: Millis,
}

impl Clock {
    /// A clock that reads `global` now and runs at `rate_ppm`.
    pub fn new(global: Millis, rate_ppm: u64) -> Clock {
        assert!(rate_ppm > 0);
        Clock { rate_ppm, base_global: global, base_local: global }
    }

    pub fn rate_ppm(&self) -> u64 {
        self.rate_ppm
    }

    /// The local reading at simulated instant `global` (not before the last rebase).
    pub fn local(&self, global: Millis) -> Millis {
        assert!(global >= self.base_global, "clock read before its last rebase");
        let elapsed = (global.as_u64() - self.base_global.as_u64()) as u128;
        let local = elapsed * self.rate_ppm as u128 / RATE_IDEAL_PPM as u128;
        self.base_local + Millis(local as u64)
    }

    /// The first simulated instant, not before `now`, at which the clock reads `deadline`.
    pub fn global_at(&self, now: Millis, deadline: Millis) -> Millis {
        if deadline <= self.local(now) {
            return now;
        }
        let ahead = (deadline.as_u64() - self.base_local.as_u64()) as u128;
        let scaled = ahead * RATE_IDEAL_PPM as u128;
        let elapsed = scaled.div_ceil(self.rate_ppm as u128) as u64;
        let global = self.base_global + Millis(elapsed);
        debug_assert!(self.local(global) >= deadline);
        global.max(now)
    }

    /// Steps the clock forward by `jump` at simulated instant `now`.
    pub fn jump(&mut self, now: Millis, jump: Millis) {
        self.base_local = self.local(now) + jump;
        self.base_global = now;
    }

    /// Steps the clock by `step_ms`, forward or back, at simulated instant `now`. A clock
    /// stepped back reads earlier times than before: only a process that starts after the
    /// step may read it (see the module doc), never one that read the clock before.
    pub fn step(&mut self, now: Millis, step_ms: i64) {
        let local = self.local(now).as_u64().saturating_add_signed(step_ms);
        self.base_local = Millis(local);
        self.base_global = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_back_rebases_and_deadlines_still_round_trip() {
        let mut clock = Clock::new(Millis(1_000), 1_000_000);
        clock.step(Millis(5_000), -3_000);
        assert_eq!(clock.local(Millis(5_000)), Millis(2_000));
        assert_eq!(clock.local(Millis(6_000)), Millis(3_000));
        let at = clock.global_at(Millis(5_000), Millis(2_500));
        assert_eq!(at, Millis(5_500));
        clock.step(Millis(6_000), 10_000);
        assert_eq!(clock.local(Millis(6_000)), Millis(13_000));
    }

    #[test]
    fn deadlines_round_trip_and_time_never_goes_back() {
        for rate_ppm in [900_000, 999_999, 1_000_000, 1_000_001, 1_100_000] {
            let mut clock = Clock::new(Millis(5), rate_ppm);
            let mut last = clock.local(Millis(5));
            for t in 5..5_000 {
                let now = Millis(t);
                if t % 977 == 0 {
                    clock.jump(now, Millis(t % 7));
                }
                let local = clock.local(now);
                assert!(local >= last);
                last = local;
                let deadline = local + Millis(t % 300);
                let at = clock.global_at(now, deadline);
                assert!(clock.local(at) >= deadline);
                assert!(at == now || clock.local(at - Millis(1)) < deadline);
            }
        }
    }
}
