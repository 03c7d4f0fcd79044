//! Actions: cordon, uncordon, drain, delete node, rebind a local volume, add-on replicas/spread.
//! Every action is idempotent: doing it again once done is [`ActOutcome::AlreadyDone`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::model::*;
use crate::observe::{SOwnerOnly, SPod, SPv, SPvc, resolve_owner};
use crate::{KubeError, KubeProvider};

/// How [`KubeProvider::drain`] removes pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainMode {
    /// Through the Eviction API, honouring PodDisruptionBudgets (like `kubectl drain`).
    Evict,
    /// The node's host is gone: skip eviction and force-delete (grace period 0) its pods.
    /// Refused when the node is Ready — a live kubelet would keep running the containers.
    ForceDeleteHostGone,
}

/// Options of [`KubeProvider::drain`].
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Eviction or forced deletion.
    pub mode: DrainMode,
    /// Overall deadline: evictions refused by a PDB (429) are retried until then, and evicted
    /// pods are awaited until then. The drain never hangs past it (unlike seed 004's kubectl).
    pub deadline: Duration,
    /// Pause between eviction retries.
    pub retry_interval: Duration,
    /// `gracePeriodSeconds` passed to evictions (None: the pod's own).
    pub grace_period_seconds: Option<i64>,
    /// Also remove pods that no controller owns (`kubectl drain --force`): they are not
    /// recreated anywhere. When false they are reported in `blocked` and left in place.
    pub remove_unmanaged: bool,
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            mode: DrainMode::Evict,
            deadline: Duration::from_secs(300),
            retry_interval: Duration::from_secs(5),
            grace_period_seconds: None,
            remove_unmanaged: false,
        }
    }
}

/// A pod the drain could not remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedPod {
    /// `namespace/name`.
    pub pod: String,
    /// Why (the API's message, e.g. the disruption budget).
    pub reason: String,
    /// What the operator can do about it.
    pub advice: String,
}

impl std::fmt::Display for BlockedPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; what to do: {}",
            self.pod, self.reason, self.advice
        )
    }
}

/// Advice for a pod whose eviction a PodDisruptionBudget refuses.
fn pdb_advice(namespace: &str) -> String {
    format!(
        "its PodDisruptionBudget allows no disruption now (see `kubectl get pdb -n {namespace}`): wait until the workload's other replicas are ready, scale it up or relax the budget, then run apply again"
    )
}

/// What [`KubeProvider::drain`] did. Pod names are `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Node drained.
    pub node: String,
    /// Whether the cordon changed the node.
    pub cordon: ActOutcome,
    /// Pods evicted and gone.
    pub evicted: Vec<String>,
    /// Pods force-deleted ([`DrainMode::ForceDeleteHostGone`]).
    pub force_deleted: Vec<String>,
    /// DaemonSet pods left in place.
    pub skipped_daemonset: Vec<String>,
    /// Mirror (static) pods left in place.
    pub skipped_mirror: Vec<String>,
    /// Pods whose eviction was still refused at the deadline (PDB) or failed.
    pub blocked: Vec<BlockedPod>,
    /// Pods evicted but still present (Terminating) at the deadline: typical of a node whose
    /// kubelet is gone; use [`DrainMode::ForceDeleteHostGone`] when the host is known dead.
    pub still_terminating: Vec<String>,
}

impl DrainReport {
    /// Every evictable pod is gone.
    pub fn complete(&self) -> bool {
        self.blocked.is_empty() && self.still_terminating.is_empty()
    }

    /// Why the drain is not complete, for the operator: each blocked pod with the API's
    /// reason and what to do, then the pods still terminating.
    pub fn incomplete_message(&self) -> String {
        let mut s = format!("drain of {} did not finish", self.node);
        if !self.blocked.is_empty() {
            s.push_str(&format!(
                "; {} pod(s) could not be evicted:",
                self.blocked.len()
            ));
            for b in &self.blocked {
                s.push_str(&format!("\n  - {b}"));
            }
        }
        if !self.still_terminating.is_empty() {
            s.push_str(&format!(
                "\n  evicted but still terminating at the deadline: {}; what to do: their kubelet may be gone; if the host is down, remove or replace the node (k3splan then deletes its pods without eviction), else wait and run apply again",
                self.still_terminating.join(", ")
            ));
        }
        s
    }
}

