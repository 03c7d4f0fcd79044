//! What `k3splan check` reads on a server, in one remote exec: the certificates of the k3s TLS
//! directories (public `*.crt` files only — never a key), the snapshot files with their age,
//! size and integrity, the member dir's age, and whether the host holds the VIP.
//!
//! Where k3s keeps them (k3s `pkg/daemons/control/deps/deps.go`): the server's certificates
//! under `<data-dir>/server/tls/` (and `tls/etcd/`), the agent's (kubelet, kube-proxy,
//! k3s-controller clients) under `<data-dir>/agent/`. Snapshots: `<data-dir>/server/db/snapshots`
//! (k3s `pkg/etcd/snapshot.go`, default `--etcd-snapshot-dir`).
//!
//! A snapshot is verified as `etcdutl snapshot status`/restore do (etcd
//! `etcdutl/snapshot/v3_snapshot.go`): `etcdctl snapshot save` appends the sha256 of the
//! bolt DB, so a file whose size is 32 more than a multiple of 512 carries a hash, and its
//! last 32 bytes must be the sha256 of the rest.

use crate::quote::{sh_command, sh_quote};

/// One certificate file's text (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCert {
    pub path: String,
    pub pem: String,
}

/// One snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshot {
    pub path: String,
    pub mtime: i64,
    pub size: u64,
    /// `Some(true)` hash matches, `Some(false)` it does not, `None` no hash to check.
    pub intact: Option<bool>,
}

/// What the check script printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCheck {
    pub certs: Vec<RawCert>,
    pub snapshots: Vec<RawSnapshot>,
    pub member_dir_mtime: Option<i64>,
    /// `None` when no VIP was asked about.
    pub holds_vip: Option<bool>,
    /// The script ran to its end (otherwise the output was cut).
    pub complete: bool,
}

