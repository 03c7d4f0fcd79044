//! [`super::RebindPolicy::DeploymentScaleDownUp`]: scale to 0, recreate the claim empty, scale back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::pod_key;
use super::rebind::{RebindReport, RebindRequest};
use crate::model::*;
use crate::observe::{SPod, SPvc, resolve_owner};
use crate::{KubeError, KubeProvider};

impl KubeProvider {
    pub(super) async fn rebind_scale(
        &self,
        req: &RebindRequest,
        pvc: Option<SPvc>,
        on_lost: bool,
        users: Vec<SPod>,
        rs_owner: &HashMap<(String, String), crate::observe::SOwner>,
        mut report: RebindReport,
    ) -> Result<RebindReport, KubeError> {
        const ANN: &str = "k3splan.io/replicas-before-rebind";
        let ns = &req.namespace;
        let start = Instant::now();
        // Find the Deployment: from the pods, else one already annotated by an interrupted run.
        let deploys: Vec<Value> = match self
            .raw(
                http::Method::GET,
                &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                "application/json",
                None,
            )
            .await?
        {
            Some(v) => v["items"].as_array().cloned().unwrap_or_default(),
            None => vec![],
        };
        let by_pod = users
            .iter()
            .find_map(|p| resolve_owner(&p.metadata, rs_owner))
            .map(|o| o.name);
        let mounts = |d: &Value| {
            d["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .is_some_and(|v| {
                    v.iter()
                        .any(|v| v["persistentVolumeClaim"]["claimName"] == req.pvc.as_str())
                })
        };
        let Some(d) = deploys
            .iter()
            .find(|d| {
                Some(
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ) == by_pod
                    || (mounts(d) && !d["metadata"]["annotations"][ANN].is_null())
            })
            .or_else(|| deploys.iter().find(|d| mounts(d) && on_lost))
        else {
            return Ok(report);
        };
        let name = d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
        let resumed = d["metadata"]["annotations"][ANN]
            .as_str()
            .and_then(|s| s.parse::<i32>().ok());
        if !on_lost && resumed.is_none() {
            return Ok(report);
        }
        let original = resumed.unwrap_or(d["spec"]["replicas"].as_i64().unwrap_or(1) as i32);
        let patch = json!({"metadata": {"annotations": {ANN: original.to_string()}}, "spec": {"replicas": 0}});
        self.raw(
            http::Method::PATCH,
            &dpath,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
        for p in &users {
            let path = format!("/api/v1/namespaces/{ns}/pods/{}", p.metadata.name);
            if self.delete_raw(&path, Some(0), Some("Background")).await? {
                report.deleted_pods.push(pod_key(p));
            }
        }
        let pvc_path = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{}", req.pvc);
        if on_lost {
            // Keep the spec to recreate the claim empty.
            let full = self
                .raw(http::Method::GET, &pvc_path, "application/json", None)
                .await?;
            report.deleted_pvc = self.delete_raw(&pvc_path, None, None).await?;
            loop {
                match self.get_slim::<SPvc>(&pvc_path).await? {
                    Some(cur)
                        if pvc
                            .as_ref()
                            .is_some_and(|p| p.metadata.uid == cur.metadata.uid) => {}
                    _ => break,
                }
                if start.elapsed() > req.deadline {
                    return Err(KubeError::Timeout {
                        endpoint: self.endpoint.clone(),
                        what: format!("PVC {ns}/{} to be deleted", req.pvc),
                        after: req.deadline,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Some(full) = full {
                let mut spec = full["spec"].clone();
                if let Some(s) = spec.as_object_mut() {
                    s.remove("volumeName");
                }
                let mut meta = json!({"name": req.pvc, "namespace": ns});
                if let Some(l) = full["metadata"].get("labels") {
                    meta["labels"] = l.clone();
                }
                let body = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec});
                let create = self
                    .raw(
                        http::Method::POST,
                        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
                        "application/json",
                        Some(&body),
                    )
                    .await;
                match create {
                    Ok(_) | Err(KubeError::Api { code: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        } else if self.get_slim::<SPvc>(&pvc_path).await?.is_none() {
            return Err(KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!(
                    "PVC {ns}/{} to scale {name} back up with (an interrupted rebind lost its spec)",
                    req.pvc
                ),
            });
        }
        let patch =
            json!({"metadata": {"annotations": {ANN: null}}, "spec": {"replicas": original}});
        self.raw(
            http::Method::PATCH,
            &dpath,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?;
        report.rescaled = Some((0, original));
        report.outcome = ActOutcome::Changed;
        Ok(report)
    }
}
