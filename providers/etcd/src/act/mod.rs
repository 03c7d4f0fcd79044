//! Acts: membership changes, leadership transfer, snapshot, hash comparison.
//!
//! [`membership`] adds, promotes and removes members and moves leadership, [`join`] tells
//! whether a new member has joined, [`data`] takes snapshots and compares hashes. This file
//! finds the voter they all act through.

mod data;
mod join;
mod membership;

use etcd_client::Client;

use crate::observe::Probe;
pub(super) use crate::observe::majority_cluster;
use crate::{EndpointError, EtcdError, EtcdProvider, classify};

pub use data::{HashReport, MemberHash, SnapshotInfo};
pub use join::{JoinFailure, JoinStatus};
pub use membership::{JoinInfo, LeaderMove, Promotion, Removal};

impl EtcdProvider {
    /// Every configured endpoint probed (status only), in parallel, in configuration order.
    pub(super) async fn probe_all(&self) -> Vec<(String, Result<Probe, EndpointError>)> {
        futures::future::join_all(
            self.config
                .endpoints
                .iter()
                .map(|ep| async move { (ep.clone(), self.probe(ep, false).await) }),
        )
        .await
    }

    /// A client on a reachable voting member that knows a leader, preferring the leader.
    pub(crate) async fn voter(&self) -> Result<(String, Probe), EtcdError> {
        let probes = self.probe_all().await;
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

    pub(super) async fn member_list_on(
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
}
