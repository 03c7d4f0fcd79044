//! What blocks and attributes the topology language accepts.
//!
//! The schema drives the generic checks (unknown names with "did you mean", label counts,
//! repeated blocks, required attributes, types); the semantic rules live in `load/`. It is the
//! single source of the attribute names ([`attr`]) and block names (each [`BlockSchema`]).

/// The attribute names of the language: the schema below and the loader use these constants,
/// so a renamed attribute cannot diverge between the two.
pub mod attr {
    pub const USER: &str = "user";
    pub const PORT: &str = "port";
    pub const PRIVATE_KEY_FILE: &str = "private_key_file";
    pub const KNOWN_HOSTS_FILE: &str = "known_hosts_file";
    pub const CA_FILE: &str = "ca_file";
    pub const CERT_FILE: &str = "cert_file";
    pub const KEY_FILE: &str = "key_file";
    pub const ENDPOINTS: &str = "endpoints";
    pub const SNAPSHOT_BEFORE_APPLY: &str = "snapshot_before_apply";
    pub const ADDRESS: &str = "address";
    pub const INTERFACE: &str = "interface";
    pub const ROUTER_ID: &str = "router_id";
    pub const PASSWORD: &str = "password";
    pub const MANIFEST_PATH: &str = "manifest_path";
    pub const K3S_BINARY: &str = "k3s_binary";
    pub const CONFIG_PATH: &str = "config_path";
    pub const SERVICE_COMMAND: &str = "service_command";
    pub const UNINSTALL_COMMAND: &str = "uninstall_command";
    pub const AGENT_UNINSTALL_COMMAND: &str = "agent_uninstall_command";
    pub const K3S_VERSION: &str = "k3s_version";
    pub const TOKEN: &str = "token";
    pub const API_ENDPOINT: &str = "api_endpoint";
    pub const KUBECONFIG: &str = "kubeconfig";
    pub const KUBE_CONTEXT: &str = "kube_context";
    pub const DATA_DIR: &str = "data_dir";
    pub const INSTALL_COMMAND: &str = "install_command";
    pub const ROLES: &str = "roles";
    pub const PRIMARY: &str = "primary";
    pub const VIP_PRIORITY: &str = "vip_priority";
    pub const LABELS: &str = "labels";
    pub const TAINTS: &str = "taints";
    pub const K3S_CONFIG: &str = "k3s_config";
    pub const REPLACE: &str = "replace";
    pub const KIND: &str = "kind";
    pub const ON_NODE_LOSS: &str = "on_node_loss";
    pub const PREFER_NODES: &str = "prefer_nodes";
    pub const NAMESPACE: &str = "namespace";
    pub const REPLICAS: &str = "replicas";
    pub const SPREAD: &str = "spread";
    pub const DEFAULT: &str = "default";
    pub const DESCRIPTION: &str = "description";
    pub const SENSITIVE: &str = "sensitive";
    pub const PATH: &str = "path";
    pub const PREFIX: &str = "prefix";
    pub const LEARNER_PROMOTED: &str = "learner_promoted";
    pub const NODE_READY: &str = "node_ready";
    pub const POD_RESCHEDULED: &str = "pod_rescheduled";
    pub const DRAIN: &str = "drain";
    pub const VERIFY: &str = "verify";
    pub const MAX_UNAVAILABLE: &str = "max_unavailable";
    // `check { … }` (issue 17).
    pub const CERT_EXPIRY_WARN: &str = "cert_expiry_warn";
    pub const CERT_EXPIRY_CRITICAL: &str = "cert_expiry_critical";
    pub const SNAPSHOT_AGE_WARN: &str = "snapshot_age_warn";
    pub const SNAPSHOT_AGE_CRITICAL: &str = "snapshot_age_critical";
    pub const LEARNER_MAX_AGE: &str = "learner_max_age";
    pub const ETCD_QUOTA: &str = "etcd_quota";
    pub const DB_SIZE_WARN_PERCENT: &str = "db_size_warn_percent";
    pub const DB_SIZE_CRITICAL_PERCENT: &str = "db_size_critical_percent";
}

