//! `k3s_config = { … }` of a `node` block: extra keys for the k3s config.yaml k3splan
//! writes. Each key must be a k3s flag (the lists below) that k3splan does not write
//! itself; values are bools, numbers, strings or lists of strings.

use super::*;
use crate::config::schema::attr;

/// The flags of `k3s server`, from k3s-io/k3s `pkg/cli/cmds/server.go` (`ServerFlags`,
/// with the shared flags it lists: `NodeNameFlag`, `NodeIPFlag`, … defined in
/// `pkg/cli/cmds/agent.go`, and the log flags of `pkg/cli/cmds/log.go`). Hidden and
/// deprecated flags are included: k3s accepts them in config.yaml.
pub(super) const K3S_SERVER_KEYS: &[&str] = &[
    "config",
    "debug",
    "v",
    "vmodule",
    "log",
    "alsologtostderr",
    "bind-address",
    "https-listen-port",
    "advertise-address",
    "advertise-port",
    "tls-san",
    "tls-san-security",
    "data-dir",
    "cluster-cidr",
    "service-cidr",
    "service-node-port-range",
    "cluster-dns",
    "cluster-domain",
    "flannel-backend",
    "flannel-ipv6-masq",
    "flannel-external-ip",
    "egress-selector-mode",
    "servicelb-namespace",
    "write-kubeconfig",
    "write-kubeconfig-mode",
    "write-kubeconfig-group",
    "helm-job-image",
    "token",
    "token-file",
    "agent-token",
    "agent-token-file",
    "server",
    "cluster-init",
    "cluster-reset",
    "cluster-reset-restore-path",
    "kube-apiserver-arg",
    "etcd-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "kube-cloud-controller-manager-arg",
    "datastore-endpoint",
    "datastore-cafile",
    "datastore-certfile",
    "datastore-keyfile",
    "etcd-expose-metrics",
    "etcd-disable-snapshots",
    "etcd-snapshot-name",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "etcd-snapshot-compress",
    "etcd-s3",
    "etcd-s3-endpoint",
    "etcd-s3-endpoint-ca",
    "etcd-s3-skip-ssl-verify",
    "etcd-s3-access-key",
    "etcd-s3-secret-key",
    "etcd-s3-bucket",
    "etcd-s3-region",
    "etcd-s3-folder",
    "etcd-s3-insecure",
    "etcd-s3-timeout",
    "default-local-storage-path",
    "disable",
    "disable-scheduler",
    "disable-cloud-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-helm-controller",
    "disable-apiserver",
    "disable-controller-manager",
    "disable-etcd",
    "embedded-registry",
    "node-name",
    "with-node-id",
    "node-label",
    "node-taint",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "docker",
    "container-runtime-endpoint",
    "default-runtime",
    "image-service-endpoint",
    "disable-default-registry-endpoint",
    "pause-image",
    "snapshotter",
    "private-registry",
    "system-default-registry",
    "airgap-extra-registry",
    "node-ip",
    "node-external-ip",
    "resolv-conf",
    "flannel-iface",
    "flannel-conf",
    "flannel-cni-conf",
    "vpn-auth",
    "vpn-auth-file",
    "kubelet-arg",
    "kube-proxy-arg",
    "protect-kernel-defaults",
    "secrets-encryption",
    "enable-pprof",
    "rootless",
    "prefer-bundled-bin",
    "selinux",
    "lb-server-port",
    "disable-agent",
    "kube-controller-arg",
    "kube-cloud-controller-arg",
];

/// The flags of `k3s agent`, from k3s-io/k3s `pkg/cli/cmds/agent.go` (`NewAgentCommand`).
pub(super) const K3S_AGENT_KEYS: &[&str] = &[
    "config",
    "debug",
    "v",
    "vmodule",
    "log",
    "alsologtostderr",
    "token",
    "token-file",
    "server",
    "data-dir",
    "node-name",
    "with-node-id",
    "node-label",
    "node-taint",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "selinux",
    "lb-server-port",
    "protect-kernel-defaults",
    "container-runtime-endpoint",
    "pause-image",
    "snapshotter",
    "private-registry",
    "airgap-extra-registry",
    "node-ip",
    "node-external-ip",
    "resolv-conf",
    "flannel-iface",
    "flannel-conf",
    "flannel-cni-conf",
    "kubelet-arg",
    "kube-proxy-arg",
    "rootless",
    "prefer-bundled-bin",
    "disable-selinux",
    "docker",
    "no-flannel",
    "cluster-secret",
    "vpn-auth",
    "vpn-auth-file",
];

