//! Issue 15: time estimates, per step and in total, from the durations earlier applies
//! recorded in the state (`durations_ms`: per kind of operation, the last
//! [`HISTORY_LEN`] durations in milliseconds).
//!
//! Pure: the history comes in, an [`Estimate`] goes out. A step's estimate is the sum, over
//! its operations, of the **median** of the recorded durations of that operation's kind
//! ([`Operation::duration_kind`]): the median, because one slow drain (a PodDisruptionBudget
//! that held for a while) must not double every later estimate. A step one of whose
//! operations has no recorded duration gets **no** estimate, and says which kinds are
//! missing: a figure is never made up.
//!
//! The total is the **sum** of the steps' estimates: the apply runs the steps one after
//! another, in plan order, and the operations of a step one after another (nothing runs in
//! parallel), so the critical path is the whole sequence and its length is the sum. When a
//! step has no estimate, the total is a lower bound and says so.
//!
//! The history holds operation kinds (fixed names, the `op` tag of the plan's JSON) and
//! numbers only: no node name, no address, no secret can be in it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{Operation, Plan};

/// How many durations are kept per kind of operation (the newest); the estimate is their
/// median.
pub const HISTORY_LEN: usize = 10;

/// Kind of operation (`drain`, `wait_upgraded`, ...) → its last durations in milliseconds,
/// oldest first. What the state records as `durations_ms`.
pub type DurationHistory = BTreeMap<String, Vec<u64>>;

/// Records that an operation of `kind` took `ms` milliseconds: appended, and only the newest
/// [`HISTORY_LEN`] are kept (the state stays bounded).
pub fn record_duration(history: &mut DurationHistory, kind: &str, ms: u64) {
    let v = history.entry(kind.to_string()).or_default();
    v.push(ms);
    if v.len() > HISTORY_LEN {
        let extra = v.len() - HISTORY_LEN;
        v.drain(..extra);
    }
}

/// The median of the newest [`HISTORY_LEN`] samples (the mean of the two middle ones for an
/// even count), `None` when there is none.
pub fn median_ms(samples: &[u64]) -> Option<u64> {
    let start = samples.len().saturating_sub(HISTORY_LEN);
    let mut v: Vec<u64> = samples[start..].to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]).div_ceil(2)
    })
}

/// The time estimate of a plan (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// One per step, in plan order.
    pub steps: Vec<StepEstimate>,
    /// Sum of the steps' estimates, in milliseconds (a lower bound when a step has none).
    pub total_ms: u64,
    /// Every step has an estimate: `total_ms` is the estimate of the whole plan.
    pub complete: bool,
}

/// The estimate of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEstimate {
    /// The step's id.
    pub step: usize,
    /// Sum of the medians of its operations' kinds; `None` when a kind has no history.
    pub ms: Option<u64>,
    /// The kinds of its operations no earlier apply recorded (why `ms` is `None`).
    pub missing: Vec<String>,
}

impl Operation {
    /// The kind of operation whose durations the state records: the `op` tag of the plan's
    /// JSON (`drain`, `upgrade_k3s`, `wait_upgraded`, ...), except an agent's `upgrade_k3s`,
    /// which is `upgrade_k3s_agent` (an agent restarts faster than a server, whose etcd
    /// member must come back).
    pub fn duration_kind(&self) -> &'static str {
        match self {
            Operation::Snapshot { .. } => "snapshot",
            Operation::Cordon { .. } => "cordon",
            Operation::Drain { .. } => "drain",
            Operation::DeleteNode { .. } => "delete_node",
            Operation::RemoveEtcdMember { .. } => "remove_etcd_member",
            Operation::MoveAsideDataDir { .. } => "move_aside_data_dir",
            Operation::WriteFile { .. } => "write_file",
            Operation::JoinServer { .. } => "join_server",
            Operation::JoinAgent { .. } => "join_agent",
            Operation::WaitLearnerPromoted { .. } => "wait_learner_promoted",
            Operation::WaitNodeReady { .. } => "wait_node_ready",
            Operation::WaitServerHealthy { .. } => "wait_server_healthy",
            Operation::RestartService { .. } => "restart_service",
            Operation::UninstallK3s { .. } => "uninstall_k3s",
            Operation::RebindVolume { .. } => "rebind_volume",
            Operation::RecreateWorkload { .. } => "recreate_workload",
            Operation::Uncordon { .. } => "uncordon",
            Operation::ScaleAddon { .. } => "scale_addon",
            Operation::Verify { .. } => "verify",
            // An agent's restart is no server's (no etcd member to bring back): apart.
            Operation::UpgradeK3s { agent: true, .. } => "upgrade_k3s_agent",
            Operation::UpgradeK3s { .. } => "upgrade_k3s",
            Operation::WaitUpgraded { .. } => "wait_upgraded",
            Operation::StopK3s { .. } => "stop_k3s",
            Operation::ClusterReset { .. } => "cluster_reset",
            Operation::RotateCertificates { .. } => "rotate_certificates",
            Operation::RemoveNodeAnnotation { .. } => "remove_node_annotation",
        }
    }
}

