//! Reading the cluster into slim structs: one list per kind, concurrently, `resourceVersion=0`
//! (unpaged) or paged consistent reads, gzip, `spec.nodeName` field selectors for the pods of chosen nodes.
//!
//! [`slim`] mirrors the objects, [`list`] reads them, [`convert`] and [`addons`] turn them into
//! the model; this file assembles one [`ClusterObservation`].

mod addons;
mod convert;
mod list;
mod slim;

use std::collections::HashMap;

use crate::model::*;
use crate::{KubeError, KubeProvider};

pub(crate) use convert::resolve_owner;
use convert::{node_info, pod_info};
pub(crate) use slim::*;

impl KubeProvider {
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

        let pv_infos: Vec<PvInfo> = pvs.into_iter().map(pv_info).collect();
        let pvc_infos = pvc_infos(pvcs, &pv_infos, &pod_infos);

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
            PodScope::Workloads => {
                let lists = futures::future::try_join_all(
                    req.workloads.iter().map(|w| self.workload_pods(w)),
                )
                .await?;
                Ok(lists.into_iter().flatten().collect())
            }
        }
    }

    /// The pods of one workload, selected as its controller selects them (see
    /// [`PodScope::Workloads`]).
    async fn workload_pods(&self, w: &WorkloadPods) -> Result<Vec<SPod>, KubeError> {
        let ns = &w.namespace;
        let whole_namespace = format!("/api/v1/namespaces/{ns}/pods");
        let resource = match w.kind {
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::Deployment => "deployments",
            _ => return self.list_slim::<SPod>(&whole_namespace, None, None).await,
        };
        let path = format!("/apis/apps/v1/namespaces/{ns}/{resource}/{}", w.name);
        let Some(workload) = self.get_slim::<SSelectorOnly>(&path).await? else {
            return Ok(Vec::new());
        };
        match workload.spec.selector.query() {
            Some(sel) if !sel.is_empty() => {
                self.list_slim::<SPod>(&whole_namespace, Some(&sel), None)
                    .await
            }
            _ => self.list_slim::<SPod>(&whole_namespace, None, None).await,
        }
    }
}

fn pv_info(p: SPv) -> PvInfo {
    PvInfo {
        local_node: p.local_node(),
        capacity: p.spec.capacity.storage,
        claim: p.spec.claim_ref.map(|c| (c.namespace, c.name)),
        path: p.spec.host_path.or(p.spec.local).map(|h| h.path),
        name: p.metadata.name,
        storage_class: p.spec.storage_class_name,
        phase: p.status.phase,
        reclaim_policy: p.spec.persistent_volume_reclaim_policy,
    }
}

/// The claims, each with its local node (from its volume, else the scheduler's pick) and the
/// pods using it.
fn pvc_infos(pvcs: Vec<SPvc>, pv_infos: &[PvInfo], pod_infos: &[PodInfo]) -> Vec<PvcInfo> {
    let pv_node: HashMap<&str, Option<String>> = pv_infos
        .iter()
        .map(|p| (p.name.as_str(), p.local_node.clone()))
        .collect();
    let mut users: HashMap<(String, String), Vec<String>> = HashMap::new();
    for p in pod_infos {
        for c in &p.pvcs {
            users
                .entry((p.namespace.clone(), c.clone()))
                .or_default()
                .push(p.name.clone());
        }
    }
    pvcs.into_iter()
        .map(|c| {
            let local_node = c
                .spec
                .volume_name
                .as_deref()
                .and_then(|v| pv_node.get(v).cloned().flatten())
                .or_else(|| c.metadata.annotations.selected_node.clone());
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
                    .storage
                    .or(c.spec.resources.requests.storage),
                local_node,
                terminating: c.metadata.deletion_timestamp.is_some(),
            }
        })
        .collect()
}
