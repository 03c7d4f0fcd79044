//! Rebinding a lost node's local volume: the guard that the node is really lost, and the
//! StatefulSet and operator policies ([`super::rebind_scale`] has the scale-down-up one).

use std::collections::HashMap;
use std::time::Duration;

use super::{pod_key, pod_path};
use crate::model::*;
use crate::observe::{SOwner, SOwnerOnly, SPod, SPv, SPvc, resolve_owner};
use crate::{KubeError, KubeProvider};

/// How the owner of a local volume gets it back on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebindPolicy {
    /// StatefulSet: delete the PVC, then the pod(s) using it; the StatefulSet controller
    /// recreates both and the new PVC binds on a schedulable node.
    StatefulSetRecreatePvcAndPod,
    /// Deployment managed by an operator: delete the PVC and the Deployment; the operator
    /// recreates both (as the victoria-metrics operator does).
    DeploymentDeleteForOperator,
    /// Plain Deployment: scale to 0, delete the PVC, recreate it empty from its spec, scale back.
    /// The original replica count is kept in the annotation `k3splan.io/replicas-before-rebind`
    /// so that an interrupted rebind resumes correctly.
    DeploymentScaleDownUp,
}

/// A rebind request.
#[derive(Debug, Clone)]
pub struct RebindRequest {
    /// Namespace of the PVC.
    pub namespace: String,
    /// PVC name.
    pub pvc: String,
    /// The lost node the volume is bound to. Refused if that node is Ready.
    pub lost_node: String,
    /// Policy.
    pub policy: RebindPolicy,
    /// UID of the PVC as observed at plan time: a PVC with another UID is a replacement already
    /// made, so nothing is done.
    pub expected_pvc_uid: Option<String>,
    /// Deadline of the waits of [`RebindPolicy::DeploymentScaleDownUp`].
    pub deadline: Duration,
    /// The caller's evidence that the host of `lost_node` is gone. Deleting a PVC is
    /// irreversible, and a Node that is not Ready may only have a restarting kubelet or a
    /// network blip behind it: without this evidence the rebind is refused.
    pub evidence: HostGoneEvidence,
    /// How long the Node must have been not Ready (its Ready condition's
    /// `lastTransitionTime`) before its volumes are rebound; see [`DEFAULT_MIN_NOT_READY`].
    pub min_not_ready: Duration,
}

/// Default of [`RebindRequest::min_not_ready`]: the 300 s after which Kubernetes' taint
/// eviction removes the pods of an unreachable node. A Node turns NotReady ~40–50 s after its
/// last heartbeat, so a kubelet restart or a short network blip looks like a lost node.
pub const DEFAULT_MIN_NOT_READY: Duration = Duration::from_secs(300);

/// What the caller (the planner) found out about a lost node's host; see
/// [`RebindRequest::evidence`] and [`HostGoneEvidence::host_gone`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostGoneEvidence {
    /// The caller uninstalled k3s on the host (the node left the configuration).
    pub uninstalled_by_plan: bool,
    /// The host answered over SSH and k3s is not installed there.
    pub k3s_absent: bool,
    /// The host did not answer over SSH.
    pub host_unreachable: bool,
    /// The node's etcd member was unhealthy, or none was at its address.
    pub member_dead: bool,
    /// The Ready condition's `lastTransitionTime` (RFC 3339) the caller saw while the Node was
    /// not Ready; used for the NotReady age when the Node object is gone.
    pub not_ready_since: Option<String>,
}

impl HostGoneEvidence {
    /// k3s uninstalled by the caller or absent on a host that answers, or the host
    /// unreachable *and* its etcd member dead.
    pub fn host_gone(&self) -> bool {
        self.uninstalled_by_plan || self.k3s_absent || (self.host_unreachable && self.member_dead)
    }

