//! What `k3splan check` observes beyond the plan's [`Observed`](crate::observed::Observed):
//! plain data the engine fills (certificates parsed, snapshot files listed, DB sizes, node
//! annotations, VIP holders). Every source may be unknown with the reason; an unknown source
//! gives an `unknown` finding, never an `ok`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::observed::Fact;

/// The extra facts of one check run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFacts {
    /// When the facts were read (unix seconds): ages and deadlines are relative to it.
    pub now: i64,
    /// Per server node: the host-side facts read over SSH.
    pub servers: BTreeMap<String, Fact<ServerFacts>>,
    /// Per etcd member ID: the backend DB size in bytes its `status` reported (members that
    /// did not answer are absent).
    pub db_sizes: BTreeMap<u64, u64>,
    /// The Kubernetes side of the check.
    pub kube: Fact<KubeCheckFacts>,
}

/// What SSH saw on one server for the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFacts {
    /// The certificates under the k3s TLS dirs (`<data-dir>/server/tls`, `<data-dir>/agent`).
    pub certs: Vec<CertFact>,
    /// The files in the snapshot dir (`<data-dir>/server/db/snapshots`).
    pub snapshots: Vec<SnapshotFact>,
    /// The host holds the VIP address on an interface (`None`: no VIP declared).
    pub holds_vip: Option<bool>,
    /// Modification time (unix seconds) of `<data-dir>/server/db/etcd/member`: when this
    /// host's etcd member joined (what a learner's age is read from).
    pub member_dir_mtime: Option<i64>,
}

/// One certificate file, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFact {
    /// Path on the host.
    pub path: String,
    /// Subject common name, if any.
    pub subject: Option<String>,
    /// `notAfter` (unix seconds); `None` when the file did not parse as a certificate.
    pub not_after: Option<i64>,
    /// Why it did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFact {
    pub path: String,
    /// Modification time (unix seconds).
    pub mtime: i64,
    pub size: u64,
    /// Its integrity check (the sha256 etcd appends to a snapshot matches the rest, as
    /// `etcdutl snapshot status` verifies): `Some(true)` readable, `Some(false)` corrupt,
    /// `None` not verified (compressed, or the check could not run).
    pub intact: Option<bool>,
}

/// What the Kubernetes API said for the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeCheckFacts {
    /// Per Node: its annotations and labels whose keys matter to the check (the k3s remove
    /// annotation, Rancher's management labels).
    pub node_marks: BTreeMap<String, BTreeMap<String, String>>,
    /// `namespace/name` of system-upgrade-controller `Plan` objects
    /// (`plans.upgrade.cattle.io`); empty when the kind does not exist.
    pub suc_plans: Vec<String>,
}

/// The annotation k3s's etcd member controller acts on (k3s `pkg/etcd/etcd.go`,
/// `removalAnnotation`): set on a Node, k3s removes its member and then the annotation.
pub const REMOVE_ANNOTATION: &str = "etcd.k3s.cattle.io/remove";
/// k3s records the member it removed (`removedNodeNameAnnotation`).
pub const REMOVED_NODE_NAME_ANNOTATION: &str = "etcd.k3s.cattle.io/removed-node-name";

/// Whether a label or annotation key shows that Rancher manages the node.
pub fn is_rancher_mark(key: &str) -> bool {
    key.starts_with("cattle.io/")
        || key.starts_with("management.cattle.io/")
        || key.starts_with("rke.cattle.io/")
}
