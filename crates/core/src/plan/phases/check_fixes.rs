//! Phase `check_fixes` (issue 17): the findings of `k3splan check` beside the plan (one
//! warning each), and the fixes k3splan can make safely as steps, each with the reason
//! "because check X found …":
//! - `cert_expiry` → `k3s certificate rotate` on that server, one server at a time (each a
//!   restart in the quorum simulation: `finish::simulate` refuses it when a restart would lose
//!   quorum);
//! - `snapshot_age` → an on-demand snapshot on that server;
//! - `etcd_remove_annotation` → the annotation removed from the Node.
//!
//! A fix is planned only on a declared server whose host was read, whose k3s runs and whose
//! member (if it runs etcd) is healthy, and that no earlier phase removes or joins; otherwise
//! the finding stays a warning. A rotation whose restart would lose quorum (another member is
//! down) is not planned either: a warning says so. Stuck learners and orphaned members are not removed here: the
//! `learners` and `failed_removals` phases already decide those from every source.

use std::collections::BTreeSet;

use crate::check::{Finding, Severity, ids};
use crate::plan::cx::PlanCx;
use crate::plan::views::is_healthy_member;
use crate::plan::{Action, ActionReason, Address, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let Some(report) = cx.opts.check.as_ref() else {
        return Ok(());
    };
    let problems: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Ok)
        .collect();
    for f in &problems {
        cx.warnings.push(format!(
            "check {} found ({}) {}: {}",
            f.check,
            f.severity.word(),
            f.subject,
            f.message
        ));
    }
    let mut rotated = BTreeSet::new();
    let mut snapshotted = BTreeSet::new();
    for f in problems {
        if f.severity == Severity::Unknown {
            continue;
        }
        let Some(node) = subject_node(&f.subject) else {
            continue;
        };
        let because = format!("because check {} found: {}", f.check, f.message);
        match f.check.as_str() {
            ids::CERT_EXPIRY if fixable(cx, node) && rotated.insert(node.to_string()) => {
                // The rotation restarts k3s: not planned when the restart would lose quorum
                // (the simulation would refuse the whole plan for an optional fix).
                let op = Operation::RotateCertificates { node: node.into() };
                if let Err((_, why)) = cx.sim.clone().apply(&op) {
                    cx.warnings.push(format!(
                        "check cert_expiry: certificates on {node} are not rotated by this plan: {why}; rotate them once the cluster can spare {node}"
                    ));
                    continue;
                }
                cx.push(
                    Address::node(node),
                    Action::Update,
                    ActionReason::CheckFinding,
                    because,
                    vec![Operation::RotateCertificates { node: node.into() }],
                    None,
                    None,
                );
            }
            ids::SNAPSHOT_AGE if fixable(cx, node) && snapshotted.insert(node.to_string()) => {
                cx.push(
                    Address::EtcdSnapshot,
                    Action::Read,
                    ActionReason::CheckFinding,
                    because,
                    vec![Operation::Snapshot {
                        node: Some(node.into()),
                    }],
                    None,
                    None,
                );
            }
            ids::REMOVE_ANNOTATION if cx.t.node(node).is_some() => {
                cx.push(
                    Address::node(node),
                    Action::Update,
                    ActionReason::CheckFinding,
                    because,
                    vec![Operation::RemoveNodeAnnotation {
                        node: node.into(),
                        key: crate::check::REMOVE_ANNOTATION.into(),
                    }],
                    None,
                    None,
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// `node.NAME` or `node.NAME:/path` → `NAME`.
fn subject_node(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix("node.")?;
    Some(rest.split_once(':').map_or(rest, |(n, _)| n))
}

/// A declared server, staying, its host read with k3s running, its member healthy.
fn fixable(cx: &PlanCx<'_>, node: &str) -> bool {
    let Some(d) = cx.t.node(node) else {
        return false;
    };
    if !d.roles.is_server() || cx.lost.contains(node) || cx.joined.contains_key(node) {
        return false;
    }
    if cx.replaced.iter().any(|r| r == node) || cx.healthy_removed.iter().any(|r| r == node) {
        return false;
    }
    let Some(v) = cx.views.get(node) else {
        return false;
    };
    let running = v
        .host
        .known()
        .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active));
    running && (!d.roles.runs_etcd() || is_healthy_member(v.member))
}
