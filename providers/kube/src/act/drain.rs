//! Draining a node: cordon, then evict its pods (or force-delete them when its host is gone).

use std::time::{Duration, Instant};

use serde_json::json;

use super::pod_key;
use crate::model::*;
use crate::observe::SPod;
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

impl KubeProvider {
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
}
