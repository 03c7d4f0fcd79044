//! `k3s-standin`: the lab's k3s. Installed on each lab host as its `k3s` binary; runs that
//! host's REAL etcd member and registers its Node in the lab's Kubernetes API.
//!
//! ```text
//! k3s-standin install                         # env: INSTALL_K3S_VERSION INSTALL_K3S_EXEC K3S_URL K3S_TOKEN
//! k3s --version
//! k3s server [--config FILE] [--KEY VALUE]... # the daemon (normally started by `service`)
//! k3s agent  [--config FILE] [--KEY VALUE]...
//! k3s etcd-snapshot save [--data-dir D] [--name N] [--dir D]
//! k3s-standin service is-active|start|stop|restart k3s|k3s-agent
//! k3s uninstall | agent-uninstall
//! ```
//! See docs/lab.md for what is real and what is emulated.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k3splan_lab::hostcfg::{self, HostConfig, ServiceEnv};
use serde_json::{Value, json};

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn now_rfc3339() -> String {
    // Seconds precision, UTC, without a date crate: civil-from-days (Howard Hinnant).
    let secs = unix_now() as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn log(level: &str, msg: &str) {
    eprintln!(
        "time=\"{}\" level={level} msg=\"{}\"",
        now_rfc3339(),
        msg.replace('"', "\\\"")
    );
}

fn fatal(msg: &str) -> ! {
    log("fatal", msg);
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rest: Vec<String> = args.iter().skip(2).cloned().collect();
    match args.get(1).map(String::as_str) {
        Some("--version" | "-v" | "version") => {
            println!("k3s version {} (lab)", installed_version());
            println!("go version go1.20.12 (k3splan lab stand-in)");
        }
        Some("install") => std::process::exit(install()),
        Some("service") => std::process::exit(service(&rest)),
        Some("server") => server(&rest, false),
        Some("agent") => server(&rest, true),
        Some("etcd-snapshot") => std::process::exit(etcd_snapshot(&rest)),
        Some("uninstall") => std::process::exit(uninstall(false)),
        Some("agent-uninstall") => std::process::exit(uninstall(true)),
        _ => {
            eprintln!(
                "usage: k3s --version | install | server | agent | etcd-snapshot save | service VERB UNIT | uninstall | agent-uninstall"
            );
            std::process::exit(2)
        }
    }
}

fn installed_version() -> String {
    fs::read_to_string(hostcfg::K3S_VERSION_FILE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| hostcfg::DEFAULT_VERSION.to_string())
}

fn lab_config() -> HostConfig {
    let text = fs::read_to_string(hostcfg::HOST_CONFIG).unwrap_or_else(|e| {
        fatal(&format!(
            "lab stand-in: reading {}: {e} (is this a lab host?)",
            hostcfg::HOST_CONFIG
        ))
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| fatal(&format!("lab stand-in: {}: {e}", hostcfg::HOST_CONFIG)))
}

// ---------------------------------------------------------------------------------------------
// install / uninstall

fn install() -> i32 {
    let version = std::env::var("INSTALL_K3S_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| hostcfg::DEFAULT_VERSION.to_string());
    let url = std::env::var("K3S_URL").ok().filter(|v| !v.is_empty());
    let token = std::env::var("K3S_TOKEN").ok().filter(|v| !v.is_empty());
    let exec_s = std::env::var("INSTALL_K3S_EXEC").unwrap_or_default();
    let mut exec: Vec<String> = exec_s.split_whitespace().map(str::to_string).collect();
    // install.sh: no command given → agent when K3S_URL is set, else server.
    if exec.first().is_none_or(|c| c.starts_with('-')) {
        exec.insert(
            0,
            if url.is_some() { "agent" } else { "server" }.to_string(),
        );
    }
    let unit = if exec[0] == "agent" {
        "k3s-agent"
    } else {
        "k3s"
    };
    println!("[INFO]  Using {version} as release (k3splan lab stand-in)");
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[ERROR]  cannot find my own binary: {e}");
            return 1;
        }
    };
    let bin = Path::new(hostcfg::K3S_BIN);
    if let Err(e) = fs::create_dir_all(bin.parent().expect("has parent")) {
        eprintln!("[ERROR]  creating {}: {e}", hostcfg::LAB_DIR);
        return 1;
    }
    // Copy via a temp file + rename: the old binary may be running.
    let tmp = bin.with_extension("new");
    if me != bin
        && let Err(e) = fs::copy(&me, &tmp).and_then(|_| fs::rename(&tmp, bin))
    {
        eprintln!(
            "[ERROR]  installing {} to {}: {e}",
            me.display(),
            bin.display()
        );
        return 1;
    }
    let _ = fs::set_permissions(bin, fs::Permissions::from_mode(0o755));
    let _ = fs::write(hostcfg::K3S_VERSION_FILE, format!("{version}\n"));
    println!("[INFO]  Installing k3s to {}", bin.display());
    let env = ServiceEnv { exec, url, token };
    let envf = hostcfg::env_file(unit);
    if let Err(e) = write_private(&envf, &serde_json::to_vec_pretty(&env).expect("json")) {
        eprintln!("[ERROR]  writing {envf}: {e}");
        return 1;
    }
    println!("[INFO]  env: Creating environment file {envf}");
    if std::env::var("INSTALL_K3S_SKIP_START").is_ok_and(|v| v == "true") {
        return 0;
    }
    println!("[INFO]  service: Starting {unit}");
    service(&["restart".to_string(), unit.to_string()])
}

fn write_private(path: &str, data: &[u8]) -> std::io::Result<()> {
    if let Some(p) = Path::new(path).parent() {
        fs::create_dir_all(p)?;
    }
    let tmp = format!("{path}.tmp");
    fs::write(&tmp, data)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)
}

