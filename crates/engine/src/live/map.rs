//! Mapping what the providers saw into the planner's [`Observed`] model: Kubernetes, etcd
//! and each host. Pure functions: no I/O; secrets are masked here, before they enter
//! [`Observed`].

use std::net::IpAddr;

use k3splan_host::{
    ConfigFile, EnvFile, HostFacts, K3sLayout, ManifestFile, ServiceState, UnreachableKind,
};
use k3splan_kube::Readiness;

use crate::observed::{
    AddonDeployment, EtcdDataDir, EtcdMember, EtcdState, Fact, HostState, HostUnknown,
    K3sConfigFile, K3sEnvFile, K3sInstall, KeepalivedManifest, KubeNode, KubeState, MemberHealth,
    Pod, Pvc, url_host,
};
use crate::plan::files::mask_secrets;

/// What an SSH failure says about the host (see [`HostUnknown`]).
pub(super) fn host_unknown(kind: UnreachableKind) -> HostUnknown {
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
pub(super) struct RawFiles {
    config: Option<String>,
    keepalived: Option<String>,
    config_secrets: crate::plan::files::SecretDigests,
    /// The server and the agent unit's env files: masked text and secret digests.
    env: [Option<(String, crate::plan::files::SecretDigests)>; 2],
}

impl RawFiles {
    /// config.yaml and the keepalived manifest as text, masked at once, for plan diffs (read
    /// by the observe round itself: no second round trip per host).
    pub(super) fn of(facts: &HostFacts) -> Self {
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
            env: [&facts.raw_server_env, &facts.raw_agent_env].map(|r| {
                r.as_ref().map(|r| {
                    let clear = String::from_utf8_lossy(r.expose());
                    (
                        mask_secrets(&clear),
                        crate::plan::files::secret_digests(digest_key(), &clear),
                    )
                })
            }),
        }
    }
}

/// The HMAC key of this process's secret digests: 32 bytes from the OS, drawn once, never
/// printed or stored (see [`crate::observed::SecretDigests`]). Without an OS random source,
/// std's per-process random hasher keys, stretched.
fn digest_key() -> [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::fill(&mut k).is_err() {
            use std::hash::{BuildHasher, Hasher};
            let state = std::collections::hash_map::RandomState::new();
            for (i, chunk) in k.chunks_mut(8).enumerate() {
                let mut h = state.build_hasher();
                h.write_usize(i);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        k
    })
}

/// k3s names members `<short hostname>-<8 hex>`; the node name is the part before.
pub(super) fn member_node_name(member: &str) -> String {
    match member.rsplit_once('-') {
        Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => member.to_string(),
    }
}

/// Moves the observation into the planner's model (it is not used afterwards: no copies of
/// the thousands of strings a large cluster holds).
pub(super) fn map_kube(k: k3splan_kube::ClusterObservation) -> KubeState {
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

pub(super) fn map_etcd(o: &k3splan_etcd::Observation) -> Fact<EtcdState> {
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

pub(super) fn map_host(
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
            disable_agent: c.disable_agent,
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
    let etcd_data = map_etcd_data(address, f, layout, etcd);
    let [server_env, agent_env] = raw.env;
    let env_files = [
        (&f.server_env, &layout.server_unit, server_env),
        (&f.agent_env, &layout.agent_unit, agent_env),
    ]
    .into_iter()
    .filter_map(|(state, unit, raw)| {
        let path = layout.env_file(unit);
        let (masked, secrets) = raw.unwrap_or_default();
        match state {
            EnvFile::Absent => None,
            EnvFile::Invalid { reason } => Some(K3sEnvFile {
                path,
                unit: unit.clone(),
                unreadable: Some(reason.clone()),
                ..K3sEnvFile::default()
            }),
            EnvFile::Present { k3s_url } => Some(K3sEnvFile {
                path,
                unit: unit.clone(),
                k3s_url: k3s_url.clone(),
                unreadable: None,
                raw: masked,
                secrets,
            }),
        }
    })
    .collect();
    HostState {
        address,
        k3s,
        config,
        env_files,
        keepalived,
        etcd_data,
        manifest_skips: f.manifest_skips.clone(),
    }
}

/// The etcd data dir of a host, and whether it belongs to the running cluster.
fn map_etcd_data(
    address: Option<IpAddr>,
    f: &HostFacts,
    layout: &K3sLayout,
    etcd: &Fact<EtcdState>,
) -> Option<EtcdDataDir> {
    // etcd data is `member/` (its WAL and snapshots; k3s's `IsInitialized` looks for
    // `member/wal`) or k3s's tombstone. A dir holding only k3s's `name` file is what a server
    // writes before its join adds the member (k3s `ETCD.Register` → `setName`): a join in
    // progress, not stale data — moving it aside would stop that join.
    let holds_data = f.etcd_data.has_member_dir || f.etcd_data.tombstone;
    holds_data.then(|| {
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
    })
}
