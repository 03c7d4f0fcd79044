//! [`super::RebindPolicy::DeploymentScaleDownUp`]: scale to 0, recreate the claim empty, scale back.
//!
//! The original replica count is kept in the Deployment's annotation [`ANN`] until the scale
//! back, so an interrupted rebind resumes from it.

use std::time::Duration;

use serde_json::{Value, json};

use super::rebind::{OwnerMap, RebindReport, RebindRequest, claim_path};
use crate::model::*;
use crate::observe::{SPod, SPvc, resolve_owner};
use crate::wait::{self, Deadline};
use crate::{KubeError, KubeProvider};

/// Where the replica count before the rebind is kept.
const ANN: &str = "k3splan.io/replicas-before-rebind";

impl KubeProvider {
    pub(super) async fn rebind_scale(
        &self,
        req: &RebindRequest,
        pvc: Option<SPvc>,
        on_lost: bool,
        users: Vec<SPod>,
        rs_owner: &OwnerMap,
        mut report: RebindReport,
    ) -> Result<RebindReport, KubeError> {
        let ns = &req.namespace;
        let deadline = Deadline::after(req.deadline);
        let Some(d) = self
            .deployment_to_scale(req, &users, rs_owner, on_lost)
            .await?
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
        self.merge_patch(&dpath, &patch).await?;
        self.delete_pods(&users, &mut report).await?;
        let pvc_path = claim_path(req);
        if on_lost {
            report.deleted_pvc = self
                .recreate_claim_empty(req, pvc.as_ref(), &deadline)
                .await?;
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
        self.merge_patch(&dpath, &patch).await?;
        report.rescaled = Some((0, original));
        report.outcome = ActOutcome::Changed;
        Ok(report)
    }

    /// The Deployment of the claim's pods, else one already annotated by an interrupted run,
    /// else (claim still on the lost node) one that mounts the claim.
    async fn deployment_to_scale(
        &self,
        req: &RebindRequest,
        users: &[SPod],
        rs_owner: &OwnerMap,
        on_lost: bool,
    ) -> Result<Option<Value>, KubeError> {
        let deploys: Vec<Value> = match self
            .raw(
                http::Method::GET,
                &format!("/apis/apps/v1/namespaces/{}/deployments", req.namespace),
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
        Ok(deploys
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
            .cloned())
    }

    /// Deletes the claim, waits (until the deadline) until it is gone, and creates it again
    /// empty from its spec (without `volumeName`), so that it binds on a schedulable node.
    /// Returns whether the delete removed it.
    async fn recreate_claim_empty(
        &self,
        req: &RebindRequest,
        pvc: Option<&SPvc>,
        deadline: &Deadline,
    ) -> Result<bool, KubeError> {
        let ns = &req.namespace;
        let pvc_path = claim_path(req);
        // Keep the spec to recreate the claim empty.
        let full = self
            .raw(http::Method::GET, &pvc_path, "application/json", None)
            .await?;
        let deleted = self.delete_raw(&pvc_path, None, None).await?;
        let gone = async || {
            Ok::<_, KubeError>(match self.get_slim::<SPvc>(&pvc_path).await? {
                Some(cur) => pvc.is_none_or(|p| p.metadata.uid != cur.metadata.uid),
                None => true,
            })
        };
        if !wait::poll_until(deadline, Duration::from_millis(200), gone).await? {
            return Err(KubeError::Timeout {
                endpoint: self.endpoint.clone(),
                what: format!("PVC {ns}/{} to be deleted", req.pvc),
                after: req.deadline,
            });
        }
        let Some(full) = full else {
            return Ok(deleted);
        };
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
            Ok(_) | Err(KubeError::Api { code: 409, .. }) => Ok(deleted),
            Err(e) => Err(e),
        }
    }
}
