//! The apply engine: runs a plan's steps in order, journaling each in the state before and
//! after it runs, so that a killed apply can be re-run safely.
//!
//! Order of an apply (as k0sctl's phases): take the state lock → read the state → observe →
//! plan → show and approve → for each step: journal "started", run its operations, journal
//! "done" → record what is managed → release the lock.
//!
//! Recovery: the next `apply` after a crash re-observes and re-plans. Every operation is
//! idempotent and looks at the live system first, so a step that took effect before the
//! crash is not planned again, or is a no-op when it is (see [`exec`]). What cannot be
//! observed is journaled: the cordons k3splan made (recorded before they are made, undone
//! by the next plan: [`crate::state::Managed::cordons`]), the replacements under way
//! ([`resume_replacements`]), and whether the apply recorded its result (`finished_at`).

pub mod events;
pub mod exec;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Topology;
use crate::observed::{Fact, Observed, url_host};
use crate::plan::{ActionReason, Address, Operation, Plan, Step};
use crate::state::{
    Backend, Journal, JournalReplacement, JournalStep, ManagedCordon, ManagedFile, ManagedMember,
    ManagedNode, ManagedPvc, State, StateError, StepStatus, now_rfc3339,
};

pub use events::{ApplyEvent, ApplyEvents, EventLog};
pub use exec::{ExecError, Executor, OpResult, Outcome, Waits};

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
    /// The `-replace=node.NAME` requests (node names) the plan was made with, including
    /// replacements resumed from an interrupted apply's journal.
    #[serde(default)]
    pub replace: Vec<String>,
    pub plan: Plan,
}

pub const SAVED_PLAN_VERSION: u32 = 1;

/// Errors of an apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("step {index} ({address}) failed: {source}")]
    Step {
        index: usize,
        address: String,
        #[source]
        source: ExecError,
    },
}

/// How often a running operation reports that it is still running.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Runs `fut`, emitting a [`ApplyEvent::Heartbeat`] every `every` while it is pending.
async fn with_heartbeat<T>(
    fut: impl std::future::Future<Output = T>,
    events: &mut dyn ApplyEvents,
    step: usize,
    operation: &str,
    every: Duration,
) -> T {
    let t0 = tokio::time::Instant::now();
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tick.tick() => events.event(&ApplyEvent::Heartbeat {
                step,
                operation: operation.to_string(),
                elapsed_s: t0.elapsed().as_secs_f64(),
            }),
        }
    }
}

