//! Safety checkers that run after every simulation step.
//!
//! Each check states one of Raft's guarantees (figure 3 of the paper) or one of ours, over
//! what the simulator observes: the writes a node hands to its disk, the messages it sends,
//! the entries it applies, and its role, term and commit index after each step.

pub mod cluster;
pub mod raft;

pub use raft::RaftChecker;
