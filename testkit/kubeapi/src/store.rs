//! The object store and the API semantics: resource versions, uids, selectors, pagination,
//! graceful deletion, finalizers, garbage collection, evictions and the optional controllers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::select::{
    FieldReq, LabelReq, field_value, fields_match, label_selector_object_matches, labels_match,
};

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
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
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

/// One stored object.
///
/// Normal mode: `head` is the whole object as a [`Value`], next to its serialized `bytes`.
/// Compact mode ([`Store::set_compact`]): `head` keeps only the parts the selectors and the
/// controllers scan on every pass ([`head_of`]), and the whole object is parsed from `bytes`
/// on demand ([`Obj::value`]).
#[derive(Debug, Clone)]
struct Obj {
    head: Value,
    full: bool,
    bytes: Arc<Vec<u8>>,
}

impl Obj {
    fn new(value: Value) -> Self {
        let bytes = Arc::new(serialize(&value));
        Self {
            head: value,
            full: true,
            bytes,
        }
    }

    fn compact(value: &Value) -> Self {
        Self {
            head: head_of(value),
            full: false,
            bytes: Arc::new(serialize(value)),
        }
    }

    /// The whole object (parsed from the bytes in compact mode).
    fn value(&self) -> Cow<'_, Value> {
        if self.full {
            Cow::Borrowed(&self.head)
        } else {
            Cow::Owned(serde_json::from_slice(&self.bytes).expect("stored JSON parses"))
        }
    }

    fn into_value(self) -> Value {
        if self.full {
            self.head
        } else {
            serde_json::from_slice(&self.bytes).expect("stored JSON parses")
        }
    }

    /// The object's head: `metadata` (without `managedFields` and `annotations`),
    /// `spec.nodeName`, `spec.claimRef` and `status.phase` are always right here; in normal
    /// mode it is the whole object.
    fn head(&self) -> &Value {
        &self.head
    }

    /// Whether `field_value(head, path)` equals `field_value(whole object, path)`.
    fn head_covers(&self, path: &str) -> bool {
        self.full || head_covers(path)
    }
}

/// The JSON of an object, in a buffer of exactly its length (`to_vec` leaves up to twice the
/// length allocated, which a store of 150,000 pods would keep).
fn serialize(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).expect("serialize");
    b.shrink_to_fit();
    b
}

/// Fields of `metadata` left out of a compact object's head (bulky, never scanned).
const HEAD_DROPPED_METADATA: [&str; 2] = ["managedFields", "annotations"];

/// The head of a compact object: `metadata` minus [`HEAD_DROPPED_METADATA`], `spec.nodeName`,
/// `spec.claimRef`, `status.phase` (each only when present).
fn head_of(v: &Value) -> Value {
    let mut head = serde_json::Map::new();
    if let Some(m) = v.get("metadata").and_then(Value::as_object) {
        let m: serde_json::Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !HEAD_DROPPED_METADATA.contains(&k.as_str()))
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        head.insert("metadata".into(), Value::Object(m));
    } else if let Some(m) = v.get("metadata") {
        head.insert("metadata".into(), m.clone());
    }
    let pick = |sect: &str, fields: &[&str]| -> Option<Value> {
        let o = v.get(sect)?.as_object()?;
        let picked: serde_json::Map<String, Value> = fields
            .iter()
            .filter_map(|f| o.get(*f).map(|x| (f.to_string(), x.clone())))
            .collect();
        (!picked.is_empty()).then_some(Value::Object(picked))
    };
    if let Some(s) = pick("spec", &["nodeName", "claimRef"]) {
        head.insert("spec".into(), s);
    }
    if let Some(s) = pick("status", &["phase"]) {
        head.insert("status".into(), s);
    }
    Value::Object(head)
}

/// Whether a field path (as in a field selector) reads only what [`head_of`] keeps.
fn head_covers(path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("metadata.") {
        let first = rest.split('.').next().unwrap_or_default();
        !HEAD_DROPPED_METADATA.contains(&first)
    } else {
        path == "spec.nodeName" || path.starts_with("spec.claimRef.") || path == "status.phase"
    }
}

type Key = (String, String);

/// Options of a delete call.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `gracePeriodSeconds`; `Some(0)` deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` or `Foreground` (treated as Background).
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// Serialized items.
    pub items: Vec<Arc<Vec<u8>>>,
    /// Resource version of the list.
    pub resource_version: u64,
    /// Continue token if more remain.
    pub continue_token: Option<String>,
    /// Number of remaining items after this page.
    pub remaining: usize,
}

/// The in-memory object store.
#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    uid_seq: u64,
    objects: Vec<BTreeMap<Key, Obj>>,
    /// The controllers that run after each write.
    pub controllers: Controllers,
    pvc_memory: HashMap<Key, Value>,
    operator_memory: HashMap<Key, Value>,
    pending_operator: Vec<Key>,
    reconciling: bool,
    bulk: bool,
    compact: bool,
}

/// Current time in RFC 3339, seconds precision.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string()
}

fn meta(v: &Value, f: &str) -> Option<String> {
    v.get("metadata")
        .and_then(|m| m.get(f))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn rand_suffix(seed: u64) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A;
    (0..5)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHA[(x % ALPHA.len() as u64) as usize] as char
        })
        .collect()
}

impl Store {
    /// An empty store.
    pub fn new(controllers: Controllers) -> Self {
        Self {
            objects: vec![BTreeMap::new(); TYPES.len()],
            controllers,
            ..Default::default()
        }
    }

    /// While set, writes do not run the controllers (bulk fixture loading).
    pub fn set_bulk(&mut self, on: bool) {
        self.bulk = on;
    }