/// Test hook (lab crash tests only): when `K3SPLAN_TEST_HOLD_AT` names `point`, print
/// `k3splan-test-hold: POINT` and stop there for good, so that the test can SIGKILL the
/// process at an exact journal boundary. Points: `step-N-started` (journaled `started`,
/// before its first operation), `step-N-op-M` (after operation M of step N, before the step
/// is journaled `done`), `step-N-done` (after the `done` write), `before-final-write` (all
/// steps done, the result not yet written). Unset in normal use.
pub fn test_hold(point: &str) {
    if std::env::var("K3SPLAN_TEST_HOLD_AT").is_ok_and(|v| v == point) {
        let mut o = std::io::stdout();
        let _ = writeln!(o, "k3splan-test-hold: {point}");
        let _ = o.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// The replacements an apply must carry out: the `-replace` requests, plus those an
/// interrupted apply (its journal has no `finished_at`) started and did not finish.
///
/// A replacement whose removal steps are all done (the old node is gone: its rejoin is
/// what is left, and planning from the cluster joins it) or whose rejoin is done is not
/// repeated, even when `-replace` names it again: that is the same request, re-run after
/// the interruption. Returns the node names to replace and a line per decision.
pub fn resume_replacements(
    state: Option<&State>,
    requested: &BTreeSet<String>,
) -> (BTreeSet<String>, Vec<String>) {
    let mut set = requested.clone();
    let mut notes = Vec::new();
    let Some(j) = state
        .and_then(|s| s.journal.as_ref())
        .filter(|j| j.interrupted())
    else {
        return (set, notes);
    };
    for r in &j.replace {
        let removed = r.removal_steps.iter().all(|&i| j.step_done(i));
        let rejoined = r.rejoin_step.is_some_and(|i| j.step_done(i));
        if removed || rejoined {
            if set.remove(&r.node) {
                notes.push(format!(
                    "node.{}: the interrupted apply (plan {}) already {} it; it is not replaced again (finish this apply first; a later -replace=node.{} is a new replacement)",
                    r.node,
                    j.plan_id,
                    if rejoined { "replaced and rejoined" } else { "removed the old node; rejoining is what is left of replacing" },
                    r.node
                ));
            }
        } else if set.insert(r.node.clone()) {
            notes.push(format!(
                "node.{}: the interrupted apply (plan {}) started replacing it; the replacement goes on where it stopped",
                r.node, j.plan_id
            ));
        }
    }
    (set, notes)
}

/// Replacements an interrupted apply recorded whose old node is removed but whose rebuilt
/// node has not rejoined: not replaced again, but still recorded in the next journal so that
/// a second interruption does not forget them.
pub fn replacements_in_progress(state: Option<&State>) -> BTreeSet<String> {
    let Some(j) = state
        .and_then(|s| s.journal.as_ref())
        .filter(|j| j.interrupted())
    else {
        return BTreeSet::new();
    };
    j.replace
        .iter()
        .filter(|r| {
            r.removal_steps.iter().all(|&i| j.step_done(i))
                && !r.rejoin_step.is_some_and(|i| j.step_done(i))
        })
        .map(|r| r.node.clone())
        .collect()
}

/// The journal's replacement records for `plan`: for each node being replaced (and each
/// node whose replacement an interrupted apply left half done), the steps that remove the
/// old node and the step that rejoins it. Every node named is recorded, with no steps when
/// the plan has none for it (its removal is done: a resumed apply never repeats it).
pub fn replacements_in(plan: &Plan, nodes: &BTreeSet<String>) -> Vec<JournalReplacement> {
    nodes
        .iter()
        .map(|n| {
            let joins = |s: &Step| {
                s.operations.iter().any(|op| {
                    matches!(op, Operation::JoinServer { node, .. } | Operation::JoinAgent { node, .. } if node == n)
                })
            };
            let removal_steps: Vec<usize> = plan
                .steps
                .iter()
                .filter(|s| s.reason == ActionReason::ReplaceByRequest && !joins(s))
                .filter(|s| {
                    s.address == Address::node(n) || s.address == Address::member(n)
                })
                .map(|s| s.id)
                .collect();
            let rejoin_step = plan.steps.iter().find(|s| joins(s)).map(|s| s.id);
            JournalReplacement {
                node: n.clone(),
                removal_steps,
                rejoin_step,
            }
        })
        .collect()
}

/// Runs `plan` against the cluster, journaling into `state` through `backend`. `replacing`
/// names the nodes the plan replaces (see [`resume_replacements`]), for the journal.
pub async fn run_plan<B: Backend>(
    exec: &Executor<'_>,
    plan: &Plan,
    replacing: &BTreeSet<String>,
    backend: &B,
    lock: &B::Lock,
    state: &mut State,
    events: &mut dyn ApplyEvents,
) -> Result<(), ApplyError> {
    let mut run = PlanRun {
        exec,
        plan,
        plan_id: plan_id(plan),
        backend,
        lock,
        state,
        events,
    };
    run.start_journal(replacing)?;
    run.upgrade_preflight().await?;
    test_hold("step-0-done");
    for (i, step) in plan.steps.iter().enumerate() {
        run.step(i, step).await?;
    }
    // `finished_at` is set by the caller with the result (managed objects, config digest),
    // in one state write: until then the journal reads as interrupted.
    Ok(())
}

/// One apply under way: what [`run_plan`] carries from step to step.
struct PlanRun<'r, 'a, B: Backend> {
    exec: &'r Executor<'a>,
    plan: &'r Plan,
    plan_id: String,
    backend: &'r B,
    lock: &'r B::Lock,
    state: &'r mut State,
    events: &'r mut dyn ApplyEvents,
}

impl<B: Backend> PlanRun<'_, '_, B> {
    /// Journals every step as pending (and the replacements under way).
    fn start_journal(&mut self, replacing: &BTreeSet<String>) -> Result<(), StateError> {
        let plan = self.plan;
        self.state.journal = Some(Journal {
            plan_id: self.plan_id.clone(),
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
            replace: replacements_in(plan, replacing),
        });
        self.backend.write(self.lock, self.state)
    }

    /// Issue 15: the unit of every node the plan upgrades can be carried through the
    /// installer ([`Executor::upgrade_preflight`]), checked for all of them at once before
    /// the first step, so a refusal changes nothing at all (no snapshot, no cordon, no other
    /// node upgraded) and the reads cost one round, not one per upgraded node. The first
    /// refusal in plan order is journaled as its step's failure; every step stays not done.
    /// Each upgrade reads its unit again when it runs, so a unit edited in between is still
    /// refused, then after its step's cordon (journaled: the next plan uncordons).
    async fn upgrade_preflight(&mut self) -> Result<(), ApplyError> {
        let exec = self.exec;
        let checks = self.plan.steps.iter().enumerate().flat_map(|(i, step)| {
            step.operations.iter().filter_map(move |op| match op {
                Operation::UpgradeK3s { node, agent, .. } => {
                    Some(async move { (i, op, exec.upgrade_preflight(node, *agent).await) })
                }
                _ => None,
            })
        });
        let results = futures::future::join_all(checks).await;
        if let Some((i, op, Err(e))) = results.into_iter().find(|(_, _, r)| r.is_err()) {
            let step = &self.plan.steps[i];
            return Err(self.failed_from(i, 0, step, op.describe(), e));
        }
        Ok(())
    }

    /// Step `i`: journaled `started`, its operations run, journaled `done` (or `failed`).
    async fn step(&mut self, i: usize, step: &Step) -> Result<(), ApplyError> {
        let t0 = Instant::now();
        set_status(self.state, i, StepStatus::Started, None);
        // Journaled intent: a cordon is recorded before it is made, so that a kill right
        // after the API call still leaves the record the next plan uncordons from.
        for op in &step.operations {
            if let Operation::Cordon { node } = op {
                self.state.managed.cordons.insert(
                    node.clone(),
                    ManagedCordon {
                        plan_id: self.plan_id.clone(),
                        step: step.address.to_string(),
                        at: now_rfc3339(),
                    },
                );
            }
        }
        self.backend.write(self.lock, self.state)?;
        self.events.event(&ApplyEvent::StepStarted {
            index: i + 1,
            total: self.plan.steps.len(),
            symbol: step.action.symbol().to_string(),
            address: step.address.to_string(),
        });
        test_hold(&format!("step-{}-started", i + 1));
        for (j, op) in step.operations.iter().enumerate() {
            self.operation(i, step, op).await?;
            test_hold(&format!("step-{}-op-{}", i + 1, j + 1));
        }
        set_status(self.state, i, StepStatus::Done, None);
        self.backend.write(self.lock, self.state)?;
        self.events.event(&ApplyEvent::StepDone {
            index: i + 1,
            elapsed_s: t0.elapsed().as_secs_f64(),
        });
        test_hold(&format!("step-{}-done", i + 1));
        Ok(())
    }

    /// One operation of step `i`; records what it did in the state (not yet written).
    async fn operation(&mut self, i: usize, step: &Step, op: &Operation) -> Result<(), ApplyError> {
        let t_op = Instant::now();
        let what = op.describe();
        let heartbeat = self.exec.waits.heartbeat;
        let run = with_heartbeat(self.exec.run(op), self.events, i + 1, &what, heartbeat);
        let r = match run.await {
            Ok(r) => r,
            Err(e) => return Err(self.failed(i, step, what, e)),
        };
        let managed = &mut self.state.managed;
        if let Operation::Uncordon { node } | Operation::DeleteNode { node } = op {
            managed.cordons.remove(node);
        }
        if let Some((k, d)) = r.file_digest {
            managed.files.insert(k, ManagedFile { sha256: d });
        }
        if let Some(snap) = r.snapshot {
            self.state.last_snapshot = Some(snap);
        }
        // Issue 15: how long it took, for the estimates of later plans (written with the
        // step's `done`). Only an operation that took effect: one whose effect was already
        // there took no time a later plan could expect. The kind and the number only.
        if matches!(r.outcome, exec::Outcome::Done(_)) {
            let ms = u64::try_from(t_op.elapsed().as_millis()).unwrap_or(u64::MAX);
            k3splan_core::plan::estimate::record_duration(
                &mut self.state.durations_ms,
                op.duration_kind(),
                ms,
            );
        }
        self.events.event(&ApplyEvent::OperationDone {
            step: i + 1,
            operation: what,
            note: Some(r.outcome.note().to_string()),
            elapsed_s: t_op.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// Journals step `i` as failed and says so; the apply stops.
    fn failed(&mut self, i: usize, step: &Step, operation: String, e: ExecError) -> ApplyError {
        self.failed_from(i, i, step, operation, e)
    }

    /// [`Self::failed`], with the steps from `first_not_done` on named as not done.
    fn failed_from(
        &mut self,
        i: usize,
        first_not_done: usize,
        step: &Step,
        operation: String,
        e: ExecError,
    ) -> ApplyError {
        let message = e.to_string();
        set_status(self.state, i, StepStatus::Failed, Some(message.clone()));
        if let Err(w) = self.backend.write(self.lock, self.state) {
            return w.into();
        }
        self.events.event(&ApplyEvent::OperationFailed {
            step: i + 1,
            operation,
            error: message,
        });
        self.events.event(&ApplyEvent::ApplyStopped {
            index: i + 1,
            total: self.plan.steps.len(),
            not_done: self.plan.steps[first_not_done..]
                .iter()
                .map(|s| format!("{}. {}", s.id, s.address))
                .collect(),
        });
        ApplyError::Step {
            index: i + 1,
            address: step.address.to_string(),
            source: e,
        }
    }
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
    prune_cordons(state, o);
    // Files of nodes that are gone are not managed any more.
    let names: std::collections::BTreeSet<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    state
        .managed
        .files
        .retain(|k, _| k.split(':').next().is_some_and(|n| names.contains(n)));
}

/// Drops the cordon records that no longer hold (the Node is gone, or schedulable: the
/// uncordon was made, by k3splan or by hand), so that a later, deliberate cordon of that
/// node is never taken for k3splan's. Returns whether a record was dropped. Nothing is
/// dropped while the Kubernetes API is unknown.
pub fn prune_cordons(state: &mut State, o: &Observed) -> bool {
    let Fact::Known(k) = &o.kube else {
        return false;
    };
    let before = state.managed.cordons.len();
    state
        .managed
        .cordons
        .retain(|n, _| k.nodes.iter().any(|x| &x.name == n && x.unschedulable));
    state.managed.cordons.len() != before
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    /// A long operation is never silent: a heartbeat every interval while it runs, none
    /// after it finished (time is paused: no timing luck).
    #[tokio::test(start_paused = true)]
    async fn a_long_operation_reports_a_heartbeat_every_interval() {
        let mut log = EventLog::default();
        let r = with_heartbeat(
            async {
                tokio::time::sleep(Duration::from_secs(45)).await;
                7
            },
            &mut log,
            3,
            "drain server-1",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(r, 7);
        let beats: Vec<f64> = log
            .0
            .iter()
            .map(|e| match e {
                ApplyEvent::Heartbeat {
                    step: 3,
                    operation,
                    elapsed_s,
                } if operation == "drain server-1" => *elapsed_s,
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        assert_eq!(beats.len(), 4, "{beats:?}");
        assert!((beats[3] - 40.0).abs() < 1.0, "{beats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_operation_reports_no_heartbeat() {
        let mut log = EventLog::default();
        with_heartbeat(async {}, &mut log, 1, "write", Duration::from_secs(10)).await;
        assert!(log.0.is_empty());
    }
}
