//! The imperative shell's eyes: reads the live cluster through the three providers and maps
//! what they saw into the planner's [`Observed`] model.
//!
//! Guarantees:
//! - the three sources are read concurrently, each bounded by its own timeout; a source that
//!   cannot be reached becomes `Fact::Unknown` with the reason, never an empty cluster;
//! - secrets read from hosts (join token, VRRP password) are masked before they enter
//!   [`Observed`], so a saved plan or a log never holds them;
//! - hosts are keyed by node name and include nodes that are no longer declared but still
//!   seen by Kubernetes or etcd (they are the ones a plan removes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k3splan_etcd::{EtcdConfig, EtcdProvider, TlsFiles};
use k3splan_host::{
    ConfigFile, HostFacts, HostObservation, HostPool, K3sLayout, ManifestFile, ObserveSpec,
    ServiceManager, ServiceState, UnreachableKind,
};
use k3splan_kube::{AddonRef, KubeProvider, KubeSettings, ObserveRequest, PodScope, Readiness};

use crate::config::{Topology, model::DEFAULT_ADDONS};
use crate::observed::{
    AddonDeployment, EtcdDataDir, EtcdMember, EtcdState, Fact, HostState, HostUnknown,
    K3sConfigFile, K3sInstall, KeepalivedManifest, KubeNode, KubeState, MemberHealth, Observed,
    Pod, Pvc, url_host,
};
use crate::plan::files::mask_secrets;

/// Knobs of the live connections (from flags and defaults).
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Directory relative paths of the topology (TLS files, keys) are resolved against.
    pub base_dir: PathBuf,
    pub etcd_timeout: Duration,
    pub ssh_connect_timeout: Duration,
    pub ssh_parallelism: usize,
    pub kube_connect_timeout: Duration,
    /// Add unknown host keys to known_hosts (`--accept-new-host-keys`).
    pub accept_new_host_keys: bool,
    /// SSH ports of nodes the state remembers, for nodes no longer declared.
    pub known_ssh_ports: BTreeMap<String, u16>,
    /// How long etcd is observed again while its members answer without a leader.
    pub etcd_election_wait: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            base_dir: PathBuf::from("."),
            etcd_timeout: Duration::from_secs(5),
            ssh_connect_timeout: Duration::from_secs(10),
            ssh_parallelism: 16,
            kube_connect_timeout: Duration::from_secs(5),
            accept_new_host_keys: false,
            known_ssh_ports: BTreeMap::new(),
            etcd_election_wait: Duration::from_secs(15),
        }
    }
}

/// Connections to the cluster, shared by observation and apply.
pub struct Live {
    pub topology: Topology,
    pub opts: LiveOptions,
    pub layout: K3sLayout,
    pub hosts: HostPool,
    /// Addresses of the hosts in the pool, by node name.
    pub host_addresses: BTreeMap<String, IpAddr>,
    /// Declared nodes by name (index into `topology.nodes`, first wins as with
    /// `Topology::node`): every observation looks names up, once per host and per Node.
    declared: HashMap<String, usize>,
    etcd_config: EtcdConfig,
    kube: tokio::sync::OnceCell<Result<KubeProvider, String>>,
}

/// Runs `fut` as a task of its own (on another worker while this one polls the rest), and
/// waits for it. A panic in it is resumed here.
async fn in_own_task<F>(what: &str, fut: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(v) => Ok(v),
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(e) => Err(format!("{what} was cancelled: {e}")),
        },
    }
}

/// Resolves a topology path: `~/` is the home directory, relative paths are relative to the
/// configuration directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The k3s layout on the hosts, from the topology's `host` block and `data_dir`.
pub fn layout_of(t: &Topology) -> K3sLayout {
    let h = &t.cluster.host;
    let mut layout = K3sLayout {
        data_dir: t.cluster.data_dir.clone(),
        config_path: h.config_path.clone(),
        k3s_bin: h.k3s_binary.clone(),
        uninstall_server: h.uninstall_command.clone(),
        uninstall_agent: h.agent_uninstall_command.clone(),
        ..K3sLayout::default()
    };
    if !h.service_command.is_empty() {
        let with = |verb: &str| {
            let mut v = h.service_command.clone();
            v.push(verb.to_string());
            v
        };
        layout.services = ServiceManager {
            is_active: with("is-active"),
            start: with("start"),
            stop: with("stop"),
            restart: with("restart"),
        };
    }
    if let Some(cmd) = &t.cluster.install_command {
        layout.install_command = cmd.clone();
    }
    layout
}

