//! Phase `keepalived`: the keepalived static pod manifest of every server, as declared.
//! Backups first, the primary last, so the VIP moves once the others are set. A joining
//! server's old manifest is rewritten before k3s starts (by the `joins` phase, through
//! [`keepalived_node`]), as k3s would start it and it could take the VIP.

use serde_json::json;

use crate::config::{Node, Vip};
use crate::observed::KeepalivedManifest;
use crate::plan::cx::PlanCx;
use crate::plan::files::{
    self, KeepalivedWant, keepalived_matches, keepalived_want, mask_secrets, rewrite_keepalived,
};
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    keepalived(cx);
    Ok(())
}

fn keepalived<'a>(cx: &mut PlanCx<'a>) {
    let Some(vip) = &cx.t.cluster.vip else {
        return;
    };
    let mut nodes: Vec<&'a Node> =
        cx.t.server_nodes()
            .filter(|d| cx.is_present(&d.name) || cx.joined.contains_key(&d.name))
            .collect();
    // Backups first; the primary last, so the VIP moves once the others are set.
    nodes.sort_by_key(|d| cx.t.vip_priority(d).unwrap_or(0));
    for d in nodes {
        // Joined by this plan: its manifest was rewritten before k3s started.
        if !cx.keepalived_before_start.contains(&d.name) {
            keepalived_node(cx, d, vip);
        }
    }
}

/// The keepalived step of one server (none when its manifest is as declared).
pub(super) fn keepalived_node(cx: &mut PlanCx<'_>, d: &Node, vip: &Vip) {
    let Some(w) = keepalived_want(cx.t, d) else {
        return;
    };
    let v = &cx.views[&d.name];
    let h = match v.host.known() {
        Some(h) => h,
        None => {
            cx.warnings.push(format!(
                "host_file.{}:{}: host unreachable ({}); keepalived not checked",
                d.name,
                vip.manifest_path,
                v.host_reason().unwrap_or_default()
            ));
            return;
        }
    };
    match &h.keepalived {
        Some(m) if keepalived_matches(m, &w) => {}
        Some(m) => rewrite_manifest(cx, d, vip, m, &w),
        None => create_manifest(cx, d, vip, &w),
    }
}

/// The step rewriting the keepalived settings of an existing manifest, with one drift
/// entry per setting that differs.
fn rewrite_manifest(
    cx: &mut PlanCx<'_>,
    d: &Node,
    vip: &Vip,
    m: &KeepalivedManifest,
    w: &KeepalivedWant,
) {
    let addr = Address::host_file(&d.name, &vip.manifest_path);
    let before = mask_secrets(&m.raw);
    let after = mask_secrets(&rewrite_keepalived(&m.raw, w));
    let mut changed = Vec::new();
    let mut drift = |attr: &str, decl: String, obs: Option<String>| {
        if obs.as_deref() != Some(decl.as_str()) {
            changed.push(format!(
                "{attr} {} → {decl}",
                obs.clone().unwrap_or_else(|| "unset".into())
            ));
            cx.drift.push(Drift {
                address: addr.to_string(),
                attribute: attr.into(),
                declared: Some(decl),
                observed: obs,
                planned: true,
                note: None,
            });
        }
    };
    drift(
        "priority",
        w.priority.to_string(),
        m.priority.map(|p| p.to_string()),
    );
    drift("vip", w.vip.clone(), m.vip.clone());
    drift("interface", w.interface.clone(), m.interface.clone());
    drift(
        "router_id",
        w.router_id.to_string(),
        m.router_id.map(|p| p.to_string()),
    );
    let role = if d.primary { "primary" } else { "backup" };
    cx.push(
            addr.clone(),
            Action::Update,
            ActionReason::KeepalivedDrift,
            format!("keepalived differs: {}; this node is a {role}", changed.join(", ")),
            vec![Operation::WriteFile {
                node: d.name.clone(),
                path: vip.manifest_path.clone(),
                before: Some(before),
                after,
                sensitive: vec![],
            }],
            Some(json!({"priority": m.priority, "vip": m.vip, "interface": m.interface, "router_id": m.router_id})),
            Some(json!({"priority": w.priority, "vip": w.vip, "interface": w.interface, "router_id": w.router_id})),
        );
}

/// The step writing a keepalived manifest where there is none.
fn create_manifest(cx: &mut PlanCx<'_>, d: &Node, vip: &Vip, w: &KeepalivedWant) {
    let addr = Address::host_file(&d.name, &vip.manifest_path);
    let (after, sensitive) = files::keepalived_manifest_for(cx.t, d).expect("server with a VIP");
    let reason = if cx.joined.contains_key(&d.name) {
        ActionReason::CreateBecauseDeclared
    } else {
        ActionReason::KeepalivedDrift
    };
    cx.push(
            addr.clone(),
            Action::Create,
            reason,
            format!(
                "it runs keepalived for VIP {} with priority {}{}",
                w.vip,
                w.priority,
                if d.primary { " (primary)" } else { "" },
            ),
            vec![Operation::WriteFile {
                node: d.name.clone(),
                path: vip.manifest_path.clone(),
                before: None,
                after: after.clone(),
                sensitive,
            }],
            None,
            Some(json!({"priority": w.priority, "vip": w.vip, "interface": w.interface, "router_id": w.router_id})),
        );
}
