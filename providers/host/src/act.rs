//! Changing a host: files, the k3s installer, services, the etcd data dir, snapshots.
//!
//! Every command is a constant `sh` script with the values passed as quoted positional
//! parameters ([`sh_script_command`]); secrets travel as `export` lines on the remote shell's
//! stdin, never on a command line, never in a log.

use serde::{Deserialize, Serialize};

use crate::error::HostError;
use crate::observe::{K3sLayout, ServiceAction};
use crate::quote::{export_line, is_identifier, sh_command, sh_quote, sh_script_command};
use crate::ssh::HostSession;

/// A secret value: `Debug` prints `<redacted>`; never logged.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value (only to hand it to the remote side).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Replaces every occurrence of each (non-empty) secret with `<redacted>`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    // Longest first: a secret that contains a shorter one is replaced whole, not left with
    // its remainder showing.
    let mut order: Vec<&Secret> = secrets.iter().filter(|s| !s.0.is_empty()).collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    let mut t = text.to_string();
    for s in order {
        t = t.replace(&s.0, "<redacted>");
    }
    t
}

/// A file to write.
#[derive(Clone, Debug)]
pub struct FileWrite {
    /// Absolute path on the host.
    pub path: String,
    /// New content.
    pub contents: Vec<u8>,
    /// Permission bits (`0o644`; `0o600` for files holding secrets).
    pub mode: u32,
    /// `chown` argument (`root:root`); `None` leaves the owner of the new file as the SSH user.
    pub owner: Option<String>,
    /// Values to redact from the returned diff (a token inside config.yaml, a VRRP password).
    pub secrets: Vec<Secret>,
}

impl FileWrite {
    /// A root-owned file with mode 0644.
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        FileWrite {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
            owner: Some("root:root".into()),
            secrets: Vec::new(),
        }
    }
}

/// The current state of a remote file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Content.
    pub contents: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Result of [`HostSession::write_file`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Whether content or mode changed (false: nothing was written, no backup made).
    pub changed: bool,
    /// Unified diff of old vs new content (secrets redacted); empty when identical.
    pub diff: String,
    /// Path of the backup of the old content, when there was an old file and it changed.
    pub backup: Option<String>,
}

/// Unified diff of two texts with `a/PATH`, `b/PATH` headers (empty when equal), secrets
/// redacted. A missing old file diffs against `/dev/null`.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8], secrets: &[Secret]) -> String {
    let old_text = old.map(String::from_utf8_lossy).unwrap_or_default();
    let new_text = String::from_utf8_lossy(new);
    if old.is_some() && old_text == new_text {
        return String::new();
    }
    let old_name = if old.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".to_string()
    };
    let diff = similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("b{path}"))
        .to_string();
    redact(&diff, secrets)
}

/// Role of a k3s install.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum K3sRole {
    /// `k3s server`.
    Server,
    /// `k3s agent`.
    Agent,
}

/// A unit's state as the service manager's `is-active` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitStatus {
    /// Running.
    Active,
    /// Not running now, but starting or about to be restarted (`Restart=always` after an
    /// exit): it will run again by itself.
    Activating,
    /// Stopped, failed, or not installed.
    Inactive,
}

/// Arguments of the k3s installer. `Debug` shows how many `exec_args` there are, not their
/// values (a `--token` among them is a secret).
#[derive(Clone)]
pub struct InstallRequest {
    /// Server or agent (`INSTALL_K3S_EXEC`).
    pub role: K3sRole,
    /// `INSTALL_K3S_VERSION`, e.g. `v1.28.5+k3s1`.
    pub k3s_version: Option<String>,
    /// `K3S_URL`: the server to join through (never set for the first server).
    pub server_url: Option<String>,
    /// `K3S_TOKEN`.
    pub token: Option<Secret>,
    /// Extra variables (names must be shell identifiers); values are treated as secrets:
    /// never logged.
    pub extra_env: Vec<(String, Secret)>,
    /// Arguments after `server`/`agent` in `INSTALL_K3S_EXEC`: an upgrade passes the unit's
    /// current ones ([`crate::unit`]) so the rewritten unit keeps them. An argument install.sh
    /// could not take back unchanged is refused before anything runs; the values of token and
    /// password flags are redacted from the output.
    pub exec_args: Vec<String>,
}

