//! Operations on a host over SSH: files, the k3s install and its service, the etcd data
//! directory.

use std::sync::Arc;

use k3splan_host::{FileWrite, HostSession, InstallRequest, K3sRole, ServiceAction};

use super::{ExecError, Executor, OpResult, Outcome, already, done};
use crate::plan::SensitiveValue;
use crate::plan::files::{SENSITIVE, SENSITIVE_CHANGED, SENSITIVE_FILE};

impl Executor<'_> {
    async fn session(&self, node: &str) -> Result<Arc<HostSession>, ExecError> {
        Ok(self.live.hosts().session(node).await?)
    }

    /// Whether `node` is declared with the given role.
    fn declared_as(&self, node: &str, role: impl Fn(&crate::config::Roles) -> bool) -> bool {
        self.live
            .topology()
            .node(node)
            .is_some_and(|n| role(&n.roles))
    }

    pub(super) async fn move_aside(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.session(node).await?;
        let layout = self.live.layout();
        // Stopped even when not active: a k3s failing on stale data exits and its unit
        // (Restart=always, RestartSec=5s) starts it again, so "not active" can be a pending
        // restart, which would find the data dir gone and join on its own. `systemctl stop`
        // cancels it and is a no-op on a stopped unit.
        s.service(layout, &layout.server_unit, ServiceAction::Stop)
            .await?;
        let dest = s.move_etcd_data_aside(layout).await?;
        Ok(done(format!("moved to {dest}")))
    }

    pub(super) async fn restart(&self, node: &str) -> Result<OpResult, ExecError> {
        let s = self.session(node).await?;
        let layout = self.live.layout();
        let unit = if self.declared_as(node, |r| r.is_agent()) {
            &layout.agent_unit
        } else {
            &layout.server_unit
        };
        s.service(layout, unit, ServiceAction::Restart).await?;
        if self.declared_as(node, |r| r.runs_etcd()) {
            self.wait_member_healthy(node).await?;
        }
        // A server without an agent has no Node: its supervisor port instead (issue 19).
        if self.runs_agent(node).await {
            self.wait_node_ready(node).await?;
        } else {
            self.wait_server_healthy(node).await?;
        }
        Ok(done("restarted and healthy again"))
    }

    pub(super) async fn uninstall(&self, node: &str) -> Result<OpResult, ExecError> {
        let s =
            self.live
                .hosts()
                .session(node)
                .await
                .map_err(|e| ExecError::UninstallUnreachable {
                    node: node.to_string(),
                    source: Box::new(e),
                })?;
        let layout = self.live.layout();
        // install.sh writes k3s-uninstall.sh with the server unit and k3s-agent-uninstall.sh
        // with the agent unit, so the unit files present say which scripts exist; a stopped
        // or crash-looping agent is still an agent. With both, each script removes its own
        // unit and leaves k3s while another unit remains ("Additional k3s services
        // installed, skipping uninstall of k3s"), so both run, the server's first. With
        // neither, the running unit decides.
        let exists = |unit: &str| {
            let path = layout.unit_file(unit);
            let s = &s;
            async move { s.read_file(&path).await.map(|f| f.is_some()) }
        };
        let roles = match (
            exists(&layout.server_unit).await?,
            exists(&layout.agent_unit).await?,
        ) {
            (true, true) => vec![K3sRole::Server, K3sRole::Agent],
            (false, true) => vec![K3sRole::Agent],
            (true, false) => vec![K3sRole::Server],
            (false, false) => {
                let agent = s
                    .service_active(layout, &layout.agent_unit)
                    .await
                    .unwrap_or(false);
                vec![if agent {
                    K3sRole::Agent
                } else {
                    K3sRole::Server
                }]
            }
        };
        let mut out = String::new();
        for role in roles {
            out = s.uninstall_k3s(layout, role).await?;
        }
        Ok(done(out.lines().last().unwrap_or("uninstalled")))
    }

    /// Fills `(sensitive)` placeholders: declared secrets from their source, others from the
    /// file already on the host (a rewritten file keeps its token).
    pub(super) async fn write_file(
        &self,
        node: &str,
        path: &str,
        after: &str,
        sensitive: &[SensitiveValue],
    ) -> Result<OpResult, ExecError> {
        let s = self.session(node).await?;
        let current = s.read_file(path).await?;
        let current_text = current
            .as_ref()
            .map(|f| String::from_utf8_lossy(&f.contents).into_owned())
            .unwrap_or_default();
        if after.lines().any(|l| l.starts_with(SENSITIVE_FILE)) {
            return Err(ExecError::UnparsableFile {
                node: node.to_string(),
                path: path.to_string(),
            });
        }
        let file = FilledFile { node, path };
        let (out, secrets) = file.fill(after, &current_text, |key| {
            match sensitive.iter().find(|v| v.key == key) {
                Some(sv) => self
                    .secret_value(&sv.source)
                    .ok_or_else(|| file.secret_not_set(key, &sv.source)),
                None => existing_value(&current_text, key).ok_or_else(|| file.no_value(key)),
            }
        })?;
        let mut w = FileWrite::new(path, out.clone().into_bytes());
        w.mode = 0o600;
        w.secrets = secrets;
        let r = s.write_file_over(&w, current.as_ref()).await?;
        let digest = crate::apply::sha256_hex(out.as_bytes());
        let outcome = match (r.changed, r.backup) {
            (true, Some(b)) => Outcome::Done(format!("written (backup {b})")),
            (true, None) => Outcome::Done("written".to_string()),
            (false, _) => Outcome::AlreadyDone("already up to date".to_string()),
        };
        Ok(OpResult {
            outcome,
            snapshot: None,
            file_digest: Some((format!("{node}:{path}"), digest)),
        })
    }

    fn secret_value(&self, source: &str) -> Option<String> {
        let c = &self.live.topology().cluster;
        [
            c.token.as_ref(),
            c.vip.as_ref().and_then(|v| v.password.as_ref()),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.source() == source)
        .and_then(|s| s.expose().map(str::to_string))
    }

    pub(super) async fn join(
        &self,
        node: &str,
        via: &str,
        version: Option<&str>,
        role: K3sRole,
    ) -> Result<OpResult, ExecError> {
        let s = self.session(node).await?;
        let layout = self.live.layout();
        let unit = match role {
            K3sRole::Server => &layout.server_unit,
            K3sRole::Agent => &layout.agent_unit,
        };
        if s.service_active(layout, unit).await.unwrap_or(false) {
            return Ok(already(format!("k3s already running on {node}")));
        }
        let token = self.live.topology().cluster.token.as_ref();
        let token = token
            .and_then(|t| t.expose().map(|v| k3splan_host::Secret::new(v.to_string())))
            .ok_or_else(|| ExecError::NoJoinToken {
                node: node.to_string(),
                source_name: token
                    .map(|t| t.source().to_string())
                    .unwrap_or_else(|| "the cluster's `token`".into()),
            })?;
        let req = InstallRequest {
            role,
            k3s_version: version.map(str::to_string),
            server_url: Some(via.to_string()),
            token: Some(token),
            extra_env: Vec::new(),
            exec_args: Vec::new(),
        };
        s.install_k3s(layout, &req).await?;
        if !s.service_active(layout, unit).await.unwrap_or(false) {
            s.service(layout, unit, ServiceAction::Start).await?;
        }
        Ok(done(format!(
            "k3s installed and started, joining through {via}"
        )))
    }
}