/// Every kind [`Operation::duration_kind`] returns: the state keeps only these (a kind it
/// does not know, written by a later k3splan, is kept but never estimated from here).
pub const DURATION_KINDS: &[&str] = &[
    "snapshot",
    "cordon",
    "drain",
    "delete_node",
    "remove_etcd_member",
    "move_aside_data_dir",
    "write_file",
    "join_server",
    "join_agent",
    "wait_learner_promoted",
    "wait_node_ready",
    "wait_server_healthy",
    "restart_service",
    "uninstall_k3s",
    "rebind_volume",
    "recreate_workload",
    "uncordon",
    "scale_addon",
    "verify",
    "upgrade_k3s",
    "upgrade_k3s_agent",
    "wait_upgraded",
    "stop_k3s",
    "cluster_reset",
    "rotate_certificates",
    "remove_node_annotation",
];

/// A kind in words, for "no earlier apply recorded …".
pub fn kind_words(kind: &str) -> &str {
    match kind {
        "snapshot" => "an etcd snapshot",
        "cordon" => "a cordon",
        "drain" => "a drain",
        "delete_node" => "a Node deletion",
        "remove_etcd_member" => "an etcd member removal",
        "move_aside_data_dir" => "a data directory move",
        "write_file" => "a file write",
        "join_server" => "a server join",
        "join_agent" => "an agent join",
        "wait_learner_promoted" => "a learner catch-up and promotion",
        "wait_node_ready" => "a wait for a Node to be Ready",
        "wait_server_healthy" => "a wait for a server to be healthy",
        "restart_service" => "a k3s restart",
        "uninstall_k3s" => "a k3s uninstall",
        "rebind_volume" | "recreate_workload" => "a volume rebind",
        "uncordon" => "an uncordon",
        "scale_addon" => "an add-on scale",
        "verify" => "a verification",
        "upgrade_k3s" => "a server's k3s upgrade (installer run and restart)",
        "upgrade_k3s_agent" => "an agent's k3s upgrade (installer run and restart)",
        "wait_upgraded" => "a wait for an upgraded node (healthy voter, Node Ready, HashKV)",
        "stop_k3s" => "a k3s stop",
        "cluster_reset" => "a cluster reset",
        "rotate_certificates" => "a certificate rotation",
        "remove_node_annotation" => "a Node annotation removal",
        other => other,
    }
}

/// The estimate of `plan` from `history`; `None` when the history is empty (no earlier
/// apply recorded anything: the plan shows no estimate at all) or the plan has no step.
pub fn estimate(plan: &Plan, history: &DurationHistory) -> Option<Estimate> {
    if plan.steps.is_empty() || history.values().all(Vec::is_empty) {
        return None;
    }
    let steps: Vec<StepEstimate> = plan
        .steps
        .iter()
        .map(|s| {
            let mut ms = 0u64;
            let mut missing: Vec<String> = Vec::new();
            for op in &s.operations {
                let kind = op.duration_kind();
                match history.get(kind).and_then(|v| median_ms(v)) {
                    Some(m) => ms = ms.saturating_add(m),
                    None if !missing.iter().any(|k| k == kind) => missing.push(kind.to_string()),
                    None => {}
                }
            }
            StepEstimate {
                step: s.id,
                ms: missing.is_empty().then_some(ms),
                missing,
            }
        })
        .collect();
    let total_ms = steps
        .iter()
        .filter_map(|s| s.ms)
        .fold(0u64, u64::saturating_add);
    let complete = steps.iter().all(|s| s.ms.is_some());
    Some(Estimate {
        steps,
        total_ms,
        complete,
    })
}

impl Estimate {
    /// The estimate of step `id`.
    pub fn step(&self, id: usize) -> Option<&StepEstimate> {
        self.steps.iter().find(|s| s.step == id)
    }

