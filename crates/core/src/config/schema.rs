//! What blocks and attributes the topology language accepts.
//!
//! The schema drives the generic checks (unknown names with "did you mean", label counts,
//! repeated blocks, required attributes, types); the semantic rules live in `load.rs`.

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
        a("user", Ty::String),
        a("port", Ty::Int(1, 65535)),
        a("private_key_file", Ty::String),
        a("known_hosts_file", Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static ETCD: BlockSchema = BlockSchema {
    ident: "etcd",
    labels: &[],
    repeatable: false,
    attrs: &[
        a("ca_file", Ty::String),
        a("cert_file", Ty::String),
        a("key_file", Ty::String),
        a("endpoints", Ty::StringList),
        a("snapshot_before_apply", Ty::Bool),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static VIP: BlockSchema = BlockSchema {
    ident: "vip",
    labels: &[],
    repeatable: false,
    attrs: &[
        req("address", Ty::String),
        req("interface", Ty::String),
        req("router_id", Ty::Int(1, 255)),
        a("password", Ty::Secret),
        a("manifest_path", Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static HOST: BlockSchema = BlockSchema {
    ident: "host",
    labels: &[],
    repeatable: false,
    attrs: &[
        a("k3s_binary", Ty::String),
        a("config_path", Ty::String),
        a("service_command", Ty::StringList),
        a("uninstall_command", Ty::StringList),
        a("agent_uninstall_command", Ty::StringList),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static CLUSTER: BlockSchema = BlockSchema {
    ident: "cluster",
    labels: &["name"],
    repeatable: false,
    attrs: &[
        a("k3s_version", Ty::String),
        a("token", Ty::Secret),
        a("api_endpoint", Ty::String),
        a("kubeconfig", Ty::String),
        a("kube_context", Ty::String),
        a("data_dir", Ty::String),
        a("install_command", Ty::String),
    ],
    blocks: &[&ETCD, &VIP, &SSH, &HOST],
    any_attrs: false,
};

pub static NODE: BlockSchema = BlockSchema {
    ident: "node",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        req("address", Ty::String),
        req("roles", Ty::StringList),
        a("primary", Ty::Bool),
        a("vip_priority", Ty::Int(1, 254)),
        a("labels", Ty::StringMap),
        a("taints", Ty::StringList),
        a("replace", Ty::Bool),
    ],
    blocks: &[&SSH],
    any_attrs: false,
};

pub static STORAGE: BlockSchema = BlockSchema {
    ident: "storage",
    labels: &["namespace/name"],
    repeatable: true,
    attrs: &[
        req("kind", Ty::String),
        a("on_node_loss", Ty::String),
        a("prefer_nodes", Ty::StringList),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static ADDON: BlockSchema = BlockSchema {
    ident: "addon",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        a("namespace", Ty::String),
        req("replicas", Ty::Int(1, 1000)),
        a("spread", Ty::String),
    ],
    blocks: &[],
    any_attrs: false,
};

pub static VARIABLE: BlockSchema = BlockSchema {
    ident: "variable",
    labels: &["name"],
    repeatable: true,
    attrs: &[
        a("default", Ty::Any),
        a("description", Ty::String),
        a("sensitive", Ty::Bool),
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
        a("path", Ty::String),
        a("endpoints", Ty::StringList),
        a("prefix", Ty::String),
        a("ca_file", Ty::String),
        a("cert_file", Ty::String),
        a("key_file", Ty::String),
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
        &CLUSTER, &NODE, &STORAGE, &ADDON, &VARIABLE, &LOCALS, &BACKEND,
    ],
    any_attrs: false,
};