/// Keys k3splan writes itself (`plan/files/mod.rs`, `config_yaml_for`), with the
/// topology attribute that sets each one.
pub(super) const OWNED_KEYS: &[(&str, &str)] = &[
    (
        "server",
        "the join URL k3splan chooses (cluster.api_endpoint, the VIP or a healthy server)",
    ),
    (
        "cluster-init",
        "k3splan itself (never written: a joining server never uses cluster-init)",
    ),
    (
        "cluster-reset",
        "k3splan itself (a cluster reset is not a config setting)",
    ),
    ("token", "cluster.token"),
    ("token-file", "cluster.token"),
    ("node-name", "the node block's label"),
    ("node-ip", "node.address"),
    ("data-dir", "cluster.data_dir"),
    ("disable-etcd", "node.roles"),
    ("disable-apiserver", "node.roles"),
    ("disable-controller-manager", "node.roles"),
    ("disable-scheduler", "node.roles"),
    ("tls-san", "cluster.vip and cluster.api_endpoint"),
    ("node-label", "node.labels"),
    ("node-taint", "node.taints"),
];

/// The span of key `key` in an object expression (the whole expression otherwise).
fn key_span(expr: &hcl_edit::expr::Expression, key: &str) -> Option<Range<usize>> {
    let hcl_edit::expr::Expression::Object(obj) = expr else {
        return None;
    };
    obj.iter().find_map(|(k, _)| {
        let name = match k {
            hcl_edit::expr::ObjectKey::Ident(i) => i.as_str().to_string(),
            hcl_edit::expr::ObjectKey::Expression(hcl_edit::expr::Expression::String(s)) => {
                s.as_str().to_string()
            }
            _ => return None,
        };
        (name == key).then(|| k.span()).flatten()
    })
}

impl Loader<'_> {
    /// `k3s_config`: a map of k3s flags to values, checked against k3s's flags and the
    /// keys k3splan owns.
    pub(super) fn node_k3s_config(
        &mut self,
        b: &RawBlock,
        v: &Evaluated,
        name: &str,
        roles: &Roles,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        let Some(val) = v.get(attr::K3S_CONFIG) else {
            return out;
        };
        let a = val.attr.clone();
        let Value::Object(m) = &val.value else {
            self.err(
                b.file,
                a.expr_span.clone(),
                format!(
                    "`k3s_config` must be a map of k3s config keys to values, found {}",
                    value_kind(&val.value)
                ),
            );
            return out;
        };
        let agent = roles.is_agent();
        let known = if agent {
            K3S_AGENT_KEYS
        } else {
            K3S_SERVER_KEYS
        };
        for (k, x) in m {
            let span = key_span(&a.expr, k).unwrap_or(a.expr_span.clone());
            if let Some((_, owner)) = OWNED_KEYS.iter().find(|(o, _)| o == k) {
                self.err(
                    b.file,
                    span,
                    format!(
                        "node {name_q}: k3s_config cannot set {k_c}: k3splan writes it from {owner}",
                        name_q = quote(name),
                        k_c = code(k)
                    ),
                );
                continue;
            }
            if !known.contains(&k.as_str()) {
                let kind = if agent { "k3s agent" } else { "k3s server" };
                let mut msg = format!(
                    "node {name_q}: {k_c} is not a {kind} flag (k3s would exit with \"flag provided but not defined: -{k}\")",
                    name_q = quote(name),
                    k_c = code(k)
                );
                if let Some(s) = did_you_mean(k, known.iter().copied()) {
                    msg.push_str(&format!("; did you mean {}?", code(s)));
                }
                self.err(b.file, span, msg);
                continue;
            }
            let json = match x {
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::String(s) => serde_json::Value::String(s.clone()),
                Value::Number(n) => serde_json::Value::String(n.to_string()),
                Value::Array(items) if items.iter().all(|i| matches!(i, Value::String(_))) => {
                    serde_json::Value::Array(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(|s| serde_json::Value::String(s.into())))
                            .collect(),
                    )
                }
                other => {
                    self.err(
                        b.file,
                        span,
                        format!(
                            "node {name_q}: k3s_config {k_c} must be a bool, a number, a string or a list of strings, found {}",
                            value_kind(other),
                            name_q = quote(name),
                            k_c = code(k)
                        ),
                    );
                    continue;
                }
            };
            out.insert(k.clone(), json);
        }
        out
    }
}
