//! The resource types the API serves, API errors, and which controllers run.

use super::*;

/// A resource type served by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name in URLs.
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// `apiVersion` as written in objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

macro_rules! rt {
    ($g:expr, $v:expr, $p:expr, $k:expr, $n:expr) => {
        ResourceType {
            group: $g,
            version: $v,
            plural: $p,
            kind: $k,
            namespaced: $n,
        }
    };
}

/// Every type the server knows.
pub const TYPES: &[ResourceType] = &[
    rt!("", "v1", "namespaces", "Namespace", false),
    rt!("", "v1", "nodes", "Node", false),
    rt!("", "v1", "pods", "Pod", true),
    rt!(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true
    ),
    rt!("", "v1", "persistentvolumes", "PersistentVolume", false),
    rt!("", "v1", "services", "Service", true),
    rt!("", "v1", "configmaps", "ConfigMap", true),
    rt!("apps", "v1", "statefulsets", "StatefulSet", true),
    rt!("apps", "v1", "deployments", "Deployment", true),
    rt!("apps", "v1", "replicasets", "ReplicaSet", true),
    rt!("apps", "v1", "daemonsets", "DaemonSet", true),
    rt!("batch", "v1", "jobs", "Job", true),
    rt!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true
    ),
    rt!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false
    ),
    rt!("helm.cattle.io", "v1", "helmcharts", "HelmChart", true),
    rt!(
        "helm.cattle.io",
        "v1",
        "helmchartconfigs",
        "HelmChartConfig",
        true
    ),
    rt!(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false
    ),
    // Served only once its CRD exists (store/crd.rs).
    rt!("upgrade.cattle.io", "v1", "plans", "Plan", true),
];

/// Index of a type in [`TYPES`].
pub type Ty = usize;

/// Finds a type by group, version and plural.
pub fn type_by_path(group: &str, version: &str, plural: &str) -> Option<Ty> {
    TYPES
        .iter()
        .position(|t| t.group == group && t.version == version && t.plural == plural)
}

/// Finds a type by `apiVersion` and `kind`.
pub fn type_by_kind(api_version: &str, kind: &str) -> Option<Ty> {
    TYPES
        .iter()
        .position(|t| t.api_version() == api_version && t.kind == kind)
}

/// Finds a type by its kind alone.
pub fn ty(kind: &str) -> Ty {
    TYPES
        .iter()
        .position(|t| t.kind == kind)
        .expect("known kind")
}

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` field (`NotFound`, `AlreadyExists`, `Conflict`, `TooManyRequests`, ...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Optional `details.causes`.
    pub causes: Vec<(String, String)>,
}

impl ApiError {
    pub(super) fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            causes: vec![],
        }
    }
    /// 404 for `kind`/`name`.
    pub fn not_found(t: &ResourceType, name: &str) -> Self {
        let g = if t.group.is_empty() {
            String::new()
        } else {
            format!(".{}", t.group)
        };
        Self::new(
            404,
            "NotFound",
            format!("{}{g} \"{name}\" not found", t.plural),
        )
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// The `Status` object.
    pub fn status(&self) -> Value {
        let causes: Vec<Value> = self
            .causes
            .iter()
            .map(|(r, m)| json!({"reason": r, "message": m}))
            .collect();
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code,
               "details": {"causes": causes}})
    }
}

/// Optional controller behaviours, off by default except the ones that are core API semantics
/// of every real cluster (finalizers, garbage collection and pod GC are always on).
#[derive(Debug, Clone, Default)]
pub struct Controllers {
    /// StatefulSet controller: recreates missing pods `NAME-ORDINAL` and their PVCs from
    /// `volumeClaimTemplates`, and keeps `status.replicas/readyReplicas` up to date.
    pub statefulset: bool,
    /// Deployment + ReplicaSet controllers: one ReplicaSet per Deployment, pods per replicas.
    pub deployment: bool,
    /// Scheduler + local-path provisioner: binds pending pods to a Ready, schedulable node
    /// (the node of their bound local PVs if any, else the least loaded), marks them Running,
    /// and provisions a local-path PV on that node for each Pending PVC they mount.
    pub scheduler: bool,
    /// An "operator" that recreates a Deployment carrying this label (`key=value`) after it is
    /// deleted, together with the PVCs its pod template mounts (as seed 004's onecloud-operator).
    pub operator_label: Option<(String, String)>,
}

impl Controllers {
    /// All controllers on, with the seed 004 operator label `app.kubernetes.io/managed-by=onecloud-operator`.
    pub fn all() -> Self {
        Self {
            statefulset: true,
            deployment: true,
            scheduler: true,
            operator_label: Some((
                "app.kubernetes.io/managed-by".into(),
                "onecloud-operator".into(),
            )),
        }
    }
}
