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

pub(super) fn supervisor_pid(unit: &str) -> Option<i32> {
    read_pid(&hostcfg::supervisor_pid_file(unit)).filter(|p| pid_alive(*p))
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
            } else if unit_pid(unit).is_some() || supervisor_pid(unit).is_some() {
                // Starting, or waiting out `RestartSec` after an exit (systemd's
                // "activating (auto-restart)").
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
        // Internal: the unit's supervisor, spawned by `start` (not a systemctl verb).
        "supervise" => supervise(unit),
        _ => {
            eprintln!("unknown service verb {verb}");
            2
        }
    }
}

/// The unit's `ExecStart` (from the unit file) and its environment (from its env file),
/// read at every start as systemd does.
fn unit_command(unit: &str) -> Result<Command, (i32, String)> {
    let unitf = hostcfg::unit_file(unit);
    let words = match fs::read_to_string(&unitf) {
        Ok(text) => match k3splan_host::unit::parse_exec_start(&text).map(|e| e.words()) {
            Ok(w) => Some(w),
            Err(e) => {
                return Err((
                    1,
                    format!(
                        "Failed to start {unit}.service: Unit {unit}.service has a bad setting: {unitf}: {e}"
                    ),
                ));
            }
        },
        Err(_) => None,
    };
    let (program, args) = match words {
        Some(mut w) if Path::new(&w[0]).exists() => {
            let program = w.remove(0);
            (program, w)
        }
        _ => {
            return Err((
                5,
                format!(
                    "Failed to start {unit}.service: Unit {unit}.service not found (k3s not installed: {} or {unitf} missing).",
                    hostcfg::K3S_BIN
                ),
            ));
        }
    };
    // systemd reads the unit's `EnvironmentFile=-/etc/systemd/system/<unit>.service.env` at
    // every start (the `-`: a missing file is no error), so an edited env file takes effect at
    // the next restart, without a daemon-reload.
    let envf = hostcfg::env_file(unit);
    let env = match fs::read_to_string(&envf) {
        Ok(t) => hostcfg::parse_environment_file(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err((1, format!("Failed to load environment files: {envf}: {e}"))),
    };
    let mut cmd = Command::new(program);
    cmd.args(&args).stdin(Stdio::null());
    // A unit does not inherit the caller's environment: only its env file's.
    for (k, _) in std::env::vars() {
        if k.starts_with("K3S_") || k.starts_with("CONTAINERD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    Ok(cmd)
}

fn open_log(unit: &str) -> Result<(fs::File, fs::File), String> {
    let logp = hostcfg::log_file(unit);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logp)
        .map_err(|e| format!("opening {logp}: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("dup {logp}: {e}"))?;
    Ok((log, log2))
}

/// `systemctl start`: starts the unit's supervisor unless it runs, then waits as a
/// `Type=notify` start job does: until the daemon is ready, or exits, or fails.
pub(super) fn start_unit(unit: &str) -> i32 {
    if let Err((rc, msg)) = unit_command(unit) {
        eprintln!("{msg}");
        return rc;
    }
    let cfg = lab_config();
    // The job fails when the daemon exits before it is ready: the supervisor says so in the
    // log ("Main process exited"); only what is written after this point counts.
    let logp = hostcfg::log_file(unit);
    let log_from = fs::metadata(&logp).map(|m| m.len()).unwrap_or(0);
    if supervisor_pid(unit).is_none() && unit_pid(unit).is_none() {
        let _ = fs::remove_file(hostcfg::ready_file(unit));
        let _ = fs::remove_file(hostcfg::failed_file(unit));
        let (log, log2) = match open_log(unit) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let mut cmd = Command::new(hostcfg::K3S_BIN);
        cmd.args(["service", "supervise", unit])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: setsid() is async-signal-safe; detaches the supervisor (and the daemon
        // it starts) from the SSH session, as a unit runs under PID 1, not under the client.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let _ = fs::write(
                    hostcfg::supervisor_pid_file(unit),
                    format!("{}\n", child.id()),
                );
                // The supervisor is reaped by init once this process exits.
                std::mem::forget(child);
            }
            Err(e) => {
                eprintln!("starting {}: {e}", hostcfg::K3S_BIN);
                return 1;
            }
        }
    }
    // Type=notify: wait until ready, failed, or the daemon started for this job is dead.
    let deadline = Instant::now() + Duration::from_secs(cfg.start_timeout_secs);
    loop {
        let pid = unit_pid(unit);
        if Path::new(&hostcfg::ready_file(unit)).exists() && pid.is_some() {
            return 0;
        }
        let exited = fs::read(&logp).is_ok_and(|b| {
            b.get(log_from as usize..).is_some_and(|new| {
                String::from_utf8_lossy(new)
                    .contains(&format!("{unit}.service: Main process exited"))
            })
        });
        if exited || (supervisor_pid(unit).is_none() && pid.is_none()) {
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

/// The unit's supervisor (the stand-in's systemd for one unit): starts the daemon, and when
/// it exits, for whatever reason, starts it again after [`hostcfg::RESTART_SECS`], as the
/// official installer's unit does (`Restart=always`, `RestartSec=5s`; k3s-io/k3s install.sh
/// `create_systemd_service_file`). Only `service stop` (which kills the supervisor first)
/// ends it, or the lab process going away. Its messages go to the unit's log, as systemd's
/// go to the unit's journal.
fn supervise(unit: &str) -> i32 {
    let lab = lab_config();
    let mut restarts = 0u32;
    loop {
        // etcd runs inside real k3s and dies with it; here it is a child process that may
        // outlive a daemon killed by a signal: never start a second one beside it.
        if let Some(epid) = read_pid(&hostcfg::etcd_pid_file(unit)).filter(|p| pid_alive(*p)) {
            // SAFETY: SIGKILL of the unit's own leftover etcd.
            unsafe { libc::kill(epid, libc::SIGKILL) };
            let _ = fs::remove_file(hostcfg::etcd_pid_file(unit));
        }
        let spawned = unit_command(unit).map_err(|(_, m)| m).and_then(|mut cmd| {
            let (log, log2) = open_log(unit)?;
            cmd.stdout(log).stderr(log2);
            cmd.spawn()
                .map_err(|e| format!("starting {}: {e}", hostcfg::K3S_BIN))
        });
        match spawned {
            Ok(mut child) => {
                let _ = fs::write(hostcfg::pid_file(unit), format!("{}\n", child.id()));
                let status = child.wait();
                let _ = fs::remove_file(hostcfg::ready_file(unit));
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("unknown ({e})"),
                };
                eprintln!("{unit}.service: Main process exited, {how}");
            }
            Err(e) => eprintln!("{unit}.service: Failed to start: {e}"),
        }
        if !pid_alive(lab.lab_pid as i32) {
            return 0;
        }
        std::thread::sleep(Duration::from_secs(hostcfg::RESTART_SECS));
        if !pid_alive(lab.lab_pid as i32) {
            return 0;
        }
        restarts += 1;
        eprintln!("{unit}.service: Scheduled restart job, restart counter is at {restarts}.");
    }
}

pub(super) fn tail(path: &str, n: usize) -> String {
    let t = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn stop_unit(unit: &str) {
    // The supervisor first, so that it does not start the daemon again.
    if let Some(spid) = supervisor_pid(unit) {
        // SAFETY: SIGKILL of the unit's supervisor (a stand-in process).
        unsafe { libc::kill(spid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(spid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
        hostcfg::supervisor_pid_file(unit),
        hostcfg::pid_file(unit),
        hostcfg::ready_file(unit),
        hostcfg::etcd_pid_file(unit),
    ] {
        let _ = fs::remove_file(f);
    }
}
