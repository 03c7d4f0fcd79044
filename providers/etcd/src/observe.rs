//! Observation: member list, per-endpoint status, health summary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use etcd_client::Client;
use serde::{Deserialize, Serialize};

use crate::{EndpointError, EtcdProvider, MemberId, classify, norm_url, timeout_error, url_host};

/// An active etcd alarm on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Alarm {
    /// The backend quota is exhausted: the cluster only accepts reads and deletes.
    Nospace,
    /// A member's data was found inconsistent.
    Corrupt,
}

/// What one endpoint reported (all fields from its own `status`/`alarm` answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// The member that answered.
    pub member_id: MemberId,
    /// The cluster it belongs to. Differs from the observation's cluster for a member
    /// started on a data dir from another cluster.
    pub cluster_id: MemberId,
    /// The leader it knows of; `None` while it has no leader.
    pub leader: Option<MemberId>,
    /// Raft term.
    pub raft_term: u64,
    /// Raft index (last committed).
    pub raft_index: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Current KV store revision.
    pub revision: i64,
    /// Backend DB size in bytes.
    pub db_size: i64,
    /// Bytes in use within the DB.
    pub db_size_in_use: i64,
    /// Server version, e.g. `3.4.23`.
    pub version: String,
    /// Whether the member is a learner.
    pub is_learner: bool,
    /// Active alarms of this member.
    pub alarms: Vec<Alarm>,
    /// Errors the member reports in `status` (e.g. "NOSPACE").
    pub errors: Vec<String>,
}

/// The result of asking one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// The client URL asked.
    pub endpoint: String,
    /// Its answer, if it answered `status`.
    pub state: Option<EndpointState>,
    /// Why it did not answer (also set when `status` worked but the member list failed on
    /// a voter; then `state` is `Some`).
    pub error: Option<EndpointError>,
    /// Wall time spent on this endpoint, in milliseconds.
    pub elapsed_ms: u64,
}

impl EndpointStatus {
    /// Whether the endpoint answered `status`.
    pub fn reachable(&self) -> bool {
        self.state.is_some()
    }
}

/// Health of one member, as seen from the configured endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MemberHealth {
    /// Its endpoint answered and it knows a leader.
    Healthy {
        /// The endpoint that answered.
        endpoint: String,
    },
    /// Its endpoint answered but it has no leader (election in progress or quorum lost).
    NoLeader {
        /// The endpoint that answered.
        endpoint: String,
    },
    /// Its endpoint did not answer.
    Unreachable {
        /// The failure.
        error: EndpointError,
    },
    /// No configured endpoint belongs to this member: health unknown.
    NotObserved,
}

/// One member of the member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member ID.
    pub id: MemberId,
    /// Name; empty while the member has not started.
    pub name: String,
    /// Peer URLs (k3splan matches members to nodes by their address).
    pub peer_urls: Vec<String>,
    /// Client URLs; empty while the member has not started.
    pub client_urls: Vec<String>,
    /// Raft learner (non-voting).
    pub is_learner: bool,
    /// Whether the member has ever started (published its name and client URLs).
    pub started: bool,
    /// Health from the configured endpoints.
    pub health: MemberHealth,
}

impl MemberInfo {
    /// Whether the member answered and knows a leader.
    pub fn is_healthy(&self) -> bool {
        matches!(self.health, MemberHealth::Healthy { .. })
    }
}

/// Health summary of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// Voting members in the member list.
    pub voters: usize,
    /// Learners in the member list.
    pub learners: usize,
    /// Voters whose endpoint answered and that know a leader.
    pub healthy_voters: usize,
    /// `floor(voters / 2) + 1`.
    pub quorum_size: usize,
    /// Whether a member list was read, a leader is known and `healthy_voters >= quorum_size`.
    pub quorum: bool,
    /// The leader (as seen by the answering member with the highest raft term).
    pub leader: Option<MemberId>,
    /// Members not healthy (unreachable, leaderless or not observed).
    pub unhealthy_members: Vec<MemberId>,
    /// Endpoints that answered for a *different* cluster ID (stale data dir).
    pub foreign_endpoints: Vec<String>,
}

