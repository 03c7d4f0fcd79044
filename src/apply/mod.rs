//! The apply engine: runs a plan's steps in order, journaling each in the state before and
//! after it runs, so that a killed apply can be re-run safely.
//!
//! Order of an apply (as k0sctl's phases): take the state lock → read the state → observe →
//! plan → show and approve → for each step: journal "started", run its operations, journal
//! "done" → record what is managed → release the lock.
//!
//! Recovery: the next `apply` after a crash re-observes and re-plans. Every operation is
//! idempotent and looks at the live system first, so a step that took effect before the
//! crash is not planned again, or is a no-op when it is (see [`exec`]).

pub mod exec;

use std::io::Write;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Topology;
use crate::observed::{Fact, Observed, url_host};
use crate::plan::{Plan, Step};
use crate::state::{
    Journal, JournalStep, ManagedFile, ManagedMember, ManagedNode, ManagedPvc, State, StateBackend,
    StateError, StateLock, StepStatus, now_rfc3339,
};

pub use exec::{Executor, Waits};

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Identifies a plan by its steps (their addresses and operations).
pub fn plan_id(plan: &Plan) -> String {
    let v: Vec<(&crate::plan::Address, &Vec<crate::plan::Operation>)> = plan
        .steps
        .iter()
        .map(|s| (&s.address, &s.operations))
        .collect();
    sha256_hex(&serde_json::to_vec(&v).unwrap_or_default())[..16].to_string()
}

/// The digest of the topology as loaded (what `config_digest` in the state records).
pub fn config_digest(t: &Topology) -> String {
    sha256_hex(&serde_json::to_vec(t).unwrap_or_default())
}

/// A plan saved by `plan --out FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    pub k3splan_version: String,
    pub created_at: String,
    /// sha256 of the topology the plan was made from.
    pub config_digest: String,
    /// sha256 of the observed state (secrets masked) the plan was made from.
    pub observed_digest: String,
    /// Serial and lineage of the state when the plan was made (`None`: no state yet).
    pub state_serial: Option<u64>,
    pub state_lineage: Option<String>,
    pub allow_unreachable: Vec<String>,
    pub plan: Plan,
}

pub const SAVED_PLAN_VERSION: u32 = 1;

/// Errors of an apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("step {index} ({address}) failed: {message}")]
    Step {
        index: usize,
        address: String,
        message: String,
    },
}

/// Where progress lines go.
pub struct Progress {
    pub out: Box<dyn Write + Send>,
    pub color: bool,
}

impl Progress {
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }
}

