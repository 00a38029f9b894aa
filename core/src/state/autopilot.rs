//! The autopilot configuration an operator set (`operator autopilot set-config`), kept
//! in the replicated state as Nomad keeps it: one record with its create and modify
//! index, replaced whole by each write, optionally only if nobody wrote since the
//! caller read it (check-and-set).

use super::State;
use serde::{Deserialize, Serialize};

/// The most `max_trailing_logs` and `min_quorum` may be: far past any region, and far
/// from overflowing the sums autopilot makes of them.
pub const AUTOPILOT_COUNT_MAX: u64 = 1_000_000;
/// The shortest `last_contact_threshold`: at 0 no learner would ever count as healthy.
pub const LAST_CONTACT_THRESHOLD_MIN_MS: u64 = 1;
/// The longest duration autopilot takes (a day): longer would mean never, and bounding it
/// keeps every sum with it far from overflow.
pub const AUTOPILOT_DURATION_MAX_MS: u64 = 86_400_000;

/// Nomad's `autopilot` settings, with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    pub cleanup_dead_servers: bool,
    /// The longest a learner may go without acknowledging the leader's heartbeats and
    /// still count as healthy.
    pub last_contact_threshold_ms: u64,
    pub server_stabilization_time_ms: u64,
    /// How far behind the commit index a learner may be and still count as healthy.
    pub max_trailing_logs: u64,
    /// Dead voters are never removed below this many voters (the agent sets it to its
    /// `bootstrap_expect`).
    pub min_quorum: usize,
}

impl Default for AutopilotConfig {
    fn default() -> AutopilotConfig {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold_ms: 200,
            server_stabilization_time_ms: 10_000,
            max_trailing_logs: 250,
            min_quorum: 0,
        }
    }
}

impl AutopilotConfig {
    /// Refuses a configuration autopilot cannot run with, naming the field as Nomad's
    /// API does.
    pub fn check(&self) -> Result<(), String> {
        if self.last_contact_threshold_ms < LAST_CONTACT_THRESHOLD_MIN_MS {
            return Err(format!(
                "LastContactThreshold must be at least {LAST_CONTACT_THRESHOLD_MIN_MS}ms"
            ));
        }
        if self.last_contact_threshold_ms > AUTOPILOT_DURATION_MAX_MS {
            return Err(format!(
                "LastContactThreshold must be at most {AUTOPILOT_DURATION_MAX_MS}ms"
            ));
        }
        if self.server_stabilization_time_ms > AUTOPILOT_DURATION_MAX_MS {
            return Err(format!(
                "ServerStabilizationTime must be at most {AUTOPILOT_DURATION_MAX_MS}ms"
            ));
        }
        if self.max_trailing_logs > AUTOPILOT_COUNT_MAX {
            return Err(format!("MaxTrailingLogs must be at most {AUTOPILOT_COUNT_MAX}"));
        }
        if self.min_quorum as u64 > AUTOPILOT_COUNT_MAX {
            return Err(format!("MinQuorum must be at most {AUTOPILOT_COUNT_MAX}"));
        }
        Ok(())
    }
}

/// The stored configuration and the Raft indexes of its first and its last write (both
/// 0 for a configuration nobody set, which is the agent's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfigRecord {
    pub config: AutopilotConfig,
    pub create_index: u64,
    pub modify_index: u64,
}

impl State {
    /// The autopilot configuration an operator set, if one ever did.
    pub fn autopilot_config(&self) -> Option<&AutopilotConfigRecord> {
        self.autopilot_config.as_ref()
    }

    /// The configuration autopilot runs with: the operator's, else `own` (a server's
    /// agent block) with indexes 0.
    pub fn autopilot_config_or(&self, own: AutopilotConfig) -> AutopilotConfigRecord {
        let own = AutopilotConfigRecord { config: own, create_index: 0, modify_index: 0 };
        self.autopilot_config.unwrap_or(own)
    }

    /// Stores `config` at `index`, unless `cas_index` is given and is not the stored
    /// record's modify index (0 when none is stored). Returns whether it stored it.
    pub(super) fn set_autopilot_config(
        &mut self,
        index: u64,
        config: AutopilotConfig,
        cas_index: Option<u64>,
    ) -> bool {
        let current = self.autopilot_config;
        let modify_index = current.map_or(0, |record| record.modify_index);
        if cas_index.is_some_and(|cas| cas != modify_index) {
            return false;
        }
        let create_index = current.map_or(index, |record| record.create_index);
        self.autopilot_config =
            Some(AutopilotConfigRecord { config, create_index, modify_index: index });
        self.indexes.autopilot_config = index;
        true
    }
}
