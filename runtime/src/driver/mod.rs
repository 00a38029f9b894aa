//! Task drivers: how a client's "start this task" becomes a running process.
//!
//! `alloc_dir` lays out an allocation's directories; `alloc_fs` reads them for the API,
//! confined to each; `logs` rotates task output into
//! them; `executor` is the process that owns one task; `raw_exec` is the driver that
//! starts executors, reattaches to them after an agent restart and stops tasks.

pub mod alloc_dir;
pub mod alloc_fs;
pub mod executor;
pub mod logs;
pub mod raw_exec;
