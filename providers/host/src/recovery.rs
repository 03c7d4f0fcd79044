//! Quorum-loss recovery on a host (issue 16): what survives of its etcd data, and
//! `k3s server --cluster-reset`.
//!
//! The survey reads files only (etcd may be down): `<data-dir>/server/db/etcd` and its
//! `member/` dir, the member name, k3s's `reset-flag`, the member's bolt database through
//! `etcdctl snapshot status` (copied first when etcd holds its lock), the first bytes of the
//! first WAL file (its metadata record names the cluster), and the `k3s etcd-snapshot` files.
//! Without `etcdctl` on the host the database is reported unreadable with that reason.

use crate::error::HostError;
use crate::observe::K3sLayout;
use crate::quote::{sh_quote, sh_script_command};
use crate::ssh::HostSession;

/// One status read (`etcdctl snapshot status -w json` output, or why it failed).
pub type StatusRead = Result<String, String>;

/// What [`HostSession::survey_etcd`] found, raw: the engine parses the JSON and the WAL bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdDataSurvey {
    pub k3s_active: bool,
    /// Not active but starting, or about to be restarted by its service manager.
    pub k3s_restarting: bool,
    pub etcd_dir: bool,
    pub member_dir: bool,
    pub member_name: Option<String>,
    pub reset_flag: bool,
    /// `None`: no `member/snap/db`.
    pub db: Option<StatusRead>,
    /// The first bytes of the first WAL file.
    pub wal_head: Vec<u8>,
    /// `(path, mtime, status)` of each snapshot file.
    pub snapshots: Vec<(String, u64, StatusRead)>,
}

/// What [`HostSession::cluster_reset`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The last lines of k3s's output (it exited 0).
    pub tail: String,
    /// k3s's reset-flag was there (an earlier reset, maybe interrupted, and no normal start
    /// since) and was removed first, as k3s's refusal message asks.
    pub flag_removed: bool,
}

const SURVEY: &str = r#"M=$1; DATA=$2
D="$DATA/server/db"; E="$D/etcd"
st() {
  if ! command -v etcdctl >/dev/null 2>&1; then echo "unreadable no etcdctl on this host"; return; fi
  if o=$(ETCDCTL_API=3 timeout 10 etcdctl snapshot status "$1" -w json 2>&1); then echo "status $o"; return; fi
  t=$(mktemp) || { echo "unreadable mktemp failed"; return; }
  if cp -- "$1" "$t" 2>/dev/null && o=$(ETCDCTL_API=3 timeout 10 etcdctl snapshot status "$t" -w json 2>&1); then rm -f -- "$t"; echo "status $o"; return; fi
  rm -f -- "$t"; echo "unreadable $(printf %s "$o" | tr '\n' ' ' | cut -c1-300)"
}
echo "$M etcd"
if [ -d "$E" ]; then echo dir; fi
if [ -d "$E/member" ]; then echo member; fi
if [ -f "$E/name" ]; then printf 'name %s\n' "$(head -n 1 "$E/name")"; fi
if [ -e "$D/reset-flag" ]; then echo reset-flag; fi
echo "$M db"
if [ -f "$E/member/snap/db" ]; then st "$E/member/snap/db"; fi
echo "$M wal"
w=$(ls -- "$E/member/wal/"*.wal 2>/dev/null | head -n 1)
if [ -n "$w" ]; then od -An -v -tx1 -N 512 -- "$w"; fi
echo "$M snapshots"
for f in "$D/snapshots/"*; do
  [ -f "$f" ] || continue
  printf 'file %s %s\n' "$(stat -c %Y -- "$f")" "$f"; st "$f"
done
echo "$M end"
"#;

impl HostSession {
    /// Surveys the host's etcd data for a recovery (see the module doc).
    pub async fn survey_etcd(&self, layout: &K3sLayout) -> Result<EtcdDataSurvey, HostError> {
        let data = layout.data_dir.trim_end_matches('/');
        let marker = format!("@@k3splan-{}@@", crate::observe::nonce());
        let label = "survey etcd data";
        let status = self
            .service_status(layout, &layout.server_unit)
            .await
            .unwrap_or(crate::act::UnitStatus::Inactive);
        let out = self
            .exec(
                label,
                &sh_script_command(SURVEY, &[marker.as_str(), data]),
                b"",
            )
            .await?;
        let text = out.stdout_str();
        if !text.contains(&format!("{marker} end")) {
            return Err(self.failed(label, &out));
        }
        let mut s = EtcdDataSurvey {
            k3s_active: status == crate::act::UnitStatus::Active,
            k3s_restarting: status == crate::act::UnitStatus::Activating,
            ..Default::default()
        };
        let mut section = "";
        let mut wal_hex = String::new();
        let mut pending_file: Option<(String, u64)> = None;
        for line in text.lines() {
            if let Some(sec) = line.strip_prefix(&marker) {
                section = match sec.trim() {
                    "etcd" => "etcd",
                    "db" => "db",
                    "wal" => "wal",
                    "snapshots" => "snapshots",
                    _ => "",
                };
                continue;
            }
            match section {
                "etcd" => match line {
                    "dir" => s.etcd_dir = true,
                    "member" => s.member_dir = true,
                    "reset-flag" => s.reset_flag = true,
                    l => {
                        if let Some(n) = l.strip_prefix("name ") {
                            s.member_name = Some(n.trim().to_string());
                        }
                    }
                },
                "db" => {
                    if let Some(r) = status_line(line) {
                        s.db = Some(r);
                    }
                }
                "wal" => {
                    wal_hex.push(' ');
                    wal_hex.push_str(line);
                }
                "snapshots" => {
                    if let Some(rest) = line.strip_prefix("file ") {
                        let (mtime, path) = rest.split_once(' ').unwrap_or((rest, ""));
                        pending_file = Some((path.to_string(), mtime.parse().unwrap_or(0)));
                    } else if let (Some(r), Some((p, m))) = (status_line(line), pending_file.take())
                    {
                        s.snapshots.push((p, m, r));
                    }
                }
                _ => {}
            }
        }
        s.wal_head = wal_hex
            .split_whitespace()
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        Ok(s)
    }

