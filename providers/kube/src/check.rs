//! What `k3splan check` reads from the Kubernetes API: each Node's labels and annotations
//! that tell of an action in progress or of another manager (k3s's etcd remove annotation,
//! Rancher's management labels), and system-upgrade-controller `Plan` objects.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{KubeError, KubeProvider};

#[derive(Deserialize)]
struct MetaOnly {
    metadata: Meta,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What the check read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRead {
    /// Per Node: its labels and annotations whose key `keep` accepted.
    pub node_marks: BTreeMap<String, BTreeMap<String, String>>,
    /// `namespace/name` of every `plans.upgrade.cattle.io` object (empty when the kind is
    /// not served: system-upgrade-controller is not installed).
    pub suc_plans: Vec<String>,
}

impl KubeProvider {
    /// Lists Nodes (keeping the labels and annotations `keep` accepts) and SUC plans.
    pub async fn read_check(&self, keep: fn(&str) -> bool) -> Result<CheckRead, KubeError> {
        let nodes = self.list_slim::<MetaOnly>("/api/v1/nodes", None, None);
        let plans = async {
            match self
                .list_slim::<MetaOnly>("/apis/upgrade.cattle.io/v1/plans", None, None)
                .await
            {
                Ok(v) => Ok(v),
                Err(KubeError::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        let (nodes, plans) = futures::try_join!(nodes, plans)?;
        let mut r = CheckRead::default();
        for n in nodes {
            let m = n.metadata;
            let marks: BTreeMap<String, String> = m
                .labels
                .into_iter()
                .chain(m.annotations)
                .filter(|(k, _)| keep(k))
                .collect();
            r.node_marks.insert(m.name, marks);
        }
        r.suc_plans = plans
            .into_iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.unwrap_or_default(),
                    p.metadata.name
                )
            })
            .collect();
        r.suc_plans.sort();
        Ok(r)
    }
}

impl KubeProvider {
    /// Removes the annotation `key` from Node `node` (merge patch to null). A Node without it
    /// (or no Node) is `AlreadyDone`.
    pub async fn remove_node_annotation(
        &self,
        node: &str,
        key: &str,
    ) -> Result<crate::ActOutcome, KubeError> {
        let path = format!("/api/v1/nodes/{node}");
        let Some(v) = self
            .raw(http::Method::GET, &path, "application/json", None)
            .await?
        else {
            return Ok(crate::ActOutcome::AlreadyDone);
        };
        if v["metadata"]["annotations"].get(key).is_none() {
            return Ok(crate::ActOutcome::AlreadyDone);
        }
        let patch = serde_json::json!({"metadata": {"annotations": {key: null}}});
        self.raw(
            http::Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
        Ok(crate::ActOutcome::Changed)
    }
}
