//! What the lab tells each host's k3s stand-in, and where the stand-in keeps its files.
//!
//! The harness writes [`HostConfig`] as JSON to [`HOST_CONFIG`] in every host's private
//! `/var/lib/rancher` before installing anything; the stand-in reads it at start. All paths
//! are in-host paths (the host's mount namespace maps them to its private directories).

use serde::{Deserialize, Serialize};

/// The stand-in's private directory on each host (below the private `/var/lib/rancher`).
pub const LAB_DIR: &str = "/var/lib/rancher/lab";
/// Lab settings for the stand-in (JSON, [`HostConfig`]).
pub const HOST_CONFIG: &str = "/var/lib/rancher/lab/lab.json";
/// Where `k3s-standin install` copies itself: the host's "k3s binary".
pub const K3S_BIN: &str = "/var/lib/rancher/lab/bin/k3s";
/// The installed version, written by `install`.
pub const K3S_VERSION_FILE: &str = "/var/lib/rancher/lab/bin/k3s.version";
/// Lab PKI handed to the host (the stand-in copies it into `<data-dir>/server/tls/etcd/`).
pub const PKI_DIR: &str = "/var/lib/rancher/lab/pki";
/// The version a stand-in reports when `install` recorded none.
pub const DEFAULT_VERSION: &str = "v1.28.5+k3s1";

/// Per-unit service files (`unit` is `k3s` or `k3s-agent`).
pub fn pid_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.pid")
}
/// Present while the unit's daemon is ready (systemd's `active` of a `Type=notify` unit).
pub fn ready_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.ready")
}
/// Written by the daemon when it keeps failing (a reason line): `service start` reports it.
pub fn failed_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.failed")
}
/// The daemon's log (stdout and stderr), appended across restarts.
pub fn log_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.log")
}
/// The install-time environment of the unit (JSON [`ServiceEnv`]), like
/// `/etc/systemd/system/k3s.service.env`.
pub fn env_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.service.env")
}
/// The pid of the unit's etcd process (servers only).
pub fn etcd_pid_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.etcd.pid")
}

/// Settings the harness gives every host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostConfig {
    /// The host's address (default `node-ip`).
    pub node_ip: String,
    /// Base URL of the lab's Kubernetes API (`https://127.0.0.1:PORT`).
    pub kube_url: String,
    /// In-host path of the PEM CA that verifies the API server (empty: plain HTTP).
    pub kube_ca_file: String,
    /// Bearer token for the API.
    pub kube_token: String,
    /// The lab process: a daemon whose lab process is gone stops itself (and its etcd).
    pub lab_pid: u32,
    /// etcd binary.
    pub etcd_bin: String,
    /// etcdctl binary.
    pub etcdctl_bin: String,
    /// Seconds between Node status heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds between the leader's learner checks (k3s: 15).
    pub promote_secs: u64,
    /// How long `service start` waits for the daemon to be ready before failing.
    pub start_timeout_secs: u64,
    /// Seconds without an etcd leader after which a ready server exits (k3s: leader election
    /// lost, ~10 s).
    pub no_leader_exit_secs: u64,
    /// etcd `heartbeat-interval` / `election-timeout` (ms).
    pub etcd_heartbeat_ms: u64,
    /// See `etcd_heartbeat_ms`.
    pub etcd_election_ms: u64,
}

/// Install-time environment of a unit (what the official installer puts in
/// `k3s.service.env` and the unit's `ExecStart`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceEnv {
    /// `server` or `agent` followed by extra flags from `INSTALL_K3S_EXEC`.
    pub exec: Vec<String>,
    /// `K3S_URL`.
    pub url: Option<String>,
    /// `K3S_TOKEN`.
    pub token: Option<String>,
}
