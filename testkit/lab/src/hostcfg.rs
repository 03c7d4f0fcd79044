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
/// Where the installer puts the units and their env files (private to each lab host, like
/// `/etc/rancher`).
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// The unit's environment file, as the official installer writes it
/// (`FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env`: `K3S_*`, `CONTAINERD_*` and proxy
/// variables, `KEY='value'` lines); `service start` loads it as systemd loads the unit's
/// `EnvironmentFile=`.
pub fn env_file(unit: &str) -> String {
    format!("{SYSTEMD_DIR}/{unit}.service.env")
}
/// The unit file the installer writes (install.sh:
/// `FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SERVICE_K3S}`), rendered by [`render_unit`]; the
/// stand-in's service manager reads its `ExecStart` at every start with the same reader the
/// product's upgrade uses (`k3splan_host::unit::parse_exec_start`).
pub fn unit_file(unit: &str) -> String {
    format!("{SYSTEMD_DIR}/{unit}.service")
}
/// The uninstall script install.sh writes for `unit` (`create_uninstall`:
/// `UNINSTALL_K3S_SH=${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh`, so `k3s-uninstall.sh` on a
/// server, `k3s-agent-uninstall.sh` on an agent). In the lab a marker: the stand-in's
/// `uninstall` / `agent-uninstall` runs only where its script exists, as on a real host.
pub fn uninstall_script(unit: &str) -> String {
    format!("{LAB_DIR}/bin/{unit}-uninstall.sh")
}
/// The pid of the unit's supervisor: the stand-in's systemd, which restarts the daemon 5 s
/// after it exits (`Restart=always`, `RestartSec=5s` in the unit the official installer
/// writes) until `service stop`.
pub fn supervisor_pid_file(unit: &str) -> String {
    format!("{LAB_DIR}/{unit}.supervisor.pid")
}
/// systemd's `RestartSec=5s` of the k3s units (k3s-io/k3s install.sh,
/// `create_systemd_service_file`).
pub const RESTART_SECS: u64 = 5;
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

/// The systemd unit file as install.sh's `create_systemd_service_file` writes it (k3s-io/k3s
/// `install.sh`): `ExecStart=${BIN_DIR}/k3s \` followed by `    ${CMD_K3S_EXEC}`, where
/// `CMD_K3S_EXEC` is the command (`server`/`agent`) and, from `quote_indent`, one argument per
/// line: a tab, the argument in single quotes (a `'` inside as `'\''`), ` \`. The command's
/// line ends in ` \` too, and the last continuation ends on an empty line. `exec` is the
/// command and its arguments.
pub fn render_unit(unit: &str, exec: &[String]) -> String {
    let (cmd, args) = exec
        .split_first()
        .map_or(("server", &[][..]), |(c, a)| (c.as_str(), a));
    // `$(quote_indent "$@")` is " \\\n" then "\t'ARG' \\\n" per argument, minus the last
    // newline (command substitution strips it); the heredoc adds "\n\n".
    let mut exec_start = format!("ExecStart={K3S_BIN} \\\n    {cmd} \\\n");
    for a in args {
        exec_start.push_str(&format!("\t'{}' \\\n", a.replace('\'', "'\\''")));
    }
    format!(
        "[Unit]\nDescription=Lightweight Kubernetes\nDocumentation=https://k3s.io\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Install]\nWantedBy=multi-user.target\n\n\
         [Service]\nType=notify\nEnvironmentFile=-/etc/default/%N\n\
         EnvironmentFile=-/etc/sysconfig/%N\nEnvironmentFile=-{env}\nKillMode=process\n\
         Delegate=yes\nLimitNOFILE=1048576\nLimitNPROC=infinity\nLimitCORE=infinity\n\
         TasksMax=infinity\nTimeoutStartSec=0\nRestart=always\nRestartSec={RESTART_SECS}s\n\
         ExecStartPre=-/sbin/modprobe br_netfilter\nExecStartPre=-/sbin/modprobe overlay\n\
         {exec_start}\n",
        env = env_file(unit),
    )
}

/// The variable assignments of a systemd `EnvironmentFile=`, in order (a later assignment of
/// a name overrides an earlier one when applied), read as systemd.exec(5) describes:
/// empty lines, lines starting with `#` or `;`, and lines without `=` are ignored; leading
/// and trailing blanks are dropped; a `'…'` value is literal, a `"…"` value takes `\\`,
/// `\"`, `\$` and `` \` `` escapes, an unquoted value keeps interior blanks and takes `\X` as
/// `X`; a line ending in `\` continues on the next. A name that is not a valid variable
/// name (`export K3S_URL`) is ignored, as systemd ignores it with a warning. Caveat: quoted
/// values spanning lines are not supported (the installer writes none).
pub fn parse_environment_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut joined = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            continue;
        }
        joined.push_str(line);
        let l = std::mem::take(&mut joined);
        let t = l.trim_matches([' ', '\t', '\r']);
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let k = k.trim_end();
        if k.is_empty()
            || k.starts_with(|c: char| c.is_ascii_digit())
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let v = v.trim_start_matches([' ', '\t']);
        let value = if let Some(r) = v.strip_prefix('\'') {
            r.split('\'').next().unwrap_or_default().to_string()
        } else if let Some(r) = v.strip_prefix('"') {
            let mut s = String::new();
            let mut it = r.chars();
            while let Some(c) = it.next() {
                match c {
                    '"' => break,
                    '\\' => match it.next() {
                        Some(n @ ('"' | '\\' | '$' | '`')) => s.push(n),
                        Some(n) => {
                            s.push('\\');
                            s.push(n);
                        }
                        None => {}
                    },
                    c => s.push(c),
                }
            }
            s
        } else {
            let mut s = String::new();
            let mut it = v.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    if let Some(n) = it.next() {
                        s.push(n);
                    }
                } else {
                    s.push(c);
                }
            }
            s
        };
        out.push((k.to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_environment_file;

    /// What systemd would load from an installer env file with an operator's edits.
    #[test]
    fn issue19_environment_files_are_read_like_systemd() {
        let text = "# ops\nK3S_TOKEN='K10x::server:y'\n; old\nK3S_URL=\"https://a:6443\"\n\
                    export K3S_URL=https://ignored:6443\nHTTP_PROXY=  http://p:3128  \nnot an assignment\n\
                    K3S_NODE_NAME=a\\\nb\n";
        assert_eq!(
            parse_environment_file(text),
            vec![
                ("K3S_TOKEN".into(), "K10x::server:y".into()),
                ("K3S_URL".into(), "https://a:6443".into()),
                ("HTTP_PROXY".into(), "http://p:3128".into()),
                ("K3S_NODE_NAME".into(), "ab".into()),
            ]
        );
    }
}
