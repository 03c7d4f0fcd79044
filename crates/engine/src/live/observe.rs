//! Reading the three sources (the Kubernetes API, etcd, every host), concurrently, and
//! assembling what they said into [`Observed`] (see the guarantees of [`super`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k3splan_etcd::EtcdProvider;
use k3splan_host::{HostObservation, ObserveSpec};
use k3splan_kube::{
    AddonRef, ClusterObservation, ObserveRequest, PodScope, WorkloadKind as KubeWorkloadKind,
    WorkloadPods,
};

use super::map::{RawFiles, host_unknown, map_etcd, map_host, map_kube, member_node_name};
use super::{Live, LiveError, observe_spec_of};
use crate::config::model::{DEFAULT_ADDONS, WorkloadKind};
use crate::observed::{Fact, Observed, url_host};
use crate::wait::{Check, Wait};

type KubeRead = Result<ClusterObservation, LiveError>;
type EtcdRead = Result<k3splan_etcd::Observation, LiveError>;
type HostReads = BTreeMap<String, HostObservation>;

/// Runs `fut` as a task of its own (on another worker while this one polls the rest), and
/// waits for it. A panic in it is resumed here.
async fn in_own_task<F>(what: &'static str, fut: F) -> Result<F::Output, LiveError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(v) => Ok(v),
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(source) => Err(LiveError::Cancelled { what, source }),
        },
    }
}

impl Live {
    /// Reads everything, concurrently, and maps it into [`Observed`].
    pub async fn observe(&mut self) -> Observed {
        let started = Instant::now();
        let ((kube, etcd, mut hosts), supervisors) =
            tokio::join!(self.read_sources(), self.probe_supervisors());
        // Nodes seen by Kubernetes or etcd but not declared: observe their hosts too.
        let new = self.undeclared_seen(&kube, &etcd);
        if !new.is_empty() {
            self.with_extra_hosts(&new);
            let spec = observe_spec_of(&self.topology);
            let names: Vec<(String, ObserveSpec)> =
                new.keys().map(|n| (n.clone(), spec.clone())).collect();
            hosts.extend(self.hosts.observe_many(names).await);
        }
        let mut observed = self.assemble(kube, etcd, hosts);
        observed.supervisors = supervisors;
        log_observation(&observed, started.elapsed());
        observed
    }

