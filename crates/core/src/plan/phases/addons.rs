//! Phase `addons`: declared add-on Deployments whose replicas or spread differ are scaled
//! (k3splan does not install add-ons: a missing one is drift only).

use serde_json::json;

use crate::config::Addon;
use crate::observed::AddonDeployment;
use crate::plan::cx::PlanCx;
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    addons(cx);
    Ok(())
}

fn addons(cx: &mut PlanCx<'_>) {
    if cx.t.addons.is_empty() {
        return;
    }
    let Some(k) = cx.kube else {
        cx.warnings.push(format!(
            "add-ons not checked: the Kubernetes API is unknown ({})",
            cx.o.kube.unknown_reason().unwrap_or_default()
        ));
        return;
    };
    let schedulable =
        cx.t.nodes
            .iter()
            .filter(|d| !cx.lost.contains(&d.name))
            .count() as u32;
    for a in &cx.t.addons {
        let addr = Address::Addon {
            name: a.name.clone(),
        };
        let Some(obs) = k
            .addons
            .iter()
            .find(|x| x.name == a.name && x.namespace == a.namespace)
        else {
            cx.drift.push(Drift {
                address: addr.to_string(),
                attribute: "present".into(),
                declared: Some("true".into()),
                observed: Some("false".into()),
                planned: false,
                note: Some(format!(
                    "Deployment {}/{} not found; k3splan does not install add-ons",
                    a.namespace, a.name
                )),
            });
            continue;
        };
        scale_addon(cx, a, obs, schedulable);
    }
}

/// The step scaling add-on `a` (observed as `obs`) when its replicas or spread differ.
fn scale_addon(cx: &mut PlanCx<'_>, a: &Addon, obs: &AddonDeployment, schedulable: u32) {
    let addr = Address::Addon {
        name: a.name.clone(),
    };
    let spread_drift = a.spread.is_some() && obs.spread != a.spread;
    if obs.replicas == a.replicas && !spread_drift {
        return;
    }
    let mut changes = Vec::new();
    if obs.replicas != a.replicas {
        changes.push(format!("replicas {} → {}", obs.replicas, a.replicas));
        cx.drift.push(Drift {
            address: addr.to_string(),
            attribute: "replicas".into(),
            declared: Some(a.replicas.to_string()),
            observed: Some(obs.replicas.to_string()),
            planned: true,
            note: None,
        });
    }
    if spread_drift {
        changes.push(format!(
            "spread {} → {}",
            obs.spread.as_deref().unwrap_or("none"),
            a.spread.as_deref().unwrap_or("none")
        ));
        cx.drift.push(Drift {
            address: addr.to_string(),
            attribute: "spread".into(),
            declared: a.spread.clone(),
            observed: obs.spread.clone(),
            planned: true,
            note: None,
        });
    }
    if a.spread.as_deref() == Some("kubernetes.io/hostname") && a.replicas > schedulable {
        cx.warnings.push(format!(
            "addon.{}: {} replicas spread over hostnames but only {schedulable} nodes: some stay Pending if the spread is required",
            a.name, a.replicas
        ));
    }
    let mut why = format!("it differs: {}", changes.join(", "));
    if obs.replicas <= 1 && a.replicas > 1 {
        why.push_str("; one replica means the add-on is down while its node is lost");
    }
    cx.push(
        addr,
        Action::Update,
        ActionReason::AddonDrift,
        why,
        vec![Operation::ScaleAddon {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            replicas: a.replicas,
            spread: a.spread.clone(),
            via_helm: obs.helm_chart_config,
        }],
        Some(json!({"replicas": obs.replicas, "ready_replicas": obs.ready_replicas, "spread": obs.spread, "pod_nodes": obs.pod_nodes})),
        Some(json!({"replicas": a.replicas, "spread": a.spread})),
    );
}
