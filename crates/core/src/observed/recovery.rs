//! What a quorum-loss recovery needs to know about each server's etcd data (issue 16),
//! observed over SSH only when a recovery is asked for (`plan --recover`).
//!
//! Guarantees: every value comes from the host's files (`<data-dir>/server/db/…`), read while
//! etcd may be down; a value that could not be read is `None`/[`DbRead::Unreadable`] with the
//! reason, never a guess. Caveat: the revision is the one committed to the member's bolt
//! database (`member/snap/db`); WAL entries not yet applied to it when etcd stopped are not
//! counted, so it is a lower bound of how far the member's data goes.

use serde::{Deserialize, Serialize};

impl EtcdSurvey {
    /// `running`, `restarting` or `stopped`: the unit's state in the survey.
    pub fn k3s_state(&self) -> &'static str {
        if self.k3s_active {
            "running"
        } else if self.k3s_restarting {
            "restarting"
        } else {
            "stopped"
        }
    }
}

/// One server's etcd data, as its host shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdSurvey {
    /// The k3s server unit is active.
    pub k3s_active: bool,
    /// Not active, but its service manager is starting it or will restart it (systemd
    /// "activating (auto-restart)"): it runs again by itself unless stopped.
    #[serde(default)]
    pub k3s_restarting: bool,
    /// `<data-dir>/server/db/etcd` exists.
    pub etcd_dir: bool,
    /// `<data-dir>/server/db/etcd/member` exists (an initialized member).
    pub member_dir: bool,
    /// `server/db/etcd/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<String>,
    /// `<data-dir>/server/db/reset-flag`: a `--cluster-reset` ran and k3s has not been started
    /// normally since (k3s-io/k3s pkg/cluster/managed.go).
    pub reset_flag: bool,
    /// The member's database (`member/snap/db`) as `etcdctl snapshot status` reads it.
    pub db: DbRead,
    /// The member and cluster IDs recorded in the first WAL file's metadata record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalIds>,
    /// Snapshot files in `<data-dir>/server/db/snapshots`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotFile>,
}

/// What reading a bolt database file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DbRead {
    /// No such file.
    #[default]
    Absent,
    Read(DbStatus),
    /// Present but not readable (corrupt, no `etcdctl` on the host, locked).
    Unreadable {
        reason: String,
    },
}

impl DbRead {
    pub fn status(&self) -> Option<&DbStatus> {
        match self {
            DbRead::Read(s) => Some(s),
            _ => None,
        }
    }
}

/// `etcdctl snapshot status -w json` of a database or snapshot file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// The IDs in an etcd WAL's metadata record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalIds {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// One `k3s etcd-snapshot` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub path: String,
    /// Its file name (what `--from-snapshot NAME` names).
    pub name: String,
    /// Modification time, seconds since the epoch.
    pub mtime_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DbStatus>,
}

/// Parses `etcdctl snapshot status -w json` output
/// (`{"hash":…,"revision":…,"totalKey":…,"totalSize":…}`).
pub fn parse_snapshot_status(json: &str) -> Option<DbStatus> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    Some(DbStatus {
        hash: u32::try_from(v.get("hash")?.as_u64()?).ok()?,
        revision: v.get("revision")?.as_i64()?,
        total_keys: v.get("totalKey")?.as_u64()?,
        total_size: v.get("totalSize")?.as_u64()?,
    })
}

/// The member and cluster IDs of an etcd WAL file, from its first bytes.
///
/// etcd's WAL (etcd-io/etcd `server/storage/wal/encoder.go`, `wal.go` `Create`) frames each
/// record with an 8-byte little-endian length (the top byte's high bit flags padding, its low
/// 3 bits the pad size), and starts with a `crcType` record then a `metadataType` (1) record
/// whose data is `etcdserverpb.Metadata{NodeID = 1, ClusterID = 2}` (varints).
pub fn wal_ids(bytes: &[u8]) -> Option<WalIds> {
    let mut at = 0usize;
    for _ in 0..4 {
        let frame = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
        let len = (frame & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if frame >> 63 == 1 {
            ((frame >> 56) & 0x7) as usize
        } else {
            0
        };
        let rec = bytes.get(at + 8..at + 8 + len)?;
        at += 8 + len + pad;
        let (mut typ, mut data) = (0u64, None);
        let mut i = 0;
        while i < rec.len() {
            let (key, n) = varint(&rec[i..])?;
            i += n;
            match (key >> 3, key & 7) {
                (1, 0) => {
                    let (v, n) = varint(&rec[i..])?;
                    typ = v;
                    i += n;
                }
                (_, 0) => i += varint(&rec[i..])?.1,
                (3, 2) => {
                    let (l, n) = varint(&rec[i..])?;
                    i += n;
                    data = Some(rec.get(i..i + l as usize)?);
                    i += l as usize;
                }
                (_, 2) => {
                    let (l, n) = varint(&rec[i..])?;
                    i += n + l as usize;
                }
                _ => return None,
            }
        }
        if typ == 1 {
            let d = data?;
            let (mut member_id, mut cluster_id) = (None, None);
            let mut i = 0;
            while i < d.len() {
                let (key, n) = varint(&d[i..])?;
                i += n;
                let (v, n) = varint(&d[i..])?;
                i += n;
                match key {
                    0x08 => member_id = Some(v),
                    0x10 => cluster_id = Some(v),
                    _ => {}
                }
            }
            return Some(WalIds {
                member_id: member_id?,
                cluster_id: cluster_id?,
            });
        }
    }
    None
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(typ: u64, data: &[u8]) -> Vec<u8> {
        let mut rec = vec![0x08, typ as u8, 0x10, 0x05];
        if !data.is_empty() {
            rec.push(0x1a);
            rec.push(data.len() as u8);
            rec.extend_from_slice(data);
        }
        let pad = (8 - rec.len() % 8) % 8;
        let mut frame = rec.len() as u64;
        if pad > 0 {
            frame |= (0x80 | pad as u64) << 56;
        }
        let mut out = frame.to_le_bytes().to_vec();
        out.extend_from_slice(&rec);
        out.extend(std::iter::repeat_n(0u8, pad));
        out
    }

    #[test]
    fn wal_ids_reads_the_metadata_record_after_the_crc_record() {
        let mut b = record(4, &[]);
        // NodeID 0x1234 (varint b4 24), ClusterID 300 (varint ac 02).
        b.extend(record(1, &[0x08, 0xb4, 0x24, 0x10, 0xac, 0x02]));
        assert_eq!(
            wal_ids(&b),
            Some(WalIds {
                member_id: 0x1234,
                cluster_id: 300
            })
        );
        assert_eq!(wal_ids(&b[..10]), None, "truncated");
        assert_eq!(wal_ids(b"garbage garbage garbage"), None);
    }

    #[test]
    fn snapshot_status_json_is_parsed() {
        let s = parse_snapshot_status(
            r#"{"hash":3056419183,"revision":42,"totalKey":17,"totalSize":20480}"#,
        )
        .unwrap();
        assert_eq!(s.revision, 42);
        assert_eq!(s.total_keys, 17);
        assert_eq!(parse_snapshot_status("Error: bolt"), None);
    }
}
