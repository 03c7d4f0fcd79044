//! Observing a host in one round trip: one POSIX `sh` script whose sections are separated by
//! marker lines carrying a per-run nonce, parsed here into [`HostFacts`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::HostError;
use crate::keepalived::{KeepalivedConfig, parse_manifest};
use crate::quote::{sh_command, sh_quote};
use crate::ssh::{HostPool, HostSession};

/// Commands that check and control services. Each is an argv prefix; the unit name is
/// appended as one more (quoted) argument. `is_active` must exit 0 exactly when the unit runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceManager {
    /// e.g. `["systemctl", "is-active", "--quiet"]`.
    pub is_active: Vec<String>,
    /// e.g. `["systemctl", "start"]`.
    pub start: Vec<String>,
    /// e.g. `["systemctl", "stop"]`.
    pub stop: Vec<String>,
    /// e.g. `["systemctl", "restart"]`.
    pub restart: Vec<String>,
}

impl ServiceManager {
    /// systemd (real k3s hosts).
    pub fn systemd() -> Self {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        ServiceManager {
            is_active: v(&["systemctl", "is-active", "--quiet"]),
            start: v(&["systemctl", "start"]),
            stop: v(&["systemctl", "stop"]),
            restart: v(&["systemctl", "restart"]),
        }
    }

    /// One program taking `<verb> <unit>` with verbs `is-active|start|stop|restart` (the
    /// lab's stand-in, OpenRC-like wrappers, …).
    pub fn single_program(program: &str) -> Self {
        let v = |verb: &str| vec![program.to_string(), verb.to_string()];
        ServiceManager {
            is_active: v("is-active"),
            start: v("start"),
            stop: v("stop"),
            restart: v("restart"),
        }
    }

    pub(crate) fn command(&self, action: ServiceAction, unit: &str) -> String {
        let prefix = match action {
            ServiceAction::Start => &self.start,
            ServiceAction::Stop => &self.stop,
            ServiceAction::Restart => &self.restart,
        };
        let mut argv = prefix.clone();
        argv.push(unit.to_string());
        sh_command(&argv)
    }

    pub(crate) fn is_active_command(&self, unit: &str) -> String {
        let mut argv = self.is_active.clone();
        argv.push(unit.to_string());
        sh_command(&argv)
    }
}

impl Default for ServiceManager {
    fn default() -> Self {
        Self::systemd()
    }
}

/// A service action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceAction {
    /// Start the unit.
    Start,
    /// Stop the unit.
    Stop,
    /// Restart the unit.
    Restart,
}

/// Where k3s lives on a host and how it is controlled. Defaults follow the official installer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sLayout {
    /// k3s data dir (`/var/lib/rancher/k3s`).
    pub data_dir: String,
    /// k3s config file (`/etc/rancher/k3s/config.yaml`).
    pub config_path: String,
    /// The k3s binary (`/usr/local/bin/k3s`).
    pub k3s_bin: String,
    /// Server unit (`k3s`).
    pub server_unit: String,
    /// Agent unit (`k3s-agent`).
    pub agent_unit: String,
    /// Service commands (systemd by default).
    pub services: ServiceManager,
    /// Uninstaller of a server (`/usr/local/bin/k3s-uninstall.sh`), argv.
    pub uninstall_server: Vec<String>,
    /// Uninstaller of an agent (`/usr/local/bin/k3s-agent-uninstall.sh`), argv.
    pub uninstall_agent: Vec<String>,
    /// Shell snippet that installs k3s; it sees `INSTALL_K3S_VERSION`, `INSTALL_K3S_EXEC`,
    /// `K3S_URL`, `K3S_TOKEN` (and any extra variables) in its environment. Default:
    /// `curl -sfL https://get.k3s.io | sh -s -`. Trusted configuration: run as written.
    pub install_command: String,
}

/// The default installer snippet.
pub const DEFAULT_INSTALL_COMMAND: &str = "curl -sfL https://get.k3s.io | sh -s -";

