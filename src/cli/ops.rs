//! What the commands that talk to a cluster (`plan`, `apply`, `show`, `state`,
//! `force-unlock`) share: where the state lives, the observation session, the checks an
//! observation must pass before anything is planned from it, and saved plans.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::apply::{SAVED_PLAN_VERSION, SavedPlan, sha256_hex};
use crate::config::{Backend, Topology};
use crate::live::{Live, LiveOptions};
use crate::observed::Observed;
use crate::plan::PlanOptions;
use crate::state::{
    DEFAULT_STATE_PATH, EtcdBackend, EtcdBackendConfig, LocalBackend, State, StateBackend,
};

use super::CliError;
use super::args::{GlobalArgs, LiveArgs};
use super::error::{ObserveError, SavedPlanError, UsageError};

/// The directory relative paths of the topology are resolved against.
pub fn base_dir(config: &Path) -> PathBuf {
    if config.is_dir() {
        config.to_path_buf()
    } else {
        config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Where the state lives: `--state PATH` (a local file), else the topology's `backend`
/// block, else `state/k3splan.state.json`.
pub fn state_backend(g: &GlobalArgs, t: Option<&Topology>) -> Result<StateBackend, CliError> {
    if let Some(p) = &g.state {
        return Ok(StateBackend::Local(LocalBackend::new(p)));
    }
    match t.and_then(|t| t.backend.as_ref()) {
        Some(Backend::Local { path: Some(p) }) => Ok(StateBackend::Local(LocalBackend::new(
            crate::live::resolve(&base_dir(&g.config), p),
        ))),
        Some(b @ Backend::Etcd { .. }) => {
            let cfg = EtcdBackendConfig::from_topology(b, &base_dir(&g.config))
                .ok_or(CliError::EtcdBackendBlock)?;
            Ok(StateBackend::Etcd(EtcdBackend::new(cfg)?))
        }
        _ => Ok(StateBackend::Local(LocalBackend::new(DEFAULT_STATE_PATH))),
    }
}

/// The topology when it loads without error (for commands that only need its `backend`).
pub fn topology_if_valid(g: &GlobalArgs) -> Option<Topology> {
    crate::config::load_path(&g.config, crate::config::process_env())
        .ok()
        .and_then(|l| l.topology)
}

/// The async runtime and the connections of one command. Dropping it closes the SSH
/// connections (on every path, errors included).
pub struct Session {
    pub rt: tokio::runtime::Runtime,
    pub live: Live,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.rt.block_on(self.live.close_all());
    }
}

impl Session {
    /// Prepares the connections to the cluster `t` (nothing is dialled yet).
    pub fn new(
        t: &Topology,
        config: &Path,
        flags: &LiveArgs,
        state: Option<&State>,
    ) -> Result<Self, CliError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
        let known_ssh_ports = state
            .map(|s| {
                s.managed
                    .nodes
                    .iter()
                    .filter_map(|(n, m)| m.ssh_port.map(|p| (n.clone(), p)))
                    .collect()
            })
            .unwrap_or_default();
        let opts = LiveOptions {
            base_dir: base_dir(config),
            accept_new_host_keys: flags.accept_new_host_keys,
            ssh_parallelism: flags.parallelism.into(),
            known_ssh_ports,
            ..LiveOptions::default()
        };
        let live = Live::new(t, opts).map_err(|e| CliError::Live(e.into()))?;
        Ok(Session { rt, live })
    }

    /// Observes the cluster.
    pub fn observe(&mut self) -> Observed {
        self.rt.block_on(self.live.observe())
    }

    /// Observes the cluster and checks that a plan may be made from what was seen
    /// ([`check_observation`]); `applying` adds "nothing was changed" to the error.
    pub fn observe_checked(
        &mut self,
        t: &Topology,
        flags: &LiveArgs,
        applying: bool,
    ) -> Result<Observed, CliError> {
        let observed = self.observe();
        check_observation(t, &observed, flags, applying)?;
        Ok(observed)
    }
}

/// The node names of `-replace=node.NAME`: every address must name a declared node (a
/// usage error otherwise, before anything is read or changed).
pub fn replace_targets(t: &Topology, given: &[String]) -> Result<BTreeSet<String>, CliError> {
    let mut set = BTreeSet::new();
    for a in given {
        let Some(name) = a.strip_prefix("node.") else {
            let example = t.nodes.first().map_or("server-1", |n| n.name.as_str());
            return Err(UsageError::ReplaceAddress {
                address: a.clone(),
                example: example.to_string(),
            }
            .into());
        };
        if !t.nodes.iter().any(|n| n.name == name) {
            let declared: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(UsageError::ReplaceUnknownNode {
                address: a.clone(),
                name: name.to_string(),
                declared: declared.join(", "),
            }
            .into());
        }
        set.insert(name.to_string());
    }
    Ok(set)
}

