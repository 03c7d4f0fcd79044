//! The etcd quorum simulation and the plan-wide safety checks.
//!
//! [`simulate`] replays the operations of a plan over a model of the etcd membership and
//! checks, after every operation, the safety rules (docs/design.md): healthy voters ≥
//! floor(voters/2)+1 (rule 2, etcd quorum holds after every step); a restart of a healthy
//! member counts as its absence while it restarts (rule 9, restarting a healthy server
//! counts as removing its member); no member is added while a learner is pending or while
//! a failed member that the plan removes is still listed (rule 3, remove failed members
//! first, one membership change at a time); a snapshot precedes the first destructive
//! operation (rule 4, a snapshot before the first destructive step); a PVC is deleted only
//! when its node was deleted earlier in the plan (rule 6, no PVC bound to a healthy node is
//! deleted); no joining server's config holds `cluster-init` (rule 10, a joining server
//! never uses cluster-init).

use std::collections::BTreeSet;

use crate::plan::{Operation, Quorum, QuorumCheck, Refusal, Rule, Step, Violation};

/// One member in the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMember {
    pub id: u64,
    /// The node it belongs to (matched by peer address), if any.
    pub node: Option<String>,
    pub voter: bool,
    pub healthy: bool,
}

/// The simulated membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sim {
    pub members: Vec<SimMember>,
    /// Nodes that no longer exist when the plan starts (no Node object, not declared):
    /// their PVCs may be rebound like those of a node the plan removes (rule 6, no PVC
    /// bound to a healthy node is deleted).
    pub gone_nodes: BTreeSet<String>,
    next_id: u64,
}

/// What one operation did to the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// A membership change; the quorum after it.
    After(Quorum),
    /// A restart; the quorum while the member is down.
    During(Quorum),
}

impl Sim {
    pub fn new(members: Vec<SimMember>) -> Self {
        Sim {
            members,
            gone_nodes: BTreeSet::new(),
            next_id: u64::MAX / 2,
        }
    }

    pub fn quorum(&self) -> Quorum {
        let voters = self.members.iter().filter(|m| m.voter).count();
        let healthy = self.members.iter().filter(|m| m.voter && m.healthy).count();
        let learners = self.members.iter().filter(|m| !m.voter).count();
        Quorum::new(voters, healthy, learners)
    }