/// Everything observed about etcd at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The cluster ID of the member list's source; `None` if no voter answered.
    pub cluster_id: Option<MemberId>,
    /// The endpoint whose member list is reported.
    pub member_list_from: Option<String>,
    /// The member list (empty if no voting member answered — then health is unknown,
    /// not "no members").
    pub members: Vec<MemberInfo>,
    /// Per-endpoint answers, in configuration order.
    pub endpoints: Vec<EndpointStatus>,
    /// The summary.
    pub health: HealthSummary,
    /// Wall time of the whole observation, in milliseconds.
    pub elapsed_ms: u64,
}

impl Observation {
    /// The member with this ID.
    pub fn member(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }
    /// The member whose peer URL host is `address` (how k3splan matches nodes to members).
    pub fn member_by_address(&self, address: &str) -> Option<&MemberInfo> {
        let want = address.to_ascii_lowercase();
        self.members
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| url_host(u) == want))
    }
    /// The status of one endpoint.
    pub fn endpoint(&self, endpoint: &str) -> Option<&EndpointStatus> {
        let n = norm_url(endpoint);
        self.endpoints.iter().find(|e| norm_url(&e.endpoint) == n)
    }
}

/// Raw answers of one endpoint.
pub(crate) struct Probe {
    pub state: EndpointState,
    pub members: Option<Result<Vec<etcd_client::Member>, EndpointError>>,
    pub client: Client,
}

