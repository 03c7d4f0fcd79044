//! What the providers saw: the observed state the planner compares with the topology.
//!
//! Plain, serde-serializable data; no I/O. The three providers (Kubernetes API, etcd, SSH)
//! fill it and the CLI maps their results into it. Every source may be [`Fact::Unknown`]
//! with the reason (an unreachable API, a host that did not answer): the planner treats an
//! unknown fact as *unknown*, never as *absent* (rule 1, never destroy from an
//! unknown fact).
//!
//! Conventions the providers must follow:
//! - [`Pod::owner_kind`]/[`Pod::owner_name`] name the top-level workload: a pod of a
//!   Deployment names the Deployment (the provider resolves the ReplicaSet), a StatefulSet
//!   pod names the StatefulSet.
//! - [`Observed::hosts`] is keyed by node name: every declared node, plus every node that
//!   the Kubernetes API lists but the topology does not declare (nodes being removed).
//! - etcd members are matched to nodes by the address of their peer URL, never by name
//!   (rule 11, members matched by peer URL).

mod digests;
pub mod recovery;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use digests::SecretDigests;

/// A fact from one source: known, or unknown with the reason (the source did not answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact<T> {
    Known(T),
    Unknown { reason: String },
}

impl<T> Fact<T> {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Fact::Unknown {
            reason: reason.into(),
        }
    }
    /// The value when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(v) => Some(v),
            Fact::Unknown { .. } => None,
        }
    }
    /// Why the fact is unknown, if it is.
    pub fn unknown_reason(&self) -> Option<&str> {
        match self {
            Fact::Known(_) => None,
            Fact::Unknown { reason } => Some(reason),
        }
    }
    pub fn is_known(&self) -> bool {
        matches!(self, Fact::Known(_))
    }
}

/// Everything observed, from the three sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// The Kubernetes API side.
    pub kube: Fact<KubeState>,
    /// The etcd member API side.
    pub etcd: Fact<EtcdState>,
    /// Per node name: what SSH saw on the host (`Unknown` = not observed, with the reason).
    pub hosts: BTreeMap<String, Fact<HostState>>,
    /// Per node name whose host is unknown: what kind of failure it was. A host missing here
    /// (older fixtures, saved observations) counts as [`HostUnknown::Unanswered`]: the
    /// conservative reading.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_failures: BTreeMap<String, HostUnknown>,
    /// Per server node name: whether its supervisor/API port (`https://ADDRESS:6443/cacerts`)
    /// answered the machine running k3splan. A server missing here was not probed (older
    /// fixtures, saved observations): the planner then goes by etcd and the Node alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub supervisors: BTreeMap<String, Supervisor>,
}

/// What the probe of a server's supervisor port (`GET https://ADDRESS:6443/cacerts`, which
/// k3s serves without authentication) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Supervisor {
    /// It answered 200 with a CA certificate (the cluster's, when the cluster CA is known).
    Answering,
    /// The connection was refused or reset, or it answered with something else (another
    /// cluster's CA, an HTTP error): the server is not serving this cluster.
    Refused { reason: String },
    /// Nothing answered in time: whether it is up is unknown.
    Unknown { reason: String },
}

impl Supervisor {
    pub fn is_answering(&self) -> bool {
        matches!(self, Supervisor::Answering)
    }
    pub fn describe(&self) -> String {
        match self {
            Supervisor::Answering => "answering".into(),
            Supervisor::Refused { reason } => format!("not answering: {reason}"),
            Supervisor::Unknown { reason } => format!("unknown: {reason}"),
        }
    }
}

