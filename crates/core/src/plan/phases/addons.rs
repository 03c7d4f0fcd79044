//! Phase `addons`: declared add-on Deployments whose replicas or spread differ are scaled
//! (k3splan does not install add-ons: a missing one is drift only).
//!
//! An add-on k3s packages as a plain manifest (coredns, local-path-provisioner,
//! metrics-server) is re-applied by k3s's deploy controller from
//! `<data-dir>/server/manifests` at every server start, which would undo the scaling. So on
//! every declared server that lacks it, `NAME.yaml.skip` is written first (k3s's own way to
//! leave a packaged manifest alone), before the add-on is scaled. Add-ons k3s ships as Helm
//! charts (traefik) are configured through a `HelmChartConfig` instead and need no `.skip`.

use serde_json::json;

use crate::config::Addon;
use crate::observed::{AddonDeployment, Fact};
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
        if !obs.helm_chart_config
            && let Some(manifest) = packaged_manifest(&a.namespace, &a.name)
        {
            skip_files(cx, a, manifest);
        }
        scale_addon(cx, a, obs, schedulable);
    }
}

/// The add-ons k3s deploys from a plain manifest it writes to `<data-dir>/server/manifests`
/// (`namespace`, Deployment, manifest path relative to that dir), as in k3s's `manifests/`
/// directory: `coredns.yaml`, `local-storage.yaml`,
/// `metrics-server/metrics-server-deployment.yaml`. traefik is a `HelmChart`
/// (`traefik.yaml`): it is configured through a `HelmChartConfig`, not skipped.
pub const PACKAGED_ADDONS: &[(&str, &str, &str)] = &[
    ("kube-system", "coredns", "coredns.yaml"),
    (
        "kube-system",
        "local-path-provisioner",
        "local-storage.yaml",
    ),
    (
        "kube-system",
        "metrics-server",
        "metrics-server/metrics-server-deployment.yaml",
    ),
];

/// The manifest (relative to `<data-dir>/server/manifests`) k3s deploys add-on
/// `namespace/name` from, when k3s packages it.
pub fn packaged_manifest(namespace: &str, name: &str) -> Option<&'static str> {
    PACKAGED_ADDONS
        .iter()
        .find(|(ns, n, _)| *ns == namespace && *n == name)
        .map(|(_, _, m)| *m)
}

/// The content k3splan writes to a `.skip` file (k3s only checks that the file exists).
fn skip_content(a: &Addon, manifest: &str) -> String {
    format!(
        "# Written by k3splan: k3s does not re-apply {manifest} while this file exists.\n# addon.{} ({}/{}) is managed by k3splan; delete this file to hand it back to k3s.\n",
        a.name, a.namespace, a.name
    )
}

/// One step per declared server that has no `.skip` file for `manifest`.
fn skip_files(cx: &mut PlanCx<'_>, a: &Addon, manifest: &str) {
    let file_name = manifest.rsplit('/').next().unwrap_or(manifest);
    let path = format!(
        "{}/server/manifests/{manifest}.skip",
        cx.t.cluster.data_dir.trim_end_matches('/')
    );
    let mut unknown = Vec::new();
    for d in cx.t.nodes.iter().filter(|d| d.roles.is_server()) {
        if cx.lost.contains(&d.name) {
            continue;
        }
        let host = match &cx.views[&d.name].host {
            Fact::Known(h) => *h,
            Fact::Unknown { .. } => {
                unknown.push(d.name.clone());
                continue;
            }
        };
        if host.skips_manifest(file_name) {
            continue;
        }
        cx.push(
            Address::host_file(&d.name, &path),
            Action::Create,
            ActionReason::PackagedAddonSkip,
            format!(
                "k3s re-applies its packaged {manifest} at every start of {}, which would undo addon.{}; {file_name}.skip makes k3s leave it alone, and k3s no longer upgrades it",
                d.name, a.name
            ),
            vec![Operation::WriteFile {
                node: d.name.clone(),
                path: path.clone(),
                before: None,
                after: skip_content(a, manifest),
                sensitive: Vec::new(),
            }],
            None,
            Some(json!({"path": path})),
        );
    }
    if !unknown.is_empty() {
        cx.warnings.push(format!(
            "addon.{}: whether {} holds {file_name}.skip is unknown (host unreachable): without it k3s resets the add-on at that server's next start",
            a.name,
            unknown.join(", ")
        ));
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
