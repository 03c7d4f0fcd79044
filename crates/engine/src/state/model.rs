//! The state document: what k3splan manages and how far the last apply got.
//!
//! Serialization lives here; persistence and locking live in the backends. The state never
//! holds a secret: tokens and passwords are not part of it, and file contents are recorded
//! by digest only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StateError;

/// The state format version this k3splan writes. Version 2 (issue 15) added
/// [`State::durations_ms`]; it reads versions [`OLDEST_STATE_VERSION`] to this one (a
/// version 1 state has no durations and loads with none).
pub const STATE_VERSION: u32 = 2;

/// The oldest state format version this k3splan reads.
pub const OLDEST_STATE_VERSION: u32 = 1;

/// The state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Bumped on every write.
    pub serial: u64,
    /// Fixed when the state is created; a state of another lineage is never overwritten.
    pub lineage: String,
    /// k3splan version that wrote the state.
    pub k3splan_version: String,
    /// sha256 of the configuration of the last completed apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    #[serde(default)]
    pub managed: Managed,
    /// The journal of the last (or running) apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<Journal>,
    /// The etcd snapshot taken before the last destructive apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<SnapshotRecord>,
    /// Issue 15: per kind of operation (`drain`, `wait_upgraded`, ...: the `op` tag of the
    /// plan's JSON), the durations in milliseconds of the last
    /// [`k3splan_core::plan::estimate::HISTORY_LEN`] that took effect, oldest first. The plan's
    /// time estimates come from here. Kinds and numbers only: nothing else can be in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub durations_ms: k3splan_core::plan::estimate::DurationHistory,
}

impl State {
    /// A new, empty state with a fresh lineage.
    pub fn new(lineage: impl Into<String>) -> Self {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: lineage.into(),
            k3splan_version: env!("CARGO_PKG_VERSION").to_string(),
            config_digest: None,
            managed: Managed::default(),
            journal: None,
            last_snapshot: None,
            durations_ms: BTreeMap::new(),
        }
    }

    /// Checks a state read from a backend before anything uses or overwrites it (both
    /// backends read through [`crate::state::local::parse_state`], which calls this): a
    /// serial that cannot be bumped, an empty lineage, or a state written by a newer
    /// k3splan is refused, and the stored state is left as it is.
    pub fn validate(&self, location: &str) -> Result<(), StateError> {
        let invalid = |why: String| StateError::Invalid {
            location: location.to_string(),
            why,
        };
        if self.lineage.trim().is_empty() {
            return Err(invalid(
                "its lineage is empty (every state has the lineage it was created with)".into(),
            ));
        }
        if self.serial == u64::MAX {
            return Err(invalid(format!(
                "its serial {} is the largest possible and cannot be bumped",
                self.serial
            )));
        }
        let ours = env!("CARGO_PKG_VERSION");
        match (semver_triple(&self.k3splan_version), semver_triple(ours)) {
            (Some(theirs), Some(mine)) if theirs > mine => Err(StateError::NewerK3splan {
                location: location.to_string(),
                found: self.k3splan_version.clone(),
            }),
            (Some(_), _) => Ok(()),
            (None, _) => Err(invalid(format!(
                "its k3splan_version {:?} is not a version",
                self.k3splan_version
            ))),
        }
    }

    /// The serial the next write gets (checked: a serial never wraps).
    pub fn next_serial(&self, location: &str) -> Result<u64, StateError> {
        self.serial
            .checked_add(1)
            .ok_or_else(|| StateError::Invalid {
                location: location.to_string(),
                why: format!("its serial {} cannot be bumped", self.serial),
            })
    }

    /// Addresses of everything the state records, sorted (`k3splan state list`).
    pub fn addresses(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .managed
            .nodes
            .keys()
            .map(|n| format!("node.{n}"))
            .chain(
                self.managed
                    .etcd_members
                    .keys()
                    .map(|n| format!("etcd_member.{n}")),
            )
            .chain(self.managed.pvcs.keys().map(|p| format!("pvc.{p}")))
            .chain(self.managed.files.keys().map(|f| format!("host_file.{f}")))
            .collect();
        v.sort();
        v
    }

    /// The recorded value at an address, as JSON (`k3splan state show ADDRESS`).
    pub fn show(&self, address: &str) -> Option<serde_json::Value> {
        let (kind, key) = address.split_once('.')?;
        match kind {
            "node" => self
                .managed
                .nodes
                .get(key)
                .map(|v| serde_json::to_value(v).ok())?,
            "etcd_member" => self
                .managed
                .etcd_members
                .get(key)
                .map(|v| serde_json::to_value(v).ok())?,
            "pvc" => self
                .managed
                .pvcs
                .get(key)
                .map(|v| serde_json::to_value(v).ok())?,
            "host_file" => self
                .managed
                .files
                .get(key)
                .map(|v| serde_json::to_value(v).ok())?,
            _ => None,
        }
    }
}

