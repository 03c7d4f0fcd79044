//! Actions: cordon, uncordon, drain, delete node, rebind a local volume, add-on replicas/spread.
//! Every action is idempotent: doing it again once done is [`crate::ActOutcome::AlreadyDone`].
//!
//! One file per concern: [`nodes`] (cordon, Ready condition, delete), [`drain`] (evict or
//! force-delete a node's pods), [`rebind`] and [`rebind_scale`] (give a lost node's local volume
//! back to its workload), [`addons`] (replicas and spread). Requests go through
//! `KubeProvider::raw` here.

mod addons;
mod drain;
mod nodes;
mod rebind;
mod rebind_scale;

use serde_json::{Value, json};

use crate::observe::SPod;
use crate::{KubeError, KubeProvider};

pub use addons::{AddonChange, AddonMethod};
pub use drain::{BlockedPod, DrainMode, DrainOptions, DrainReport};
pub use rebind::{
    DEFAULT_MIN_NOT_READY, HostGoneEvidence, RebindPolicy, RebindReport, RebindRequest,
};

/// The API path of a pod.
pub(super) fn pod_path(p: &SPod) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        p.metadata.namespace, p.metadata.name
    )
}

pub(super) fn pod_key(p: &SPod) -> String {
    format!("{}/{}", p.metadata.namespace, p.metadata.name)
}

impl KubeProvider {
    /// Sends a raw JSON request; `Ok(None)` on 404.
    pub(super) async fn raw(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, KubeError> {
        let call = format!("{method} {path}");
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(
                body.map(|b| serde_json::to_vec(b).expect("json"))
                    .unwrap_or_default(),
            )
            .expect("request");
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.map_err(&call, e)),
        }
    }

    pub(super) async fn delete_raw(
        &self,
        path: &str,
        grace: Option<i64>,
        propagation: Option<&str>,
    ) -> Result<bool, KubeError> {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = grace {
            body["gracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = propagation {
            body["propagationPolicy"] = json!(p);
        }
        Ok(self
            .raw(http::Method::DELETE, path, "application/json", Some(&body))
            .await?
            .is_some())
    }

    /// A JSON merge patch of the object at `path`.
    pub(super) async fn merge_patch(&self, path: &str, patch: &Value) -> Result<(), KubeError> {
        self.raw(
            http::Method::PATCH,
            path,
            "application/merge-patch+json",
            Some(patch),
        )
        .await
        .map(|_| ())
    }
}
