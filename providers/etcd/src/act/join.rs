//! Whether a new member has joined, and why not (a stale data dir, above all).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::retry::retry_until;
use crate::{EndpointError, EndpointErrorKind, EtcdError, EtcdProvider, MemberId};

/// Why a new member is not joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum JoinFailure {
    /// It answers for another cluster: it was started on a data dir left from an earlier
    /// cluster (k3s never cleans it up). Fix: stop it, move its data dir aside, start it again.
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
         or a wrong --initial-cluster"
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

impl JoinFailure {
    /// A failure that never heals by itself: waiting longer does not help.
    fn is_definitive(&self) -> bool {
        matches!(
            self,
            JoinFailure::StaleDataDir { .. }
                | JoinFailure::NotAMember
                | JoinFailure::WrongMember { .. }
        )
    }
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

impl EtcdProvider {
    /// Checks whether member `id`, expected at client URL `endpoint`, has joined.
    ///
    /// Detects a member started on a stale data dir (its endpoint answers for another
    /// cluster): the failure a rejoin on a leftover data dir produces.
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
            Err(e) if e.kind == EndpointErrorKind::Timeout && !started => Ok(JoinStatus::Failing {
                failure: self.ask_peer_port(m.peer_urls(), cluster, &e).await,
            }),
            Err(e) => Ok(JoinStatus::Failing {
                failure: JoinFailure::NotStarted {
                    last_error: e.to_string(),
                },
            }),
        }
    }

    /// Why a member whose client port does not answer in time (`client_error`) has not
    /// joined: etcd serves clients only once ready (it has joined raft), but serves its peer
    /// port from the start, so the peer port is asked which cluster it is in.
    async fn ask_peer_port(
        &self,
        peer_urls: &[String],
        cluster: MemberId,
        client_error: &EndpointError,
    ) -> JoinFailure {
        let files = self.config.peer_tls.as_ref().or(self.config.tls.as_ref());
        let mut peer_errors = Vec::new();
        for url in peer_urls {
            match crate::tlsprobe::peer_cluster_id(url, files, self.config.timeout).await {
                Ok(found) if found != cluster => {
                    return JoinFailure::StaleDataDir {
                        found_member: None,
                        found_cluster: found,
                        expected_cluster: cluster,
                        seen_via: format!("peer {url}/members"),
                    };
                }
                Ok(_) => {
                    return JoinFailure::NotStarted {
                        last_error: format!(
                            "{client_error}; its peer port answers for this cluster: still joining"
                        ),
                    };
                }
                Err(pe) => peer_errors.push(pe.to_string()),
            }
        }
        JoinFailure::NotReady {
            detail: format!("{client_error}; peer check: {}", peer_errors.join("; ")),
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
        let failed = |reason| EtcdError::JoinFailed {
            id,
            endpoint: endpoint.to_string(),
            reason,
        };
        let attempt = async || match self.check_join(id, endpoint).await {
            Ok(JoinStatus::Joined { .. }) => ControlFlow::Break(Ok(())),
            Ok(JoinStatus::Failing { failure }) if failure.is_definitive() => {
                ControlFlow::Break(Err(failed(failure)))
            }
            Ok(JoinStatus::Failing { failure }) => ControlFlow::Continue(failure),
            Err(e) => ControlFlow::Break(Err(e)),
        };
        let pause = Duration::from_millis(300);
        match retry_until(Instant::now(), deadline, pause, attempt).await {
            Ok(done) => done,
            Err(expired) => Err(failed(expired.last)),
        }
    }
}
