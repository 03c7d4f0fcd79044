//! Plan data types: the quorum the simulation records, the safety rules, and the refusal
//! of a plan that would break one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// etcd quorum at one point of the simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    pub voters: usize,
    pub healthy_voters: usize,
    pub learners: usize,
    /// floor(voters/2)+1.
    pub needed: usize,
}

impl Quorum {
    pub fn new(voters: usize, healthy_voters: usize, learners: usize) -> Self {
        Quorum {
            voters,
            healthy_voters,
            learners,
            needed: voters / 2 + 1,
        }
    }
    pub fn ok(&self) -> bool {
        self.healthy_voters >= self.needed
    }
    /// How many more voters may fail before quorum is lost.
    pub fn tolerance(&self) -> usize {
        self.healthy_voters.saturating_sub(self.needed)
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} voters healthy (quorum needs {})",
            self.healthy_voters, self.voters, self.needed
        )?;
        if self.learners > 0 {
            let s = if self.learners == 1 { "" } else { "s" };
            write!(f, ", {} learner{s}", self.learners)?;
        }
        Ok(())
    }
}

/// Quorum recorded after a membership step (or during a server restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCheck {
    /// Which operation of the step (0-based) this was checked at.
    pub operation: usize,
    /// `after` a membership change, or `during` a restart.
    pub when: String,
    pub quorum: Quorum,
}

/// The safety rules (docs/design.md) the planner enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1: never destroy from unknown.
    NeverDestroyFromUnknown,
    /// 2: healthy voters ≥ floor(voters/2)+1 after every step.
    Quorum,
    /// 3: remove failed before add; one change at a time; learners promoted first.
    OneMembershipChange,
    /// 4: snapshot before the first destructive step.
    SnapshotFirst,
    /// 6: never delete a PVC bound to a healthy node.
    PvcOnHealthyNode,
    /// 9: a restart counts as a member removal.
    RestartCountsAsRemoval,
    /// 10: never join with cluster-init.
    NoClusterInitOnJoin,
    /// A step needs a source that is unknown (the API, etcd) to be planned at all.
    SourceUnknown,
    /// An upgrade's pre-flight check failed (issue 15: a downgrade, a skipped minor, an
    /// unhealthy member, a learner...).
    UpgradePreflight,
}

impl Rule {
    /// The rule's number in docs/design.md (0 for rules not numbered there).
    pub fn number(self) -> u8 {
        match self {
            Rule::NeverDestroyFromUnknown => 1,
            Rule::Quorum => 2,
            Rule::OneMembershipChange => 3,
            Rule::SnapshotFirst => 4,
            Rule::PvcOnHealthyNode => 6,
            Rule::RestartCountsAsRemoval => 9,
            Rule::NoClusterInitOnJoin => 10,
            Rule::SourceUnknown => 0,
            Rule::UpgradePreflight => 0,
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Rule::NeverDestroyFromUnknown => "never destroy from an unknown fact",
            Rule::Quorum => "etcd quorum must hold after every step",
            Rule::OneMembershipChange => {
                "remove failed members first, one membership change at a time, learners promoted before the next"
            }
            Rule::SnapshotFirst => "etcd snapshot before the first destructive step",
            Rule::PvcOnHealthyNode => "no PVC bound to a healthy node is deleted",
            Rule::RestartCountsAsRemoval => {
                "restarting a healthy server counts as removing its member"
            }
            Rule::NoClusterInitOnJoin => "a joining server never uses cluster-init",
            Rule::SourceUnknown => "a source needed for this change is unknown",
            Rule::UpgradePreflight => {
                "k3s upgrades start from a healthy cluster and move one minor version at a time, servers first"
            }
        }
    }
    /// `rule 2 (etcd quorum must hold after every step)`.
    pub fn label(self) -> String {
        match self.number() {
            0 => self.title().to_string(),
            n => format!("rule {n} ({})", self.title()),
        }
    }
}

/// One reason a plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    /// The step (`#3 etcd_member.x: remove etcd member …`) or target concerned.
    pub step: Option<String>,
    pub message: String,
    /// What the operator can do.
    pub advice: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.step {
            write!(f, "{s}: ")?;
        }
        write!(f, "{} [{}]", self.message, self.rule.label())?;
        if let Some(a) = &self.advice {
            write!(f, "; {a}")?;
        }
        Ok(())
    }
}

/// The planner refuses: no plan is safe to show as applicable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub struct Refusal {
    pub violations: Vec<Violation>,
    /// Quorum as observed, when known.
    pub quorum_before: Option<Quorum>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plan refused:")?;
        for v in &self.violations {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

impl Refusal {
    pub fn one(rule: Rule, step: Option<String>, message: String, advice: Option<String>) -> Self {
        Refusal {
            violations: vec![Violation {
                rule,
                step,
                message,
                advice,
            }],
            quorum_before: None,
        }
    }
}