/// A file whose `(sensitive)` placeholders are being filled, for the errors.
struct FilledFile<'a> {
    node: &'a str,
    path: &'a str,
}

impl FilledFile<'_> {
    /// `after` with each placeholder replaced by `value(key)` of its YAML key (or of the
    /// `name:` of its env entry), quoted; and the secrets written, to mask in errors.
    ///
    /// A `KEY=(sensitive)` line of an environment file (the installer's `k3s.service.env`)
    /// becomes the line that assigns KEY in the file on the host (`current`), as written:
    /// the secret keeps its bytes and its quoting.
    fn fill(
        &self,
        after: &str,
        current: &str,
        value: impl Fn(&str) -> Result<String, ExecError>,
    ) -> Result<(String, Vec<k3splan_host::Secret>), ExecError> {
        let mut secrets = Vec::new();
        let mut out = String::new();
        let mut last_env_name: Option<String> = None;
        for line in after.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(n) = trimmed
                .trim_start_matches("- ")
                .strip_prefix("name:")
                .map(|v| v.trim().trim_matches('"').to_string())
            {
                last_env_name = Some(n);
            }
            let placeholder = [SENSITIVE_CHANGED, SENSITIVE]
                .into_iter()
                .find(|p| line.contains(p));
            let Some(placeholder) = placeholder else {
                out.push_str(line);
                continue;
            };
            if let Some(key) = crate::plan::files::env_assignment_key(line) {
                let kept = crate::plan::files::env_assignment_line(current, key)
                    .filter(|l| !l.contains(SENSITIVE))
                    .ok_or_else(|| self.no_value(key))?;
                if let Some(v) = existing_value(current, key) {
                    secrets.push(k3splan_host::Secret::new(v));
                }
                out.push_str(kept);
                if line.ends_with("\r\n") {
                    out.push_str("\r\n");
                } else if line.ends_with('\n') {
                    out.push('\n');
                }
                continue;
            }
            let env_value = trimmed.starts_with("value:");
            let key = if env_value {
                last_env_name.clone().unwrap_or_default()
            } else {
                trimmed
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_matches(['"', '\''])
                    .to_string()
            };
            let value = value(&key)?;
            secrets.push(k3splan_host::Secret::new(value.clone()));
            let quoted = if env_value {
                format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                crate::plan::files::yaml_scalar(&value)
            };
            out.push_str(&line.replacen(placeholder, &quoted, 1));
        }
        Ok((out, secrets))
    }

    fn secret_not_set(&self, key: &str, source: &str) -> ExecError {
        ExecError::SecretNotSet {
            node: self.node.to_string(),
            path: self.path.to_string(),
            key: key.to_string(),
            source_name: source.to_string(),
        }
    }

    fn no_value(&self, key: &str) -> ExecError {
        ExecError::NoCurrentValue {
            node: self.node.to_string(),
            path: self.path.to_string(),
            key: key.to_string(),
        }
    }
}

