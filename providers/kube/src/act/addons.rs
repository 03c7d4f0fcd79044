//! Add-on replicas and topology spread: a Deployment patch or a k3s HelmChartConfig.

use serde_json::json;

use crate::model::*;
use crate::{KubeError, KubeProvider};

/// How to set an add-on's replicas and spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddonMethod {
    /// Strategic merge patch of the Deployment (`spec.replicas`, `topologySpreadConstraints`).
    /// Caveat: k3s re-applies its packaged manifests (coredns, metrics-server, local-storage) on
    /// restart, reverting such a patch (see [`AddonStatus::k3s_manifest`]).
    Patch,
    /// Write `spec.valuesContent` of the k3s `HelmChartConfig` named like the chart, in the
    /// add-on's namespace. `values_content: None` writes `replicaCount` and
    /// `topologySpreadConstraints` (the common chart convention).
    HelmChartConfig {
        /// Chart name (HelmChartConfig name).
        chart: String,
        /// Exact values YAML, if the chart uses other keys.
        values_content: Option<String>,
    },
}

/// A change of an add-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonChange {
    /// Deployment namespace.
    pub namespace: String,
    /// Deployment name.
    pub name: String,
    /// Desired replicas.
    pub replicas: i32,
    /// Topology key to spread on (`kubernetes.io/hostname`), if any.
    pub spread_topology_key: Option<String>,
    /// Patch or HelmChartConfig.
    pub method: AddonMethod,
}

impl KubeProvider {
    /// Sets an add-on's replicas and topology spread (see [`AddonMethod`]). `AlreadyDone` when
    /// the Deployment (or HelmChartConfig) already says so.
    pub async fn set_addon_replicas_and_spread(
        &self,
        change: &AddonChange,
    ) -> Result<ActOutcome, KubeError> {
        match &change.method {
            AddonMethod::Patch => self.patch_addon(change).await,
            AddonMethod::HelmChartConfig {
                chart,
                values_content,
            } => {
                self.write_helm_chart_config(change, chart, values_content.as_deref())
                    .await
            }
        }
    }

    /// [`AddonMethod::Patch`]: a strategic merge patch of the Deployment.
    async fn patch_addon(&self, change: &AddonChange) -> Result<ActOutcome, KubeError> {
        let ns = &change.namespace;
        let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/{}", change.name);
        let d = self
            .raw(http::Method::GET, &dpath, "application/json", None)
            .await?
            .ok_or_else(|| KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!("deployment {ns}/{}", change.name),
            })?;
        let spread_ok = match &change.spread_topology_key {
            None => true,
            Some(k) => d["spec"]["template"]["spec"]["topologySpreadConstraints"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["topologyKey"] == k.as_str())),
        };
        if d["spec"]["replicas"].as_i64() == Some(change.replicas as i64) && spread_ok {
            return Ok(ActOutcome::AlreadyDone);
        }
        let mut patch = json!({"spec": {"replicas": change.replicas}});
        if let Some(k) = &change.spread_topology_key {
            let sel = d["spec"]["selector"]["matchLabels"].clone();
            patch["spec"]["template"] = json!({"spec": {"topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": k, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": sel}}]}});
        }
        self.raw(
            http::Method::PATCH,
            &dpath,
            "application/strategic-merge-patch+json",
            Some(&patch),
        )
        .await?;
        Ok(ActOutcome::Changed)
    }

    /// [`AddonMethod::HelmChartConfig`]: the chart's `valuesContent`, created or patched.
    async fn write_helm_chart_config(
        &self,
        change: &AddonChange,
        chart: &str,
        values_content: Option<&str>,
    ) -> Result<ActOutcome, KubeError> {
        let ns = &change.namespace;
        let values = values_content.map(str::to_string).unwrap_or_else(|| {
            let mut s = format!("replicaCount: {}\n", change.replicas);
            if let Some(k) = &change.spread_topology_key {
                s.push_str(&format!("topologySpreadConstraints:\n- maxSkew: 1\n  topologyKey: {k}\n  whenUnsatisfiable: ScheduleAnyway\n"));
            }
            s
        });
        let path = format!("/apis/helm.cattle.io/v1/namespaces/{ns}/helmchartconfigs/{chart}");
        match self
            .raw(http::Method::GET, &path, "application/json", None)
            .await?
        {
            Some(cur) if cur["spec"]["valuesContent"].as_str() == Some(values.as_str()) => {
                Ok(ActOutcome::AlreadyDone)
            }
            Some(_) => {
                let patch = json!({"spec": {"valuesContent": values}});
                self.merge_patch(&path, &patch).await?;
                Ok(ActOutcome::Changed)
            }
            None => {
                let body = json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig",
                                  "metadata": {"name": chart, "namespace": ns}, "spec": {"valuesContent": values}});
                self.raw(
                    http::Method::POST,
                    &format!("/apis/helm.cattle.io/v1/namespaces/{ns}/helmchartconfigs"),
                    "application/json",
                    Some(&body),
                )
                .await?;
                Ok(ActOutcome::Changed)
            }
        }
    }
}
