//! The commands that talk to a cluster: `plan`, `apply`, `show`, `state`, `force-unlock`.

use std::collections::BTreeSet;
use std::io::{self, BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::apply::{
    self, Executor, SAVED_PLAN_VERSION, SavedPlan, Waits, config_digest, plan_id, prune_cordons,
    record_managed, replacements_in_progress, resume_replacements, sha256_hex, test_hold,
};
use crate::config::{Backend, Topology};
use crate::live::{Live, LiveOptions};
use crate::observed::Observed;
use crate::plan::{self, Plan, PlanOptions, Refusal};
use crate::render;
use crate::state::{
    DEFAULT_STATE_PATH, EtcdBackend, EtcdBackendConfig, LocalBackend, LockInfo, State,
    StateBackend, local::write_atomic_private, random_id,
};

use super::{CliError, EXIT_ERROR, EXIT_OK, GlobalArgs, load_valid, out, use_color};

/// Options shared by `plan` and `apply`.
pub struct LiveFlags {
    pub allow_unreachable: Vec<String>,
    /// `-replace=node.NAME` as given (checked by [`replace_targets`]).
    pub replace: Vec<String>,
    pub accept_new_host_keys: bool,
    /// SSH hosts reached at once.
    pub parallelism: usize,
    /// `--rebind-min-not-ready SECONDS`.
    pub rebind_min_not_ready: Option<u64>,
}

fn base_dir(config: &Path) -> PathBuf {
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
                .ok_or_else(|| CliError::Message("invalid etcd backend block".into()))?;
            Ok(StateBackend::Etcd(EtcdBackend::new(cfg)?))
        }
        _ => Ok(StateBackend::Local(LocalBackend::new(DEFAULT_STATE_PATH))),
    }
}

/// The topology when it loads without error (for commands that only need its `backend`).
fn topology_if_valid(g: &GlobalArgs) -> Option<Topology> {
    crate::config::load_path(&g.config, crate::config::process_env())
        .ok()
        .and_then(|l| l.topology)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(format!("cannot start the async runtime: {e}")))
}

fn live_for(
    t: &Topology,
    config: &Path,
    flags: &LiveFlags,
    state: Option<&State>,
) -> Result<Live, CliError> {
    let known_ssh_ports = state
        .map(|s| {
            s.managed
                .nodes
                .iter()
                .filter_map(|(n, m)| m.ssh_port.map(|p| (n.clone(), p)))
                .collect()
        })
        .unwrap_or_default();
    Live::new(
        t,
        LiveOptions {
            base_dir: base_dir(config),
            accept_new_host_keys: flags.accept_new_host_keys,
            ssh_parallelism: flags.parallelism,
            known_ssh_ports,
            ..LiveOptions::default()
        },
    )
    .map_err(CliError::Message)
}