    fn describe(&self) -> String {
        let host = if self.host_unreachable {
            "host unreachable"
        } else if self.k3s_absent {
            "host answers without k3s"
        } else {
            "host reachable"
        };
        let member = if self.member_dead {
            "etcd member dead or absent"
        } else {
            "etcd member healthy"
        };
        let uninstall = if self.uninstalled_by_plan {
            "k3s uninstalled by this plan"
        } else {
            "k3s not uninstalled by this plan"
        };
        format!("{host}, {member}, {uninstall}")
    }
}

/// What [`KubeProvider::rebind_volume`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebindReport {
    /// Changed or already done.
    pub outcome: ActOutcome,
    /// The PVC was deleted (or its deletion requested).
    pub deleted_pvc: bool,
    /// Pods deleted.
    pub deleted_pods: Vec<String>,
    /// Deployment deleted (operator policy).
    pub deleted_deployment: Option<String>,
    /// `(from, to)` replicas restored (scale policy).
    pub rescaled: Option<(i32, i32)>,
}

impl KubeProvider {
    /// The last guard before a PVC is deleted: the lost node is not Ready, the caller's
    /// evidence says its host is gone, and it has been not Ready for `min_not_ready` (from
    /// its Ready condition, or from the caller's observation when the Node is gone).
    async fn check_node_lost(
        &self,
        req: &RebindRequest,
        refuse: &impl Fn(String) -> KubeError,
    ) -> Result<(), KubeError> {
        let lost = &req.lost_node;
        let cond = self.ready_condition(lost).await?;
        if matches!(cond, Some((Readiness::Ready, _))) {
            return Err(refuse(format!(
                "node {lost} is Ready; a PVC on a healthy node is never deleted"
            )));
        }
        let ev = &req.evidence;
        if !ev.host_gone() {
            return Err(refuse(format!(
                "there is no evidence that the host of node {lost} is gone ({}): a node that is not Ready may only have a restarting kubelet or a network blip behind it. Needed: k3s uninstalled by the plan, or the host unreachable and its etcd member dead",
                ev.describe()
            )));
        }
        let since = match &cond {
            Some((_, since)) => since.clone(),
            // The Node object is gone and the caller uninstalled k3s (or found none): no
            // kubelet can come back with this volume.
            None if ev.uninstalled_by_plan || ev.k3s_absent => return Ok(()),
            None => ev.not_ready_since.clone(),
        };
        let Some(since) = since else {
            if cond.is_none() {
                // Gone before the caller looked (an earlier run deleted it): nothing to age.
                return Ok(());
            }
            return Err(refuse(format!(
                "node {lost} has no Ready condition with a lastTransitionTime: how long it has been down is unknown"
            )));
        };
        let at = since.parse::<jiff::Timestamp>().map_err(|e| {
            refuse(format!(
                "node {lost}: Ready condition lastTransitionTime {since:?} is not a time ({e})"
            ))
        })?;
        let age = jiff::Timestamp::now().duration_since(at);
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        if age < req.min_not_ready {
            return Err(refuse(format!(
                "node {lost} has been not Ready for {}s only (since {since}), less than the {}s required before its volumes are given up: a kubelet restart or a network blip looks the same. Wait and re-run, or lower the threshold (--rebind-min-not-ready)",
                age.as_secs(),
                req.min_not_ready.as_secs()
            )));
        }
        Ok(())
    }