impl Default for K3sLayout {
    fn default() -> Self {
        K3sLayout {
            data_dir: "/var/lib/rancher/k3s".into(),
            config_path: "/etc/rancher/k3s/config.yaml".into(),
            k3s_bin: "/usr/local/bin/k3s".into(),
            server_unit: "k3s".into(),
            agent_unit: "k3s-agent".into(),
            services: ServiceManager::systemd(),
            uninstall_server: vec!["/usr/local/bin/k3s-uninstall.sh".into()],
            uninstall_agent: vec!["/usr/local/bin/k3s-agent-uninstall.sh".into()],
            install_command: DEFAULT_INSTALL_COMMAND.into(),
        }
    }
}

impl K3sLayout {
    /// `<data_dir>/server/db/etcd`.
    pub fn etcd_dir(&self) -> String {
        format!("{}/server/db/etcd", self.data_dir.trim_end_matches('/'))
    }
}

/// What to observe on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObserveSpec {
    /// Paths and service commands.
    pub layout: K3sLayout,
    /// The VIP's keepalived static pod manifest (`vip.manifest_path`); `None`: not read.
    pub keepalived_manifest: Option<String>,
    /// Also return the exact bytes of `config.yaml` and of the manifest, secrets included, as
    /// [`HostFacts::raw_config`] / [`HostFacts::raw_keepalived`] (in the same round trip).
    /// For callers that must show or rewrite the files; they must mask the secrets
    /// themselves before printing anything.
    pub raw_files: bool,
}

/// Result of observing one host: never "absent", only reachable or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HostObservation {
    /// The host answered.
    Reachable(Box<HostFacts>),
    /// The host could not be reached, authenticated, trusted, or observed. The planner must
    /// treat everything about it as unknown.
    Unreachable {
        /// Why (carries the host, address and, for host keys, the fingerprint).
        reason: String,
        /// Class of failure.
        kind: UnreachableKind,
    },
}

/// Why a host is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreachableKind {
    /// Connect timed out.
    Timeout,
    /// TCP/SSH-level failure (refused, reset, …).
    Network,
    /// Host key unknown (or known_hosts unreadable): refused for safety.
    HostKey,
    /// Host key differs from the one known_hosts records: possible man-in-the-middle.
    HostKeyChanged,
    /// Authentication failed or the key could not be loaded.
    Auth,
    /// Connected, but the observe script failed or printed nonsense.
    ObserveFailed,
}

impl HostObservation {
    /// The facts, when reachable.
    pub fn facts(&self) -> Option<&HostFacts> {
        match self {
            HostObservation::Reachable(f) => Some(f),
            HostObservation::Unreachable { .. } => None,
        }
    }

    /// Maps an error of [`HostSession::connect`] / [`HostSession::observe`].
    pub fn from_error(e: &HostError) -> Self {
        let kind = match e {
            HostError::ConnectTimeout { .. } => UnreachableKind::Timeout,
            HostError::Connect { .. } => UnreachableKind::Network,
            HostError::HostKeyChanged { .. } => UnreachableKind::HostKeyChanged,
            HostError::UnknownHostKey { .. } | HostError::KnownHosts { .. } => {
                UnreachableKind::HostKey
            }
            HostError::AuthFailed { .. } | HostError::PrivateKey { .. } => UnreachableKind::Auth,
            _ => UnreachableKind::ObserveFailed,
        };
        HostObservation::Unreachable {
            reason: e.to_string(),
            kind,
        }
    }
}

/// Service state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// `is_active` exited 0.
    Active,
    /// `is_active` exited non-zero (stopped, failed, or not installed).
    Inactive,
    /// The service manager itself could not run (exit 126/127).
    Unknown(String),
}

/// Everything observed on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `hostname` output.
    pub hostname: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os: Option<String>,
    /// `uname -sr`.
    pub kernel: Option<String>,
    /// The k3s binary.
    pub k3s_binary: K3sBinary,
    /// Server unit state.
    pub server_service: ServiceState,
    /// Agent unit state.
    pub agent_service: ServiceState,
    /// `config.yaml`.
    pub config: ConfigFile,
    /// The keepalived manifest.
    pub keepalived: ManifestFile,
    /// `<data_dir>/server/db/etcd`.
    pub etcd_data: EtcdDataDir,
    /// Free space where the data dir is (or would be).
    pub disk: Option<DiskSpace>,
    /// The exact bytes of `config.yaml`, token included, when [`ObserveSpec::raw_files`] was
    /// set and the file is a readable regular file. Never serialized; `Debug` prints
    /// `<redacted>`.
    #[serde(skip)]
    pub raw_config: Option<RawText>,
    /// The exact bytes of the keepalived manifest, likewise.
    #[serde(skip)]
    pub raw_keepalived: Option<RawText>,
}

