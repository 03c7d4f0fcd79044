//! The object store and the API semantics: resource versions, uids, selectors, pagination,
//! graceful deletion, finalizers, garbage collection, evictions and the optional controllers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

mod controllers;
mod crd;
mod delete;
mod obj;
mod types;

use controllers::*;
pub use crd::{CRD_GROUPS, crd_name};
use obj::*;
pub use types::*;

use crate::select::{
    FieldReq, LabelReq, field_value, fields_match, label_selector_object_matches, labels_match,
};

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
        let v = Self::patched(t, name, &old, content_type, body)?;
        self.replace(t, ns, name, v)
    }

    /// `old` with a patch applied (409 when the patch names a stale `resourceVersion`).
    fn patched(
        t: Ty,
        name: &str,
        old: &Value,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
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
            && Some(rv) != meta(old, "resourceVersion").as_deref()
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
        Ok(v)
    }

    /// `POST` as the API server's create strategies do it (`PrepareForCreate`): the uid is
    /// always the server's (a client's `metadata.uid` is ignored), and `status` is reset for
    /// the kinds whose status is written by controllers and kubelets through the `status`
    /// subresource: a Pod starts `Pending` (kubernetes pkg/registry/core/pod/strategy.go:
    /// `pod.Status = api.PodStatus{Phase: api.PodPending, ...}`), a PV and a PVC start
    /// `Pending` with an otherwise empty status (core/persistentvolume/strategy.go:
    /// `pv.Status = api.PersistentVolumeStatus{}`, `VolumePending`; likewise the claim), and
    /// workloads start with an empty status. A Node keeps the status it is created with
    /// (core/node/strategy.go: "Nodes allow *all* fields, including status, to be set on
    /// create": the kubelet registers that way). [`Self::create`] without this is how
    /// fixtures and the controllers write (straight into storage).
    pub fn create_via_api(&mut self, t: Ty, ns: &str, mut v: Value) -> Result<Value, ApiError> {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("uid");
        }
        if let Some(status) = Self::status_on_create(TYPES[t].kind) {
            match status {
                Value::Null => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("status");
                    }
                }
                s => v["status"] = s,
            }
        }
        self.create(t, ns, v)
    }

    /// The status a create through the API starts with (`None`: kept as sent).
    fn status_on_create(kind: &str) -> Option<Value> {
        match kind {
            "Node" => None,
            "Pod" | "PersistentVolumeClaim" | "PersistentVolume" => {
                Some(json!({"phase": "Pending"}))
            }
            _ => Some(Value::Null),
        }
    }

    /// `PUT`/`PATCH` through the API: on the object itself, `status` is kept as it was (the
    /// update strategies' `PrepareForUpdate`: `newPod.Status = oldPod.Status`, the same for
    /// nodes, volumes, claims and workloads); on the `status` subresource, only `status`
    /// changes (the status strategies keep `spec` and `metadata`).
    pub fn update_via_api(
        &mut self,
        t: Ty,
        ns: &str,
        name: &str,
        patch: Option<(&str, &Value)>,
        replacement: Option<Value>,
        status_subresource: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(t, ns, name)?;
        let mut v = match (patch, replacement) {
            (Some((ct, body)), _) => Self::patched(t, name, &old, ct, body)?,
            (None, Some(v)) => v,
            (None, None) => return Err(ApiError::bad_request("empty update")),
        };
        if status_subresource {
            let mut out = old.clone();
            out["status"] = v.get("status").cloned().unwrap_or(Value::Null);
            if let Some(rv) = meta(&v, "resourceVersion") {
                out["metadata"]["resourceVersion"] = json!(rv);
            }
            if out["status"].is_null()
                && let Some(o) = out.as_object_mut()
            {
                o.remove("status");
            }
            v = out;
        } else {
            match old.get("status") {
                Some(s) => v["status"] = s.clone(),
                None => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
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
