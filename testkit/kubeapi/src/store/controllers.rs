//! The optional controllers, run by [`Store::reconcile`]: kubelet confirmations, pod GC,
//! PVC protection, PV release, the operator, StatefulSets, Deployments, the scheduler.

use super::*;

impl Store {
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
            self.adopt_orphans();
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
    pub(super) fn kubelet_confirms_deletions(&mut self) {
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
    pub(super) fn pod_gc(&mut self) {
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

    pub(super) fn pod_claims(p: &Value) -> Vec<String> {
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
    pub(super) fn pvc_protection(&mut self) {
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
    pub(super) fn pv_release(&mut self) {
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

    pub(super) fn operator(&mut self) {
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

    /// Adoption, as the real controllers do it (`ClaimPods`/`ClaimReplicaSets` of
    /// kubernetes pkg/controller/controller_ref_manager.go): an object with no controller
    /// owner whose labels match a workload's selector gets that workload as its controller
    /// owner: pods by ReplicaSets, DaemonSets and StatefulSets (a StatefulSet only its own
    /// `NAME-ORDINAL` pods), ReplicaSets by Deployments. How objects created through the API
    /// without owner references (the fixture loader) end up owned.
    pub(super) fn adopt_orphans(&mut self) {
        let pt = ty("Pod");
        for (owner_kind, child) in [
            ("ReplicaSet", pt),
            ("DaemonSet", pt),
            ("StatefulSet", pt),
            ("Deployment", ty("ReplicaSet")),
        ] {
            let ot = ty(owner_kind);
            for owner in self.all(ot, None) {
                if owner["metadata"].get("deletionTimestamp").is_some() {
                    continue;
                }
                let ns = meta(&owner, "namespace").unwrap_or_default();
                let oname = meta(&owner, "name").unwrap_or_default();
                let sel = owner["spec"].get("selector");
                let orphans: Vec<Value> = self
                    .all(child, Some(&ns))
                    .into_iter()
                    .filter(|c| {
                        c["metadata"].get("deletionTimestamp").is_none()
                            && !c["metadata"]["ownerReferences"]
                                .as_array()
                                .is_some_and(|r| r.iter().any(|r| r["controller"] == true))
                            && label_selector_object_matches(sel, c["metadata"].get("labels"))
                            && (owner_kind != "StatefulSet"
                                || meta(c, "name")
                                    .and_then(|n| {
                                        n.strip_prefix(&format!("{oname}-"))
                                            .map(|o| o.parse::<u32>().is_ok())
                                    })
                                    .unwrap_or(false))
                    })
                    .collect();
                for mut c in orphans {
                    let mut refs = c["metadata"]["ownerReferences"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    refs.extend(
                        Self::owner_ref(&owner, owner_kind, "apps/v1")
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                    c["metadata"]["ownerReferences"] = json!(refs);
                    self.put(child, c);
                }
            }
        }
    }

    pub(super) fn owned_by<'a>(
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

    pub(super) fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
        json!([{"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    }

    pub(super) fn statefulset_controller(&mut self) {
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
            // The revision of the current template, as the real controller records it
            // (a ControllerRevision `NAME-HASH`; its name is the pods'
            // `controller-revision-hash` label). No ControllerRevision objects here.
            let hash = {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in sts["spec"]["template"].to_string().bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x100_0000_01b3);
                }
                rand_suffix(h) + &rand_suffix(h >> 7)
            };
            let revision = format!("{name}-{hash}");
            if let Ok(mut cur) = self.get(st, &ns, &name)
                && cur["status"]["updateRevision"] != json!(revision)
            {
                cur["status"]["updateRevision"] = json!(revision);
                cur["status"]["currentRevision"] = json!(revision);
                self.put(st, cur);
            }
        }
    }

    pub(super) fn update_workload_status(&mut self, t: Ty, w: &Value, replicas: i64) {
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

    pub(super) fn deployment_controller(&mut self) {
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

    pub(super) fn scheduler(&mut self) {
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

pub(super) fn strip_finalizer(v: &mut Value, fin: &str) {
    if let Some(a) = v["metadata"]["finalizers"].as_array_mut() {
        a.retain(|f| f != fin);
    }
}

pub(super) fn clean_for_recreate(v: &mut Value) {
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
