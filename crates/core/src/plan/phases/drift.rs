//! Phases `unplanned_drift` and `planned_drift`: every difference found is in `drift[]`,
//! planned (a step fixes it) or not (k3splan reports it and leaves it: a version, a cordon
//! someone else made, a member that is not healthy).

use std::collections::BTreeSet;

use crate::observed::Fact;
use crate::plan::cx::PlanCx;
use crate::plan::{Action, Address, Drift, Refusal};

pub(in crate::plan) fn run_unplanned(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    unplanned_drift(cx);
    Ok(())
}

pub(in crate::plan) fn run_planned(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    planned_drift(cx);
    Ok(())
}

/// Drift k3splan reports but does not fix, and warnings about failed declared nodes.
fn unplanned_drift(cx: &mut PlanCx<'_>) {
    for d in &cx.t.nodes {
        let v = &cx.views[&d.name];
        if cx.joined.contains_key(&d.name) || cx.lost.contains(&d.name) {
            continue;
        }
        // Issue 15: a version the `upgrade` phase plans is recorded there already.
        let upgrade_planned = cx
            .drift
            .iter()
            .any(|x| x.address == Address::node(&d.name).to_string() && x.attribute == "version");
        if let (Some(want), Some(k)) = (cx.t.k3s_version_of(d), v.kube)
            && let Some(have) = &k.version
            && !crate::k3s_version::same(have, want)
            && !upgrade_planned
        {
            cx.drift.push(Drift {
                address: Address::node(&d.name).to_string(),
                attribute: "version".into(),
                declared: Some(want.to_string()),
                observed: Some(have.clone()),
                planned: false,
                note: Some("the Node's kubeletVersion differs, but no upgrade is planned for it (see the warnings)".into()),
            });
        }
        if v.kube.is_some_and(|k| k.unschedulable) && !cx.uncordoned.contains(&d.name) {
            cx.drift.push(Drift {
                address: Address::node(&d.name).to_string(),
                attribute: "unschedulable".into(),
                declared: Some("false".into()),
                observed: Some("true".into()),
                planned: false,
                note: Some(format!(
                    "cordoned, but not by k3splan (the state records no cordon of it); k3splan leaves it, as it may be on purpose: run `kubectl uncordon {}` when it is not",
                    d.name
                )),
            });
        }
        if d.roles.runs_etcd() && cx.etcd.is_some() && v.member.is_none() && cx.is_present(&d.name)
        {
            cx.drift.push(Drift {
                address: Address::member(&d.name).to_string(),
                attribute: "present".into(),
                declared: Some("true".into()),
                observed: Some("false".into()),
                planned: false,
                note: Some(format!("the node runs but has no etcd member at its address; run `k3splan apply -replace=node.{}` to rejoin it", d.name)),
            });
        }
        if let Some(m) = v.member
            && !m.is_healthy()
        {
            let host = match &v.host {
                Fact::Known(_) => "host reachable".to_string(),
                Fact::Unknown { reason } => {
                    format!("host {}: {reason}", cx.o.host_word(&d.name))
                }
            };
            let ready = match v.kube {
                Some(k) if k.ready => "Node Ready",
                Some(_) => "Node NotReady",
                None => "no Node object",
            };
            // A declared member that is not healthy is drift (the configuration says a
            // healthy voter): a drift check must not stay green while fault tolerance
            // is gone.
            cx.drift.push(Drift {
                address: Address::member(&d.name).to_string(),
                attribute: "health".into(),
                declared: Some("healthy".into()),
                observed: Some(m.health.describe()),
                planned: false,
                note: Some(format!(
                    "{ready}, {host}; fault tolerance is reduced. If its data is intact, start k3s on it again; otherwise rebuild it with `-replace=node.{}`, or remove node \"{}\" from the configuration",
                    d.name, d.name
                )),
            });
        }
    }
}

/// `drift[]` is every difference found: the objects this plan creates, destroys or
/// replaces get an entry (planned) unless a phase already recorded one for them.
fn planned_drift(cx: &mut PlanCx<'_>) {
    let recorded: BTreeSet<String> = cx.drift.iter().map(|d| d.address.clone()).collect();
    let mut seen = BTreeSet::new();
    for s in &cx.steps {
        let address = s.address.to_string();
        let (attribute, declared, observed) = match s.action {
            Action::Create => ("present", "true", "false"),
            Action::Delete => ("present", "false", "true"),
            Action::Replace => ("replace", "requested", "present"),
            Action::Update | Action::Read => continue,
        };
        if recorded.contains(&address) || !seen.insert(address.clone()) {
            continue;
        }
        cx.drift.push(Drift {
            address,
            attribute: attribute.into(),
            declared: Some(declared.into()),
            observed: Some(observed.into()),
            planned: true,
            note: Some(s.why.clone()),
        });
    }
}