/// The planner's options for this run: the flags, the replacements (requested, and those an
/// interrupted apply left half done), and the cordons the state says k3splan made.
pub fn plan_options(
    allow_unreachable: &[String],
    replace: BTreeSet<String>,
    state: Option<&State>,
    rebind_min_not_ready_secs: Option<u64>,
) -> PlanOptions {
    PlanOptions {
        allow_unreachable: allow_unreachable.iter().cloned().collect(),
        replace,
        cordoned_by_k3splan: state
            .map(|s| s.managed.cordons.keys().cloned().collect())
            .unwrap_or_default(),
        rebind_min_not_ready_secs,
        check: None,
    }
}

/// Where an interrupted apply stopped: "step K of N: ADDRESS (STATUS[: ERROR])", or `None`
/// when all its steps are done.
pub fn stopped_at(state: &State) -> Option<String> {
    let j = state.journal.as_ref()?;
    let k = j.first_unfinished()?;
    let s = &j.steps[k];
    let error = s
        .error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    Some(format!(
        "step {} of {}: {} ({:?}{error})",
        k + 1,
        j.steps.len(),
        s.address,
        s.status
    ))
}

/// What to say when the last apply did not record its result (killed or failed), if so.
pub fn interrupted_note(state: Option<&State>) -> Option<String> {
    let state = state?;
    let j = state.journal.as_ref().filter(|j| j.interrupted())?;
    let at = match stopped_at(state) {
        Some(at) => format!("it stopped at {at}"),
        None => format!(
            "its {} steps are done but it stopped before it recorded the result (managed objects, config digest)",
            j.steps.len()
        ),
    };
    Some(format!(
        "the last apply (plan {}, started {}) was interrupted: {at}",
        j.plan_id, j.started_at
    ))
}

/// Checks that must pass before anything is planned from an observation (all fail the
/// command and change nothing):
/// - the Kubernetes API and etcd must both be read: a plan made without one of them would
///   claim "no changes" (or worse) from ignorance. Hosts may be unreachable: that is what a
///   dead node looks like, and the planner treats it as unknown;
/// - a host offering a host key other than the one known_hosts records is a possible
///   man-in-the-middle: stop, naming the host with the expected and offered fingerprints;
/// - every `--allow-unreachable` name must be a node (declared or observed) or an etcd
///   member: a typo would otherwise accept nothing, silently.
pub fn check_observation(
    t: &Topology,
    o: &Observed,
    flags: &LiveArgs,
    applying: bool,
) -> Result<(), CliError> {
    let unread: Vec<String> = [o.kube.unknown_reason(), o.etcd.unknown_reason()]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    if !unread.is_empty() {
        let reasons = unread.join("; ");
        return Err(ObserveError::Unread { reasons, applying }.into());
    }
    let changed: Vec<String> = o
        .host_failures
        .iter()
        .filter(|(_, k)| **k == crate::observed::HostUnknown::HostKeyChanged)
        .filter_map(|(n, _)| o.hosts.get(n).and_then(|f| f.unknown_reason()))
        .map(str::to_string)
        .collect();
    if !changed.is_empty() {
        return Err(ObserveError::HostKeyChanged(changed.join("; ")).into());
    }
    let mut known = crate::live::known_nodes(o);
    known.extend(t.nodes.iter().map(|n| n.name.clone()));
    if let Some(e) = o.etcd.known() {
        known.extend(e.members.iter().map(|m| m.name.clone()));
    }
    let bad: Vec<&str> = flags
        .allow_unreachable
        .iter()
        .filter(|n| !known.contains(*n))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(UsageError::AllowUnreachable {
            names: bad.join(", "),
            known: known.iter().cloned().collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    Ok(())
}

/// The digest of an observation, recorded in a saved plan.
pub fn observed_digest(o: &Observed) -> String {
    sha256_hex(&serde_json::to_vec(o).unwrap_or_default())
}

/// Reads a plan saved with `plan -out=FILE`.
pub fn read_saved_plan(p: &Path) -> Result<SavedPlan, CliError> {
    let bytes = std::fs::read(p).map_err(|source| CliError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    let sp: SavedPlan =
        serde_json::from_slice(&bytes).map_err(|source| SavedPlanError::NotAPlan {
            path: p.to_path_buf(),
            source,
        })?;
    if sp.format_version != SAVED_PLAN_VERSION {
        return Err(SavedPlanError::Version {
            path: p.to_path_buf(),
            found: sp.format_version,
            expected: SAVED_PLAN_VERSION,
        }
        .into());
    }
    Ok(sp)
}
