//! The service manager (`service is-active|start|stop|restart UNIT`): pid files, start and stop.

use super::*;

pub(super) fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid)
}

pub(super) fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim().starts_with('Z')))
        .unwrap_or(false)
}

pub(super) fn read_pid(path: &str) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(super) fn unit_pid(unit: &str) -> Option<i32> {
    read_pid(&hostcfg::pid_file(unit)).filter(|p| pid_alive(*p))
}

pub(super) fn service(args: &[String]) -> i32 {
    let (Some(verb), Some(unit)) = (args.first(), args.get(1)) else {
        eprintln!("usage: service is-active|start|stop|restart k3s|k3s-agent");
        return 2;
    };
    let unit = unit.trim_end_matches(".service");
    if unit != "k3s" && unit != "k3s-agent" {
        eprintln!("Unit {unit}.service not found.");
        return if verb == "is-active" { 4 } else { 5 };
    }
    match verb.as_str() {
        "is-active" => {
            if unit_pid(unit).is_some() && Path::new(&hostcfg::ready_file(unit)).exists() {
                println!("active");
                0
            } else if unit_pid(unit).is_some() {
                println!("activating");
                3
            } else {
                println!("inactive");
                3
            }
        }
        "start" => start_unit(unit),
        "stop" => {
            stop_unit(unit);
            0
        }
        "restart" => {
            stop_unit(unit);
            start_unit(unit)
        }
        _ => {
            eprintln!("unknown service verb {verb}");
            2
        }
    }
}

pub(super) fn start_unit(unit: &str) -> i32 {
    let unitf = hostcfg::unit_file(unit);
    let svc: ServiceEnv = match fs::read(&unitf)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(e) if Path::new(hostcfg::K3S_BIN).exists() => e,
        _ => {
            eprintln!(
                "Failed to start {unit}.service: Unit {unit}.service not found (k3s not installed: {} or {unitf} missing).",
                hostcfg::K3S_BIN
            );
            return 5;
        }
    };
    // systemd reads the unit's `EnvironmentFile=-/etc/systemd/system/<unit>.service.env` at
    // every start (the `-`: a missing file is no error), so an edited env file takes effect at
    // the next restart, without a daemon-reload.
    let envf = hostcfg::env_file(unit);
    let env = match fs::read_to_string(&envf) {
        Ok(t) => hostcfg::parse_environment_file(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            eprintln!("Failed to load environment files: {envf}: {e}");
            return 1;
        }
    };
    let cfg = lab_config();
    if unit_pid(unit).is_none() {
        let _ = fs::remove_file(hostcfg::ready_file(unit));
        let _ = fs::remove_file(hostcfg::failed_file(unit));
        let logp = hostcfg::log_file(unit);
        let log = match fs::OpenOptions::new().create(true).append(true).open(&logp) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("opening {logp}: {e}");
                return 1;
            }
        };
        let log2 = log.try_clone().expect("dup log fd");
        let mut cmd = Command::new(hostcfg::K3S_BIN);
        cmd.args(&svc.exec)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // A unit does not inherit the caller's environment: only its env file's.
        for (k, _) in std::env::vars() {
            if k.starts_with("K3S_") || k.starts_with("CONTAINERD_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env);
        // SAFETY: setsid() is async-signal-safe; detaches the daemon from the SSH session.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let _ = fs::write(hostcfg::pid_file(unit), format!("{}\n", child.id()));
                // The daemon is reaped by init once this process exits.
                std::mem::forget(child);
            }
            Err(e) => {
                eprintln!("starting {}: {e}", hostcfg::K3S_BIN);
                return 1;
            }
        }
    }
    // Type=notify: wait until ready, failed, or dead.
    let deadline = Instant::now() + Duration::from_secs(cfg.start_timeout_secs);
    loop {
        if Path::new(&hostcfg::ready_file(unit)).exists() && unit_pid(unit).is_some() {
            return 0;
        }
        if unit_pid(unit).is_none() {
            eprintln!(
                "Job for {unit}.service failed because the control process exited with error code.\n{}",
                tail(&hostcfg::log_file(unit), 8)
            );
            return 1;
        }
        if let Ok(reason) = fs::read_to_string(hostcfg::failed_file(unit)) {
            eprintln!(
                "Job for {unit}.service failed: {}\n{}",
                reason.trim(),
                tail(&hostcfg::log_file(unit), 8)
            );
            return 1;
        }
        if Instant::now() > deadline {
            eprintln!(
                "Job for {unit}.service timed out after {}s (still activating).\n{}",
                cfg.start_timeout_secs,
                tail(&hostcfg::log_file(unit), 8)
            );
            return 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(super) fn tail(path: &str, n: usize) -> String {
    let t = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn stop_unit(unit: &str) {
    if let Some(pid) = unit_pid(unit) {
        // SAFETY: plain kill(2) of the daemon's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if pid_alive(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Some(epid) = read_pid(&hostcfg::etcd_pid_file(unit)).filter(|p| pid_alive(*p)) {
        // SAFETY: as above.
        unsafe { libc::kill(epid, libc::SIGKILL) };
    }
    for f in [
        hostcfg::pid_file(unit),
        hostcfg::ready_file(unit),
        hostcfg::etcd_pid_file(unit),
    ] {
        let _ = fs::remove_file(f);
    }
}