/// Runs `plan` against the cluster, journaling into `state` through `backend`.
pub async fn run_plan(
    exec: &Executor<'_>,
    plan: &Plan,
    backend: &StateBackend,
    lock: &StateLock,
    state: &mut State,
    progress: &mut Progress,
) -> Result<(), ApplyError> {
    let id = plan_id(plan);
    state.journal = Some(Journal {
        plan_id: id.clone(),
        started_at: now_rfc3339(),
        finished_at: None,
        steps: plan
            .steps
            .iter()
            .map(|s| JournalStep {
                address: s.address.to_string(),
                description: describe(s),
                status: StepStatus::Pending,
                started_at: None,
                finished_at: None,
                error: None,
            })
            .collect(),
    });
    backend.write(lock, state)?;
    let total = plan.steps.len();
    let (bold, dim, green, red, reset) = if progress.color {
        ("\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[31m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    for (i, step) in plan.steps.iter().enumerate() {
        let t0 = Instant::now();
        progress.line(&format!(
            "{bold}[{}/{total}] {} {}{reset}",
            i + 1,
            step.action.symbol(),
            step.address,
        ));
        set_status(state, i, StepStatus::Started, None);
        backend.write(lock, state)?;
        for op in &step.operations {
            let t_op = Instant::now();
            match exec.run(op).await {
                Ok(r) => {
                    if let Some(snap) = r.snapshot {
                        state.last_snapshot = Some(snap);
                    }
                    if let Some((k, d)) = r.file_digest {
                        state.managed.files.insert(k, ManagedFile { sha256: d });
                    }
                    progress.line(&format!(
                        "      {dim}{} … {}{} ({:.1}s){reset}",
                        op.describe(),
                        green,
                        r.note.unwrap_or_else(|| "done".into()),
                        t_op.elapsed().as_secs_f64()
                    ));
                }
                Err(message) => {
                    progress.line(&format!(
                        "      {red}{} … failed: {message}{reset}",
                        op.describe()
                    ));
                    set_status(state, i, StepStatus::Failed, Some(message.clone()));
                    backend.write(lock, state)?;
                    let left: Vec<String> = plan.steps[i..]
                        .iter()
                        .map(|s| format!("  {}. {}", s.id, s.address))
                        .collect();
                    progress.line(&format!(
                        "\n{red}Apply stopped at step {} of {total}.{reset} Steps 1–{} are done and recorded in the state. Not done:\n{}\nFix the cause and run `k3splan apply` again: it re-observes the cluster and plans only what is left.",
                        i + 1,
                        i,
                        left.join("\n")
                    ));
                    return Err(ApplyError::Step {
                        index: i + 1,
                        address: step.address.to_string(),
                        message,
                    });
                }
            }
        }
        set_status(state, i, StepStatus::Done, None);
        backend.write(lock, state)?;
        progress.line(&format!(
            "      {green}done{reset} {dim}({:.1}s){reset}",
            t0.elapsed().as_secs_f64()
        ));
    }
    if let Some(j) = state.journal.as_mut() {
        j.finished_at = Some(now_rfc3339());
    }
    Ok(())
}

fn describe(s: &Step) -> String {
    s.operations
        .first()
        .map(|o| o.describe())
        .unwrap_or_else(|| s.why.clone())
}

fn set_status(state: &mut State, i: usize, status: StepStatus, error: Option<String>) {
    if let Some(j) = state.journal.as_mut()
        && let Some(s) = j.steps.get_mut(i)
    {
        s.status = status;
        match status {
            StepStatus::Started => s.started_at = Some(now_rfc3339()),
            StepStatus::Done | StepStatus::Failed => s.finished_at = Some(now_rfc3339()),
            StepStatus::Pending | StepStatus::Superseded => {}
        }
        s.error = error;
    }
}

/// Records what k3splan manages after a converged apply: the declared nodes, their etcd
/// members (matched by peer address), and the PVCs of the declared storage bindings.
pub fn record_managed(state: &mut State, t: &Topology, o: &Observed) {
    state.managed.nodes = t
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                ManagedNode {
                    address: n.address.to_string(),
                    roles: n.roles.0.iter().map(|r| r.to_string()).collect(),
                    ssh_port: Some(n.ssh.port),
                },
            )
        })
        .collect();
    state.managed.etcd_members.clear();
    if let Fact::Known(e) = &o.etcd {
        for n in &t.nodes {
            let addr = n.address.to_string();
            if let Some(m) = e.members.iter().find(|m| {
                m.peer_urls
                    .iter()
                    .any(|u| url_host(u) == Some(addr.as_str()))
            }) {
                state.managed.etcd_members.insert(
                    n.name.clone(),
                    ManagedMember {
                        id: format!("{:016x}", m.id),
                        peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
                    },
                );
            }
        }
    }
    state.managed.pvcs.clear();
    if let Fact::Known(k) = &o.kube {
        for s in &t.storage {
            for pod in k.pods.iter().filter(|p| {
                p.namespace == s.namespace && p.owner_name.as_deref() == Some(s.name.as_str())
            }) {
                for claim in &pod.pvcs {
                    if let Some(c) = k
                        .pvcs
                        .iter()
                        .find(|c| c.namespace == pod.namespace && &c.name == claim)
                    {
                        state.managed.pvcs.insert(
                            format!("{}/{}", c.namespace, c.name),
                            ManagedPvc {
                                uid: c.uid.clone(),
                                node: c.bound_node.clone().unwrap_or_default(),
                            },
                        );
                    }
                }
            }
        }
    }
    // Files of nodes that are gone are not managed any more.
    let names: std::collections::BTreeSet<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    state
        .managed
        .files
        .retain(|k, _| k.split(':').next().is_some_and(|n| names.contains(n)));
}