/// The node names of `-replace=node.NAME`: every address must name a declared node (a
/// usage error otherwise, before anything is read or changed).
pub fn replace_targets(t: &Topology, given: &[String]) -> Result<BTreeSet<String>, CliError> {
    let mut set = BTreeSet::new();
    for a in given {
        let Some(name) = a.strip_prefix("node.") else {
            return Err(CliError::Message(format!(
                "invalid -replace address \"{a}\": expected node.NAME (e.g. -replace=node.{})",
                t.nodes
                    .first()
                    .map(|n| n.name.as_str())
                    .unwrap_or("server-1")
            )));
        };
        if !t.nodes.iter().any(|n| n.name == name) {
            return Err(CliError::Message(format!(
                "invalid -replace address \"{a}\": no node \"{name}\" is declared in the topology (declared: {})",
                t.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        set.insert(name.to_string());
    }
    Ok(set)
}

/// The planner's options for this run: the flags, the replacements (requested, and those an
/// interrupted apply left half done), and the cordons the state says k3splan made.
fn plan_options(
    allow_unreachable: &[String],
    replace: BTreeSet<String>,
    state: Option<&State>,
) -> PlanOptions {
    PlanOptions {
        allow_unreachable: allow_unreachable.iter().cloned().collect(),
        replace,
        cordoned_by_k3splan: state
            .map(|s| s.managed.cordons.keys().cloned().collect())
            .unwrap_or_default(),
        rebind_min_not_ready_secs: None,
    }
}

/// What to say when the last apply did not record its result (killed or failed), if so.
fn interrupted_note(state: Option<&State>) -> Option<String> {
    let j = state?.journal.as_ref().filter(|j| j.interrupted())?;
    let n = j.steps.len();
    let at = match j.first_unfinished() {
        Some(k) => {
            let s = &j.steps[k];
            format!(
                "it stopped at step {} of {n}: {} ({:?}{})",
                k + 1,
                s.address,
                s.status,
                s.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        }
        None => format!(
            "its {n} steps are done but it stopped before it recorded the result (managed objects, config digest)"
        ),
    };
    Some(format!(
        "the last apply (plan {}, started {}) was interrupted: {at}",
        j.plan_id, j.started_at
    ))
}

/// The Kubernetes API and etcd must both be read: a plan made without one of them would
/// claim "no changes" (or worse) from ignorance. Hosts may be unreachable: that is what a
/// dead node looks like, and the planner treats it as unknown.
fn sources_unknown(o: &Observed) -> Option<String> {
    let mut why = Vec::new();
    if let Some(r) = o.kube.unknown_reason() {
        why.push(r.to_string());
    }
    if let Some(r) = o.etcd.unknown_reason() {
        why.push(r.to_string());
    }
    (!why.is_empty()).then(|| {
        format!(
            "the cluster could not be read, so no plan can be trusted: {}",
            why.join("; ")
        )
    })
}

/// Checks that must pass before anything is planned from an observation (both fail the
/// command and change nothing):
/// - a host offering a host key other than the one known_hosts records is a possible
///   man-in-the-middle: stop, naming the host with the expected and offered fingerprints;
/// - every `--allow-unreachable` name must be a node (declared or observed) or an etcd
///   member: a typo would otherwise accept nothing, silently.
fn check_observation(t: &Topology, o: &Observed, flags: &LiveFlags) -> Result<(), CliError> {
    let changed: Vec<String> = o
        .host_failures
        .iter()
        .filter(|(_, k)| **k == crate::observed::HostUnknown::HostKeyChanged)
        .filter_map(|(n, _)| o.hosts.get(n).and_then(|f| f.unknown_reason()))
        .map(str::to_string)
        .collect();
    if !changed.is_empty() {
        return Err(CliError::Message(format!(
            "refusing to continue, nothing was changed: {}",
            changed.join("; ")
        )));
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
        return Err(CliError::Usage(format!(
            "--allow-unreachable {}: no declared or observed node, and no etcd member, has that name (nodes: {})",
            bad.join(", "),
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

fn observed_digest(o: &Observed) -> String {
    sha256_hex(&serde_json::to_vec(o).unwrap_or_default())
}

fn render_result(result: &Result<Plan, Refusal>, json: bool, color: bool) -> String {
    if json {
        let mut s = render::json(result);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    } else {
        render::text(result, render::TextOptions { color })
    }
}

/// `k3splan plan`.
pub fn cmd_plan(
    g: &GlobalArgs,
    flags: &LiveFlags,
    json: bool,
    detailed: bool,
    save: Option<&Path>,
) -> Result<u8, CliError> {
    let color_err = use_color(g.no_color, io::stderr().is_terminal());
    let color_out = use_color(g.no_color, io::stdout().is_terminal());
    let loaded = load_valid(&g.config, color_err)?;
    let t = loaded.topology.expect("valid topology");
    let requested = replace_targets(&t, &flags.replace)?;
    let backend = state_backend(g, Some(&t))?;
    let state = backend.read()?;
    let (replace, notes) = resume_replacements(state.as_ref(), &requested);
    let interrupted = interrupted_note(state.as_ref());
    let rt = runtime()?;
    let mut live = live_for(&t, &g.config, flags, state.as_ref())?;
    let observed = rt.block_on(live.observe());
    if let Some(why) = sources_unknown(&observed) {
        rt.block_on(live.hosts.close_all());
        return Err(CliError::Message(why));
    }
    if let Err(e) = check_observation(&t, &observed, flags) {
        rt.block_on(live.hosts.close_all());
        return Err(e);
    }
    let mut opts = plan_options(&flags.allow_unreachable, replace, state.as_ref());
    opts.rebind_min_not_ready_secs = flags.rebind_min_not_ready;
    let mut result = plan::plan(&t, &observed, &opts);
    if let Ok(p) = &mut result {
        p.warnings.extend(notes);
        if let Some(why) = &interrupted {
            p.warnings.push(format!(
                "{why}. Run `k3splan apply`: it plans what is left and records the result, even when no change is left"
            ));
        }
    }
    out(render_result(&result, json, color_out).as_bytes())?;
    let incomplete = result.as_ref().is_ok_and(|p| !p.is_complete());
    if incomplete && save.is_some() && !json {
        out(b"\nThe plan is incomplete: it was not saved.\n")?;
    }
    if let (Some(path), Ok(p), false) = (save, &result, incomplete) {
        let saved = SavedPlan {
            format_version: SAVED_PLAN_VERSION,
            k3splan_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::state::now_rfc3339(),
            config_digest: config_digest(&t),
            observed_digest: observed_digest(&observed),
            state_serial: state.as_ref().map(|s| s.serial),
            state_lineage: state.as_ref().map(|s| s.lineage.clone()),
            allow_unreachable: flags.allow_unreachable.clone(),
            replace: opts.replace.iter().cloned().collect(),
            plan: p.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&saved).expect("plan serializes");
        bytes.push(b'\n');
        write_atomic_private(path, &bytes)?;
        if !json {
            out(format!(
                "\nSaved the plan to: {}\nTo perform exactly these actions, run: k3splan apply {}\n",
                path.display(),
                path.display()
            )
            .as_bytes())?;
        }
    }
    rt.block_on(live.hosts.close_all());
    match &result {
        Err(_) => Ok(EXIT_ERROR),
        // Sources were not read: never "no changes", with or without --detailed-exitcode.
        Ok(p) if !p.is_complete() => Ok(EXIT_ERROR),
        // An interrupted apply is something to do (its result is not recorded): never 0.
        Ok(_) if detailed && interrupted.is_some() => Ok(super::EXIT_CHANGES),
        Ok(_) if detailed => Ok(render::detailed_exitcode(&result) as u8),
        Ok(_) => Ok(EXIT_OK),
    }
}

fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| CliError::Message(format!("invalid duration \"{s}\" (e.g. 30s, 5m)")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(CliError::Message(format!(
                "invalid duration \"{s}\" (e.g. 30s, 5m)"
            )));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// `k3splan apply`.
pub fn cmd_apply(
    g: &GlobalArgs,
    flags: &LiveFlags,
    plan_file: Option<&Path>,
    auto_approve: bool,
    lock_timeout: &str,
) -> Result<u8, CliError> {
    let color_err = use_color(g.no_color, io::stderr().is_terminal());
    let color_out = use_color(g.no_color, io::stdout().is_terminal());
    let loaded = load_valid(&g.config, color_err)?;
    let t = loaded.topology.expect("valid topology");
    let requested = replace_targets(&t, &flags.replace)?;
    let backend = state_backend(g, Some(&t))?;
    // The lock first: nothing is observed or changed before this run owns the state.
    let lock = backend.lock(
        LockInfo::for_operation("apply"),
        parse_duration(lock_timeout)?,
    )?;
    let mut state = backend.read()?.unwrap_or_else(|| State::new(random_id()));
    let saved: Option<SavedPlan> = match plan_file {
        Some(p) => Some(read_saved_plan(p)?),
        None => None,
    };
    if saved.is_some() && !requested.is_empty() {
        return Err(CliError::Message(
            "-replace cannot be combined with a saved plan: the plan file records its replacements; pass -replace to `k3splan plan -out FILE` instead".into(),
        ));
    }
    if let Some(j) = &state.journal
        && let Some(k) = j.first_unfinished()
    {
        let s = &j.steps[k];
        out(format!(
            "The previous apply (plan {}) stopped at step {} of {}: {} ({:?}{}).\nResuming: the cluster is observed again and only what is left is planned; finished steps are not repeated.\n\n",
            j.plan_id,
            k + 1,
            j.steps.len(),
            s.address,
            s.status,
            s.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        )
        .as_bytes())?;
    } else if let Some(j) = state.journal.as_ref().filter(|j| j.interrupted()) {
        out(format!(
            "The previous apply (plan {}) finished its {} steps but was stopped before it recorded the result.\nFinishing it: the cluster is observed again, what is left (if anything) is planned, and the result is recorded.\n\n",
            j.plan_id,
            j.steps.len()
        )
        .as_bytes())?;
    }
    let (replace, notes) = match &saved {
        Some(sp) => (sp.replace.iter().cloned().collect(), Vec::new()),
        None => resume_replacements(Some(&state), &requested),
    };
    for n in &notes {
        out(format!("{n}\n").as_bytes())?;
    }
    if let Some(sp) = &saved {
        if sp.config_digest != config_digest(&t) {
            return Err(CliError::Message(
                "Saved plan is stale: the configuration changed since the plan was made; nothing was changed. Run `k3splan plan` again.".into(),
            ));
        }
        if sp.state_serial != backend.read()?.map(|s| s.serial)
            || sp
                .state_lineage
                .as_deref()
                .is_some_and(|l| l != state.lineage)
        {
            return Err(CliError::Message(
                "Saved plan is stale: the state changed since the plan was made (another apply ran); nothing was changed. Run `k3splan plan` again.".into(),
            ));
        }
    }
    let rt = runtime()?;
    let mut live = live_for(&t, &g.config, flags, Some(&state))?;
    let observed = rt.block_on(live.observe());
    if let Some(why) = sources_unknown(&observed) {
        rt.block_on(live.hosts.close_all());
        return Err(CliError::Message(format!("{why}; nothing was changed")));
    }
    if let Err(e) = check_observation(&t, &observed, flags) {
        rt.block_on(live.hosts.close_all());
        return Err(e);
    }
    let allow: &[String] = match &saved {
        Some(s) => &s.allow_unreachable,
        None => &flags.allow_unreachable,
    };
    let mut opts = plan_options(allow, replace, Some(&state));
    // A saved plan keeps the threshold it was made with (it is part of its operations).
    opts.rebind_min_not_ready_secs = saved
        .as_ref()
        .and_then(|s| {
            s.plan
                .steps
                .iter()
                .flat_map(|st| &st.operations)
                .find_map(|op| match op {
                    plan::Operation::RebindVolume { evidence, .. }
                    | plan::Operation::RecreateWorkload { evidence, .. } => {
                        Some(evidence.min_not_ready_secs)
                    }
                    _ => None,
                })
        })
        .or(flags.rebind_min_not_ready);
    let result = plan::plan(&t, &observed, &opts);
    let plan = match (&result, &saved) {
        (Err(_), _) => {
            out(render_result(&result, false, color_out).as_bytes())?;
            return Ok(EXIT_ERROR);
        }
        (Ok(p), _) if !p.is_complete() => {
            out(render_result(&result, false, color_out).as_bytes())?;
            rt.block_on(live.hosts.close_all());
            return Err(CliError::Message(
                "the plan is incomplete (declared sources could not be read); nothing was changed"
                    .into(),
            ));
        }
        (Ok(p), Some(sp)) => {
            if plan_id(p) != plan_id(&sp.plan) {
                return Err(CliError::Message(
                    "Saved plan is stale: the cluster changed since the plan was made, and planning again gives different steps; nothing was changed. Run `k3splan plan` again.".into(),
                ));
            }
            sp.plan.clone()
        }
        (Ok(p), None) => p.clone(),
    };
    if plan.steps.is_empty() {
        out(render_result(&result, false, color_out).as_bytes())?;
        // An interrupted apply whose remaining steps are no longer needed: close its
        // journal (the state is written only then; a clean converged run writes nothing).
        // An interrupted apply — killed in a step whose remaining steps are no longer
        // needed, or after its last step but before it recorded the result — is finished
        // here: the journal is closed and what is managed is recorded.
        if state.journal.as_ref().is_some_and(|j| j.interrupted()) {
            if let Some(j) = state.journal.as_mut() {
                j.supersede(&crate::state::now_rfc3339());
            }
            record_managed(&mut state, &t, &observed);
            state.config_digest = Some(config_digest(&t));
            backend.write(&lock, &mut state)?;
            out(b"The interrupted apply is finished: nothing is left to change; its journal is closed and the result recorded.\n")?;
        } else if prune_cordons(&mut state, &observed) {
            // Stale cordon records (uncordoned by hand): dropped, so that a later
            // deliberate cordon is never taken for k3splan's.
            backend.write(&lock, &mut state)?;
        }
        rt.block_on(live.hosts.close_all());
        drop(lock);
        return Ok(EXIT_OK);
    }
    if saved.is_none() {
        out(render_result(&Ok(plan.clone()), false, color_out).as_bytes())?;
    }
    if !auto_approve && !approve()? {
        out(b"\nApply cancelled.\n")?;
        return Ok(EXIT_ERROR);
    }
    out(b"\n")?;
    let snapshot_dir = backend
        .local_path()
        .and_then(Path::parent)
        .map(|p| p.join("snapshots"))
        .unwrap_or_else(|| base_dir(&g.config).join("snapshots"));
    let exec = Executor {
        live: &live,
        waits: Waits::default(),
        snapshot_dir,
    };
    let mut view = super::view::HumanApplyView {
        out: Box::new(io::stdout()),
        color: color_out,
    };
    let r = rt.block_on(apply::run_plan(
        &exec,
        &plan,
        &opts
            .replace
            .union(&replacements_in_progress(Some(&state)))
            .cloned()
            .collect(),
        &backend,
        &lock,
        &mut state,
        &mut view,
    ));
    if let Err(e) = r {
        rt.block_on(live.hosts.close_all());
        return Err(CliError::Message(e.to_string()));
    }
    // Record what is managed now, from a fresh look.
    let after = rt.block_on(live.observe());
    record_managed(&mut state, &t, &after);
    state.config_digest = Some(config_digest(&t));
    if let Some(j) = state.journal.as_mut() {
        j.finished_at = Some(crate::state::now_rfc3339());
    }
    test_hold("before-final-write");
    backend.write(&lock, &mut state)?;
    rt.block_on(live.hosts.close_all());
    let s = plan.summary();
    out(format!(
        "\nApply complete! Resources: {} added, {} changed, {} removed. State serial {}.\n",
        s.add, s.change, s.remove, state.serial
    )
    .as_bytes())?;
    Ok(EXIT_OK)
}

fn approve() -> Result<bool, CliError> {
    out(b"\nDo you want to perform these actions?\n  k3splan will perform the actions described above, in order.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")?;
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::Output)?;
    Ok(line.trim() == "yes")
}

fn read_saved_plan(p: &Path) -> Result<SavedPlan, CliError> {
    let bytes = std::fs::read(p).map_err(|source| CliError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    let sp: SavedPlan = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Message(format!("{}: not a k3splan saved plan: {e}", p.display()))
    })?;
    if sp.format_version != SAVED_PLAN_VERSION {
        return Err(CliError::Message(format!(
            "{}: saved plan format {} is not supported (expected {SAVED_PLAN_VERSION})",
            p.display(),
            sp.format_version
        )));
    }
    Ok(sp)
}

/// `k3splan show [FILE]`: a saved plan, or the state.
pub fn cmd_show(g: &GlobalArgs, plan_file: Option<&Path>, json: bool) -> Result<u8, CliError> {
    let color_out = use_color(g.no_color, io::stdout().is_terminal());
    match plan_file {
        Some(p) => {
            let sp = read_saved_plan(p)?;
            out(render_result(&Ok(sp.plan), json, color_out).as_bytes())?;
        }
        None => {
            let backend = state_backend(g, topology_if_valid(g).as_ref())?;
            match backend.read()? {
                Some(s) => {
                    let text = if json {
                        serde_json::to_string_pretty(&s).expect("state serializes") + "\n"
                    } else {
                        let mut t = format!(
                            "# state {} (serial {}, lineage {})\n",
                            backend.location(),
                            s.serial,
                            s.lineage
                        );
                        for a in s.addresses() {
                            t.push_str(&format!("{a}\n"));
                        }
                        if let Some(snap) = &s.last_snapshot {
                            t.push_str(&format!(
                                "last etcd snapshot: {} ({} bytes, sha256 {}, {})\n",
                                snap.path, snap.size, snap.sha256, snap.taken_at
                            ));
                        }
                        t
                    };
                    out(text.as_bytes())?;
                }
                None => out(b"No state.\n")?,
            }
        }
    }
    Ok(EXIT_OK)
}

/// `k3splan state list|show`.
pub fn cmd_state(g: &GlobalArgs, show: Option<&str>) -> Result<u8, CliError> {
    let backend = state_backend(g, topology_if_valid(g).as_ref())?;
    let Some(s) = backend.read()? else {
        return Err(CliError::Message(format!(
            "no state at {}",
            backend.location()
        )));
    };
    match show {
        None => {
            for a in s.addresses() {
                out(format!("{a}\n").as_bytes())?;
            }
        }
        Some(addr) => match s.show(addr) {
            Some(v) => {
                out(format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes())?
            }
            None => {
                return Err(CliError::Message(format!(
                    "no object at address {addr} in the state"
                )));
            }
        },
    }
    Ok(EXIT_OK)
}

/// `k3splan force-unlock ID`.
pub fn cmd_force_unlock(g: &GlobalArgs, id: &str) -> Result<u8, CliError> {
    let backend = state_backend(g, topology_if_valid(g).as_ref())?;
    backend.force_unlock(id)?;
    Ok(EXIT_OK)
}

impl From<crate::state::StateError> for CliError {
    fn from(e: crate::state::StateError) -> Self {
        CliError::Message(e.to_string())
    }
}