/// A file's bytes that may hold secrets: `Debug` prints only the length, and the type is
/// never serialized.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawText(Vec<u8>);

impl RawText {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        RawText(bytes.into())
    }
    /// The bytes (mask secrets before showing them).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for RawText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted: {} bytes>", self.0.len())
    }
}

/// The k3s binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sBinary {
    /// Whether the binary exists and is executable.
    pub present: bool,
    /// e.g. `v1.28.5+k3s1`, from `k3s --version`.
    pub version: Option<String>,
}

/// State of `config.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConfigFile {
    /// No such file.
    Absent,
    /// Exists but not readable, or not valid YAML.
    Invalid {
        /// Why.
        reason: String,
    },
    /// Parsed.
    Present(K3sConfig),
}

/// The parts of k3s's `config.yaml` the planner uses. The token is NEVER read: the host
/// redacts it before sending, and only its presence is recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct K3sConfig {
    /// `server:` join URL.
    pub server: Option<String>,
    /// `cluster-init:`.
    pub cluster_init: bool,
    /// `token:` present.
    pub token_present: bool,
    /// `agent-token:` present.
    pub agent_token_present: bool,
    /// `disable-etcd:`.
    pub disable_etcd: bool,
    /// `disable-apiserver:`.
    pub disable_apiserver: bool,
    /// `disable-controller-manager:`.
    pub disable_controller_manager: bool,
    /// `disable-scheduler:`.
    pub disable_scheduler: bool,
    /// `disable-agent:`.
    pub disable_agent: bool,
    /// `node-name:`.
    pub node_name: Option<String>,
    /// `node-ip:` (string or first list element).
    pub node_ip: Option<String>,
    /// `data-dir:`.
    pub data_dir: Option<String>,
    /// `node-label:` entries.
    pub node_labels: Vec<String>,
    /// `node-taint:` entries.
    pub node_taints: Vec<String>,
    /// `disable:` (packaged components, e.g. `traefik`).
    pub disable: Vec<String>,
    /// `tls-san:` entries.
    pub tls_san: Vec<String>,
    /// Every top-level key present, sorted (to spot unknown keys, which k3s rejects).
    pub keys: Vec<String>,
}

/// State of the keepalived manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ManifestFile {
    /// No manifest path was asked for.
    NotRequested,
    /// No such file.
    Absent,
    /// Unreadable or not a keepalived manifest.
    Invalid {
        /// Why.
        reason: String,
    },
    /// Parsed.
    Present(KeepalivedConfig),
}

/// The embedded etcd data dir, for stale-data detection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdDataDir {
    /// `<data_dir>/server/db/etcd` exists.
    pub exists: bool,
    /// `member/` inside exists (etcd has data).
    pub has_member_dir: bool,
    /// k3s wrote `tombstone`: this member was removed from its cluster.
    pub tombstone: bool,
    /// Content of `name` (k3s: `<short hostname>-<8 hex>`).
    pub member_name: Option<String>,
    /// From `config`: `initial-advertise-peer-urls` (match members by peer URL).
    pub peer_urls: Option<String>,
    /// From `config`: `initial-cluster` (the cluster this data was created for).
    pub initial_cluster: Option<String>,
    /// From `config`: `initial-cluster-state` (`new` or `existing`).
    pub initial_cluster_state: Option<String>,
    /// Earlier backups (`<data_dir>/server/db/etcd-backup-*`), paths.
    pub backups: Vec<String>,
}

/// Disk space of the file system holding the data dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Path measured: the data dir, or its nearest existing parent.
    pub path: String,
    /// Bytes available to root... as `df` reports "Available".
    pub available_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

