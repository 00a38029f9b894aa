//! drover-runtime: binds `drover-core` to the world (transport, disk, HTTP, drivers).
//!
//! Empty until the agent runtime lands; the crate exists so the workspace has its final
//! shape and dependencies point the right way (`runtime` → `core`, never back).
