//! `k3splan import [--out DIR] [--force]` (issue 18): writes the topology of a running
//! cluster and records it in a new state.
//!
//! How the cluster is reached: when `--config` loads as a topology, its cluster block says
//! how (kubeconfig, ssh, host layout, install command, etcd TLS files) and its nodes are the
//! hosts to dial first — an inventory, nothing more: what the cluster *is* (nodes, roles,
//! VIP, primary, storage, add-ons) comes only from the observation. Without one, the
//! kubeconfig (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`) and the `--etcd-*` files are
//! used with default SSH settings. The etcd TLS flags override the configuration's.
//!
//! It observes as `plan` does, twice: once with what it was given, then with the imported
//! nodes declared and the namespaces of every local-path PVC read (so that every etcd
//! member, every host and every pod mounting a local volume is seen). The topology is
//! written to `DIR/cluster.hcl` (refused when it exists, unless `--force`), formatted,
//! loaded back through the loader (an import that does not load is a bug, reported as
//! such), and the imported objects are recorded in a new state (serial 1, a new lineage),
//! refused when a state exists unless `--force`. TODOs and what was not imported go to
//! stderr; secrets are never written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k3splan_engine::state::{Backend as _, LockInfo, random_id};

use crate::apply::{config_digest, record_managed};
use crate::config::{self, OnNodeLoss, StorageBinding, Topology, WorkloadKind};
use crate::import::{ImportSettings, import};
use crate::observed::Observed;
use crate::state::{State, StateBackend};

use super::args::{GlobalArgs, ImportArgs};
use super::ops::{Session, state_backend};
use super::view::Palette;
use super::{CliError, EXIT_OK, out};

/// The file import writes in its output directory.
pub const IMPORT_FILE: &str = "cluster.hcl";

/// `k3splan import`.
pub fn cmd_import(g: &GlobalArgs, a: &ImportArgs, _palette: Palette) -> Result<u8, CliError> {
    let dir = a.out.clone().unwrap_or_else(|| PathBuf::from("."));
    let file = dir.join(IMPORT_FILE);
    if file.exists() && !a.force {
        return Err(CliError::Import(format!(
            "{} exists: import does not overwrite a topology (pass --force to replace it, or --out another directory)",
            file.display()
        )));
    }
    let access = access_topology(g, a)?;
    // The state is locked and checked before anything is read: a refused import changes
    // nothing, and no apply runs meanwhile.
    let backend = state_backend(g, Some(&access))?;
    let lock = backend.lock(LockInfo::for_operation("import"), Duration::ZERO)?;
    let existing = backend.read()?;
    if let Some(s) = &existing {
        if !a.force {
            return Err(CliError::Import(format!(
                "a state exists at {} (serial {}, lineage {}): k3splan already manages this cluster. Pass --force to replace it with a new state (a new lineage), or use another --state",
                backend.location(),
                s.serial,
                s.lineage
            )));
        }
        if !matches!(backend, StateBackend::Local(_)) {
            return Err(CliError::Import(format!(
                "--force replaces a local state file only; the state at {} (lineage {}) is in etcd: delete its key first (etcdctl del), then import",
                backend.location(),
                s.lineage
            )));
        }
    }
    let settings = settings_of(&access, a);

    // First look, with what was given.
    let o0 = observe(g, a, &access)?;
    // Second look: the imported nodes declared (every member and host dialled, the members'
    // client URLs read) and the pods of every namespace holding a local-path PVC.
    let first = import(&o0, &settings);
    let mut second = config::load::load_str("imported.hcl", &first.hcl)
        .topology
        .unwrap_or_else(|| access.clone());
    second.storage = local_pvc_namespaces(&o0)
        .into_iter()
        .map(|ns| StorageBinding {
            namespace: ns,
            name: "-".into(),
            kind: WorkloadKind::StatefulSet,
            on_node_loss: OnNodeLoss::Keep,
            prefer_nodes: vec![],
        })
        .collect();
    let o = observe(g, a, &second)?;
    let mut imported = import(&o, &settings);
    // Hosts of the inventory that are not part of the cluster were seen in the first look
    // only (the second declares the imported nodes).
    for n in first.notes {
        if !imported.notes.contains(&n) {
            imported.notes.push(n);
        }
    }

    let loaded = config::load::load_str(&file.display().to_string(), &imported.hcl);
    let Some(t) = loaded.topology.filter(|_| !loaded.diagnostics.has_errors()) else {
        return Err(CliError::Import(format!(
            "the imported topology does not load (a bug in import; nothing was written):\n{}\n{}",
            loaded.diagnostics.render(false),
            imported.hcl
        )));
    };

    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        path: dir.clone(),
        source,
    })?;
    k3splan_engine::atomic::write_atomic(
        &file,
        imported.hcl.as_bytes(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .map_err(|source| CliError::Io {
        path: file.clone(),
        source,
    })?;

    // --force: the old state file is kept beside, and the new one starts a new lineage
    // (the backend refuses to write another lineage over a state file, by design).
    let mut replaced = None;
    if let (Some(old), StateBackend::Local(l)) = (&existing, &backend) {
        let aside = l
            .path()
            .with_extension(format!("json.replaced-{}", old.lineage));
        std::fs::rename(l.path(), &aside).map_err(|source| CliError::Io {
            path: l.path().to_path_buf(),
            source,
        })?;
        replaced = Some(aside);
    }
    let mut state = State::new(random_id());
    record_managed(&mut state, &t, &o);
    state.config_digest = Some(config_digest(&t));
    backend.write(&lock, &mut state)?;
    drop(lock);

    let mut err = io::stderr().lock();
    let others: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "hcl") && *p != file)
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    if !others.is_empty() {
        let _ = writeln!(
            err,
            "Warning: {} also holds {}: `k3splan plan -c {}` would read them together with {IMPORT_FILE}; plan with `-c {}`",
            dir.display(),
            others.join(", "),
            dir.display(),
            file.display()
        );
    }
    if let Some(p) = &replaced {
        let _ = writeln!(err, "note: the previous state was moved to {}", p.display());
    }
    for n in &imported.notes {
        let _ = writeln!(err, "note: {n}");
    }
    for t in &imported.todos {
        let _ = writeln!(err, "TODO: {t}");
    }
    out(format!(
        "Imported {} node(s), {} storage binding(s), {} add-on(s) into {}.\nRecorded them in the state at {} (serial {}, lineage {}).\n{}Next: review {}, then `k3splan plan -c {}`.\n",
        t.nodes.len(),
        t.storage.len(),
        t.addons.len(),
        file.display(),
        backend.location(),
        state.serial,
        state.lineage,
        match imported.todos.len() {
            0 => String::new(),
            n => format!("{n} thing(s) could not be known: see the TODO comments (also listed on stderr).\n"),
        },
        file.display(),
        file.display(),
    )
    .as_bytes())?;
    Ok(EXIT_OK)
}