    /// `k3s server --cluster-reset [--cluster-reset-restore-path=PATH]` in the foreground
    /// (k3s exits once the member runs as a one-member cluster). Refused while the server
    /// unit is active.
    ///
    /// k3s writes its reset-flag *before* etcd runs with `--force-new-cluster` (k3s-io/k3s
    /// pkg/etcd/etcd.go `Reset`), so a flag does not prove the reset finished: an apply killed
    /// mid-reset leaves it. The flag is removed and the reset run again — harmless on data
    /// already reset (k3s was not started normally since, or the flag would be gone).
    pub async fn cluster_reset(
        &self,
        layout: &K3sLayout,
        restore_path: Option<&str>,
    ) -> Result<ResetOutcome, HostError> {
        let data = layout.data_dir.trim_end_matches('/');
        self.refuse_unless_server_stopped(layout, "run k3s server --cluster-reset".into())
            .await?;
        let flag = format!("{data}/server/db/reset-flag");
        let probe = self
            .exec(
                "remove the reset-flag",
                &format!(
                    "if [ -e {f} ]; then rm -f -- {f} && echo removed; fi",
                    f = sh_quote(&flag)
                ),
                b"",
            )
            .await?;
        let flag_removed = probe.stdout_str().contains("removed");
        self.wait_cluster_reset(layout, std::time::Duration::from_secs(180))
            .await?;
        let pid_file = format!("{data}/server/db/{RESET_PID}");
        let mut cmd = format!(
            "echo $$ > {}; exec {} server --cluster-reset",
            sh_quote(&pid_file),
            sh_quote(&layout.k3s_bin)
        );
        if let Some(p) = restore_path {
            cmd.push_str(&format!(
                " {}",
                sh_quote(&format!("--cluster-reset-restore-path={p}"))
            ));
        }
        let label = "k3s server --cluster-reset";
        let out = self.exec(label, &format!("{cmd} 2>&1"), b"").await?;
        let text = out.stdout_str();
        if out.status != Some(0) {
            // k3s logs to stderr, merged into stdout here: its last lines say why.
            let last: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(HostError::CommandFailed {
                host: self.name().into(),
                command: label.into(),
                status: out.status.map_or_else(
                    || "no exit status (signal)".into(),
                    |s| format!("status {s}"),
                ),
                stderr: last.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        Ok(ResetOutcome {
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            flag_removed,
        })
    }
}

/// Where [`HostSession::cluster_reset`] records the pid of the reset it runs, under
/// `<data-dir>/server/db`.
const RESET_PID: &str = "k3splan-cluster-reset.pid";

impl HostSession {
    /// Waits while a `k3s server --cluster-reset` started by k3splan still runs on the host
    /// (an apply killed mid-reset leaves it running: its SSH channel closed, the process did
    /// not stop). Returns whether one was running. Its etcd answers as a healthy one-member
    /// cluster meanwhile: observing then would take a transient state for the result.
    pub async fn wait_cluster_reset(
        &self,
        layout: &K3sLayout,
        timeout: std::time::Duration,
    ) -> Result<bool, HostError> {
        let data = layout.data_dir.trim_end_matches('/');
        let pid_file = sh_quote(&format!("{data}/server/db/{RESET_PID}"));
        let check = format!(
            "p=$(cat {pid_file} 2>/dev/null); if [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null && tr '\\0' ' ' < /proc/\"$p\"/cmdline 2>/dev/null | grep -q -- --cluster-reset; then echo running; fi"
        );
        let start = std::time::Instant::now();
        let mut was = false;
        loop {
            let out = self
                .exec("check for a running cluster reset", &check, b"")
                .await?;
            if !out.stdout_str().contains("running") {
                return Ok(was);
            }
            was = true;
            if start.elapsed() > timeout {
                return Err(HostError::Refused {
                    host: self.name().into(),
                    action: "run or observe a cluster reset".into(),
                    reason: format!(
                        "a k3s server --cluster-reset (pid in {pid_file}) is still running after {}s",
                        timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

fn status_line(line: &str) -> Option<StatusRead> {
    if let Some(j) = line.strip_prefix("status ") {
        Some(Ok(j.to_string()))
    } else {
        line.strip_prefix("unreadable ").map(|r| Err(r.to_string()))
    }
}
