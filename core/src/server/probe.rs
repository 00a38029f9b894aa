//! Stages of a server's work, marked for a runtime that wants to know where its time goes.
//!
//! The server reads no clock: it only says when a stage begins and ends. A runtime's
//! [`StageProbe`] may read its own clock there (the benchmarks do); the simulator and the
//! tests plug none, and then marking a stage costs one branch.

/// A stage of the server's work. Raft's own handling and everything else is what is left
/// of the time spent in the server's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Encoding a command into the bytes of a log entry.
    CommandEncode,
    /// Decoding a committed log entry back into its command.
    EntryDecode,
    /// Applying a command to the state machine.
    StateApply,
    /// The leader's applier re-checking a plan against the latest state.
    PlanEvaluate,
    /// Handing a state snapshot's bytes to Raft for log compaction (the runtime encodes
    /// them, off the server's loop).
    SnapshotWrite,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::CommandEncode,
        Stage::EntryDecode,
        Stage::StateApply,
        Stage::PlanEvaluate,
        Stage::SnapshotWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CommandEncode => "command_encode",
            Stage::EntryDecode => "entry_decode",
            Stage::StateApply => "state_apply",
            Stage::PlanEvaluate => "plan_evaluate",
            Stage::SnapshotWrite => "snapshot_write",
        }
    }
}

/// Told when each stage begins and ends; stages never nest.
pub trait StageProbe {
    fn begin(&mut self, stage: Stage);
    fn end(&mut self, stage: Stage);
}