static NONCE: AtomicU64 = AtomicU64::new(0);

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{:x}",
        t,
        std::process::id(),
        NONCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds the observe script. Every value is quoted with [`sh_quote`].
pub fn observe_script(spec: &ObserveSpec, marker: &str) -> String {
    let l = &spec.layout;
    let manifest = spec.keepalived_manifest.clone().unwrap_or_default();
    format!(
        r#"M={marker}
CFG={cfg}
DATA={data}
MAN={man}
K3S={k3s}
RAW={raw}
echo "$M hostname"; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
echo "$M os"; sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null; echo
echo "$M kernel"; uname -sr 2>/dev/null
echo "$M k3s"
if [ -f "$K3S" ] && [ -x "$K3S" ]; then echo present; "$K3S" --version </dev/null 2>/dev/null | head -n 1; else echo absent; fi
echo "$M svc-server"; {server_active} </dev/null >/dev/null 2>&1; echo $?
echo "$M svc-agent"; {agent_active} </dev/null >/dev/null 2>&1; echo $?
echo "$M config"
if [ ! -e "$CFG" ]; then echo absent
elif [ ! -r "$CFG" ]; then echo unreadable
else echo present; sed -E 's/^([[:space:]]*["'"'"']?(token|agent-token)["'"'"']?[[:space:]]*:).*$/\1 "<redacted>"/' "$CFG"; echo
fi
echo "$M manifest"
if [ -z "$MAN" ]; then echo skipped
elif [ ! -e "$MAN" ]; then echo absent
elif [ ! -r "$MAN" ]; then echo unreadable
else echo present; awk '{{ if ($0 ~ /KEEPALIVED_PASSWORD/) {{ if ($0 ~ /value:/) sub(/value:.*/, "value: \"<redacted>\"}}"); else p=1 }} else if (p && $0 ~ /value:/) {{ sub(/value:.*/, "value: \"<redacted>\""); p=0 }} sub(/auth_pass[[:space:]].*/, "auth_pass <redacted>"); print }}' "$MAN"
fi
echo "$M etcd"
E="$DATA/server/db/etcd"
if [ -d "$E" ]; then
  echo exists
  if [ -d "$E/member" ]; then echo member-dir; fi
  if [ -e "$E/tombstone" ]; then echo tombstone; fi
  if [ -f "$E/name" ]; then printf 'name %s\n' "$(head -n 1 "$E/name")"; fi
  if [ -f "$E/config" ]; then grep -E '^(initial-cluster|initial-cluster-state|initial-advertise-peer-urls):' "$E/config" | sed 's/^/config /'; fi
else echo missing
fi
for b in "$DATA"/server/db/etcd-backup-*; do if [ -e "$b" ]; then printf 'backup %s\n' "$b"; fi; done
echo "$M disk"
p=$DATA; while [ ! -e "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname -- "$p"); done
echo "$p"; df -Pk -- "$p" 2>/dev/null | tail -n 1
if [ "$RAW" = 1 ]; then
  echo "$M config-raw"; if [ -f "$CFG" ] && [ -r "$CFG" ]; then echo present; if od -An -v -tx1 -- "$CFG"; then echo ok; else echo failed; fi; fi
  echo "$M manifest-raw"; if [ -n "$MAN" ] && [ -f "$MAN" ] && [ -r "$MAN" ]; then echo present; if od -An -v -tx1 -- "$MAN"; then echo ok; else echo failed; fi; fi
fi
echo "$M end"
"#,
        marker = sh_quote(marker),
        cfg = sh_quote(&l.config_path),
        data = sh_quote(l.data_dir.trim_end_matches('/')),
        man = sh_quote(&manifest),
        k3s = sh_quote(&l.k3s_bin),
        raw = if spec.raw_files { "1" } else { "0" },
        server_active = l.services.is_active_command(&l.server_unit),
        agent_active = l.services.is_active_command(&l.agent_unit),
    )
}

/// The remote command line that runs [`observe_script`] (what [`HostSession::observe`] sends).
pub fn observe_command(spec: &ObserveSpec, marker: &str) -> String {
    sh_command(&["sh", "-c", &observe_script(spec, marker)])
}

fn sections(out: &str, marker: &str) -> BTreeMap<String, Vec<String>> {
    let prefix = format!("{marker} ");
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix(&prefix) {
            cur = Some(name.to_string());
            map.entry(name.to_string()).or_default();
        } else if let Some(c) = &cur {
            map.get_mut(c)
                .expect("section exists")
                .push(line.to_string());
        }
    }
    map
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').trim_matches('\'').to_string()
}