    /// Rebinds a local-path volume of a lost node (see [`RebindPolicy`]).
    ///
    /// Refused ([`KubeError::Refused`]) when `lost_node` is Ready, when the request's
    /// [`HostGoneEvidence`] does not say its host is gone, when it has been not Ready for less
    /// than [`RebindRequest::min_not_ready`], or when the PVC is bound to a Ready node: a PVC
    /// whose node may be healthy is never touched. A PVC that is already gone, has
    /// another UID than `expected_pvc_uid`, or is bound to a node other than `lost_node` while
    /// that node is not Ready, means the rebind already happened: `AlreadyDone` (after finishing
    /// any step an interrupted run left undone).
    pub async fn rebind_volume(&self, req: &RebindRequest) -> Result<RebindReport, KubeError> {
        let refuse = |reason: String| self.rebind_refused(req, reason);
        self.check_node_lost(req, &refuse).await?;
        let pvc_path = claim_path(req);
        let pvc: Option<SPvc> = self.get_slim(&pvc_path).await?;
        let mut report = RebindReport {
            outcome: ActOutcome::AlreadyDone,
            deleted_pvc: false,
            deleted_pods: vec![],
            deleted_deployment: None,
            rescaled: None,
        };
        let on_lost = match &pvc {
            Some(pvc) => self.claim_on_lost_node(req, pvc, &refuse).await?,
            None => false,
        };
        let users = self.stuck_users(req).await?;
        let rs_owner = self.replicaset_owners(req).await?;
        check_owners(req, &users, &rs_owner, &refuse)?;
        match req.policy {
            RebindPolicy::StatefulSetRecreatePvcAndPod => {
                if on_lost {
                    report.deleted_pvc = self.delete_raw(&pvc_path, None, None).await?;
                }
                if on_lost || pvc.is_none() || !users.is_empty() {
                    self.delete_pods(&users, &mut report).await?;
                }
            }
            RebindPolicy::DeploymentDeleteForOperator => {
                if !on_lost {
                    return Ok(report);
                }
                self.delete_for_operator(req, &users, &rs_owner, &mut report)
                    .await?;
            }
            RebindPolicy::DeploymentScaleDownUp => {
                return self
                    .rebind_scale(req, pvc, on_lost, users, &rs_owner, report)
                    .await;
            }
        }
        if report.deleted_pvc
            || !report.deleted_pods.is_empty()
            || report.deleted_deployment.is_some()
        {
            report.outcome = ActOutcome::Changed;
        }
        Ok(report)
    }

    fn rebind_refused(&self, req: &RebindRequest, reason: String) -> KubeError {
        KubeError::Refused {
            endpoint: self.endpoint.clone(),
            action: format!(
                "rebind PVC {}/{} away from node {}",
                req.namespace, req.pvc, req.lost_node
            ),
            reason,
        }
    }

