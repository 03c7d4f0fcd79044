//! Draining a node: cordon, then evict its pods (or force-delete them when its host is gone).

use std::time::Duration;

use serde_json::json;

use super::{pod_key, pod_path};
use crate::model::*;
use crate::observe::SPod;
use crate::wait::{self, Deadline};
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
    /// pods are awaited until then. The drain never hangs past it (unlike a `kubectl drain`
    /// that a disruption budget blocks).
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

/// What became of one pod's eviction.
enum Eviction {
    /// Evicted, or already terminating or finished (then deleted): to be awaited.
    Evicted,
    /// A disruption budget refuses it for now (429): retried until the deadline.
    Refused(String),
    /// The API refused it for another reason: not retried.
    Failed(BlockedPod),
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
        let deadline = Deadline::after(opts.deadline);
        if opts.mode == DrainMode::ForceDeleteHostGone {
            self.check_kubelet_gone(node).await?;
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
        let todo = self.pods_to_remove(node, opts, &mut report).await?;
        if opts.mode == DrainMode::ForceDeleteHostGone {
            for p in &todo {
                self.delete_raw(&pod_path(p), Some(0), Some("Background"))
                    .await?;
                report.force_deleted.push(pod_key(p));
            }
            return Ok(report);
        }
        let evicted = self.evict_all(todo, opts, &deadline, &mut report).await?;
        self.await_gone(evicted, opts, &deadline, &mut report)
            .await?;
        report.evicted.sort();
        Ok(report)
    }

    /// Force-deleting pods is refused while the node is Ready: its kubelet would keep running
    /// the containers.
    async fn check_kubelet_gone(&self, node: &str) -> Result<(), KubeError> {
        match self.node_readiness(node).await? {
            Some(Readiness::Ready) => Err(KubeError::Refused {
                endpoint: self.endpoint.clone(),
                action: format!("force-delete the pods of node {node}"),
                reason: "the node is Ready: its kubelet is alive; drain it with evictions".into(),
            }),
            None => Err(KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!("node {node}"),
            }),
            _ => Ok(()),
        }
    }

    /// The node's pods the drain removes; DaemonSet and mirror pods are recorded as skipped,
    /// unmanaged ones (unless `remove_unmanaged`) as blocked.
    async fn pods_to_remove(
        &self,
        node: &str,
        opts: &DrainOptions,
        report: &mut DrainReport,
    ) -> Result<Vec<SPod>, KubeError> {
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
        Ok(todo)
    }

    /// Evicts `todo`, retrying the evictions a disruption budget refuses (429) until the
    /// deadline; those still refused then, and failed ones, go to `report.blocked`. Returns
    /// the pods evicted.
    async fn evict_all(
        &self,
        todo: Vec<SPod>,
        opts: &DrainOptions,
        deadline: &Deadline,
        report: &mut DrainReport,
    ) -> Result<Vec<SPod>, KubeError> {
        let pending: Vec<(SPod, String)> = todo.into_iter().map(|p| (p, String::new())).collect();
        let mut evicted: Vec<SPod> = Vec::new();
        let round = async |pending: Vec<(SPod, String)>| {
            let mut still = Vec::new();
            for (p, _) in pending {
                match self.evict(&p, opts).await? {
                    Eviction::Evicted => evicted.push(p),
                    Eviction::Refused(msg) => still.push((p, msg)),
                    Eviction::Failed(blocked) => report.blocked.push(blocked),
                }
            }
            Ok::<_, KubeError>(still)
        };
        let interval = opts.retry_interval;
        let refused = wait::in_rounds(deadline, interval, interval, pending, round).await?;
        for (p, msg) in refused {
            report.blocked.push(BlockedPod {
                pod: pod_key(&p),
                reason: format!(
                    "eviction refused until the deadline ({:?}): {msg}",
                    opts.deadline
                ),
                advice: pdb_advice(&p.metadata.namespace),
            });
        }
        Ok(evicted)
    }

    /// Evicts one pod; a pod already terminating is left to finish, a finished one deleted.
    async fn evict(&self, p: &SPod, opts: &DrainOptions) -> Result<Eviction, KubeError> {
        if p.metadata.deletion_timestamp.is_some()
            || matches!(p.status.phase.as_str(), "Succeeded" | "Failed")
        {
            if p.metadata.deletion_timestamp.is_none() {
                self.delete_raw(&pod_path(p), opts.grace_period_seconds, None)
                    .await?;
            }
            return Ok(Eviction::Evicted);
        }
        let path = format!("{}/eviction", pod_path(p));
        let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                              "metadata": {"name": p.metadata.name, "namespace": p.metadata.namespace}});
        if let Some(g) = opts.grace_period_seconds {
            body["deleteOptions"] = json!({"gracePeriodSeconds": g});
        }
        match self
            .raw(http::Method::POST, &path, "application/json", Some(&body))
            .await
        {
            Ok(_) => Ok(Eviction::Evicted),
            Err(KubeError::Api {
                code: 429,
                reason,
                message,
                ..
            }) => Ok(Eviction::Refused(format!("429 {reason}: {message}"))),
            Err(KubeError::Api {
                code,
                reason,
                message,
                ..
            }) => Ok(Eviction::Failed(BlockedPod {
                pod: pod_key(p),
                reason: format!("eviction failed: {code} {reason}: {message}"),
                advice: "fix what the API server names, then run apply again".into(),
            })),
            Err(e) => Err(e),
        }
    }

    /// Waits until the evicted pods are gone (no pod of the same name and uid), until the
    /// deadline; those still there go to `report.still_terminating`.
    async fn await_gone(
        &self,
        evicted: Vec<SPod>,
        opts: &DrainOptions,
        deadline: &Deadline,
        report: &mut DrainReport,
    ) -> Result<(), KubeError> {
        let gone = &mut report.evicted;
        let round = async |evicted: Vec<SPod>| {
            let mut remaining = Vec::new();
            for p in evicted {
                match self.get_slim::<SPod>(&pod_path(&p)).await? {
                    Some(cur) if cur.metadata.uid == p.metadata.uid => remaining.push(p),
                    _ => gone.push(pod_key(&p)),
                }
            }
            Ok::<_, KubeError>(remaining)
        };
        let pause = opts.retry_interval.min(Duration::from_millis(500));
        let left = wait::in_rounds(deadline, opts.retry_interval, pause, evicted, round).await?;
        report.still_terminating = left.iter().map(pod_key).collect();
        Ok(())
    }
}
