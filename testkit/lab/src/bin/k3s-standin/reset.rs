//! `k3s server --cluster-reset [--cluster-reset-restore-path=SNAPSHOT]`: quorum-loss recovery
//! (issue 16), as k3s does it.
//!
//! Real k3s (k3s-io/k3s `pkg/cluster/managed.go`, `Cluster.start`; `pkg/etcd/etcd.go`,
//! `ETCD.Reset` and `ETCD.Restore`):
//! - with `--cluster-reset` and no restore path, when `<data-dir>/server/db/reset-flag` exists,
//!   it fails with "Managed etcd cluster membership was previously reset, please remove the
//!   cluster-reset flag and start k3s normally. If you need to perform another cluster reset,
//!   you must first manually delete the <reset-flag> file";
//! - with a restore path (checked to exist and be a file), the etcd data dir is renamed
//!   `<etcd>-old-<unix>` ("Pre-restore etcd database moved to …") and the snapshot restored
//!   into a new data dir as a one-member cluster;
//! - then `setName(true)` gives the member a new name, the reset-flag file is written, and etcd
//!   starts with `--force-new-cluster` on the data (`newCluster(ctx, true)`);
//! - once the member is the only one and healthy, it logs "Etcd is running, restart without
//!   --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server
//!   and rejoin the nodes" and exits 0;
//! - the next normal start removes the reset-flag.

use super::*;

/// What real k3s logs when the reset is done (k3s-io/k3s `pkg/etcd/etcd.go`, `ETCD.Reset`).
pub(super) const RESET_DONE: &str = "Etcd is running, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes";

pub(super) fn reset_flag(data_dir: &str) -> String {
    format!("{data_dir}/server/db/reset-flag")
}

/// Runs the reset in the foreground and exits (0 once the member is a one-member cluster).
pub(super) fn cluster_reset(lab: &HostConfig, s: &Settings, hostname: &str) -> ! {
    if s.disable_etcd {
        fatal("--cluster-reset requires embedded etcd (this server has disable-etcd)");
    }
    let flag = reset_flag(&s.data_dir);
    let etcd_dir = format!("{}/server/db/etcd", s.data_dir);
    if s.cluster_reset_restore_path.is_none() && Path::new(&flag).exists() {
        fatal(&format!(
            "Managed etcd cluster membership was previously reset, please remove the cluster-reset flag and start k3s normally. If you need to perform another cluster reset, you must first manually delete the {flag} file"
        ));
    }
    let t = ensure_tls(&s.data_dir);
    let peer = format!("https://{}:2380", s.node_ip);
    let name = format!("{hostname}-{}", random_hex8());
    if let Some(path) = &s.cluster_reset_restore_path {
        match fs::metadata(path) {
            Err(_) => fatal(&format!("etcd: snapshot path does not exist: {path}")),
            Ok(m) if m.is_dir() => fatal(&format!(
                "etcd: snapshot path must be a file, not a directory: {path}"
            )),
            Ok(_) => {}
        }
        if Path::new(&etcd_dir).exists() {
            let old = format!("{etcd_dir}-old-{}", unix_now());
            if let Err(e) = fs::rename(&etcd_dir, &old) {
                fatal(&format!("moving {etcd_dir} to {old}: {e}"));
            }
            log("info", &format!("Pre-restore etcd database moved to {old}"));
        }
        let out = Command::new(&lab.etcdctl_bin)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore", path])
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={etcd_dir}"))
            .arg(format!("--initial-cluster={name}={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fatal(&format!("running {}: {e}", lab.etcdctl_bin)));
        if !out.status.success() {
            fatal(&format!(
                "etcd: restoring snapshot {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        log(
            "info",
            &format!("Restored etcd snapshot {path} into {etcd_dir}"),
        );
    } else if !Path::new(&etcd_dir).join("member").is_dir() {
        fatal(&format!(
            "--cluster-reset: {etcd_dir} holds no etcd data (no member/ dir): real k3s would start a new empty cluster here; the lab stand-in refuses"
        ));
    }
    // setName(true): a new member name, written to the name file.
    let _ = fs::set_permissions(&etcd_dir, fs::Permissions::from_mode(0o700));
    if let Err(e) = fs::write(format!("{etcd_dir}/name"), &name) {
        fatal(&format!("writing {etcd_dir}/name: {e}"));
    }
    if let Err(e) = fs::write(&flag, b"") {
        fatal(&format!("writing {flag}: {e}"));
    }
    let _ = fs::set_permissions(&flag, fs::Permissions::from_mode(0o600));
    let plan = EtcdPlan {
        name: name.clone(),
        initial_cluster: format!("{name}={peer}"),
        state: "new",
    };
    let cfg = write_etcd_config(lab, s, &t, &plan);
    // etcd 3.4 ignores command-line flags when --config-file is given: the reset run's
    // config carries `force-new-cluster`, the one written afterwards does not.
    let _ = fs::OpenOptions::new()
        .append(true)
        .open(&cfg)
        .and_then(|mut f| f.write_all(b"force-new-cluster: true\n"));
    log(
        "info",
        &format!("Resetting etcd to a one-member cluster (force-new-cluster) as member {name}"),
    );
    let mut etcd = Some(spawn_etcd(lab, &cfg, &s.data_dir, "k3s"));
    let ep = format!("https://{}:2379", s.node_ip);
    let deadline = Instant::now() + Duration::from_secs(lab.start_timeout_secs.max(30));
    loop {
        check_term(&mut etcd, "k3s");
        if let Some(c) = etcd.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            let tail_log = tail(&format!("{}/server/db/etcd.log", s.data_dir), 30);
            fatal(&format!("etcd exited ({st}): {}", last_line(&tail_log)));
        }
        if Instant::now() > deadline {
            fatal("--cluster-reset: etcd did not come up as a one-member cluster in time");
        }
        if let Ok((_, leader, _, _, _)) = endpoint_status(lab, &t, &ep)
            && leader != 0
            && let Ok(members) = member_list(lab, &t, &ep)
            && members.len() == 1
        {
            let m = &members[0];
            let ours = m["peerURLs"]
                .as_array()
                .is_some_and(|p| p.iter().any(|u| u.as_str() == Some(peer.as_str())));
            if !ours {
                // k3s: "make sure that peer ips are updated to the node ip".
                let id = m["ID"].as_u64().unwrap_or(0);
                if let Err(e) = etcdctl(
                    lab,
                    &t,
                    &ep,
                    &[
                        "member",
                        "update",
                        &format!("{id:x}"),
                        &format!("--peer-urls={peer}"),
                    ],
                ) {
                    log("warning", &format!("failed to update peer url: {e}"));
                }
            } else {
                break;
            }
        } else if let Ok(members) = member_list(lab, &t, &ep)
            && members.len() > 1
        {
            log(
                "warning",
                "failed to update peer url: etcd still has more than one member",
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The next normal start reads this config: no force-new-cluster any more.
    write_etcd_config(lab, s, &t, &plan);
    log("info", RESET_DONE);
    if let Some(c) = etcd.as_mut() {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let stop = Instant::now() + Duration::from_secs(10);
        while Instant::now() < stop {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = fs::remove_file(hostcfg::etcd_pid_file("k3s"));
    std::process::exit(0)
}
