//! Operations on the Kubernetes API: cordon, drain, Nodes, volumes, add-ons.

use std::time::Duration;

use k3splan_kube::{
    AddonChange, AddonMethod, ClusterObservation, DrainMode, DrainOptions, HostGoneEvidence,
    KubeError, KubeProvider, NodeInfo, ObserveRequest, PodScope, Readiness, RebindPolicy,
    RebindRequest,
};

use super::{ExecError, Executor, OpResult, Outcome, already, done};
use crate::wait::{Check, Wait};

/// Nodes and PVCs, no pods but the pending ones.
pub(super) async fn read_cluster(k: &KubeProvider) -> Result<ClusterObservation, KubeError> {
    k.observe(&ObserveRequest {
        addons: Vec::new(),
        nodes_of_interest: Vec::new(),
        pods: PodScope::NodesOfInterest,
        ..ObserveRequest::default()
    })
    .await
}

/// One node as the API reports it.
async fn node_info(k: &KubeProvider, name: &str) -> Result<Option<NodeInfo>, KubeError> {
    let o = read_cluster(k).await?;
    Ok(o.nodes.into_iter().find(|n| n.name == name))
}

impl Executor<'_> {
    async fn kube(&self) -> Result<&KubeProvider, ExecError> {
        Ok(self.live.kube().await?)
    }

    /// Cordons (`true`) or uncordons `node`.
    pub(super) async fn cordon(&self, node: &str, cordon: bool) -> Result<OpResult, ExecError> {
        let k = self.kube().await?;
        let r = if cordon {
            k.cordon(node).await?
        } else {
            k.uncordon(node).await?
        };
        Ok(Outcome::of_kube(r).into())
    }

    pub(super) async fn delete_node(&self, node: &str) -> Result<OpResult, ExecError> {
        let r = self.kube().await?.delete_node(node).await?;
        Ok(Outcome::of_kube(r).into())
    }

    pub(super) async fn drain(
        &self,
        node: &str,
        skip_eviction: bool,
    ) -> Result<OpResult, ExecError> {
        let k = self.kube().await?;
        if node_info(k, node).await?.is_none() {
            return Ok(already("node already gone"));
        }
        let opts = DrainOptions {
            mode: if skip_eviction {
                DrainMode::ForceDeleteHostGone
            } else {
                DrainMode::Evict
            },
            deadline: self.waits.drain,
            ..DrainOptions::default()
        };
        let report = k.drain(node, &opts).await?;
        if !report.complete() {
            return Err(ExecError::DrainIncomplete(Box::new(report)));
        }
        Ok(done(format!(
            "{} evicted, {} deleted, {} DaemonSet/mirror pods left",
            report.evicted.len(),
            report.force_deleted.len(),
            report.skipped_daemonset.len() + report.skipped_mirror.len()
        )))
    }

    pub(super) async fn scale_addon(
        &self,
        namespace: &str,
        name: &str,
        replicas: u32,
        spread: Option<&str>,
        via_helm: bool,
    ) -> Result<OpResult, ExecError> {
        let method = if via_helm {
            AddonMethod::HelmChartConfig {
                chart: name.to_string(),
                values_content: None,
            }
        } else {
            AddonMethod::Patch
        };
        let change = AddonChange {
            namespace: namespace.to_string(),
            name: name.to_string(),
            replicas: replicas as i32,
            spread_topology_key: spread.map(str::to_string),
            method,
        };
        let r = self
            .kube()
            .await?
            .set_addon_replicas_and_spread(&change)
            .await?;
        Ok(Outcome::of_kube(r).into())
    }

    pub(super) async fn wait_node_ready(&self, node: &str) -> Result<OpResult, ExecError> {
        let k = self.kube().await?;
        let start = tokio::time::Instant::now();
        Wait::new(self.waits.node_ready, self.waits.poll)
            .until(|| async {
                match node_info(k, node).await {
                    Ok(Some(n)) if n.ready == Readiness::Ready => Check::Ready(done(format!(
                        "Ready after {:.1}s",
                        start.elapsed().as_secs_f64()
                    ))),
                    Ok(Some(n)) => Check::Pending(format!("{:?}", n.ready)),
                    Ok(None) => Check::Pending("not registered".into()),
                    Err(e) => Check::Pending(e.to_string()),
                }
            })
            .await
            .map_err(|t| ExecError::NodeNotReady {
                node: node.to_string(),
                secs: self.waits.node_ready.as_secs(),
                last: t.last,
            })
    }

    pub(super) async fn rebind(
        &self,
        namespace: &str,
        pvc: &str,
        uid: &str,
        from_node: &str,
        evidence: &crate::plan::LossEvidence,
        policy: RebindPolicy,
    ) -> Result<OpResult, ExecError> {
        let k = self.kube().await?;
        let report = k
            .rebind_volume(&RebindRequest {
                namespace: namespace.to_string(),
                pvc: pvc.to_string(),
                lost_node: from_node.to_string(),
                policy,
                expected_pvc_uid: Some(uid.to_string()),
                deadline: self.waits.pod_rescheduled,
                // The plan's facts about the lost node: the provider refuses to delete the
                // PVC unless they say its host is gone (issue 13).
                evidence: HostGoneEvidence {
                    uninstalled_by_plan: evidence.uninstalled_by_plan,
                    k3s_absent: evidence.k3s_absent,
                    host_unreachable: evidence.host_unreachable,
                    member_dead: evidence.member_dead,
                    not_ready_since: evidence.not_ready_since.clone(),
                },
                min_not_ready: Duration::from_secs(evidence.min_not_ready_secs),
            })
            .await?;
        let already_done = report.outcome == k3splan_kube::ActOutcome::AlreadyDone;
        let what = if already_done {
            "already done"
        } else {
            "deleted"
        };
        // Wait until the claim exists again, bound on another node (the workload was
        // rescheduled).
        let start = tokio::time::Instant::now();
        let bound = Wait::new(self.waits.pod_rescheduled, self.waits.poll)
            .until(|| async {
                let o = match read_cluster(k).await {
                    Ok(o) => o,
                    Err(e) => return Check::Ready(Err(e)),
                };
                let Some(c) = o
                    .pvcs
                    .iter()
                    .find(|c| c.namespace == namespace && c.name == pvc)
                else {
                    return Check::Pending(None);
                };
                match &c.local_node {
                    Some(n) if c.uid != uid && n != from_node && c.phase == "Bound" => {
                        let note = format!(
                            "{what}; new volume bound on {n} after {:.1}s",
                            start.elapsed().as_secs_f64()
                        );
                        Check::Ready(Ok(if already_done {
                            already(note)
                        } else {
                            done(note)
                        }))
                    }
                    _ => Check::Pending(Some(format!("PVC {} (node {:?})", c.phase, c.local_node))),
                }
            })
            .await;
        match bound {
            Ok(r) => Ok(r?),
            Err(t) => Err(ExecError::NotRebound {
                namespace: namespace.to_string(),
                pvc: pvc.to_string(),
                secs: self.waits.pod_rescheduled.as_secs(),
                last: t.last.unwrap_or_else(|| "no PVC yet".to_string()),
            }),
        }
    }
}
