//! Carrying out one [`Operation`] against the live cluster, by system: [`etcd`] (members,
//! snapshots), [`host`] (files, k3s install and service, data directories over SSH),
//! [`kube`] (cordon, drain, Nodes, volumes, add-ons) and [`verify`] (the final check).
//!
//! Every operation is idempotent: it looks at the live system first and does nothing when
//! its effect is already there (a member already removed, a file already written, a node
//! already cordoned, a PVC already replaced), and says so ([`Outcome::AlreadyDone`]). That
//! is what makes a killed apply safe to run again: the next run re-observes, re-plans, and
//! repeats nothing that took effect.

mod check;
mod error;
mod etcd;
mod host;
mod kube;
mod recover;
mod server;
mod upgrade;
mod verify;

use std::time::Duration;

use k3splan_host::K3sRole;
use k3splan_kube::RebindPolicy;

pub use error::ExecError;

use crate::config::Timeouts;
use crate::live::Live;
use crate::observed::url_host;
use crate::plan::Operation;
use crate::state::SnapshotRecord;

/// Bounds of the waits an apply makes.
#[derive(Debug, Clone)]
pub struct Waits {
    pub learner_promoted: Duration,
    pub node_ready: Duration,
    pub pod_rescheduled: Duration,
    pub drain: Duration,
    pub verify: Duration,
    pub poll: Duration,
    /// How often an operation still running says so ([`super::ApplyEvent::Heartbeat`]).
    pub heartbeat: Duration,
}

impl Default for Waits {
    /// The documented defaults ([`Timeouts::DEFAULTS`]).
    fn default() -> Self {
        Waits::from_timeouts(&Timeouts::default())
    }
}

impl Waits {
    /// The waits of the topology's `timeouts { … }` block, each unset one at its default.
    pub fn from_timeouts(t: &Timeouts) -> Self {
        let or = |v: Option<Duration>, name: &str| v.unwrap_or_else(|| Timeouts::default_of(name));
        Waits {
            learner_promoted: or(t.learner_promoted, "learner_promoted"),
            node_ready: or(t.node_ready, "node_ready"),
            pod_rescheduled: or(t.pod_rescheduled, "pod_rescheduled"),
            drain: or(t.drain, "drain"),
            verify: or(t.verify, "verify"),
            poll: Duration::from_millis(500),
            heartbeat: super::HEARTBEAT,
        }
    }
}

/// Whether an operation changed the cluster, with one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The operation took effect.
    Done(String),
    /// Its effect was already there: nothing was changed.
    AlreadyDone(String),
}

impl Outcome {
    /// The line for the operator.
    pub fn note(&self) -> &str {
        match self {
            Outcome::Done(s) | Outcome::AlreadyDone(s) => s,
        }
    }

    fn of_kube(o: k3splan_kube::ActOutcome) -> Self {
        match o {
            k3splan_kube::ActOutcome::AlreadyDone => Outcome::AlreadyDone("already done".into()),
            k3splan_kube::ActOutcome::Changed => Outcome::Done("done".into()),
        }
    }
}

/// What an operation did, for the progress line and the state.
#[derive(Debug)]
pub struct OpResult {
    pub outcome: Outcome,
    pub snapshot: Option<SnapshotRecord>,
    /// sha256 of a file written, by `NODE:/path`.
    pub file_digest: Option<(String, String)>,
}

impl From<Outcome> for OpResult {
    fn from(outcome: Outcome) -> Self {
        OpResult {
            outcome,
            snapshot: None,
            file_digest: None,
        }
    }
}

/// A change made.
fn done(s: impl Into<String>) -> OpResult {
    Outcome::Done(s.into()).into()
}

/// Nothing to change.
fn already(s: impl Into<String>) -> OpResult {
    Outcome::AlreadyDone(s.into()).into()
}

/// Executes operations through the providers of a [`Live`] connection.
pub struct Executor<'a> {
    pub live: &'a Live,
    pub waits: Waits,
    /// Where maintenance-API snapshots are written.
    pub snapshot_dir: std::path::PathBuf,
}

impl Executor<'_> {
    /// Runs one operation.
    pub async fn run(&self, op: &Operation) -> Result<OpResult, ExecError> {
        use Operation as O;
        match op {
            O::Snapshot { node } => self.snapshot(node.as_deref()).await,
            O::RemoveEtcdMember { id, name, .. } => self.remove_member(*id, name).await,
            O::WaitLearnerPromoted { node } => self.wait_promoted(node).await,
            O::Cordon { node } => self.cordon(node, true).await,
            O::Uncordon { node } => self.cordon(node, false).await,
            O::Drain {
                node,
                skip_eviction,
            } => self.drain(node, *skip_eviction).await,
            O::DeleteNode { node } => self.delete_node(node).await,
            O::WaitNodeReady { node } => self.wait_node_ready(node).await,
            O::WaitServerHealthy { node } => self.wait_server_healthy(node).await,
            O::RebindVolume {
                namespace,
                pvc,
                pvc_uid,
                from_node,
                evidence,
                ..
            }
            | O::RecreateWorkload {
                namespace,
                pvc,
                pvc_uid,
                from_node,
                evidence,
                ..
            } => {
                let policy = if matches!(op, O::RebindVolume { .. }) {
                    RebindPolicy::StatefulSetRecreatePvcAndPod
                } else {
                    RebindPolicy::DeploymentDeleteForOperator
                };
                self.rebind(namespace, pvc, pvc_uid, from_node, evidence, policy)
                    .await
            }
            O::ScaleAddon {
                namespace,
                name,
                replicas,
                spread,
                via_helm,
            } => {
                self.scale_addon(namespace, name, *replicas, spread.as_deref(), *via_helm)
                    .await
            }
            O::MoveAsideDataDir { node, .. } => self.move_aside(node).await,
            O::WriteFile {
                node,
                path,
                after,
                sensitive,
                ..
            } => self.write_file(node, path, after, sensitive).await,
            O::JoinServer {
                node, via, version, ..
            } => {
                self.join(node, via, version.as_deref(), K3sRole::Server)
                    .await
            }
            O::JoinAgent { node, via, version } => {
                self.join(node, via, version.as_deref(), K3sRole::Agent)
                    .await
            }
            O::RestartService { node } => self.restart(node).await,
            O::UninstallK3s { node } => self.uninstall(node).await,
            O::Verify {
                expect_members,
                expect_nodes,
                unhealthy_left,
            } => {
                self.verify(*expect_members, *expect_nodes, unhealthy_left)
                    .await
            }
            O::UpgradeK3s {
                node,
                version,
                agent,
                ..
            } => self.upgrade_k3s(node, version, *agent).await,
            O::WaitUpgraded { node, version } => self.wait_upgraded(node, version).await,
            O::StopK3s { node } => self.stop_k3s(node).await,
            O::ClusterReset { node, restore_path } => {
                self.cluster_reset(node, restore_path.as_deref()).await
            }
            O::RotateCertificates { node } => self.rotate_certificates(node).await,
            O::RemoveNodeAnnotation { node, key } => self.remove_node_annotation(node, key).await,
        }
    }
}

/// Host part of an etcd peer URL (`https://10.0.0.1:2380` → `10.0.0.1`).
pub fn peer_host(url: &str) -> Option<&str> {
    url_host(url)
}