impl std::fmt::Debug for InstallRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallRequest")
            .field("role", &self.role)
            .field("k3s_version", &self.k3s_version)
            .field("server_url", &self.server_url)
            .field("token", &self.token)
            .field("extra_env", &self.extra_env)
            .field(
                "exec_args",
                &format!("<{} argument(s)>", self.exec_args.len()),
            )
            .finish()
    }
}

/// Result of running the installer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOutcome {
    /// Installer stdout+stderr, secrets redacted.
    pub output: String,
}

const WRITE_SCRIPT: &str = r#"set -e
p=$1; mode=$2; owner=$3; ts=$4
dir=$(dirname -- "$p")
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.k3splan-tmp.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod "$mode" "$tmp"
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
sync -- "$tmp" 2>/dev/null || true
backup=
if [ -e "$p" ]; then
  b="$p.k3splan-backup-$ts"; n=0
  while [ -e "$b" ]; do n=$((n+1)); b="$p.k3splan-backup-$ts.$n"; done
  cp -p -- "$p" "$b"
  backup=$b
fi
mv -f -- "$tmp" "$p"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
printf 'backup=%s\n' "$backup"
"#;

const READ_SCRIPT: &str = r#"if [ -e "$1" ]; then
  if [ ! -f "$1" ] || [ ! -r "$1" ]; then echo "not a readable regular file" >&2; exit 2; fi
  stat -c '%a' -- "$1"; cat -- "$1"
else echo absent; fi
"#;

