//! The validated topology: what the operator declared, with defaults applied.
//!
//! Values here are plain data: no I/O, no HCL. [`crate::config::load`] builds a
//! [`Topology`] from HCL files after validation; tests build them by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default k3s data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/rancher/k3s";
/// Default path of the keepalived static pod manifest.
pub const DEFAULT_VIP_MANIFEST: &str = "/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml";
/// keepalived priority of the primary node unless `vip_priority` overrides it.
pub const PRIMARY_PRIORITY: u8 = 100;
/// keepalived priority of the other servers unless `vip_priority` overrides it.
pub const BACKUP_PRIORITY: u8 = 90;
/// The add-ons k3s ships that k3splan watches by default.
pub const DEFAULT_ADDONS: [&str; 3] = ["coredns", "metrics-server", "local-path-provisioner"];

/// The whole declared topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub cluster: Cluster,
    /// Nodes in declaration order.
    pub nodes: Vec<Node>,
    pub storage: Vec<StorageBinding>,
    pub addons: Vec<Addon>,
    /// Where the state lives; `None` = local file.
    pub backend: Option<Backend>,
    /// The thresholds of `k3splan check` (the `check { … }` block; defaults when absent).
    #[serde(
        default,
        skip_serializing_if = "crate::check::CheckSettings::is_default"
    )]
    pub check: crate::check::CheckSettings,
}

impl Topology {
    /// The node with this name, if declared.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Nodes that run an etcd member, in declaration order.
    pub fn etcd_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.roles.runs_etcd())
    }

    /// The k3s version `node` should run: its own `k3s_version`, else the cluster's.
    pub fn k3s_version_of<'a>(&'a self, node: &'a Node) -> Option<&'a str> {
        node.k3s_version
            .as_deref()
            .or(self.cluster.k3s_version.as_deref())
    }

    /// Nodes that run a k3s server (etcd and/or control plane), in declaration order.
    pub fn server_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.roles.is_server())
    }

    /// The node marked `primary = true`, if any.
    pub fn primary(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.primary)
    }

    /// keepalived priority this node should have, when a VIP is declared and the node is a
    /// server: `vip_priority` if set, else 100 for the primary and 90 for the others.
    pub fn vip_priority(&self, node: &Node) -> Option<u8> {
        self.cluster.vip.as_ref()?;
        if !node.roles.is_server() {
            return None;
        }
        Some(node.vip_priority.unwrap_or(if node.primary {
            PRIMARY_PRIORITY
        } else {
            BACKUP_PRIORITY
        }))
    }
}

/// The `cluster "NAME" { … }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    /// k3s version to install on new nodes, e.g. `v1.28.5+k3s1`.
    pub k3s_version: Option<String>,
    /// Join token (from `env()` / `file()`).
    pub token: Option<Secret>,
    /// The URL new nodes join through and clients use (the VIP, usually).
    pub api_endpoint: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub kube_context: Option<String>,
    /// k3s `--data-dir` on every node (default `/var/lib/rancher/k3s`).
    pub data_dir: String,
    /// Command that installs k3s on a host (default: the official install script).
    pub install_command: Option<String>,
    pub etcd: EtcdSettings,
    pub vip: Option<Vip>,
    /// SSH defaults for every node.
    pub ssh: SshSettings,
    /// How k3s is laid out and controlled on the hosts.
    pub host: HostLayout,
    /// The `timeouts { … }` block: bounds of apply's waits (unset: the defaults).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The `upgrade { … }` block: how a k3s version change is rolled out (issue 15).
    #[serde(default)]
    pub upgrade: UpgradeSettings,
}

/// The `upgrade { … }` block of `cluster` (issue 15): servers are always upgraded one at a
/// time; agents in batches of `max_unavailable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSettings {
    /// How many agents may be cordoned and restarting at once (default 1).
    #[serde(default)]
    pub max_unavailable: MaxUnavailable,
}

/// `max_unavailable = N` or `"N%"` (of the agents, rounded down, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxUnavailable {
    Count(u32),
    Percent(u32),
}

impl Default for MaxUnavailable {
    fn default() -> Self {
        MaxUnavailable::Count(1)
    }
}

impl MaxUnavailable {
    /// The batch size for `agents` agents: at least 1.
    pub fn batch(self, agents: usize) -> usize {
        match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => agents * p as usize / 100,
        }
        .max(1)
    }
}

/// The `timeouts { … }` block of `cluster`: how long apply waits for each thing. `None`
/// keeps the default ([`Timeouts::DEFAULTS`], documented in docs/configuration.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// A joined server's etcd learner promoted to a healthy voter.
    pub learner_promoted: Option<std::time::Duration>,
    /// A joined or restarted node's Node Ready.
    pub node_ready: Option<std::time::Duration>,
    /// A rebound volume's pod running again on another node.
    pub pod_rescheduled: Option<std::time::Duration>,
    /// A drain's evictions.
    pub drain: Option<std::time::Duration>,
    /// The final verification (members healthy, one leader, equal HashKV, nodes Ready).
    pub verify: Option<std::time::Duration>,
}