    fn member_of(&self, node: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.node.as_deref() == Some(node))
    }

    /// Apply one operation; `Err` names the rule broken and why.
    pub fn apply(&mut self, op: &Operation) -> Result<Effect, (Rule, String)> {
        match op {
            Operation::RemoveEtcdMember { id, name, .. } => self.remove_member(*id, name),
            Operation::JoinServer {
                node, etcd: true, ..
            } => self.add_learner(node),
            Operation::WaitLearnerPromoted { node } => {
                if let Some(i) = self.member_of(node) {
                    self.members[i].voter = true;
                    self.members[i].healthy = true;
                    return Ok(Effect::After(self.quorum()));
                }
                Ok(Effect::None)
            }
            Operation::RestartService { node } | Operation::RotateCertificates { node } => {
                self.restart(node)
            }
            // Issue 15: the member is away from the installer's restart until the wait.
            Operation::UpgradeK3s { node, .. } => self.upgrade_restart(node),
            Operation::WaitUpgraded { node, .. } => {
                if let Some(i) = self.member_of(node)
                    && self.members[i].voter
                    && !self.members[i].healthy
                {
                    self.members[i].healthy = true;
                    return Ok(Effect::After(self.quorum()));
                }
                Ok(Effect::None)
            }
            Operation::UninstallK3s { node } | Operation::MoveAsideDataDir { node, .. } => {
                self.stop_member(node)
            }
            _ => Ok(Effect::None),
        }
    }

    fn remove_member(&mut self, id: u64, name: &str) -> Result<Effect, (Rule, String)> {
        let before = self.quorum();
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return Ok(Effect::None);
        };
        if !before.ok() {
            return Err((
                Rule::Quorum,
                format!("cannot remove member {name}: the cluster has no quorum ({before})"),
            ));
        }
        if self.members.iter().any(|m| !m.voter && m.id != id) {
            return Err((
                Rule::OneMembershipChange,
                format!("member {name} would be removed while a learner is not yet promoted"),
            ));
        }
        self.members.remove(i);
        let q = self.quorum();
        if !q.ok() && q.voters > 0 {
            return Err((Rule::Quorum, format!("removing member {name} leaves {q}")));
        }
        Ok(Effect::After(q))
    }

    /// A server joining etcd: a learner, one at a time (none when there is no cluster).
    fn add_learner(&mut self, node: &str) -> Result<Effect, (Rule, String)> {
        let before = self.quorum();
        if self.members.is_empty() {
            return Ok(Effect::None);
        }
        if self.members.iter().any(|m| !m.voter) {
            return Err((
                Rule::OneMembershipChange,
                format!("{node} would join while another learner is not yet promoted"),
            ));
        }
        if !before.ok() {
            return Err((
                Rule::Quorum,
                format!("{node} cannot join: the cluster has no quorum ({before})"),
            ));
        }
        self.next_id += 1;
        self.members.push(SimMember {
            id: self.next_id,
            node: Some(node.to_string()),
            voter: false,
            healthy: true,
        });
        Ok(Effect::After(self.quorum()))
    }

    /// A restart of a healthy voter: its member is missing while it restarts (
    /// rule 9, restarting a healthy server counts as removing its member).
    fn restart(&mut self, node: &str) -> Result<Effect, (Rule, String)> {
        let before = self.quorum();
        let Some(i) = self.member_of(node) else {
            return Ok(Effect::None);
        };
        let m = &self.members[i];
        if !(m.voter && m.healthy) {
            return Ok(Effect::None);
        }
        let during = Quorum::new(before.voters, before.healthy_voters - 1, before.learners);
        if !during.ok() {
            return Err((
                Rule::RestartCountsAsRemoval,
                format!("restarting k3s on {node} leaves {during} while it restarts"),
            ));
        }
        Ok(Effect::During(during))
    }

    /// An upgrade's restart (issue 15): the member is down until its `WaitUpgraded`, so a
    /// second restart before that wait sees it missing (rule 9).
    fn upgrade_restart(&mut self, node: &str) -> Result<Effect, (Rule, String)> {
        let Some(i) = self.member_of(node) else {
            return Ok(Effect::None);
        };
        if !(self.members[i].voter && self.members[i].healthy) {
            return Ok(Effect::None);
        }
        self.members[i].healthy = false;
        let q = self.quorum();
        if !q.ok() {
            return Err((
                Rule::RestartCountsAsRemoval,
                format!("upgrading k3s on {node} restarts it and leaves {q} while it restarts"),
            ));
        }
        Ok(Effect::During(q))
    }

    /// k3s stopped for good on `node` (uninstalled, data moved aside): its member is down.
    fn stop_member(&mut self, node: &str) -> Result<Effect, (Rule, String)> {
        let Some(i) = self.member_of(node) else {
            return Ok(Effect::None);
        };
        if !self.members[i].healthy {
            return Ok(Effect::None);
        }
        self.members[i].healthy = false;
        let q = self.quorum();
        if !q.ok() {
            return Err((
                Rule::Quorum,
                format!("stopping the etcd member of {node} leaves {q}"),
            ));
        }
        Ok(Effect::After(q))
    }
}

fn step_label(s: &Step, op: &Operation) -> String {
    format!("step {} {}: {}", s.id, s.address, op.describe())
}

/// The plan-wide checks of one replay, as it goes (the membership checks are [`Sim::apply`]).
struct Checks {
    snapshot_required: bool,
    snapshot_taken: bool,
    deleted_nodes: BTreeSet<String>,
    /// Failed members the plan removes: none may be outlived by a join (rule 3,
    /// remove failed members first).
    failed_removed: BTreeSet<u64>,
}

/// A violation found by [`Checks::check`]: the rule, the message, the advice.
type Found = (Rule, String, Option<String>);

