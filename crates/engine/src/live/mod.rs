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
//!
//! The parts: [`pool`] holds the SSH connections (shared with apply), `observe` reads the
//! three sources, `map` turns what they said into [`Observed`].

mod api;
mod check;
mod map;
mod observe;
pub mod pool;
mod recovery;
pub mod supervisor;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k3splan_etcd::{EtcdConfig, EtcdError, EtcdProvider, TlsFiles};
use k3splan_host::{K3sLayout, ObserveSpec, ServiceManager};
use k3splan_kube::{KubeError, KubeProvider, KubeSettings};

use crate::config::Topology;
use crate::observed::{Fact, Observed};

pub use api::api_fallbacks;
pub use check::parse_cert;
pub use pool::{Hosts, resolve};

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

/// Errors of the live connections.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The etcd provider could not be built (a TLS file, no endpoints).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Connecting to the Kubernetes API failed (once: every later caller gets this error).
    #[error(transparent)]
    KubeConnect(Arc<KubeError>),
    /// Reading the Kubernetes API failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A read running as a task of its own was cancelled.
    #[error("{what} was cancelled: {source}")]
    Cancelled {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Connections to the cluster, shared by observation and apply.
pub struct Live {
    topology: Topology,
    opts: LiveOptions,
    layout: K3sLayout,
    hosts: Hosts,
    /// Declared nodes by name (index into `topology.nodes`, first wins as with
    /// `Topology::node`): every observation looks names up, once per host and per Node.
    declared: HashMap<String, usize>,
    etcd_config: EtcdConfig,
    kube: tokio::sync::OnceCell<Result<KubeProvider, Arc<KubeError>>>,
    /// Read every pod of the `storage` blocks' namespaces instead of the declared
    /// workloads' pods ([`Live::read_whole_namespace_pods`]).
    whole_namespace_pods: bool,
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
    /// Observations read every pod of the `storage` blocks' namespaces, not only the pods
    /// of the workloads the blocks name: for `import`, which looks for the workloads
    /// holding local-path volumes before any block names them.
    pub fn read_whole_namespace_pods(&mut self) {
        self.whole_namespace_pods = true;
    }

    /// Prepares connections (nothing is dialled yet). Nodes that are not declared but seen
    /// by an observation are added to the pool by [`Live::observe`].
    pub fn new(topology: &Topology, opts: LiveOptions) -> Result<Self, LiveError> {
        let layout = layout_of(topology);
        let hosts = Hosts::of(topology, &opts);
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
            hosts,
            declared,
            etcd_config,
            kube: tokio::sync::OnceCell::new(),
            whole_namespace_pods: false,
        })
    }

    /// The topology the connections were made for.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The options the connections were made with.
    pub fn options(&self) -> &LiveOptions {
        &self.opts
    }

    /// The k3s layout on the hosts.
    pub fn layout(&self) -> &K3sLayout {
        &self.layout
    }

    /// The SSH connections to the hosts (declared, and undeclared ones an observation saw).
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Closes every SSH session.
    pub async fn close_all(&self) {
        self.hosts.close_all().await
    }

    /// The declared node called `name`.
    fn declared(&self, name: &str) -> Option<&crate::config::Node> {
        self.declared.get(name).map(|&i| &self.topology.nodes[i])
    }

    /// Adds undeclared nodes (to be removed) to the pool at their observed address, with the
    /// cluster's SSH defaults.
    fn with_extra_hosts(&mut self, extra: &BTreeMap<String, IpAddr>) {
        for (name, addr) in extra {
            if self.hosts.contains(name) {
                continue;
            }
            let node = self.declared(name);
            let ssh = node.map(|n| &n.ssh).unwrap_or(&self.topology.cluster.ssh);
            let mut settings = pool::ssh_settings(&self.opts, &addr.to_string(), ssh);
            // A node no longer declared is reached at the port the state recorded for it.
            if node.is_none()
                && let Some(port) = self.opts.known_ssh_ports.get(name)
            {
                settings.port = *port;
            }
            // Added to the pool in place: the connections already open (the declared
            // hosts just observed) stay open for the steps that follow.
            self.hosts.add(name, *addr, settings);
        }
    }

    /// The etcd provider (TLS files are read here; a missing file is an error naming it).
    pub fn etcd(&self) -> Result<EtcdProvider, LiveError> {
        Ok(EtcdProvider::new(self.etcd_config.clone())?)
    }

    /// The cluster CA (DER certificates) of the kubeconfig the Kubernetes provider uses
    /// (the topology's, else `$KUBECONFIG`, else `~/.kube/config`), if it names one.
    pub async fn cluster_ca(&self) -> Option<Vec<Vec<u8>>> {
        KubeProvider::cluster_ca(&self.kube_settings()).await
    }

    fn kube_settings(&self) -> KubeSettings {
        let c = &self.topology.cluster;
        KubeSettings {
            kubeconfig: c
                .kubeconfig
                .as_ref()
                .map(|p| resolve(&self.opts.base_dir, p)),
            context: c.kube_context.clone(),
            connect_timeout: self.opts.kube_connect_timeout,
            fallback_servers: api_fallbacks(&self.topology),
            ..KubeSettings::default()
        }
    }

    /// The Kubernetes provider, connected once.
    pub async fn kube(&self) -> Result<&KubeProvider, LiveError> {
        let r = self
            .kube
            .get_or_init(|| async {
                KubeProvider::connect(self.kube_settings())
                    .await
                    .map_err(Arc::new)
            })
            .await;
        r.as_ref().map_err(|e| LiveError::KubeConnect(e.clone()))
    }

    /// When the Kubernetes API is reached at a fallback address because the kubeconfig's
    /// server did not answer, the line that says so (`Kubernetes API: the kubeconfig's
    /// https://… did not answer (connection refused); using https://… (the VIP)`). `None`
    /// when the kubeconfig's server answered or the API was not contacted yet.
    pub fn kube_failover_note(&self) -> Option<String> {
        self.kube_failover().map(|n| format!("Kubernetes API: {n}"))
    }

    /// [`Self::kube_failover_note`] without its `Kubernetes API: ` prefix.
    fn kube_failover(&self) -> Option<String> {
        self.kube.get()?.as_ref().ok()?.failover_note()
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
