//! `k3s-standin`: the lab's k3s. Installed on each lab host as its `k3s` binary; runs that
//! host's REAL etcd member and registers its Node in the lab's Kubernetes API.
//!
//! ```text
//! k3s-standin install                         # env: INSTALL_K3S_VERSION INSTALL_K3S_EXEC K3S_URL K3S_TOKEN
//! k3s --version
//! k3s server [--config FILE] [--KEY VALUE]... # the daemon (normally started by `service`)
//! k3s server --cluster-reset [--cluster-reset-restore-path=SNAPSHOT]   # foreground, exits
//! k3s agent  [--config FILE] [--KEY VALUE]...
//! k3s etcd-snapshot save [--data-dir D] [--name N] [--dir D]
//! k3s certificate rotate [--data-dir D]
//! k3s-standin service is-active|start|stop|restart k3s|k3s-agent
//! k3s uninstall | agent-uninstall
//! ```
//! See docs/lab.md for what is real and what is emulated.
//!
//! One module per part of k3s it stands in for; their items are shared with each other through
//! the glob imports below (a test binary, not an API).

mod certs;
mod config;
mod daemon;
mod etcd;
mod install;
mod kube;
mod manifests;
mod reset;
mod service;
mod skew;
mod snapshot;
mod supervisor;

use certs::*;
use config::*;
use daemon::*;
use etcd::*;
use install::*;
use kube::*;
use manifests::*;
use reset::*;
use service::*;
use skew::*;
use snapshot::*;
use supervisor::*;

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

use k3splan_lab::hostcfg::{self, HostConfig};
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
        Some("certificate") => std::process::exit(certificate(&rest)),
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