impl Checks {
    /// The violations `op` commits, given the operations before it (`sim` is the membership
    /// before `op`).
    fn check(&mut self, sim: &Sim, op: &Operation) -> Vec<Found> {
        let mut found = Vec::new();
        match op {
            Operation::Snapshot { .. } => self.snapshot_taken = true,
            Operation::DeleteNode { node } => {
                self.deleted_nodes.insert(node.clone());
            }
            Operation::RebindVolume {
                namespace,
                pvc,
                from_node,
                ..
            }
            | Operation::RecreateWorkload {
                namespace,
                pvc,
                from_node,
                ..
            } if !self.deleted_nodes.contains(from_node) => found.push((
                Rule::PvcOnHealthyNode,
                format!(
                    "PVC {namespace}/{pvc} is bound to {from_node}, which this plan does not remove"
                ),
                None,
            )),
            Operation::JoinServer {
                node, etcd: true, ..
            } if sim.members.iter().any(|m| self.failed_removed.contains(&m.id)) => found.push((
                Rule::OneMembershipChange,
                format!(
                    "{node} would join while a failed member that the plan removes is still listed"
                ),
                Some("remove the failed member first".into()),
            )),
            Operation::WriteFile { path, after, .. }
                if path.ends_with("/config.yaml")
                    && after.lines().any(|l| {
                        l.trim_start().starts_with("cluster-init:") && l.contains("true")
                    }) =>
            {
                found.push((
                    Rule::NoClusterInitOnJoin,
                    format!("{path} would enable cluster-init on a node of an existing cluster"),
                    Some("use `server: <healthy server or VIP>` instead".into()),
                ))
            }
            _ => {}
        }
        if self.snapshot_required && op.is_destructive() && !self.snapshot_taken {
            found.push((
                Rule::SnapshotFirst,
                "destructive operation before any etcd snapshot".into(),
                None,
            ));
            self.snapshot_taken = true; // report once
        }
        found
    }
}

/// Replay `steps` over `start`; fill each step's `quorum` checks; refuse on any violation.
/// `snapshot_required`: rule 4 (a snapshot before the first destructive step) is
/// checked.
pub fn simulate(start: &Sim, steps: &mut [Step], snapshot_required: bool) -> Result<(), Refusal> {
    let mut sim = start.clone();
    let mut violations = Vec::new();
    let failed_removed: BTreeSet<u64> = steps
        .iter()
        .flat_map(|s| s.operations.iter())
        .filter_map(|op| match op {
            Operation::RemoveEtcdMember { id, .. } => Some(*id),
            _ => None,
        })
        .filter(|id| sim.members.iter().any(|m| m.id == *id && !m.healthy))
        .collect();
    let mut checks = Checks {
        snapshot_required,
        snapshot_taken: false,
        deleted_nodes: start.gone_nodes.clone(),
        failed_removed,
    };
    let refusal = |violations| Refusal {
        violations,
        quorum_before: Some(start.quorum()),
    };
    for s in steps.iter_mut() {
        s.quorum.clear();
        for (i, op) in s.operations.iter().enumerate() {
            for (rule, message, advice) in checks.check(&sim, op) {
                violations.push(Violation {
                    rule,
                    step: Some(step_label(s, op)),
                    message,
                    advice,
                });
            }
            let when = match sim.apply(op) {
                Ok(Effect::None) => continue,
                Ok(Effect::After(q)) => ("after", q),
                Ok(Effect::During(q)) => ("during", q),
                Err((rule, message)) => {
                    violations.push(Violation {
                        rule,
                        step: Some(step_label(s, op)),
                        message,
                        advice: Some(advice_for(rule)),
                    });
                    // Later steps would be checked against a state that cannot be
                    // reached: report the first failure only.
                    return Err(refusal(violations));
                }
            };
            s.quorum.push(QuorumCheck {
                operation: i,
                when: when.0.into(),
                quorum: when.1,
            });
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(refusal(violations))
    }
}

pub(crate) fn advice_for(rule: Rule) -> String {
    match rule {
        Rule::Quorum => {
            "replace or remove the failed members first, or change fewer etcd nodes in one plan"
                .into()
        }
        Rule::RestartCountsAsRemoval => {
            "restore a failed member first so that one server can restart without losing quorum"
                .into()
        }
        Rule::OneMembershipChange => {
            "change one member at a time; wait for the learner's promotion".into()
        }
        _ => String::new(),
    }
}