/// The command line of the check script for `data_dir`, asking about `vip` if given.
pub fn check_command(data_dir: &str, vip: Option<&str>, marker: &str) -> String {
    let script = format!(
        r#"M={marker}
D={data}
VIP={vip}
for f in "$D"/server/tls/*.crt "$D"/server/tls/etcd/*.crt "$D"/agent/*.crt; do
  if [ -f "$f" ] && [ -r "$f" ]; then echo "$M cert $f"; cat -- "$f"; echo; fi
done
for f in "$D"/server/db/snapshots/*; do
  [ -f "$f" ] || continue
  sz=$(stat -c %s -- "$f"); mt=$(stat -c %Y -- "$f")
  v=none
  case "$f" in *.zip|*.gz|*.zst) ;; *)
    if [ "$sz" -gt 32 ] && [ $(( sz % 512 )) -eq 32 ]; then
      want=$(tail -c 32 -- "$f" | od -An -v -tx1 | tr -d ' \n')
      got=$(head -c $(( sz - 32 )) -- "$f" | sha256sum | cut -d' ' -f1)
      if [ "$want" = "$got" ]; then v=intact; else v=corrupt; fi
    elif [ "$sz" -gt 0 ]; then v=corrupt
    fi;;
  esac
  echo "$M snapshot $mt $sz $v $f"
done
if [ -d "$D/server/db/etcd/member" ]; then echo "$M member $(stat -c %Y -- "$D/server/db/etcd/member")"; fi
if [ -n "$VIP" ]; then
  if ip -o addr show 2>/dev/null | grep -qF " $VIP/"; then echo "$M vip yes"; else echo "$M vip no"; fi
fi
echo "$M end"
"#,
        marker = sh_quote(marker),
        data = sh_quote(data_dir.trim_end_matches('/')),
        vip = sh_quote(vip.unwrap_or("")),
    );
    sh_command(&["sh", "-c", &script])
}

impl crate::HostSession {
    /// Runs [`check_command`] and parses its output. An output cut before its end (the
    /// script was killed) is an error, never a partial answer.
    pub async fn check_facts(
        &self,
        data_dir: &str,
        vip: Option<&str>,
    ) -> Result<RawCheck, crate::HostError> {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let marker = format!("K3SPLAN-CHECK-{t:x}{:x}", std::process::id());
        let out = self
            .run(
                "check: read certificates and snapshots",
                &check_command(data_dir, vip, &marker),
                b"",
            )
            .await?;
        let r = parse_check_output(&out.stdout_str(), &marker);
        if !r.complete {
            return Err(self.failed("check: read certificates and snapshots (output cut)", &out));
        }
        Ok(r)
    }
}

/// Parses the output of [`check_command`].
pub fn parse_check_output(out: &str, marker: &str) -> RawCheck {
    let mut r = RawCheck::default();
    let prefix = format!("{marker} ");
    let mut cert: Option<RawCert> = None;
    for line in out.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            if let Some(c) = &mut cert {
                c.pem.push_str(line);
                c.pem.push('\n');
            }
            continue;
        };
        if let Some(c) = cert.take() {
            r.certs.push(c);
        }
        let (kind, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "cert" => {
                cert = Some(RawCert {
                    path: arg.to_string(),
                    pem: String::new(),
                })
            }
            "snapshot" => {
                let mut it = arg.splitn(4, ' ');
                let (Some(mt), Some(sz), Some(v), Some(p)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    continue;
                };
                r.snapshots.push(RawSnapshot {
                    path: p.to_string(),
                    mtime: mt.parse().unwrap_or(0),
                    size: sz.parse().unwrap_or(0),
                    intact: match v {
                        "intact" => Some(true),
                        "corrupt" => Some(false),
                        _ => None,
                    },
                });
            }
            "member" => r.member_dir_mtime = arg.trim().parse().ok(),
            "vip" => r.holds_vip = Some(arg.trim() == "yes"),
            "end" => r.complete = true,
            _ => {}
        }
    }
    if let Some(c) = cert.take() {
        r.certs.push(c);
    }
    r
}

impl crate::HostSession {
    /// Starts, detached from this connection (`setsid`, no stdio on the channel), the whole
    /// certificate rotation of a server: stop k3s, `k3s certificate rotate`, start k3s —
    /// k3s is started again whatever the rotation did. The host finishes it even when
    /// k3splan dies half-way, so a server is never left stopped; sequences are serialised
    /// by a lock file (`flock`, util-linux). Returns the path of the
    /// marker file the sequence writes its rotate exit status to when done
    /// ([`Self::rotation_status`]).
    pub async fn start_certificate_rotation(
        &self,
        layout: &crate::K3sLayout,
    ) -> Result<String, crate::HostError> {
        let data = layout.data_dir.trim_end_matches('/');
        // A marker of this launch only: a sequence an earlier (killed) apply started writes
        // its own, never this one's.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let marker = format!("{data}/server/k3splan-rotate-{t:x}.status");
        let log = format!("{data}/server/k3splan-rotate.log");
        let lock = format!("{data}/server/k3splan-rotate.lock");
        let unit = &layout.server_unit;
        let seq = format!(
            "{stop} ; {k3s} certificate rotate --data-dir {d}; r=$?; {start}; s=$?; [ $r -eq 0 ] && r=$s; echo $r > {m}.tmp && mv {m}.tmp {m}",
            stop = layout.services.command(crate::ServiceAction::Stop, unit),
            k3s = sh_quote(&layout.k3s_bin),
            d = sh_quote(data),
            start = layout.services.command(crate::ServiceAction::Start, unit),
            m = sh_quote(&marker),
        );
        // Serialised on the host (`flock`): a sequence still running from a killed apply
        // finishes before this one stops k3s again, so two never interleave. `-o`: the lock
        // stays with flock, never inherited by the k3s daemon the sequence starts (which
        // would hold it for good).
        let cmd = format!(
            "rm -f {m}; setsid flock -o -w 900 {lock} sh -c {seq} </dev/null >>{log} 2>&1 &",
            m = sh_quote(&marker),
            lock = sh_quote(&lock),
            seq = sh_quote(&seq),
            log = sh_quote(&log),
        );
        self.run(
            "start k3s certificate rotate",
            &sh_command(&["sh", "-c", &cmd]),
            b"",
        )
        .await?;
        Ok(marker)
    }

    /// The exit status the rotation wrote to `marker` (which is then removed), `None` while
    /// it runs.
    pub async fn rotation_status(&self, marker: &str) -> Result<Option<i32>, crate::HostError> {
        let out = self
            .run(
                "read the rotation status",
                &sh_command(&[
                    "sh",
                    "-c",
                    "cat -- \"$1\" 2>/dev/null && rm -f -- \"$1\"; true",
                    "sh",
                    marker,
                ]),
                b"",
            )
            .await?;
        Ok(out.stdout_str().trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section() {
        let out = "M cert /d/server/tls/a.crt\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\nM snapshot 100 544 intact /d/server/db/snapshots/on-demand-x-1\nM snapshot 90 7 corrupt /d/s 2\nM member 50\nM vip yes\nM end\n";
        let r = parse_check_output(out, "M");
        assert!(r.complete);
        assert_eq!(r.certs.len(), 1);
        assert!(r.certs[0].pem.contains("AAA"));
        assert_eq!(r.snapshots.len(), 2);
        assert_eq!(r.snapshots[0].intact, Some(true));
        assert_eq!(r.snapshots[1].path, "/d/s 2");
        assert_eq!(r.snapshots[1].intact, Some(false));
        assert_eq!(r.member_dir_mtime, Some(50));
        assert_eq!(r.holds_vip, Some(true));
        assert!(!parse_check_output("M cert /x\n", "M").complete);
    }
}
