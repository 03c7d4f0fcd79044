//! `k3splan import`: the topology (HCL) of a running cluster, written from what was
//! observed. Pure: [`Observed`] and the settings the operator gave in, HCL text out.
//!
//! What is read from where:
//! - nodes: every Kubernetes Node, every etcd member (matched to a Node by peer address,
//!   rule 11; a member without a Node is a server run with `disable-agent`, named after its
//!   member name without k3s's `-<8 hex>` suffix), with the address from the Node's
//!   InternalIP, else the member's peer URL, else the address SSH reached;
//! - roles: an etcd member at the node's address means etcd; the Node's
//!   `node-role.kubernetes.io/control-plane` (or `master`) label, or a config.yaml without
//!   `disable-apiserver`, means the control plane; `disable-etcd` / `disable-apiserver` in
//!   config.yaml say what a server does not run; neither is an agent. `disable-agent: true`
//!   in config.yaml is kept as `k3s_config = { "disable-agent" = true }`. (k3s labels its
//!   servers' Nodes itself: `node-role.kubernetes.io/master=true` in k3s-io/k3s
//!   `pkg/server/server.go`, `setMasterRoleLabel`; later versions add `control-plane` and,
//!   with embedded etcd, `etcd`. Labels can be edited by anyone, so etcd membership, matched
//!   by peer address, is what says a node runs etcd, and config.yaml's `disable-*` keys
//!   what a server does not run.)
//! - cluster: the k3s version all Nodes (else hosts) report, the data dir from where the
//!   etcd data lives, the VIP (address, interface, router id, manifest path) from the
//!   keepalived manifests, the primary (the highest priority, 100), and explicit
//!   `vip_priority` where a node's differs from 100/90; `api_endpoint` is the VIP, else the
//!   join URL most config.yaml files name;
//! - storage: one block per StatefulSet or Deployment whose pods mount a local-path PVC
//!   (a PVC pinned to a node); `on_node_loss` cannot be observed: it is written as `"keep"`
//!   (touch nothing) with the other choices as comments and a TODO;
//! - add-ons: the k3s add-ons found, with today's replicas and spread. A k3s-packaged add-on
//!   is declared only when every server already has its `.skip` file (k3splan, or someone,
//!   took it over from k3s); otherwise the block is written commented out, because declaring
//!   it makes the next plan write the `.skip` files (k3s then no longer upgrades it).
//!
//! Secrets are never written: `token = env("K3S_TOKEN")`, the VRRP password
//! `env("VRRP_PASSWORD")`. What cannot be known is a `# TODO:` comment at its spot, and is
//! listed in [`Imported::todos`] (the command line prints them on stderr).
//!
//! Guarantee: for an observation of a cluster that runs as a topology declares it, the plan
//! of the imported topology against the same observation has no step (the round trip,
//! tested on the seed fixtures and on the lab's scenarios).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{
    BACKUP_PRIORITY, DEFAULT_DATA_DIR, DEFAULT_VIP_MANIFEST, HostLayout, PRIMARY_PRIORITY,
    SshSettings,
};
use crate::observed::{Fact, HostState, KubeState, Observed, url_host};
use crate::plan::PACKAGED_ADDONS;

/// What the operator knows and the cluster cannot tell: how to reach it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportSettings {
    /// The `cluster` block's label.
    pub cluster_name: String,
    /// `kubeconfig` to write (as given).
    pub kubeconfig: Option<String>,
    pub kube_context: Option<String>,
    /// etcd client TLS files (CA, certificate, key), as given on the command line.
    pub etcd_tls: Option<[String; 3]>,
    /// `install_command`, when not the official script.
    pub install_command: Option<String>,
    /// The cluster-wide `ssh` block (`None`: the defaults).
    pub ssh: Option<SshSettings>,
    /// Per node name: SSH settings that differ from the cluster's (e.g. a port).
    pub node_ssh: BTreeMap<String, SshSettings>,
    /// The `host` block (`None`: the defaults of the official install script).
    pub host: Option<HostLayout>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The topology, formatted (`k3splan fmt` leaves it as it is).
    pub hcl: String,
    /// What could not be known, one line each (also `# TODO:` comments in [`Self::hcl`]).
    pub todos: Vec<String>,
    /// What was seen and not imported, and why (a host without k3s, an unknown host…).
    pub notes: Vec<String>,
    /// The node names imported.
    pub nodes: Vec<String>,
}

