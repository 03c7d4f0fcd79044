//! The daemon (`k3s server` / `k3s agent`): etcd, the Node, learners, and the tombstone loop.

use super::*;

pub(super) fn mark_failed(unit: &str, reason: &str) {
    let _ = fs::write(hostcfg::failed_file(unit), format!("{reason}\n"));
}

pub(super) fn server(args: &[String], agent: bool) -> ! {
    let unit = if agent { "k3s-agent" } else { "k3s" };
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    let lab = lab_config();
    let s = settings(args, &lab);
    let version = installed_version();
    log(
        "info",
        &format!(
            "Starting k3s {} {version} (lab stand-in) node={} ip={}",
            if agent { "agent" } else { "server" },
            s.node_name,
            s.node_ip
        ),
    );
    if !agent {
        check_server_skew(&lab, &s.node_name, &version);
    }
    let mut etcd: Option<Child> = None;
    let mut tls = None;
    let mut member_name = String::new();
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| s.node_name.clone());
    if !agent && s.cluster_reset {
        cluster_reset(&lab, &s, &hostname);
    }
    if !agent && s.cluster_reset_restore_path.is_some() {
        fatal("--cluster-reset-restore-path requires --cluster-reset");
    }
    // k3s-io/k3s pkg/cluster/managed.go `Cluster.start`: a normal start removes the reset-flag.
    if !agent && fs::remove_file(reset_flag(&s.data_dir)).is_ok() {
        log(
            "info",
            "Removed the cluster-reset flag file: starting normally after a reset",
        );
    }

    if agent {
        let Some(url) = s.server.clone() else {
            fatal("--server is required for the agent (K3S_URL)")
        };
        if let Err(e) = wait_probe(&url, 3) {
            fatal(&format!("starting kubernetes: preparing agent: {e}"));
        }
    } else if s.disable_etcd {
        // Control-plane-only server: its datastore is the etcd of the server it names
        // (seed 001: this is why such a node cannot start when that server is dead).
        let Some(url) = s.server.clone() else {
            fatal("starting kubernetes: preparing server: --disable-etcd requires --server")
        };
        let t = ensure_tls(&s.data_dir);
        if let Err(e) = wait_probe(&url, 3) {
            fatal(&format!("starting kubernetes: preparing server: {e}"));
        }
        let ep = format!("https://{}:2379", url_host(&url).unwrap_or_default());
        if let Err(e) = endpoint_status(&lab, &t, &ep) {
            fatal(&format!(
                "starting kubernetes: preparing server: failed to test data store connection {ep}: {e}"
            ));
        }
        tls = Some(t);
    } else {
        let t = ensure_tls(&s.data_dir);
        regenerate_rotated(&s.data_dir);
        let etcd_dir = format!("{}/server/db/etcd", s.data_dir);
        let tomb = Path::new(&etcd_dir).join("tombstone");
        let move_aside = |why: &str| {
            let to = format!("{}/server/db/etcd-backup-{}", s.data_dir, unix_now());
            log(
                "info",
                &format!("Moving etcd data dir {etcd_dir} to {to} ({why})"),
            );
            if let Err(e) = fs::rename(&etcd_dir, &to) {
                fatal(&format!("moving {etcd_dir} to {to}: {e}"));
            }
        };
        if tomb.exists() {
            if s.server.is_some() || s.cluster_init {
                move_aside("this member was removed from the cluster: tombstone found");
            } else {
                fatal(&format!(
                    "etcd data dir {etcd_dir} holds a tombstone (member removed) and neither server nor cluster-init is set"
                ));
            }
        }
        let initialized = Path::new(&etcd_dir).join("member").is_dir();
        let own_name = (!initialized && s.server.is_some()).then(|| set_name(&etcd_dir, &hostname));
        let cfg_path = if initialized {
            log(
                "info",
                "Managed etcd cluster bootstrap already complete and initialized",
            );
            if let Some(url) = &s.server
                && let Err(e) = probe_supervisor(url)
            {
                log(
                    "warning",
                    &format!(
                        "Cluster CA certs could not be retrieved ({e}); starting from local etcd data"
                    ),
                );
            }
            member_name = fs::read_to_string(format!("{etcd_dir}/name"))
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            let p = format!("{etcd_dir}/config");
            if !Path::new(&p).exists() {
                fatal(&format!(
                    "etcd data dir {etcd_dir} is initialized but has no config file {p}"
                ));
            }
            // k3s writes etcd's options at every start: `force-new-cluster` only during a
            // `--cluster-reset` (reset.rs). A reset killed before it finished leaves it in
            // the file: a normal start drops it.
            if let Ok(c) = fs::read_to_string(&p)
                && c.contains("force-new-cluster")
            {
                let kept: String = c
                    .lines()
                    .filter(|l| !l.starts_with("force-new-cluster"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = fs::write(&p, kept);
            }
            p
        } else if let Some(url) = s.server.clone() {
            let own_name = own_name.unwrap_or_else(|| set_name(&etcd_dir, &hostname));
            let plan = join_plan(&lab, &s, &t, &url, &own_name);
            member_name = plan.name.clone();
            write_etcd_config(&lab, &s, &t, &plan)
        } else if s.cluster_init {
            let name = format!("{hostname}-{}", random_hex8());
            let plan = EtcdPlan {
                initial_cluster: format!("{name}=https://{}:2380", s.node_ip),
                name: name.clone(),
                state: "new",
            };
            log(
                "info",
                &format!("Starting a new etcd cluster (cluster-init) as member {name}"),
            );
            member_name = name;
            write_etcd_config(&lab, &s, &t, &plan)
        } else {
            fatal(
                "neither cluster-init nor server is set on an empty data dir: real k3s would start a single-node SQLite (kine) datastore; the lab stand-in supports embedded etcd only",
            )
        };
        etcd = Some(spawn_etcd(&lab, &cfg_path, &s.data_dir, unit));
        tls = Some(t);
    }

    let ep = format!("https://{}:2379", s.node_ip);
    // Wait for the datastore: our member has a leader.
    if let Some(t) = &tls
        && etcd.is_some()
    {
        let started = Instant::now();
        let mut stale_checked = false;
        loop {
            check_term(&mut etcd, unit);
            check_lab(&lab, &mut etcd, unit);
            if let Some(c) = etcd.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                let tail_log = tail(&format!("{}/server/db/etcd.log", s.data_dir), 30);
                if tail_log.contains("has been permanently removed from the cluster")
                    || tail_log.contains("the member has been permanently removed")
                {
                    tombstone_loop(&s, unit, &mut etcd);
                }
                fatal(&format!("etcd exited ({st}): {}", last_line(&tail_log)));
            }
            match endpoint_status(&lab, t, &ep) {
                Ok((_, leader, _, _, _)) if leader != 0 => break,
                Ok(_) | Err(_) => {}
            }
            if !stale_checked
                && started.elapsed() > Duration::from_secs(5)
                && let Some(url) = &s.server
            {
                let theirs = format!("https://{}:2379", url_host(url).unwrap_or_default());
                let peer = format!("https://{}:2380", s.node_ip);
                if let Ok(members) = member_list(&lab, t, &theirs) {
                    stale_checked = true;
                    let listed = members.iter().any(|m| {
                        m["peerURLs"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(|u| u.as_str() == Some(peer.as_str())))
                    });
                    if !listed {
                        let ids = match (
                            endpoint_status(&lab, t, &ep),
                            endpoint_status(&lab, t, &theirs),
                        ) {
                            (Ok((_, _, mine, _, _)), Ok((_, _, other, _, _))) => {
                                format!(" (cluster ID {mine:x}; {url} is in cluster {other:x})")
                            }
                            _ => String::new(),
                        };
                        let reason = format!(
                            "etcd data dir {}/server/db/etcd belongs to another cluster{ids}: this member ({peer}) is not in the member list of {url}, and etcd keeps dialing the peers of its old cluster",
                            s.data_dir
                        );
                        log("error", &reason);
                        mark_failed(unit, &reason);
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(3) {
                log(
                    "info",
                    &format!(
                        "Failed to test data store connection: etcd member at {ep} has no leader yet"
                    ),
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        log("info", &format!("etcd member {member_name} is up at {ep}"));
        if s.cluster_init
            && s.server.is_none()
            && let Some(tok) = &s.token
            && etcdctl(&lab, t, &ep, &["get", TOKEN_KEY, "--print-value-only"])
                .is_ok_and(|v| v.trim().is_empty())
            && let Err(e) = etcdctl(&lab, t, &ep, &["put", TOKEN_KEY, &token_hash(tok)])
        {
            log("warning", &format!("storing the token hash: {e}"));
        }
    }

    if !agent
        && !s.disable_apiserver
        && let Err(e) = start_supervisor(&s.node_ip, &lab.kube_url)
    {
        log(
            "warning",
            &format!("supervisor/API proxy on :6443 not started: {e}"),
        );
    }

    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", s.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "k3s"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    if !agent {
        if !s.disable_apiserver {
            labels.insert(
                "node-role.kubernetes.io/control-plane".into(),
                json!("true"),
            );
            labels.insert("node-role.kubernetes.io/master".into(), json!("true"));
        }
        if !s.disable_etcd {
            labels.insert("node-role.kubernetes.io/etcd".into(), json!("true"));
        }
    }
    for l in &s.node_labels {
        if let Some((k, v)) = l.split_once('=') {
            labels.insert(k.into(), json!(v));
        }
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert("k3s.io/internal-ip".into(), json!(s.node_ip));
    annotations.insert("k3s.io/hostname".into(), json!(hostname));
    if !agent && !s.disable_etcd {
        annotations.insert("etcd.k3s.cattle.io/node-name".into(), json!(member_name));
        annotations.insert("etcd.k3s.cattle.io/node-address".into(), json!(s.node_ip));
    }
    let node = NodeInfo {
        name: s.node_name.clone(),
        ip: s.node_ip.clone(),
        hostname: hostname.clone(),
        labels,
        annotations,
        version: version.clone(),
        ready_since: now_rfc3339(),
    };
    // `disable-agent`: k3s starts no agent, so no kubelet ever registers a Node for this
    // server (k3s-io/k3s pkg/cli/cmds/server.go: "Do not run a local agent and register a
    // local kubelet"; observed on k3s v1.21.3: such a server never has a Node object).
    let has_node = agent || !s.disable_agent;
    if has_node {
        let reg_deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match register_node(&lab, &node) {
                Ok(()) => break,
                Err(e) if Instant::now() > reg_deadline => fatal(&e),
                Err(e) => log("warning", &format!("registering node: {e}")),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        log(
            "info",
            &format!("k3s is up and running; Node {} registered", node.name),
        );
    } else {
        log(
            "info",
            "k3s is up and running; agent disabled (disable-agent): no kubelet, no Node",
        );
    }
    if !agent && !s.disable_apiserver {
        stage_and_apply(&lab, &s.data_dir);
    }
    let _ = fs::write(hostcfg::ready_file(unit), b"ready\n");

    let mut last_hb = Instant::now();
    let mut last_promote = Instant::now();
    let mut no_leader_since: Option<Instant> = None;
    loop {
        check_term(&mut etcd, unit);
        check_lab(&lab, &mut etcd, unit);
        if let Some(c) = etcd.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            let tail_log = tail(&format!("{}/server/db/etcd.log", s.data_dir), 30);
            if tail_log.contains("permanently removed") {
                let _ = fs::remove_file(hostcfg::ready_file(unit));
                tombstone_loop(&s, unit, &mut etcd);
            }
            fatal(&format!("etcd exited ({st}): {}", last_line(&tail_log)));
        }
        let mut datastore_ok = true;
        if let (Some(t), true) = (&tls, etcd.is_some()) {
            match endpoint_status(&lab, t, &ep) {
                Ok((me, leader, _, _, _)) if leader != 0 => {
                    no_leader_since = None;
                    if me == leader
                        && last_promote.elapsed() >= Duration::from_secs(lab.promote_secs)
                    {
                        last_promote = Instant::now();
                        manage_learners(&lab, t, &ep);
                    }
                }
                answer => {
                    datastore_ok = false;
                    // The clock starts only when etcd itself answers "no leader": its Status
                    // RPC needs no quorum and reports `leader: 0` at once (etcd-io/etcd
                    // server/etcdserver/api/v3rpc/maintenance.go, `Status`, which adds
                    // "etcdserver: no leader"). An unanswered `etcdctl` (a timeout of the
                    // forked client on an overloaded test machine) says nothing about the
                    // cluster; k3s's etcd client is in-process and has no such failure. It
                    // neither starts nor stops a clock already running.
                    no_leader_since = no_leader_since.or_else(|| answer.is_ok().then(Instant::now));
                    if let Some(since) = no_leader_since
                        && since.elapsed() > Duration::from_secs(lab.no_leader_exit_secs)
                    {
                        if let Some(c) = etcd.as_mut() {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        let _ = fs::remove_file(hostcfg::ready_file(unit));
                        fatal(&format!(
                            "leaderelection lost: etcd at {ep} has had no leader for {}s (quorum lost)",
                            lab.no_leader_exit_secs
                        ));
                    }
                }
            }
        }
        if has_node && datastore_ok && last_hb.elapsed() >= Duration::from_secs(lab.heartbeat_secs)
        {
            last_hb = Instant::now();
            heartbeat(&lab, &node);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(super) fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").to_string()
}

pub(super) fn manage_learners(lab: &HostConfig, tls: &Tls, ep: &str) {
    let Ok(members) = member_list(lab, tls, ep) else {
        return;
    };
    for m in members {
        if m["isLearner"].as_bool() != Some(true) {
            continue;
        }
        let id = m["ID"].as_u64().unwrap_or(0);
        let name = m["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            continue; // not started yet
        }
        match etcdctl(lab, tls, ep, &["member", "promote", &format!("{id:x}")]) {
            Ok(_) => log(
                "info",
                &format!("Promoted etcd learner {name} ({id:x}) to voter"),
            ),
            Err(e) => log(
                "info",
                &format!("Learner {name} ({id:x}) not promoted yet: {e}"),
            ),
        }
    }
}

pub(super) fn check_term(etcd: &mut Option<Child>, unit: &str) {
    if TERM.load(Ordering::SeqCst) {
        log("info", "Received SIGTERM, shutting down");
        if let Some(c) = etcd.as_mut() {
            // SAFETY: SIGTERM to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(hostcfg::ready_file(unit));
        let _ = fs::remove_file(hostcfg::etcd_pid_file(unit));
        std::process::exit(0);
    }
}

pub(super) fn check_lab(lab: &HostConfig, etcd: &mut Option<Child>, unit: &str) {
    if !pid_alive(lab.lab_pid as i32) {
        log(
            "info",
            &format!("lab process {} is gone; stopping", lab.lab_pid),
        );
        TERM.store(true, Ordering::SeqCst);
        check_term(etcd, unit);
    }
}

/// k3s after its member was removed: writes `server/db/etcd/tombstone`, loops on "Failed to
/// test data store connection" and never exits.
pub(super) fn tombstone_loop(s: &Settings, unit: &str, etcd: &mut Option<Child>) -> ! {
    let _ = fs::write(
        format!("{}/server/db/etcd/tombstone", s.data_dir),
        b"removed\n",
    );
    let reason =
        "this etcd member has been permanently removed from the cluster; tombstone written";
    log("error", reason);
    mark_failed(unit, reason);
    *etcd = None;
    let lab = lab_config();
    loop {
        check_term(etcd, unit);
        check_lab(&lab, etcd, unit);
        log(
            "error",
            "Failed to test data store connection: this server is a not a member of the etcd cluster (tombstone)",
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}