fn uninstall(agent: bool) -> i32 {
    for unit in ["k3s", "k3s-agent"] {
        stop_unit(unit);
    }
    let data_dir = read_config_file(None)
        .ok()
        .and_then(|c| c.get("data-dir").and_then(yaml_str))
        .unwrap_or_else(|| "/var/lib/rancher/k3s".to_string());
    let mut rc = 0;
    let mut remove = |p: &str| {
        let path = Path::new(p);
        let r = if path.is_dir() {
            fs::remove_dir_all(path)
        } else if path.exists() {
            fs::remove_file(path)
        } else {
            Ok(())
        };
        match r {
            Ok(()) => println!("+ rm -rf {p}"),
            Err(e) => {
                eprintln!("uninstall: removing {p}: {e}");
                rc = 1;
            }
        }
    };
    remove("/etc/rancher/k3s");
    remove(&data_dir);
    remove("/var/lib/rancher/k3s");
    for unit in ["k3s", "k3s-agent"] {
        remove(&hostcfg::env_file(unit));
        remove(&hostcfg::ready_file(unit));
        remove(&hostcfg::failed_file(unit));
    }
    remove(hostcfg::K3S_VERSION_FILE);
    remove(hostcfg::K3S_BIN);
    if agent {
        println!("k3s agent uninstalled");
    } else {
        println!("k3s uninstalled");
    }
    rc
}

// ---------------------------------------------------------------------------------------------
// service manager

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim().starts_with('Z')))
        .unwrap_or(false)
}

fn read_pid(path: &str) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn unit_pid(unit: &str) -> Option<i32> {
    read_pid(&hostcfg::pid_file(unit)).filter(|p| pid_alive(*p))
}