    /// Compact mode (off by default): each object is kept only as its serialized JSON plus a
    /// small parsed head (`metadata` without `managedFields`/`annotations`, `spec.nodeName`,
    /// `spec.claimRef`, `status.phase`), and parsed whole on demand. Every call answers
    /// exactly as in normal mode (same bytes, same semantics); reads that need a whole object
    /// (get, patch, delete, controllers acting on an object) cost a JSON parse, and a field
    /// selector on a path outside the head parses every candidate. Meant for large benchmark
    /// clusters: a synthetic 8 KB pod costs the process about 16 KB (its bytes, its head and
    /// allocator overhead) instead of about 100 KB. Switching converts the objects already
    /// stored. Not done in compact mode: the head is itself a `Value` (a few small maps,
    /// about 5 KB per pod); a dedicated struct would shrink it further.
    pub fn set_compact(&mut self, on: bool) {
        if self.compact == on {
            return;
        }
        self.compact = on;
        for m in &mut self.objects {
            for o in m.values_mut() {
                let v = o.value().into_owned();
                *o = if on { Obj::compact(&v) } else { Obj::new(v) };
            }
        }
    }

    /// Whether compact mode is on ([`Self::set_compact`]).
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn new_uid(&mut self) -> String {
        self.uid_seq += 1;
        let n = self.uid_seq;
        let r = rand_suffix(n ^ 0x5151) + &rand_suffix(n ^ 0x7777);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{}-{:012x}",
            n as u32,
            (n >> 32) as u16,
            n % 4096,
            &r[..3],
            n
        )
    }

    fn key(t: Ty, ns: &str, name: &str) -> Key {
        if TYPES[t].namespaced {
            (ns.to_string(), name.to_string())
        } else {
            (String::new(), name.to_string())
        }
    }

    /// Gets one object.
    pub fn get(&self, t: Ty, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects[t]
            .get(&Self::key(t, ns, name))
            .map(|o| o.value().into_owned())
            .ok_or_else(|| ApiError::not_found(&TYPES[t], name))
    }

    /// Serialized form of one object.
    pub fn get_bytes(&self, t: Ty, ns: &str, name: &str) -> Result<Arc<Vec<u8>>, ApiError> {
        self.objects[t]
            .get(&Self::key(t, ns, name))
            .map(|o| o.bytes.clone())
            .ok_or_else(|| ApiError::not_found(&TYPES[t], name))
    }

    /// All objects of a type (optionally one namespace), cloned.
    pub fn all(&self, t: Ty, ns: Option<&str>) -> Vec<Value> {
        self.objects[t]
            .iter()
            .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, o)| o.value().into_owned())
            .collect()
    }

    /// Whether an object matches label and field selectors (on its head when that suffices).
    fn selected(o: &Obj, labels: &[LabelReq], fields: &[FieldReq]) -> bool {
        let head = o.head();
        if !labels.is_empty()
            && !labels_match(labels, head.get("metadata").and_then(|m| m.get("labels")))
        {
            return false;
        }
        if fields.is_empty() {
            true
        } else if fields.iter().all(|f| o.head_covers(&f.path)) {
            fields_match(fields, head)
        } else {
            fields_match(fields, &o.value())
        }
    }

    /// The objects of a type (optionally one namespace) that match label and field
    /// selectors, cloned, in namespace/name order.
    pub fn select(
        &self,
        t: Ty,
        ns: Option<&str>,
        labels: &[LabelReq],
        fields: &[FieldReq],
    ) -> Vec<Value> {
        self.objects[t]
            .iter()
            .filter(|((n, _), o)| ns.is_none_or(|ns| ns == n) && Self::selected(o, labels, fields))
            .map(|(_, o)| o.value().into_owned())
            .collect()
    }

    /// Lists with selectors and `limit`/`continue` pagination (keys in namespace/name order).
    pub fn list(
        &self,
        t: Ty,
        ns: Option<&str>,
        labels: &[LabelReq],
        fields: &[FieldReq],
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let start: Bound<Key> = match cont {
            Some(c) if !c.is_empty() => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                let s = String::from_utf8(raw)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                let (a, b) = s
                    .split_once('\0')
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                Bound::Excluded((a.to_string(), b.to_string()))
            }
            _ => match ns {
                Some(ns) if TYPES[t].namespaced => Bound::Included((ns.to_string(), String::new())),
                _ => Bound::Unbounded,
            },
        };
        let mut items = Vec::new();
        let mut last: Option<&Key> = None;
        let mut remaining = 0usize;
        let limit = limit.filter(|l| *l > 0);
        for (k, o) in self.objects[t].range((start, Bound::Unbounded)) {
            if let Some(ns) = ns
                && TYPES[t].namespaced
                && k.0 != ns
            {
                break;
            }
            if !Self::selected(o, labels, fields) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(o.bytes.clone());
            last = Some(k);
        }
        let continue_token = if remaining > 0 {
            last.map(|(a, b)| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{a}\0{b}"))
            })
        } else {
            None
        };
        Ok(ListPage {
            items,
            resource_version: self.rv,
            continue_token,
            remaining,
        })
    }

    fn put(&mut self, t: Ty, mut v: Value) -> Value {
        let rv = self.next_rv();
        v["metadata"]["resourceVersion"] = json!(rv);
        let key = Self::key(
            t,
            &meta(&v, "namespace").unwrap_or_default(),
            &meta(&v, "name").unwrap_or_default(),
        );
        let obj = if self.compact {
            Obj::compact(&v)
        } else {
            Obj::new(v.clone())
        };
        self.objects[t].insert(key, obj);
        v
    }

    fn remove(&mut self, t: Ty, ns: &str, name: &str) -> Option<Value> {
        let removed = self.objects[t]
            .remove(&Self::key(t, ns, name))
            .map(Obj::into_value);
        if removed.is_some() {
            self.rv += 1;
        }
        removed
    }

    /// Creates an object (`POST`): fills uid, resourceVersion, creationTimestamp, `generateName`,
    /// the protection finalizers of PVCs and PVs; 409 when the name is taken.
    pub fn create(&mut self, t: Ty, ns: &str, mut v: Value) -> Result<Value, ApiError> {
        let tp = TYPES[t];
        if !v.get("metadata").is_some_and(Value::is_object) {
            v["metadata"] = json!({});
        }
        if meta(&v, "name").is_none() {
            let Some(gen_name) = meta(&v, "generateName") else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value",
                ));
            };
            let seed = self.uid_seq + 1 + self.rv;
            v["metadata"]["name"] = json!(format!("{gen_name}{}", rand_suffix(seed)));
        }
        if tp.namespaced {
            let ns = if ns.is_empty() {
                meta(&v, "namespace").unwrap_or_else(|| "default".into())
            } else {
                ns.into()
            };
            v["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let name = meta(&v, "name").unwrap_or_default();
        let ns = meta(&v, "namespace").unwrap_or_default();
        if self.objects[t].contains_key(&Self::key(t, &ns, &name)) {
            let g = if tp.group.is_empty() {
                String::new()
            } else {
                format!(".{}", tp.group)
            };
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}{g} \"{name}\" already exists", tp.plural),
            ));
        }
        v["apiVersion"] = json!(tp.api_version());
        v["kind"] = json!(tp.kind);
        if meta(&v, "uid").is_none() {
            v["metadata"]["uid"] = json!(self.new_uid());
        }
        if meta(&v, "creationTimestamp").is_none() {
            v["metadata"]["creationTimestamp"] = json!(now());
        }
        let fin = match tp.kind {
            "PersistentVolumeClaim" => Some("kubernetes.io/pvc-protection"),
            "PersistentVolume" => Some("kubernetes.io/pv-protection"),
            _ => None,
        };
        if let Some(fin) = fin {
            let list = v["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !list.iter().any(|f| f == fin) {
                let mut list = list;
                list.push(json!(fin));
                v["metadata"]["finalizers"] = json!(list);
            }
        }
        if v["metadata"].get("generation").is_none() && v.get("spec").is_some() {
            v["metadata"]["generation"] = json!(1);
        }
        if tp.kind == "PersistentVolumeClaim" {
            let mut mem = v.clone();
            clean_for_recreate(&mut mem);
            self.pvc_memory.insert((ns.clone(), name.clone()), mem);
        }
        if tp.kind == "Deployment" && self.operator_manages(&v) {
            let mut mem = v.clone();
            clean_for_recreate(&mut mem);
            self.operator_memory.insert((ns, name), mem);
        }
        let out = self.put(t, v);
        if self.bulk {
            // No controller runs during a bulk load: the stored object is `out`.
            return Ok(out);
        }
        self.reconcile();
        Ok(self
            .get(
                t,
                &meta(&out, "namespace").unwrap_or_default(),
                &meta(&out, "name").unwrap_or_default(),
            )
            .unwrap_or(out))
    }

    fn operator_manages(&self, v: &Value) -> bool {
        self.controllers
            .operator_label
            .as_ref()
            .is_some_and(|(k, val)| {
                v.get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    == Some(val.as_str())
            })
    }

    /// Replaces an object (`PUT`); 409 when `metadata.resourceVersion` is stale.
    pub fn replace(
        &mut self,
        t: Ty,
        ns: &str,
        name: &str,
        mut v: Value,
    ) -> Result<Value, ApiError> {
        let old = self.get(t, ns, name)?;
        if let Some(rv) = meta(&v, "resourceVersion")
            && Some(&rv) != meta(&old, "resourceVersion").as_ref()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    TYPES[t].plural
                ),
            ));
        }
        if meta(&v, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if !v.get("metadata").is_some_and(Value::is_object) {
            v["metadata"] = json!({});
        }
        for f in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
        ] {
            match old["metadata"].get(f) {
                Some(x) => v["metadata"][f] = x.clone(),
                None => {
                    if let Some(m) = v["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        v["apiVersion"] = json!(TYPES[t].api_version());
        v["kind"] = json!(TYPES[t].kind);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        v["metadata"]["generation"] = json!(if old.get("spec") != v.get("spec") {
            generation + 1
        } else {
            generation
        });
        self.put(t, v);
        self.finish_if_finalized(t, ns, name);
        self.reconcile();
        Ok(self.get(t, ns, name).unwrap_or(old))
    }

    /// Patches an object. `content_type` selects JSON patch, merge patch, strategic merge patch
    /// (applied as a merge patch) or server-side apply (applied as a merge patch, creating the object).
    pub fn patch(
        &mut self,
        t: Ty,
        ns: &str,
        name: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let old = match self.get(t, ns, name) {
            Ok(o) => o,
            Err(e) if content_type.starts_with("application/apply-patch") => {
                let _ = e;
                let mut v = body.clone();
                v["metadata"]["name"] = json!(name);
                return self.create(t, ns, v);
            }
            Err(e) => return Err(e),
        };
        let mut v = old.clone();
        if content_type.starts_with("application/json-patch+json") {
            crate::select::json_patch(&mut v, body)
                .map_err(|e| ApiError::new(422, "Invalid", e))?;
        } else {
            crate::select::merge_patch(&mut v, body);
        }
        if let Some(rv) = body
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            && Some(rv) != meta(&old, "resourceVersion").as_deref()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                    TYPES[t].plural
                ),
            ));
        }
        v["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.replace(t, ns, name, v)
    }

    /// Sets a node's `Ready` condition as the node lifecycle controller would: `True` (kubelet
    /// posting status) or `Unknown` with the `node.kubernetes.io/unreachable` NoSchedule and
    /// NoExecute taints (kubelet silent: host down). Pods on the node get `Ready` to match.
    /// For the lab's k3s stand-in. No-op when the node already has that readiness.
    pub fn set_node_ready(&mut self, node: &str, ready: bool) -> Result<(), ApiError> {
        let nt = ty("Node");
        let mut v = self.get(nt, "", node)?;
        if node_is_ready(&v) == ready {
            return Ok(());
        }
        let cond = if ready {
            json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": now()})
        } else {
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                   "message": "Kubelet stopped posting node status.", "lastTransitionTime": now()})
        };
        let mut conds: Vec<Value> = v["status"]["conditions"]
            .as_array()
            .map(|a| a.iter().filter(|c| c["type"] != "Ready").cloned().collect())
            .unwrap_or_default();
        conds.push(cond);
        v["status"]["conditions"] = json!(conds);
        let mut taints: Vec<Value> = v["spec"]["taints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|t| t["key"] != "node.kubernetes.io/unreachable")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !ready {
            for effect in ["NoSchedule", "NoExecute"] {
                taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": effect, "timeAdded": now()}));
            }
        }
        v["spec"]["taints"] = json!(taints);
        self.put(nt, v);
        let pt = ty("Pod");
        let pods: Vec<Value> = self.objects[pt]
            .values()
            .filter(|o| field_value(o.head(), "spec.nodeName") == node)
            .map(|o| o.value().into_owned())
            .collect();
        for mut p in pods {
            let mut conds: Vec<Value> = p["status"]["conditions"]
                .as_array()
                .map(|a| a.iter().filter(|c| c["type"] != "Ready").cloned().collect())
                .unwrap_or_default();
            conds.push(json!({"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now()}));
            p["status"]["conditions"] = json!(conds);
            self.put(pt, p);
        }
        self.reconcile();
        Ok(())
    }

    /// Whether a node exists and its `Ready` condition is `True`.
    pub fn node_ready(&self, node: &str) -> bool {
        self.objects[ty("Node")]
            .get(&(String::new(), node.to_string()))
            .is_some_and(|o| node_is_ready(&o.value()))
    }

    /// Deletes an object with Kubernetes semantics:
    /// - objects with finalizers get `deletionTimestamp` and stay until the finalizers are gone;
    /// - a scheduled pod deleted with a grace period on a node that is not Ready stays
    ///   `Terminating` (no kubelet confirms it), as in seed 004's hanging drain; a grace period of 0
    ///   removes it at once; pods on Ready nodes are removed at once (the kubelet is instant here);
    /// - dependents (by `ownerReferences` uid) are deleted (Background/Foreground) or orphaned.
    pub fn delete(
        &mut self,
        t: Ty,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let mut v = self.get(t, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && meta(&v, "uid").as_ref() != Some(uid)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta(&v, "uid").unwrap_or_default()
                ),
            ));
        }
        let has_finalizers = v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let is_pod = TYPES[t].kind == "Pod";
        let node = if is_pod {
            field_value(&v, "spec.nodeName")
        } else {
            String::new()
        };
        let graceful_hang = is_pod
            && opts.grace_period_seconds != Some(0)
            && !node.is_empty()
            && self.objects[ty("Node")].contains_key(&(String::new(), node.clone()))
            && !self.node_ready(&node);
        if has_finalizers || graceful_hang {
            if v["metadata"].get("deletionTimestamp").is_none() {
                v["metadata"]["deletionTimestamp"] = json!(now());
                if is_pod {
                    v["metadata"]["deletionGracePeriodSeconds"] =
                        json!(opts.grace_period_seconds.unwrap_or(30));
                }
                v = self.put(t, v);
            }
            if !(is_pod && opts.grace_period_seconds == Some(0) && !has_finalizers) {
                self.cascade(&v, opts);
                self.reconcile();
                return Ok(self.get(t, ns, name).unwrap_or(v));
            }
        }
        self.remove(t, ns, name);
        self.after_removal(t, &v);
        self.cascade(&v, opts);
        self.reconcile();
        Ok(v)
    }

    fn after_removal(&mut self, t: Ty, v: &Value) {
        if TYPES[t].kind == "Deployment" && self.operator_manages(v) {
            let key = (
                meta(v, "namespace").unwrap_or_default(),
                meta(v, "name").unwrap_or_default(),
            );
            self.pending_operator.push(key);
        }
    }

    fn cascade(&mut self, owner: &Value, opts: &DeleteOpts) {
        let Some(uid) = meta(owner, "uid") else {
            return;
        };
        let orphan = opts.propagation.as_deref() == Some("Orphan");
        for t in 0..TYPES.len() {
            let dependents: Vec<Value> = self.objects[t]
                .values()
                .filter(|o| {
                    o.head()["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(&uid)))
                })
                .map(|o| o.value().into_owned())
                .collect();
            for mut d in dependents {
                let ns = meta(&d, "namespace").unwrap_or_default();
                let name = meta(&d, "name").unwrap_or_default();
                if orphan {
                    let refs: Vec<Value> = d["metadata"]["ownerReferences"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|r| r["uid"].as_str() != Some(&uid))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    d["metadata"]["ownerReferences"] = json!(refs);
                    self.put(t, d);
                } else {
                    let _ = self.delete(
                        t,
                        &ns,
                        &name,
                        &DeleteOpts {
                            propagation: opts.propagation.clone(),
                            ..Default::default()
                        },
                    );
                }
            }
        }
    }

    /// Removes an object whose deletion is pending and whose finalizers are all gone.
    fn finish_if_finalized(&mut self, t: Ty, ns: &str, name: &str) {
        if let Ok(v) = self.get(t, ns, name)
            && v["metadata"].get("deletionTimestamp").is_some()
            && v["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|a| a.is_empty())
            && !(TYPES[t].kind == "Pod" && !field_value(&v, "spec.nodeName").is_empty() && {
                let node = field_value(&v, "spec.nodeName");
                self.objects[ty("Node")].contains_key(&(String::new(), node.clone()))
                    && !self.node_ready(&node)
            })
        {
            self.remove(t, ns, name);
            self.after_removal(t, &v);
        }
    }

    /// `POST pods/NAME/eviction`: checks the PodDisruptionBudgets that select the pod and
    /// deletes it (gracefully) when allowed; 429 `TooManyRequests` when a budget forbids it.
    pub fn evict(&mut self, ns: &str, name: &str, grace: Option<i64>) -> Result<(), ApiError> {
        let pod = self.get(ty("Pod"), ns, name)?;
        if pod["metadata"].get("deletionTimestamp").is_none() {
            let labels = pod["metadata"].get("labels");
            let pdbs: Vec<Value> = self
                .all(ty("PodDisruptionBudget"), Some(ns))
                .into_iter()
                .filter(|p| label_selector_object_matches(p["spec"].get("selector"), labels))
                .collect();
            if pdbs.len() > 1 {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = pdbs.first() {
                let selected: Vec<Value> = self
                    .all(ty("Pod"), Some(ns))
                    .into_iter()
                    .filter(|p| {
                        label_selector_object_matches(
                            pdb["spec"].get("selector"),
                            p["metadata"].get("labels"),
                        )
                    })
                    .collect();
                let expected = selected.len() as i64;
                let healthy = selected.iter().filter(|p| self.pod_healthy(p)).count() as i64;
                let resolve = |v: &Value| -> Option<i64> {
                    match v {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s
                            .strip_suffix('%')
                            .and_then(|p| p.parse::<i64>().ok())
                            .map(|p| (p * expected + 99) / 100),
                        _ => None,
                    }
                };
                let desired = if let Some(min) = pdb["spec"].get("minAvailable").and_then(resolve) {
                    min
                } else if let Some(max) = pdb["spec"].get("maxUnavailable").and_then(resolve) {
                    expected - max
                } else {
                    0
                };
                let this_healthy = self.pod_healthy(&pod);
                let allowed = if this_healthy {
                    healthy > desired
                } else {
                    healthy >= desired
                };
                if !allowed {
                    let pdb_name = meta(pdb, "name").unwrap_or_default();
                    let mut e = ApiError::new(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    );
                    e.causes.push(("DisruptionBudget".into(), format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")));
                    return Err(e);
                }
            }
        }
        self.delete(
            ty("Pod"),
            ns,
            name,
            &DeleteOpts {
                grace_period_seconds: grace,
                ..Default::default()
            },
        )?;
        Ok(())
    }

    fn pod_healthy(&self, p: &Value) -> bool {
        p["metadata"].get("deletionTimestamp").is_none()
            && p["status"]["phase"] == "Running"
            && condition_true(p, "Ready")
            && self.node_ready(&field_value(p, "spec.nodeName"))
    }

    /// Inserts a fixture object as-is (keeping status, uid and timestamps when given).
    pub fn load(&mut self, v: Value) -> Result<(), ApiError> {
        let api_version = v["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if kind == "List" {
            for item in v["items"].as_array().cloned().unwrap_or_default() {
                self.load(item)?;
            }
            return Ok(());
        }
        let t = type_by_kind(&api_version, &kind).ok_or_else(|| {
            ApiError::bad_request(format!("unknown kind {api_version}/{kind} in fixture"))
        })?;
        let ns = meta(&v, "namespace").unwrap_or_default();
        self.create(t, &ns, v).map(|_| ())
    }

    // ----- controllers --------------------------------------------------------------------

    /// Runs the always-on semantics and the enabled controllers to a fixed point.
    pub fn reconcile(&mut self) {
        if self.reconciling || self.bulk {
            return;
        }
        self.reconciling = true;
        for _ in 0..20 {
            let before = self.rv;
            self.pod_gc();
            self.kubelet_confirms_deletions();
            self.pvc_protection();
            self.pv_release();
            self.operator();
            if self.controllers.deployment {
                self.deployment_controller();
            }
            if self.controllers.statefulset {
                self.statefulset_controller();
            }
            if self.controllers.scheduler {
                self.scheduler();
            }
            if self.rv == before {
                break;
            }
        }
        self.reconciling = false;
    }

    /// Kubelets of Ready nodes finish the graceful deletion of their pods (at once, here).
    fn kubelet_confirms_deletions(&mut self) {
        let pt = ty("Pod");
        let done: Vec<Key> = self.objects[pt]
            .iter()
            .filter(|(_, o)| {
                o.head()["metadata"].get("deletionTimestamp").is_some()
                    && o.head()["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|a| a.is_empty())
                    && self.node_ready(&field_value(o.head(), "spec.nodeName"))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in done {
            if let Some(v) = self.remove(pt, &ns, &name) {
                self.cascade(&v, &DeleteOpts::default());
            }
        }
    }

    /// Pod GC: pods bound to a node that no longer exists are removed.
    fn pod_gc(&mut self) {
        let pt = ty("Pod");
        let nodes = &self.objects[ty("Node")];
        let orphans: Vec<Key> = self.objects[pt]
            .iter()
            .filter(|(_, o)| {
                let n = field_value(o.head(), "spec.nodeName");
                !n.is_empty() && !nodes.contains_key(&(String::new(), n))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in orphans {
            if let Some(v) = self.remove(pt, &ns, &name) {
                self.cascade(&v, &DeleteOpts::default());
            }
        }
    }

    fn pod_claims(p: &Value) -> Vec<String> {
        p["spec"]["volumes"]
            .as_array()
            .map(|vols| {
                vols.iter()
                    .filter_map(|v| {
                        v["persistentVolumeClaim"]["claimName"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// PVC protection: a deleted PVC keeps its finalizer while a pod that is not finished uses it.
    fn pvc_protection(&mut self) {
        let ct = ty("PersistentVolumeClaim");
        let pending: Vec<Key> = self.objects[ct]
            .iter()
            .filter(|(_, o)| o.head()["metadata"].get("deletionTimestamp").is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in pending {
            let in_use = self.objects[ty("Pod")].values().any(|o| {
                meta(o.head(), "namespace").as_deref() == Some(ns.as_str())
                    && !matches!(
                        o.head()["status"]["phase"].as_str(),
                        Some("Succeeded" | "Failed")
                    )
                    && Self::pod_claims(&o.value()).iter().any(|c| c == &name)
            });
            if !in_use && let Ok(mut v) = self.get(ct, &ns, &name) {
                strip_finalizer(&mut v, "kubernetes.io/pvc-protection");
                self.put(ct, v);
                self.finish_if_finalized(ct, &ns, &name);
            }
        }
    }

    /// PV lifecycle: when the bound PVC is gone, a `Delete` PV is removed (local-path deletes
    /// the directory), a `Retain` PV becomes `Released`.
    fn pv_release(&mut self) {
        let vt = ty("PersistentVolume");
        let ct = ty("PersistentVolumeClaim");
        // Decided on the heads (claimRef and the claim's uid), so that compact mode parses only
        // the PVs it acts on.
        let claims = &self.objects[ct];
        let released: Vec<String> = self.objects[vt]
            .values()
            .filter_map(|o| {
                let pv = o.head();
                let claim_ns = field_value(pv, "spec.claimRef.namespace");
                let claim = field_value(pv, "spec.claimRef.name");
                let claim_uid = field_value(pv, "spec.claimRef.uid");
                if claim.is_empty() {
                    return None;
                }
                let gone = match claims.get(&Self::key(ct, &claim_ns, &claim)) {
                    None => true,
                    Some(c) => {
                        !claim_uid.is_empty()
                            && meta(c.head(), "uid").as_deref() != Some(claim_uid.as_str())
                    }
                };
                gone.then(|| meta(pv, "name").unwrap_or_default())
            })
            .collect();
        for name in released {
            let Ok(mut pv) = self.get(vt, "", &name) else {
                continue;
            };
            if pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" {
                if pv["status"]["phase"] != "Released" {
                    pv["status"]["phase"] = json!("Released");
                    self.put(vt, pv);
                }
            } else {
                strip_finalizer(&mut pv, "kubernetes.io/pv-protection");
                self.put(vt, pv);
                let _ = self.delete(vt, "", &name, &DeleteOpts::default());
            }
        }
    }

    fn operator(&mut self) {
        let dt = ty("Deployment");
        let ct = ty("PersistentVolumeClaim");
        for (ns, name) in std::mem::take(&mut self.pending_operator) {
            let Some(template) = self
                .operator_memory
                .get(&(ns.clone(), name.clone()))
                .cloned()
            else {
                continue;
            };
            for claim in Self::pod_claims(&template["spec"]["template"]) {
                if self.get(ct, &ns, &claim).is_err()
                    && let Some(pvc) = self.pvc_memory.get(&(ns.clone(), claim.clone())).cloned()
                {
                    let _ = self.create(ct, &ns, pvc);
                }
            }
            if self.get(dt, &ns, &name).is_err() {
                let _ = self.create(dt, &ns, template);
            }
        }
    }

    fn owned_by<'a>(
        &'a self,
        t: Ty,
        ns: &'a str,
        uid: &'a str,
    ) -> impl Iterator<Item = Value> + 'a {
        self.objects[t]
            .values()
            .filter(move |o| {
                let v = o.head();
                meta(v, "namespace").as_deref() == Some(ns)
                    && v["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
            })
            .map(|o| o.value().into_owned())
    }

    fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
        json!([{"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    }

    fn statefulset_controller(&mut self) {
        let st = ty("StatefulSet");
        let pt = ty("Pod");
        let ct = ty("PersistentVolumeClaim");
        for sts in self.all(st, None) {
            if sts["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let ns = meta(&sts, "namespace").unwrap_or_default();
            let name = meta(&sts, "name").unwrap_or_default();
            let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
            for i in 0..replicas {
                let pod_name = format!("{name}-{i}");
                if self.get(pt, &ns, &pod_name).is_ok() {
                    continue;
                }
                // Like the real controller: no pod while one of its claims is being deleted
                // ("pvc ... is being deleted"); it is recreated once the claim is gone.
                let claims_terminating = sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|tmpl| {
                        let claim =
                            format!("{}-{pod_name}", meta(tmpl, "name").unwrap_or_default());
                        self.get(ct, &ns, &claim)
                            .is_ok_and(|c| c["metadata"].get("deletionTimestamp").is_some())
                    });
                if claims_terminating {
                    continue;
                }
                let mut volumes = sts["spec"]["template"]["spec"]["volumes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for tmpl in sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let tname = meta(&tmpl, "name").unwrap_or_default();
                    let claim = format!("{tname}-{pod_name}");
                    if self.get(ct, &ns, &claim).is_err() {
                        let mut pvc = json!({"metadata": {"name": claim, "namespace": ns,
                            "labels": sts["spec"]["selector"]["matchLabels"].clone()},
                            "spec": tmpl["spec"].clone(), "status": {"phase": "Pending"}});
                        if pvc["metadata"]["labels"].is_null() {
                            pvc["metadata"]
                                .as_object_mut()
                                .expect("obj")
                                .remove("labels");
                        }
                        let _ = self.create(ct, &ns, pvc);
                    }
                    volumes.retain(|v| v["name"].as_str() != Some(tname.as_str()));
                    volumes.push(
                        json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}),
                    );
                }
                let mut spec = sts["spec"]["template"]["spec"].clone();
                spec["volumes"] = json!(volumes);
                spec["hostname"] = json!(pod_name);
                let mut labels = sts["spec"]["template"]["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
                labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
                let pod = json!({"metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                    "ownerReferences": Self::owner_ref(&sts, "StatefulSet", "apps/v1")},
                    "spec": spec, "status": {"phase": "Pending"}});
                let _ = self.create(pt, &ns, pod);
            }
            self.update_workload_status(st, &sts, replicas);
        }
    }

    fn update_workload_status(&mut self, t: Ty, w: &Value, replicas: i64) {
        let ns = meta(w, "namespace").unwrap_or_default();
        let uid = meta(w, "uid").unwrap_or_default();
        let pods: Vec<Value> = if TYPES[t].kind == "Deployment" {
            let rs_uids: Vec<String> = self
                .owned_by(ty("ReplicaSet"), &ns, &uid)
                .filter_map(|r| meta(&r, "uid"))
                .collect();
            rs_uids
                .iter()
                .flat_map(|u| self.owned_by(ty("Pod"), &ns, u).collect::<Vec<_>>())
                .collect()
        } else {
            self.owned_by(ty("Pod"), &ns, &uid).collect()
        };
        let ready = pods.iter().filter(|p| self.pod_healthy(p)).count() as i64;
        let status = json!({"replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
                            "updatedReplicas": pods.len(), "observedGeneration": w["metadata"]["generation"]});
        let _ = replicas;
        let mut cur = self
            .get(t, &ns, &meta(w, "name").unwrap_or_default())
            .unwrap_or(w.clone());
        let mut merged = cur["status"].clone();
        crate::select::merge_patch(&mut merged, &status);
        if cur["status"] != merged {
            cur["status"] = merged;
            self.put(t, cur);
        }
    }

    fn deployment_controller(&mut self) {
        let dt = ty("Deployment");
        let rt = ty("ReplicaSet");
        let pt = ty("Pod");
        for d in self.all(dt, None) {
            if d["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let ns = meta(&d, "namespace").unwrap_or_default();
            let name = meta(&d, "name").unwrap_or_default();
            let uid = meta(&d, "uid").unwrap_or_default();
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let existing: Vec<Value> = self.owned_by(rt, &ns, &uid).collect();
            let rs = match existing.into_iter().next() {
                Some(mut rs) => {
                    // A changed pod spec (e.g. a spread constraint added) is carried into the
                    // ReplicaSet's template, so new pods get it; existing pods stay (a real
                    // Deployment would roll them, which the planner does not rely on).
                    let want_spec = &d["spec"]["template"]["spec"];
                    let mut changed = false;
                    if &rs["spec"]["template"]["spec"] != want_spec {
                        rs["spec"]["template"]["spec"] = want_spec.clone();
                        changed = true;
                    }
                    if rs["spec"]["replicas"].as_i64() != Some(replicas) {
                        rs["spec"]["replicas"] = json!(replicas);
                        changed = true;
                    }
                    if changed {
                        self.put(rt, rs.clone());
                    }
                    rs
                }
                None => {
                    let hash = rand_suffix(self.uid_seq + 17);
                    let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
                    if !labels.is_object() {
                        labels = json!({});
                    }
                    labels["pod-template-hash"] = json!(hash);
                    let mut template = d["spec"]["template"].clone();
                    template["metadata"]["labels"] = labels.clone();
                    let rs = json!({"metadata": {"name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                        "ownerReferences": Self::owner_ref(&d, "Deployment", "apps/v1")},
                        "spec": {"replicas": replicas, "selector": d["spec"]["selector"], "template": template}});
                    match self.create(rt, &ns, rs) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                }
            };
            let rs_uid = meta(&rs, "uid").unwrap_or_default();
            let rs_name = meta(&rs, "name").unwrap_or_default();
            let pods: Vec<Value> = self
                .owned_by(pt, &ns, &rs_uid)
                .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
                .collect();
            let have = pods.len() as i64;
            for k in have..replicas {
                let mut template = rs["spec"]["template"].clone();
                template["metadata"]["generateName"] = json!(format!("{rs_name}-"));
                template["metadata"]["namespace"] = json!(ns);
                template["metadata"]["ownerReferences"] =
                    Self::owner_ref(&rs, "ReplicaSet", "apps/v1");
                template["status"] = json!({"phase": "Pending"});
                let _ = k;
                let _ = self.create(pt, &ns, template);
            }
            for p in pods.iter().skip(replicas.max(0) as usize) {
                let pn = meta(p, "name").unwrap_or_default();
                let _ = self.delete(pt, &ns, &pn, &DeleteOpts::default());
            }
            self.update_workload_status(dt, &d, replicas);
        }
    }

    fn scheduler(&mut self) {
        let pt = ty("Pod");
        let ct = ty("PersistentVolumeClaim");
        let vt = ty("PersistentVolume");
        let pending: Vec<Value> = self.objects[pt]
            .values()
            .filter(|o| {
                let p = o.head();
                field_value(p, "spec.nodeName").is_empty()
                    && p["metadata"].get("deletionTimestamp").is_none()
            })
            .map(|o| o.value().into_owned())
            .collect();
        for mut pod in pending {
            let ns = meta(&pod, "namespace").unwrap_or_default();
            let mut candidates: Vec<String> = self.objects[ty("Node")]
                .values()
                .filter(|n| {
                    let n = n.value();
                    node_is_ready(&n) && n["spec"]["unschedulable"] != true
                })
                .filter_map(|n| meta(n.head(), "name"))
                .collect();
            let mut reason = String::new();
            let mut unbound = Vec::new();
            for claim in Self::pod_claims(&pod) {
                match self.get(ct, &ns, &claim) {
                    Err(_) => reason = format!("persistentvolumeclaim \"{claim}\" not found"),
                    Ok(pvc) if pvc["metadata"].get("deletionTimestamp").is_some() => {
                        reason = format!("persistentvolumeclaim \"{claim}\" is being deleted")
                    }
                    Ok(pvc) => {
                        let vol = field_value(&pvc, "spec.volumeName");
                        if vol.is_empty() {
                            unbound.push(pvc);
                        } else if let Ok(pv) = self.get(vt, "", &vol) {
                            if let Some(n) = pv_local_node(&pv) {
                                candidates.retain(|c| *c == n);
                                if candidates.is_empty() {
                                    reason = "node(s) had volume node affinity conflict".into();
                                }
                            }
                        } else {
                            reason = format!("persistentvolume \"{vol}\" not found");
                        }
                    }
                }
            }
            let load = |n: &String| {
                self.objects[pt]
                    .values()
                    .filter(|p| field_value(p.head(), "spec.nodeName") == *n)
                    .count()
            };
            // topologySpreadConstraints / pod anti-affinity on the hostname: prefer the nodes
            // with the fewest pods of the same owner (what maxSkew 1 leads to), then load.
            let spreads = pod["spec"]["topologySpreadConstraints"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["topologyKey"] == "kubernetes.io/hostname")
                })
                || pod["spec"]["affinity"]["podAntiAffinity"].is_object();
            let owner = pod["metadata"]["ownerReferences"][0]["uid"].clone();
            let siblings = |n: &String| {
                if !spreads || owner.is_null() {
                    return 0;
                }
                self.objects[pt]
                    .values()
                    .filter(|p| {
                        field_value(p.head(), "spec.nodeName") == *n
                            && p.head()["metadata"]["ownerReferences"][0]["uid"] == owner
                    })
                    .count()
            };
            candidates.sort_by_key(|n| (siblings(n), load(n), n.clone()));
            let chosen = if reason.is_empty() {
                candidates.first().cloned()
            } else {
                None
            };
            let pname = meta(&pod, "name").unwrap_or_default();
            match chosen {
                None => {
                    let msg = if reason.is_empty() {
                        "0 nodes are available".to_string()
                    } else {
                        reason
                    };
                    let cond = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]);
                    if pod["status"]["conditions"] != cond {
                        pod["status"]["conditions"] = cond;
                        pod["status"]["phase"] = json!("Pending");
                        self.put(pt, pod);
                    }
                }
                Some(node) => {
                    for mut pvc in unbound {
                        let claim = meta(&pvc, "name").unwrap_or_default();
                        let pv_name = format!("pvc-{}", meta(&pvc, "uid").unwrap_or_default());
                        let storage = pvc["spec"]["resources"]["requests"]["storage"].clone();
                        let pv = json!({"metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
                            "spec": {"capacity": {"storage": storage}, "accessModes": pvc["spec"]["accessModes"],
                                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": pvc["spec"]["storageClassName"],
                                "hostPath": {"path": format!("/var/lib/rancher/k3s/storage/{pv_name}_{ns}_{claim}"), "type": "DirectoryOrCreate"},
                                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": pvc["metadata"]["uid"]},
                                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                            "status": {"phase": "Bound"}});
                        let _ = self.create(vt, "", pv);
                        pvc["spec"]["volumeName"] = json!(pv_name);
                        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] =
                            json!(node);
                        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] =
                            json!("yes");
                        pvc["status"] = json!({"phase": "Bound", "accessModes": pvc["spec"]["accessModes"], "capacity": {"storage": storage}});
                        self.put(ct, pvc);
                    }
                    pod["spec"]["nodeName"] = json!(node);
                    pod["status"] = json!({"phase": "Running", "startTime": now(), "podIP": "10.42.0.1",
                        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]});
                    let _ = pname;
                    self.put(pt, pod);
                }
            }
        }
    }
}

fn strip_finalizer(v: &mut Value, fin: &str) {
    if let Some(a) = v["metadata"]["finalizers"].as_array_mut() {
        a.retain(|f| f != fin);
    }
}

fn clean_for_recreate(v: &mut Value) {
    if let Some(m) = v["metadata"].as_object_mut() {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "finalizers",
            "managedFields",
        ] {
            m.remove(f);
        }
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("pv.kubernetes.io/bind-completed");
            a.remove("volume.kubernetes.io/selected-node");
        }
    }
    if let Some(s) = v["spec"].as_object_mut() {
        s.remove("volumeName");
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if v["kind"] == "PersistentVolumeClaim" {
        v["status"] = json!({"phase": "Pending"});
    }
}

/// Whether a condition of `type` is `True` in `status.conditions`.
pub fn condition_true(v: &Value, t: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == t && c["status"] == "True"))
}

/// Whether a Node object's `Ready` condition is `True`.
pub fn node_is_ready(v: &Value) -> bool {
    condition_true(v, "Ready")
}

/// The node a local PV is pinned to by `nodeAffinity` on `kubernetes.io/hostname`.
pub fn pv_local_node(pv: &Value) -> Option<String> {
    for term in pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"].as_array()? {
        for e in term["matchExpressions"].as_array().into_iter().flatten() {
            if e["key"] == "kubernetes.io/hostname" && e["operator"] == "In" {
                return e["values"]
                    .get(0)
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
    }
    None
}
