//! Building `node` and `storage` blocks.

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    pub(super) fn build_node(
        &mut self,
        b: &RawBlock,
        ctx: &Context,
        ssh_default: &SshSettings,
    ) -> Option<Node> {
        let v = self.eval_block(b, ctx);
        let name = b.label().to_string();
        let address = self.node_address(b, &v, &name);
        let (roles, roles_ok) = self.node_roles(b, &v, &name);
        let primary = bool_of(&v, attr::PRIMARY).unwrap_or(false);
        if primary && roles_ok && !roles.is_server() {
            self.err(
                b.file,
                v[attr::PRIMARY].attr.key_span.clone(),
                format!("node {name_q} is an agent and cannot be the VIP primary: keepalived runs on servers", name_q = quote(&name)),
            );
        }
        let taints = self.node_taints(b, &v);
        let labels = v
            .get(attr::LABELS)
            .and_then(|x| x.value.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        let k3s_config = self.node_k3s_config(b, &v, &name, &roles);
        self.replace_attribute(b, &v, &name);
        let ssh = self.build_ssh(b.child(&schema::SSH), ctx, ssh_default);
        let k3s_version = str_of(&v, attr::K3S_VERSION);
        if let (Some(ver), Some(val)) = (&k3s_version, v.get(attr::K3S_VERSION))
            && !is_k3s_version(ver)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!(
                    "node {name_q}: `k3s_version` must look like \"v1.28.5+k3s1\", found {ver_q}",
                    name_q = quote(&name),
                    ver_q = quote(ver)
                ),
            );
        }
        Some(Node {
            name,
            address: address?,
            roles: if roles_ok { roles } else { return None },
            primary,
            vip_priority: int_of(&v, attr::VIP_PRIORITY).map(|p| p as u8),
            ssh,
            labels,
            taints,
            k3s_config,
            replace: false,
            k3s_version,
        })
    }

    /// `address`: an IP address a node can be reached at.
    fn node_address(&mut self, b: &RawBlock, v: &Evaluated, name: &str) -> Option<IpAddr> {
        match str_of(v, attr::ADDRESS) {
            Some(s) => match s.parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() => {
                    self.err(
                        b.file,
                        v[attr::ADDRESS].attr.expr_span.clone(),
                        format!(
                            "node {name_q}: {s} is not a usable address",
                            name_q = quote(name)
                        ),
                    );
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        b.file,
                        v[attr::ADDRESS].attr.expr_span.clone(),
                        format!(
                            "node {name_q}: invalid IP address {s_q}",
                            name_q = quote(name),
                            s_q = quote(&s)
                        ),
                    );
                    None
                }
            },
            None => None,
        }
    }

    /// `roles`: known, not empty, not agent and server at once. False when they are not
    /// usable (reported).
    fn node_roles(&mut self, b: &RawBlock, v: &Evaluated, name: &str) -> (Roles, bool) {
        let mut roles = Roles::default();
        let mut roles_ok = true;
        if let Some(list) = list_of(v, attr::ROLES) {
            let a = v[attr::ROLES].attr.clone();
            if list.is_empty() {
                self.err(b.file, a.expr_span.clone(), format!("node {name_q} has no role: give it at least one of \"server\", \"etcd\", \"control-plane\", \"agent\"", name_q = quote(name)));
                roles_ok = false;
            }
            for (i, r) in list.iter().enumerate() {
                let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                match Role::parse(r) {
                    Some(role) => {
                        if !roles.0.insert(role) {
                            self.warn(
                                b.file,
                                span,
                                format!("role {r_q} is listed twice", r_q = quote(r)),
                            );
                        }
                    }
                    None => {
                        roles_ok = false;
                        let mut msg = format!(
                            "unknown role {r_q}; roles are \"server\", \"etcd\", \"control-plane\", \"agent\"",
                            r_q = quote(r)
                        );
                        if let Some(s) = did_you_mean(r, Role::ALL.iter().map(|r| r.as_str())) {
                            msg = format!(
                                "unknown role {r_q}; did you mean {s_q}?",
                                r_q = quote(r),
                                s_q = quote(s)
                            );
                        } else if r == "master" {
                            msg = format!(
                                "unknown role {r_q}; did you mean \"server\"?",
                                r_q = quote(r)
                            );
                        }
                        self.err(b.file, span, msg);
                    }
                }
            }
            if roles.contains(Role::Agent) && roles.is_server() {
                let other = roles
                    .0
                    .iter()
                    .find(|r| **r != Role::Agent)
                    .map(|r| r.as_str())
                    .unwrap_or("server");
                self.err(
                    b.file,
                    a.expr_span.clone(),
                    format!(
                        "node {name_q} cannot be both \"agent\" and {other_q}: an agent runs no k3s server, so no etcd member and no control plane", name_q = quote(name), other_q = quote(other)),
                );
                roles_ok = false;
            }
        } else {
            roles_ok = false;
        }
        (roles, roles_ok)
    }

    /// `taints`, each `KEY[=VALUE]:EFFECT`.
    fn node_taints(&mut self, b: &RawBlock, v: &Evaluated) -> Vec<Taint> {
        let mut taints = Vec::new();
        if let Some(list) = list_of(v, attr::TAINTS) {
            let a = v[attr::TAINTS].attr.clone();
            for (i, t) in list.iter().enumerate() {
                match parse_taint(t) {
                    Ok(t) => taints.push(t),
                    Err(why) => {
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        self.err(
                            b.file,
                            span,
                            format!("invalid taint {t_q}: {why}", t_q = quote(t)),
                        );
                    }
                }
            }
        }
        taints
    }

    /// The retired `replace` attribute: an error when true, a warning when false.
    fn replace_attribute(&mut self, b: &RawBlock, v: &Evaluated, name: &str) {
        // `replace = true` was a persistent attribute: left in the file, it replaced the node
        // again on every apply (issue 13). A replacement is a one-shot command-line request.
        if let Some(r) = bool_of(v, attr::REPLACE) {
            let span = v[attr::REPLACE].attr.key_span.clone();
            let how = format!(
                "remove it and run `k3splan apply -replace=node.{name}` (one-shot: recorded in the saved plan and the apply journal, never repeated)"
            );
            if r {
                self.err(
                    b.file,
                    span,
                    format!("`replace = true` is no longer supported: as an attribute it stays in the file and replaces node \"{name}\" again on every apply; {how}"),
                );
            } else {
                self.warn(
                    b.file,
                    span,
                    format!("`replace` is deprecated and has no effect; {how} when node \"{name}\" must be rebuilt"),
                );
            }
        }
    }

    pub(super) fn build_storage(
        &mut self,
        b: &RawBlock,
        ctx: &Context,
        nodes: &[Node],
    ) -> Option<StorageBinding> {
        let v = self.eval_block(b, ctx);
        let key = b.label();
        let (namespace, name) = match key.split_once('/') {
            Some((ns, n)) if is_dns_label(ns) && is_dns_name(n) && !n.contains('/') => {
                (ns.to_string(), n.to_string())
            }
            _ => {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("storage label must be \"NAMESPACE/NAME\" (a workload's namespace and name), found {key_q}", key_q = quote(key)),
                );
                return None;
            }
        };
        let kind = self.storage_kind(b, &v)?;
        let on_node_loss = self.on_node_loss(b, &v)?;
        if on_node_loss == OnNodeLoss::Rebind && kind == WorkloadKind::Deployment {
            self.err(
                b.file,
                v[attr::ON_NODE_LOSS].attr.expr_span.clone(),
                "on_node_loss = \"rebind\" needs kind = \"StatefulSet\": a Deployment does not recreate a deleted PVC; use \"recreate\" (delete PVC and Deployment, its operator recreates both) or \"keep\"",
            );
        }
        let prefer_nodes = self.prefer_nodes(b, &v, nodes);
        Some(StorageBinding {
            namespace,
            name,
            kind,
            on_node_loss,
            prefer_nodes,
        })
    }

    /// `kind`: "StatefulSet" or "Deployment".
    fn storage_kind(&mut self, b: &RawBlock, v: &Evaluated) -> Option<WorkloadKind> {
        Some(match str_of(v, attr::KIND).as_deref() {
            Some("StatefulSet") => WorkloadKind::StatefulSet,
            Some("Deployment") => WorkloadKind::Deployment,
            Some(other) => {
                let msg = unknown_choice("workload kind", other, &["StatefulSet", "Deployment"]);
                self.err(b.file, v[attr::KIND].attr.expr_span.clone(), msg);
                return None;
            }
            None => return None,
        })
    }

    /// `on_node_loss`: "rebind", "recreate" or "keep" (the default).
    fn on_node_loss(&mut self, b: &RawBlock, v: &Evaluated) -> Option<OnNodeLoss> {
        Some(match str_of(v, attr::ON_NODE_LOSS).as_deref() {
            None => OnNodeLoss::Keep,
            Some("rebind") => OnNodeLoss::Rebind,
            Some("recreate") => OnNodeLoss::Recreate,
            Some("keep") => OnNodeLoss::Keep,
            Some(other) => {
                let msg = unknown_choice(
                    "on_node_loss policy",
                    other,
                    &["rebind", "recreate", "keep"],
                );
                self.err(b.file, v[attr::ON_NODE_LOSS].attr.expr_span.clone(), msg);
                return None;
            }
        })
    }

    /// `prefer_nodes`: each a declared node (reported otherwise, but kept).
    fn prefer_nodes(&mut self, b: &RawBlock, v: &Evaluated, nodes: &[Node]) -> Vec<String> {
        let key = b.label();
        let mut prefer_nodes = Vec::new();
        if let Some(list) = list_of(v, attr::PREFER_NODES) {
            let a = v[attr::PREFER_NODES].attr.clone();
            for (i, n) in list.iter().enumerate() {
                match nodes.iter().find(|x| &x.name == n) {
                    Some(node) if node.roles.is_agent() || node.roles.is_server() => {}
                    _ => {
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        let mut msg = format!(
                            "storage {key_q} prefers node {n_q}, which is not declared",
                            key_q = quote(key),
                            n_q = quote(n)
                        );
                        if let Some(s) = did_you_mean(n, nodes.iter().map(|x| x.name.as_str())) {
                            msg.push_str(&format!("; did you mean {s_q}?", s_q = quote(s)));
                        }
                        self.err(b.file, span, msg);
                    }
                }
                prefer_nodes.push(n.clone());
            }
        }
        prefer_nodes
    }
}
