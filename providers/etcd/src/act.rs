//! Acts: membership changes, leadership transfer, snapshot, hash comparison.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{Client, MemberAddOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::observe::Probe;
use crate::{
    EndpointError, EndpointErrorKind, EtcdError, EtcdProvider, MemberId, classify, norm_url,
    timeout_error,
};

/// What a new member needs to start (`etcd --initial-cluster ... --initial-cluster-state
/// existing`), as `etcdctl member add` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// The new member's ID.
    pub member_id: MemberId,
    /// Its name (`ETCD_NAME`).
    pub name: String,
    /// `ETCD_INITIAL_CLUSTER`: `name=peerURL` for every member, the new one included
    /// (members that never started have an empty name, as in `etcdctl`).
    pub initial_cluster: String,
    /// `ETCD_INITIAL_CLUSTER_STATE`: always `existing`.
    pub initial_cluster_state: String,
    /// `true` when a member with this peer URL already existed and was returned instead
    /// of adding another one.
    pub already_present: bool,
    /// Whether that member is (still) a learner.
    pub is_learner: bool,
}

/// Result of [`EtcdProvider::promote_learner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// The learner is now a voter; `attempts` promote calls were made.
    Promoted {
        /// Number of promote calls (1 when it was already in sync).
        attempts: u32,
    },
    /// It was already a voter: nothing done.
    AlreadyVoter,
}

/// Result of [`EtcdProvider::remove_member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// The member was removed (its etcd process exits).
    Removed,
    /// It was not in the member list: nothing done.
    AlreadyAbsent,
}

/// Result of [`EtcdProvider::move_leader_away`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderMove {
    /// Leadership moved from the member to `to`.
    Moved {
        /// The new leader.
        to: MemberId,
    },
    /// The member was not the leader: nothing done.
    NotLeader {
        /// The current leader, if known.
        leader: Option<MemberId>,
    },
}

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

/// Why a new member is not joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum JoinFailure {
    /// It answers for another cluster: it was started on a data dir left from an earlier
    /// cluster (seed 002). Fix: stop it, move its data dir aside, start it again.
    #[error(
        "it answers for cluster {found_cluster} (seen via {seen_via}), not for cluster \
         {expected_cluster}: it was started on a stale data dir from an earlier cluster \
         (move its data dir aside and start it again)"
    )]
    StaleDataDir {
        /// Member ID it reports, when its client port answered.
        found_member: Option<MemberId>,
        /// Cluster ID it reports.
        found_cluster: MemberId,
        /// The cluster it was added to.
        expected_cluster: MemberId,
        /// `client status` or `peer /members`.
        seen_via: String,
    },
    /// Its etcd accepts connections but never becomes ready, and its cluster could not be
    /// read from its peer port: it is not taking part in this cluster's raft.
    #[error(
        "its etcd accepts connections but never becomes ready ({detail}); it is not taking \
         part in this cluster's raft: typically a stale data dir from an earlier cluster \
         (seed 002) or a wrong --initial-cluster"
    )]
    NotReady {
        /// The client timeout and the peer check's error.
        detail: String,
    },
    /// Its endpoint answers as another member of this very cluster.
    #[error("its endpoint answers as member {found_member} instead")]
    WrongMember {
        /// The member that answered.
        found_member: MemberId,
    },
    /// It never published its name/client URLs; the endpoint's last error.
    #[error("it has not started (never published its name): {last_error}")]
    NotStarted {
        /// Last error of its endpoint, or a description.
        last_error: String,
    },
    /// It is not (or no longer) in the member list.
    #[error("it is not in the member list")]
    NotAMember,
}

/// Where a joining member stands, from [`EtcdProvider::check_join`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JoinStatus {
    /// Started, and its endpoint answers as that member of this cluster.
    Joined {
        /// Still a learner.
        is_learner: bool,
    },
    /// Not joined (yet).
    Failing {
        /// Why.
        failure: JoinFailure,
    },
}

fn is_not_in_sync(msg: &str) -> bool {
    msg.contains("in sync with leader") || msg.contains("not in sync")
}