/// A node as imported.
#[derive(Debug, Clone)]
struct INode {
    name: String,
    address: IpAddr,
    etcd: bool,
    control_plane: bool,
    agent: bool,
    disable_agent: bool,
    priority: Option<u8>,
}

/// The topology of the cluster `o` shows.
pub fn import(o: &Observed, s: &ImportSettings) -> Imported {
    let mut todos = Vec::new();
    let mut notes = Vec::new();
    let empty = KubeState::default();
    let kube = o.kube.known().unwrap_or(&empty);
    let members = o.etcd.known().map(|e| e.members.as_slice()).unwrap_or(&[]);
    let host = |n: &str| match o.hosts.get(n) {
        Some(Fact::Known(h)) => Some(h),
        _ => None,
    };

    // ---- nodes
    let mut nodes: Vec<INode> = Vec::new();
    let member_at = |addr: IpAddr| members.iter().find(|m| m.peer_address() == Some(addr));
    for k in &kube.nodes {
        let addr = k
            .internal_ip
            .or_else(|| host(&k.name).and_then(|h| h.address));
        let Some(address) = addr else {
            notes.push(format!(
                "node {}: no InternalIP and no host address: not imported",
                k.name
            ));
            continue;
        };
        let labels_cp = k
            .roles
            .iter()
            .any(|r| r == "control-plane" || r == "master");
        let labels_etcd = k.roles.iter().any(|r| r == "etcd");
        let cfg = host(&k.name).and_then(|h| h.config.as_ref());
        let etcd =
            member_at(address).is_some() || (labels_etcd && !cfg.is_some_and(|c| c.disable_etcd));
        let control_plane = labels_cp || (etcd && cfg.is_some_and(|c| !c.disable_apiserver));
        nodes.push(INode {
            name: k.name.clone(),
            address,
            etcd,
            control_plane,
            agent: !etcd && !control_plane,
            disable_agent: false,
            priority: None,
        });
    }
    for m in members {
        let Some(addr) = m.peer_address() else {
            notes.push(format!(
                "etcd member {} has no peer address: not imported",
                m.name
            ));
            continue;
        };
        if nodes.iter().any(|n| n.address == addr) {
            continue;
        }
        // No Node: a server without an agent (or its Node was deleted).
        let name = o
            .hosts
            .iter()
            .find(|(_, h)| h.known().and_then(|h| h.address) == Some(addr))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| member_node_name(&m.name));
        let cfg = host(&name).and_then(|h| h.config.as_ref());
        nodes.push(INode {
            name,
            address: addr,
            etcd: true,
            control_plane: cfg.is_none_or(|c| !c.disable_apiserver),
            agent: false,
            disable_agent: true,
            priority: None,
        });
    }
    for n in &mut nodes {
        let h = host(&n.name);
        if let Some(c) = h.and_then(|h| h.config.as_ref())
            && c.disable_agent
            && !n.agent
        {
            n.disable_agent = true;
        }
        n.priority = h
            .and_then(|h| h.keepalived.as_ref())
            .and_then(|k| k.priority);
        if let Some(Fact::Unknown { reason }) = o.hosts.get(&n.name) {
            notes.push(format!(
                "host of node {} could not be read ({reason}): imported from the Kubernetes API and etcd only; its k3s config.yaml and keepalived manifest are unknown",
                n.name
            ));
        }
    }
    for (name, h) in &o.hosts {
        if nodes.iter().any(|n| &n.name == name) {
            continue;
        }
        match h {
            Fact::Known(h) if h.k3s.is_none() => notes.push(format!(
                "host {name} has no k3s installed and is neither a Node nor an etcd member: not imported"
            )),
            Fact::Known(_) => notes.push(format!(
                "host {name} runs k3s but is neither a Node nor an etcd member: not imported"
            )),
            Fact::Unknown { reason } => notes.push(format!(
                "host {name} could not be read ({reason}) and is neither a Node nor an etcd member: not imported"
            )),
        }
    }
    nodes.sort_by(|a, b| {
        (!a.etcd, !a.control_plane, &a.name).cmp(&(!b.etcd, !b.control_plane, &b.name))
    });

    // ---- cluster facts
    let version = most_common(kube.nodes.iter().filter_map(|n| n.version.clone())).or_else(|| {
        most_common(
            o.hosts
                .values()
                .filter_map(|h| h.known()?.k3s.as_ref()?.version.clone()),
        )
    });
    let versions: BTreeSet<String> = kube
        .nodes
        .iter()
        .filter_map(|n| n.version.clone())
        .collect();
    let data_dir = most_common(o.hosts.values().filter_map(|h| {
        h.known()?
            .etcd_data
            .as_ref()?
            .path
            .strip_suffix("/server/db/etcd")
            .map(String::from)
    }));
    let manifests: Vec<&HostState> = nodes
        .iter()
        .filter_map(|n| host(&n.name))
        .filter(|h| h.keepalived.is_some())
        .collect();
    let vip = manifests.iter().find_map(|h| {
        let k = h.keepalived.as_ref()?;
        Some((
            k.vip.clone()?,
            k.interface.clone(),
            k.router_id,
            k.path.clone(),
        ))
    });
    let join_url = most_common(nodes.iter().filter_map(|n| {
        host(&n.name)?
            .config
            .as_ref()?
            .server
            .clone()
            .filter(|u| url_host(u) != Some(n.address.to_string().as_str()))
    }));

    // ---- the HCL
    let mut h = String::new();
    let _ = writeln!(
        h,
        "# Imported by `k3splan import` from the running cluster. Review every TODO, then run\n# `k3splan plan`: it should say \"No changes.\"\n"
    );
    let _ = writeln!(h, "cluster {} {{", q(&s.cluster_name));
    match &version {
        Some(v) => {
            let _ = writeln!(h, "k3s_version = {}", q(v));
            if versions.len() > 1 {
                let t = format!(
                    "the nodes run different k3s versions ({}): k3s_version is the most common one",
                    versions.iter().cloned().collect::<Vec<_>>().join(", ")
                );
                let _ = writeln!(h, "# TODO: {t}");
                todos.push(format!("cluster.k3s_version: {t}"));
            }
        }
        None => {
            let t =
                "no Node or host reported its k3s version: set k3s_version (e.g. \"v1.28.5+k3s1\")";
            let _ = writeln!(h, "# TODO: {t}");
            todos.push(format!("cluster.k3s_version: {t}"));
        }
    }
    let _ = writeln!(
        h,
        "token = env(\"K3S_TOKEN\") # the join token (server/token on a server); never a literal"
    );
    match (&vip, &join_url) {
        (Some((addr, ..)), _) => {
            let _ = writeln!(
                h,
                "api_endpoint = {}",
                q(&format!("https://{}:6443", url_host_or(addr)))
            );
        }
        (None, Some(u)) => {
            let _ = writeln!(h, "api_endpoint = {}", q(u));
        }
        (None, None) => {
            let t = "no VIP and no join URL were found: set api_endpoint to the VIP or load balancer joining nodes should use";
            let _ = writeln!(h, "# TODO: {t}");
            todos.push(format!("cluster.api_endpoint: {t}"));
        }
    }
    if let Some(k) = &s.kubeconfig {
        let _ = writeln!(h, "kubeconfig = {}", q(k));
    }
    if let Some(c) = &s.kube_context {
        let _ = writeln!(h, "kube_context = {}", q(c));
    }
    if let Some(d) = data_dir.as_deref().filter(|d| *d != DEFAULT_DATA_DIR) {
        let _ = writeln!(h, "data_dir = {}", q(d));
    }
    if let Some(c) = &s.install_command {
        let _ = writeln!(h, "install_command = {}", q(c));
    }
    if let Some(l) = s.host.as_ref().filter(|l| **l != HostLayout::default()) {
        let d = HostLayout::default();
        h.push_str("\nhost {\n");
        if l.k3s_binary != d.k3s_binary {
            let _ = writeln!(h, "k3s_binary = {}", q(&l.k3s_binary));
        }
        if l.config_path != d.config_path {
            let _ = writeln!(h, "config_path = {}", q(&l.config_path));
        }
        if l.service_command != d.service_command {
            let _ = writeln!(h, "service_command = {}", list(&l.service_command));
        }
        if l.uninstall_command != d.uninstall_command {
            let _ = writeln!(h, "uninstall_command = {}", list(&l.uninstall_command));
        }
        if l.agent_uninstall_command != d.agent_uninstall_command {
            let _ = writeln!(
                h,
                "agent_uninstall_command = {}",
                list(&l.agent_uninstall_command)
            );
        }
        h.push_str("}\n");
    }
    h.push_str("\netcd {\n");
    match &s.etcd_tls {
        Some([ca, cert, key]) => {
            let _ = writeln!(h, "ca_file = {}", q(ca));
            let _ = writeln!(h, "cert_file = {}", q(cert));
            let _ = writeln!(h, "key_file = {}", q(key));
        }
        None => {
            let dir = data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
            let t = format!(
                "etcd's client TLS files were not given (--etcd-ca, --etcd-cert, --etcd-key): copy them from a server ({dir}/server/tls/etcd/server-ca.crt, client.crt, client.key) and set ca_file, cert_file, key_file"
            );
            let _ = writeln!(h, "# TODO: {t}");
            todos.push(format!("cluster.etcd: {t}"));
        }
    }
    h.push_str("}\n");
    if let Some((addr, iface, router_id, path)) = &vip {
        h.push_str("\nvip {\n");
        let _ = writeln!(h, "address = {}", q(addr));
        match iface {
            Some(i) => {
                let _ = writeln!(h, "interface = {}", q(i));
            }
            None => {
                let t = "the keepalived manifest names no interface: set vip.interface";
                let _ = writeln!(h, "# TODO: {t}\ninterface = \"eth0\"");
                todos.push(format!("cluster.vip.interface: {t}"));
            }
        }
        match router_id {
            Some(r) => {
                let _ = writeln!(h, "router_id = {r}");
            }
            None => {
                let t = "the keepalived manifest names no virtual router id: set vip.router_id";
                let _ = writeln!(h, "# TODO: {t}\nrouter_id = 1");
                todos.push(format!("cluster.vip.router_id: {t}"));
            }
        }
        let _ = writeln!(h, "password = env(\"VRRP_PASSWORD\") # never a literal");
        if path != DEFAULT_VIP_MANIFEST {
            let _ = writeln!(h, "manifest_path = {}", q(path));
        }
        h.push_str("}\n");
    }
    if let Some(ssh) = &s.ssh {
        ssh_block(&mut h, ssh, &SshSettings::default());
    }
    h.push_str("}\n");

    // ---- nodes
    // The primary: the one server with priority 100. When none has it and one server's
    // manifest could not be read (its host is unknown), that server is the likely holder
    // (seed 004: the dead first server was the primary); otherwise the first of the
    // highest, with a TODO. A `vip` needs exactly one primary to be a valid topology.
    let mut primary_todo = None;
    let primary = vip.as_ref().and_then(|_| {
        let servers: Vec<&INode> = nodes.iter().filter(|n| !n.agent).collect();
        let best = servers.iter().filter_map(|n| n.priority).max();
        let top: Vec<&&INode> = servers.iter().filter(|n| n.priority == best && best.is_some()).collect();
        if best == Some(PRIMARY_PRIORITY) && top.len() == 1 {
            return Some(top[0].name.clone());
        }
        let unread: Vec<&&INode> = servers.iter().filter(|n| host(&n.name).is_none()).collect();
        if unread.len() == 1 {
            primary_todo = Some(format!(
                "no readable server has keepalived priority {PRIMARY_PRIORITY}; {}'s manifest could not be read, so it is taken as the primary: check which server should hold the VIP",
                unread[0].name
            ));
            return Some(unread[0].name.clone());
        }
        let first: &INode = top.first().map(|n| **n).or(servers.first().copied())?;
        primary_todo = Some(format!(
            "no single server has keepalived priority {PRIMARY_PRIORITY}: {} is taken as the primary; check which server should hold the VIP",
            first.name
        ));
        Some(first.name.clone())
    });
    let cluster_ssh = s.ssh.clone().unwrap_or_default();
    for n in &nodes {
        let roles = match (n.etcd, n.control_plane, n.agent) {
            (true, true, _) => "[\"server\"]",
            (true, false, _) => "[\"etcd\"]",
            (false, true, _) => "[\"control-plane\"]",
            _ => "[\"agent\"]",
        };
        let _ = writeln!(h, "\nnode {} {{", q(&n.name));
        let _ = writeln!(h, "address = {}", q(&n.address.to_string()));
        let _ = writeln!(h, "roles = {roles}");
        let is_primary = primary.as_deref() == Some(n.name.as_str());
        if is_primary {
            if let Some(t) = &primary_todo {
                let _ = writeln!(h, "# TODO: {t}");
                todos.push(format!("node.{}.primary: {t}", n.name));
            }
            let _ = writeln!(
                h,
                "primary = true # holds the VIP (keepalived priority 100)"
            );
        }
        if vip.is_some() && !n.agent {
            let want = if is_primary {
                PRIMARY_PRIORITY
            } else {
                BACKUP_PRIORITY
            };
            match n.priority {
                Some(p) if p != want && !(is_primary && primary_todo.is_some()) => {
                    let _ = writeln!(h, "vip_priority = {p}");
                }
                None if host(&n.name).is_some() => {
                    let t = format!(
                        "{} is a server without a keepalived manifest: the next plan writes one (priority {want}); remove the server from the VIP by hand if that is not wanted",
                        n.name
                    );
                    let _ = writeln!(h, "# TODO: {t}");
                    todos.push(format!("node.{}: {t}", n.name));
                }
                _ => {}
            }
        }
        if n.disable_agent {
            let _ = writeln!(
                h,
                "k3s_config = {{ \"disable-agent\" = true }} # no kubelet: no Node"
            );
        }
        if let Some(ns) = s.node_ssh.get(&n.name) {
            ssh_block(&mut h, ns, &cluster_ssh);
        }
        h.push_str("}\n");
    }

    // ---- storage
    for (ns, kind, name) in local_path_workloads(kube) {
        let _ = writeln!(h, "\nstorage {} {{", q(&format!("{ns}/{name}")));
        let _ = writeln!(h, "kind = {}", q(&kind));
        let (alt, alt_doc) = if kind == "StatefulSet" {
            (
                "rebind",
                "delete PVC + pod; the StatefulSet recreates both on a live node",
            )
        } else {
            (
                "recreate",
                "delete PVC + Deployment; its operator recreates them",
            )
        };
        let t = format!(
            "what to do with {ns}/{name}'s local-path volumes when their node is lost cannot be observed: \"keep\" (touch nothing) or \"{alt}\""
        );
        let _ = writeln!(h, "# TODO: {t}");
        let _ = writeln!(h, "# on_node_loss = \"{alt}\" # {alt_doc}");
        let _ = writeln!(
            h,
            "on_node_loss = \"keep\" # leave the volume for a manual restore"
        );
        h.push_str("}\n");
        todos.push(format!("storage.{ns}/{name}.on_node_loss: {t}"));
    }

    // ---- add-ons
    let servers: Vec<&HostState> = nodes
        .iter()
        .filter(|n| !n.agent)
        .filter_map(|n| host(&n.name))
        .collect();
    for a in &kube.addons {
        let packaged = PACKAGED_ADDONS
            .iter()
            .find(|(ns, name, _)| *ns == a.namespace && *name == a.name)
            .map(|(_, _, file)| *file);
        let taken_over = packaged.is_none_or(|file| {
            !servers.is_empty() && servers.iter().all(|h| h.skips_manifest(file))
        });
        let mut body = String::new();
        if a.namespace != "kube-system" {
            let _ = writeln!(body, "namespace = {}", q(&a.namespace));
        }
        let _ = writeln!(body, "replicas = {}", a.replicas);
        if let Some(sp) = &a.spread {
            let _ = writeln!(body, "spread = {}", q(sp));
        }
        if taken_over {
            let _ = writeln!(h, "\naddon {} {{", q(&a.name));
            h.push_str(&body);
            h.push_str("}\n");
        } else {
            let file = packaged.unwrap_or_default();
            let _ = writeln!(
                h,
                "\n# k3s manages {} itself: it re-applies {file} at every server start.\n# Declaring it here makes the next plan write {file}.skip on every server,\n# and k3s then no longer upgrades it. Uncomment to hand it to k3splan (today: {} replica{}):",
                a.name,
                a.replicas,
                if a.replicas == 1 { "" } else { "s" }
            );
            let _ = writeln!(h, "# addon {} {{", q(&a.name));
            for l in body.lines() {
                let _ = writeln!(h, "#   {l}");
            }
            h.push_str("# }\n");
            notes.push(format!(
                "addon {}: k3s manages it ({file}); written commented out",
                a.name
            ));
        }
    }

    let hcl = crate::config::fmt::format_source(&h).unwrap_or(h);
    Imported {
        hcl,
        todos,
        notes,
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
    }
}

