//! `k3splan apply`: lock, observe, plan (or check a saved plan), approve, run the steps
//! through the engine, record the result. Everything the operator sees goes through one
//! [`ApplyView`] (text or the `--json` event stream).

use k3splan_engine::state::Backend as _;
use std::path::Path;

use crate::apply::{
    self, Executor, SavedPlan, Waits, config_digest, plan_id, prune_cordons, record_managed,
    replacements_in_progress, resume_replacements, test_hold,
};
use crate::config::Topology;
use crate::observed::Observed;
use crate::plan::{self, Operation, Plan, PlanOptions, Refusal};
use crate::state::{LockInfo, State, StateBackend, StateLock, random_id};

use super::args::{ApplyArgs, GlobalArgs};
use super::error::{SavedPlanError, UsageError};
use super::ops::{
    Session, base_dir, plan_options, read_saved_plan, replace_targets, state_backend, stopped_at,
};
use super::view::{ApplyView, Palette};
use super::{CliError, EXIT_ERROR, EXIT_OK, load_valid};

/// `k3splan apply`. An error is also given to the view (the JSON stream ends with it).
pub fn cmd_apply(
    g: &GlobalArgs,
    a: &ApplyArgs,
    palette: Palette,
    view: &mut dyn ApplyView,
) -> Result<u8, CliError> {
    let r = apply(g, a, palette, view);
    if let Err(e) = &r {
        view.error(&e.to_string());
    }
    r
}

/// What an apply holds once the state is locked and read.
struct Locked {
    t: Topology,
    backend: StateBackend,
    lock: StateLock,
    state: State,
    saved: Option<SavedPlan>,
}

fn apply(
    g: &GlobalArgs,
    a: &ApplyArgs,
    palette: Palette,
    view: &mut dyn ApplyView,
) -> Result<u8, CliError> {
    if a.json && !a.auto_approve && a.plan_file.is_none() {
        return Err(UsageError::JsonNeedsApproval.into());
    }
    let loaded = load_valid(&g.config, palette.stderr)?;
    let t = loaded.topology.expect("valid topology");
    let requested = replace_targets(&t, &a.live.replace)?;
    let backend = state_backend(g, Some(&t))?;
    // The lock first: nothing is observed or changed before this run owns the state.
    let lock = backend.lock(LockInfo::for_operation("apply"), a.lock_timeout)?;
    let state = backend.read()?.unwrap_or_else(|| State::new(random_id()));
    if a.live.recover.recover && a.plan_file.is_some() {
        return Err(UsageError::RecoverWithSavedPlan.into());
    }
    let saved = a.plan_file.as_deref().map(read_saved_plan).transpose()?;
    if saved.is_some() && !requested.is_empty() {
        return Err(UsageError::ReplaceWithSavedPlan.into());
    }
    say_if_resuming(&state, view)?;
    let (replace, notes) = match &saved {
        Some(sp) => (sp.replace.iter().cloned().collect(), Vec::new()),
        None => resume_replacements(Some(&state), &requested),
    };
    for n in &notes {
        view.note(n)?;
    }
    let mut l = Locked {
        t,
        backend,
        lock,
        state,
        saved,
    };
    if let Some(sp) = &l.saved {
        check_saved_plan(sp, &l.t, &l.backend, &l.state)?;
    }
    let mut session = Session::new(&l.t, &g.config, &a.live, Some(&l.state))?;
    let mut opts = apply_options(a, l.saved.as_ref(), replace, &l.state);
    let (observed, mut result) = if a.live.recover.recover {
        // Quorum-loss recovery (issue 16): the survey first, then its plan.
        let run = super::recover_cmd::plan(&mut session, &l.t, &a.live, Some(&l.state), &opts)?;
        if !run.report.is_empty() {
            view.note(&format!("{}\n", run.report.join("\n")))?;
        }
        (run.observed, run.result)
    } else {
        let observed = session.observe_checked(&l.t, &a.live, true)?;
        opts.check = super::check_cmd::report_for_plan(&l.t, &session, &observed);
        let result = plan::plan(&l.t, &observed, &opts);
        (observed, result)
    };
    // The kubeconfig's server did not answer and another address did: say which (apply
    // observes again, and may find another answer than the plan did).
    let failover = session.live.kube_failover_note();
    // Issue 15: the time estimate from the durations earlier applies recorded.
    if let Ok(p) = &mut result {
        p.estimate = plan::estimate::estimate(p, &l.state.durations_ms);
    }
    if let (Ok(p), Some(n)) = (&mut result, &failover) {
        p.warnings.insert(0, n.clone());
    }
    let Some(plan) = plan_to_apply(&result, l.saved.as_ref(), view)? else {
        return Ok(EXIT_ERROR);
    };
    if plan.steps.is_empty() {
        view.plan(&result)?;
        if finish_converged(&mut l, &observed)? {
            view.note("The interrupted apply is finished: nothing is left to change; its journal is closed and the result recorded.")?;
        }
        view.complete(&plan.summary(), false, l.state.serial)?;
        return Ok(EXIT_OK);
    }
    match &l.saved {
        None => view.plan(&Ok(plan.clone()))?,
        Some(_) => {
            view.saved_plan(&plan)?;
            // The saved plan is shown as saved: this run's route to the API is a note.
            if let Some(n) = &failover {
                view.note(n)?;
            }
        }
    }
    // A saved plan is the approval in a JSON stream, which cannot prompt.
    let approved = a.auto_approve || (a.json && l.saved.is_some()) || view.approve()?;
    if !approved {
        view.cancelled()?;
        return Ok(EXIT_ERROR);
    }
    view.starting()?;
    run_steps(g, &mut l, &session, &plan, &opts, view)?;
    // Record what is managed now, from a fresh look.
    let after = session.observe();
    record_result(&mut l, &after)?;
    drop(session);
    view.complete(&plan.summary(), true, l.state.serial)?;
    Ok(EXIT_OK)
}

