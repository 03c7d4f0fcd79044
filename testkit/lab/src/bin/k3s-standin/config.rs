//! k3s's configuration: the config file, the command line, and the settings they give.

use super::*;

pub(super) const KNOWN_KEYS: &[&str] = &[
    "server",
    "cluster-init",
    "token",
    "token-file",
    "agent-token",
    "node-ip",
    "node-name",
    "node-external-ip",
    "advertise-address",
    "data-dir",
    "disable-etcd",
    "disable-apiserver",
    "disable-controller-manager",
    "disable-scheduler",
    "disable-agent",
    "disable",
    "tls-san",
    "node-label",
    "node-taint",
    "write-kubeconfig-mode",
    "write-kubeconfig",
    "cluster-cidr",
    "service-cidr",
    "flannel-backend",
    "etcd-expose-metrics",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "kube-apiserver-arg",
    "kubelet-arg",
    "selinux",
    "config",
    "debug",
    // Issue 16: quorum-loss recovery (reset.rs).
    "cluster-reset",
    "cluster-reset-restore-path",
];

pub(super) fn yaml_str(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn yaml_bool(v: Option<&serde_yaml::Value>) -> bool {
    match v {
        Some(serde_yaml::Value::Bool(b)) => *b,
        Some(serde_yaml::Value::String(s)) => s == "true",
        _ => false,
    }
}

pub(super) fn read_config_file(
    path: Option<&str>,
) -> Result<BTreeMap<String, serde_yaml::Value>, String> {
    let path = path.unwrap_or("/etc/rancher/k3s/config.yaml");
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("reading {path}: {e}")),
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_yaml::from_str(&text).map_err(|e| format!("parsing {path}: {e}"))
}

/// The effective server/agent settings, with k3s's precedence: command-line flags, then the
/// config file, then the environment (`K3S_URL`, `K3S_TOKEN` from the unit's env file).
/// k3s `pkg/configfilearg/parser.go` (`Parse`) inserts config.yaml's keys as `--key=value`
/// arguments right after `server`/`agent`, before the command line's own; urfave/cli v1
/// (`StringFlag.ApplyWithError`) takes a flag's `EnvVar` only as its default value, which
/// any argument then overrides. So `K3S_URL` is the join URL only when neither config.yaml
/// nor the command line sets `server`.
pub(super) struct Settings {
    pub(super) server: Option<String>,
    pub(super) cluster_init: bool,
    pub(super) token: Option<String>,
    pub(super) node_ip: String,
    pub(super) node_name: String,
    pub(super) data_dir: String,
    pub(super) disable_etcd: bool,
    pub(super) disable_apiserver: bool,
    /// `disable-agent`: a server without a kubelet, so without a Node.
    pub(super) disable_agent: bool,
    pub(super) node_labels: Vec<String>,
    /// `--cluster-reset` (issue 16, reset.rs).
    pub(super) cluster_reset: bool,
    /// `--cluster-reset-restore-path`.
    pub(super) cluster_reset_restore_path: Option<String>,
}

pub(super) fn settings(args: &[String], lab: &HostConfig) -> Settings {
    let mut config_path = None;
    let mut flags: BTreeMap<String, serde_yaml::Value> = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(k) = a.strip_prefix("--") else {
            fatal(&format!("unexpected argument {a}"))
        };
        let (k, v) = match k.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (k.to_string(), None),
        };
        if !KNOWN_KEYS.contains(&k.as_str()) {
            fatal(&format!("flag provided but not defined: -{k}"));
        }
        let bool_flag = matches!(
            k.as_str(),
            "cluster-init"
                | "disable-etcd"
                | "disable-apiserver"
                | "disable-agent"
                | "disable-controller-manager"
                | "disable-scheduler"
                | "debug"
                | "etcd-expose-metrics"
                | "selinux"
                | "cluster-reset"
        );
        let v = match v {
            Some(v) => serde_yaml::Value::String(v),
            None if bool_flag => serde_yaml::Value::Bool(true),
            None => {
                i += 1;
                serde_yaml::Value::String(args.get(i).cloned().unwrap_or_default())
            }
        };
        if k == "config" {
            config_path = yaml_str(&v);
        } else {
            flags.insert(k, v);
        }
        i += 1;
    }
    let mut cfg = read_config_file(config_path.as_deref()).unwrap_or_else(|e| fatal(&e));
    for k in cfg.keys() {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            fatal(&format!("flag provided but not defined: -{k}"));
        }
    }
    cfg.extend(flags);
    let s = |k: &str| cfg.get(k).and_then(yaml_str).filter(|v| !v.is_empty());
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut token = s("token").or_else(|| std::env::var("K3S_TOKEN").ok());
    if token.is_none()
        && let Some(f) = s("token-file")
    {
        token = fs::read_to_string(&f).ok().map(|t| t.trim().to_string());
    }
    let node_labels = match cfg.get("node-label") {
        Some(serde_yaml::Value::Sequence(seq)) => seq.iter().filter_map(yaml_str).collect(),
        Some(v) => yaml_str(v).into_iter().collect(),
        None => Vec::new(),
    };
    Settings {
        server: s("server").or_else(|| std::env::var("K3S_URL").ok().filter(|u| !u.is_empty())),
        cluster_init: yaml_bool(cfg.get("cluster-init")),
        token,
        node_ip: s("node-ip").unwrap_or_else(|| lab.node_ip.clone()),
        node_name: s("node-name").unwrap_or(hostname),
        data_dir: s("data-dir").unwrap_or_else(|| "/var/lib/rancher/k3s".into()),
        disable_etcd: yaml_bool(cfg.get("disable-etcd")),
        disable_apiserver: yaml_bool(cfg.get("disable-apiserver")),
        disable_agent: yaml_bool(cfg.get("disable-agent")),
        node_labels,
        cluster_reset: yaml_bool(cfg.get("cluster-reset")),
        cluster_reset_restore_path: s("cluster-reset-restore-path"),
    }
}
