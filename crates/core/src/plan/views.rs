//! Queries on the per-node views of a [`PlanCx`]: what the three sources (the Kubernetes
//! API, etcd, SSH) say about a node, read together. Pure and read-only: no query records a
//! step, a warning or a violation.
//!
//! Caveat: the views are the observation, not the plan: a node this plan removes is still
//! "present" here; phases consult `PlanCx::lost`/`joined` for what the plan changed.

use std::net::IpAddr;

use serde_json::json;

use crate::config::Node;
use crate::observed::{EtcdMember, Fact, HostState, KubeNode};
use crate::plan::cx::PlanCx;

/// What is known about one node across the three sources.
#[derive(Debug, Clone)]
pub(super) struct NodeView<'a> {
    pub name: String,
    pub declared: Option<&'a Node>,
    pub kube: Option<&'a KubeNode>,
    pub member: Option<&'a EtcdMember>,
    pub host: Fact<&'a HostState>,
    pub address: Option<IpAddr>,
}

impl NodeView<'_> {
    pub(super) fn host_reason(&self) -> Option<&str> {
        self.host.unknown_reason()
    }
}

pub(super) fn is_healthy_member(m: Option<&EtcdMember>) -> bool {
    m.is_some_and(|m| m.is_healthy() && !m.is_learner)
}

impl<'a> PlanCx<'a> {
    /// Neither declared nor a Node object (views hold every declared and every Node name).
    pub(super) fn gone(&self, name: &str) -> bool {
        self.views
            .get(name)
            .is_none_or(|v| v.declared.is_none() && v.kube.is_none())
    }

    pub(super) fn is_declared(&self, name: &str) -> bool {
        self.views.get(name).is_some_and(|v| v.declared.is_some())
    }

    /// Whether this plan is asked to rebuild the declared node `name` (`-replace`).
    pub(super) fn replacing(&self, name: &str) -> bool {
        self.opts.replace.contains(name)
            || self
                .views
                .get(name)
                .is_some_and(|v| v.declared.is_some_and(|d| d.replace))
    }

    pub(super) fn member_label(&self, m: &EtcdMember) -> String {
        match self
            .views
            .values()
            .find(|v| v.member.is_some_and(|x| x.id == m.id))
        {
            Some(v) => format!("{} (member {})", v.name, m.name),
            None => format!("member {}", m.name),
        }
    }

    /// Alive by any source: Node Ready, member healthy, or k3s active on a reachable host.
    pub(super) fn is_alive(&self, name: &str) -> bool {
        let v = &self.views[name];
        v.kube.is_some_and(|k| k.ready)
            || is_healthy_member(v.member)
            || v.host
                .known()
                .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
    }

    /// Failed: its etcd member is not a healthy voter; without a member, no source says it
    /// is alive.
    pub(super) fn is_failed(&self, name: &str) -> bool {
        match self.views[name].member {
            Some(m) => !m.is_healthy() || m.is_learner,
            None => !self.is_alive(name),
        }
    }

    /// Present in the cluster: a Node object, an etcd member, or an active k3s.
    pub(super) fn is_present(&self, name: &str) -> bool {
        let v = &self.views[name];
        v.kube.is_some()
            || v.member.is_some()
            || v.host
                .known()
                .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
    }

    pub(super) fn node_before(&self, v: &NodeView) -> serde_json::Value {
        let mut b = json!({});
        if let Some(a) = v.address {
            b["address"] = json!(a.to_string());
        }
        if let Some(k) = v.kube {
            b["ready"] = json!(k.ready);
            b["unschedulable"] = json!(k.unschedulable);
            b["roles"] = json!(k.roles);
            if let Some(ver) = &k.version {
                b["version"] = json!(ver);
            }
        }
        match &v.host {
            Fact::Known(_) => b["host"] = json!("reachable"),
            Fact::Unknown { reason } => {
                let word = self.o.host_word(&v.name);
                b["host"] = json!(format!("{word}: {reason}"))
            }
        }
        b
    }

