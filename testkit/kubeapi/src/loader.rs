//! Puts a fixture (the seed 004 cluster) on an API server **through the API**, the way a real
//! cluster would hold it, so that the same tests run against the in-memory server and a real
//! kube-apiserver (with kube-controller-manager and kube-scheduler, no kubelets).
//!
//! A fixture file is written as storage holds objects (uids, owner references, status, volume
//! bindings by uid). A real API server accepts none of that on create: it assigns uids, resets
//! status on create (pods start `Pending`: kubernetes pkg/registry/core/pod/strategy.go
//! `PrepareForCreate`; volumes and claims likewise; only nodes keep theirs), updates status only
//! through the `status` subresource, and its controllers own their pods only by adopting them.
//! So the loader:
//!
//! 1. creates the helm.cattle.io CRDs (`HelmChart`, `HelmChartConfig`) when the server does not
//!    serve that group, and waits until it does;
//! 2. creates namespaces, the StorageClass and the Nodes (then their status through `/status`);
//! 3. creates the claims, sets their status through `/status`, and creates the volumes with
//!    `claimRef.uid` set to the claim's real uid (the PV controller releases a volume whose
//!    claimRef names another uid);
//! 4. creates the pods without owner references (mirror pods keep theirs, to their Node's real
//!    uid), sets their status through `/status`;
//! 5. creates the workloads (ReplicaSets with the Deployment's template plus `pod-template-hash`,
//!    so that the Deployment controller finds them equal and adopts them instead of rolling a
//!    new one; StatefulSets and DaemonSets with `updateStrategy: OnDelete`, so that their
//!    controllers never replace the loaded pods for carrying another revision), then the
//!    Deployments, PodDisruptionBudgets and helm objects;
//! 6. waits until the controllers have adopted every pod and ReplicaSet (owner references with
//!    the owners' real uids: kubernetes pkg/controller/controller_ref_manager.go);
//! 7. adds the revision labels the controllers would have written: `controller-revision-hash`
//!    (a StatefulSet's `status.updateRevision`; a DaemonSet's ControllerRevision hash) and
//!    `statefulset.kubernetes.io/pod-name`; `pod-template-hash` comes with the fixture.
//!
//! Everything it creates carries the label [`FIXTURE_LABEL`] (workload templates too, so that
//! pods and ReplicaSets made by controllers carry it); [`Loader::clean`] deletes by that label
//! and empties the fixture's own namespaces, and waits until all of it is gone, so a load is
//! repeatable. [`Loader::heartbeat`] keeps the fixture's Ready nodes Ready (there are no
//! kubelets: without it the node lifecycle controller marks them `Unknown` after its grace
//! period, and 300 s later the taint eviction controller deletes their pods).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The label on everything the loader creates: `k3splan.test/fixture=seed004`.
pub const FIXTURE_LABEL: (&str, &str) = ("k3splan.test/fixture", "seed004");

/// Namespaces a load never deletes (it only deletes the fixture's objects in them).
const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "default", "kube-public", "kube-node-lease"];

/// Errors of the loader. Each names the call or the premise.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// An API call failed.
    #[error("{call}: {message}")]
    Api {
        /// The call (`METHOD path`).
        call: String,
        /// HTTP status, when the server answered.
        code: Option<u16>,
        /// The server's message or the transport error.
        message: String,
    },
    /// The server does not hold what a load needs (the premise is named).
    #[error("premise not met: {0}")]
    Premise(String),
    /// A wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited, with what was last seen.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The fixture itself is malformed.
    #[error("fixture: {0}")]
    Fixture(String),
}

/// What a load did.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Objects created, as `Kind ns/name`.
    pub created: Vec<String>,
    /// Revision labels added, as `ns/pod: key=value`.
    pub revision_labels: Vec<String>,
    /// What could not be done the real way on this server (e.g. no ControllerRevisions).
    pub notes: Vec<String>,
}

struct KindInfo {
    prefix: &'static str,
    plural: &'static str,
    namespaced: bool,
}

