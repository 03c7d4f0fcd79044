//! Test support: hand-built topologies and an observed state that matches a topology.
//!
//! Used by the planner's golden, unit and property tests, and usable by later tests (the
//! apply engine's). Not meant for production code paths.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{
    Addon, Cluster, DEFAULT_DATA_DIR, DEFAULT_VIP_MANIFEST, EtcdSettings, Node, Role, Roles,
    Secret, SshSettings, StorageBinding, Topology, Vip,
};
use crate::observed::{
    AddonDeployment, EtcdDataDir, EtcdMember, EtcdState, Fact, HostState, K3sConfigFile,
    K3sInstall, KeepalivedManifest, KubeNode, KubeState, MemberHealth, Observed,
};
use crate::plan::files::{K3S_CONFIG_PATH, keepalived_manifest_for};

/// A node with default SSH settings.
pub fn node(name: &str, address: &str, roles: &[Role]) -> Node {
    Node {
        name: name.into(),
        address: address.parse().expect("IP address"),
        roles: Roles::new(roles.iter().copied()),
        primary: false,
        vip_priority: None,
        ssh: SshSettings::default(),
        labels: BTreeMap::new(),
        taints: vec![],
        k3s_config: BTreeMap::new(),
        replace: false,
        k3s_version: None,
    }
}

/// A cluster block with a token from `env("K3S_TOKEN")` and nothing else.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        k3s_version: Some("v1.28.5+k3s1".into()),
        token: Some(Secret::new(
            "env(\"K3S_TOKEN\")",
            Some("K10secret-token::server:abc".into()),
        )),
        api_endpoint: None,
        kubeconfig: None,
        kube_context: None,
        data_dir: DEFAULT_DATA_DIR.into(),
        install_command: None,
        etcd: EtcdSettings::default(),
        vip: None,
        ssh: SshSettings::default(),
        host: crate::config::HostLayout::default(),
        timeouts: crate::config::Timeouts::default(),
        upgrade: crate::config::UpgradeSettings::default(),
    }
}

/// A VIP block (manifest at the default path, password from `env("VRRP_PASSWORD")`).
pub fn vip(address: &str, interface: &str, router_id: u8) -> Vip {
    Vip {
        address: address.parse().expect("IP"),
        interface: interface.into(),
        router_id,
        password: Some(Secret::new(
            "env(\"VRRP_PASSWORD\")",
            Some("MTkyLjE2".into()),
        )),
        manifest_path: DEFAULT_VIP_MANIFEST.into(),
    }
}

pub fn topology(cluster: Cluster, nodes: Vec<Node>) -> Topology {
    Topology {
        cluster,
        nodes,
        storage: vec![],
        addons: vec![],
        backend: None,
        check: Default::default(),
    }
}

pub fn addon(name: &str, replicas: u32, spread: Option<&str>) -> Addon {
    Addon {
        name: name.into(),
        namespace: "kube-system".into(),
        replicas,
        spread: spread.map(String::from),
    }
}

pub fn storage(
    key: &str,
    kind: crate::config::WorkloadKind,
    policy: crate::config::OnNodeLoss,
) -> StorageBinding {
    let (ns, name) = key.split_once('/').expect("NS/NAME");
    StorageBinding {
        namespace: ns.into(),
        name: name.into(),
        kind,
        on_node_loss: policy,
        prefer_nodes: vec![],
    }
}

/// k3s-style member name for a node: `<name>-<8 hex>` (deterministic here).
pub fn member_name(node: &str) -> String {
    let h = node.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    });
    format!("{node}-{h:08x}")
}

