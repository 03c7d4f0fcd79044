//! The fixes `k3splan check` findings plan (issue 17): certificates rotated on a server, a
//! leftover annotation removed from a Node.

use k3splan_host::ServiceAction;
use k3splan_host::quote::sh_quote;

use super::{ExecError, Executor, OpResult, Outcome, done};

impl Executor<'_> {
    /// Stops k3s on `node`, runs `k3s certificate rotate` (k3s backs up `server/tls` to
    /// `server/tls-<unix>` and deletes the leaf certificates: k3s `pkg/cli/cert/cert.go`),
    /// then starts k3s, which issues new ones, and waits until the server is healthy again
    /// (the restart's waits).
    pub(super) async fn rotate_certificates(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        if s.service_active(layout, &layout.server_unit).await? {
            s.service(layout, &layout.server_unit, ServiceAction::Stop)
                .await?;
        }
        let cmd = format!(
            "{} certificate rotate --data-dir {}",
            sh_quote(&layout.k3s_bin),
            sh_quote(layout.data_dir.trim_end_matches('/'))
        );
        let rotated = s.run("k3s certificate rotate", &cmd, b"").await;
        // Started again whatever the rotation did: a server is never left stopped.
        let restarted = self.restart(node).await;
        rotated?;
        restarted?;
        Ok(done(
            "certificates rotated; k3s restarted and healthy again",
        ))
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
