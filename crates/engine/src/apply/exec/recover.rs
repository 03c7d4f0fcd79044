//! The recovery's host operations (issue 16): stopping k3s, `k3s server --cluster-reset`.

use k3splan_host::ServiceAction;

use super::{ExecError, Executor, OpResult, already, done};

impl Executor<'_> {
    pub(super) async fn stop_k3s(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        if !s.service_active(layout, &layout.server_unit).await? {
            return Ok(already(format!("k3s is not running on {node}")));
        }
        s.service(layout, &layout.server_unit, ServiceAction::Stop)
            .await?;
        Ok(done(format!("k3s stopped on {node}")))
    }

    pub(super) async fn cluster_reset(
        &self,
        node: &str,
        restore_path: Option<&str>,
    ) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let r = s.cluster_reset(self.live.layout(), restore_path).await?;
        let again = if r.flag_removed {
            " (an earlier reset's flag was there: removed, reset run again)"
        } else {
            ""
        };
        Ok(done(format!(
            "reset to a one-member cluster{again}: {}",
            r.tail.lines().last().unwrap_or("")
        )))
    }
}