    /// The supervisor port of every declared server, probed from here, concurrently
    /// (see [`super::supervisor`]): a server without an agent has no Node, and this is
    /// how the planner knows it serves.
    pub(crate) async fn probe_supervisors(&self) -> BTreeMap<String, crate::observed::Supervisor> {
        let ca = self.cluster_ca().await;
        let timeout = self.opts.kube_connect_timeout;
        let probes = self.topology.server_nodes().map(|n| {
            let ca = ca.clone();
            let (name, addr) = (n.name.clone(), n.address);
            async move {
                let s = super::supervisor::probe(addr, ca.as_deref(), timeout).await;
                (name, s)
            }
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .collect()
    }

    /// The three reads, concurrently.
    async fn read_sources(&self) -> (KubeRead, EtcdRead, HostReads) {
        let etcd_fut = async {
            let p = self.etcd()?;
            let wait = self.opts.etcd_election_wait;
            in_own_task("the etcd read", async move { observe_etcd(&p, wait).await }).await
        };
        let spec = observe_spec_of(&self.topology);
        let order: Vec<(String, ObserveSpec)> = self
            .observe_order()
            .into_iter()
            .map(|n| (n, spec.clone()))
            .collect();
        let hosts_fut = self.hosts.observe_many(order);
        tokio::join!(self.read_kube(), etcd_fut, hosts_fut)
    }

    async fn read_kube(&self) -> KubeRead {
        let kube = self.kube().await?;
        // The planner reads pods only to find the workloads of `storage` blocks (their
        // PVCs and sibling replicas): read those workloads' pods (each by its own label
        // selector), not every pod of their namespaces; `import` reads whole namespaces.
        let storage = &self.topology.storage;
        let mut req = ObserveRequest {
            addons: self.addon_refs(),
            ..ObserveRequest::default()
        };
        if self.whole_namespace_pods {
            req.pods = PodScope::Namespaces;
            req.namespaces = storage.iter().map(|s| s.namespace.clone()).collect();
        } else {
            req.pods = PodScope::Workloads;
            req.workloads = storage
                .iter()
                .map(|s| WorkloadPods {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    kind: match s.kind {
                        WorkloadKind::StatefulSet => KubeWorkloadKind::StatefulSet,
                        WorkloadKind::Deployment => KubeWorkloadKind::Deployment,
                    },
                })
                .collect();
        }
        // A task of its own: reading and decoding the lists is the CPU-heavy part of an
        // observation, and must not hold up the SSH handshakes polled by this task.
        let kube = kube.clone();
        Ok(in_own_task(
            "the Kubernetes read",
            async move { kube.observe(&req).await },
        )
        .await??)
    }

    fn addon_refs(&self) -> Vec<AddonRef> {
        if self.topology.addons.is_empty() {
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

    /// Nodes that Kubernetes or etcd know and the pool does not, with their address.
    fn undeclared_seen(&self, kube: &KubeRead, etcd: &EtcdRead) -> BTreeMap<String, IpAddr> {
        let mut extra = BTreeMap::new();
        if let Ok(k) = kube {
            for n in &k.nodes {
                if self.declared(&n.name).is_none()
                    && let Some(ip) = n.internal_ip.as_deref().and_then(|s| s.parse().ok())
                {
                    extra.insert(n.name.clone(), ip);
                }
            }
        }
        if let Ok(e) = etcd {
            for m in &e.members {
                let Some(addr) = m.peer_urls.first().and_then(|u| url_host(u)) else {
                    continue;
                };
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                let known = self.hosts.has_address(ip) || extra.values().any(|a| *a == ip);
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
        extra
            .into_iter()
            .filter(|(n, _)| !self.hosts.contains(n))
            .collect()
    }

    /// Maps the three reads into [`Observed`].
    fn assemble(&self, kube: KubeRead, etcd: EtcdRead, hosts: HostReads) -> Observed {
        let etcd_state = match &etcd {
            Ok(o) => map_etcd(o),
            Err(e) => Fact::unknown(format!("etcd: {e}")),
        };
        let mut host_states = BTreeMap::new();
        let mut host_failures = BTreeMap::new();
        for (name, obs) in hosts {
            let fact = match obs {
                HostObservation::Reachable(facts) => {
                    let addr = self.hosts.address(&name);
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
        Observed {
            kube: match kube {
                Ok(k) => Fact::Known(map_kube(k)),
                // A fallback answered and then failed (a 401 there, say): say how it was
                // reached, or the operator looks for the error at the kubeconfig's server.
                Err(e) => Fact::unknown(match self.kube_failover() {
                    Some(n) => format!("Kubernetes API: {e} ({n})"),
                    None => format!("Kubernetes API: {e}"),
                }),
            },
            etcd: etcd_state,
            hosts: host_states,
            host_failures,
            supervisors: BTreeMap::new(),
        }
    }
}

/// Observes etcd; while members answer but none knows a leader (an election after the
/// leader died or was cut off: seconds on a real cluster, ~7 s measured on k3s v1.21), looks
/// again for up to `election_wait`, so that an election in progress is not reported as
/// quorum lost. A cluster that really lost quorum costs this wait once, and the last
/// observation that had a member list is kept (a survivor without quorum may exit while we
/// wait, as k3s does: then the earlier look says more than the later one).
async fn observe_etcd(p: &EtcdProvider, election_wait: Duration) -> k3splan_etcd::Observation {
    let listed: Mutex<Option<k3splan_etcd::Observation>> = Mutex::new(None);
    let keep_listed = |o: &k3splan_etcd::Observation| {
        if !o.members.is_empty() {
            *listed.lock().expect("not poisoned") = Some(o.clone());
        }
    };
    let looked = Wait::new(election_wait, Duration::from_millis(500))
        .until(|| async {
            let o = p.observe().await;
            if o.health.leader.is_some() {
                return Check::Ready(o);
            }
            keep_listed(&o);
            if !o.endpoints.iter().any(|e| e.reachable()) {
                return Check::Ready(listed.lock().expect("not poisoned").take().unwrap_or(o));
            }
            tracing::info!(
                "etcd members answer but know no leader (election in progress?); looking again"
            );
            Check::Pending(o)
        })
        .await;
    match looked {
        Ok(o) => o,
        Err(t) => listed.into_inner().expect("not poisoned").unwrap_or(t.last),
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