/// Why a host is unknown, as far as it tells anything about the host's liveness.
///
/// Only [`HostUnknown::Refused`] is (weak) evidence that the host is down: something at
/// its address answered that nothing listens on the SSH port, or the network has no route
/// to it. Every other kind says nothing about the host: a connect that timed out may be a
/// live host behind a partition, and a credential or host-key failure is a problem on the
/// operator's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostUnknown {
    /// Connection refused, reset or no route to host.
    Refused,
    /// Nothing answered within the connect timeout (or the kind was not recorded).
    Unanswered,
    /// Authentication failed, or the private key could not be loaded.
    Credentials,
    /// The host key is not in known_hosts, or known_hosts cannot be read.
    HostKeyUnknown,
    /// The host offered a key different from the recorded one: possible man-in-the-middle.
    HostKeyChanged,
    /// Connected and authenticated, but the observation failed.
    ObserveFailed,
}

impl HostUnknown {
    /// How the plan names a host of this kind: "unreachable" only for a refused connection
    /// (the host looks down), "unknown" for everything else.
    pub fn word(self) -> &'static str {
        match self {
            HostUnknown::Refused => "unreachable",
            _ => "unknown",
        }
    }
}

impl Observed {
    /// The host fact for a node; a node the providers did not try is unknown.
    pub fn host(&self, node: &str) -> Fact<&HostState> {
        match self.hosts.get(node) {
            Some(Fact::Known(h)) => Fact::Known(h),
            Some(Fact::Unknown { reason }) => Fact::unknown(reason.clone()),
            None => Fact::unknown("host was not observed"),
        }
    }

    /// How a plan names the host of `node` when it is unknown: "unreachable" (refused) or
    /// "unknown" (see [`HostUnknown::word`]).
    pub fn host_word(&self, node: &str) -> &'static str {
        self.host_failure(node)
            .unwrap_or(HostUnknown::Unanswered)
            .word()
    }

    /// Why the host of `node` is unknown (`None` when it is known). A host without a
    /// recorded kind is [`HostUnknown::Unanswered`].
    pub fn host_failure(&self, node: &str) -> Option<HostUnknown> {
        match self.hosts.get(node) {
            Some(Fact::Known(_)) => None,
            _ => Some(
                self.host_failures
                    .get(node)
                    .copied()
                    .unwrap_or(HostUnknown::Unanswered),
            ),
        }
    }
}

// ---------------------------------------------------------------- Kubernetes

/// What the Kubernetes API said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeState {
    pub nodes: Vec<KubeNode>,
    /// Pods that matter to the plan (at least: the pods of nodes being removed and the
    /// pods using local-path PVCs).
    pub pods: Vec<Pod>,
    pub pvcs: Vec<Pvc>,
    /// The add-on Deployments (declared ones at least).
    pub addons: Vec<AddonDeployment>,
}

impl KubeState {
    pub fn node(&self, name: &str) -> Option<&KubeNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// A Kubernetes Node object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeNode {
    pub name: String,
    pub internal_ip: Option<IpAddr>,
    /// The Ready condition is True.
    pub ready: bool,
    /// RFC 3339 time of the last Ready condition transition.
    pub ready_since: Option<String>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Role labels (`node-role.kubernetes.io/ROLE`), e.g. `control-plane`, `etcd`, `master`.
    pub roles: Vec<String>,
    /// kubelet version, e.g. `v1.28.5+k3s1`.
    pub version: Option<String>,
}

/// A pod (slim: only what the plan uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`; `None` while Pending unscheduled.
    pub node: Option<String>,
    /// Kind of the top-level owner (`StatefulSet`, `Deployment`, `DaemonSet`…).
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
    /// `status.phase` (`Running`, `Pending`…).
    pub phase: String,
    /// Names of the PVCs it mounts (same namespace).
    pub pvcs: Vec<String>,
}

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pvc {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub storage_class: Option<String>,
    /// `Bound`, `Pending`…
    pub phase: String,
    /// For local volumes: the node the PV is pinned to (its node affinity).
    pub bound_node: Option<String>,
    pub volume: Option<String>,
}