/// How the owner of a local volume gets it back on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebindPolicy {
    /// StatefulSet: delete the PVC, then the pod(s) using it; the StatefulSet controller
    /// recreates both and the new PVC binds on a schedulable node.
    StatefulSetRecreatePvcAndPod,
    /// Deployment managed by an operator: delete the PVC and the Deployment; the operator
    /// recreates both (seed 004's victoria-metrics).
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

fn pod_key(p: &SPod) -> String {
    format!("{}/{}", p.metadata.namespace, p.metadata.name)
}

impl KubeProvider {
    /// Sends a raw JSON request; `Ok(None)` on 404.
    async fn raw(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, KubeError> {
        let call = format!("{method} {path}");
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(
                body.map(|b| serde_json::to_vec(b).expect("json"))
                    .unwrap_or_default(),
            )
            .expect("request");
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.map_err(&call, e)),
        }
    }

    async fn delete_raw(
        &self,
        path: &str,
        grace: Option<i64>,
        propagation: Option<&str>,
    ) -> Result<bool, KubeError> {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = grace {
            body["gracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = propagation {
            body["propagationPolicy"] = json!(p);
        }
        Ok(self
            .raw(http::Method::DELETE, path, "application/json", Some(&body))
            .await?
            .is_some())
    }

    async fn node_readiness(&self, node: &str) -> Result<Option<Readiness>, KubeError> {
        Ok(self.ready_condition(node).await?.map(|(r, _)| r))
    }

    /// The Ready condition of a node: `None` when the Node does not exist; else its status
    /// and `lastTransitionTime`.
    async fn ready_condition(
        &self,
        node: &str,
    ) -> Result<Option<(Readiness, Option<String>)>, KubeError> {
        let v = self
            .raw(
                http::Method::GET,
                &format!("/api/v1/nodes/{node}"),
                "application/json",
                None,
            )
            .await?;
        Ok(v.map(|v| {
            let c = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned()
                .unwrap_or(Value::Null);
            let r = match c["status"].as_str() {
                Some("True") => Readiness::Ready,
                Some("False") => Readiness::NotReady,
                _ => Readiness::Unknown,
            };
            (r, c["lastTransitionTime"].as_str().map(str::to_string))
        }))
    }

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

    async fn set_unschedulable(&self, node: &str, on: bool) -> Result<ActOutcome, KubeError> {
        let path = format!("/api/v1/nodes/{node}");
        let v = self
            .raw(http::Method::GET, &path, "application/json", None)
            .await?
            .ok_or_else(|| KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!("node {node}"),
            })?;
        if v["spec"]["unschedulable"].as_bool().unwrap_or(false) == on {
            return Ok(ActOutcome::AlreadyDone);
        }
        let patch = json!({"spec": {"unschedulable": if on { json!(true) } else { Value::Null }}});
        self.raw(
            http::Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?
        .ok_or_else(|| KubeError::NotFound {
            endpoint: self.endpoint.clone(),
            what: format!("node {node}"),
        })?;
        Ok(ActOutcome::Changed)
    }

    /// Marks a node unschedulable (`kubectl cordon`). Errors with `NotFound` if the node is absent.
    pub async fn cordon(&self, node: &str) -> Result<ActOutcome, KubeError> {
        self.set_unschedulable(node, true).await
    }

    /// Marks a node schedulable again (`kubectl uncordon`).
    pub async fn uncordon(&self, node: &str) -> Result<ActOutcome, KubeError> {
        self.set_unschedulable(node, false).await
    }

    /// Deletes a Node object. An absent node is `AlreadyDone`.
    pub async fn delete_node(&self, node: &str) -> Result<ActOutcome, KubeError> {
        Ok(
            if self
                .delete_raw(&format!("/api/v1/nodes/{node}"), None, None)
                .await?
            {
                ActOutcome::Changed
            } else {
                ActOutcome::AlreadyDone
            },
        )
    }

    async fn pods_on(&self, node: &str) -> Result<Vec<SPod>, KubeError> {
        self.list_slim_fresh::<SPod>("/api/v1/pods", None, Some(&format!("spec.nodeName={node}")))
            .await
    }

    /// Cordons then drains a node. DaemonSet and mirror pods are skipped; finished pods are
    /// deleted. See [`DrainMode`]. Returns a report; an incomplete drain is not an error (the
    /// report says which pods remain and why), but an unreachable API or a missing node is.
    pub async fn drain(&self, node: &str, opts: &DrainOptions) -> Result<DrainReport, KubeError> {
        let start = Instant::now();
        if opts.mode == DrainMode::ForceDeleteHostGone {
            match self.node_readiness(node).await? {
                Some(Readiness::Ready) => {
                    return Err(KubeError::Refused {
                        endpoint: self.endpoint.clone(),
                        action: format!("force-delete the pods of node {node}"),
                        reason: "the node is Ready: its kubelet is alive; drain it with evictions"
                            .into(),
                    });
                }
                None => {
                    return Err(KubeError::NotFound {
                        endpoint: self.endpoint.clone(),
                        what: format!("node {node}"),
                    });
                }
                _ => {}
            }
        }
        let cordon = self.cordon(node).await?;
        let mut report = DrainReport {
            node: node.to_string(),
            cordon,
            evicted: vec![],
            force_deleted: vec![],
            skipped_daemonset: vec![],
            skipped_mirror: vec![],
            blocked: vec![],
            still_terminating: vec![],
        };
        let mut todo: Vec<SPod> = Vec::new();
        for p in self.pods_on(node).await? {
            if p.is_mirror() {
                report.skipped_mirror.push(pod_key(&p));
            } else if p
                .metadata
                .owner_references
                .iter()
                .any(|o| o.kind == "DaemonSet")
            {
                report.skipped_daemonset.push(pod_key(&p));
            } else if p.metadata.owner_references.is_empty()
                && !opts.remove_unmanaged
                && !matches!(p.status.phase.as_str(), "Succeeded" | "Failed")
            {
                report.blocked.push(BlockedPod {
                    pod: pod_key(&p),
                    reason:
                        "not managed by a controller: it would not be recreated (remove_unmanaged)"
                            .into(),
                    advice: "delete the pod yourself if it may go, or move it to a controller, then run apply again".into(),
                });
            } else {
                todo.push(p);
            }
        }
        if opts.mode == DrainMode::ForceDeleteHostGone {
            for p in &todo {
                let path = format!(
                    "/api/v1/namespaces/{}/pods/{}",
                    p.metadata.namespace, p.metadata.name
                );
                self.delete_raw(&path, Some(0), Some("Background")).await?;
                report.force_deleted.push(pod_key(p));
            }
            return Ok(report);
        }
        // Evict, retrying 429 until the deadline.
        let mut pending: Vec<(SPod, String)> =
            todo.into_iter().map(|p| (p, String::new())).collect();
        let mut evicted: Vec<SPod> = Vec::new();
        loop {
            let mut still = Vec::new();
            for (p, _) in pending {
                if p.metadata.deletion_timestamp.is_some()
                    || matches!(p.status.phase.as_str(), "Succeeded" | "Failed")
                {
                    if p.metadata.deletion_timestamp.is_none() {
                        let path = format!(
                            "/api/v1/namespaces/{}/pods/{}",
                            p.metadata.namespace, p.metadata.name
                        );
                        self.delete_raw(&path, opts.grace_period_seconds, None)
                            .await?;
                    }
                    evicted.push(p);
                    continue;
                }
                let path = format!(
                    "/api/v1/namespaces/{}/pods/{}/eviction",
                    p.metadata.namespace, p.metadata.name
                );
                let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                                      "metadata": {"name": p.metadata.name, "namespace": p.metadata.namespace}});
                if let Some(g) = opts.grace_period_seconds {
                    body["deleteOptions"] = json!({"gracePeriodSeconds": g});
                }
                match self
                    .raw(http::Method::POST, &path, "application/json", Some(&body))
                    .await
                {
                    Ok(_) => evicted.push(p),
                    Err(KubeError::Api {
                        code: 429,
                        reason,
                        message,
                        ..
                    }) => still.push((p, format!("429 {reason}: {message}"))),
                    Err(KubeError::Api {
                        code,
                        reason,
                        message,
                        ..
                    }) => report.blocked.push(BlockedPod {
                        pod: pod_key(&p),
                        reason: format!("eviction failed: {code} {reason}: {message}"),
                        advice: "fix what the API server names, then run apply again".into(),
                    }),
                    Err(e) => return Err(e),
                }
            }
            pending = still;
            if pending.is_empty() || start.elapsed() + opts.retry_interval > opts.deadline {
                break;
            }
            tokio::time::sleep(opts.retry_interval).await;
        }
        for (p, msg) in pending {
            report.blocked.push(BlockedPod {
                pod: pod_key(&p),
                reason: format!(
                    "eviction refused until the deadline ({:?}): {msg}",
                    opts.deadline
                ),
                advice: pdb_advice(&p.metadata.namespace),
            });
        }
        // Wait for evicted pods to disappear (same name and uid).
        loop {
            let mut remaining = Vec::new();
            for p in evicted {
                let path = format!(
                    "/api/v1/namespaces/{}/pods/{}",
                    p.metadata.namespace, p.metadata.name
                );
                match self.get_slim::<SPod>(&path).await? {
                    Some(cur) if cur.metadata.uid == p.metadata.uid => remaining.push(p),
                    _ => report.evicted.push(pod_key(&p)),
                }
            }
            evicted = remaining;
            if evicted.is_empty() || start.elapsed() + opts.retry_interval > opts.deadline {
                break;
            }
            tokio::time::sleep(opts.retry_interval.min(Duration::from_millis(500))).await;
        }
        report.still_terminating = evicted.iter().map(pod_key).collect();
        report.evicted.sort();
        Ok(report)
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
        let ns = &req.namespace;
        let refuse = |reason: String| KubeError::Refused {
            endpoint: self.endpoint.clone(),
            action: format!(
                "rebind PVC {ns}/{} away from node {}",
                req.pvc, req.lost_node
            ),
            reason,
        };
        self.check_node_lost(req, &refuse).await?;
        let pvc_path = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{}", req.pvc);
        let pvc: Option<SPvc> = self.get_slim(&pvc_path).await?;
        let mut report = RebindReport {
            outcome: ActOutcome::AlreadyDone,
            deleted_pvc: false,
            deleted_pods: vec![],
            deleted_deployment: None,
            rescaled: None,
        };
        // Is this PVC still the one on the lost node?
        let mut on_lost = false;
        if let Some(pvc) = &pvc {
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
            .or_else(|| {
                pvc.metadata
                    .annotations
                    .get("volume.kubernetes.io/selected-node")
                    .cloned()
            });
            if let Some(n) = &node
                && *n != req.lost_node
                && self.node_readiness(n).await? == Some(Readiness::Ready)
                && same
                && req.expected_pvc_uid.is_some()
            {
                return Err(refuse(format!(
                    "PVC {ns}/{} (uid {}) is bound to node {n}, which is Ready",
                    req.pvc, pvc.metadata.uid
                )));
            }
            on_lost = same && node.as_deref() == Some(req.lost_node.as_str());
        }
        // Pods using the claim that are not running on a healthy node.
        let pods: Vec<SPod> = self
            .list_slim_fresh::<SPod>(&format!("/api/v1/namespaces/{ns}/pods"), None, None)
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
        let rs: Vec<SOwnerOnly> = match req.policy {
            RebindPolicy::StatefulSetRecreatePvcAndPod => Vec::new(),
            _ => {
                self.list_slim_fresh(
                    &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
                    None,
                    None,
                )
                .await?
            }
        };
        let rs_owner: HashMap<(String, String), crate::observe::SOwner> = rs
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
            .collect();
        let expected_kind = match req.policy {
            RebindPolicy::StatefulSetRecreatePvcAndPod => WorkloadKind::StatefulSet,
            _ => WorkloadKind::Deployment,
        };
        for p in &users {
            let owner = resolve_owner(&p.metadata, &rs_owner);
            if owner.as_ref().map(|o| &o.kind) != Some(&expected_kind) {
                return Err(refuse(format!(
                    "pod {} using the PVC is owned by {:?}, not by a {expected_kind:?} as the policy {:?} requires",
                    pod_key(p),
                    owner.map(|o| o.kind),
                    req.policy
                )));
            }
        }
        let pvc_path_del = pvc_path.clone();
        match req.policy {
            RebindPolicy::StatefulSetRecreatePvcAndPod => {
                if on_lost {
                    report.deleted_pvc = self.delete_raw(&pvc_path_del, None, None).await?;
                }
                if on_lost || pvc.is_none() || !users.is_empty() {
                    for p in &users {
                        let path = format!("/api/v1/namespaces/{ns}/pods/{}", p.metadata.name);
                        if self.delete_raw(&path, Some(0), Some("Background")).await? {
                            report.deleted_pods.push(pod_key(p));
                        }
                    }
                }
            }
            RebindPolicy::DeploymentDeleteForOperator => {
                if !on_lost {
                    return Ok(report);
                }
                let deploy = users
                    .iter()
                    .find_map(|p| resolve_owner(&p.metadata, &rs_owner))
                    .map(|o| o.name);
                report.deleted_pvc = self.delete_raw(&pvc_path_del, None, None).await?;
                for p in &users {
                    let path = format!("/api/v1/namespaces/{ns}/pods/{}", p.metadata.name);
                    if self.delete_raw(&path, Some(0), Some("Background")).await? {
                        report.deleted_pods.push(pod_key(p));
                    }
                }
                if let Some(d) = deploy {
                    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{d}");
                    if self.delete_raw(&path, None, Some("Background")).await? {
                        report.deleted_deployment = Some(format!("{ns}/{d}"));
                    }
                }
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

    async fn rebind_scale(
        &self,
        req: &RebindRequest,
        pvc: Option<SPvc>,
        on_lost: bool,
        users: Vec<SPod>,
        rs_owner: &HashMap<(String, String), crate::observe::SOwner>,
        mut report: RebindReport,
    ) -> Result<RebindReport, KubeError> {
        const ANN: &str = "k3splan.io/replicas-before-rebind";
        let ns = &req.namespace;
        let start = Instant::now();
        // Find the Deployment: from the pods, else one already annotated by an interrupted run.
        let deploys: Vec<Value> = match self
            .raw(
                http::Method::GET,
                &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                "application/json",
                None,
            )
            .await?
        {
            Some(v) => v["items"].as_array().cloned().unwrap_or_default(),
            None => vec![],
        };
        let by_pod = users
            .iter()
            .find_map(|p| resolve_owner(&p.metadata, rs_owner))
            .map(|o| o.name);
        let mounts = |d: &Value| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .is_some_and(|v| {
                    v.iter()
                        .any(|v| v["persistentVolumeClaim"]["claimName"] == req.pvc.as_str())
                })
        };
        let Some(d) = deploys
            .iter()
            .find(|d| {
                Some(
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ) == by_pod
                    || (mounts(d) && !d["metadata"]["annotations"][ANN].is_null())
            })
            .or_else(|| deploys.iter().find(|d| mounts(d) && on_lost))
        else {
            return Ok(report);
        };
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
        let resumed = d["metadata"]["annotations"][ANN]
            .as_str()
            .and_then(|s| s.parse::<i32>().ok());
        if !on_lost && resumed.is_none() {
            return Ok(report);
        }
        let original = resumed.unwrap_or(d["spec"]["replicas"].as_i64().unwrap_or(1) as i32);
        let patch = json!({"metadata": {"annotations": {ANN: original.to_string()}}, "spec": {"replicas": 0}});
        self.raw(
            http::Method::PATCH,
            &dpath,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
        for p in &users {
            let path = format!("/api/v1/namespaces/{ns}/pods/{}", p.metadata.name);
            if self.delete_raw(&path, Some(0), Some("Background")).await? {
                report.deleted_pods.push(pod_key(p));
            }
        }
        let pvc_path = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{}", req.pvc);
        if on_lost {
            // Keep the spec to recreate the claim empty.
            let full = self
                .raw(http::Method::GET, &pvc_path, "application/json", None)
                .await?;
            report.deleted_pvc = self.delete_raw(&pvc_path, None, None).await?;
            loop {
                match self.get_slim::<SPvc>(&pvc_path).await? {
                    Some(cur)
                        if pvc
                            .as_ref()
                            .is_some_and(|p| p.metadata.uid == cur.metadata.uid) => {}
                    _ => break,
                }
                if start.elapsed() > req.deadline {
                    return Err(KubeError::Timeout {
                        endpoint: self.endpoint.clone(),
                        what: format!("PVC {ns}/{} to be deleted", req.pvc),
                        after: req.deadline,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Some(full) = full {
                let mut spec = full["spec"].clone();
                if let Some(s) = spec.as_object_mut() {
                    s.remove("volumeName");
                }
                let mut meta = json!({"name": req.pvc, "namespace": ns});
                if let Some(l) = full["metadata"].get("labels") {
                    meta["labels"] = l.clone();
                }
                let body = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec});
                let create = self
                    .raw(
                        http::Method::POST,
                        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
                        "application/json",
                        Some(&body),
                    )
                    .await;
                match create {
                    Ok(_) | Err(KubeError::Api { code: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        } else if self.get_slim::<SPvc>(&pvc_path).await?.is_none() {
            return Err(KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!(
                    "PVC {ns}/{} to scale {name} back up with (an interrupted rebind lost its spec)",
                    req.pvc
                ),
            });
        }
        let patch =
            json!({"metadata": {"annotations": {ANN: null}}, "spec": {"replicas": original}});
        self.raw(
            http::Method::PATCH,
            &dpath,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
        report.rescaled = Some((0, original));
        report.outcome = ActOutcome::Changed;
        Ok(report)
    }

    /// Sets an add-on's replicas and topology spread (see [`AddonMethod`]). `AlreadyDone` when
    /// the Deployment (or HelmChartConfig) already says so.
    pub async fn set_addon_replicas_and_spread(
        &self,
        change: &AddonChange,
    ) -> Result<ActOutcome, KubeError> {
        let ns = &change.namespace;
        let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/{}", change.name);
        match &change.method {
            AddonMethod::Patch => {
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
            AddonMethod::HelmChartConfig {
                chart,
                values_content,
            } => {
                let values = values_content.clone().unwrap_or_else(|| {
                    let mut s = format!("replicaCount: {}\n", change.replicas);
                    if let Some(k) = &change.spread_topology_key {
                        s.push_str(&format!("topologySpreadConstraints:\n- maxSkew: 1\n  topologyKey: {k}\n  whenUnsatisfiable: ScheduleAnyway\n"));
                    }
                    s
                });
                let path =
                    format!("/apis/helm.cattle.io/v1/namespaces/{ns}/helmchartconfigs/{chart}");
                match self
                    .raw(http::Method::GET, &path, "application/json", None)
                    .await?
                {
                    Some(cur) if cur["spec"]["valuesContent"].as_str() == Some(values.as_str()) => {
                        Ok(ActOutcome::AlreadyDone)
                    }
                    Some(_) => {
                        let patch = json!({"spec": {"valuesContent": values}});
                        self.raw(
                            http::Method::PATCH,
                            &path,
                            "application/merge-patch+json",
                            Some(&patch),
                        )
                        .await?;
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
    }
}