/// The value of `key` in a file read from a host: a YAML key, or the `value` of a
/// `name: KEY` env entry (the file is parsed, see [`crate::plan::files::existing_secret`]).
fn existing_value(text: &str, key: &str) -> Option<String> {
    crate::plan::files::existing_secret(text, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_values_are_found_for_yaml_keys_and_env_entries() {
        let cfg = "server: https://x:6443\ntoken: K10abc::server:def\nnode-name: a\n";
        assert_eq!(
            existing_value(cfg, "token").as_deref(),
            Some("K10abc::server:def")
        );
        let manifest = "        - name: KEEPALIVED_PASSWORD\n          value: \"s3cr3t\"\n        - name: X\n          value: y\n";
        assert_eq!(
            existing_value(manifest, "KEEPALIVED_PASSWORD").as_deref(),
            Some("s3cr3t")
        );
        assert_eq!(existing_value(cfg, "agent-token"), None);
    }

    /// An env file's `K3S_TOKEN=(sensitive)` line is the host's line, byte for byte; a
    /// secret the host's file does not hold is an error, never an empty token.
    #[test]
    fn issue19_env_file_secrets_keep_the_hosts_line() {
        let f = FilledFile {
            node: "a",
            path: "/etc/systemd/system/k3s.service.env",
        };
        let current = "K3S_TOKEN='K10tok::server:x'\nK3S_URL='https://old:6443'\n";
        let after = "K3S_TOKEN=(sensitive)\nK3S_URL='https://new:6443'\n";
        let none = |_: &str| -> Result<String, ExecError> { unreachable!("no yaml key") };
        let (out, secrets) = f.fill(after, current, none).unwrap();
        assert_eq!(
            out,
            "K3S_TOKEN='K10tok::server:x'\nK3S_URL='https://new:6443'\n"
        );
        assert_eq!(secrets.len(), 1);
        let e = f.fill(after, "K3S_URL=x\n", none).unwrap_err().to_string();
        assert!(e.contains("K3S_TOKEN"), "{e}");
    }
}
