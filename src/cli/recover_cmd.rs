//! `plan --recover` / `apply --recover` (issue 16): observe, survey each server's etcd data,
//! and plan the quorum-loss recovery ([`crate::plan::recover`]).
//!
//! The normal observation check refuses when etcd or the API answered nowhere; during a
//! quorum loss that is expected (every k3s may be down), so only a changed host key stops
//! the recovery here. An etcd that answered nowhere is taken as quorum lost, and said so.

use crate::config::Topology;
use crate::observed::{HostUnknown, Observed};
use crate::plan::recover::{RecoverOptions, plan_recovery, survey_table};
use crate::plan::{Plan, PlanOptions, Refusal};
use crate::state::State;

use super::CliError;
use super::args::LiveArgs;
use super::error::ObserveError;
use super::ops::Session;

/// A recovery plan (or refusal) and the survey to show before it.
pub struct RecoveryRun {
    pub observed: Observed,
    pub result: Result<Plan, Refusal>,
    pub report: Vec<String>,
}

/// Observes, surveys and plans the recovery.
pub fn plan(
    session: &mut Session,
    t: &Topology,
    live: &LiveArgs,
    state: Option<&State>,
    opts: &PlanOptions,
) -> Result<RecoveryRun, CliError> {
    // A reset left running by a killed apply: its etcd would look like the result.
    session.rt.block_on(session.live.wait_cluster_resets());
    let observed = session.observe();
    let changed: Vec<String> = observed
        .host_failures
        .iter()
        .filter(|(_, k)| **k == HostUnknown::HostKeyChanged)
        .filter_map(|(n, _)| observed.hosts.get(n).and_then(|f| f.unknown_reason()))
        .map(str::to_string)
        .collect();
    if !changed.is_empty() {
        return Err(ObserveError::HostKeyChanged(changed.join("; ")).into());
    }
    let survey = session.rt.block_on(session.live.survey_etcd());
    let ro = RecoverOptions {
        from_snapshot: live.recover.from_snapshot.clone(),
        from_node: live.recover.recover_from.clone(),
        resuming: state
            .and_then(|s| s.journal.as_ref())
            .is_some_and(|j| j.interrupted()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // A refusal is shown with the survey it rests on.
    let mut report = survey_table(t, &survey, now);
    let result = plan_recovery(t, &observed, &survey, opts, &ro, now).map(|r| {
        report = r.report;
        let mut p = r.plan;
        if let Some(why) = observed.etcd.unknown_reason()
            && !p.steps.is_empty()
        {
            p.warnings.insert(
                0,
                format!("etcd answered on no endpoint ({why}): quorum is taken as lost"),
            );
        }
        p
    });
    Ok(RecoveryRun {
        observed,
        result,
        report,
    })
}