/// How to reach the cluster: the `--config` topology when it loads, else a cluster block
/// built from the flags (no nodes).
fn access_topology(g: &GlobalArgs, a: &ImportArgs) -> Result<Topology, CliError> {
    let loaded = config::load_path(&g.config, config::process_env())
        .ok()
        .filter(|l| !l.diagnostics.has_errors())
        .and_then(|l| l.topology);
    let mut t = match loaded {
        Some(t) => t,
        None => {
            let src = "cluster \"imported\" {\n}\nnode \"placeholder\" {\n  address = \"127.0.0.1\"\n  roles = [\"server\"]\n}\n";
            let mut t = config::load::load_str("import.hcl", src)
                .topology
                .expect("the skeleton loads");
            t.nodes.clear();
            t
        }
    };
    if let Some(k) = &a.kubeconfig {
        t.cluster.kubeconfig = Some(k.clone());
    }
    match (&a.etcd_ca, &a.etcd_cert, &a.etcd_key) {
        (Some(ca), Some(cert), Some(key)) => {
            t.cluster.etcd.ca_file = Some(ca.clone());
            t.cluster.etcd.cert_file = Some(cert.clone());
            t.cluster.etcd.key_file = Some(key.clone());
        }
        (None, None, None) => {}
        _ => {
            return Err(CliError::Import(
                "--etcd-ca, --etcd-cert and --etcd-key go together: give all three or none".into(),
            ));
        }
    }
    Ok(t)
}

/// What the written topology says about reaching the cluster (not what the cluster is).
fn settings_of(t: &Topology, a: &ImportArgs) -> ImportSettings {
    let path = |p: &Path| p.display().to_string();
    let c = &t.cluster;
    let etcd_tls = match (&c.etcd.ca_file, &c.etcd.cert_file, &c.etcd.key_file) {
        (Some(ca), Some(cert), Some(key)) => Some([path(ca), path(cert), path(key)]),
        _ => None,
    };
    ImportSettings {
        cluster_name: if c.name.is_empty() {
            "imported".into()
        } else {
            c.name.clone()
        },
        kubeconfig: a
            .kubeconfig
            .as_deref()
            .or(c.kubeconfig.as_deref())
            .map(path),
        kube_context: c.kube_context.clone(),
        etcd_tls,
        install_command: c.install_command.clone(),
        ssh: Some(c.ssh.clone()).filter(|s| *s != config::SshSettings::default()),
        node_ssh: t
            .nodes
            .iter()
            .filter(|n| n.ssh != c.ssh)
            .map(|n| (n.name.clone(), n.ssh.clone()))
            .collect(),
        host: Some(c.host.clone()),
    }
}

/// One observation, with the checks `plan` makes (the API and etcd must be read).
fn observe(g: &GlobalArgs, a: &ImportArgs, t: &Topology) -> Result<Observed, CliError> {
    // The keepalived manifest is read only where a `vip` block says it is: without one,
    // look at k3s's static pod directory (the values come from the manifests, never from
    // this placeholder; 192.0.2.1 is TEST-NET-1, reached by nothing).
    let mut t = t.clone();
    if t.cluster.vip.is_none() {
        t.cluster.vip = Some(config::Vip {
            address: "192.0.2.1".parse().expect("an address"),
            interface: "lo".into(),
            router_id: 1,
            password: None,
            manifest_path: config::DEFAULT_VIP_MANIFEST.into(),
        });
    }
    let t = &t;
    let mut session = Session::new(t, &g.config, &a.live(), None)?;
    // The storage blocks of the second look name namespaces, not workloads.
    session.live.read_whole_namespace_pods();
    let o = session.observe();
    drop(session);
    let unread: Vec<String> = [o.kube.unknown_reason(), o.etcd.unknown_reason()]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    // Without a declared etcd node there is no etcd endpoint yet: the first look may
    // miss etcd; the second (with the imported nodes) must not.
    if o.kube.unknown_reason().is_some() || (!t.nodes.is_empty() && !unread.is_empty()) {
        return Err(CliError::Import(format!(
            "the cluster could not be read, so nothing was imported (no file, no state): {}",
            unread.join("; ")
        )));
    }
    Ok(o)
}

/// Namespaces holding a PVC pinned to a node (a local-path volume).
fn local_pvc_namespaces(o: &Observed) -> Vec<String> {
    let mut v: Vec<String> = o
        .kube
        .known()
        .map(|k| {
            k.pvcs
                .iter()
                .filter(|p| {
                    p.bound_node.is_some() || p.storage_class.as_deref() == Some("local-path")
                })
                .map(|p| p.namespace.clone())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}