    /// Whether k3s runs an agent (kubelet, hence a Node) on `name`: what the host's
    /// config.yaml says (`disable-agent`) when it was read, else what the topology declares
    /// (`k3s_config`). Agents always do.
    pub(super) fn runs_agent(&self, name: &str) -> bool {
        let Some(v) = self.views.get(name) else {
            return true;
        };
        if v.declared.is_some_and(|d| d.roles.is_agent()) {
            return true;
        }
        if let Some(c) = v.host.known().and_then(|h| h.config.as_ref()) {
            return !c.disable_agent;
        }
        v.declared.is_none_or(|d| d.runs_agent())
    }

    /// Why server `name` cannot be joined through, or `None` when it is healthy: its etcd
    /// member a healthy voter (when it runs etcd), its supervisor port answering (when it
    /// was probed), and, when it runs an agent and the API is known, its Node Ready. An
    /// unknown probe (a timeout) counts only when the Node vouches for the server.
    pub(super) fn server_unhealthy(&self, name: &str) -> Option<String> {
        let v = &self.views[name];
        let d = v.declared?;
        if v.member.is_none() {
            return Some("no etcd member".into());
        }
        if d.roles.runs_etcd() && !is_healthy_member(v.member) {
            return Some("its etcd member is not a healthy voter".into());
        }
        let agent = self.runs_agent(name);
        let node_ready = v.kube.is_some_and(|k| k.ready);
        if agent && self.kube.is_some() && !node_ready {
            return Some("its Node is not Ready".into());
        }
        match self.o.supervisors.get(name) {
            Some(crate::observed::Supervisor::Refused { reason }) => {
                Some(format!("its supervisor port does not answer ({reason})"))
            }
            Some(crate::observed::Supervisor::Unknown { reason }) if !(agent && node_ready) => {
                Some(format!("its supervisor port is unknown ({reason})"))
            }
            _ => None,
        }
    }

    /// Healthy servers a node can join through, best first: the primary, then etcd nodes.
    pub(super) fn healthy_servers(&self, exclude: &str) -> Vec<&'a Node> {
        let mut v: Vec<&Node> = self
            .t
            .server_nodes()
            .filter(|d| d.name != exclude && !self.lost.contains(&d.name))
            .filter(|d| {
                self.server_unhealthy(&d.name).is_none() && !self.joined.contains_key(&d.name)
            })
            .collect();
        v.sort_by_key(|d| (!d.primary, !d.roles.runs_etcd()));
        v
    }

    /// The URL `node` joins through, never `node` itself (issue 19: with `api_endpoint`
    /// naming one server, that server's own `server:` was rewritten to itself): the VIP
    /// when one is declared; else `api_endpoint` unless it names `node` or a declared
    /// server that is not healthy; else the best healthy server other than `node`.
    pub(super) fn join_url(&self, node: &str) -> Option<String> {
        let own = self.views.get(node).and_then(|v| {
            v.address
                .or_else(|| v.declared.map(|d| d.address))
                .map(|a| a.to_string())
        });
        let endpoint = self.t.cluster.api_endpoint.as_deref();
        let endpoint_host = endpoint.and_then(crate::observed::url_host);
        if let Some(vip) = &self.t.cluster.vip {
            let vip_host = vip.address.to_string();
            if endpoint_host == Some(vip_host.as_str()) {
                return endpoint.map(str::to_string);
            }
            return Some(format!("https://{}:6443", fmt_host(vip.address)));
        }
        if let (Some(e), Some(h)) = (endpoint, endpoint_host)
            && own.as_deref() != Some(h)
        {
            let names_server = self
                .t
                .server_nodes()
                .find(|d| d.address.to_string() == h)
                .map(|d| d.name.clone());
            match names_server {
                Some(s) if self.lost.contains(&s) || self.server_unhealthy(&s).is_some() => {}
                _ => return Some(e.to_string()),
            }
        }
        self.healthy_servers(node)
            .first()
            .map(|d| format!("https://{}:6443", fmt_host(d.address)))
    }
}

/// An etcd member as the `before` of a step.
pub(super) fn member_json(m: &EtcdMember) -> serde_json::Value {
    json!({
        "id": format!("{:x}", m.id),
        "name": m.name,
        "peer_urls": m.peer_urls,
        "is_learner": m.is_learner,
        "health": m.health.describe(),
    })
}

/// An address as the host of a URL (IPv6 in brackets).
pub(super) fn fmt_host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}
