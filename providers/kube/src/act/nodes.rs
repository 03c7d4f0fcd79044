//! Nodes: cordon, uncordon, delete, and their Ready condition.

use serde_json::{Value, json};

use crate::model::*;
use crate::{KubeError, KubeProvider};

impl KubeProvider {
    pub(super) async fn node_readiness(&self, node: &str) -> Result<Option<Readiness>, KubeError> {
        Ok(self.ready_condition(node).await?.map(|(r, _)| r))
    }

    /// The Ready condition of a node: `None` when the Node does not exist; else its status
    /// and `lastTransitionTime`.
    pub(super) async fn ready_condition(
        &self,
        node: &str,
    ) -> Result<Option<(Readiness, Option<String>)>, KubeError> {
        let v = self
            .raw(
                http::Method::GET,
                &format!("/api/v1/nodes/{node}"),
                "application/json",
                None,
            )
            .await?;
        Ok(v.map(|v| {
            let c = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned()
                .unwrap_or(Value::Null);
            let r = match c["status"].as_str() {
                Some("True") => Readiness::Ready,
                Some("False") => Readiness::NotReady,
                _ => Readiness::Unknown,
            };
            (r, c["lastTransitionTime"].as_str().map(str::to_string))
        }))
    }

    async fn set_unschedulable(&self, node: &str, on: bool) -> Result<ActOutcome, KubeError> {
        let path = format!("/api/v1/nodes/{node}");
        let v = self
            .raw(http::Method::GET, &path, "application/json", None)
            .await?
            .ok_or_else(|| KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!("node {node}"),
            })?;
        if v["spec"]["unschedulable"].as_bool().unwrap_or(false) == on {
            return Ok(ActOutcome::AlreadyDone);
        }
        let patch = json!({"spec": {"unschedulable": if on { json!(true) } else { Value::Null }}});
        self.raw(
            http::Method::PATCH,
            &path,
            "application/merge-patch+json",
            Some(&patch),
        )
        .await?
        .ok_or_else(|| KubeError::NotFound {
            endpoint: self.endpoint.clone(),
            what: format!("node {node}"),
        })?;
        Ok(ActOutcome::Changed)
    }

    /// Marks a node unschedulable (`kubectl cordon`). Errors with `NotFound` if the node is absent.
    pub async fn cordon(&self, node: &str) -> Result<ActOutcome, KubeError> {
        self.set_unschedulable(node, true).await
    }

    /// Marks a node schedulable again (`kubectl uncordon`).
    pub async fn uncordon(&self, node: &str) -> Result<ActOutcome, KubeError> {
        self.set_unschedulable(node, false).await
    }

    /// Deletes a Node object. An absent node is `AlreadyDone`.
    pub async fn delete_node(&self, node: &str) -> Result<ActOutcome, KubeError> {
        Ok(
            if self
                .delete_raw(&format!("/api/v1/nodes/{node}"), None, None)
                .await?
            {
                ActOutcome::Changed
            } else {
                ActOutcome::AlreadyDone
            },
        )
    }
}