impl EtcdProvider {
    /// A client on a reachable voting member that knows a leader, preferring the leader.
    pub(crate) async fn voter(&self) -> Result<(String, Probe), EtcdError> {
        let probes = futures::future::join_all(
            self.config
                .endpoints
                .iter()
                .map(|ep| async move { (ep.clone(), self.probe(ep, false).await) }),
        )
        .await;
        let mut errors = Vec::new();
        let majority = majority_cluster(probes.iter().filter_map(|(_, r)| r.as_ref().ok()));
        let mut best: Option<(String, Probe)> = None;
        for (ep, r) in probes {
            match r {
                Ok(p) if Some(p.state.cluster_id) != majority => errors.push(format!(
                    "{ep}: answers for another cluster {} (stale data dir?)",
                    p.state.cluster_id
                )),
                Ok(p) if !p.state.is_learner && p.state.leader.is_some() => {
                    let is_leader = p.state.leader == Some(p.state.member_id);
                    let replace = match &best {
                        None => true,
                        Some((_, b)) => is_leader && b.state.leader != Some(b.state.member_id),
                    };
                    if replace {
                        best = Some((ep, p));
                    }
                }
                Ok(p) => errors.push(format!(
                    "{ep}: {}",
                    if p.state.is_learner {
                        "learner"
                    } else {
                        "no leader"
                    }
                )),
                Err(e) => errors.push(e.to_string()),
            }
        }
        best.ok_or_else(|| EtcdError::NoHealthyVoter {
            endpoints: self.config.endpoints.clone(),
            errors: errors.join("; "),
        })
    }

    async fn member_list_on(
        &self,
        ep: &str,
        client: &mut Client,
    ) -> Result<Vec<etcd_client::Member>, EtcdError> {
        Ok(client
            .member_list()
            .await
            .map_err(|e| classify(ep, "member list", &e))?
            .members()
            .to_vec())
    }