fn service(args: &[String]) -> i32 {
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

fn start_unit(unit: &str) -> i32 {
    let envf = hostcfg::env_file(unit);
    let env: ServiceEnv = match fs::read(&envf)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(e) if Path::new(hostcfg::K3S_BIN).exists() => e,
        _ => {
            eprintln!(
                "Failed to start {unit}.service: Unit {unit}.service not found (k3s not installed: {} or {envf} missing).",
                hostcfg::K3S_BIN
            );
            return 5;
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
        cmd.args(&env.exec)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env_remove("K3S_URL")
            .env_remove("K3S_TOKEN");
        if let Some(u) = &env.url {
            cmd.env("K3S_URL", u);
        }
        if let Some(t) = &env.token {
            cmd.env("K3S_TOKEN", t);
        }
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

fn tail(path: &str, n: usize) -> String {
    let t = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn stop_unit(unit: &str) {
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

// ---------------------------------------------------------------------------------------------
// configuration

const KNOWN_KEYS: &[&str] = &[
    "server",
    "cluster-init",
    "token",
    "token-file",
    "agent-token",
    "node-ip",
    "node-name",
    "node-external-ip",
    "advertise-address",
    "data-dir",
    "disable-etcd",
    "disable-apiserver",
    "disable-controller-manager",
    "disable-scheduler",
    "disable-agent",
    "disable",
    "tls-san",
    "node-label",
    "node-taint",
    "write-kubeconfig-mode",
    "write-kubeconfig",
    "cluster-cidr",
    "service-cidr",
    "flannel-backend",
    "etcd-expose-metrics",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "kube-apiserver-arg",
    "kubelet-arg",
    "selinux",
    "config",
    "debug",
];

fn yaml_str(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_bool(v: Option<&serde_yaml::Value>) -> bool {
    match v {
        Some(serde_yaml::Value::Bool(b)) => *b,
        Some(serde_yaml::Value::String(s)) => s == "true",
        _ => false,
    }
}

fn read_config_file(path: Option<&str>) -> Result<BTreeMap<String, serde_yaml::Value>, String> {
    let path = path.unwrap_or("/etc/rancher/k3s/config.yaml");
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("reading {path}: {e}")),
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_yaml::from_str(&text).map_err(|e| format!("parsing {path}: {e}"))
}

/// The effective server/agent settings: config file, then `--key value` flags, then env.
struct Settings {
    server: Option<String>,
    cluster_init: bool,
    token: Option<String>,
    node_ip: String,
    node_name: String,
    data_dir: String,
    disable_etcd: bool,
    disable_apiserver: bool,
    node_labels: Vec<String>,
}

fn settings(args: &[String], lab: &HostConfig) -> Settings {
    let mut config_path = None;
    let mut flags: BTreeMap<String, serde_yaml::Value> = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(k) = a.strip_prefix("--") else {
            fatal(&format!("unexpected argument {a}"))
        };
        let (k, v) = match k.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (k.to_string(), None),
        };
        if !KNOWN_KEYS.contains(&k.as_str()) {
            fatal(&format!("flag provided but not defined: -{k}"));
        }
        let bool_flag = matches!(
            k.as_str(),
            "cluster-init"
                | "disable-etcd"
                | "disable-apiserver"
                | "disable-agent"
                | "disable-controller-manager"
                | "disable-scheduler"
                | "debug"
                | "etcd-expose-metrics"
                | "selinux"
        );
        let v = match v {
            Some(v) => serde_yaml::Value::String(v),
            None if bool_flag => serde_yaml::Value::Bool(true),
            None => {
                i += 1;
                serde_yaml::Value::String(args.get(i).cloned().unwrap_or_default())
            }
        };
        if k == "config" {
            config_path = yaml_str(&v);
        } else {
            flags.insert(k, v);
        }
        i += 1;
    }
    let mut cfg = read_config_file(config_path.as_deref()).unwrap_or_else(|e| fatal(&e));
    for k in cfg.keys() {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            fatal(&format!("flag provided but not defined: -{k}"));
        }
    }
    cfg.extend(flags);
    let s = |k: &str| cfg.get(k).and_then(yaml_str).filter(|v| !v.is_empty());
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut token = s("token").or_else(|| std::env::var("K3S_TOKEN").ok());
    if token.is_none()
        && let Some(f) = s("token-file")
    {
        token = fs::read_to_string(&f).ok().map(|t| t.trim().to_string());
    }
    let node_labels = match cfg.get("node-label") {
        Some(serde_yaml::Value::Sequence(seq)) => seq.iter().filter_map(yaml_str).collect(),
        Some(v) => yaml_str(v).into_iter().collect(),
        None => Vec::new(),
    };
    Settings {
        server: s("server").or_else(|| std::env::var("K3S_URL").ok().filter(|u| !u.is_empty())),
        cluster_init: yaml_bool(cfg.get("cluster-init")),
        token,
        node_ip: s("node-ip").unwrap_or_else(|| lab.node_ip.clone()),
        node_name: s("node-name").unwrap_or(hostname),
        data_dir: s("data-dir").unwrap_or_else(|| "/var/lib/rancher/k3s".into()),
        disable_etcd: yaml_bool(cfg.get("disable-etcd")),
        disable_apiserver: yaml_bool(cfg.get("disable-apiserver")),
        node_labels,
    }
}

// ---------------------------------------------------------------------------------------------
// etcd through etcdctl

struct Tls {
    dir: String,
}

impl Tls {
    fn ca(&self) -> String {
        format!("{}/server-ca.crt", self.dir)
    }
    fn client_cert(&self) -> String {
        format!("{}/client.crt", self.dir)
    }
    fn client_key(&self) -> String {
        format!("{}/client.key", self.dir)
    }
}

/// Copies the lab PKI into `<data-dir>/server/tls/etcd/` under k3s's file names (what real
/// k3s generates on the first server and hands to joiners with the bootstrap data).
fn ensure_tls(data_dir: &str) -> Tls {
    let dir = format!("{data_dir}/server/tls/etcd");
    let _ = fs::create_dir_all(&dir);
    let pki = hostcfg::PKI_DIR;
    let files = [
        ("ca.crt", "server-ca.crt"),
        ("ca.crt", "peer-ca.crt"),
        ("server.crt", "server-client.crt"),
        ("server.key", "server-client.key"),
        ("server.crt", "peer-server-client.crt"),
        ("server.key", "peer-server-client.key"),
        ("client.crt", "client.crt"),
        ("client.key", "client.key"),
    ];
    for (src, dst) in files {
        let to = format!("{dir}/{dst}");
        if !Path::new(&to).exists()
            && let Err(e) = fs::copy(format!("{pki}/{src}"), &to)
        {
            fatal(&format!(
                "preparing etcd TLS: copying {pki}/{src} to {to}: {e}"
            ))
        }
    }
    Tls { dir }
}

fn etcdctl(lab: &HostConfig, tls: &Tls, endpoint: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(&lab.etcdctl_bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", tls.ca()))
        .arg(format!("--cert={}", tls.client_cert()))
        .arg(format!("--key={}", tls.client_key()))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", lab.etcdctl_bin))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {} at {endpoint}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `(member_id, leader_id, cluster_id, raft_index, is_learner)` of one endpoint.
fn endpoint_status(
    lab: &HostConfig,
    tls: &Tls,
    ep: &str,
) -> Result<(u64, u64, u64, u64, bool), String> {
    let out = etcdctl(lab, tls, ep, &["endpoint", "status", "-w", "json"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &v[0]["Status"];
    Ok((
        s["header"]["member_id"].as_u64().unwrap_or(0),
        s["leader"].as_u64().unwrap_or(0),
        s["header"]["cluster_id"].as_u64().unwrap_or(0),
        s["raftIndex"].as_u64().unwrap_or(0),
        s["isLearner"].as_bool().unwrap_or(false),
    ))
}

fn member_list(lab: &HostConfig, tls: &Tls, ep: &str) -> Result<Vec<Value>, String> {
    let out = etcdctl(lab, tls, ep, &["member", "list", "-w", "json"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(v["members"].as_array().cloned().unwrap_or_default())
}

fn token_hash(token: &str) -> String {
    // Not cryptographic strength needed here: the lab compares, it does not protect. Still,
    // the token itself is never stored: FNV-1a 64 of "k3s-lab:" + token, hex.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("k3s-lab:{token}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

const TOKEN_KEY: &str = "/k3splan-lab/bootstrap/token-hash";

fn random_hex8() -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

struct EtcdPlan {
    name: String,
    initial_cluster: String,
    state: &'static str,
}

fn write_etcd_config(lab: &HostConfig, s: &Settings, tls: &Tls, plan: &EtcdPlan) -> String {
    let dir = format!("{}/server/db/etcd", s.data_dir);
    let _ = fs::create_dir_all(&dir);
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    let ip = &s.node_ip;
    let t = &tls.dir;
    let config = format!(
        "name: {name}\n\
         data-dir: {dir}\n\
         listen-client-urls: https://{ip}:2379\n\
         advertise-client-urls: https://{ip}:2379\n\
         listen-peer-urls: https://{ip}:2380\n\
         initial-advertise-peer-urls: https://{ip}:2380\n\
         initial-cluster: {ic}\n\
         initial-cluster-state: {state}\n\
         heartbeat-interval: {hb}\n\
         election-timeout: {el}\n\
         logger: zap\n\
         log-outputs: [stderr]\n\
         client-transport-security:\n  cert-file: {t}/server-client.crt\n  key-file: {t}/server-client.key\n  trusted-ca-file: {t}/server-ca.crt\n  client-cert-auth: true\n\
         peer-transport-security:\n  cert-file: {t}/peer-server-client.crt\n  key-file: {t}/peer-server-client.key\n  trusted-ca-file: {t}/peer-ca.crt\n  client-cert-auth: true\n",
        name = plan.name,
        ic = plan.initial_cluster,
        state = plan.state,
        hb = lab.etcd_heartbeat_ms,
        el = lab.etcd_election_ms,
    );
    let cfgp = format!("{dir}/config");
    let _ = fs::write(&cfgp, config);
    let _ = fs::write(format!("{dir}/name"), format!("{}\n", plan.name));
    cfgp
}

fn spawn_etcd(lab: &HostConfig, cfg_path: &str, data_dir: &str, unit: &str) -> Child {
    let logp = format!("{data_dir}/server/db/etcd.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logp)
        .unwrap_or_else(|e| fatal(&format!("opening {logp}: {e}")));
    let mut cmd = Command::new(&lab.etcd_bin);
    cmd.arg("--config-file")
        .arg(cfg_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log);
    // SAFETY: prctl is async-signal-safe. Embedded etcd dies with k3s: so does ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fatal(&format!("starting etcd {}: {e}", lab.etcd_bin)));
    let _ = fs::write(hostcfg::etcd_pid_file(unit), format!("{}\n", child.id()));
    child
}

fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or(url.strip_prefix("http://"))?;
    let hostport = rest.split('/').next()?;
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    Some(host.trim_matches(['[', ']']).to_string())
}

fn url_port(url: &str) -> u16 {
    let rest = url
        .strip_prefix("https://")
        .or(url.strip_prefix("http://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    hostport
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(6443)
}

/// Real k3s first fetches `https://SERVER/cacerts` from the server's supervisor. The lab's
/// supervisor is the stand-in's TCP endpoint on port 6443: probe it the same way.
fn probe_supervisor(url: &str) -> Result<(), String> {
    let host = url_host(url).ok_or_else(|| format!("invalid server URL {url}"))?;
    let port = url_port(url);
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}"))?;
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "failed to get CA certs: Get \"{}/cacerts\": dial tcp {addr}: connect: {}",
            url.trim_end_matches('/'),
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connection refused".to_string()
            } else if e.kind() == std::io::ErrorKind::TimedOut {
                "i/o timeout".to_string()
            } else {
                e.to_string()
            }
        )),
    }
}

fn wait_probe(url: &str, tries: u32) -> Result<(), String> {
    let mut last = String::new();
    for i in 0..tries {
        match probe_supervisor(url) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log("info", &format!("Waiting to retrieve the cluster CA: {e}"));
                last = e;
            }
        }
        if i + 1 < tries {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Err(last)
}

/// k3s's `ETCD.setName(false)`, called from `ETCD.Register` when the server starts, before
/// any join: the member name is read from `<data-dir>/server/db/etcd/name`, or generated
/// (`<name>-<8 hex>`) and written there (the directory created 0700). So on a real host the
/// etcd data dir exists, holding only this file, for the seconds before the member is added
/// (k3s-io/k3s pkg/etcd/etcd.go: `Register` → `setName`; `Start` → `join` after AgentReady).
fn set_name(etcd_dir: &str, base: &str) -> String {
    let file = format!("{etcd_dir}/name");
    if let Ok(n) = fs::read_to_string(&file)
        && !n.trim().is_empty()
    {
        return n.trim().to_string();
    }
    let name = format!("{base}-{}", random_hex8());
    let _ = fs::create_dir_all(etcd_dir);
    let _ = fs::set_permissions(etcd_dir, fs::Permissions::from_mode(0o700));
    if let Err(e) = fs::write(&file, &name) {
        fatal(&format!("writing {file}: {e}"));
    }
    name
}

/// Joins through `url` as member `name`: validates the token, then follows k3s's
/// `ETCD.join` (k3s-io/k3s pkg/etcd/etcd.go) against the member list of the server's etcd
/// (`<server host>:2379`, lab client certificate):
/// - a member without a name whose peer URL has our address is us (added, not yet started);
/// - a member with our name and address is us: not added again;
/// - a member with another name whose node-name part (before the last `-`) is ours is an old
///   incarnation of this host: k3s removes its name file and fails with "duplicate node name
///   found" (it never removes the old member itself — whoever removed this node must have);
/// - otherwise `MemberAddAsLearner`; etcd itself refuses a peer URL that is already listed.
fn join_plan(lab: &HostConfig, s: &Settings, tls: &Tls, url: &str, name: &str) -> EtcdPlan {
    if let Err(e) = wait_probe(url, 3) {
        fatal(&format!("starting kubernetes: preparing server: {e}"));
    }
    let host = url_host(url).unwrap_or_default();
    let ep = format!("https://{host}:2379");
    let token = s.token.clone().unwrap_or_else(|| {
        fatal("starting kubernetes: preparing server: token is required to join a cluster (K3S_TOKEN or token:)")
    });
    match etcdctl(lab, tls, &ep, &["get", TOKEN_KEY, "--print-value-only"]) {
        Ok(v) if !v.trim().is_empty() && v.trim() != token_hash(&token) => fatal(&format!(
            "starting kubernetes: preparing server: failed to validate token: the token does not match the cluster of {url}"
        )),
        Ok(_) => {}
        Err(e) => fatal(&format!(
            "starting kubernetes: preparing server: failed to get the cluster's bootstrap data from {url}: {e}"
        )),
    }
    let peer = format!("https://{}:2380", s.node_ip);
    let node_name_of = |member: &str| match member.rfind('-') {
        Some(i) if i > 1 => member[..i].to_string(),
        _ => member.to_string(),
    };
    let own_base = node_name_of(name);
    let deadline = Instant::now() + Duration::from_secs(lab.start_timeout_secs.max(10));
    loop {
        let members = match member_list(lab, tls, &ep) {
            Ok(m) => m,
            Err(e) => fatal(&format!(
                "starting kubernetes: preparing server: listing etcd members through {url}: {e}"
            )),
        };
        let mut add = true;
        for m in &members {
            let mut mname = m["name"].as_str().unwrap_or("").to_string();
            let ours = m["peerURLs"].as_array().is_some_and(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .any(|u| url_host(u).as_deref() == Some(s.node_ip.as_str()))
            });
            if mname.is_empty() && ours {
                mname = name.to_string();
            }
            if mname == name && ours {
                add = false;
            }
            if mname != name && !mname.is_empty() && node_name_of(&mname) == own_base {
                let _ = fs::remove_file(format!("{}/server/db/etcd/name", s.data_dir));
                fatal(&format!(
                    "ETCD join failed: duplicate node name found, please use a unique name for this node (member {mname} is listed)"
                ));
            }
        }
        if add {
            match etcdctl(
                lab,
                tls,
                &ep,
                &[
                    "member",
                    "add",
                    name,
                    "--learner",
                    &format!("--peer-urls={peer}"),
                ],
            ) {
                Ok(_) => log(
                    "info",
                    &format!("Adding member {name}={peer} to etcd cluster as a learner"),
                ),
                Err(e) => {
                    if Instant::now() > deadline {
                        fatal(&format!(
                            "ETCD join failed: adding this server to the etcd cluster through {url}: {e}"
                        ));
                    }
                    log("info", &format!("Failed to add etcd member, retrying: {e}"));
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let members = member_list(lab, tls, &ep).unwrap_or_else(|e| fatal(&e));
        let mut ic: Vec<String> = Vec::new();
        for m in &members {
            let peers: Vec<&str> = m["peerURLs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if peers.contains(&peer.as_str()) {
                ic.push(format!("{name}={peer}"));
            } else if let Some(n) = m["name"].as_str().filter(|n| !n.is_empty()) {
                for p in peers {
                    ic.push(format!("{n}={p}"));
                }
            }
        }
        return EtcdPlan {
            name: name.to_string(),
            initial_cluster: ic.join(","),
            state: "existing",
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes API through curl

fn kube(lab: &HostConfig, method: &str, path: &str, ct: &str, body: &Value) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "5", "-X", method])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", lab.kube_token))
        .arg("-H")
        .arg(format!("Content-Type: {ct}"))
        .args(["-w", "\n%{http_code}"]);
    if !lab.kube_ca_file.is_empty() {
        cmd.arg("--cacert").arg(&lab.kube_ca_file);
    }
    if !body.is_null() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(format!("{}{path}", lab.kube_url))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return (0, Value::Null);
    };
    if let Some(mut si) = child.stdin.take()
        && !body.is_null()
    {
        let _ = si.write_all(body.to_string().as_bytes());
    }
    let Ok(out) = child.wait_with_output() else {
        return (0, Value::Null);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let (b, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(b).unwrap_or(Value::Null),
    )
}

struct NodeInfo {
    name: String,
    ip: String,
    hostname: String,
    labels: serde_json::Map<String, Value>,
    annotations: serde_json::Map<String, Value>,
    version: String,
    ready_since: String,
}

fn ready_condition(n: &NodeInfo) -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339(),
           "lastTransitionTime": n.ready_since})
}

fn register_node(lab: &HostConfig, n: &NodeInfo) -> Result<(), String> {
    let status = json!({
        "conditions": [ready_condition(n)],
        "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.hostname}],
        "nodeInfo": {"kubeletVersion": n.version, "kubeProxyVersion": n.version,
                     "osImage": "k3splan lab (Debian GNU/Linux 12)", "kernelVersion": "lab",
                     "containerRuntimeVersion": "containerd://1.7.11-k3s2", "architecture": "amd64",
                     "operatingSystem": "linux", "machineID": "", "systemUUID": "", "bootID": ""}
    });
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": n.labels, "annotations": n.annotations},
        "spec": {"podCIDR": "10.42.0.0/24"}, "status": status});
    let (code, body) = kube(lab, "POST", "/api/v1/nodes", "application/json", &node);
    match code {
        200 | 201 => Ok(()),
        409 => {
            let patch = json!({"metadata": {"labels": n.labels, "annotations": n.annotations}});
            let (c1, b1) = kube(
                lab,
                "PATCH",
                &format!("/api/v1/nodes/{}", n.name),
                "application/merge-patch+json",
                &patch,
            );
            let (c2, b2) = kube(
                lab,
                "PATCH",
                &format!("/api/v1/nodes/{}/status", n.name),
                "application/merge-patch+json",
                &json!({"status": status}),
            );
            if c1 / 100 == 2 && c2 / 100 == 2 {
                Ok(())
            } else {
                Err(format!(
                    "updating Node {}: HTTP {c1} {b1} / {c2} {b2}",
                    n.name
                ))
            }
        }
        c => Err(format!(
            "creating Node {} at {}: HTTP {c} {body}",
            n.name, lab.kube_url
        )),
    }
}

fn heartbeat(lab: &HostConfig, n: &NodeInfo) {
    let (code, _) = kube(
        lab,
        "PATCH",
        &format!("/api/v1/nodes/{}/status", n.name),
        "application/merge-patch+json",
        &json!({"status": {"conditions": [ready_condition(n)]}}),
    );
    if code == 404 {
        log(
            "info",
            &format!("Node {} not found in the API; registering it again", n.name),
        );
        if let Err(e) = register_node(lab, n) {
            log("error", &e);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the supervisor port (6443): a TCP proxy to the lab's API server

fn start_supervisor(ip: &str, kube_url: &str) -> Result<(), String> {
    let listener = TcpListener::bind((ip, 6443)).map_err(|e| format!("listen {ip}:6443: {e}"))?;
    let target = kube_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let target = target.clone();
            std::thread::spawn(move || {
                let Ok(upstream) = TcpStream::connect(&target) else {
                    return;
                };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
                    return;
                };
                let (mut c1, mut u1) = (client, upstream);
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u1, &mut c1);
                let _ = c1.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the daemon

fn mark_failed(unit: &str, reason: &str) {
    let _ = fs::write(hostcfg::failed_file(unit), format!("{reason}\n"));
}

fn server(args: &[String], agent: bool) -> ! {
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
    let mut etcd: Option<Child> = None;
    let mut tls = None;
    let mut member_name = String::new();
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| s.node_name.clone());

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
                _ => {
                    datastore_ok = false;
                    let since = *no_leader_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(lab.no_leader_exit_secs) {
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
        if datastore_ok && last_hb.elapsed() >= Duration::from_secs(lab.heartbeat_secs) {
            last_hb = Instant::now();
            heartbeat(&lab, &node);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").to_string()
}

fn manage_learners(lab: &HostConfig, tls: &Tls, ep: &str) {
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

fn check_term(etcd: &mut Option<Child>, unit: &str) {
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

fn check_lab(lab: &HostConfig, etcd: &mut Option<Child>, unit: &str) {
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
fn tombstone_loop(s: &Settings, unit: &str, etcd: &mut Option<Child>) -> ! {
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

// ---------------------------------------------------------------------------------------------
// etcd-snapshot save

fn etcd_snapshot(args: &[String]) -> i32 {
    let mut data_dir = "/var/lib/rancher/k3s".to_string();
    let mut name = "on-demand".to_string();
    let mut dir: Option<String> = None;
    let mut it = args.iter();
    let mut sub = None;
    while let Some(a) = it.next() {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut val = || v.clone().or_else(|| it.next().cloned()).unwrap_or_default();
        match k.as_str() {
            "--data-dir" | "-d" => data_dir = val(),
            "--name" => name = val(),
            "--dir" | "--etcd-snapshot-dir" => dir = Some(val()),
            "save" if sub.is_none() => sub = Some("save"),
            x if x.starts_with("--") => {
                eprintln!(
                    "flag provided but not defined: -{}",
                    x.trim_start_matches('-')
                );
                return 1;
            }
            x => {
                eprintln!("unsupported etcd-snapshot subcommand {x} (the lab supports `save`)");
                return 1;
            }
        }
    }
    let lab = lab_config();
    let tls = Tls {
        dir: format!("{data_dir}/server/tls/etcd"),
    };
    if !Path::new(&tls.client_cert()).exists() {
        log(
            "fatal",
            &format!(
                "etcd-snapshot: no etcd client certificate in {} (is this a server?)",
                tls.dir
            ),
        );
        return 1;
    }
    let ip = fs::read_to_string(format!("{data_dir}/server/db/etcd/config"))
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("advertise-client-urls: ")
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| format!("https://{}:2379", lab.node_ip));
    let dir = match dir {
        Some(d) => {
            if !Path::new(&d).is_dir() {
                log(
                    "fatal",
                    &format!("etcd-snapshot: directory {d} does not exist"),
                );
                return 1;
            }
            d
        }
        None => {
            let d = format!("{data_dir}/server/db/snapshots");
            let _ = fs::create_dir_all(&d);
            d
        }
    };
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let path = format!("{dir}/{name}-{hostname}-{}", unix_now());
    log("info", &format!("Saving etcd snapshot to {path}"));
    match etcdctl(&lab, &tls, &ip, &["snapshot", "save", &path]) {
        Ok(_) => {
            log(
                "info",
                &format!(
                    "Snapshot {} saved.",
                    PathBuf::from(&path)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            );
            0
        }
        Err(e) => {
            log("fatal", &format!("etcd-snapshot save failed: {e}"));
            1
        }
    }
}
