//! Nomad's `AutopilotConfiguration` as the HTTP API carries it: the one shape the
//! operator endpoint answers with and takes, and `operator autopilot` reads and writes.

use super::value::go_duration_text;
use serde::{Deserialize, Serialize};

/// Nomad's `AutopilotConfiguration`: PascalCase, durations as Go duration text
/// ([`super::go_duration_ms`] reads them), the Enterprise switches, which drover does not
/// have, off. A field left out is Go's zero value, a duration's `0s`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfiguration {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: String,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time: String,
    pub enable_redundancy_zones: bool,
    pub disable_upgrade_migration: bool,
    pub enable_custom_upgrades: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AutopilotConfiguration {
    /// The settings by name with their values as text, in Nomad's order (the order
    /// `operator autopilot get-config` prints them in).
    pub fn settings(&self) -> [(&'static str, String); 8] {
        let duration =
            |text: &str| if text.is_empty() { go_duration_text(0) } else { text.to_owned() };
        [
            ("CleanupDeadServers", self.cleanup_dead_servers.to_string()),
            ("LastContactThreshold", duration(&self.last_contact_threshold)),
            ("MaxTrailingLogs", self.max_trailing_logs.to_string()),
            ("MinQuorum", self.min_quorum.to_string()),
            ("ServerStabilizationTime", duration(&self.server_stabilization_time)),
            ("EnableRedundancyZones", self.enable_redundancy_zones.to_string()),
            ("DisableUpgradeMigration", self.disable_upgrade_migration.to_string()),
            ("EnableCustomUpgrades", self.enable_custom_upgrades.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_are_go_zero_values_and_settings_print_in_nomads_order() {
        let read: AutopilotConfiguration =
            serde_json::from_str(r#"{"MinQuorum":3,"LastContactThreshold":"1m30s"}"#).unwrap();
        let printed: Vec<String> =
            read.settings().iter().map(|(name, value)| format!("{name} = {value}")).collect();
        assert_eq!(
            printed,
            [
                "CleanupDeadServers = false",
                "LastContactThreshold = 1m30s",
                "MaxTrailingLogs = 0",
                "MinQuorum = 3",
                "ServerStabilizationTime = 0s",
                "EnableRedundancyZones = false",
                "DisableUpgradeMigration = false",
                "EnableCustomUpgrades = false",
            ]
        );
    }
}