    /// Adds a learner with `peer_urls` and returns what it needs to start.
    ///
    /// Idempotent: if a member already has one of these peer URLs, no member is added and
    /// that member's [`JoinInfo`] is returned with `already_present = true`.
    /// Caveat: the new member counts in the membership at once (as a learner it does not
    /// count for quorum); start it promptly with the returned `initial_cluster`.
    ///
    /// etcd (strict reconfig check, on by default) refuses `member add` with "unhealthy
    /// cluster" unless every voting member has been connected to the leader for the last
    /// 5 s — right after a start, or while a dead voter is still listed. This call retries
    /// that refusal until `deadline`; with a dead voter listed, remove it first.
    pub async fn add_learner(
        &self,
        name: &str,
        peer_urls: &[String],
        deadline: Duration,
    ) -> Result<JoinInfo, EtcdError> {
        let start = Instant::now();
        loop {
            match self.add_learner_once(name, peer_urls).await {
                Err(EtcdError::Endpoint(e))
                    if e.message.contains("unhealthy cluster") && start.elapsed() < deadline =>
                {
                    tracing::debug!("member add refused, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn add_learner_once(
        &self,
        name: &str,
        peer_urls: &[String],
    ) -> Result<JoinInfo, EtcdError> {
        let (ep, probe) = self.voter().await?;
        let mut client = probe.client;
        let wanted: Vec<String> = peer_urls.iter().map(|u| norm_url(u)).collect();
        let list = self.member_list_on(&ep, &mut client).await?;
        if let Some(m) = list
            .iter()
            .find(|m| m.peer_urls().iter().any(|u| wanted.contains(&norm_url(u))))
        {
            return Ok(join_info(m.id(), name, &list, true, m.is_learner()));
        }
        let resp = client
            .member_add(peer_urls, Some(MemberAddOptions::new().with_is_learner()))
            .await
            .map_err(|e| classify(&ep, "member add (learner)", &e))?;
        let id = resp.member().map(|m| m.id()).unwrap_or(0);
        Ok(join_info(id, name, resp.member_list(), false, true))
    }

    /// Promotes learner `id`, retrying while etcd says it is not yet in sync with the
    /// leader, until `deadline` has passed.
    ///
    /// Idempotent: a member that already votes gives [`Promotion::AlreadyVoter`].
    pub async fn promote_learner(
        &self,
        id: MemberId,
        deadline: Duration,
    ) -> Result<Promotion, EtcdError> {
        let start = Instant::now();
        let (ep, probe) = self.voter().await?;
        let mut client = probe.client;
        let mut attempts = 0u32;
        loop {
            let list = self.member_list_on(&ep, &mut client).await?;
            let Some(m) = list.iter().find(|m| m.id() == id.0) else {
                return Err(EtcdError::MemberNotFound { id, endpoint: ep });
            };
            if !m.is_learner() {
                return Ok(if attempts == 0 {
                    Promotion::AlreadyVoter
                } else {
                    Promotion::Promoted { attempts }
                });
            }
            attempts += 1;
            match client.member_promote(id.0).await {
                Ok(_) => return Ok(Promotion::Promoted { attempts }),
                Err(e) => {
                    let err = classify(&ep, "member promote", &e);
                    if !is_not_in_sync(&err.message) {
                        return Err(err.into());
                    }
                    if start.elapsed() >= deadline {
                        return Err(EtcdError::PromoteTimedOut {
                            id,
                            endpoint: ep,
                            waited: start.elapsed(),
                            last: err.message,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Removes member `id`. Removing an absent member is a no-op ([`Removal::AlreadyAbsent`]).
    ///
    /// Caveats: this does not check quorum (the planner does); the removed member's etcd
    /// process exits; if `id` is the leader, call [`EtcdProvider::move_leader_away`] first
    /// to avoid an election during the change.
    pub async fn remove_member(&self, id: MemberId) -> Result<Removal, EtcdError> {
        let (ep, probe) = self.voter().await?;
        let mut client = probe.client;
        let list = self.member_list_on(&ep, &mut client).await?;
        if !list.iter().any(|m| m.id() == id.0) {
            return Ok(Removal::AlreadyAbsent);
        }
        match client.member_remove(id.0).await {
            Ok(_) => Ok(Removal::Removed),
            Err(e) => {
                let err = classify(&ep, "member remove", &e);
                if err.message.contains("member not found") {
                    Ok(Removal::AlreadyAbsent)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// If `id` leads, transfers leadership to the reachable, started voter with the highest
    /// raft index (the one most caught up). A no-op when `id` does not lead.
    pub async fn move_leader_away(&self, id: MemberId) -> Result<LeaderMove, EtcdError> {
        let obs = self.observe().await;
        let leader = obs.health.leader;
        if leader != Some(id) {
            return Ok(LeaderMove::NotLeader { leader });
        }
        let leader_ep = obs
            .endpoints
            .iter()
            .find(|e| e.state.as_ref().is_some_and(|s| s.member_id == id))
            .map(|e| e.endpoint.clone())
            .ok_or_else(|| EtcdError::CannotMoveLeader {
                id,
                reason: "no configured endpoint reaches the leader".into(),
            })?;
        let target = obs
            .endpoints
            .iter()
            .filter_map(|e| e.state.as_ref())
            .filter(|s| s.member_id != id && !s.is_learner && s.leader == Some(id))
            .filter(|s| {
                obs.member(s.member_id)
                    .is_some_and(|m| m.started && !m.is_learner)
            })
            .max_by_key(|s| s.raft_index)
            .map(|s| s.member_id)
            .ok_or_else(|| EtcdError::CannotMoveLeader {
                id,
                reason: "no other reachable, started voting member follows it".into(),
            })?;
        let mut client = self.client(&leader_ep).await?;
        client
            .move_leader(target.0)
            .await
            .map_err(|e| classify(&leader_ep, "move leader", &e))?;
        Ok(LeaderMove::Moved { to: target })
    }

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
        let probes = futures::future::join_all(
            self.config
                .endpoints
                .iter()
                .map(|ep| async move { (ep.clone(), self.probe(ep, false).await) }),
        )
        .await;
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

    /// Checks whether member `id`, expected at client URL `endpoint`, has joined.
    ///
    /// Detects a member started on a stale data dir (its endpoint answers for another
    /// cluster) — the seed 002 failure.
    pub async fn check_join(&self, id: MemberId, endpoint: &str) -> Result<JoinStatus, EtcdError> {
        let (ep, probe) = self.voter().await?;
        let cluster = probe.state.cluster_id;
        let mut client = probe.client;
        let list = self.member_list_on(&ep, &mut client).await?;
        let Some(m) = list.iter().find(|m| m.id() == id.0) else {
            return Ok(JoinStatus::Failing {
                failure: JoinFailure::NotAMember,
            });
        };
        let started = !m.name().is_empty() && !m.client_urls().is_empty();
        let own = self.probe(endpoint, false).await;
        match own {
            Ok(p) if p.state.cluster_id != cluster => Ok(JoinStatus::Failing {
                failure: JoinFailure::StaleDataDir {
                    found_member: Some(p.state.member_id),
                    found_cluster: p.state.cluster_id,
                    expected_cluster: cluster,
                    seen_via: "client status".into(),
                },
            }),
            Ok(p) if p.state.member_id != id => Ok(JoinStatus::Failing {
                failure: JoinFailure::WrongMember {
                    found_member: p.state.member_id,
                },
            }),
            Ok(p) if started => Ok(JoinStatus::Joined {
                is_learner: p.state.is_learner,
            }),
            Ok(_) => Ok(JoinStatus::Failing {
                failure: JoinFailure::NotStarted {
                    last_error:
                        "its endpoint answers but the member list does not show it started yet"
                            .into(),
                },
            }),
            Err(e) if e.kind == EndpointErrorKind::Timeout && !started => {
                // etcd serves clients only once ready (it has joined raft), but serves its
                // peer port from the start: ask the peer port which cluster it is in.
                let files = self.config.peer_tls.as_ref().or(self.config.tls.as_ref());
                let mut peer_errors = Vec::new();
                for url in m.peer_urls() {
                    match crate::tlsprobe::peer_cluster_id(url, files, self.config.timeout).await {
                        Ok(found) if found != cluster => {
                            return Ok(JoinStatus::Failing {
                                failure: JoinFailure::StaleDataDir {
                                    found_member: None,
                                    found_cluster: found,
                                    expected_cluster: cluster,
                                    seen_via: format!("peer {url}/members"),
                                },
                            });
                        }
                        Ok(_) => {
                            return Ok(JoinStatus::Failing {
                                failure: JoinFailure::NotStarted {
                                    last_error: format!(
                                        "{e}; its peer port answers for this cluster: still joining"
                                    ),
                                },
                            });
                        }
                        Err(pe) => peer_errors.push(pe),
                    }
                }
                Ok(JoinStatus::Failing {
                    failure: JoinFailure::NotReady {
                        detail: format!("{e}; peer check: {}", peer_errors.join("; ")),
                    },
                })
            }
            Err(e) => Ok(JoinStatus::Failing {
                failure: JoinFailure::NotStarted {
                    last_error: e.to_string(),
                },
            }),
        }
    }

    /// Polls [`EtcdProvider::check_join`] until the member has joined or `deadline` passed.
    /// A stale data dir fails at once (it never heals by itself).
    pub async fn wait_for_join(
        &self,
        id: MemberId,
        endpoint: &str,
        deadline: Duration,
    ) -> Result<(), EtcdError> {
        let start = Instant::now();
        loop {
            let failure = match self.check_join(id, endpoint).await? {
                JoinStatus::Joined { .. } => return Ok(()),
                JoinStatus::Failing { failure } => failure,
            };
            let definitive = matches!(
                failure,
                JoinFailure::StaleDataDir { .. }
                    | JoinFailure::NotAMember
                    | JoinFailure::WrongMember { .. }
            );
            if definitive || start.elapsed() >= deadline {
                return Err(EtcdError::JoinFailed {
                    id,
                    endpoint: endpoint.to_string(),
                    reason: failure,
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The cluster ID most probes report.
fn majority_cluster<'a>(probes: impl Iterator<Item = &'a Probe>) -> Option<MemberId> {
    let mut votes: BTreeMap<MemberId, usize> = BTreeMap::new();
    for p in probes {
        *votes.entry(p.state.cluster_id).or_default() += 1;
    }
    votes.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c)
}

fn join_info(
    id: u64,
    name: &str,
    list: &[etcd_client::Member],
    already_present: bool,
    is_learner: bool,
) -> JoinInfo {
    let mut parts = Vec::new();
    for m in list {
        let n = if m.id() == id { name } else { m.name() };
        for u in m.peer_urls() {
            parts.push(format!("{n}={u}"));
        }
    }
    JoinInfo {
        member_id: MemberId(id),
        name: name.to_string(),
        initial_cluster: parts.join(","),
        initial_cluster_state: "existing".into(),
        already_present,
        is_learner,
    }
}