fn ssh_block(h: &mut String, s: &SshSettings, base: &SshSettings) {
    let mut b = String::new();
    if s.user != base.user {
        let _ = writeln!(b, "user = {}", q(&s.user));
    }
    if s.port != base.port {
        let _ = writeln!(b, "port = {}", s.port);
    }
    if s.private_key_file != base.private_key_file
        && let Some(k) = &s.private_key_file
    {
        let _ = writeln!(b, "private_key_file = {}", q(&k.display().to_string()));
    }
    if s.known_hosts_file != base.known_hosts_file {
        let _ = writeln!(
            b,
            "known_hosts_file = {}",
            q(&s.known_hosts_file.display().to_string())
        );
    }
    if !b.is_empty() {
        h.push_str("\nssh {\n");
        h.push_str(&b);
        h.push_str("}\n");
    }
}

/// The workloads (namespace, kind, name) whose pods mount a PVC pinned to a node (a
/// local-path volume), StatefulSets and Deployments only, sorted.
fn local_path_workloads(k: &KubeState) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for p in &k.pods {
        let (Some(kind), Some(owner)) = (&p.owner_kind, &p.owner_name) else {
            continue;
        };
        if kind != "StatefulSet" && kind != "Deployment" {
            continue;
        }
        let local = p.pvcs.iter().any(|c| {
            k.pvcs.iter().any(|v| {
                v.namespace == p.namespace
                    && &v.name == c
                    && (v.bound_node.is_some() || v.storage_class.as_deref() == Some("local-path"))
            })
        });
        if local {
            out.insert((p.namespace.clone(), kind.clone(), owner.clone()));
        }
    }
    out
}

/// k3s names members `<short hostname>-<8 hex>`: the hostname.
fn member_node_name(member: &str) -> String {
    match member.rsplit_once('-') {
        Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => member.to_string(),
    }
}

fn most_common(it: impl Iterator<Item = String>) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in it {
        *counts.entry(v).or_default() += 1;
    }
    let max = counts.values().copied().max()?;
    counts.into_iter().find(|(_, c)| *c == max).map(|(v, _)| v)
}

/// An address for a URL: IPv6 in brackets.
fn url_host_or(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v)) => format!("[{v}]"),
        _ => addr.to_string(),
    }
}

/// An HCL string literal: quotes, backslashes, control characters and template
/// introducers (`${`, `%{`) escaped.
pub fn q(s: &str) -> String {
    let mut o = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                o.push(c);
                o.push(c);
            }
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_strings_escape_templates_and_quotes() {
        assert_eq!(q("a\"b\\c${x}%{y}$z"), "\"a\\\"b\\\\c$${x}%%{y}$z\"");
        assert_eq!(member_node_name("server-1-0a1b2c3d"), "server-1");
        assert_eq!(member_node_name("odd"), "odd");
    }
}