/// Says where the previous apply stopped, when it did not finish.
fn say_if_resuming(state: &State, view: &mut dyn ApplyView) -> Result<(), CliError> {
    let Some(j) = state.journal.as_ref() else {
        return Ok(());
    };
    if let Some(at) = stopped_at(state) {
        view.note(&format!(
            "The previous apply (plan {}) stopped at {at}.\nResuming: the cluster is observed again and only what is left is planned; finished steps are not repeated.\n",
            j.plan_id
        ))
    } else if j.interrupted() {
        view.note(&format!(
            "The previous apply (plan {}) finished its {} steps but was stopped before it recorded the result.\nFinishing it: the cluster is observed again, what is left (if anything) is planned, and the result is recorded.\n",
            j.plan_id,
            j.steps.len()
        ))
    } else {
        Ok(())
    }
}

/// A saved plan is applied only to the topology and the state it was made from.
fn check_saved_plan(
    sp: &SavedPlan,
    t: &Topology,
    backend: &StateBackend,
    state: &State,
) -> Result<(), CliError> {
    if sp.config_digest != config_digest(t) {
        return Err(SavedPlanError::ConfigChanged.into());
    }
    let lineage_differs = sp
        .state_lineage
        .as_deref()
        .is_some_and(|l| l != state.lineage);
    if sp.state_serial != backend.read()?.map(|s| s.serial) || lineage_differs {
        return Err(SavedPlanError::StateChanged.into());
    }
    Ok(())
}

/// The planner's options: a saved plan keeps its `--allow-unreachable` and the rebind
/// threshold it was made with (it is part of its operations).
fn apply_options(
    a: &ApplyArgs,
    saved: Option<&SavedPlan>,
    replace: std::collections::BTreeSet<String>,
    state: &State,
) -> PlanOptions {
    let allow = saved.map_or(&a.live.allow_unreachable, |s| &s.allow_unreachable);
    let saved_threshold = saved.and_then(|s| {
        s.plan
            .steps
            .iter()
            .flat_map(|st| &st.operations)
            .find_map(|op| match op {
                Operation::RebindVolume { evidence, .. }
                | Operation::RecreateWorkload { evidence, .. } => Some(evidence.min_not_ready_secs),
                _ => None,
            })
    });
    let threshold = saved_threshold.or(a.live.rebind_min_not_ready);
    plan_options(allow, replace, Some(state), threshold)
}

