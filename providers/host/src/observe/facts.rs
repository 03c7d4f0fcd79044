//! What observing a host returns: [`HostObservation`] and the [`HostFacts`] inside it.

use serde::{Deserialize, Serialize};

use super::layout::K3sLayout;
use crate::error::HostError;
use crate::keepalived::KeepalivedConfig;

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
    /// The installer's environment file of the server unit (`k3s.service.env`).
    #[serde(default)]
    pub server_env: EnvFile,
    /// The installer's environment file of the agent unit (`k3s-agent.service.env`).
    #[serde(default)]
    pub agent_env: EnvFile,
    /// The keepalived manifest.
    pub keepalived: ManifestFile,
    /// `<data_dir>/server/db/etcd`.
    pub etcd_data: EtcdDataDir,
    /// Free space where the data dir is (or would be).
    pub disk: Option<DiskSpace>,
    /// The `*.skip` files under `<data_dir>/server/manifests`, relative to it
    /// (`coredns.yaml.skip`): k3s's deploy controller leaves alone every packaged manifest
    /// whose file name a `.skip` file names (k3s `pkg/deploy/controller.go`).
    #[serde(default)]
    pub manifest_skips: Vec<String>,
    /// The exact bytes of `config.yaml`, token included, when [`ObserveSpec::raw_files`] was
    /// set and the file is a readable regular file. Never serialized; `Debug` prints
    /// `<redacted>`.
    #[serde(skip)]
    pub raw_config: Option<RawText>,
    /// The exact bytes of the keepalived manifest, likewise.
    #[serde(skip)]
    pub raw_keepalived: Option<RawText>,
    /// The exact bytes of the server unit's environment file, likewise (it holds
    /// `K3S_TOKEN`).
    #[serde(skip)]
    pub raw_server_env: Option<RawText>,
    /// The exact bytes of the agent unit's environment file, likewise.
    #[serde(skip)]
    pub raw_agent_env: Option<RawText>,
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

/// State of an installer environment file (`/etc/systemd/system/k3s.service.env`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EnvFile {
    /// No such file.
    #[default]
    Absent,
    /// Exists but is not readable.
    Invalid {
        /// Why.
        reason: String,
    },
    /// Read. Only `K3S_URL` is sent in this form; the whole file (secrets included) only as
    /// raw bytes ([`ObserveSpec::raw_files`]).
    Present {
        /// The value of the last `K3S_URL=` assignment (systemd: a later assignment of
        /// a variable overrides an earlier one), unquoted.
        k3s_url: Option<String>,
    },
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
