//! Reading the cluster into slim structs: one list per kind, concurrently, `resourceVersion=0`,
//! gzip, optional paging, `spec.nodeName` field selectors for the pods of chosen nodes.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::*;
use crate::{KubeError, KubeProvider};

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
    fn controller(&self) -> Option<&SOwner> {
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
struct SNode {
    metadata: SMeta,
    spec: SNodeSpec,
    status: SNodeStatus,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SNodeSpec {
    unschedulable: Option<bool>,
    taints: Vec<STaint>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct STaint {
    key: String,
    value: Option<String>,
    effect: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SNodeStatus {
    conditions: Vec<SCondition>,
    addresses: Vec<SAddress>,
    node_info: SNodeInfo,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SAddress {
    #[serde(rename = "type")]
    type_: String,
    address: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SNodeInfo {
    kubelet_version: String,
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
    storage_class_name: Option<String>,
    capacity: BTreeMap<String, String>,
    persistent_volume_reclaim_policy: Option<String>,
    claim_ref: Option<SClaimRef>,
    node_affinity: Option<SNodeAffinity>,
    host_path: Option<SPath>,
    local: Option<SPath>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct SPath {
    path: String,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct SClaimRef {
    namespace: String,
    name: String,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SNodeAffinity {
    required: Option<SNodeSelector>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SNodeSelector {
    node_selector_terms: Vec<STerm>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct STerm {
    match_expressions: Vec<SExpr>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
struct SExpr {
    key: String,
    operator: String,
    values: Vec<String>,
}
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SPvStatus {
    phase: String,
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
    pod_anti_affinity: Option<SAntiAffinity>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SAntiAffinity {
    required_during_scheduling_ignored_during_execution: Vec<SSpread>,
    preferred_during_scheduling_ignored_during_execution: Vec<SWeighted>,
}
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SWeighted {
    pod_affinity_term: SSpread,
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

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl KubeProvider {
    /// GETs one object into a slim struct; `Ok(None)` on 404.
    pub(crate) async fn get_slim<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, KubeError> {
        let req = http::Request::get(path).body(Vec::new()).expect("request");
        match self.client.request::<T>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.map_err(&format!("GET {path}"), e)),
        }
    }

    /// Lists `path` (e.g. `/api/v1/pods`) into slim items, following `continue` tokens.
    pub(crate) async fn list_slim<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Vec<T>, KubeError> {
        self.list_slim_rv(
            path,
            label_selector,
            field_selector,
            self.settings.resource_version_zero,
        )
        .await
    }

    /// Like [`Self::list_slim`], but a consistent read (no `resourceVersion=0`): for actions,
    /// which must not act on a stale cache.
    pub(crate) async fn list_slim_fresh<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Vec<T>, KubeError> {
        self.list_slim_rv(path, label_selector, field_selector, false)
            .await
    }

    async fn list_slim_rv<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        rv0: bool,
    ) -> Result<Vec<T>, KubeError> {
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q: Vec<String> = Vec::new();
            if let Some(l) = label_selector {
                q.push(format!("labelSelector={}", enc(l)));
            }
            if let Some(f) = field_selector {
                q.push(format!("fieldSelector={}", enc(f)));
            }
            if let Some(n) = self.settings.page_size {
                q.push(format!("limit={n}"));
            }
            match &cont {
                // resourceVersion must not be combined with continue.
                Some(c) => q.push(format!("continue={}", enc(c))),
                None if rv0 => q.push("resourceVersion=0".into()),
                None => {}
            }
            let url = if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", q.join("&"))
            };
            let req = http::Request::get(&url).body(Vec::new()).expect("request");
            // The body is read into one buffer and parsed from bytes: `request_text` would
            // collect it, copy it twice (`to_vec`, `String`) and validate it as UTF-8 first,
            // which for a 100 MB list was most of the plan's page faults and memmove.
            let body = self
                .client
                .request_stream(req)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), e))?;
            let mut bytes = Vec::new();
            futures::io::AsyncReadExt::read_to_end(&mut Box::pin(body), &mut bytes)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), kube::Error::ReadEvents(e)))?;
            let page: SList<T> = decode_list(bytes)
                .await
                .map_err(|e| self.map_err(&format!("GET {url}"), kube::Error::SerdeError(e)))?;
            out.extend(page.items);
            match page.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Reads the cluster. Independent lists run concurrently. Fails with
    /// [`KubeError::Unreachable`] when the API cannot be reached (never an empty observation).
    pub async fn observe(&self, req: &ObserveRequest) -> Result<ClusterObservation, KubeError> {
        let nodes_f = self.list_slim::<SNode>("/api/v1/nodes", None, None);
        let pvcs_f = self.list_slim::<SPvc>("/api/v1/persistentvolumeclaims", None, None);
        let pvs_f = self.list_slim::<SPv>("/api/v1/persistentvolumes", None, None);
        let rs_f = self.list_slim::<SOwnerOnly>("/apis/apps/v1/replicasets", None, None);
        let pods_f = self.read_pods(req);
        let addons_f = self.read_addons(&req.addons);
        let (nodes, pvcs, pvs, rs, pods, addons) =
            futures::try_join!(nodes_f, pvcs_f, pvs_f, rs_f, pods_f, addons_f)?;

        let rs_owner: HashMap<(String, String), SOwner> = rs
            .into_iter()
            .filter_map(|r| {
                let o = r.metadata.controller().cloned()?;
                Some(((r.metadata.namespace.clone(), r.metadata.name.clone()), o))
            })
            .collect();
        let mut pod_infos: Vec<PodInfo> = pods.iter().map(|p| pod_info(p, &rs_owner)).collect();
        pod_infos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pod_infos.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);

        let pv_infos: Vec<PvInfo> = pvs
            .into_iter()
            .map(|mut p| PvInfo {
                local_node: p.local_node(),
                capacity: p.spec.capacity.remove("storage"),
                claim: p.spec.claim_ref.map(|c| (c.namespace, c.name)),
                path: p.spec.host_path.or(p.spec.local).map(|h| h.path),
                name: p.metadata.name,
                storage_class: p.spec.storage_class_name,
                phase: p.status.phase,
                reclaim_policy: p.spec.persistent_volume_reclaim_policy,
            })
            .collect();
        let pv_node: HashMap<&str, Option<String>> = pv_infos
            .iter()
            .map(|p| (p.name.as_str(), p.local_node.clone()))
            .collect();
        let mut users: HashMap<(String, String), Vec<String>> = HashMap::new();
        for p in &pod_infos {
            for c in &p.pvcs {
                users
                    .entry((p.namespace.clone(), c.clone()))
                    .or_default()
                    .push(p.name.clone());
            }
        }
        let pvc_infos: Vec<PvcInfo> = pvcs
            .into_iter()
            .map(|c| {
                let local_node = c
                    .spec
                    .volume_name
                    .as_deref()
                    .and_then(|v| pv_node.get(v).cloned().flatten())
                    .or_else(|| {
                        c.metadata
                            .annotations
                            .get("volume.kubernetes.io/selected-node")
                            .cloned()
                    });
                let key = (c.metadata.namespace.clone(), c.metadata.name.clone());
                PvcInfo {
                    used_by: users.remove(&key).unwrap_or_default(),
                    namespace: c.metadata.namespace,
                    name: c.metadata.name,
                    uid: c.metadata.uid,
                    storage_class: c.spec.storage_class_name,
                    volume: c.spec.volume_name.filter(|v| !v.is_empty()),
                    phase: c.status.phase,
                    capacity: c
                        .status
                        .capacity
                        .get("storage")
                        .cloned()
                        .or_else(|| c.spec.resources.requests.get("storage").cloned()),
                    local_node,
                    terminating: c.metadata.deletion_timestamp.is_some(),
                }
            })
            .collect();

        let mut node_infos: Vec<NodeInfo> = nodes.into_iter().map(node_info).collect();
        node_infos.sort_by(|a, b| a.name.cmp(&b.name));

        let addons = addons
            .into_iter()
            .map(|mut a| {
                a.pod_nodes.sort();
                a
            })
            .collect();
        Ok(ClusterObservation {
            endpoint: self.endpoint.clone(),
            nodes: node_infos,
            pods: pod_infos,
            pvcs: pvc_infos,
            pvs: pv_infos,
            addons,
            all_pods: req.pods == PodScope::All,
        })
    }

    async fn read_pods(&self, req: &ObserveRequest) -> Result<Vec<SPod>, KubeError> {
        match req.pods {
            PodScope::All => self.list_slim::<SPod>("/api/v1/pods", None, None).await,
            PodScope::NodesOfInterest => {
                let mut selectors: Vec<String> = req
                    .nodes_of_interest
                    .iter()
                    .map(|n| format!("spec.nodeName={n}"))
                    .collect();
                selectors.push("spec.nodeName=".into());
                let lists = futures::future::try_join_all(
                    selectors
                        .iter()
                        .map(|f| self.list_slim::<SPod>("/api/v1/pods", None, Some(f))),
                )
                .await?;
                Ok(lists.into_iter().flatten().collect())
            }
            PodScope::Namespaces => {
                let mut namespaces = req.namespaces.clone();
                namespaces.sort();
                namespaces.dedup();
                let lists = futures::future::try_join_all(namespaces.iter().map(|ns| {
                    let path = format!("/api/v1/namespaces/{ns}/pods");
                    async move { self.list_slim::<SPod>(&path, None, None).await }
                }))
                .await?;
                Ok(lists.into_iter().flatten().collect())
            }
        }
    }

    async fn read_addons(&self, addons: &[AddonRef]) -> Result<Vec<AddonStatus>, KubeError> {
        let mut namespaces: Vec<&str> = addons.iter().map(|a| a.namespace.as_str()).collect();
        namespaces.sort();
        namespaces.dedup();
        let charts_f = futures::future::try_join_all(namespaces.iter().map(|ns| async move {
            let charts = self
                .list_slim::<SOwnerOnly>(
                    &format!("/apis/helm.cattle.io/v1/namespaces/{ns}/helmcharts"),
                    None,
                    None,
                )
                .await
                .or_else(missing_kind_is_empty)?;
            let configs = self
                .list_slim::<SOwnerOnly>(
                    &format!("/apis/helm.cattle.io/v1/namespaces/{ns}/helmchartconfigs"),
                    None,
                    None,
                )
                .await
                .or_else(missing_kind_is_empty)?;
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
        let mut out = Vec::new();
        for (a, (d, pods)) in addons.iter().zip(deps) {
            let (_, charts, configs) = charts
                .iter()
                .find(|(ns, _, _)| *ns == a.namespace)
                .expect("namespace read");
            let Some(d) = d else {
                out.push(AddonStatus {
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
                });
                continue;
            };
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
            out.push(AddonStatus {
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
                anti_affinity_topology_keys: anti,
                helm_chart,
                helm_chart_config,
                k3s_manifest: d
                    .metadata
                    .annotations
                    .get("objectset.rio.cattle.io/owner-name")
                    .cloned(),
            });
        }
        Ok(out)
    }
}

/// A cluster without the helm.cattle.io CRDs (not k3s) has no HelmCharts.
fn missing_kind_is_empty(e: KubeError) -> Result<Vec<SOwnerOnly>, KubeError> {
    match e {
        KubeError::NotFound { .. } => Ok(Vec::new()),
        other => Err(other),
    }
}

fn node_info(n: SNode) -> NodeInfo {
    let ready_c = n.status.conditions.iter().find(|c| c.type_ == "Ready");
    let ready = match ready_c.map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        _ => Readiness::Unknown,
    };
    let mut roles: Vec<String> = n
        .metadata
        .labels
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .filter(|_| v != "false")
                .map(str::to_string)
        })
        .collect();
    roles.sort();
    NodeInfo {
        internal_ip: n
            .status
            .addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address.clone()),
        ready,
        ready_since: ready_c.and_then(|c| c.last_transition_time.clone()),
        unschedulable: n.spec.unschedulable.unwrap_or(false),
        kubelet_version: n.status.node_info.kubelet_version,
        taints: n
            .spec
            .taints
            .into_iter()
            .map(|t| Taint {
                key: t.key,
                value: t.value,
                effect: t.effect,
            })
            .collect(),
        roles,
        name: n.metadata.name,
        uid: n.metadata.uid,
        labels: n.metadata.labels,
    }
}

pub(crate) fn resolve_owner(
    meta: &SMeta,
    rs_owner: &HashMap<(String, String), SOwner>,
) -> Option<WorkloadRef> {
    let o = meta.controller()?;
    let ns = meta.namespace.clone();
    Some(match o.kind.as_str() {
        "ReplicaSet" => match rs_owner.get(&(ns.clone(), o.name.clone())) {
            Some(d) if d.kind == "Deployment" => WorkloadRef {
                kind: WorkloadKind::Deployment,
                namespace: ns,
                name: d.name.clone(),
            },
            _ => WorkloadRef {
                kind: WorkloadKind::ReplicaSet,
                namespace: ns,
                name: o.name.clone(),
            },
        },
        "StatefulSet" => WorkloadRef {
            kind: WorkloadKind::StatefulSet,
            namespace: ns,
            name: o.name.clone(),
        },
        "DaemonSet" => WorkloadRef {
            kind: WorkloadKind::DaemonSet,
            namespace: ns,
            name: o.name.clone(),
        },
        "Job" => WorkloadRef {
            kind: WorkloadKind::Job,
            namespace: ns,
            name: o.name.clone(),
        },
        "Node" => WorkloadRef {
            kind: WorkloadKind::Node,
            namespace: String::new(),
            name: o.name.clone(),
        },
        other => WorkloadRef {
            kind: WorkloadKind::Other(other.to_string()),
            namespace: ns,
            name: o.name.clone(),
        },
    })
}

pub(crate) fn pod_info(p: &SPod, rs_owner: &HashMap<(String, String), SOwner>) -> PodInfo {
    PodInfo {
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        node: p.spec.node_name.clone().filter(|n| !n.is_empty()),
        phase: p.status.phase.clone(),
        ready: p
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        terminating: p.metadata.deletion_timestamp.is_some(),
        mirror: p.is_mirror(),
        owner: resolve_owner(&p.metadata, rs_owner),
        pvcs: p.claims(),
        labels: p.metadata.labels.clone(),
    }
}

/// Bodies above this size are decoded on a blocking thread.
const DECODE_OFF_RUNTIME_BYTES: usize = 256 * 1024;

/// Decodes a list body. A large list is tens of milliseconds of CPU: decoding it on an async
/// worker would stall everything else on that worker (SSH handshakes, etcd, the other lists)
/// for that long, so large bodies go to a blocking thread.
async fn decode_list<T: DeserializeOwned + Send + 'static>(
    bytes: Vec<u8>,
) -> Result<SList<T>, serde_json::Error> {
    if bytes.len() < DECODE_OFF_RUNTIME_BYTES {
        return serde_json::from_slice(&bytes);
    }
    match tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes)).await {
        Ok(r) => r,
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            // Only at runtime shutdown.
            Err(e) => Err(serde::de::Error::custom(format!("decoding cancelled: {e}"))),
        },
    }
}
