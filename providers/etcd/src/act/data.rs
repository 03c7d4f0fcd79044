//! Whole-keyspace acts: a snapshot to a file, and the KV hashes of the voters compared.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::majority_cluster;
use crate::{
    EndpointError, EndpointErrorKind, EtcdError, EtcdProvider, MemberId, classify, timeout_error,
};

/// A snapshot written by [`EtcdProvider::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// The endpoint it was streamed from.
    pub endpoint: String,
    /// The member that served it.
    pub member_id: MemberId,
    /// The store revision of that member when the snapshot started.
    pub revision: i64,
}

/// The KV hash of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHash {
    /// The member.
    pub member_id: MemberId,
    /// Its endpoint.
    pub endpoint: String,
    /// HashKV at [`HashReport::revision`].
    pub hash: u32,
    /// Its compaction revision.
    pub compact_revision: i64,
}

/// Result of [`EtcdProvider::compare_hashes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashReport {
    /// The common revision all hashes were computed at (the lowest current revision of
    /// the answering voters, so every one of them has it).
    pub revision: i64,
    /// One hash per answering voter.
    pub hashes: Vec<MemberHash>,
    /// Members whose hash differs from the most common one.
    pub mismatched: Vec<MemberId>,
    /// Endpoints that could not be hashed (unreachable, learner refused, ...).
    pub failed: Vec<EndpointError>,
}

impl HashReport {
    /// All configured voters answered and agree.
    pub fn consistent(&self) -> bool {
        self.mismatched.is_empty() && self.failed.is_empty() && !self.hashes.is_empty()
    }
}

impl EtcdProvider {
    /// Streams a snapshot from a healthy voter (the leader if reachable) into `path`.
    ///
    /// Written to `path.part`, fsynced, then renamed: `path` is either complete or absent.
    /// The stream is bounded by `max_duration`, not by the per-request timeout.
    pub async fn snapshot(
        &self,
        path: &Path,
        max_duration: Duration,
    ) -> Result<SnapshotInfo, EtcdError> {
        let (ep, probe) = self.voter().await?;
        let member_id = probe.state.member_id;
        let revision = probe.state.revision;
        let mut client = self.client_with_timeout(&ep, None).await?;
        let file_err = |source| EtcdError::SnapshotFile {
            path: path.to_path_buf(),
            endpoint: ep.clone(),
            source,
        };
        let part = path.with_extension(match path.extension() {
            Some(e) => format!("{}.part", e.to_string_lossy()),
            None => "part".to_string(),
        });
        let work = async {
            let mut stream = client
                .snapshot()
                .await
                .map_err(|e| EtcdError::from(classify(&ep, "snapshot", &e)))?;
            let mut file = std::fs::File::create(&part).map_err(file_err)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|e| EtcdError::from(classify(&ep, "snapshot stream", &e)))?
            {
                let blob = msg.blob();
                hasher.update(blob);
                size += blob.len() as u64;
                file.write_all(blob).map_err(file_err)?;
            }
            file.sync_all().map_err(file_err)?;
            Ok::<_, EtcdError>((size, hex::encode(hasher.finalize())))
        };
        let (size, sha256) = match tokio::time::timeout(max_duration, work).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            Err(_) => {
                let _ = std::fs::remove_file(&part);
                return Err(timeout_error(&ep, "snapshot", max_duration).into());
            }
        };
        std::fs::rename(&part, path).map_err(file_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(SnapshotInfo {
            path: path.to_path_buf(),
            size,
            sha256,
            endpoint: ep,
            member_id,
            revision,
        })
    }

    /// Computes HashKV of every reachable voter at one common revision and reports
    /// mismatches. Learners and unreachable endpoints go to [`HashReport::failed`].
    ///
    /// Caveat: a compaction past the common revision between the two steps makes a member
    /// fail with "required revision has been compacted"; retry then.
    pub async fn compare_hashes(&self) -> Result<HashReport, EtcdError> {
        let probes = self.probe_all().await;
        let mut failed = Vec::new();
        let mut voters = Vec::new();
        let majority = majority_cluster(probes.iter().filter_map(|(_, r)| r.as_ref().ok()));
        for (ep, r) in probes {
            match r {
                Ok(p) if Some(p.state.cluster_id) != majority => failed.push(EndpointError {
                    endpoint: ep,
                    operation: "hash kv".into(),
                    kind: EndpointErrorKind::Rpc,
                    message: format!("answers for another cluster {}", p.state.cluster_id),
                }),
                Ok(p) if p.state.is_learner => failed.push(EndpointError {
                    endpoint: ep,
                    operation: "hash kv".into(),
                    kind: EndpointErrorKind::Rpc,
                    message: "member is a learner: HashKV not supported".into(),
                }),
                Ok(p) => voters.push((ep, p)),
                Err(e) => failed.push(e),
            }
        }
        let Some(revision) = voters.iter().map(|(_, p)| p.state.revision).min() else {
            return Err(EtcdError::NoHealthyVoter {
                endpoints: self.config.endpoints.clone(),
                errors: failed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        };
        let timeout = self.config.timeout;
        let results = futures::future::join_all(voters.into_iter().map(|(ep, p)| async move {
            let mut c = p.client;
            let r = tokio::time::timeout(timeout, c.hash_kv(revision)).await;
            (ep, p.state.member_id, r)
        }))
        .await;
        let mut hashes = Vec::new();
        for (ep, member_id, r) in results {
            match r {
                Ok(Ok(h)) => hashes.push(MemberHash {
                    member_id,
                    endpoint: ep,
                    hash: h.hash(),
                    compact_revision: h.compact_version(),
                }),
                Ok(Err(e)) => failed.push(classify(&ep, "hash kv", &e)),
                Err(_) => failed.push(timeout_error(&ep, "hash kv", timeout)),
            }
        }
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for h in &hashes {
            *counts.entry(h.hash).or_default() += 1;
        }
        let majority = counts.iter().max_by_key(|(_, n)| **n).map(|(h, _)| *h);
        let mismatched = hashes
            .iter()
            .filter(|h| Some(h.hash) != majority)
            .map(|h| h.member_id)
            .collect();
        Ok(HashReport {
            revision,
            hashes,
            mismatched,
            failed,
        })
    }
}
