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
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
            .or_else(|| self.owner_references.first())
    }
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
    pub metadata: SMeta,
    pub spec: SPvcSpec,
    pub status: SPvcStatus,
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
    pub requests: BTreeMap<String, String>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvcStatus {
    pub phase: String,
    pub capacity: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPv {
    pub metadata: SMeta,
    pub spec: SPvSpec,
    pub status: SPvStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SPvSpec {
    pub storage_class_name: Option<String>,
    pub capacity: BTreeMap<String, String>,
    pub persistent_volume_reclaim_policy: Option<String>,
    pub claim_ref: Option<SClaimRef>,
    pub node_affinity: Option<SNodeAffinity>,
    pub host_path: Option<SPath>,
    pub local: Option<SPath>,
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
    pub metadata: SMeta,
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