fn service_state(lines: Option<&Vec<String>>) -> ServiceState {
    match lines.and_then(|l| l.first()).map(|s| s.trim()) {
        Some("0") => ServiceState::Active,
        Some("126") | Some("127") => {
            ServiceState::Unknown("service manager command not found or not executable".into())
        }
        Some(_) => ServiceState::Inactive,
        None => ServiceState::Unknown("no output".into()),
    }
}

fn yaml_bool(v: Option<&serde_yaml::Value>) -> bool {
    match v {
        Some(serde_yaml::Value::Bool(b)) => *b,
        Some(serde_yaml::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn yaml_list(v: Option<&serde_yaml::Value>) -> Vec<String> {
    match v {
        Some(serde_yaml::Value::Sequence(seq)) => seq
            .iter()
            .filter_map(|x| match x {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_yaml::Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses (redacted) `config.yaml` text.
pub fn parse_k3s_config(text: &str) -> Result<K3sConfig, String> {
    if text.trim().is_empty() {
        return Ok(K3sConfig::default());
    }
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let Some(map) = v.as_mapping() else {
        return Err("top level is not a mapping".into());
    };
    let get = |k: &str| map.get(k);
    let string = |k: &str| match get(k) {
        Some(serde_yaml::Value::String(s)) => Some(s.clone()),
        Some(serde_yaml::Value::Sequence(_)) => yaml_list(get(k)).into_iter().next(),
        _ => None,
    };
    let mut keys: Vec<String> = map
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    keys.sort();
    Ok(K3sConfig {
        server: string("server"),
        cluster_init: yaml_bool(get("cluster-init")),
        token_present: get("token").is_some(),
        agent_token_present: get("agent-token").is_some(),
        disable_etcd: yaml_bool(get("disable-etcd")),
        disable_apiserver: yaml_bool(get("disable-apiserver")),
        disable_controller_manager: yaml_bool(get("disable-controller-manager")),
        disable_scheduler: yaml_bool(get("disable-scheduler")),
        disable_agent: yaml_bool(get("disable-agent")),
        node_name: string("node-name"),
        node_ip: string("node-ip"),
        data_dir: string("data-dir"),
        node_labels: yaml_list(get("node-label")),
        node_taints: yaml_list(get("node-taint")),
        disable: yaml_list(get("disable")),
        tls_san: yaml_list(get("tls-san")),
        keys,
    })
}

/// Parses the observe script's output.
pub fn parse_observe_output(
    host: &str,
    out: &str,
    marker: &str,
    spec: &ObserveSpec,
) -> Result<HostFacts, HostError> {
    let s = sections(out, marker);
    let bad = |detail: String| HostError::Output {
        host: host.to_string(),
        command: "observe script".into(),
        detail,
    };
    if !s.contains_key("end") {
        return Err(bad("the script did not run to its end marker".into()));
    }
    let first = |k: &str| {
        s.get(k)
            .and_then(|l| l.first())
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
    };
    let hostname = first("hostname").ok_or_else(|| bad("no hostname".into()))?;
    let k3s_lines = s.get("k3s").cloned().unwrap_or_default();
    let k3s_binary = K3sBinary {
        present: k3s_lines.first().map(|l| l.trim()) == Some("present"),
        version: k3s_lines.get(1).and_then(|l| {
            // "k3s version v1.28.5+k3s1 (5b2d1271)"
            let mut w = l.split_whitespace();
            while let Some(x) = w.next() {
                if x == "version" {
                    return w.next().map(String::from);
                }
            }
            None
        }),
    };
    let body = |k: &str| -> (String, String) {
        let lines = s.get(k).cloned().unwrap_or_default();
        let state = lines.first().cloned().unwrap_or_default();
        (state, lines.get(1..).unwrap_or(&[]).join("\n"))
    };
    let (cstate, ctext) = body("config");
    let config = match cstate.trim() {
        "absent" => ConfigFile::Absent,
        "unreadable" => ConfigFile::Invalid {
            reason: format!("{} is not readable", spec.layout.config_path),
        },
        "present" => match parse_k3s_config(&ctext) {
            Ok(c) => ConfigFile::Present(c),
            Err(e) => ConfigFile::Invalid {
                reason: format!("{}: {e}", spec.layout.config_path),
            },
        },
        other => return Err(bad(format!("config section state {other:?}"))),
    };
    let (mstate, mtext) = body("manifest");
    let mpath = spec.keepalived_manifest.clone().unwrap_or_default();
    let keepalived = match mstate.trim() {
        "skipped" => ManifestFile::NotRequested,
        "absent" => ManifestFile::Absent,
        "unreadable" => ManifestFile::Invalid {
            reason: format!("{mpath} is not readable"),
        },
        "present" => match parse_manifest(&mpath, &mtext) {
            Ok(c) => ManifestFile::Present(c),
            Err(e) => ManifestFile::Invalid {
                reason: e.to_string(),
            },
        },
        other => return Err(bad(format!("manifest section state {other:?}"))),
    };
    let mut etcd_data = EtcdDataDir::default();
    for line in s.get("etcd").cloned().unwrap_or_default() {
        let line = line.trim_end();
        match line {
            "exists" => etcd_data.exists = true,
            "member-dir" => etcd_data.has_member_dir = true,
            "tombstone" => etcd_data.tombstone = true,
            _ => {
                if let Some(n) = line.strip_prefix("name ") {
                    etcd_data.member_name = Some(n.trim().to_string()).filter(|n| !n.is_empty());
                } else if let Some(b) = line.strip_prefix("backup ") {
                    etcd_data.backups.push(b.to_string());
                } else if let Some(c) = line.strip_prefix("config ")
                    && let Some((k, v)) = c.split_once(':')
                {
                    let v = Some(unquote(v)).filter(|v| !v.is_empty());
                    match k {
                        "initial-cluster" => etcd_data.initial_cluster = v,
                        "initial-cluster-state" => etcd_data.initial_cluster_state = v,
                        "initial-advertise-peer-urls" => etcd_data.peer_urls = v,
                        _ => {}
                    }
                }
            }
        }
    }
    let disk = s.get("disk").and_then(|l| {
        let path = l.first()?.trim().to_string();
        let cols: Vec<&str> = l.get(1)?.split_whitespace().collect();
        // Filesystem 1024-blocks Used Available Capacity Mounted-on
        let total: u64 = cols.get(1)?.parse().ok()?;
        let avail: u64 = cols.get(3)?.parse().ok()?;
        Some(DiskSpace {
            path,
            available_bytes: avail * 1024,
            total_bytes: total * 1024,
        })
    });
    let raw = |k: &str| -> Result<Option<RawText>, HostError> {
        let Some(lines) = s.get(k) else {
            return Ok(None);
        };
        if lines.first().map(|l| l.trim()) != Some("present") {
            return Ok(None);
        }
        // The text is what `plan` shows and `apply` rewrites: a truncated read must not pass
        // for a shorter file. `od` ends with `ok` only when it read the whole file.
        let (last, hex) = match lines[1..].split_last() {
            Some((last, hex)) => (last.trim(), hex),
            None => ("", &[][..]),
        };
        if last != "ok" {
            return Err(bad(format!(
                "{k} section: `od -An -v -tx1` did not read the whole file ({})",
                if last == "failed" {
                    "it failed; is od (POSIX) installed?"
                } else {
                    "output cut short"
                }
            )));
        }
        let mut bytes = Vec::new();
        for w in hex.iter().flat_map(|l| l.split_whitespace()) {
            let b = u8::from_str_radix(w, 16)
                .map_err(|_| bad(format!("{k} section: {w:?} is not a hex byte")))?;
            bytes.push(b);
        }
        Ok(Some(RawText(bytes)))
    };
    let raw_config = raw("config-raw")?;
    let raw_keepalived = raw("manifest-raw")?;
    Ok(HostFacts {
        hostname,
        os: first("os").map(|o| unquote(&o)),
        kernel: first("kernel"),
        k3s_binary,
        server_service: service_state(s.get("svc-server")),
        agent_service: service_state(s.get("svc-agent")),
        config,
        keepalived,
        etcd_data,
        disk,
        raw_config,
        raw_keepalived,
    })
}

impl HostSession {
    /// Observes the host in one round trip (one exec of one `sh` script).
    pub async fn observe(&self, spec: &ObserveSpec) -> Result<HostFacts, HostError> {
        let marker = format!("@@k3splan-{}@@", nonce());
        let out = self
            .exec("observe script", &observe_command(spec, &marker), b"")
            .await?;
        if out.status != Some(0) && !out.stdout_str().contains(&format!("{marker} end")) {
            return Err(self.failed("observe script", &out));
        }
        parse_observe_output(self.name(), &out.stdout_str(), &marker, spec)
    }
}

impl HostPool {
    /// Observes one host: connect (or reuse) and run the observe script. Never fails:
    /// problems become [`HostObservation::Unreachable`]. A reused connection that turns out
    /// broken is replaced once.
    pub async fn observe(&self, name: &str, spec: &ObserveSpec) -> HostObservation {
        let attempt = || async {
            let s = self.session(name).await?;
            s.observe(spec).await
        };
        let mut result = attempt().await;
        if let Err(HostError::Channel { .. }) = result {
            // A reused connection broke (host rebooted, sshd restarted): reconnect once.
            self.invalidate(name).await;
            result = attempt().await;
        }
        match result {
            Ok(f) => HostObservation::Reachable(Box::new(f)),
            Err(e) => HostObservation::from_error(&e),
        }
    }

    /// Observes the given hosts, at most [`HostPool::parallelism`] at once, each with its own
    /// spec. Returns one observation per requested host.
    pub async fn observe_many(
        &self,
        requests: Vec<(String, ObserveSpec)>,
    ) -> BTreeMap<String, HostObservation> {
        futures::stream::iter(requests)
            .map(|(name, spec)| async move {
                let o = self.observe(&name, &spec).await;
                (name, o)
            })
            .buffer_unordered(self.parallelism())
            .collect()
            .await
    }

    /// Observes every host of the pool with the same spec.
    pub async fn observe_all(&self, spec: &ObserveSpec) -> BTreeMap<String, HostObservation> {
        let reqs = self
            .names()
            .map(|n| (n.to_string(), spec.clone()))
            .collect();
        self.observe_many(reqs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(raw_section: &str) -> String {
        let m = "@@m@@";
        format!(
            "{m} hostname\nh1\n{m} config\npresent\nserver: https://10.0.0.1:6443\n{m} manifest\nskipped\n{m} config-raw\n{raw_section}{m} end\n"
        )
    }

    fn spec() -> ObserveSpec {
        ObserveSpec {
            raw_files: true,
            ..ObserveSpec::default()
        }
    }

    /// `plan` rewrites config.yaml from this text: a read that failed or was cut short must
    /// be an observation failure, never an empty or shorter file.
    #[test]
    fn a_raw_read_without_its_ok_trailer_fails_the_observation() {
        let ok = parse_observe_output("h1", &output("present\n 61 0a\nok\n"), "@@m@@", &spec())
            .expect("complete read");
        assert_eq!(ok.raw_config.unwrap().expose(), b"a\n");
        let empty = parse_observe_output("h1", &output("present\nok\n"), "@@m@@", &spec())
            .expect("an empty file is fine");
        assert_eq!(empty.raw_config.unwrap().expose(), b"");
        for (section, why) in [
            ("present\nfailed\n", "is od (POSIX) installed?"),
            ("present\n", "output cut short"),
            ("present\n 61 0a\n", "output cut short"),
        ] {
            let e = parse_observe_output("h1", &output(section), "@@m@@", &spec())
                .expect_err(section)
                .to_string();
            assert!(
                e.contains("config-raw") && e.contains(why),
                "{section:?}: {e}"
            );
            assert!(e.contains("h1"), "names the host: {e}");
        }
    }
}