impl Timeouts {
    /// The defaults, `(attribute, seconds)`: k3s promotes a learner from a 15 s loop once
    /// it caught up (10–14 s observed on v1.21), a joining server's install takes seconds,
    /// but a slow disk or a large keyspace stretches both.
    pub const DEFAULTS: [(&'static str, u64); 5] = [
        ("learner_promoted", 180),
        ("node_ready", 180),
        ("pod_rescheduled", 180),
        ("drain", 300),
        ("verify", 120),
    ];

    /// The default of one attribute.
    pub fn default_of(name: &str) -> std::time::Duration {
        let secs = Self::DEFAULTS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(180, |(_, s)| *s);
        std::time::Duration::from_secs(secs)
    }
}

/// Parses a duration as Terraform's `timeouts` blocks write them: one or more
/// `<number><unit>` parts with units `s`, `m`, `h` (`"90s"`, `"3m"`, `"1h30m"`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_units(s, &[('s', 1), ('m', 60), ('h', 3600)]).map(std::time::Duration::from_secs)
}

/// Seconds of a duration written as one or more `<number><unit>` parts, `units` giving each
/// unit letter's seconds (the `timeouts` block's `s`, `m`, `h`; the `check` block adds `d`).
pub fn parse_duration_units(s: &str, units: &[(char, u64)]) -> Result<u64, String> {
    let names = units
        .iter()
        .map(|(c, _)| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty".into());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let Some(&(_, unit)) = units.iter().find(|(u, _)| *u == c) else {
            return Err(format!(
                "has {c:?} where a digit or a unit ({names}) belongs"
            ));
        };
        if num.is_empty() {
            return Err(format!("has the unit {c:?} without a number before it"));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| "has a number too large".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or("is too long")?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("ends with {num:?} without a unit ({names})"));
    }
    Ok(total)
}

/// The `host { … }` block: where k3s lives on the hosts and how its service is controlled.
/// The defaults are those of the official install script on a systemd host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLayout {
    /// The k3s binary.
    pub k3s_binary: String,
    /// The k3s config file.
    pub config_path: String,
    /// Program (argv prefix) taking `is-active|start|stop|restart UNIT`; empty = systemd.
    pub service_command: Vec<String>,
    /// Uninstaller of a server.
    pub uninstall_command: Vec<String>,
    /// Uninstaller of an agent.
    pub agent_uninstall_command: Vec<String>,
}

/// Default k3s config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";

impl Default for HostLayout {
    fn default() -> Self {
        HostLayout {
            k3s_binary: "/usr/local/bin/k3s".into(),
            config_path: DEFAULT_CONFIG_PATH.into(),
            service_command: Vec::new(),
            uninstall_command: vec!["/usr/local/bin/k3s-uninstall.sh".into()],
            agent_uninstall_command: vec!["/usr/local/bin/k3s-agent-uninstall.sh".into()],
        }
    }
}

/// The `etcd { … }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Client endpoints; empty = `https://ADDRESS:2379` of every etcd node.
    pub endpoints: Vec<String>,
    /// Take an etcd snapshot before the first destructive step (default true).
    pub snapshot_before_apply: bool,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            endpoints: Vec::new(),
            snapshot_before_apply: true,
        }
    }
}

/// The `vip { … }` block: a keepalived VIP run as a static pod on the servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vip {
    pub address: IpAddr,
    pub interface: String,
    /// VRRP virtual router id, 1–255.
    pub router_id: u8,
    pub password: Option<Secret>,
    pub manifest_path: String,
}

/// SSH settings (cluster defaults, or a node's effective settings after merging overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub private_key_file: Option<PathBuf>,
    pub known_hosts_file: PathBuf,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            user: "root".into(),
            port: 22,
            private_key_file: None,
            known_hosts_file: PathBuf::from("~/.ssh/known_hosts"),
        }
    }
}

/// A `node "NAME" { … }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
    pub roles: Roles,
    /// Holds the VIP by default (keepalived priority 100).
    pub primary: bool,
    /// Explicit keepalived priority.
    pub vip_priority: Option<u8>,
    /// Effective SSH settings (cluster defaults merged with the node's `ssh` block).
    pub ssh: SshSettings,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `k3s_config = { … }`: extra k3s config.yaml keys written after the ones k3splan owns
    /// (validated against k3s's flags, see `config/load/k3s_config.rs`). Values are bools,
    /// numbers, strings or lists of strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub k3s_config: BTreeMap<String, serde_json::Value>,
    /// Deprecated: always `false` from HCL (`replace = true` is refused, issue 13: as an
    /// attribute it replaced the node on every apply). Replacements are requested once, on
    /// the command line (`-replace=node.NAME`, [`crate::plan::PlanOptions::replace`]); a
    /// library caller setting this gets the same one-shot treatment for that plan only.
    pub replace: bool,
    /// `k3s_version` of this node: overrides the cluster's (a canary upgrade, issue 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_version: Option<String>,
}