/// Expected type of an attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Bool,
    /// An integer in an inclusive range.
    Int(i64, i64),
    StringList,
    StringMap,
    /// A secret: `env("…")`, `file("…")`, or (warned) a literal string.
    Secret,
    /// Anything (variables, locals).
    Any,
}

impl Ty {
    pub fn describe(self) -> String {
        match self {
            Ty::String => "a string".into(),
            Ty::Bool => "a bool".into(),
            Ty::Int(lo, hi) => format!("a whole number from {lo} to {hi}"),
            Ty::StringList => "a list of strings".into(),
            Ty::StringMap => "a map of strings".into(),
            Ty::Secret => "a string (from env() or file())".into(),
            Ty::Any => "any value".into(),
        }
    }
}

#[derive(Debug)]
pub struct AttrSchema {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

#[derive(Debug)]
pub struct BlockSchema {
    pub ident: &'static str,
    /// Names of the labels, e.g. `["name"]`.
    pub labels: &'static [&'static str],
    /// May the block appear more than once in its parent?
    pub repeatable: bool,
    pub attrs: &'static [AttrSchema],
    pub blocks: &'static [&'static BlockSchema],
    /// Accept any attribute (locals).
    pub any_attrs: bool,
}

impl BlockSchema {
    pub fn attr(&self, name: &str) -> Option<&AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }
    pub fn block(&self, ident: &str) -> Option<&'static BlockSchema> {
        self.blocks.iter().copied().find(|b| b.ident == ident)
    }
}

const fn a(name: &'static str, ty: Ty) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        required: true,
    }
}

