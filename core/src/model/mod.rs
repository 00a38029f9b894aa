//! The domain model: jobs, nodes, allocations, evaluations, deployments and plans.
//!
//! Every type serialises to Nomad's v1 API JSON (PascalCase keys, durations as integer
//! nanoseconds) and to the binary codec. Maps are ordered (`BTreeMap`s, or [`VecMap`]s for
//! the small maps allocations carry by the million) so that both encodings are
//! deterministic.

mod alloc;
mod autopilot;
mod canonicalize;
pub mod cron;
mod deployment;
mod diff;
mod eval;
mod job;
mod metric;
mod node;
mod plan;
mod resources;
mod timestamp;
mod validate;
mod value;
mod vec_map;

pub use alloc::*;
pub use autopilot::{
    AUTOPILOT_SETTINGS, AutopilotConfiguration, AutopilotSetting, AutopilotSettingKind,
};
pub use canonicalize::{
    ApiDecodeError, decode_api_json, job_from_api_json, job_from_json_str, job_to_api_json,
};
pub use deployment::*;
pub use diff::{
    DiffError, DiffType, FieldDiff, JOB_FIELDS_EXCLUDED, JobDiff, ObjectDiff, TaskDiff,
    TaskGroupDiff, job_diff,
};
pub use eval::*;
pub use job::*;
pub use metric::*;
pub use node::*;
pub use plan::*;
pub use resources::*;
pub use timestamp::Timestamp;
pub use validate::*;
pub use value::{DurationNs, FreeValue, go_duration_ms, go_duration_text};
pub use vec_map::VecMap;
