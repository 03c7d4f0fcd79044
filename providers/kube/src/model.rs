//! The observation: plain, slim types (no `k8s-openapi` objects are kept).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Outcome of an idempotent action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActOutcome {
    /// The cluster was changed.
    Changed,
    /// Nothing to do: the desired state already held.
    AlreadyDone,
}

/// What to observe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserveRequest {
    /// Add-ons to report (see [`AddonRef::k3s_defaults`]).
    pub addons: Vec<AddonRef>,
    /// Nodes whose pods matter (e.g. the nodes being replaced). Used by [`PodScope::NodesOfInterest`].
    pub nodes_of_interest: Vec<String>,
    /// Which pods to read.
    pub pods: PodScope,
    /// Namespaces whose pods are read with [`PodScope::Namespaces`].
    pub namespaces: Vec<String>,
    /// Workloads whose pods are read with [`PodScope::Workloads`].
    pub workloads: Vec<WorkloadPods>,
}

/// A workload whose pods [`PodScope::Workloads`] reads: a StatefulSet or a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadPods {
    /// Namespace.
    pub namespace: String,
    /// Workload name.
    pub name: String,
    /// [`WorkloadKind::StatefulSet`] or [`WorkloadKind::Deployment`]; any other kind reads
    /// the whole namespace.
    pub kind: WorkloadKind,
}

/// Which pods [`crate::KubeProvider::observe`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PodScope {
    /// Every pod of the cluster (one list).
    #[default]
    All,
    /// Only pods of `nodes_of_interest` (one `spec.nodeName` field-selector list per node),
    /// Pending pods (`spec.nodeName=`: unscheduled pods waiting for a lost node's volume) and the
    /// pods of the add-ons. PVC `used_by` is then only known for those pods.
    NodesOfInterest,
    /// Only the pods of `namespaces` (one list per namespace): the namespaces of the
    /// workloads whose volumes k3splan manages. On a large cluster this is the difference
    /// between reading 30,000 pods and a few hundred.
    Namespaces,
    /// Only the pods of `workloads`: each workload is read (one GET) and its pods listed
    /// with its own label selector (`spec.selector`: `matchLabels` and `matchExpressions`),
    /// as its controller selects them. An absent workload has no pods; a workload with an
    /// empty selector (which the API server rejects for apps/v1, so never in practice) reads
    /// its namespace's pods. A namespace of 5,000 pods holding a 3-replica StatefulSet is
    /// read as 3 pods.
    Workloads,
}

/// An add-on to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonRef {
    /// Deployment name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

impl AddonRef {
    /// `kube-system/NAME`.
    pub fn kube_system(name: &str) -> Self {
        Self {
            name: name.into(),
            namespace: "kube-system".into(),
        }
    }
    /// CoreDNS, metrics-server and local-path-provisioner in kube-system (k3s's packaged add-ons).
    pub fn k3s_defaults() -> Vec<Self> {
        ["coredns", "metrics-server", "local-path-provisioner"]
            .into_iter()
            .map(Self::kube_system)
            .collect()
    }
}

/// Everything observed, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterObservation {
    /// API server URL.
    pub endpoint: String,
    /// Nodes, by name.
    pub nodes: Vec<NodeInfo>,
    /// Pods read (all, or those of the requested scope), namespace/name order.
    pub pods: Vec<PodInfo>,
    /// All PVCs.
    pub pvcs: Vec<PvcInfo>,
    /// All PVs.
    pub pvs: Vec<PvInfo>,
    /// The requested add-ons, in request order.
    pub addons: Vec<AddonStatus>,
    /// Whether `pods` covers every pod.
    pub all_pods: bool,
}

/// Ready condition of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Readiness {
    /// `Ready=True`.
    Ready,
    /// `Ready=False` (kubelet reports a problem).
    NotReady,
    /// `Ready=Unknown` or no condition (kubelet stopped posting status: host likely gone).
    Unknown,
}

/// A taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Option<String>,
    /// Effect.
    pub effect: String,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `InternalIP` address.
    pub internal_ip: Option<String>,
    /// Roles from `node-role.kubernetes.io/ROLE` labels (`control-plane`, `etcd`, `master`...).
    pub roles: Vec<String>,
    /// Ready condition.
    pub ready: Readiness,
    /// `lastTransitionTime` of the Ready condition (RFC 3339).
    pub ready_since: Option<String>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Kubelet version (`v1.28.5+k3s1`).
    pub kubelet_version: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

impl NodeInfo {
    /// Ready and not cordoned.
    pub fn schedulable(&self) -> bool {
        self.ready == Readiness::Ready && !self.unschedulable
    }
}

/// Kind of a workload owning pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment (resolved through its ReplicaSet).
    Deployment,
    /// A ReplicaSet without a Deployment.
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job.
    Job,
    /// A mirror (static) pod, owned by its Node.
    Node,
    /// Anything else (kind as written in `ownerReferences`).
    Other(String),
}

