//! Slim mirrors of the Kubernetes objects the provider reads: only the fields k3splan uses,
//! every one defaulted, so a list decodes fast and tolerates fields it does not know.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct SList<T> {
    #[serde(default)]
    pub metadata: SListMeta,
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

/// `"items": null` (sent by some servers for empty lists) reads as an empty list.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SListMeta {
    #[serde(rename = "continue")]
    pub cont: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SOwner {
    pub kind: String,
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_references: Vec<SOwner>,
    pub deletion_timestamp: Option<String>,
}

impl SMeta {
    pub(crate) fn controller(&self) -> Option<&SOwner> {
        controller_of(&self.owner_references)
    }
}

/// The owner with `controller: true`, else the first owner.
fn controller_of(owners: &[SOwner]) -> Option<&SOwner> {
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNode {
    pub metadata: SMeta,
    pub spec: SNodeSpec,
    pub status: SNodeStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNodeSpec {
    pub unschedulable: Option<bool>,
    pub taints: Vec<STaint>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct STaint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNodeStatus {
    pub conditions: Vec<SCondition>,
    pub addresses: Vec<SAddress>,
    pub node_info: SNodeInfo,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNodeInfo {
    pub kubelet_version: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPod {
    pub metadata: SMeta,
    pub spec: SPodSpec,
    pub status: SPodStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPodSpec {
    pub node_name: Option<String>,
    pub volumes: Vec<SVolume>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SVolume {
    pub persistent_volume_claim: Option<SClaimSource>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SClaimSource {
    pub claim_name: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPodStatus {
    pub phase: String,
    pub conditions: Vec<SCondition>,
}

impl SPod {
    pub(crate) fn claims(&self) -> Vec<String> {
        self.spec
            .volumes
            .iter()
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect()
    }
    pub(crate) fn is_mirror(&self) -> bool {
        self.metadata
            .annotations
            .contains_key("kubernetes.io/config.mirror")
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvc {
    pub metadata: SPvcMeta,
    pub spec: SPvcSpec,
    pub status: SPvcStatus,
}
/// A PVC's metadata: what k3splan reads of it and nothing else. A cluster holds tens of
/// thousands of PVCs and PVs; their labels, annotations and `managedFields` are skipped
/// without building maps (perf at 5,000 nodes, issue 20: building them was most of the PVC
/// and PV decode's allocations).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvcMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub annotations: SPvcAnnotations,
    pub deletion_timestamp: Option<String>,
}
/// The one annotation of a PVC k3splan reads.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SPvcAnnotations {
    /// The scheduler's pick for a `WaitForFirstConsumer` volume (local-path's binding mode).
    #[serde(rename = "volume.kubernetes.io/selected-node")]
    pub selected_node: Option<String>,
}
#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvcSpec {
    pub storage_class_name: Option<String>,
    pub volume_name: Option<String>,
    pub resources: SResources,
}
#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SResources {
    pub requests: SStorage,
}
/// A resource list (`capacity`, `requests`) read for its `storage` entry only.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(crate) struct SStorage {
    pub storage: Option<String>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvcStatus {
    pub phase: String,
    pub capacity: SStorage,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPv {
    pub metadata: SNameOnly,
    pub spec: SPvSpec,
    pub status: SPvStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvSpec {
    pub storage_class_name: Option<String>,
    pub capacity: SStorage,
    pub persistent_volume_reclaim_policy: Option<String>,
    pub claim_ref: Option<SClaimRef>,
    pub node_affinity: Option<SNodeAffinity>,
    pub host_path: Option<SPath>,
    pub local: Option<SPath>,
}
/// An object's name alone (a PV: its labels and annotations are never read).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SNameOnly {
    pub name: String,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SPath {
    pub path: String,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SClaimRef {
    pub namespace: String,
    pub name: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNodeAffinity {
    pub required: Option<SNodeSelector>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SNodeSelector {
    pub node_selector_terms: Vec<STerm>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct STerm {
    pub match_expressions: Vec<SExpr>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SExpr {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SPvStatus {
    pub phase: String,
}

impl SPv {
    pub(crate) fn local_node(&self) -> Option<String> {
        let terms = &self
            .spec
            .node_affinity
            .as_ref()?
            .required
            .as_ref()?
            .node_selector_terms;
        terms
            .iter()
            .flat_map(|t| t.match_expressions.iter())
            .find(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
            .and_then(|e| e.values.first().cloned())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SOwnerOnly {
    pub metadata: SOwnerMeta,
}
/// Name, namespace and owners: all k3splan reads of a ReplicaSet (a cluster keeps ten per
/// Deployment by default, each with its pod template) or of a HelmChart.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SOwnerMeta {
    pub name: String,
    pub namespace: String,
    pub owner_references: Vec<SOwner>,
}
impl SOwnerMeta {
    pub(crate) fn controller(&self) -> Option<&SOwner> {
        controller_of(&self.owner_references)
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SDeployment {
    pub metadata: SMeta,
    pub spec: SDeploySpec,
    pub status: SDeployStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SDeploySpec {
    pub replicas: Option<i32>,
    pub selector: SSelector,
    pub template: STemplate,
}
#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<SSelectorReq>,
}
#[derive(Deserialize, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SSelectorReq {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// A workload's `spec.selector` alone (StatefulSet, Deployment).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SSelectorOnly {
    pub spec: SSelectorSpec,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SSelectorSpec {
    pub selector: SSelector,
}

impl SSelector {
    /// The selector in the `labelSelector` query syntax (apimachinery
    /// `metav1.LabelSelectorAsSelector`): `k=v` for `matchLabels`, `k in (a,b)`,
    /// `k notin (a,b)`, `k`, `!k` for `matchExpressions`. `None` for an operator that syntax
    /// cannot express (the caller then reads more, never less).
    pub(crate) fn query(&self) -> Option<String> {
        let mut terms: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            terms.push(match r.operator.as_str() {
                "In" if !r.values.is_empty() => format!("{} in ({})", r.key, r.values.join(",")),
                "NotIn" if !r.values.is_empty() => {
                    format!("{} notin ({})", r.key, r.values.join(","))
                }
                "Exists" => r.key.clone(),
                "DoesNotExist" => format!("!{}", r.key),
                _ => return None,
            });
        }
        Some(terms.join(","))
    }
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct STemplate {
    pub spec: STemplateSpec,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct STemplateSpec {
    pub topology_spread_constraints: Vec<SSpread>,
    pub affinity: Option<SAffinity>,
    pub volumes: Vec<SVolume>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SSpread {
    pub topology_key: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SAffinity {
    pub pod_anti_affinity: Option<SAntiAffinity>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SAntiAffinity {
    pub required_during_scheduling_ignored_during_execution: Vec<SSpread>,
    pub preferred_during_scheduling_ignored_during_execution: Vec<SWeighted>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SWeighted {
    pub pod_affinity_term: SSpread,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SDeployStatus {
    pub ready_replicas: Option<i32>,
}

/// Label selector string for `matchLabels`.
pub(crate) fn selector_string(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(json: &str) -> SSelector {
        serde_json::from_str(json).unwrap()
    }

    /// The label-selector query of a workload's selector, as apimachinery writes it.
    #[test]
    fn selector_query_covers_match_labels_and_expressions() {
        assert_eq!(
            sel(r#"{"matchLabels": {"app": "minio", "tier": "db"}}"#).query(),
            Some("app=minio,tier=db".into())
        );
        assert_eq!(
            sel(r#"{"matchLabels": {"app": "m"}, "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "NotIn", "values": ["true"]},
                {"key": "release", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}]}"#)
            .query(),
            Some("app=m,zone in (a,b),canary notin (true),release,!legacy".into())
        );
        // An operator the query syntax cannot state: no selector (read more, never less).
        assert_eq!(
            sel(r#"{"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}"#)
                .query(),
            None
        );
        assert_eq!(sel("{}").query(), Some(String::new()));
    }
}