    /// Whether `pvc` is still the claim on the lost node (same UID, bound there). Refused
    /// when the expected claim is bound to another node that is Ready.
    async fn claim_on_lost_node(
        &self,
        req: &RebindRequest,
        pvc: &SPvc,
        refuse: &impl Fn(String) -> KubeError,
    ) -> Result<bool, KubeError> {
        let same = req
            .expected_pvc_uid
            .as_ref()
            .is_none_or(|u| *u == pvc.metadata.uid);
        let node = match pvc.spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => self
                .get_slim::<SPv>(&format!("/api/v1/persistentvolumes/{v}"))
                .await?
                .and_then(|pv| pv.local_node()),
            None => None,
        }
        .or_else(|| pvc.metadata.annotations.selected_node.clone());
        if let Some(n) = &node
            && *n != req.lost_node
            && self.node_readiness(n).await? == Some(Readiness::Ready)
            && same
            && req.expected_pvc_uid.is_some()
        {
            return Err(refuse(format!(
                "PVC {}/{} (uid {}) is bound to node {n}, which is Ready",
                req.namespace, req.pvc, pvc.metadata.uid
            )));
        }
        Ok(same && node.as_deref() == Some(req.lost_node.as_str()))
    }

    /// Pods using the claim that are not running on a healthy node.
    async fn stuck_users(&self, req: &RebindRequest) -> Result<Vec<SPod>, KubeError> {
        let pods: Vec<SPod> = self
            .list_slim_fresh::<SPod>(
                &format!("/api/v1/namespaces/{}/pods", req.namespace),
                None,
                None,
            )
            .await?;
        let mut users = Vec::new();
        for p in pods.into_iter().filter(|p| p.claims().contains(&req.pvc)) {
            let stuck = match p.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                None => true,
                Some(n) if n == req.lost_node => true,
                Some(n) => self.node_readiness(n).await? != Some(Readiness::Ready),
            };
            if stuck {
                users.push(p);
            }
        }
        Ok(users)
    }

    /// The controller of each ReplicaSet in the namespace (none read for the StatefulSet
    /// policy, which does not need them).
    async fn replicaset_owners(&self, req: &RebindRequest) -> Result<OwnerMap, KubeError> {
        let rs: Vec<SOwnerOnly> = match req.policy {
            RebindPolicy::StatefulSetRecreatePvcAndPod => Vec::new(),
            _ => {
                self.list_slim_fresh(
                    &format!("/apis/apps/v1/namespaces/{}/replicasets", req.namespace),
                    None,
                    None,
                )
                .await?
            }
        };
        Ok(rs
            .iter()
            .filter_map(|r| {
                r.metadata
                    .owner_references
                    .iter()
                    .find(|o| o.controller == Some(true))
                    .map(|o| {
                        (
                            (r.metadata.namespace.clone(), r.metadata.name.clone()),
                            o.clone(),
                        )
                    })
            })
            .collect())
    }

    /// Force-deletes `users`, recording those deleted.
    pub(super) async fn delete_pods(
        &self,
        users: &[SPod],
        report: &mut RebindReport,
    ) -> Result<(), KubeError> {
        for p in users {
            if self
                .delete_raw(&pod_path(p), Some(0), Some("Background"))
                .await?
            {
                report.deleted_pods.push(pod_key(p));
            }
        }
        Ok(())
    }

    /// [`RebindPolicy::DeploymentDeleteForOperator`]: the claim, its pods and their
    /// Deployment go; the operator recreates them.
    async fn delete_for_operator(
        &self,
        req: &RebindRequest,
        users: &[SPod],
        rs_owner: &OwnerMap,
        report: &mut RebindReport,
    ) -> Result<(), KubeError> {
        let ns = &req.namespace;
        let deploy = users
            .iter()
            .find_map(|p| resolve_owner(&p.metadata, rs_owner))
            .map(|o| o.name);
        report.deleted_pvc = self.delete_raw(&claim_path(req), None, None).await?;
        self.delete_pods(users, report).await?;
        if let Some(d) = deploy {
            let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{d}");
            if self.delete_raw(&path, None, Some("Background")).await? {
                report.deleted_deployment = Some(format!("{ns}/{d}"));
            }
        }
        Ok(())
    }
}

/// The controller of each ReplicaSet, by `(namespace, name)`.
pub(super) type OwnerMap = HashMap<(String, String), SOwner>;

/// The API path of the request's claim.
pub(super) fn claim_path(req: &RebindRequest) -> String {
    format!(
        "/api/v1/namespaces/{}/persistentvolumeclaims/{}",
        req.namespace, req.pvc
    )
}

/// Every pod using the claim must belong to the workload kind the policy handles.
fn check_owners(
    req: &RebindRequest,
    users: &[SPod],
    rs_owner: &OwnerMap,
    refuse: &impl Fn(String) -> KubeError,
) -> Result<(), KubeError> {
    let expected_kind = match req.policy {
        RebindPolicy::StatefulSetRecreatePvcAndPod => WorkloadKind::StatefulSet,
        _ => WorkloadKind::Deployment,
    };
    for p in users {
        let owner = resolve_owner(&p.metadata, rs_owner);
        if owner.as_ref().map(|o| &o.kind) != Some(&expected_kind) {
            return Err(refuse(format!(
                "pod {} using the PVC is owned by {:?}, not by a {expected_kind:?} as the policy {:?} requires",
                pod_key(p),
                owner.map(|o| o.kind),
                req.policy
            )));
        }
    }
    Ok(())
}