/// What `plan` and `apply` observe on every host of the topology (one round trip per host).
pub fn observe_spec_of(t: &Topology) -> ObserveSpec {
    ObserveSpec {
        layout: layout_of(t),
        keepalived_manifest: t.cluster.vip.as_ref().map(|v| v.manifest_path.clone()),
        // The plan shows and rewrites these files: their text comes in the same round.
        raw_files: true,
    }
}

impl Live {
    /// Prepares connections (nothing is dialled yet). `extra_hosts` are nodes that are not
    /// declared but known (from the state or a previous observation) with their address.
    pub fn new(topology: &Topology, opts: LiveOptions) -> Result<Self, String> {
        let layout = layout_of(topology);
        let mut host_addresses = BTreeMap::new();
        let mut hosts = Vec::new();
        for n in &topology.nodes {
            host_addresses.insert(n.name.clone(), n.address);
            hosts.push((
                n.name.clone(),
                ssh_settings(&opts, &n.address.to_string(), &n.ssh),
            ));
        }
        let pool = HostPool::new(hosts, opts.ssh_parallelism);

        let c = &topology.cluster.etcd;
        let endpoints: Vec<String> = if c.endpoints.is_empty() {
            topology
                .etcd_nodes()
                .map(|n| match n.address {
                    IpAddr::V6(a) => format!("https://[{a}]:2379"),
                    IpAddr::V4(a) => format!("https://{a}:2379"),
                })
                .collect()
        } else {
            c.endpoints.clone()
        };
        let mut etcd_config = EtcdConfig::new(endpoints).with_timeout(opts.etcd_timeout);
        if let (Some(ca), Some(cert), Some(key)) = (&c.ca_file, &c.cert_file, &c.key_file) {
            etcd_config = etcd_config.with_tls(TlsFiles {
                ca_file: resolve(&opts.base_dir, ca),
                cert_file: resolve(&opts.base_dir, cert),
                key_file: resolve(&opts.base_dir, key),
            });
        }
        let mut declared = HashMap::new();
        for (i, n) in topology.nodes.iter().enumerate() {
            declared.entry(n.name.clone()).or_insert(i);
        }
        Ok(Live {
            topology: topology.clone(),
            opts,
            layout,
            hosts: pool,
            host_addresses,
            declared,
            etcd_config,
            kube: tokio::sync::OnceCell::new(),
        })
    }

    /// The declared node called `name`.
    fn declared(&self, name: &str) -> Option<&crate::config::Node> {
        self.declared.get(name).map(|&i| &self.topology.nodes[i])
    }

    /// A pool that also reaches undeclared nodes (to be removed) at their observed address,
    /// with the cluster's SSH defaults.
    fn with_extra_hosts(&mut self, extra: &BTreeMap<String, IpAddr>) {
        for (name, addr) in extra {
            if self.host_addresses.contains_key(name) {
                continue;
            }
            self.host_addresses.insert(name.clone(), *addr);
            let node = self.declared(name);
            let ssh = node.map(|n| &n.ssh).unwrap_or(&self.topology.cluster.ssh);
            let mut settings = ssh_settings(&self.opts, &addr.to_string(), ssh);
            // A node no longer declared is reached at the port the state recorded for it.
            if node.is_none()
                && let Some(port) = self.opts.known_ssh_ports.get(name)
            {
                settings.port = *port;
            }
            // Added to the pool in place: the connections already open (the declared
            // hosts just observed) stay open for the steps that follow.
            self.hosts.add_host(name.clone(), settings);
        }
    }