impl EtcdProvider {
    /// Asks one endpoint for status and alarms (and the member list unless it is a
    /// learner), bounded by the configured timeout.
    pub(crate) async fn probe(
        &self,
        endpoint: &str,
        with_members: bool,
    ) -> Result<Probe, EndpointError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.probe_inner(endpoint, with_members)).await {
            Ok(r) => r,
            Err(_) => Err(timeout_error(endpoint, "status", timeout)),
        }
    }

    async fn probe_inner(
        &self,
        endpoint: &str,
        with_members: bool,
    ) -> Result<Probe, EndpointError> {
        // The outer timeout bounds connect + status; the member list gets the same deadline
        // but its failure never loses the status answer.
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let client = self.client(endpoint).await?;
        let (mut c1, mut c2) = (client.clone(), client.clone());
        let (status, members) = tokio::join!(async move { c1.status().await }, async move {
            if with_members {
                Some(tokio::time::timeout_at(deadline, c2.member_list()).await)
            } else {
                None
            }
        },);
        let status = match status {
            Ok(s) => s,
            Err(e) => return Err(self.explain(endpoint, "status", &e).await),
        };
        let header = status.header();
        let member_id = MemberId(header.map(|h| h.member_id()).unwrap_or(0));
        // etcd 3.4 lists active alarms in status errors ("memberID:N alarm:NOSPACE"); the
        // Alarm RPC itself goes through raft and hangs without quorum, so it is not used.
        let alarms = parse_alarms(status.errors(), member_id);
        let state = EndpointState {
            member_id,
            cluster_id: MemberId(header.map(|h| h.cluster_id()).unwrap_or(0)),
            leader: (status.leader() != 0).then_some(MemberId(status.leader())),
            raft_term: status.raft_term(),
            raft_index: status.raft_index(),
            raft_applied_index: status.raft_applied_index(),
            revision: header.map(|h| h.revision()).unwrap_or(0),
            db_size: status.db_size(),
            db_size_in_use: status.raft_used_db_size(),
            version: status.version().to_string(),
            is_learner: status.is_learner(),
            alarms,
            errors: status.errors().to_vec(),
        };
        let members = members.map(|r| match r {
            Ok(Ok(resp)) => Ok(resp.members().to_vec()),
            Ok(Err(e)) => Err(classify(endpoint, "member list", &e)),
            Err(_) => Err(timeout_error(endpoint, "member list", self.config.timeout)),
        });
        Ok(Probe {
            state,
            members,
            client,
        })
    }

    /// Observes the cluster through every configured endpoint, in parallel.
    ///
    /// Never fails: unreachable endpoints are reported in [`Observation::endpoints`] and
    /// their members as [`MemberHealth::Unreachable`]. Returns within about the configured
    /// timeout even when endpoints hang.
    ///
    /// Members that no configured endpoint belongs to (a server whose node is no longer
    /// declared, or was never in the endpoint list) are then asked at their own client
    /// URLs from the member list, so that their health is read rather than assumed: the
    /// quorum simulation must count every healthy voter, declared or not.
    ///
    /// An election in progress is not a lost quorum: while a majority of the voters answer
    /// but none of them knows a leader, the observation is repeated every 500 ms for up to
    /// [`EtcdConfig::election_wait`](crate::EtcdConfig::election_wait); only a majority that
    /// still has no leader after it is reported leaderless (`quorum: false`). When fewer
    /// than a majority answer, nothing is waited for.
    pub async fn observe(&self) -> Observation {
        let started = Instant::now();
        loop {
            let obs = self.observe_once().await;
            if !electing(&obs) || started.elapsed() >= self.config.election_wait {
                return obs;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn observe_once(&self) -> Observation {
        let started = Instant::now();
        let mut probes =
            futures::future::join_all(self.config.endpoints.iter().map(|ep| async move {
                let t = Instant::now();
                let r = self.probe(ep, true).await;
                (ep.clone(), r, t.elapsed())
            }))
            .await;
        let first = build_observation(&probes, started.elapsed());
        let extra: Vec<String> = first
            .members
            .iter()
            .filter(|m| matches!(m.health, MemberHealth::NotObserved))
            .filter_map(|m| m.client_urls.first().cloned())
            .filter(|u| first.endpoint(u).is_none())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if extra.is_empty() {
            return first;
        }
        let more = futures::future::join_all(extra.iter().map(|ep| async move {
            let t = Instant::now();
            let r = self.probe(ep, false).await;
            (ep.clone(), r, t.elapsed())
        }))
        .await;
        probes.extend(more);
        build_observation(&probes, started.elapsed())
    }
}

/// Whether `obs` looks like an election in progress: a member list was read, no leader is
/// known, and a majority of the voters answered (so they can elect one).
fn electing(obs: &Observation) -> bool {
    let h = &obs.health;
    let answering = obs
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .filter(|m| {
            matches!(
                m.health,
                MemberHealth::Healthy { .. } | MemberHealth::NoLeader { .. }
            )
        })
        .count();
    h.voters > 0 && h.leader.is_none() && answering >= h.quorum_size
}

/// Alarms of `member` from status errors like `memberID:123 alarm:NOSPACE`.
fn parse_alarms(errors: &[String], member: MemberId) -> Vec<Alarm> {
    let mut out = Vec::new();
    for e in errors {
        let Some(kind) = e.split("alarm:").nth(1) else {
            continue;
        };
        let owner = e
            .split("memberID:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        if owner.is_some_and(|o| o != member.0) {
            continue;
        }
        let alarm = match kind.split_whitespace().next().unwrap_or("") {
            "NOSPACE" => Alarm::Nospace,
            "CORRUPT" => Alarm::Corrupt,
            _ => continue,
        };
        if !out.contains(&alarm) {
            out.push(alarm);
        }
    }
    out
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// The cluster ID most probes report: a member started on a stale data dir may lead its own
/// one-member cluster and must not win by being leader.
pub(crate) fn majority_cluster<'a>(probes: impl Iterator<Item = &'a Probe>) -> Option<MemberId> {
    let mut votes: BTreeMap<MemberId, usize> = BTreeMap::new();
    for p in probes {
        *votes.entry(p.state.cluster_id).or_default() += 1;
    }
    votes.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c)
}

type Probed = (String, Result<Probe, EndpointError>, Duration);

fn build_observation(probes: &[Probed], elapsed: Duration) -> Observation {
    let majority = majority_cluster(probes.iter().filter_map(|(_, r, _)| r.as_ref().ok()));
    let best = member_list_source(probes, majority);
    let cluster_id = best.map(|(_, s, _)| s.cluster_id);
    let member_list_from = best.map(|(ep, _, _)| ep.to_string());
    let endpoints: Vec<EndpointStatus> = probes.iter().map(endpoint_status).collect();
    let foreign_endpoints: Vec<String> = match cluster_id {
        None => Vec::new(),
        Some(cid) => endpoints
            .iter()
            .filter(|e| e.state.as_ref().is_some_and(|s| s.cluster_id != cid))
            .map(|e| e.endpoint.clone())
            .collect(),
    };
    let raw_members: Vec<etcd_client::Member> = best.map(|(_, _, l)| l.clone()).unwrap_or_default();
    let (health, leader) = member_health(&endpoints, &raw_members, cluster_id);
    let members: Vec<MemberInfo> = raw_members
        .iter()
        .map(|m| MemberInfo {
            id: MemberId(m.id()),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
            started: !m.name().is_empty() && !m.client_urls().is_empty(),
            health: health
                .get(&m.id())
                .cloned()
                .unwrap_or(MemberHealth::NotObserved),
        })
        .collect();
    let health = summary(&members, leader, foreign_endpoints);
    Observation {
        cluster_id,
        member_list_from,
        members,
        endpoints,
        health,
        elapsed_ms: ms(elapsed),
    }
}

/// Whose member list is reported: the leader's view, then the voter with the highest raft
/// term, among the voters of the majority cluster.
fn member_list_source(
    probes: &[Probed],
    majority: Option<MemberId>,
) -> Option<(&str, &EndpointState, &Vec<etcd_client::Member>)> {
    let mut best: Option<(&str, &EndpointState, &Vec<etcd_client::Member>)> = None;
    for (ep, r, _) in probes {
        if let Ok(p) = r
            && let Some(Ok(list)) = &p.members
            && !p.state.is_learner
            && Some(p.state.cluster_id) == majority
        {
            let is_leader = p.state.leader == Some(p.state.member_id);
            let better = match best {
                None => true,
                Some((_, b, _)) => {
                    let b_leader = b.leader == Some(b.member_id);
                    (is_leader && !b_leader)
                        || (is_leader == b_leader && p.state.raft_term > b.raft_term)
                }
            };
            if better {
                best = Some((ep.as_str(), &p.state, list));
            }
        }
    }
    best
}

fn endpoint_status((ep, r, t): &Probed) -> EndpointStatus {
    match r {
        Ok(p) => EndpointStatus {
            endpoint: ep.clone(),
            state: Some(p.state.clone()),
            error: match &p.members {
                Some(Err(e)) if !p.state.is_learner => Some(e.clone()),
                _ => None,
            },
            elapsed_ms: ms(*t),
        },
        Err(e) => EndpointStatus {
            endpoint: ep.clone(),
            state: None,
            error: Some(e.clone()),
            elapsed_ms: ms(*t),
        },
    }
}

/// The health of each member (by ID) the endpoints tell, and the leader.
fn member_health(
    endpoints: &[EndpointStatus],
    raw_members: &[etcd_client::Member],
    cluster_id: Option<MemberId>,
) -> (BTreeMap<u64, MemberHealth>, Option<MemberId>) {
    let in_cluster = |s: &&EndpointState| Some(s.cluster_id) == cluster_id;
    let reachable_ids: BTreeSet<u64> = endpoints
        .iter()
        .filter_map(|e| e.state.as_ref())
        .filter(in_cluster)
        .map(|s| s.member_id.0)
        .collect();
    let mut health = unreachable_health(endpoints, raw_members, &reachable_ids);
    // A leader we know to be unreachable is stale news (the election is pending).
    let unreachable_ids: BTreeSet<u64> = health.keys().copied().collect();
    let live_leader = |l: Option<MemberId>| l.filter(|l| !unreachable_ids.contains(&l.0));
    // Leader: as seen by the answering member of this cluster with the highest term.
    let leader = live_leader(
        endpoints
            .iter()
            .filter_map(|e| e.state.as_ref())
            .filter(in_cluster)
            .filter(|s| s.leader.is_some())
            .max_by_key(|s| s.raft_term)
            .and_then(|s| s.leader),
    );
    // Reachable endpoints map by the member ID they report.
    for e in endpoints {
        if let Some(s) = &e.state
            && Some(s.cluster_id) == cluster_id
        {
            let h = if live_leader(s.leader).is_some() {
                MemberHealth::Healthy {
                    endpoint: e.endpoint.clone(),
                }
            } else {
                MemberHealth::NoLeader {
                    endpoint: e.endpoint.clone(),
                }
            };
            health.insert(s.member_id.0, h);
        }
    }
    (health, leader)
}

/// Unreachable endpoints map to members by client URL, else by peer address (when exactly one
/// member not reachable otherwise has it).
fn unreachable_health(
    endpoints: &[EndpointStatus],
    raw_members: &[etcd_client::Member],
    reachable_ids: &BTreeSet<u64>,
) -> BTreeMap<u64, MemberHealth> {
    let mut health: BTreeMap<u64, MemberHealth> = BTreeMap::new();
    for e in endpoints.iter().filter(|e| e.state.is_none()) {
        let err = e.error.clone().expect("unreachable endpoint has an error");
        let n = norm_url(&e.endpoint);
        let free = |m: &&etcd_client::Member| {
            !reachable_ids.contains(&m.id()) && !health.contains_key(&m.id())
        };
        let by_client = raw_members
            .iter()
            .filter(free)
            .find(|m| m.client_urls().iter().any(|u| norm_url(u) == n));
        let host = url_host(&e.endpoint);
        let by_peer = || {
            let c: Vec<_> = raw_members
                .iter()
                .filter(free)
                .filter(|m| m.peer_urls().iter().any(|u| url_host(u) == host))
                .collect();
            (c.len() == 1).then(|| c[0])
        };
        if let Some(m) = by_client.or_else(by_peer) {
            let id = m.id();
            health.insert(id, MemberHealth::Unreachable { error: err });
        }
    }
    health
}

fn summary(
    members: &[MemberInfo],
    leader: Option<MemberId>,
    foreign_endpoints: Vec<String>,
) -> HealthSummary {
    let voters = members.iter().filter(|m| !m.is_learner).count();
    let learners = members.len() - voters;
    let healthy_voters = members
        .iter()
        .filter(|m| !m.is_learner && m.is_healthy())
        .count();
    let quorum_size = voters / 2 + 1;
    let leader = leader.filter(|l| members.iter().any(|m| m.id == *l));
    HealthSummary {
        voters,
        learners,
        healthy_voters,
        quorum_size,
        quorum: voters > 0 && leader.is_some() && healthy_voters >= quorum_size,
        leader,
        unhealthy_members: members
            .iter()
            .filter(|m| !m.is_healthy())
            .map(|m| m.id)
            .collect(),
        foreign_endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_parsed_from_status_errors_for_the_own_member_only() {
        let errors = vec![
            "etcdserver: no leader".to_string(),
            "memberID:42 alarm:NOSPACE ".to_string(),
            "memberID:7 alarm:CORRUPT ".to_string(),
        ];
        assert_eq!(parse_alarms(&errors, MemberId(42)), vec![Alarm::Nospace]);
        assert_eq!(parse_alarms(&errors, MemberId(7)), vec![Alarm::Corrupt]);
        assert!(parse_alarms(&errors, MemberId(1)).is_empty());
        assert_eq!(
            parse_alarms(&["alarm:NOSPACE".into()], MemberId(1)),
            vec![Alarm::Nospace]
        );
    }

    fn member(id: u64, health: MemberHealth) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            name: format!("m{id}"),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: vec![format!("https://10.0.0.{id}:2379")],
            is_learner: false,
            started: true,
            health,
        }
    }

    fn observation(members: Vec<MemberInfo>, leader: Option<u64>) -> Observation {
        let health = summary(&members, leader.map(MemberId), vec![]);
        Observation {
            cluster_id: Some(MemberId(99)),
            member_list_from: None,
            members,
            endpoints: vec![],
            health,
            elapsed_ms: 0,
        }
    }

    #[test]
    fn an_election_is_waited_for_only_while_a_majority_answers_without_a_leader() {
        let no_leader = |id: u64| MemberHealth::NoLeader {
            endpoint: format!("https://10.0.0.{id}:2379"),
        };
        let down = |id: u64| MemberHealth::Unreachable {
            error: EndpointError {
                endpoint: format!("https://10.0.0.{id}:2379"),
                operation: "status".into(),
                kind: crate::EndpointErrorKind::Unreachable,
                message: "connection refused".into(),
            },
        };
        // The leader died; the other two answer and are electing: wait.
        let electing_now = observation(
            vec![
                member(1, down(1)),
                member(2, no_leader(2)),
                member(3, no_leader(3)),
            ],
            None,
        );
        assert!(electing(&electing_now));
        // Two of three dead: the survivor alone cannot elect anyone: report at once.
        let lost = observation(
            vec![
                member(1, down(1)),
                member(2, down(2)),
                member(3, no_leader(3)),
            ],
            None,
        );
        assert!(!electing(&lost));
        // A leader is known: nothing to wait for.
        let healthy = MemberHealth::Healthy {
            endpoint: "https://10.0.0.2:2379".into(),
        };
        let led = observation(
            vec![
                member(1, down(1)),
                member(2, healthy.clone()),
                member(3, healthy),
            ],
            Some(2),
        );
        assert!(!electing(&led));
        // No member list at all (nothing answered): unknown, not an election.
        assert!(!electing(&observation(vec![], None)));
    }
}
