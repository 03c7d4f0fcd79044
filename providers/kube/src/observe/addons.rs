//! The add-ons' Deployments, their pods and k3s HelmCharts / HelmChartConfigs.

use super::slim::*;
use crate::model::*;
use crate::{KubeError, KubeProvider};

impl KubeProvider {
    pub(super) async fn read_addons(
        &self,
        addons: &[AddonRef],
    ) -> Result<Vec<AddonStatus>, KubeError> {
        let mut namespaces: Vec<&str> = addons.iter().map(|a| a.namespace.as_str()).collect();
        namespaces.sort();
        namespaces.dedup();
        let charts_f = futures::future::try_join_all(namespaces.iter().map(|ns| async move {
            let charts = self.helm_objects(ns, "helmcharts").await?;
            let configs = self.helm_objects(ns, "helmchartconfigs").await?;
            Ok::<_, KubeError>((ns.to_string(), charts, configs))
        }));
        let deps_f = futures::future::try_join_all(addons.iter().map(|a| async move {
            let d: Option<SDeployment> = self
                .get_slim(&format!(
                    "/apis/apps/v1/namespaces/{}/deployments/{}",
                    a.namespace, a.name
                ))
                .await?;
            let pods = match &d {
                Some(d) if !d.spec.selector.match_labels.is_empty() => {
                    self.list_slim::<SPod>(
                        &format!("/api/v1/namespaces/{}/pods", a.namespace),
                        Some(&selector_string(&d.spec.selector.match_labels)),
                        None,
                    )
                    .await?
                }
                _ => Vec::new(),
            };
            Ok::<_, KubeError>((d, pods))
        }));
        let (charts, deps) = futures::try_join!(charts_f, deps_f)?;
        Ok(addons
            .iter()
            .zip(deps)
            .map(|(a, (d, pods))| {
                let (_, charts, configs) = charts
                    .iter()
                    .find(|(ns, _, _)| *ns == a.namespace)
                    .expect("namespace read");
                match d {
                    Some(d) => addon_status(a, &d, &pods, charts, configs),
                    None => AddonStatus {
                        name: a.name.clone(),
                        namespace: a.namespace.clone(),
                        found: false,
                        replicas: 0,
                        ready_replicas: 0,
                        pod_nodes: vec![],
                        spread_topology_keys: vec![],
                        anti_affinity_topology_keys: vec![],
                        helm_chart: None,
                        helm_chart_config: None,
                        k3s_manifest: None,
                    },
                }
            })
            .collect())
    }
}

/// The status of an add-on whose Deployment `d` exists; `pods` are the Deployment's.
fn addon_status(
    a: &AddonRef,
    d: &SDeployment,
    pods: &[SPod],
    charts: &[SOwnerOnly],
    configs: &[SOwnerOnly],
) -> AddonStatus {
    let release = d
        .metadata
        .annotations
        .get("meta.helm.sh/release-name")
        .cloned();
    let helm_chart = charts
        .iter()
        .map(|c| c.metadata.name.clone())
        .find(|c| *c == a.name || Some(c) == release.as_ref());
    let helm_chart_config = helm_chart.as_ref().and_then(|hc| {
        configs
            .iter()
            .map(|c| c.metadata.name.clone())
            .find(|c| c == hc)
    });
    let tspec = &d.spec.template.spec;
    AddonStatus {
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        found: true,
        replicas: d.spec.replicas.unwrap_or(1),
        ready_replicas: d.status.ready_replicas.unwrap_or(0),
        pod_nodes: pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec.node_name.clone())
            .collect(),
        spread_topology_keys: tspec
            .topology_spread_constraints
            .iter()
            .map(|s| s.topology_key.clone())
            .collect(),
        anti_affinity_topology_keys: anti_affinity_keys(tspec),
        helm_chart,
        helm_chart_config,
        k3s_manifest: d
            .metadata
            .annotations
            .get("objectset.rio.cattle.io/owner-name")
            .cloned(),
    }
}

/// Topology keys of the pod anti-affinity terms, required ones first.
fn anti_affinity_keys(tspec: &STemplateSpec) -> Vec<String> {
    let mut anti = Vec::new();
    if let Some(aa) = tspec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
    {
        anti.extend(
            aa.required_during_scheduling_ignored_during_execution
                .iter()
                .map(|t| t.topology_key.clone()),
        );
        anti.extend(
            aa.preferred_during_scheduling_ignored_during_execution
                .iter()
                .map(|t| t.pod_affinity_term.topology_key.clone()),
        );
    }
    anti
}

impl KubeProvider {
    /// The k3s Helm objects of one kind (`helmcharts`, `helmchartconfigs`) in `ns`.
    async fn helm_objects(&self, ns: &str, kind: &str) -> Result<Vec<SOwnerOnly>, KubeError> {
        self.list_slim::<SOwnerOnly>(
            &format!("/apis/helm.cattle.io/v1/namespaces/{ns}/{kind}"),
            None,
            None,
        )
        .await
        .or_else(missing_kind_is_empty)
    }
}

/// A cluster without the helm.cattle.io CRDs (not k3s) has no HelmCharts.
fn missing_kind_is_empty(e: KubeError) -> Result<Vec<SOwnerOnly>, KubeError> {
    match e {
        KubeError::NotFound { .. } => Ok(Vec::new()),
        other => Err(other),
    }
}