    /// The total in words: "about 4 min in total (…)", or "at least about 4 min: 2 of 9
    /// steps have no estimate (…)".
    pub fn total_words(&self) -> String {
        const FROM: &str = "from the durations earlier applies recorded in the state";
        let without = self.steps.iter().filter(|s| s.ms.is_none()).count();
        let n = self.steps.len();
        let have = if without == 1 { "has" } else { "have" };
        if self.complete {
            format!(
                "{} in total (the sum of the steps' estimates, which run one after another; {FROM})",
                about(self.total_ms)
            )
        } else if self.total_ms < 1000 {
            format!(
                "unknown: {without} of {n} steps {have} no estimate (the others take under 1 s; {FROM})"
            )
        } else {
            format!(
                "at least {}: {without} of {n} steps {have} no estimate ({FROM})",
                about(self.total_ms)
            )
        }
    }
}

impl StepEstimate {
    /// "about 4 min", or "no estimate: no earlier apply recorded a drain".
    pub fn words(&self) -> String {
        match self.ms {
            Some(ms) => about(ms),
            None => {
                let kinds: Vec<&str> = self.missing.iter().map(|k| kind_words(k)).collect();
                format!("no estimate: no earlier apply recorded {}", or_list(&kinds))
            }
        }
    }
}

fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [a] => (*a).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A duration in words, rounded as an estimate is: "under 1 s", "about 7 s", "about 4 min",
/// "about 1 h 5 min".
pub fn about(ms: u64) -> String {
    let secs = (ms + 500) / 1000;
    if ms < 1000 {
        "under 1 s".to_string()
    } else if secs < 90 {
        format!("about {secs} s")
    } else if secs < 3600 {
        format!("about {} min", (secs + 30) / 60)
    } else {
        let min = (secs + 30) / 60;
        match min % 60 {
            0 => format!("about {} h", min / 60),
            m => format!("about {} h {m} min", min / 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, ActionReason, Address, Step};

    fn step(id: usize, ops: Vec<Operation>) -> Step {
        Step {
            id,
            address: Address::node(&format!("n{id}")),
            action: Action::Update,
            reason: ActionReason::UpgradeK3sVersion,
            why: "test".into(),
            operations: ops,
            before: None,
            after: None,
            depends_on: vec![],
            quorum: vec![],
            notes: vec![],
        }
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan {
            steps,
            drift: vec![],
            warnings: vec![],
            quorum_before: None,
            unknown: vec![],
            estimate: None,
        }
    }

    fn drain() -> Operation {
        Operation::Drain {
            node: "n".into(),
            skip_eviction: false,
        }
    }
    fn upgrade() -> Operation {
        Operation::UpgradeK3s {
            node: "n".into(),
            from: None,
            version: "v1.31.1+k3s1".into(),
            agent: false,
        }
    }
    fn wait() -> Operation {
        Operation::WaitUpgraded {
            node: "n".into(),
            version: "v1.31.1+k3s1".into(),
        }
    }

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let mut h = DurationHistory::new();
        for ms in 1..=25 {
            record_duration(&mut h, "drain", ms);
        }
        assert_eq!(h["drain"], (16..=25).collect::<Vec<u64>>());
    }

    #[test]
    fn median_resists_one_slow_sample() {
        assert_eq!(median_ms(&[]), None);
        assert_eq!(median_ms(&[5]), Some(5));
        assert_eq!(median_ms(&[4000, 4200, 600_000]), Some(4200));
        assert_eq!(median_ms(&[1000, 2000]), Some(1500));
        // Only the newest HISTORY_LEN count.
        let mut v = vec![1_000_000; 5];
        v.extend([10; HISTORY_LEN]);
        assert_eq!(median_ms(&v), Some(10));
    }

    #[test]
    fn step_estimate_is_the_sum_of_its_operations_medians() {
        let mut h = DurationHistory::new();
        for ms in [30_000, 40_000, 50_000] {
            record_duration(&mut h, "drain", ms);
        }
        record_duration(&mut h, "upgrade_k3s", 20_000);
        record_duration(&mut h, "wait_upgraded", 170_000);
        let p = plan(vec![step(1, vec![drain(), upgrade(), wait()])]);
        let e = estimate(&p, &h).unwrap();
        assert_eq!(e.steps[0].ms, Some(230_000));
        assert!(e.complete);
        assert_eq!(e.total_ms, 230_000);
        assert_eq!(e.steps[0].words(), "about 4 min");
        assert!(
            e.total_words().starts_with("about 4 min in total"),
            "{}",
            e.total_words()
        );
    }

    #[test]
    fn a_step_without_history_gets_no_figure_and_says_why() {
        let mut h = DurationHistory::new();
        record_duration(&mut h, "upgrade_k3s", 20_000);
        record_duration(&mut h, "wait_upgraded", 10_000);
        let p = plan(vec![
            step(1, vec![upgrade(), wait()]),
            step(2, vec![drain(), upgrade(), wait()]),
        ]);
        let e = estimate(&p, &h).unwrap();
        assert_eq!(e.steps[0].ms, Some(30_000));
        assert_eq!(e.steps[1].ms, None);
        assert_eq!(e.steps[1].missing, vec!["drain".to_string()]);
        assert_eq!(
            e.steps[1].words(),
            "no estimate: no earlier apply recorded a drain"
        );
        assert!(!e.complete);
        assert_eq!(e.total_ms, 30_000);
        assert_eq!(
            e.total_words(),
            "at least about 30 s: 1 of 2 steps has no estimate (from the durations earlier applies recorded in the state)"
        );
    }

    #[test]
    fn no_history_means_no_estimate_at_all() {
        let p = plan(vec![step(1, vec![drain()])]);
        assert_eq!(estimate(&p, &DurationHistory::new()), None);
        let mut h = DurationHistory::new();
        h.insert("drain".into(), vec![]);
        assert_eq!(estimate(&p, &h), None);
        assert_eq!(estimate(&plan(vec![]), &h), None);
    }

    #[test]
    fn every_operation_kind_is_listed() {
        // The kinds are the `op` tags of the plan's JSON.
        for op in [drain(), upgrade(), wait()] {
            let v = serde_json::to_value(&op).unwrap();
            assert_eq!(v["op"], op.duration_kind());
            assert!(DURATION_KINDS.contains(&op.duration_kind()));
        }
    }

    #[test]
    fn an_agent_upgrade_is_its_own_kind() {
        let op = Operation::UpgradeK3s {
            node: "a".into(),
            from: None,
            version: "v1.31.1+k3s1".into(),
            agent: true,
        };
        assert_eq!(op.duration_kind(), "upgrade_k3s_agent");
        assert!(DURATION_KINDS.contains(&"upgrade_k3s_agent"));
    }

    #[test]
    fn every_view_shows_the_estimate_only_when_there_is_one() {
        use crate::render::{MarkdownOptions, TextOptions, json_value, markdown, text};
        let mut h = DurationHistory::new();
        record_duration(&mut h, "drain", 240_000);
        let mut p = plan(vec![
            step(1, vec![drain()]),
            step(2, vec![drain(), upgrade()]),
        ]);
        let bare = (
            text(&Ok(p.clone()), TextOptions::default()),
            markdown(&Ok(p.clone()), MarkdownOptions::default()),
            json_value(&Ok(p.clone())),
        );
        assert!(!bare.0.contains("stimate"), "{}", bare.0);
        assert!(!bare.1.contains("stimate"), "{}", bare.1);
        assert!(bare.2.get("estimate").is_none());

        p.estimate = estimate(&p, &h);
        let t = text(&Ok(p.clone()), TextOptions::default());
        assert!(t.contains("      estimate: about 4 min\n"), "{t}");
        assert!(
            t.contains("      no estimate: no earlier apply recorded a server's k3s upgrade"),
            "{t}"
        );
        assert!(
            t.contains("Estimate: at least about 4 min: 1 of 2 steps has no estimate"),
            "{t}"
        );
        let md = markdown(&Ok(p.clone()), MarkdownOptions::default());
        assert!(md.contains("**Estimate:** at least about 4 min"), "{md}");
        let j = json_value(&Ok(p));
        assert_eq!(j["estimate"]["total_seconds"], 240.0);
        assert_eq!(j["estimate"]["complete"], false);
        assert_eq!(j["estimate"]["steps"][0]["seconds"], 240.0);
        assert_eq!(
            j["estimate"]["steps"][1]["seconds"],
            serde_json::Value::Null
        );
        assert_eq!(j["estimate"]["steps"][1]["missing"][0], "upgrade_k3s");
    }

    #[test]
    fn durations_read_as_an_operator_would_say_them() {
        assert_eq!(about(0), "under 1 s");
        assert_eq!(about(6_600), "about 7 s");
        assert_eq!(about(89_000), "about 89 s");
        assert_eq!(about(240_000), "about 4 min");
        assert_eq!(about(3_600_000), "about 1 h");
        assert_eq!(about(3_900_000), "about 1 h 5 min");
    }
}
