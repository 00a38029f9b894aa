//! Nomad's `AutopilotConfiguration` as the HTTP API carries it: the one shape the
//! operator endpoint answers with and takes, and `operator autopilot` reads and writes.

use super::value::{go_duration_ms, go_duration_text};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// How a setting's value is written: as a flag's text, and in the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutopilotSettingKind {
    /// `true` or `false`, a JSON boolean.
    Bool,
    /// A whole number of at least 0, a JSON number.
    Count,
    /// Go duration text (`200ms`), a JSON string.
    Duration,
}

/// One setting of [`AutopilotConfiguration`]: its JSON field, the `operator autopilot
/// set-config` flag that sets it and how its value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutopilotSetting {
    pub field: &'static str,
    pub flag: &'static str,
    pub kind: AutopilotSettingKind,
}

/// Every setting, in Nomad's order (the order `operator autopilot get-config` prints
/// them in): the one place a flag meets its field. The indexes are not settings.
pub const AUTOPILOT_SETTINGS: [AutopilotSetting; 8] = {
    use AutopilotSettingKind::{Bool, Count, Duration};
    const fn setting(
        field: &'static str,
        flag: &'static str,
        kind: AutopilotSettingKind,
    ) -> AutopilotSetting {
        AutopilotSetting { field, flag, kind }
    }
    [
        setting("CleanupDeadServers", "cleanup-dead-servers", Bool),
        setting("LastContactThreshold", "last-contact-threshold", Duration),
        setting("MaxTrailingLogs", "max-trailing-logs", Count),
        setting("MinQuorum", "min-quorum", Count),
        setting("ServerStabilizationTime", "server-stabilization-time", Duration),
        setting("EnableRedundancyZones", "enable-redundancy-zones", Bool),
        setting("DisableUpgradeMigration", "disable-upgrade-migration", Bool),
        setting("EnableCustomUpgrades", "enable-custom-upgrades", Bool),
    ]
};

impl AutopilotSetting {
    /// The flag's text as the field's JSON value; text that does not read is refused in
    /// the words of Go's `flag` package, which Nomad's flags go through.
    pub fn json_value(&self, text: &str) -> Result<Value, String> {
        let flag = self.flag;
        let invalid = |why: &str| format!("invalid value {text:?} for flag -{flag}: {why}");
        match self.kind {
            AutopilotSettingKind::Bool => match text {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                _ => Err(format!("invalid boolean value {text:?} for -{flag}: parse error")),
            },
            AutopilotSettingKind::Count => {
                text.parse::<u64>().map(Value::from).map_err(|_| invalid("parse error"))
            }
            AutopilotSettingKind::Duration => match go_duration_ms(text) {
                Ok(_) => Ok(Value::String(text.to_owned())),
                Err(why) if text.starts_with('-') => Err(invalid(&why)),
                Err(_) => Err(invalid(&format!("time: invalid duration {text:?}"))),
            },
        }
    }
}

impl AutopilotConfiguration {
    /// The settings by field name with their values as text, in Nomad's order.
    pub fn settings(&self) -> [(&'static str, String); 8] {
        let json = serde_json::to_value(self).unwrap_or_default();
        AUTOPILOT_SETTINGS.map(|setting| {
            let value = &json[setting.field];
            let text = match (setting.kind, value) {
                (AutopilotSettingKind::Duration, Value::String(text)) if !text.is_empty() => {
                    text.clone()
                }
                (AutopilotSettingKind::Duration, _) => go_duration_text(0),
                _ => value.to_string(),
            };
            (setting.field, text)
        })
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

    #[test]
    fn every_field_but_the_indexes_is_one_setting() {
        let json = serde_json::to_value(AutopilotConfiguration::default()).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        fields.retain(|f| !f.ends_with("Index"));
        fields.sort_unstable();
        let mut settings: Vec<&str> = AUTOPILOT_SETTINGS.iter().map(|s| s.field).collect();
        settings.sort_unstable();
        assert_eq!(fields, settings);
    }

    #[test]
    fn a_flag_value_reads_by_its_kind_or_is_refused_in_go_flag_words() {
        let setting = |flag: &str| *AUTOPILOT_SETTINGS.iter().find(|s| s.flag == flag).unwrap();
        let read = |flag: &str, text: &str| setting(flag).json_value(text);
        assert_eq!(read("cleanup-dead-servers", "F"), Ok(Value::Bool(false)));
        assert_eq!(read("max-trailing-logs", "300"), Ok(Value::from(300)));
        assert_eq!(read("last-contact-threshold", "1m30s"), Ok(Value::from("1m30s")));
        let refused = [
            (
                "cleanup-dead-servers",
                "yes",
                r#"invalid boolean value "yes" for -cleanup-dead-servers: parse error"#,
            ),
            ("min-quorum", "-3", r#"invalid value "-3" for flag -min-quorum: parse error"#),
            ("min-quorum", "two", r#"invalid value "two" for flag -min-quorum: parse error"#),
            (
                "server-stabilization-time",
                "soon",
                r#"invalid value "soon" for flag -server-stabilization-time: time: invalid duration "soon""#,
            ),
            (
                "last-contact-threshold",
                "-1s",
                r#"invalid value "-1s" for flag -last-contact-threshold: a duration cannot be negative"#,
            ),
        ];
        for (flag, text, message) in refused {
            assert_eq!(read(flag, text), Err(message.to_owned()), "{flag}={text}");
        }
    }
}