pub static SSH: BlockSchema = BlockSchema {
    ident: "ssh",
    labels: &[],
    repeatable: false,
    attrs: &[
        a(attr::USER, Ty::String),
        a(attr::PORT, Ty::Int(1, 65535)),
        a(attr::PRIVATE_KEY_FILE, Ty::String),
        a(attr::KNOWN_HOSTS_FILE, Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static ETCD: BlockSchema = BlockSchema {
    ident: "etcd",
    labels: &[],
    repeatable: false,
    attrs: &[
        a(attr::CA_FILE, Ty::String),
        a(attr::CERT_FILE, Ty::String),
        a(attr::KEY_FILE, Ty::String),
        a(attr::ENDPOINTS, Ty::StringList),
        a(attr::SNAPSHOT_BEFORE_APPLY, Ty::Bool),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static VIP: BlockSchema = BlockSchema {
    ident: "vip",
    labels: &[],
    repeatable: false,
    attrs: &[
        req(attr::ADDRESS, Ty::String),
        req(attr::INTERFACE, Ty::String),
        req(attr::ROUTER_ID, Ty::Int(1, 255)),
        a(attr::PASSWORD, Ty::Secret),
        a(attr::MANIFEST_PATH, Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static HOST: BlockSchema = BlockSchema {
    ident: "host",
    labels: &[],
    repeatable: false,
    attrs: &[
        a(attr::K3S_BINARY, Ty::String),
        a(attr::CONFIG_PATH, Ty::String),
        a(attr::SERVICE_COMMAND, Ty::StringList),
        a(attr::UNINSTALL_COMMAND, Ty::StringList),
        a(attr::AGENT_UNINSTALL_COMMAND, Ty::StringList),
    ],
    blocks: &[],
    any_attrs: false,
};

/// `timeouts { … }`: how long apply waits, as duration strings (`"3m"`, `"90s"`, `"1h"`).
pub static TIMEOUTS: BlockSchema = BlockSchema {
    ident: "timeouts",
    labels: &[],
    repeatable: false,
    attrs: &[
        a(attr::LEARNER_PROMOTED, Ty::String),
        a(attr::NODE_READY, Ty::String),
        a(attr::POD_RESCHEDULED, Ty::String),
        a(attr::DRAIN, Ty::String),
        a(attr::VERIFY, Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

/// `upgrade { max_unavailable = N | "N%" }`: how a k3s version change rolls out (issue 15).
pub static UPGRADE: BlockSchema = BlockSchema {
    ident: "upgrade",
    labels: &[],
    repeatable: false,
    attrs: &[a(attr::MAX_UNAVAILABLE, Ty::Any)],
    blocks: &[],
    any_attrs: false,
};

pub static CLUSTER: BlockSchema = BlockSchema {
    ident: "cluster",
    labels: &["name"],
    repeatable: false,
    attrs: &[
        a(attr::K3S_VERSION, Ty::String),
        a(attr::TOKEN, Ty::Secret),
        a(attr::API_ENDPOINT, Ty::String),
        a(attr::KUBECONFIG, Ty::String),
        a(attr::KUBE_CONTEXT, Ty::String),
        a(attr::DATA_DIR, Ty::String),
        a(attr::INSTALL_COMMAND, Ty::String),
    ],
    blocks: &[&ETCD, &VIP, &SSH, &HOST, &TIMEOUTS, &UPGRADE],
    any_attrs: false,
};

pub static NODE: BlockSchema = BlockSchema {
    ident: "node",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        req(attr::ADDRESS, Ty::String),
        req(attr::ROLES, Ty::StringList),
        a(attr::PRIMARY, Ty::Bool),
        a(attr::VIP_PRIORITY, Ty::Int(1, 254)),
        a(attr::LABELS, Ty::StringMap),
        a(attr::TAINTS, Ty::StringList),
        a(attr::K3S_CONFIG, Ty::Any),
        a(attr::REPLACE, Ty::Bool),
        a(attr::K3S_VERSION, Ty::String),
    ],
    blocks: &[&SSH],
    any_attrs: false,
};

pub static STORAGE: BlockSchema = BlockSchema {
    ident: "storage",
    labels: &["namespace/name"],
    repeatable: true,
    attrs: &[
        req(attr::KIND, Ty::String),
        a(attr::ON_NODE_LOSS, Ty::String),
        a(attr::PREFER_NODES, Ty::StringList),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static ADDON: BlockSchema = BlockSchema {
    ident: "addon",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        a(attr::NAMESPACE, Ty::String),
        req(attr::REPLICAS, Ty::Int(1, 1000)),
        a(attr::SPREAD, Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static VARIABLE: BlockSchema = BlockSchema {
    ident: "variable",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        a(attr::DEFAULT, Ty::Any),
        a(attr::DESCRIPTION, Ty::String),
        a(attr::SENSITIVE, Ty::Bool),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static LOCALS: BlockSchema = BlockSchema {
    ident: "locals",
    labels: &[],
    repeatable: true,
    attrs: &[],
    blocks: &[],
    any_attrs: true,
};

pub static BACKEND: BlockSchema = BlockSchema {
    ident: "backend",
    labels: &["kind"],
    repeatable: false,
    attrs: &[
        a(attr::PATH, Ty::String),
        a(attr::ENDPOINTS, Ty::StringList),
        a(attr::PREFIX, Ty::String),
        a(attr::CA_FILE, Ty::String),
        a(attr::CERT_FILE, Ty::String),
        a(attr::KEY_FILE, Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

/// `check { … }`: the thresholds of `k3splan check` (docs/check.md).
pub static CHECK: BlockSchema = BlockSchema {
    ident: "check",
    labels: &[],
    repeatable: false,
    attrs: &[
        a(attr::CERT_EXPIRY_WARN, Ty::String),
        a(attr::CERT_EXPIRY_CRITICAL, Ty::String),
        a(attr::SNAPSHOT_AGE_WARN, Ty::String),
        a(attr::SNAPSHOT_AGE_CRITICAL, Ty::String),
        a(attr::LEARNER_MAX_AGE, Ty::String),
        a(attr::ETCD_QUOTA, Ty::String),
        a(attr::DB_SIZE_WARN_PERCENT, Ty::Int(1, 100)),
        a(attr::DB_SIZE_CRITICAL_PERCENT, Ty::Int(1, 100)),
    ],
    blocks: &[],
    any_attrs: false,
};

/// The top level of a topology file.
pub static ROOT: BlockSchema = BlockSchema {
    ident: "(top level)",
    labels: &[],
    repeatable: false,
    attrs: &[],
    blocks: &[
        &CLUSTER, &NODE, &STORAGE, &ADDON, &VARIABLE, &LOCALS, &BACKEND, &CHECK,
    ],
    any_attrs: false,
};
