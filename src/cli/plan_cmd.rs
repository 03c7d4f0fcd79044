//! `k3splan plan`: observe, plan, show (through the [`PlanView`]), optionally save.

use k3splan_engine::state::Backend as _;
use std::path::Path;

use crate::apply::{SAVED_PLAN_VERSION, SavedPlan, config_digest, resume_replacements};
use crate::config::Topology;
use crate::observed::Observed;
use crate::plan::{self, Plan, PlanOptions};
use crate::render;
use crate::state::{State, local::write_atomic_private};

use super::args::{GlobalArgs, PlanArgs};
use super::ops::{
    Session, interrupted_note, observed_digest, plan_options, replace_targets, state_backend,
};
use super::view::{Palette, PlanView};
use super::{CliError, EXIT_CHANGES, EXIT_ERROR, EXIT_OK, load_valid};

/// `k3splan plan`.
pub fn cmd_plan(
    g: &GlobalArgs,
    a: &PlanArgs,
    palette: Palette,
    view: &mut dyn PlanView,
) -> Result<u8, CliError> {
    let loaded = load_valid(&g.config, palette.stderr)?;
    let t = loaded.topology.expect("valid topology");
    let requested = replace_targets(&t, &a.live.replace)?;
    let state = state_backend(g, Some(&t))?.read()?;
    let (replace, notes) = resume_replacements(state.as_ref(), &requested);
    let interrupted = interrupted_note(state.as_ref());
    let mut session = Session::new(&t, &g.config, &a.live, state.as_ref())?;
    let mut opts = plan_options(
        &a.live.allow_unreachable,
        replace,
        state.as_ref(),
        a.live.rebind_min_not_ready,
    );
    if a.live.recover.recover {
        return plan_recovery(a, &t, &mut session, state.as_ref(), &opts, view);
    }
    let observed = session.observe_checked(&t, &a.live, false)?;
    opts.check = super::check_cmd::report_for_plan(&t, &session, &observed);
    let mut result = plan::plan(&t, &observed, &opts);
    if let Ok(p) = &mut result {
        // Issue 15: the time estimate from the durations earlier applies recorded.
        if let Some(s) = &state {
            p.estimate = plan::estimate::estimate(p, &s.durations_ms);
        }
        // The kubeconfig's server did not answer and another address did: say which.
        if let Some(n) = session.live.kube_failover_note() {
            p.warnings.insert(0, n);
        }
        p.warnings.extend(notes);
        if let Some(why) = &interrupted {
            p.warnings.push(format!(
                "{why}. Run `k3splan apply`: it plans what is left and records the result, even when no change is left"
            ));
        }
    }
    view.plan(&result)?;
    if let (Some(path), Ok(p)) = (&a.out, &result) {
        if p.is_complete() {
            let saved = saved_plan(&t, &observed, state.as_ref(), a, &opts, p);
            save_plan(path, &saved)?;
            view.saved(path)?;
        } else {
            view.not_saved()?;
        }
    }
    drop(session);
    Ok(match &result {
        Err(_) => EXIT_ERROR,
        // Sources were not read: never "no changes", with or without --detailed-exitcode.
        Ok(p) if !p.is_complete() => EXIT_ERROR,
        // An interrupted apply is something to do (its result is not recorded): never 0.
        Ok(_) if a.detailed_exitcode && interrupted.is_some() => EXIT_CHANGES,
        Ok(_) if a.detailed_exitcode => render::detailed_exitcode(&result) as u8,
        Ok(_) => EXIT_OK,
    })
}

/// The saved form of `p`, with what `apply FILE` checks before it trusts it.
fn saved_plan(
    t: &Topology,
    observed: &Observed,
    state: Option<&State>,
    a: &PlanArgs,
    opts: &PlanOptions,
    p: &Plan,
) -> SavedPlan {
    SavedPlan {
        format_version: SAVED_PLAN_VERSION,
        k3splan_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::state::now_rfc3339(),
        config_digest: config_digest(t),
        observed_digest: observed_digest(observed),
        state_serial: state.map(|s| s.serial),
        state_lineage: state.map(|s| s.lineage.clone()),
        allow_unreachable: a.live.allow_unreachable.clone(),
        replace: opts.replace.iter().cloned().collect(),
        plan: p.clone(),
    }
}

/// Writes a saved plan (JSON, mode 0600, atomically).
fn save_plan(path: &Path, saved: &SavedPlan) -> Result<(), CliError> {
    let mut bytes = serde_json::to_vec_pretty(saved).expect("plan serializes");
    bytes.push(b'\n');
    write_atomic_private(path, &bytes)?;
    Ok(())
}

/// `plan --recover` (issue 16): the survey, then the recovery plan (never saved: it is
/// planned again and applied by `apply --recover`).
fn plan_recovery(
    a: &PlanArgs,
    t: &Topology,
    session: &mut Session,
    state: Option<&State>,
    opts: &PlanOptions,
    view: &mut dyn PlanView,
) -> Result<u8, CliError> {
    if a.out.is_some() {
        return Err(super::error::UsageError::RecoverWithSavedPlan.into());
    }
    let run = super::recover_cmd::plan(session, t, &a.live, state, opts)?;
    if !a.json && !run.report.is_empty() {
        println!("{}\n", run.report.join("\n"));
    }
    view.plan(&run.result)?;
    Ok(match &run.result {
        Err(_) => EXIT_ERROR,
        Ok(p) if !p.is_complete() => EXIT_ERROR,
        Ok(_) if a.detailed_exitcode => render::detailed_exitcode(&run.result) as u8,
        Ok(_) => EXIT_OK,
    })
}
