//! A node's local clock: simulated time seen through a drifting oscillator.
//!
//! Each server reads `local(t) = base_local + (t - base_global) * rate_ppm / 10^6`, in whole
//! milliseconds (rounded down), where `rate_ppm` is drawn per server from the seed. A
//! forward jump (an NTP step, a VM resumed with a stale clock) moves `base_local` ahead
//! and rebases at the current instant. The mapping is monotonic, so the `now` a Raft node
//! sees never goes backwards, and [`Clock::global_at`] inverts it to schedule timers:
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
