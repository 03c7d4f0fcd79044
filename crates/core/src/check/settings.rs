//! The thresholds of `k3splan check`: the top-level `check { … }` block of the topology,
//! with defaults for every attribute that is not set.

use serde::{Deserialize, Serialize};

/// Thresholds, in seconds, bytes-percent or counts. Every field has a default
/// ([`CheckSettings::default`]); docs/check.md lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSettings {
    /// A certificate that expires within this many seconds is a warning (default 30 days).
    pub cert_expiry_warn: u64,
    /// … and within this many seconds is critical (default 7 days).
    pub cert_expiry_critical: u64,
    /// The newest snapshot of a server older than this is a warning (default 2 days).
    pub snapshot_age_warn: u64,
    /// … older than this is critical (default 7 days).
    pub snapshot_age_critical: u64,
    /// A learner present longer than this is stuck (default 10 minutes).
    pub learner_max_age: u64,
    /// The etcd backend quota in bytes (default 2 GiB: etcd's and k3s's default
    /// `quota-backend-bytes`).
    pub etcd_quota_bytes: u64,
    /// DB size at or above this percent of the quota is a warning (default 80).
    pub db_size_warn_percent: u8,
    /// … at or above this percent is critical (default 95).
    pub db_size_critical_percent: u8,
    /// The topology has a `check` block: `plan` and `apply` then run the checks too, show
    /// their findings beside the plan and plan the fixes they can make (issue 17).
    #[serde(default)]
    pub declared: bool,
}

/// Seconds in a day.
pub const DAY: u64 = 86_400;

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            cert_expiry_warn: 30 * DAY,
            cert_expiry_critical: 7 * DAY,
            snapshot_age_warn: 2 * DAY,
            snapshot_age_critical: 7 * DAY,
            learner_max_age: 10 * 60,
            etcd_quota_bytes: 2 * 1024 * 1024 * 1024,
            db_size_warn_percent: 80,
            db_size_critical_percent: 95,
            declared: false,
        }
    }
}

impl CheckSettings {
    /// Whether every threshold is the default (the topology then serializes without it).
    pub fn is_default(&self) -> bool {
        *self == CheckSettings::default()
    }
}

/// Parses a check duration: one or more `<number><unit>` parts with units `s`, `m`, `h`,
/// `d` (`"30d"`, `"36h"`, `"1d12h"`, `"90s"`).
pub fn parse_check_duration(s: &str) -> Result<u64, String> {
    crate::config::model::parse_duration_units(s, &[('s', 1), ('m', 60), ('h', 3600), ('d', DAY)])
}

/// Parses a size: a whole number of bytes with an optional unit `KiB`, `MiB`, `GiB`
/// (`"8GiB"`, `"2147483648"`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    if digits.is_empty() {
        return Err("must start with a number".into());
    }
    let n: u64 = digits.parse().map_err(|_| "has a number too large")?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("has the unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(mul).ok_or_else(|| "is too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_check_duration("30d"), Ok(30 * DAY));
        assert_eq!(parse_check_duration("1d12h"), Ok(DAY + 12 * 3600));
        assert_eq!(parse_check_duration("90s"), Ok(90));
        assert!(parse_check_duration("30").is_err());
        assert!(parse_check_duration("d").is_err());
        assert!(parse_check_duration("3w").is_err());
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("8GB").is_err());
        assert!(parse_size("GiB").is_err());
    }
}