impl Node {
    /// Whether k3s runs an agent (kubelet) here as declared: every agent, and every server
    /// unless its `k3s_config` sets `disable-agent`. A server without an agent never
    /// registers a Node (k3s-io/k3s pkg/cli/cmds/server.go: `disable-agent` "Do not run a
    /// local agent and register a local kubelet").
    pub fn runs_agent(&self) -> bool {
        self.roles.is_agent() || !self.disables_agent()
    }

    /// `k3s_config` sets `disable-agent` to true (a bool, or the string "true").
    pub fn disables_agent(&self) -> bool {
        match self.k3s_config.get("disable-agent") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        }
    }
}

/// A node role as written in HCL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A full k3s server: etcd member and control plane.
    Server,
    /// An etcd member (alone: a k3s server with the control plane disabled).
    Etcd,
    /// Control plane (alone: a k3s server with etcd disabled).
    ControlPlane,
    /// A k3s agent (worker).
    Agent,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Server, Role::Etcd, Role::ControlPlane, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Etcd => "etcd",
            Role::ControlPlane => "control-plane",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of roles of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roles(pub BTreeSet<Role>);

impl Roles {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        Roles(roles.into_iter().collect())
    }
    pub fn contains(&self, r: Role) -> bool {
        self.0.contains(&r)
    }
    /// Runs an etcd member: `server` or `etcd`.
    pub fn runs_etcd(&self) -> bool {
        self.contains(Role::Server) || self.contains(Role::Etcd)
    }
    /// Runs the control plane (API server…): `server` or `control-plane`.
    pub fn runs_control_plane(&self) -> bool {
        self.contains(Role::Server) || self.contains(Role::ControlPlane)
    }
    /// Runs `k3s server` (any of server / etcd / control-plane).
    pub fn is_server(&self) -> bool {
        self.runs_etcd() || self.runs_control_plane()
    }
    /// Runs `k3s agent` only.
    pub fn is_agent(&self) -> bool {
        self.contains(Role::Agent) && !self.is_server()
    }
}

/// A node taint `key=value:Effect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{:?}", self.key, v, self.effect),
            None => write!(f, "{}:{:?}", self.key, self.effect),
        }
    }
}

/// A `storage "NAMESPACE/NAME" { … }` block: what to do with a workload's local-path
/// volumes when the node holding them is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageBinding {
    pub namespace: String,
    /// Workload (StatefulSet / Deployment) name.
    pub name: String,
    pub kind: WorkloadKind,
    pub on_node_loss: OnNodeLoss,
    /// Nodes the rebound volume should land on, in order of preference.
    pub prefer_nodes: Vec<String>,
}

impl StorageBinding {
    /// `NAMESPACE/NAME`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
}

/// Policy for local volumes of a lost node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNodeLoss {
    /// Delete PVC + pod; the StatefulSet controller recreates both on another node.
    Rebind,
    /// Delete PVC + Deployment; its operator recreates them.
    Recreate,
    /// Leave the volume alone (the operator restores it by hand).
    Keep,
}

/// An `addon "NAME" { … }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addon {
    /// Deployment name.
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    /// Topology key the replicas are spread over (`kubernetes.io/hostname`), if any.
    pub spread: Option<String>,
}

/// The `backend "KIND" { … }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Backend {
    Local {
        path: Option<PathBuf>,
    },
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    },
}

/// A secret value (join token, VRRP password). Its `Debug` and `Display` print
/// `(sensitive)`, and it serializes as its source (`env:NAME` / `file:PATH`), never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Where the value comes from, e.g. `env("K3S_TOKEN")`.
    source: String,
    value: Option<String>,
}

impl Secret {
    /// A secret read from `source`; `value` is `None` when it is not available yet
    /// (an unset environment variable at validation time).
    pub fn new(source: impl Into<String>, value: Option<String>) -> Self {
        Secret {
            source: source.into(),
            value,
        }
    }
    /// Where the value comes from, safe to print.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The clear value. Never log it.
    pub fn expose(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, (sensitive))", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Ok(Secret {
            source,
            value: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("env(\"K3S_TOKEN\")", Some("hunter2".into()));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
        assert_eq!(s.expose(), Some("hunter2"));
    }

    #[test]
    fn role_semantics() {
        let full = Roles::new([Role::Server, Role::Etcd]);
        assert!(full.runs_etcd() && full.runs_control_plane() && full.is_server());
        let etcd_only = Roles::new([Role::Etcd]);
        assert!(etcd_only.runs_etcd() && !etcd_only.runs_control_plane());
        let cp_only = Roles::new([Role::ControlPlane]);
        assert!(!cp_only.runs_etcd() && cp_only.runs_control_plane());
        let agent = Roles::new([Role::Agent]);
        assert!(agent.is_agent() && !agent.is_server());
    }
}