/// The plan to carry out, or `None` (after showing why) when the planner refused. An
/// incomplete plan, or a saved plan that planning again no longer gives, is an error.
fn plan_to_apply(
    result: &Result<Plan, Refusal>,
    saved: Option<&SavedPlan>,
    view: &mut dyn ApplyView,
) -> Result<Option<Plan>, CliError> {
    match (result, saved) {
        (Err(r), _) => {
            view.plan(result)?;
            view.error(&CliError::Refused(r.violations.len()).to_string());
            Ok(None)
        }
        (Ok(p), _) if !p.is_complete() => {
            view.plan(result)?;
            Err(CliError::IncompletePlan)
        }
        (Ok(p), Some(sp)) if plan_id(p) != plan_id(&sp.plan) => {
            Err(SavedPlanError::ClusterChanged.into())
        }
        (Ok(_), Some(sp)) => Ok(Some(sp.plan.clone())),
        (Ok(p), None) => Ok(Some(p.clone())),
    }
}

/// Nothing to change. An interrupted apply — killed in a step whose remaining steps are no
/// longer needed, or after its last step but before it recorded the result — is finished
/// here: the journal is closed and what is managed is recorded. A clean converged run
/// writes the state only to drop stale cordon records (uncordoned by hand), so that a later
/// deliberate cordon is never taken for k3splan's. Returns whether an interrupted apply
/// was finished.
fn finish_converged(l: &mut Locked, observed: &Observed) -> Result<bool, CliError> {
    if l.state.journal.as_ref().is_some_and(|j| j.interrupted()) {
        if let Some(j) = l.state.journal.as_mut() {
            j.supersede(&crate::state::now_rfc3339());
        }
        record_managed(&mut l.state, &l.t, observed);
        l.state.config_digest = Some(config_digest(&l.t));
        l.backend.write(&l.lock, &mut l.state)?;
        return Ok(true);
    }
    if prune_cordons(&mut l.state, observed) {
        l.backend.write(&l.lock, &mut l.state)?;
    }
    Ok(false)
}

/// Runs the plan's steps through the engine, its events going to `view`.
fn run_steps(
    g: &GlobalArgs,
    l: &mut Locked,
    session: &Session,
    plan: &Plan,
    opts: &PlanOptions,
    view: &mut dyn ApplyView,
) -> Result<(), CliError> {
    let snapshot_dir = l
        .backend
        .local_path()
        .and_then(Path::parent)
        .map(|p| p.join("snapshots"))
        .unwrap_or_else(|| base_dir(&g.config).join("snapshots"));
    let exec = Executor {
        live: &session.live,
        waits: Waits::from_timeouts(&session.live.topology().cluster.timeouts),
        snapshot_dir,
    };
    let replacing = opts
        .replace
        .union(&replacements_in_progress(Some(&l.state)))
        .cloned()
        .collect();
    session.rt.block_on(apply::run_plan(
        &exec,
        plan,
        &replacing,
        &l.backend,
        &l.lock,
        &mut l.state,
        view,
    ))?;
    Ok(())
}

/// Records what is managed after the steps, the config digest and the journal's end, in
/// one state write.
fn record_result(l: &mut Locked, after: &Observed) -> Result<(), CliError> {
    record_managed(&mut l.state, &l.t, after);
    l.state.config_digest = Some(config_digest(&l.t));
    if let Some(j) = l.state.journal.as_mut() {
        j.finished_at = Some(crate::state::now_rfc3339());
    }
    test_hold("before-final-write");
    l.backend.write(&l.lock, &mut l.state)?;
    Ok(())
}
