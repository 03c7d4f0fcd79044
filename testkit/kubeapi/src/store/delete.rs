//! Deletion with Kubernetes semantics (finalizers, grace periods, cascading), evictions and
//! bulk loading.

use super::*;

impl Store {
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

    pub(super) fn after_removal(&mut self, t: Ty, v: &Value) {
        if TYPES[t].kind == "Deployment" && self.operator_manages(v) {
            let key = (
                meta(v, "namespace").unwrap_or_default(),
                meta(v, "name").unwrap_or_default(),
            );
            self.pending_operator.push(key);
        }
    }

    pub(super) fn cascade(&mut self, owner: &Value, opts: &DeleteOpts) {
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
    pub(super) fn finish_if_finalized(&mut self, t: Ty, ns: &str, name: &str) {
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

    pub(super) fn pod_healthy(&self, p: &Value) -> bool {
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
}
