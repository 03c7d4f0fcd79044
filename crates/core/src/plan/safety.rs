//! The etcd quorum simulation and the plan-wide safety checks.
//!
//! [`simulate`] replays the operations of a plan over a model of the etcd membership and
//! checks, after every operation: healthy voters ≥ floor(voters/2)+1 (rule 2); a restart of
//! a healthy member counts as its absence while it restarts (rule 9); no member is added
//! while a learner is pending or while a failed member that the plan removes is still listed
//! (rule 3); a snapshot precedes the first destructive operation (rule 4); a PVC is deleted
//! only when its node was deleted earlier in the plan (rule 6); no joining server's config
//! holds `cluster-init` (rule 10).

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
    /// their PVCs may be rebound like those of a node the plan removes (rule 6).
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
        let before = self.quorum();
        let empty = self.members.is_empty();
        match op {
            Operation::RemoveEtcdMember { id, name, .. } => {
                let Some(i) = self.members.iter().position(|m| m.id == *id) else {
                    return Ok(Effect::None);
                };
                if !before.ok() {
                    return Err((
                        Rule::Quorum,
                        format!(
                            "cannot remove member {name}: the cluster has no quorum ({before})"
                        ),
                    ));
                }
                if self.members.iter().any(|m| !m.voter && m.id != *id) {
                    return Err((
                        Rule::OneMembershipChange,
                        format!(
                            "member {name} would be removed while a learner is not yet promoted"
                        ),
                    ));
                }
                self.members.remove(i);
                let q = self.quorum();
                if !q.ok() && q.voters > 0 {
                    return Err((Rule::Quorum, format!("removing member {name} leaves {q}")));
                }
                Ok(Effect::After(q))
            }
            Operation::JoinServer {
                node, etcd: true, ..
            } => {
                if empty {
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
                    node: Some(node.clone()),
                    voter: false,
                    healthy: true,
                });
                Ok(Effect::After(self.quorum()))
            }
            Operation::WaitLearnerPromoted { node } => {
                if let Some(i) = self.member_of(node) {
                    self.members[i].voter = true;
                    self.members[i].healthy = true;
                    return Ok(Effect::After(self.quorum()));
                }
                Ok(Effect::None)
            }
            Operation::RestartService { node } => {
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
            Operation::UninstallK3s { node } | Operation::MoveAsideDataDir { node, .. } => {
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
            _ => Ok(Effect::None),
        }
    }
}

fn step_label(s: &Step, op: &Operation) -> String {
    format!("step {} {}: {}", s.id, s.address, op.describe())
}

/// Replay `steps` over `start`; fill each step's `quorum` checks; refuse on any violation.
/// `snapshot_required`: rule 4 is checked (a snapshot must precede the first destructive
/// operation).
pub fn simulate(start: &Sim, steps: &mut [Step], snapshot_required: bool) -> Result<(), Refusal> {
    let mut sim = start.clone();
    let mut violations = Vec::new();
    let mut snapshot_taken = false;
    let mut deleted_nodes: BTreeSet<String> = start.gone_nodes.clone();
    // Failed members the plan removes: none may be outlived by a join (rule 3).
    let failed_removed: BTreeSet<u64> = steps
        .iter()
        .flat_map(|s| s.operations.iter())
        .filter_map(|op| match op {
            Operation::RemoveEtcdMember { id, .. } => Some(*id),
            _ => None,
        })
        .filter(|id| sim.members.iter().any(|m| m.id == *id && !m.healthy))
        .collect();
    for s in steps.iter_mut() {
        s.quorum.clear();
        for (i, op) in s.operations.iter().enumerate() {
            let mut fail = |rule: Rule, msg: String, advice: Option<String>| {
                violations.push(Violation {
                    rule,
                    step: Some(step_label(s, op)),
                    message: msg,
                    advice,
                })
            };
            match op {
                Operation::Snapshot { .. } => snapshot_taken = true,
                Operation::DeleteNode { node } => {
                    deleted_nodes.insert(node.clone());
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
                } if !deleted_nodes.contains(from_node) => {
                    fail(
                        Rule::PvcOnHealthyNode,
                        format!(
                            "PVC {namespace}/{pvc} is bound to {from_node}, which this plan does not remove"
                        ),
                        None,
                    );
                }
                Operation::JoinServer {
                    node, etcd: true, ..
                } => {
                    let pending: Vec<_> = sim
                        .members
                        .iter()
                        .filter(|m| failed_removed.contains(&m.id))
                        .collect();
                    if !pending.is_empty() {
                        fail(
                            Rule::OneMembershipChange,
                            format!(
                                "{node} would join while a failed member that the plan removes is still listed"
                            ),
                            Some("remove the failed member first".into()),
                        );
                    }
                }
                Operation::WriteFile { path, after, .. }
                    if path.ends_with("/config.yaml")
                        && after.lines().any(|l| {
                            l.trim_start().starts_with("cluster-init:") && l.contains("true")
                        }) =>
                {
                    fail(
                        Rule::NoClusterInitOnJoin,
                        format!(
                            "{path} would enable cluster-init on a node of an existing cluster"
                        ),
                        Some("use `server: <healthy server or VIP>` instead".into()),
                    );
                }
                _ => {}
            }
            if snapshot_required && op.is_destructive() && !snapshot_taken {
                fail(
                    Rule::SnapshotFirst,
                    "destructive operation before any etcd snapshot".into(),
                    None,
                );
                snapshot_taken = true; // report once
            }
            match sim.apply(op) {
                Ok(Effect::None) => {}
                Ok(Effect::After(q)) => s.quorum.push(QuorumCheck {
                    operation: i,
                    when: "after".into(),
                    quorum: q,
                }),
                Ok(Effect::During(q)) => s.quorum.push(QuorumCheck {
                    operation: i,
                    when: "during".into(),
                    quorum: q,
                }),
                Err((rule, msg)) => {
                    violations.push(Violation {
                        rule,
                        step: Some(step_label(s, op)),
                        message: msg,
                        advice: Some(advice_for(rule)),
                    });
                    // Later steps would be checked against a state that cannot be
                    // reached: report the first failure only.
                    return Err(Refusal {
                        violations,
                        quorum_before: Some(start.quorum()),
                    });
                }
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            violations,
            quorum_before: Some(start.quorum()),
        })
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