/// An add-on Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonDeployment {
    pub namespace: String,
    pub name: String,
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.readyReplicas`.
    pub ready_replicas: u32,
    /// Nodes its pods run on.
    pub pod_nodes: Vec<String>,
    /// Topology key of a topology spread constraint or required pod anti-affinity, if any.
    pub spread: Option<String>,
    /// The add-on is a k3s Helm chart, configured through a `HelmChartConfig`.
    pub helm_chart_config: bool,
}

// ---------------------------------------------------------------- etcd

/// What etcd's member and maintenance APIs said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdState {
    pub members: Vec<EtcdMember>,
    /// ID of the leader, if one was reported.
    pub leader: Option<u64>,
}

/// One etcd member, with its health as seen by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    pub id: u64,
    /// k3s names members `<short hostname>-<8 hex>`; not the node name (
    /// rule 11, members matched by peer URL).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
    pub health: MemberHealth,
}

impl EtcdMember {
    /// The host part of the first peer URL (`https://10.0.0.1:2380` → `10.0.0.1`).
    pub fn peer_address(&self) -> Option<IpAddr> {
        self.peer_urls
            .iter()
            .find_map(|u| url_host(u)?.parse().ok())
    }
    pub fn is_healthy(&self) -> bool {
        matches!(self.health, MemberHealth::Healthy)
    }
}

/// Health of one member (endpoint status / health check through its client URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MemberHealth {
    Healthy,
    /// It answered but reported a problem (no leader, alarm, behind).
    Unhealthy {
        reason: String,
    },
    /// It did not answer.
    Unreachable {
        reason: String,
    },
}

impl MemberHealth {
    pub fn describe(&self) -> String {
        match self {
            MemberHealth::Healthy => "healthy".into(),
            MemberHealth::Unhealthy { reason } => format!("unhealthy: {reason}"),
            MemberHealth::Unreachable { reason } => format!("unreachable: {reason}"),
        }
    }
}

/// The host part of a URL such as `https://10.0.0.1:6443` or `https://[fd00::1]:2380`:
/// without port, user info or the brackets of an IPv6 address. A bare authority
/// (`10.0.0.1:6443`, `node-1`) is read the same way. `None` when `http::Uri` does not
/// parse it (a URL with a space, an empty string) or it names no host.
pub fn url_host(url: &str) -> Option<&str> {
    let uri: http::Uri = url.parse().ok()?;
    let authority = uri.authority()?.as_str();
    let host = uri.host()?;
    // The same text, borrowed from `url`: the authority follows `scheme://` (or starts a
    // bare authority), and the host follows its user info.
    let start = url.find("://").map_or(0, |i| i + 3);
    let auth = url.get(start..start + authority.len())?;
    let at = auth.rfind('@').map_or(0, |i| i + 1);
    let h = auth.get(at..at + host.len()).filter(|h| *h == host)?;
    Some(
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
    )
}

// ---------------------------------------------------------------- host

/// What SSH saw on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// The address SSH reached.
    pub address: Option<IpAddr>,
    /// The k3s install, if any.
    pub k3s: Option<K3sInstall>,
    /// `/etc/rancher/k3s/config.yaml`, if present.
    pub config: Option<K3sConfigFile>,
    /// The installer's environment files (`/etc/systemd/system/k3s.service.env`,
    /// `k3s-agent.service.env`) that exist, server unit's first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<K3sEnvFile>,
    /// The keepalived static pod manifest, if present.
    pub keepalived: Option<KeepalivedManifest>,
    /// `<data-dir>/server/db/etcd`, if present.
    pub etcd_data: Option<EtcdDataDir>,
    /// The `*.skip` files under `<data-dir>/server/manifests`, as paths relative to it
    /// (`coredns.yaml.skip`, `metrics-server/metrics-server-deployment.yaml.skip`). k3s's
    /// deploy controller leaves alone every manifest whose file name a `.skip` file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_skips: Vec<String>,
}