fn kind_info(kind: &str) -> Option<KindInfo> {
    let (prefix, plural, namespaced) = match kind {
        "Namespace" => ("/api/v1", "namespaces", false),
        "Node" => ("/api/v1", "nodes", false),
        "Pod" => ("/api/v1", "pods", true),
        "PersistentVolumeClaim" => ("/api/v1", "persistentvolumeclaims", true),
        "PersistentVolume" => ("/api/v1", "persistentvolumes", false),
        "StorageClass" => ("/apis/storage.k8s.io/v1", "storageclasses", false),
        "StatefulSet" => ("/apis/apps/v1", "statefulsets", true),
        "Deployment" => ("/apis/apps/v1", "deployments", true),
        "ReplicaSet" => ("/apis/apps/v1", "replicasets", true),
        "DaemonSet" => ("/apis/apps/v1", "daemonsets", true),
        "ControllerRevision" => ("/apis/apps/v1", "controllerrevisions", true),
        "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets", true),
        "HelmChart" => ("/apis/helm.cattle.io/v1", "helmcharts", true),
        "HelmChartConfig" => ("/apis/helm.cattle.io/v1", "helmchartconfigs", true),
        "Lease" => ("/apis/coordination.k8s.io/v1", "leases", true),
        _ => return None,
    };
    Some(KindInfo {
        prefix,
        plural,
        namespaced,
    })
}

fn collection(kind: &str, ns: &str) -> String {
    let k = kind_info(kind).expect("known kind");
    if k.namespaced && !ns.is_empty() {
        format!("{}/namespaces/{ns}/{}", k.prefix, k.plural)
    } else {
        format!("{}/{}", k.prefix, k.plural)
    }
}

fn object_path(kind: &str, ns: &str, name: &str) -> String {
    format!("{}/{name}", collection(kind, ns))
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_default().to_string()
}

fn ns_name(v: &Value) -> (String, String) {
    (
        s(v, &["metadata", "namespace"]),
        s(v, &["metadata", "name"]),
    )
}

fn label_selector() -> String {
    format!(
        "{}%3D{}",
        FIXTURE_LABEL.0.replace('/', "%2F"),
        FIXTURE_LABEL.1
    )
}

