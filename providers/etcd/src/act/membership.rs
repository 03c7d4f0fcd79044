//! Membership changes: add a learner, promote it, remove a member, move leadership.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use etcd_client::{Client, MemberAddOptions};
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::retry::{Expired, retry_until};
use crate::{EndpointError, EtcdError, EtcdProvider, MemberId, classify, is_etcd_status, norm_url};

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

/// etcd refuses to promote a learner that has not caught up with the leader (status
/// FailedPrecondition, shared with other refusals: see [`is_etcd_status`]).
fn is_not_in_sync(e: &etcd_client::Error) -> bool {
    is_etcd_status(e, Code::FailedPrecondition, "in sync with leader")
        || is_etcd_status(e, Code::FailedPrecondition, "not in sync")
}

impl EtcdProvider {
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
        let attempt = async || match self.add_learner_once(name, peer_urls).await {
            Ok(Err(refused)) => {
                tracing::debug!("member add refused, retrying: {refused}");
                ControlFlow::Continue(refused)
            }
            Ok(Ok(info)) => ControlFlow::Break(Ok(info)),
            Err(e) => ControlFlow::Break(Err(e)),
        };
        let pause = Duration::from_millis(500);
        match retry_until(Instant::now(), deadline, pause, attempt).await {
            Ok(done) => done,
            Err(expired) => Err(expired.last.into()),
        }
    }

    /// One `member add`; `Ok(Err(_))` when etcd refuses it as "unhealthy cluster" (status
    /// Unavailable, shared with other answers: see [`is_etcd_status`]).
    async fn add_learner_once(
        &self,
        name: &str,
        peer_urls: &[String],
    ) -> Result<Result<JoinInfo, EndpointError>, EtcdError> {
        let (ep, probe) = self.voter().await?;
        let mut client = probe.client;
        let wanted: Vec<String> = peer_urls.iter().map(|u| norm_url(u)).collect();
        let list = self.member_list_on(&ep, &mut client).await?;
        if let Some(m) = list
            .iter()
            .find(|m| m.peer_urls().iter().any(|u| wanted.contains(&norm_url(u))))
        {
            return Ok(Ok(join_info(m.id(), name, &list, true, m.is_learner())));
        }
        let resp = match client
            .member_add(peer_urls, Some(MemberAddOptions::new().with_is_learner()))
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                let err = classify(&ep, "member add (learner)", &e);
                return match is_etcd_status(&e, Code::Unavailable, "unhealthy cluster") {
                    true => Ok(Err(err)),
                    false => Err(err.into()),
                };
            }
        };
        let id = resp.member().map(|m| m.id()).unwrap_or(0);
        Ok(Ok(join_info(id, name, resp.member_list(), false, true)))
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
        let attempt = async || match self.promote_once(id, &ep, &mut client, &mut attempts).await {
            Ok(flow) => flow.map_break(Ok),
            Err(e) => ControlFlow::Break(Err(e)),
        };
        let pause = Duration::from_millis(250);
        match retry_until(start, deadline, pause, attempt).await {
            Ok(done) => done,
            Err(Expired { last, waited }) => Err(EtcdError::PromoteTimedOut {
                id,
                endpoint: ep,
                waited,
                last: last.message,
            }),
        }
    }

    /// One promotion of `id` through `ep`: `Continue` while etcd says the learner is not yet
    /// in sync with the leader.
    async fn promote_once(
        &self,
        id: MemberId,
        ep: &str,
        client: &mut Client,
        attempts: &mut u32,
    ) -> Result<ControlFlow<Promotion, EndpointError>, EtcdError> {
        let list = self.member_list_on(ep, client).await?;
        let Some(m) = list.iter().find(|m| m.id() == id.0) else {
            return Err(EtcdError::MemberNotFound {
                id,
                endpoint: ep.to_string(),
            });
        };
        if !m.is_learner() {
            return Ok(ControlFlow::Break(if *attempts == 0 {
                Promotion::AlreadyVoter
            } else {
                Promotion::Promoted {
                    attempts: *attempts,
                }
            }));
        }
        *attempts += 1;
        match client.member_promote(id.0).await {
            Ok(_) => Ok(ControlFlow::Break(Promotion::Promoted {
                attempts: *attempts,
            })),
            Err(e) if is_not_in_sync(&e) => {
                Ok(ControlFlow::Continue(classify(ep, "member promote", &e)))
            }
            Err(e) => Err(classify(ep, "member promote", &e).into()),
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
            // etcd answers NotFound to `member remove` only for "member not found".
            Err(etcd_client::Error::GRpcStatus(st)) if st.code() == Code::NotFound => {
                Ok(Removal::AlreadyAbsent)
            }
            Err(e) => Err(classify(&ep, "member remove", &e).into()),
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