/// The workload owning a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRef {
    /// Kind.
    pub kind: WorkloadKind,
    /// Namespace ("" for a Node).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `spec.nodeName` (None when unscheduled).
    pub node: Option<String>,
    /// `status.phase`.
    pub phase: String,
    /// Ready condition is True.
    pub ready: bool,
    /// Has a `deletionTimestamp`.
    pub terminating: bool,
    /// Mirror pod of a static manifest (`kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// Owning workload, resolved through ReplicaSets to Deployments.
    pub owner: Option<WorkloadRef>,
    /// PVC names mounted (same namespace).
    pub pvcs: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A PVC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvcInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (stable identity: a recreated PVC has a new one).
    pub uid: String,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Bound PV name.
    pub volume: Option<String>,
    /// `status.phase` (`Bound`, `Pending`, `Lost`).
    pub phase: String,
    /// `status.capacity.storage`, else the request.
    pub capacity: Option<String>,
    /// Node of a local volume: the PV's `nodeAffinity` on `kubernetes.io/hostname`, else the
    /// `volume.kubernetes.io/selected-node` annotation.
    pub local_node: Option<String>,
    /// Has a `deletionTimestamp` (kept by `kubernetes.io/pvc-protection` while a pod uses it).
    pub terminating: bool,
    /// Pods (among those read) mounting it.
    pub used_by: Vec<String>,
}

/// A PV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvInfo {
    /// Name.
    pub name: String,
    /// Storage class.
    pub storage_class: Option<String>,
    /// `spec.capacity.storage`.
    pub capacity: Option<String>,
    /// `status.phase`.
    pub phase: String,
    /// `persistentVolumeReclaimPolicy`.
    pub reclaim_policy: Option<String>,
    /// Node from `nodeAffinity` on `kubernetes.io/hostname` (local volumes).
    pub local_node: Option<String>,
    /// `claimRef` as `(namespace, name)`.
    pub claim: Option<(String, String)>,
    /// `hostPath.path` or `local.path`.
    pub path: Option<String>,
}

/// Status of an add-on Deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonStatus {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Whether the Deployment exists.
    pub found: bool,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// Nodes running its pods (sorted, with repetitions when several pods share a node).
    pub pod_nodes: Vec<String>,
    /// `topologyKey`s of its `topologySpreadConstraints`.
    pub spread_topology_keys: Vec<String>,
    /// `topologyKey`s of its pod anti-affinity terms (required and preferred).
    pub anti_affinity_topology_keys: Vec<String>,
    /// Name of the k3s `HelmChart` in its namespace that deploys it, if any.
    pub helm_chart: Option<String>,
    /// Name of the k3s `HelmChartConfig` overriding that chart's values, if any.
    pub helm_chart_config: Option<String>,
    /// k3s packaged manifest that owns it (`objectset.rio.cattle.io/owner-name`): k3s re-applies
    /// that manifest on restart, which reverts direct patches.
    pub k3s_manifest: Option<String>,
}

impl ClusterObservation {
    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Pods on a node.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PodInfo> + 'a {
        self.pods
            .iter()
            .filter(move |p| p.node.as_deref() == Some(node))
    }

    /// PVCs whose local volume is on `node`.
    pub fn pvcs_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PvcInfo> + 'a {
        self.pvcs
            .iter()
            .filter(move |p| p.local_node.as_deref() == Some(node))
    }

    /// Stateful pods of a node: pods on it, or pods waiting for it (unscheduled), that mount a PVC
    /// whose local volume is on `node`; with those PVCs.
    ///
    /// One workload's claim counts once: when the pod on the node is being deleted (the
    /// `node.kubernetes.io/unreachable` NoExecute taint evicts it after its 300 s toleration;
    /// with no kubelet to confirm, it stays Terminating), its ReplicaSet does not count
    /// terminating pods and creates a replacement, which mounts the same claim and stays
    /// Pending, unscheduled (its volume is pinned to the lost node). That replacement is the
    /// same stateful pod waiting for the same volume, not a second one: it is left out when a
    /// pod of the same owner on a node mounts the same claim. (A StatefulSet recreates a pod
    /// only once the old one is gone: its pods never overlap.)
    pub fn stateful_on<'a>(&'a self, node: &'a str) -> Vec<(&'a PodInfo, Vec<&'a PvcInfo>)> {
        let all: Vec<(&PodInfo, Vec<&PvcInfo>)> = self
            .pods
            .iter()
            .filter_map(|p| {
                let claims: Vec<&PvcInfo> = p
                    .pvcs
                    .iter()
                    .filter_map(|c| {
                        self.pvcs
                            .iter()
                            .find(|v| v.namespace == p.namespace && &v.name == c)
                    })
                    .filter(|v| v.local_node.as_deref() == Some(node))
                    .collect();
                (!claims.is_empty()).then_some((p, claims))
            })
            .collect();
        let replaced = |p: &PodInfo, claims: &[&PvcInfo]| {
            p.node.is_none()
                && p.owner.is_some()
                && all.iter().any(|(q, qc)| {
                    q.node.is_some()
                        && q.namespace == p.namespace
                        && q.owner == p.owner
                        && qc.iter().any(|c| claims.iter().any(|d| d.name == c.name))
                })
        };
        all.iter()
            .filter(|(p, claims)| !replaced(p, claims))
            .cloned()
            .collect()
    }
}