/// `MAJOR.MINOR.PATCH` of a version (`v0.1.0`, `0.2.0-rc.1+g1234` → `(0, 2, 0)`).
fn semver_triple(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|x| x.parse::<u64>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

/// What k3splan manages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    /// Node name → what was applied.
    #[serde(default)]
    pub nodes: BTreeMap<String, ManagedNode>,
    /// Node name → its etcd member.
    #[serde(default)]
    pub etcd_members: BTreeMap<String, ManagedMember>,
    /// `NAMESPACE/NAME` → PVC.
    #[serde(default)]
    pub pvcs: BTreeMap<String, ManagedPvc>,
    /// `NODE:/path` → file digest.
    #[serde(default)]
    pub files: BTreeMap<String, ManagedFile>,
    /// Node name → a cordon k3splan made and has not undone yet. Recorded *before* the
    /// cordon is made (journaled intent), removed when the uncordon (or the Node's deletion)
    /// is done: whatever kills an apply in between, the next plan uncordons it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cordons: BTreeMap<String, ManagedCordon>,
}

/// A cordon made by k3splan (see [`Managed::cordons`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedCordon {
    /// The plan whose step cordoned the node.
    pub plan_id: String,
    /// That step's address (`node.NAME`).
    pub step: String,
    /// When the cordon was recorded (just before it was made).
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedNode {
    pub address: String,
    pub roles: Vec<String>,
    /// SSH port, so that a node whose block was deleted can still be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedMember {
    /// Member ID as 16 hex digits (etcdctl's format).
    pub id: String,
    pub peer_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedPvc {
    pub uid: String,
    /// Node the volume is bound to.
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedFile {
    /// sha256 of the content k3splan wrote.
    pub sha256: String,
}

/// Progress of one apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// Identifies the plan being applied (digest of its steps).
    pub plan_id: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub steps: Vec<JournalStep>,
    /// Replacements this apply performs (`-replace=node.NAME`, or carried over from an
    /// interrupted apply): which of its steps remove the node and which rejoins it, so that
    /// a resumed apply neither repeats a finished replacement nor drops a started one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<JournalReplacement>,
}

/// One node replacement in a [`Journal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalReplacement {
    pub node: String,
    /// 1-based ids of the steps that remove the old node (Node, etcd member, k3s).
    #[serde(default)]
    pub removal_steps: Vec<usize>,
    /// 1-based id of the step that joins the rebuilt node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoin_step: Option<usize>,
}

impl Journal {
    /// Index of the first step that did not finish, if any.
    pub fn first_unfinished(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| !matches!(s.status, StepStatus::Done | StepStatus::Superseded))
    }

    /// Closes an interrupted journal: its unfinished steps are marked superseded.
    pub fn supersede(&mut self, at: &str) {
        for s in &mut self.steps {
            if !matches!(s.status, StepStatus::Done | StepStatus::Superseded) {
                s.status = StepStatus::Superseded;
                s.finished_at = Some(at.to_string());
            }
        }
        self.finished_at = Some(at.to_string());
    }
    /// Whether every step finished.
    pub fn is_complete(&self) -> bool {
        self.first_unfinished().is_none()
    }

    /// Whether the apply stopped before it recorded its result (`finished_at` is written
    /// with the managed objects and the config digest, in the same state write): killed or
    /// failed in a step, or after its last step but before that write.
    pub fn interrupted(&self) -> bool {
        self.finished_at.is_none()
    }

    /// Whether step `id` (1-based) is done.
    pub fn step_done(&self, id: usize) -> bool {
        id >= 1
            && self
                .steps
                .get(id - 1)
                .is_some_and(|s| s.status == StepStatus::Done)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalStep {
    /// Target address, e.g. `etcd_member.lzx-ha-env`.
    pub address: String,
    /// What the step does, in words.
    pub description: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why the step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Started,
    Done,
    Failed,
    /// Not run by this apply: the next apply (after a crash or failure) re-planned from the
    /// live cluster and found the step unnecessary.
    Superseded,
}

/// An etcd snapshot taken by k3splan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecord {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub taken_at: String,
}

/// Current UTC time as RFC 3339, to the second (`2026-11-22T01:29:08Z`).
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now().as_second().max(0).unsigned_abs())
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_311_348), "2026-11-22T01:35:48Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn journal_resume_point() {
        let step = |status| JournalStep {
            address: "a".into(),
            description: "d".into(),
            status,
            started_at: None,
            finished_at: None,
            error: None,
        };
        let j = Journal {
            plan_id: "p".into(),
            started_at: "t".into(),
            finished_at: None,
            steps: vec![
                step(StepStatus::Done),
                step(StepStatus::Started),
                step(StepStatus::Pending),
            ],
            replace: vec![],
        };
        assert_eq!(j.first_unfinished(), Some(1));
        assert!(!j.is_complete());
    }
}