const MOVE_ETCD_SCRIPT: &str = r#"set -e
d="$1/server/db/etcd"
if [ ! -d "$d" ]; then echo "no etcd data dir at $d" >&2; exit 3; fi
b="$1/server/db/etcd-backup-$2"; n=0
while [ -e "$b" ]; do n=$((n+1)); b="$1/server/db/etcd-backup-$2.$n"; done
mv -- "$d" "$b"
printf '%s\n' "$b"
"#;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl HostSession {
    fn check_text(&self, what: &str, v: &str) -> Result<(), HostError> {
        if v.contains('\0') {
            return Err(HostError::InvalidArgument {
                host: self.name().to_string(),
                what: what.to_string(),
                detail: "contains a NUL byte, which no shell can pass".into(),
            });
        }
        Ok(())
    }

    /// Reads a remote file; `None` when it does not exist.
    pub async fn read_file(&self, path: &str) -> Result<Option<RemoteFile>, HostError> {
        self.check_text("path", path)?;
        let label = format!("read {path}");
        let out = self
            .run(&label, &sh_script_command(READ_SCRIPT, &[path]), b"")
            .await?;
        let nl = out.stdout.iter().position(|b| *b == b'\n');
        let Some(nl) = nl else {
            return Err(HostError::Output {
                host: self.name().into(),
                command: label,
                detail: "no header line".into(),
            });
        };
        let head = String::from_utf8_lossy(&out.stdout[..nl])
            .trim()
            .to_string();
        if head == "absent" {
            return Ok(None);
        }
        let mode = u32::from_str_radix(&head, 8).map_err(|_| HostError::Output {
            host: self.name().into(),
            command: label,
            detail: format!("mode {head:?} is not octal"),
        })?;
        Ok(Some(RemoteFile {
            contents: out.stdout[nl + 1..].to_vec(),
            mode,
        }))
    }

    /// The diff `write_file` would produce, without writing (for `plan`).
    pub async fn preview_write(&self, w: &FileWrite) -> Result<String, HostError> {
        let old = self.read_file(&w.path).await?;
        Ok(unified_diff(
            &w.path,
            old.as_ref().map(|o| o.contents.as_slice()),
            &w.contents,
            &w.secrets,
        ))
    }

    /// Writes a file atomically: the content goes to a temp file in the same directory
    /// (via stdin), gets its mode and owner, is synced, then renamed over the target. The old
    /// file, if any, is first copied (`cp -p`) to `<path>.k3splan-backup-<unix time>`
    /// (`.N` appended if that exists). Parent directories are created.
    ///
    /// Idempotent: when content and mode already match, nothing is written and no backup is
    /// made (`changed == false`). The owner is not compared.
    pub async fn write_file(&self, w: &FileWrite) -> Result<WriteOutcome, HostError> {
        self.check_text("path", &w.path)?;
        let old = self.read_file(&w.path).await?;
        self.write_file_over(w, old.as_ref()).await
    }

    /// [`Self::write_file`] for a caller that has just read the file itself with
    /// [`Self::read_file`] (`old`): one round trip less. `old` decides the idempotence check
    /// and the diff, exactly as `write_file`'s own read would.
    pub async fn write_file_over(
        &self,
        w: &FileWrite,
        old: Option<&RemoteFile>,
    ) -> Result<WriteOutcome, HostError> {
        self.check_text("path", &w.path)?;
        if let Some(o) = &w.owner {
            self.check_text("owner", o)?;
        }
        let diff = unified_diff(
            &w.path,
            old.as_ref().map(|o| o.contents.as_slice()),
            &w.contents,
            &w.secrets,
        );
        if let Some(o) = old
            && o.contents == w.contents
            && o.mode == w.mode
        {
            return Ok(WriteOutcome {
                changed: false,
                diff,
                backup: None,
            });
        }
        let label = format!("write {}", w.path);
        let mode = format!("{:o}", w.mode);
        let owner = w.owner.clone().unwrap_or_default();
        let ts = unix_now().to_string();
        let out = self
            .run(
                &label,
                &sh_script_command(WRITE_SCRIPT, &[w.path.as_str(), &mode, &owner, &ts]),
                &w.contents,
            )
            .await?;
        // The path may itself contain newlines: the output is exactly `backup=<path>\n`.
        let text = out.stdout_str();
        let backup = text
            .rfind("backup=")
            .map(|i| text[i + "backup=".len()..].to_string())
            .map(|b| b.strip_suffix('\n').map(String::from).unwrap_or(b))
            .filter(|b| !b.is_empty());
        Ok(WriteOutcome {
            changed: true,
            diff,
            backup,
        })
    }

    /// Runs a script on the remote `sh` with secret variables exported first. Both travel
    /// on stdin; the command line is just `sh -s`. The script runs inside `{ …; } </dev/null`
    /// so nothing in it can read the rest of stdin.
    pub async fn run_with_secret_env(
        &self,
        label: &str,
        env: &[(String, Secret)],
        script: &str,
    ) -> Result<crate::ssh::ExecOutput, HostError> {
        let mut stdin = String::new();
        for (k, v) in env {
            if !is_identifier(k) {
                return Err(HostError::InvalidArgument {
                    host: self.name().into(),
                    what: "environment variable name".into(),
                    detail: format!("{k:?} is not a shell identifier"),
                });
            }
            self.check_text(k, v.expose())?;
            stdin.push_str(&export_line(k, v.expose()));
        }
        stdin.push_str("{\n");
        stdin.push_str(script);
        stdin.push_str("\n} </dev/null\n");
        self.exec(label, &sh_command(&["sh", "-s"]), stdin.as_bytes())
            .await
    }

    /// Runs the configured installer (`layout.install_command`) with `INSTALL_K3S_EXEC`
    /// (`server` / `agent`), `INSTALL_K3S_VERSION`, `K3S_URL`, `K3S_TOKEN` and the extra
    /// variables in its environment. The token never appears on a command line or in logs,
    /// and is redacted from the returned output and from errors.
    pub async fn install_k3s(
        &self,
        layout: &K3sLayout,
        req: &InstallRequest,
    ) -> Result<InstallOutcome, HostError> {
        let command = match req.role {
            K3sRole::Server => "server",
            K3sRole::Agent => "agent",
        };
        let exec = crate::unit::install_exec(command, &req.exec_args).map_err(|e| {
            HostError::InvalidArgument {
                host: self.name().into(),
                what: "INSTALL_K3S_EXEC".into(),
                detail: e.to_string(),
            }
        })?;
        let mut env: Vec<(String, Secret)> = vec![("INSTALL_K3S_EXEC".into(), Secret::new(exec))];
        if let Some(v) = &req.k3s_version {
            env.push(("INSTALL_K3S_VERSION".into(), Secret::new(v.clone())));
        }
        if let Some(u) = &req.server_url {
            env.push(("K3S_URL".into(), Secret::new(u.clone())));
        }
        let mut secrets: Vec<Secret> = crate::unit::secret_values(&req.exec_args)
            .into_iter()
            .map(Secret::new)
            .collect();
        if let Some(t) = &req.token {
            env.push(("K3S_TOKEN".into(), t.clone()));
            secrets.push(t.clone());
        }
        for (k, v) in &req.extra_env {
            env.push((k.clone(), v.clone()));
            secrets.push(v.clone());
        }
        let label = format!("k3s installer ({:?})", req.role);
        let out = self
            .run_with_secret_env(&label, &env, &layout.install_command)
            .await?;
        let output = redact(
            &format!("{}{}", out.stdout_str(), out.stderr_str()),
            &secrets,
        );
        if out.status != Some(0) {
            return Err(self.failed_redacted(&label, &out, &secrets));
        }
        Ok(InstallOutcome { output })
    }

    /// Whether `unit` is active (`layout.services.is_active` exits 0).
    pub async fn service_active(&self, layout: &K3sLayout, unit: &str) -> Result<bool, HostError> {
        Ok(self.service_status(layout, unit).await? == UnitStatus::Active)
    }

    /// Refuses `action` unless the server unit is inactive: active, or activating (systemd
    /// would start it again under the action), is refused with the state.
    pub(crate) async fn refuse_unless_server_stopped(
        &self,
        layout: &K3sLayout,
        action: String,
    ) -> Result<(), HostError> {
        let state = match self.service_status(layout, &layout.server_unit).await? {
            UnitStatus::Inactive => return Ok(()),
            UnitStatus::Active => "active",
            UnitStatus::Activating => "activating (it will be restarted)",
        };
        Err(HostError::Refused {
            host: self.name().into(),
            action,
            reason: format!("service {} is {state}; stop it first", layout.server_unit),
        })
    }

    /// What `layout.services.is_active` says of `unit`: exit 0 is active; otherwise the
    /// state it prints: `activating` is a unit starting or waiting out `RestartSec=` before
    /// systemd starts it again (systemctl(1) `is-active` prints the unit's ActiveState;
    /// "activating (auto-restart)" in `systemctl status`), anything else is inactive.
    pub async fn service_status(
        &self,
        layout: &K3sLayout,
        unit: &str,
    ) -> Result<UnitStatus, HostError> {
        let out = self
            .exec(
                &format!("is-active {unit}"),
                &layout.services.is_active_command(unit),
                b"",
            )
            .await?;
        match out.status {
            Some(0) => Ok(UnitStatus::Active),
            Some(126) | Some(127) => Err(self.failed(&format!("is-active {unit}"), &out)),
            _ if out.stdout_str().split_whitespace().next() == Some("activating") => {
                Ok(UnitStatus::Activating)
            }
            _ => Ok(UnitStatus::Inactive),
        }
    }

    /// Starts, stops or restarts `unit` with the layout's service manager.
    pub async fn service(
        &self,
        layout: &K3sLayout,
        unit: &str,
        action: ServiceAction,
    ) -> Result<(), HostError> {
        self.run(
            &format!("{action:?} {unit}").to_lowercase(),
            &layout.services.command(action, unit),
            b"",
        )
        .await
        .map(|_| ())
    }

    /// Runs the uninstaller of the given role. Returns its output.
    pub async fn uninstall_k3s(
        &self,
        layout: &K3sLayout,
        role: K3sRole,
    ) -> Result<String, HostError> {
        let argv = match role {
            K3sRole::Server => &layout.uninstall_server,
            K3sRole::Agent => &layout.uninstall_agent,
        };
        let out = self
            .run(&format!("uninstall k3s ({role:?})"), &sh_command(argv), b"")
            .await?;
        Ok(format!("{}{}", out.stdout_str(), out.stderr_str()))
    }

    /// Moves `<data_dir>/server/db/etcd` to `<data_dir>/server/db/etcd-backup-<unix time>`
    /// (k3s's own naming), never deleting anything. `server/tls` and `server/token` stay.
    ///
    /// Refuses while the k3s server unit is active (stop it first), and fails when there is
    /// no etcd data dir. Returns the backup path.
    pub async fn move_etcd_data_aside(&self, layout: &K3sLayout) -> Result<String, HostError> {
        self.check_text("data dir", &layout.data_dir)?;
        self.refuse_unless_server_stopped(layout, format!("move {} aside", layout.etcd_dir()))
            .await?;
        let label = format!("move {} aside", layout.etcd_dir());
        let ts = unix_now().to_string();
        let out = self
            .run(
                &label,
                &sh_script_command(
                    MOVE_ETCD_SCRIPT,
                    &[layout.data_dir.trim_end_matches('/'), &ts],
                ),
                b"",
            )
            .await?;
        let text = out.stdout_str();
        let path = text.strip_suffix('\n').unwrap_or(&text).to_string();
        if path.is_empty() {
            return Err(HostError::Output {
                host: self.name().into(),
                command: label,
                detail: "no backup path printed".into(),
            });
        }
        Ok(path)
    }

    /// Runs `k3s etcd-snapshot save --data-dir <data_dir>` (plus `--name` when given) and
    /// returns the snapshot path: the path k3s logs ("Saving etcd snapshot to …", "Snapshot
    /// … saved" forms), else the newest file in `<data_dir>/server/db/snapshots`.
    pub async fn etcd_snapshot_save(
        &self,
        layout: &K3sLayout,
        name: Option<&str>,
    ) -> Result<String, HostError> {
        let data = layout.data_dir.trim_end_matches('/');
        self.check_text("data dir", data)?;
        let mut argv = vec![
            layout.k3s_bin.clone(),
            "etcd-snapshot".into(),
            "save".into(),
            "--data-dir".into(),
            data.to_string(),
        ];
        if let Some(n) = name {
            argv.push("--name".into());
            argv.push(n.to_string());
        }
        let snapdir = format!("{data}/server/db/snapshots");
        let script = format!(
            "{} 2>&1; rc=$?\necho @@k3splan-newest@@\nls -1t -- {} 2>/dev/null | head -n 1\nexit $rc\n",
            sh_command(&argv),
            sh_quote(&snapdir)
        );
        let label = "k3s etcd-snapshot save";
        let out = self
            .run(label, &sh_command(&["sh", "-c", &script]), b"")
            .await?;
        let text = out.stdout_str();
        let (log, newest) = text
            .split_once("@@k3splan-newest@@\n")
            .unwrap_or((&text, ""));
        if let Some(p) = snapshot_path_from_log(log, &snapdir) {
            return Ok(p);
        }
        let newest = newest.trim();
        if newest.is_empty() {
            return Err(HostError::Output {
                host: self.name().into(),
                command: label.into(),
                detail: format!("no snapshot path in the output and none in {snapdir}"),
            });
        }
        Ok(format!("{snapdir}/{newest}"))
    }
}

