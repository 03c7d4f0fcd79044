//! The recovery's host operations (issue 16): stopping k3s, `k3s server --cluster-reset`.

use k3splan_host::ServiceAction;

use super::{ExecError, Executor, OpResult, already, done};

impl Executor<'_> {
    pub(super) async fn stop_k3s(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        let was_active = s.service_active(layout, &layout.server_unit).await?;
        // Always stop, even when the unit is not active: after a quorum loss k3s exits and
        // systemd starts it again 5 s later (the installer's unit has `Restart=always`,
        // `RestartSec=5s`), so "not active" may be a pending automatic restart that would
        // start k3s with the old membership in the middle of the reset. `systemctl stop`
        // cancels it, and is a no-op on a stopped unit.
        s.service(layout, &layout.server_unit, ServiceAction::Stop)
            .await?;
        Ok(if was_active {
            done(format!("k3s stopped on {node}"))
        } else {
            already(format!(
                "k3s was not active on {node}; stopped anyway (cancels an automatic restart)"
            ))
        })
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