/// Deterministic member id for a node.
pub fn member_id(node: &str) -> u64 {
    node.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

pub fn member(node: &str, address: IpAddr, health: MemberHealth) -> EtcdMember {
    let host = match address {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    };
    EtcdMember {
        id: member_id(node),
        name: member_name(node),
        peer_urls: vec![format!("https://{host}:2380")],
        client_urls: vec![format!("https://{host}:2379")],
        is_learner: false,
        health,
    }
}

/// The config.yaml a healthy existing server/agent has, joining through `server`
/// (`None` = the bootstrap server, with `cluster-init: true`).
pub fn config_file(t: &Topology, n: &Node, server: Option<&str>) -> K3sConfigFile {
    let mut raw = String::new();
    match server {
        Some(s) => raw.push_str(&format!("server: {s}\n")),
        None => raw.push_str("cluster-init: true\n"),
    }
    raw.push_str("token: K10secret-token::server:abc\n");
    raw.push_str(&format!("node-ip: {}\n", n.address));
    if n.roles.is_server() && !n.roles.runs_etcd() {
        raw.push_str("disable-etcd: true\n");
    }
    if n.roles.is_server() && !n.roles.runs_control_plane() {
        raw.push_str("disable-apiserver: true\n");
    }
    if n.roles.is_server() && n.disables_agent() {
        raw.push_str("disable-agent: true\n");
    }
    let _ = t;
    K3sConfigFile {
        path: K3S_CONFIG_PATH.into(),
        server: server.map(String::from),
        cluster_init: server.is_none(),
        disable_etcd: n.roles.is_server() && !n.roles.runs_etcd(),
        disable_apiserver: n.roles.is_server() && !n.roles.runs_control_plane(),
        disable_agent: n.roles.is_server() && n.disables_agent(),
        secrets: crate::plan::files::SecretDigests::of(&raw),
        raw,
    }
}

/// The keepalived manifest a node has when it matches the topology (with a real password).
pub fn keepalived_file(t: &Topology, n: &Node) -> Option<KeepalivedManifest> {
    let (raw, _) = keepalived_manifest_for(t, n)?;
    let v = t.cluster.vip.as_ref()?;
    Some(KeepalivedManifest {
        path: v.manifest_path.clone(),
        priority: t.vip_priority(n),
        vip: Some(v.address.to_string()),
        interface: Some(v.interface.clone()),
        router_id: Some(v.router_id),
        raw: raw.replace("(sensitive)", "\"MTkyLjE2\""),
    })
}

/// An observed state in which everything matches `t`: every node Ready and reachable, every
/// etcd node a healthy voter, configs joining through the first etcd server (which has
/// `cluster-init`), keepalived as declared, add-ons as declared.
pub fn observed_matching(t: &Topology) -> Observed {
    let first = t.etcd_nodes().next().map(|n| n.name.clone());
    let first_url = t
        .etcd_nodes()
        .next()
        .map(|n| format!("https://{}:6443", n.address));
    let mut kube = KubeState::default();
    let mut etcd = EtcdState::default();
    let mut hosts = BTreeMap::new();
    for n in &t.nodes {
        let mut roles = Vec::new();
        if n.roles.runs_control_plane() {
            roles.push("control-plane".to_string());
            roles.push("master".to_string());
        }
        if n.roles.runs_etcd() {
            roles.push("etcd".to_string());
        }
        if !n.runs_agent() {
            // A server with `disable-agent` runs no kubelet: no Node object.
        } else {
            kube.nodes.push(KubeNode {
                name: n.name.clone(),
                internal_ip: Some(n.address),
                ready: true,
                ready_since: Some("2026-11-01T00:00:00Z".into()),
                unschedulable: false,
                roles,
                version: t.cluster.k3s_version.clone(),
            });
        }
        if n.roles.runs_etcd() {
            etcd.members
                .push(member(&n.name, n.address, MemberHealth::Healthy));
        }
        let server = if Some(&n.name) == first.as_ref() {
            None
        } else {
            first_url.as_deref()
        };
        hosts.insert(
            n.name.clone(),
            Fact::Known(HostState {
                address: Some(n.address),
                k3s: Some(K3sInstall {
                    version: t.cluster.k3s_version.clone(),
                    service_active: true,
                }),
                config: Some(config_file(t, n, server)),
                env_files: Vec::new(),
                keepalived: keepalived_file(t, n),
                etcd_data: n.roles.runs_etcd().then(|| EtcdDataDir {
                    path: format!("{}/server/db/etcd", t.cluster.data_dir),
                    member_name: Some(member_name(&n.name)),
                    cluster_id: Some("c0ffee".into()),
                    belongs_to_cluster: Some(true),
                    tombstone: false,
                    initial_cluster: None,
                }),
                // Converged: every packaged add-on declared is skipped on every server.
                manifest_skips: if n.roles.is_server() {
                    t.addons
                        .iter()
                        .filter_map(|a| {
                            crate::plan::phases::addons::packaged_manifest(&a.namespace, &a.name)
                        })
                        .map(|m| format!("{m}.skip"))
                        .collect()
                } else {
                    Vec::new()
                },
            }),
        );
    }
    etcd.leader = etcd.members.first().map(|m| m.id);
    for a in &t.addons {
        kube.addons.push(AddonDeployment {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            replicas: a.replicas,
            ready_replicas: a.replicas,
            pod_nodes: t
                .nodes
                .iter()
                .take(a.replicas as usize)
                .map(|n| n.name.clone())
                .collect(),
            spread: a.spread.clone(),
            helm_chart_config: false,
        });
    }
    Observed {
        kube: Fact::Known(kube),
        etcd: Fact::Known(etcd),
        hosts,
        host_failures: Default::default(),
        supervisors: Default::default(),
    }
}

/// Marks the host of `name` as refusing SSH connections (it looks down): the failure kind
/// that counts as evidence for a removal without `--allow-unreachable`.
pub fn host_refused(o: &mut Observed, name: &str, reason: &str) {
    o.hosts.insert(name.into(), Fact::unknown(reason));
    o.host_failures
        .insert(name.into(), crate::observed::HostUnknown::Refused);
}

/// Marks the host of `name` as not answering within the connect timeout (it may be alive
/// behind a partition).
pub fn host_silent(o: &mut Observed, name: &str, reason: &str) {
    o.hosts.insert(name.into(), Fact::unknown(reason));
    o.host_failures
        .insert(name.into(), crate::observed::HostUnknown::Unanswered);
}