    /// The order in which hosts are dialled (at most `ssh_parallelism` at once): etcd members
    /// first, then the other servers, then agents, then hosts that are not declared; by name
    /// within each group. The servers carry the facts every quorum decision depends on, so
    /// they must not queue behind a fleet of agents, some of which may be down and each cost
    /// a connect timeout.
    fn observe_order(&self) -> Vec<String> {
        let mut names: Vec<(u8, String)> = self
            .hosts
            .names()
            .map(|n| {
                let rank = match self.declared(n) {
                    Some(d) if d.roles.runs_etcd() => 0,
                    Some(d) if d.roles.is_server() => 1,
                    Some(_) => 2,
                    None => 3,
                };
                (rank, n.to_string())
            })
            .collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// The etcd provider (TLS files are read here; a missing file is an error naming it).
    pub fn etcd(&self) -> Result<EtcdProvider, String> {
        EtcdProvider::new(self.etcd_config.clone()).map_err(|e| e.to_string())
    }

    /// The Kubernetes provider, connected once.
    pub async fn kube(&self) -> Result<&KubeProvider, String> {
        let r = self
            .kube
            .get_or_init(|| async {
                let c = &self.topology.cluster;
                let settings = KubeSettings {
                    kubeconfig: c
                        .kubeconfig
                        .as_ref()
                        .map(|p| resolve(&self.opts.base_dir, p)),
                    context: c.kube_context.clone(),
                    connect_timeout: self.opts.kube_connect_timeout,
                    ..KubeSettings::default()
                };
                KubeProvider::connect(settings)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        r.as_ref().map_err(Clone::clone)
    }

    fn observe_spec(&self) -> ObserveSpec {
        observe_spec_of(&self.topology)
    }

    /// Reads everything, concurrently, and maps it into [`Observed`].
    pub async fn observe(&mut self) -> Observed {
        let started = std::time::Instant::now();
        let addons: Vec<AddonRef> = if self.topology.addons.is_empty() {
            DEFAULT_ADDONS
                .iter()
                .map(|a| AddonRef::kube_system(a))
                .collect()
        } else {
            self.topology
                .addons
                .iter()
                .map(|a| AddonRef {
                    name: a.name.clone(),
                    namespace: a.namespace.clone(),
                })
                .collect()
        };
        let kube_fut = async {
            let kube = self.kube().await?;
            // The planner reads pods only to find the workloads of `storage` blocks (their
            // PVCs and sibling replicas): read those namespaces, not every pod.
            let namespaces: Vec<String> = self
                .topology
                .storage
                .iter()
                .map(|s| s.namespace.clone())
                .collect();
            let req = ObserveRequest {
                addons,
                pods: PodScope::Namespaces,
                namespaces,
                ..ObserveRequest::default()
            };
            // A task of its own: reading and decoding the lists is the CPU-heavy part of an
            // observation, and must not hold up the SSH handshakes polled by this task.
            let kube = kube.clone();
            in_own_task(
                "the Kubernetes read",
                async move { kube.observe(&req).await },
            )
            .await?
            .map_err(|e| e.to_string())
        };
        let etcd_fut = async {
            let p = self.etcd()?;
            let wait = self.opts.etcd_election_wait;
            in_own_task("the etcd read", async move { observe_etcd(&p, wait).await }).await
        };
        let spec = self.observe_spec();
        let order: Vec<(String, ObserveSpec)> = self
            .observe_order()
            .into_iter()
            .map(|n| (n, spec.clone()))
            .collect();
        let hosts_fut = self.hosts.observe_many(order);
        let (kube, etcd, mut hosts) = tokio::join!(kube_fut, etcd_fut, hosts_fut);

        // Nodes seen by Kubernetes or etcd but not declared: observe their hosts too.
        let mut extra = BTreeMap::new();
        if let Ok(k) = &kube {
            for n in &k.nodes {
                if self.declared(&n.name).is_none()
                    && let Some(ip) = n.internal_ip.as_deref().and_then(|s| s.parse().ok())
                {
                    extra.insert(n.name.clone(), ip);
                }
            }
        }
        if let Ok(e) = &etcd {
            for m in &e.members {
                let Some(addr) = m.peer_urls.first().and_then(|u| url_host(u)) else {
                    continue;
                };
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                let known = self.host_addresses.values().any(|a| *a == ip)
                    || extra.values().any(|a| *a == ip);
                if !known {
                    let name = kube
                        .as_ref()
                        .ok()
                        .and_then(|k| {
                            k.nodes
                                .iter()
                                .find(|n| n.internal_ip.as_deref() == Some(addr))
                                .map(|n| n.name.clone())
                        })
                        .unwrap_or_else(|| member_node_name(&m.name));
                    extra.insert(name, ip);
                }
            }
        }
        let new: BTreeMap<String, IpAddr> = extra
            .into_iter()
            .filter(|(n, _)| !self.host_addresses.contains_key(n))
            .collect();
        if !new.is_empty() {
            self.with_extra_hosts(&new);
            let names: Vec<(String, ObserveSpec)> =
                new.keys().map(|n| (n.clone(), spec.clone())).collect();
            let more = self.hosts.observe_many(names).await;
            hosts.extend(more);
        }

        let etcd_state = match &etcd {
            Ok(o) => map_etcd(o),
            Err(e) => Fact::unknown(format!("etcd: {e}")),
        };
        let mut host_states = BTreeMap::new();
        let mut host_failures = BTreeMap::new();
        for (name, obs) in hosts {
            let fact = match obs {
                HostObservation::Reachable(facts) => {
                    let addr = self.host_addresses.get(&name).copied();
                    let raw = RawFiles::of(&facts);
                    let manifest = self
                        .topology
                        .cluster
                        .vip
                        .as_ref()
                        .map(|v| v.manifest_path.as_str());
                    Fact::Known(map_host(
                        addr,
                        &facts,
                        raw,
                        &self.layout,
                        manifest,
                        &etcd_state,
                    ))
                }
                HostObservation::Unreachable { reason, kind } => {
                    host_failures.insert(name.clone(), host_unknown(kind));
                    Fact::unknown(reason)
                }
            };
            host_states.insert(name, fact);
        }
        let observed = Observed {
            kube: match kube {
                Ok(k) => Fact::Known(map_kube(k)),
                Err(e) => Fact::unknown(format!("Kubernetes API: {e}")),
            },
            etcd: etcd_state,
            hosts: host_states,
            host_failures,
        };
        log_observation(&observed, started.elapsed());
        observed
    }
}

/// Observes etcd; while members answer but none knows a leader (an election after the
/// leader died or was cut off: seconds on a real cluster, ~7 s measured on k3s v1.21), looks
/// again for up to `election_wait`, so that an election in progress is not reported as
/// quorum lost. A cluster that really lost quorum costs this wait once, and the last
/// observation that had a member list is kept (a survivor without quorum may exit while we
/// wait, as k3s does: then the earlier look says more than the later one).
async fn observe_etcd(p: &EtcdProvider, election_wait: Duration) -> k3splan_etcd::Observation {
    let deadline = tokio::time::Instant::now() + election_wait;
    let mut listed: Option<k3splan_etcd::Observation> = None;
    loop {
        let o = p.observe().await;
        let answering = o.endpoints.iter().any(|e| e.reachable());
        if o.health.leader.is_some() {
            return o;
        }
        if !o.members.is_empty() {
            listed = Some(o.clone());
        }
        if !answering || tokio::time::Instant::now() >= deadline {
            return listed.unwrap_or(o);
        }
        tracing::info!(
            "etcd members answer but know no leader (election in progress?); looking again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One `-v` line per source: what was read, and why a source is unknown.
fn log_observation(o: &Observed, elapsed: Duration) {
    match &o.kube {
        Fact::Known(k) => tracing::info!(
            nodes = k.nodes.len(),
            pods = k.pods.len(),
            pvcs = k.pvcs.len(),
            "Kubernetes API read"
        ),
        Fact::Unknown { reason } => tracing::info!(%reason, "Kubernetes API unknown"),
    }
    match &o.etcd {
        Fact::Known(e) => tracing::info!(
            members = e.members.len(),
            healthy = e.members.iter().filter(|m| m.is_healthy()).count(),
            "etcd read"
        ),
        Fact::Unknown { reason } => tracing::info!(%reason, "etcd unknown"),
    }
    for (name, h) in &o.hosts {
        if let Fact::Unknown { reason } = h {
            tracing::info!(host = %name, %reason, "host unknown");
        }
    }
    let read = o.hosts.values().filter(|h| h.is_known()).count();
    tracing::info!(
        hosts = o.hosts.len(),
        read,
        elapsed_ms = elapsed.as_millis() as u64,
        "observed the cluster"
    );
}

/// What an SSH failure says about the host (see [`HostUnknown`]).
fn host_unknown(kind: UnreachableKind) -> HostUnknown {
    match kind {
        UnreachableKind::Network => HostUnknown::Refused,
        UnreachableKind::Timeout => HostUnknown::Unanswered,
        UnreachableKind::Auth => HostUnknown::Credentials,
        UnreachableKind::HostKeyChanged => HostUnknown::HostKeyChanged,
        UnreachableKind::HostKey => HostUnknown::HostKeyUnknown,
        UnreachableKind::ObserveFailed => HostUnknown::ObserveFailed,
    }
}

#[derive(Default)]
struct RawFiles {
    config: Option<String>,
    keepalived: Option<String>,
    config_secrets: crate::plan::files::SecretDigests,
}

impl RawFiles {
    /// config.yaml and the keepalived manifest as text, masked at once, for plan diffs (read
    /// by the observe round itself: no second round trip per host).
    fn of(facts: &HostFacts) -> Self {
        let text = |r: &Option<k3splan_host::RawText>| {
            r.as_ref()
                .map(|r| mask_secrets(&String::from_utf8_lossy(r.expose())))
        };
        RawFiles {
            config: matches!(facts.config, ConfigFile::Present(_))
                .then(|| text(&facts.raw_config))
                .flatten(),
            keepalived: matches!(facts.keepalived, ManifestFile::Present(_))
                .then(|| text(&facts.raw_keepalived))
                .flatten(),
            config_secrets: facts
                .raw_config
                .as_ref()
                .map(|r| {
                    crate::plan::files::secret_digests(
                        digest_key(),
                        &String::from_utf8_lossy(r.expose()),
                    )
                })
                .unwrap_or_default(),
        }
    }
}

/// The HMAC key of this process's secret digests: 32 bytes from the OS, drawn once, never
/// printed or stored (see [`crate::observed::SecretDigests`]).
fn digest_key() -> [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("the OS random source (getrandom) is available");
        k
    })
}

fn ssh_settings(
    opts: &LiveOptions,
    address: &str,
    ssh: &crate::config::SshSettings,
) -> k3splan_host::SshSettings {
    let mut s = k3splan_host::SshSettings::new(address);
    s.port = ssh.port;
    s.user = ssh.user.clone();
    s.private_key_file = ssh
        .private_key_file
        .as_ref()
        .map(|p| resolve(&opts.base_dir, p));
    s.known_hosts_file = resolve(&opts.base_dir, &ssh.known_hosts_file);
    s.connect_timeout = opts.ssh_connect_timeout;
    s.accept_new_host_keys = opts.accept_new_host_keys;
    s
}

/// k3s names members `<short hostname>-<8 hex>`; the node name is the part before.
fn member_node_name(member: &str) -> String {
    match member.rsplit_once('-') {
        Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => member.to_string(),
    }
}

/// Moves the observation into the planner's model (it is not used afterwards: no copies of
/// the thousands of strings a large cluster holds).
fn map_kube(k: k3splan_kube::ClusterObservation) -> KubeState {
    use k3splan_kube::WorkloadKind as W;
    KubeState {
        nodes: k
            .nodes
            .into_iter()
            .map(|n| KubeNode {
                internal_ip: n.internal_ip.as_deref().and_then(|s| s.parse().ok()),
                ready: n.ready == Readiness::Ready,
                unschedulable: n.unschedulable,
                version: Some(n.kubelet_version).filter(|v| !v.is_empty()),
                name: n.name,
                ready_since: n.ready_since,
                roles: n.roles,
            })
            .collect(),
        pods: k
            .pods
            .into_iter()
            .map(|p| {
                let (kind, name) = match p.owner {
                    Some(o) => (
                        Some(match o.kind {
                            W::Deployment => "Deployment".to_string(),
                            W::ReplicaSet => "ReplicaSet".into(),
                            W::StatefulSet => "StatefulSet".into(),
                            W::DaemonSet => "DaemonSet".into(),
                            W::Job => "Job".into(),
                            W::Node => "Node".into(),
                            W::Other(s) => s,
                        }),
                        Some(o.name),
                    ),
                    None => (None, None),
                };
                Pod {
                    namespace: p.namespace,
                    name: p.name,
                    node: p.node,
                    owner_kind: kind,
                    owner_name: name,
                    phase: p.phase,
                    pvcs: p.pvcs,
                }
            })
            .collect(),
        pvcs: k
            .pvcs
            .into_iter()
            .map(|c| Pvc {
                namespace: c.namespace,
                name: c.name,
                uid: c.uid,
                storage_class: c.storage_class,
                phase: c.phase,
                bound_node: c.local_node,
                volume: c.volume,
            })
            .collect(),
        addons: k
            .addons
            .into_iter()
            .filter(|a| a.found)
            .map(|a| AddonDeployment {
                replicas: a.replicas.max(0) as u32,
                ready_replicas: a.ready_replicas.max(0) as u32,
                spread: a
                    .spread_topology_keys
                    .first()
                    .or(a.anti_affinity_topology_keys.first())
                    .cloned(),
                helm_chart_config: a.helm_chart_config.is_some() || a.helm_chart.is_some(),
                namespace: a.namespace,
                name: a.name,
                pod_nodes: a.pod_nodes,
            })
            .collect(),
    }
}

fn map_etcd(o: &k3splan_etcd::Observation) -> Fact<EtcdState> {
    if o.members.is_empty() {
        let reasons: Vec<String> = o
            .endpoints
            .iter()
            .filter_map(|e| e.error.as_ref().map(|err| err.to_string()))
            .collect();
        let why = if reasons.is_empty() {
            "no endpoint returned a member list".to_string()
        } else {
            reasons.join("; ")
        };
        return Fact::unknown(format!("etcd: no member list: {why}"));
    }
    let members = o
        .members
        .iter()
        .map(|m| EtcdMember {
            id: m.id.0,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
            health: match &m.health {
                k3splan_etcd::MemberHealth::Healthy { .. } => MemberHealth::Healthy,
                k3splan_etcd::MemberHealth::NoLeader { endpoint } => MemberHealth::Unhealthy {
                    reason: format!("{endpoint} has no leader"),
                },
                k3splan_etcd::MemberHealth::Unreachable { error } => MemberHealth::Unreachable {
                    reason: error.to_string(),
                },
                k3splan_etcd::MemberHealth::NotObserved => MemberHealth::Unreachable {
                    reason: "no endpoint of this member answered".into(),
                },
            },
        })
        .collect();
    Fact::Known(EtcdState {
        members,
        leader: o.health.leader.map(|l| l.0),
    })
}

fn map_host(
    address: Option<IpAddr>,
    f: &HostFacts,
    raw: RawFiles,
    layout: &K3sLayout,
    manifest_path: Option<&str>,
    etcd: &Fact<EtcdState>,
) -> HostState {
    let k3s = f.k3s_binary.present.then(|| K3sInstall {
        version: f.k3s_binary.version.clone(),
        service_active: f.server_service == ServiceState::Active
            || f.agent_service == ServiceState::Active,
    });
    let config = match &f.config {
        ConfigFile::Present(c) => Some(K3sConfigFile {
            path: layout.config_path.clone(),
            server: c.server.clone(),
            cluster_init: c.cluster_init,
            disable_etcd: c.disable_etcd,
            disable_apiserver: c.disable_apiserver,
            raw: raw.config.unwrap_or_default(),
            secrets: raw.config_secrets,
        }),
        // An unparsable config is still a config: show it as present with its text.
        ConfigFile::Invalid { .. } => Some(K3sConfigFile {
            path: layout.config_path.clone(),
            raw: raw.config.unwrap_or_default(),
            ..K3sConfigFile::default()
        }),
        ConfigFile::Absent => None,
    };
    let keepalived = match &f.keepalived {
        ManifestFile::Present(k) => Some(KeepalivedManifest {
            path: manifest_path.unwrap_or_default().to_string(),
            priority: k.priority,
            vip: k.virtual_ips.first().cloned(),
            interface: k.interface.clone(),
            router_id: k.router_id,
            raw: raw.keepalived.unwrap_or_default(),
        }),
        _ => None,
    };
    let etcd_data = f.etcd_data.exists.then(|| {
        let belongs = match (etcd, address) {
            (Fact::Known(e), Some(addr)) => {
                let addr = addr.to_string();
                let member = e.members.iter().find(|m| {
                    m.peer_urls
                        .iter()
                        .any(|u| url_host(u) == Some(addr.as_str()))
                });
                Some(match (member, &f.etcd_data.member_name) {
                    (None, _) => false,
                    (Some(m), Some(name)) if !m.name.is_empty() => &m.name == name,
                    (Some(_), _) => true,
                })
            }
            _ => None,
        };
        EtcdDataDir {
            path: layout.etcd_dir(),
            member_name: f.etcd_data.member_name.clone(),
            cluster_id: None,
            belongs_to_cluster: if f.etcd_data.tombstone {
                Some(false)
            } else {
                belongs
            },
            tombstone: f.etcd_data.tombstone,
            initial_cluster: f.etcd_data.initial_cluster.clone(),
        }
    });
    HostState {
        address,
        k3s,
        config,
        keepalived,
        etcd_data,
    }
}

/// Names of the nodes an observation knows of (declared or not), for `state` bookkeeping.
pub fn known_nodes(o: &Observed) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = o.hosts.keys().cloned().collect();
    if let Fact::Known(k) = &o.kube {
        s.extend(k.nodes.iter().map(|n| n.name.clone()));
    }
    s
}
