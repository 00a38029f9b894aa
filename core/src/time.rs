//! Time as a value: the only way time enters `core`.
//!
//! The runtime (or the simulator) reads its clock and passes `now` into every `handle_*`
//! call; machines answer with deadlines from `poll_timeout`. Keeping time a plain number
//! makes every transition replayable from its inputs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds on a monotonic timeline chosen by the caller (the runtime's start, or the
/// simulator's zero). Never a wall-clock reading taken inside `core`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);

    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs * 1000)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later (time never runs backwards here).
    pub const fn saturating_since(self, earlier: Millis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Millis> for Millis {
    type Output = Millis;
    fn add(self, rhs: Millis) -> Millis {
        Millis(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Millis> for Millis {
    type Output = Millis;
    fn sub(self, rhs: Millis) -> Millis {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Millis {
    /// Seconds with millisecond precision, the way traces print time: `1.204s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}