/// The documents of a multi-document YAML fixture, `kind: List` flattened.
pub fn fixture_docs(yaml: &str) -> Result<Vec<Value>, LoadError> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value =
            serde::Deserialize::deserialize(de).map_err(|e| LoadError::Fixture(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    for d in &out {
        let kind = s(d, &["kind"]);
        if kind_info(&kind).is_none() {
            return Err(LoadError::Fixture(format!(
                "kind {kind} ({}) is not one the loader knows",
                s(d, &["metadata", "name"])
            )));
        }
    }
    Ok(out)
}

/// A fixture object made fit for a create: no uid, resourceVersion, creation time, managed
/// fields, status or generation; the fixture label added.
fn for_create(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "ownerReferences",
            "deletionTimestamp",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v["metadata"]["labels"][FIXTURE_LABEL.0] = json!(FIXTURE_LABEL.1);
    v
}

/// Loads fixtures through the API of one server.
#[derive(Clone)]
pub struct Loader {
    client: kube::Client,
    /// How long each wait (CRDs served, adoption, revisions, deletions) may take.
    pub deadline: Duration,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Loader {
    /// A loader on an existing client.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            deadline: Duration::from_secs(90),
        }
    }

    /// A loader for the current context of a kubeconfig file.
    pub async fn from_kubeconfig(path: &Path) -> Result<Self, LoadError> {
        let err = |message: String| LoadError::Kubeconfig {
            path: path.display().to_string(),
            message,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        cfg.default_retry = false;
        let client = kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))?;
        Ok(Self::new(client))
    }

    /// One API call; `Ok(None)` on 404.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, LoadError> {
        let call = format!("{method} {path}");
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| LoadError::Api {
                call: call.clone(),
                code: None,
                message: e.to_string(),
            })?;
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(st)) if st.code == 404 => Ok(None),
            Err(kube::Error::Api(st)) => Err(LoadError::Api {
                call,
                code: Some(st.code),
                message: format!("{} {}", st.reason, st.message),
            }),
            Err(e) => Err(LoadError::Api {
                call,
                code: None,
                message: e.to_string(),
            }),
        }
    }

    async fn get(&self, path: &str) -> Result<Option<Value>, LoadError> {
        self.call(http::Method::GET, path, "application/json", None)
            .await
    }

    async fn create(&self, kind: &str, v: &Value) -> Result<Value, LoadError> {
        let (ns, _) = ns_name(v);
        let path = collection(kind, &ns);
        self.call(http::Method::POST, &path, "application/json", Some(v))
            .await?
            .ok_or_else(|| LoadError::Api {
                call: format!("POST {path}"),
                code: Some(404),
                message: "the server does not serve this kind".into(),
            })
    }

    async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Option<Value>, LoadError> {
        self.call(
            http::Method::PATCH,
            path,
            "application/merge-patch+json",
            Some(patch),
        )
        .await
    }

    async fn items(&self, path: &str) -> Result<Vec<Value>, LoadError> {
        Ok(self
            .get(path)
            .await?
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default())
    }

    async fn wait<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, LoadError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, String>, LoadError>>,
    {
        let until = Instant::now() + self.deadline;
        loop {
            let last = match f().await? {
                Ok(v) => return Ok(v),
                Err(last) => last,
            };
            if Instant::now() >= until {
                return Err(LoadError::Timeout {
                    what: format!("{what} (last seen: {last})"),
                    after: self.deadline,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Checks that the server holds none of the fixture's objects that the loader did not
    /// create itself (a k3s cluster's own `kube-system/coredns`, a real node of that name):
    /// loading over them would take them over, cleaning would delete them.
    pub async fn check_premises(&self, docs: &[Value]) -> Result<(), LoadError> {
        for d in docs {
            let kind = s(d, &["kind"]);
            let (ns, name) = ns_name(d);
            if matches!(kind.as_str(), "Namespace" | "StorageClass") {
                continue;
            }
            let cur = self
                .get(&object_path(&kind, &ns, &name))
                .await
                .or_else(|e| match e {
                    // A kind the server does not serve yet (helm CRDs): nothing of it exists.
                    LoadError::Api {
                        code: Some(404), ..
                    } => Ok(None),
                    e => Err(e),
                })?;
            let Some(cur) = cur else { continue };
            let at = if ns.is_empty() {
                name.clone()
            } else {
                format!("{ns}/{name}")
            };
            if cur["metadata"]["labels"][FIXTURE_LABEL.0] == FIXTURE_LABEL.1 {
                return Err(LoadError::Premise(format!(
                    "{kind} {at} is already there from an earlier load: clean first \
                     (`kubeapi-load --clean`, `Loader::clean`)"
                )));
            }
            return Err(LoadError::Premise(format!(
                "{kind} {at} exists and was not created by the fixture loader (no label \
                 {}={}): load seed 004 into a disposable API server (kube-apiserver with \
                 kube-controller-manager and kube-scheduler, no k3s add-ons, no nodes of \
                 these names), not into a cluster that has its own",
                FIXTURE_LABEL.0, FIXTURE_LABEL.1
            )));
        }
        Ok(())
    }

    async fn ensure_helm_crds(&self, report: &mut LoadReport) -> Result<(), LoadError> {
        if self.get("/apis/helm.cattle.io/v1").await?.is_some() {
            return Ok(());
        }
        for (kind, plural) in [
            ("HelmChart", "helmcharts"),
            ("HelmChartConfig", "helmchartconfigs"),
        ] {
            // As k3s's helm-controller defines them (group helm.cattle.io, v1, namespaced);
            // the schema keeps every field.
            let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.helm.cattle.io"), "labels": {FIXTURE_LABEL.0: FIXTURE_LABEL.1}},
                "spec": {"group": "helm.cattle.io", "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                        "subresources": {"status": {}}}]}});
            let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
            match self
                .call(http::Method::POST, path, "application/json", Some(&crd))
                .await
            {
                Ok(Some(_)) => report
                    .created
                    .push(format!("CustomResourceDefinition {plural}.helm.cattle.io")),
                Ok(None) => {
                    return Err(LoadError::Premise(format!(
                        "the server serves neither helm.cattle.io/v1 nor CustomResourceDefinitions ({path}: 404)"
                    )));
                }
                Err(LoadError::Api {
                    code: Some(409), ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        self.wait("helm.cattle.io/v1 to be served", || async {
            Ok(match self.get("/apis/helm.cattle.io/v1").await? {
                Some(_) => Ok(()),
                None => Err("GET /apis/helm.cattle.io/v1: 404".to_string()),
            })
        })
        .await
    }

    /// Loads `docs` (see the module documentation). The server must not hold them yet
    /// ([`Self::check_premises`]; [`Self::clean`] first when it may).
    pub async fn load(&self, docs: &[Value]) -> Result<LoadReport, LoadError> {
        self.check_premises(docs).await?;
        let mut report = LoadReport::default();
        let of =
            |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
        if !of("HelmChart").is_empty() || !of("HelmChartConfig").is_empty() {
            self.ensure_helm_crds(&mut report).await?;
        }

        // Cluster-wide objects a cluster may already have: an existing one is kept.
        for kind in ["Namespace", "StorageClass"] {
            for d in of(kind) {
                match self.create(kind, &for_create(d)).await {
                    Ok(_) => report
                        .created
                        .push(format!("{kind} {}", s(d, &["metadata", "name"]))),
                    Err(LoadError::Api {
                        code: Some(409), ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }

        // Nodes: status is accepted on create (the kubelet registers that way), and set again
        // through /status, where later writers put it.
        let mut node_uid: HashMap<String, String> = HashMap::new();
        for d in of("Node") {
            let name = s(d, &["metadata", "name"]);
            let mut v = for_create(d);
            v["status"] = d["status"].clone();
            let out = self.create("Node", &v).await?;
            node_uid.insert(name.clone(), s(&out, &["metadata", "uid"]));
            self.merge_patch(
                &format!("/api/v1/nodes/{name}/status"),
                &json!({"status": node_status_now(&d["status"])}),
            )
            .await?;
            report.created.push(format!("Node {name}"));
        }

        // Claims, then volumes bound to the claims' real uids.
        let mut claim_uid: HashMap<(String, String), String> = HashMap::new();
        for d in of("PersistentVolumeClaim") {
            let (ns, name) = ns_name(d);
            let out = self.create("PersistentVolumeClaim", &for_create(d)).await?;
            claim_uid.insert((ns.clone(), name.clone()), s(&out, &["metadata", "uid"]));
            if !d["status"].is_null() {
                self.merge_patch(
                    &format!(
                        "{}/status",
                        object_path("PersistentVolumeClaim", &ns, &name)
                    ),
                    &json!({"status": d["status"]}),
                )
                .await?;
            }
            report
                .created
                .push(format!("PersistentVolumeClaim {ns}/{name}"));
        }
        for d in of("PersistentVolume") {
            let name = s(d, &["metadata", "name"]);
            let mut v = for_create(d);
            if v["spec"]["claimRef"].is_object() {
                let key = (
                    s(&v, &["spec", "claimRef", "namespace"]),
                    s(&v, &["spec", "claimRef", "name"]),
                );
                match claim_uid.get(&key) {
                    Some(uid) => v["spec"]["claimRef"]["uid"] = json!(uid),
                    None => {
                        if let Some(c) = v["spec"]["claimRef"].as_object_mut() {
                            c.remove("uid");
                            c.remove("resourceVersion");
                        }
                    }
                }
            }
            self.create("PersistentVolume", &v).await?;
            if !d["status"].is_null() {
                self.merge_patch(
                    &format!("/api/v1/persistentvolumes/{name}/status"),
                    &json!({"status": d["status"]}),
                )
                .await?;
            }
            report.created.push(format!("PersistentVolume {name}"));
        }

        // Pods, as orphans (mirror pods keep their Node owner, with its real uid).
        let mut owner_of: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
        for d in of("Pod") {
            let (ns, name) = ns_name(d);
            let mut v = for_create(d);
            let mut keep = Vec::new();
            for r in d["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let kind = s(r, &["kind"]);
                let oname = s(r, &["name"]);
                if kind == "Node" {
                    if let Some(uid) = node_uid.get(&oname) {
                        let mut r = r.clone();
                        r["uid"] = json!(uid);
                        keep.push(r);
                    }
                } else if r["controller"] == true {
                    owner_of.insert((ns.clone(), name.clone()), (kind, oname));
                }
            }
            if !keep.is_empty() {
                v["metadata"]["ownerReferences"] = json!(keep);
            }
            self.create("Pod", &v).await?;
            self.merge_patch(
                &format!("{}/status", object_path("Pod", &ns, &name)),
                &json!({"status": d["status"]}),
            )
            .await?;
            report.created.push(format!("Pod {ns}/{name}"));
        }

        // Workloads. ReplicaSets carry their Deployment's template (plus the hash label) so
        // that the Deployment adopts them rather than rolling out a new one.
        let deployments: HashMap<(String, String), &Value> = of("Deployment")
            .into_iter()
            .map(|d| (ns_name(d), d))
            .collect();
        for d in of("ReplicaSet") {
            let (ns, name) = ns_name(d);
            let mut v = with_template_label(for_create(d));
            let owner = d["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["kind"] == "Deployment"))
                .map(|r| (ns.clone(), s(r, &["name"])));
            if let Some(dep) = owner.as_ref().and_then(|k| deployments.get(k)) {
                let hash = s(d, &["metadata", "labels", "pod-template-hash"]);
                let mut template = with_template_label(for_create(dep))["spec"]["template"].clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                v["spec"]["template"] = template;
                owner_of.insert(
                    (ns.clone(), format!("rs:{name}")),
                    ("Deployment".into(), s(dep, &["metadata", "name"])),
                );
            }
            self.create("ReplicaSet", &v).await?;
            report.created.push(format!("ReplicaSet {ns}/{name}"));
        }
        for kind in ["StatefulSet", "DaemonSet"] {
            for d in of(kind) {
                let (ns, name) = ns_name(d);
                let mut v = with_template_label(for_create(d));
                v["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
                self.create(kind, &v).await?;
                report.created.push(format!("{kind} {ns}/{name}"));
            }
        }
        for d in of("Deployment") {
            let (ns, name) = ns_name(d);
            self.create("Deployment", &with_template_label(for_create(d)))
                .await?;
            report.created.push(format!("Deployment {ns}/{name}"));
        }
        for kind in ["PodDisruptionBudget", "HelmChart", "HelmChartConfig"] {
            for d in of(kind) {
                let (ns, name) = ns_name(d);
                self.create(kind, &for_create(d)).await?;
                report.created.push(format!("{kind} {ns}/{name}"));
            }
        }

        // Adoption by the controllers.
        self.wait(
            "the controllers to adopt the loaded pods and ReplicaSets",
            || async {
                let mut missing = Vec::new();
                for ((ns, key), (kind, oname)) in &owner_of {
                    let (child_kind, child) = match key.strip_prefix("rs:") {
                        Some(rs) => ("ReplicaSet", rs),
                        None => ("Pod", key.as_str()),
                    };
                    let Some(owner) = self.get(&object_path(kind, ns, oname)).await? else {
                        missing.push(format!("{kind} {ns}/{oname} (missing)"));
                        continue;
                    };
                    let uid = s(&owner, &["metadata", "uid"]);
                    let cur = self.get(&object_path(child_kind, ns, child)).await?;
                    let adopted = cur.as_ref().is_some_and(|c| {
                        c["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|a| {
                                a.iter()
                                    .any(|r| r["uid"] == json!(uid) && r["controller"] == true)
                            })
                    });
                    if !adopted {
                        missing.push(format!("{child_kind} {ns}/{child} by {kind} {oname}"));
                    }
                }
                Ok(if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing.join(", "))
                })
            },
        )
        .await?;

        self.revision_labels(docs, &mut report).await?;
        Ok(report)
    }

    async fn revision_labels(
        &self,
        docs: &[Value],
        report: &mut LoadReport,
    ) -> Result<(), LoadError> {
        for d in docs.iter().filter(|d| d["kind"] == "StatefulSet") {
            let (ns, name) = ns_name(d);
            let path = object_path("StatefulSet", &ns, &name);
            let revision = self
                .wait(
                    &format!("StatefulSet {ns}/{name} to record its revision"),
                    || async {
                        let cur = self.get(&path).await?;
                        let rev = cur
                            .as_ref()
                            .map(|c| s(c, &["status", "updateRevision"]))
                            .unwrap_or_default();
                        Ok(if rev.is_empty() {
                            Err("no status.updateRevision".to_string())
                        } else {
                            Ok(rev)
                        })
                    },
                )
                .await?;
            for p in self.owned_pods(&ns, &path).await? {
                let pn = s(&p, &["metadata", "name"]);
                self.merge_patch(
                    &object_path("Pod", &ns, &pn),
                    &json!({"metadata": {"labels": {"controller-revision-hash": revision,
                        "statefulset.kubernetes.io/pod-name": pn}}}),
                )
                .await?;
                report
                    .revision_labels
                    .push(format!("{ns}/{pn}: controller-revision-hash={revision}"));
            }
        }
        for d in docs.iter().filter(|d| d["kind"] == "DaemonSet") {
            let (ns, name) = ns_name(d);
            let path = object_path("DaemonSet", &ns, &name);
            let Some(ds) = self.get(&path).await? else {
                continue;
            };
            let uid = s(&ds, &["metadata", "uid"]);
            let revisions = collection("ControllerRevision", &ns);
            match self.get(&revisions).await {
                Ok(Some(_)) => {}
                Ok(None)
                | Err(LoadError::Api {
                    code: Some(404), ..
                }) => {
                    report.notes.push(format!(
                        "DaemonSet {ns}/{name}: the server has no ControllerRevisions; its pods keep no controller-revision-hash"
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            }
            let hash = self
                .wait(
                    &format!("DaemonSet {ns}/{name} to record its revision"),
                    || {
                        let uid = json!(uid.as_str());
                        let revisions = revisions.clone();
                        async move {
                            let best = self
                                .items(&revisions)
                                .await?
                                .into_iter()
                                .filter(|r| {
                                    r["metadata"]["ownerReferences"]
                                        .as_array()
                                        .is_some_and(|a| a.iter().any(|o| o["uid"] == uid))
                                })
                                .max_by_key(|r| r["revision"].as_i64().unwrap_or(0))
                                .map(|r| {
                                    s(&r, &["metadata", "labels", "controller-revision-hash"])
                                });
                            Ok(best
                                .filter(|h| !h.is_empty())
                                .ok_or_else(|| "no ControllerRevision owned by it".to_string()))
                        }
                    },
                )
                .await?;
            for p in self.owned_pods(&ns, &path).await? {
                let pn = s(&p, &["metadata", "name"]);
                self.merge_patch(
                    &object_path("Pod", &ns, &pn),
                    &json!({"metadata": {"labels": {"controller-revision-hash": hash}}}),
                )
                .await?;
                report
                    .revision_labels
                    .push(format!("{ns}/{pn}: controller-revision-hash={hash}"));
            }
        }
        Ok(())
    }

    async fn owned_pods(&self, ns: &str, owner_path: &str) -> Result<Vec<Value>, LoadError> {
        let Some(owner) = self.get(owner_path).await? else {
            return Ok(Vec::new());
        };
        let uid = json!(s(&owner, &["metadata", "uid"]));
        Ok(self
            .items(&collection("Pod", ns))
            .await?
            .into_iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|r| r["uid"] == uid))
            })
            .collect())
    }

    /// Deletes what a load created (everything labelled [`FIXTURE_LABEL`], and everything in
    /// the fixture's own namespaces, which tests fill with recreated claims and pods), pods
    /// at once (no kubelet would confirm a graceful deletion), and waits until it is gone.
    pub async fn clean(&self, docs: &[Value]) -> Result<(), LoadError> {
        let own_namespaces: BTreeSet<String> = docs
            .iter()
            .filter(|d| d["kind"] == "Namespace")
            .map(|d| s(d, &["metadata", "name"]))
            .filter(|n| !SYSTEM_NAMESPACES.contains(&n.as_str()))
            .collect();
        let sel = label_selector();
        const KINDS: &[&str] = &[
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "PodDisruptionBudget",
            "HelmChartConfig",
            "HelmChart",
            "Pod",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "Node",
        ];
        let leftovers = || async {
            let mut left: Vec<(String, String, String)> = Vec::new();
            for kind in KINDS {
                let mut paths = vec![format!("{}?labelSelector={sel}", collection(kind, ""))];
                if kind_info(kind).is_some_and(|k| k.namespaced) {
                    paths.extend(own_namespaces.iter().map(|ns| collection(kind, ns)));
                }
                for p in paths {
                    let items = match self.items(&p).await {
                        Ok(i) => i,
                        // helm.cattle.io not served (yet): nothing of it to delete.
                        Err(LoadError::Api {
                            code: Some(404), ..
                        }) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    for i in items {
                        let (ns, name) = ns_name(&i);
                        left.push((kind.to_string(), ns, name));
                    }
                }
            }
            left.sort();
            left.dedup();
            Ok::<_, LoadError>(left)
        };
        // Deletes are repeated on every round: controllers may recreate a pod or a claim
        // between a workload's deletion and its garbage collection.
        self.wait("the fixture's objects to be deleted", || async {
            let left = leftovers().await?;
            let mut seen: Vec<String> = Vec::new();
            for (kind, ns, name) in &left {
                seen.push(format!("{kind} {ns}/{name}"));
                let path = object_path(kind, ns, name);
                let body = if kind == "Pod" {
                    json!({"gracePeriodSeconds": 0, "propagationPolicy": "Background"})
                } else {
                    json!({"propagationPolicy": "Background"})
                };
                match self
                    .call(http::Method::DELETE, &path, "application/json", Some(&body))
                    .await
                {
                    Ok(_)
                    | Err(LoadError::Api {
                        code: Some(409), ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
            for ns in &own_namespaces {
                let path = format!("/api/v1/namespaces/{ns}");
                if self.get(&path).await?.is_some() {
                    seen.push(format!("Namespace {ns}"));
                    match self
                        .call(http::Method::DELETE, &path, "application/json", None)
                        .await
                    {
                        Ok(_)
                        | Err(LoadError::Api {
                            code: Some(409), ..
                        }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(if seen.is_empty() {
                Ok(())
            } else {
                Err(seen.join(", "))
            })
        })
        .await
    }

    /// Keeps `nodes` Ready while the returned task runs (abort it to stop): every `every`,
    /// their Ready condition's `lastHeartbeatTime` is renewed through `/status` and their
    /// Lease in `kube-node-lease` is renewed, as a kubelet does. Without it the node lifecycle
    /// controller of a real cluster marks kubelet-less nodes `Unknown` after its grace period
    /// and taints them `unreachable`.
    pub fn heartbeat(
        &self,
        nodes: Vec<(String, Value)>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                for (name, status) in &nodes {
                    let _ = this
                        .merge_patch(
                            &format!("/api/v1/nodes/{name}/status"),
                            &json!({"status": {"conditions": node_status_now(status)["conditions"]}}),
                        )
                        .await;
                    let now = jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                        .to_string();
                    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": name, "namespace": "kube-node-lease"},
                        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
                    let path = object_path("Lease", "kube-node-lease", name);
                    if let Ok(None) = this
                        .merge_patch(&path, &json!({"spec": {"renewTime": now}}))
                        .await
                    {
                        let _ = this
                            .call(
                                http::Method::POST,
                                &collection("Lease", "kube-node-lease"),
                                "application/json",
                                Some(&lease),
                            )
                            .await;
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// A node's fixture status with the heartbeat of its conditions set to now.
fn node_status_now(status: &Value) -> Value {
    let mut st = status.clone();
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    if let Some(conds) = st["conditions"].as_array_mut() {
        for c in conds {
            if c["status"] == "True" || c["type"] != "Ready" {
                c["lastHeartbeatTime"] = json!(now);
            }
        }
    }
    st
}

/// The fixture label on a workload's pod template too.
fn with_template_label(mut v: Value) -> Value {
    if v["spec"]["template"].is_object() {
        v["spec"]["template"]["metadata"]["labels"][FIXTURE_LABEL.0] = json!(FIXTURE_LABEL.1);
    }
    v
}

/// The Ready nodes of a fixture with their fixture status (what [`Loader::heartbeat`] keeps up).
pub fn ready_nodes(docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter(|d| d["kind"] == "Node")
        .filter(|d| {
            d["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|d| (s(d, &["metadata", "name"]), d["status"].clone()))
        .collect()
}