impl HostState {
    /// A `.skip` file for the manifest named `file_name` (`coredns.yaml`) is present: k3s
    /// keys its skip list by file name, wherever in the manifests tree the `.skip` lies
    /// (k3s `pkg/deploy/controller.go`, `listFilesIn`).
    pub fn skips_manifest(&self, file_name: &str) -> bool {
        self.manifest_skips.iter().any(|p| {
            p.rsplit('/')
                .next()
                .and_then(|n| n.strip_suffix(".skip"))
                .is_some_and(|n| n == file_name)
        })
    }
}

/// An installed k3s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sInstall {
    pub version: Option<String>,
    /// `k3s` (or `k3s-agent`) service unit is active.
    pub service_active: bool,
}

/// `/etc/rancher/k3s/config.yaml`, parsed, with its raw text for diffs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sConfigFile {
    pub path: String,
    /// `server:` join URL.
    pub server: Option<String>,
    pub cluster_init: bool,
    pub disable_etcd: bool,
    pub disable_apiserver: bool,
    /// `disable-agent: true`: k3s runs no kubelet here, so the server has no Node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_agent: bool,
    /// The file's content. May hold the token: renderers mask it.
    pub raw: String,
    /// Keyed digests of its secrets (compared with the declared ones, never serialized).
    #[serde(skip)]
    pub secrets: SecretDigests,
}

/// An installer environment file (`EnvironmentFile=` of the k3s unit: `K3S_URL`,
/// `K3S_TOKEN`, proxy variables), with its raw text for diffs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sEnvFile {
    pub path: String,
    /// The unit whose environment it is: `k3s` (server) or `k3s-agent`.
    pub unit: String,
    /// Its last `K3S_URL=` value.
    pub k3s_url: Option<String>,
    /// Why it could not be read (then nothing else is known about it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The file's content. Holds `K3S_TOKEN`: renderers mask it.
    pub raw: String,
    /// Keyed digests of its secrets (never serialized).
    #[serde(skip)]
    pub secrets: SecretDigests,
}

/// The keepalived static pod manifest, parsed, with its raw text for diffs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepalivedManifest {
    pub path: String,
    pub priority: Option<u8>,
    pub vip: Option<String>,
    pub interface: Option<String>,
    pub router_id: Option<u8>,
    /// The file's content. May hold the VRRP password: renderers mask it.
    pub raw: String,
}

/// An etcd data directory found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdDataDir {
    pub path: String,
    /// Member name recorded in the WAL/snapshot, if read.
    pub member_name: Option<String>,
    /// Cluster ID recorded in it, if read (hex).
    pub cluster_id: Option<String>,
    /// Whether it belongs to the running cluster (same cluster ID): `None` = not determined.
    pub belongs_to_cluster: Option<bool>,
    /// k3s wrote `server/db/etcd/tombstone`: the member was removed while this dir survived.
    pub tombstone: bool,
    /// `initial-cluster` of the etcd config k3s left in it (`name=peer-url,...`): the peers
    /// the member was created with, which tell this cluster's data from another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn url_host_reads_the_host_of_urls_and_bare_authorities() {
        for (url, host) in [
            ("https://10.0.0.1:6443", Some("10.0.0.1")),
            ("https://10.0.0.1:6443/", Some("10.0.0.1")),
            ("https://10.0.0.1", Some("10.0.0.1")),
            ("https://[fd00::1]:2380", Some("fd00::1")),
            ("https://[fd00::1]", Some("fd00::1")),
            ("https://user:pw@10.0.0.2:2379/x", Some("10.0.0.2")),
            ("http://node-1:2379", Some("node-1")),
            ("10.0.0.1:6443", Some("10.0.0.1")),
            ("[fd00::2]:6443", Some("fd00::2")),
            ("https://vip.example:6443/healthz?x=1", Some("vip.example")),
            ("", None),
            ("https://a b:6443", None),
        ] {
            assert_eq!(url_host(url), host, "{url:?}");
        }
    }
}
