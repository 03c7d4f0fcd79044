//! The fixes `k3splan check` findings plan (issue 17): certificates rotated on a server, a
//! leftover annotation removed from a Node.

use std::time::Duration;

use super::{ExecError, Executor, OpResult, Outcome, done};
use crate::wait::{Check, Wait};

impl Executor<'_> {
    /// Rotates the certificates of `node`: the host runs stop k3s, `k3s certificate rotate`
    /// (k3s backs up `server/tls` to `server/tls-<unix>` and deletes the leaf certificates:
    /// k3s `pkg/cli/cert/cert.go`), start k3s (which issues new ones) as one sequence
    /// detached from this connection, so that a k3splan killed half-way never leaves the
    /// server stopped. Then the restart's waits: the member healthy, the Node Ready (or the
    /// supervisor port, without an agent).
    pub(super) async fn rotate_certificates(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        let marker = s.start_certificate_rotation(layout).await?;
        crate::apply::test_hold(&format!("rotate-{node}-started"));
        let log = format!(
            "{}/server/k3splan-rotate.log",
            layout.data_dir.trim_end_matches('/')
        );
        let fail = |what: String| ExecError::RotationFailed {
            node: node.into(),
            what,
            log: log.clone(),
        };
        let status = Wait::new(self.waits.node_ready, Duration::from_secs(1))
            .until(|| async {
                match s.rotation_status(&marker).await {
                    Ok(Some(code)) => Check::Ready(Ok(code)),
                    Ok(None) => Check::Pending("still running".to_string()),
                    Err(e) => Check::Ready(Err(e)),
                }
            })
            .await
            .map_err(|t| {
                fail(format!(
                    "not finished after {}s (last: {})",
                    self.waits.node_ready.as_secs(),
                    t.last
                ))
            })??;
        if status != 0 {
            return Err(fail(format!(
                "the stop/rotate/start sequence exited {status}"
            )));
        }
        if self
            .live
            .topology()
            .node(node)
            .is_some_and(|n| n.roles.runs_etcd())
        {
            self.wait_member_healthy(node).await?;
        }
        if self.runs_agent(node).await {
            self.wait_node_ready(node).await?;
        } else {
            self.wait_server_healthy(node).await?;
        }
        Ok(done("certificates rotated; k3s started again and healthy"))
    }

    /// Removes annotation `key` from Node `node`.
    pub(super) async fn remove_node_annotation(
        &self,
        node: &str,
        key: &str,
    ) -> Result<OpResult, ExecError> {
        let k = self.live.kube().await?;
        Ok(Outcome::of_kube(k.remove_node_annotation(node, key).await?).into())
    }
}
