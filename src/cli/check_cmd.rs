//! `k3splan check`: observe, read the check's extra facts, judge them against the `check`
//! block's thresholds, show the report, exit with its code (0 ok, 1 error or unknown,
//! 2 warnings, 3 critical).

use crate::check::{self, Report};

use super::args::{CheckArgs, GlobalArgs, LiveArgs};
use super::ops::{Session, state_backend};
use super::view::{Palette, check::render_check};
use super::{CliError, load_valid};
use k3splan_engine::state::Backend as _;

/// `k3splan check`.
pub fn cmd_check(g: &GlobalArgs, a: &CheckArgs, palette: Palette) -> Result<u8, CliError> {
    let loaded = load_valid(&g.config, palette.stderr)?;
    let t = loaded.topology.expect("valid topology");
    let state = state_backend(g, Some(&t))?.read()?;
    let flags = LiveArgs {
        allow_unreachable: vec![],
        replace: vec![],
        accept_new_host_keys: a.accept_new_host_keys,
        parallelism: a.parallelism,
        rebind_min_not_ready: None,
        recover: Default::default(),
    };
    let mut session = Session::new(&t, &g.config, &flags, state.as_ref())?;
    let report = run_check(&t, &mut session);
    drop(session);
    render_check(&report, a.json, palette.stdout)?;
    Ok(report.exit_code())
}

/// The check report `plan` and `apply` plan with, from their observation: only when the
/// topology has a `check` block (as Terraform shows the results of declared `check` blocks).
pub fn report_for_plan(
    t: &crate::config::Topology,
    session: &Session,
    observed: &crate::observed::Observed,
) -> Option<Report> {
    if !t.check.declared {
        return None;
    }
    let facts = session.rt.block_on(session.live.observe_check(observed));
    Some(check::evaluate(t, observed, &facts))
}

/// Observes and judges.
pub fn run_check(t: &crate::config::Topology, session: &mut Session) -> Report {
    let observed = session.observe();
    let facts = session.rt.block_on(session.live.observe_check(&observed));
    check::evaluate(t, &observed, &facts)
}