/// Extracts the snapshot path from k3s's log lines: the rest of a line after "Saving etcd
/// snapshot to " (without logrus's closing quote), accepted only when it lies in `snapdir`.
pub fn snapshot_path_from_log(log: &str, snapdir: &str) -> Option<String> {
    let prefix = format!("{}/", snapdir.trim_end_matches('/'));
    for line in log.lines() {
        for pat in ["Saving etcd snapshot to ", "snapshot saved to "] {
            if let Some(i) = line.find(pat) {
                let rest = line[i + pat.len()..].trim_end();
                let p = rest.strip_suffix('"').unwrap_or(rest);
                if p.starts_with(&prefix) && p.len() > prefix.len() {
                    return Some(p.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `service_status` tells `activating` from `inactive` by what is-active prints:
    /// `--quiet` would print nothing, and a unit in auto-restart would read as stopped.
    #[test]
    fn systemd_is_active_prints_the_state() {
        let m = crate::observe::ServiceManager::systemd();
        assert_eq!(m.is_active, ["systemctl", "is-active"]);
    }

    #[test]
    fn redaction_replaces_the_longest_secret_whole() {
        let secrets = [Secret::new("abc"), Secret::new("abcdef")];
        assert_eq!(
            redact("t=abcdef u=abc", &secrets),
            "t=<redacted> u=<redacted>"
        );
    }

    #[test]
    fn diff_of_new_file_and_redaction() {
        let d = unified_diff("/etc/x", None, b"token: abc\n", &[Secret::new("abc")]);
        assert!(d.contains("--- /dev/null"), "{d}");
        assert!(d.contains("+++ b/etc/x"), "{d}");
        assert!(d.contains("+token: <redacted>"), "{d}");
        assert!(!d.contains("abc"));
        assert_eq!(unified_diff("/x", Some(b"a\n"), b"a\n", &[]), "");
    }

    #[test]
    fn snapshot_path_is_found_in_k3s_logs() {
        let dir = "/var/lib/rancher/k3s/server/db/snapshots";
        let log = "time=\"2024\" level=info msg=\"Saving etcd snapshot to /var/lib/rancher/k3s/server/db/snapshots/on-demand-h 1-1700000000\"\n";
        assert_eq!(
            snapshot_path_from_log(log, dir).as_deref(),
            Some("/var/lib/rancher/k3s/server/db/snapshots/on-demand-h 1-1700000000")
        );
        assert_eq!(snapshot_path_from_log("nothing here", dir), None);
        // A path outside the snapshot dir (a truncated line) is not trusted.
        assert_eq!(
            snapshot_path_from_log("Saving etcd snapshot to /var/lib/x", dir),
            None
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(<redacted>)");
    }
}
