//! Part of phase `joins`: a stale etcd data dir on a joining host is
//! moved aside before the join, or the new member would dial its old peers. The step says
//! whose data it is, with the evidence, so the operator can tell a removed member's own
//! data from another cluster's.
//!
//! Caveat: the origin is evidence for the operator, not a gate: the dir is moved aside
//! (never deleted) whatever its origin.

use std::net::IpAddr;

use serde_json::json;

use crate::config::Node;
use crate::observed::{EtcdDataDir, EtcdMember, HostState, url_host};
use crate::plan::cx::PlanCx;
use crate::plan::views::NodeView;
use crate::plan::{Action, ActionReason, Address, Operation};

/// The step moving the host's etcd data dir aside, if it has one.
pub(super) fn move_aside(cx: &mut PlanCx<'_>, d: &Node, h: &HostState) {
    let n = d.name.as_str();
    let Some(dd) = &h.etcd_data else {
        return;
    };
    let v = cx.views[n].clone();
    let mut why = "an etcd data dir exists on this host, which is not a member: the new member would dial its old peers".to_string();
    if dd.tombstone {
        why.push_str(" (k3s left a tombstone: the member was removed)");
    }
    // Whose data it is: a removed member's own (this cluster) or another cluster's.
    let (origin, evidence) = stale_data_origin(cx, &v, dd);
    why.push_str(&match origin {
        Some(true) => {
            format!(" (it is this cluster's: a removed member's own data; {evidence})")
        }
        Some(false) => format!(" (it belongs to another cluster: {evidence})"),
        None => format!(" (whether it is this cluster's or another one's is unknown: {evidence})"),
    });
    cx.push(
        Address::host_file(n, &dd.path),
        Action::Delete,
        ActionReason::StaleEtcdData,
        why,
        vec![Operation::MoveAsideDataDir {
            node: n.into(),
            path: dd.path.clone(),
        }],
        Some(json!({
            "path": dd.path,
            "member_name": dd.member_name,
            "cluster_id": dd.cluster_id,
            "belongs_to_cluster": dd.belongs_to_cluster,
            "origin": match origin {
                Some(true) => "this_cluster",
                Some(false) => "another_cluster",
                None => "unknown",
            },
        })),
        None,
    );
}

/// A peer list as `initial-cluster` writes it (`name=peer-url,...`): names and addresses.
type Peers = Vec<(String, Option<IpAddr>)>;

fn peers(ic: &str) -> Peers {
    ic.split(',')
        .filter_map(|e| e.split_once('='))
        .map(|(name, url)| {
            (
                name.trim().to_string(),
                url_host(url.trim()).and_then(|h| h.parse().ok()),
            )
        })
        .collect()
}

/// Whose etcd data a stale data dir on a joining host holds: `Some(true)` this cluster's
/// (a removed member's own), `Some(false)` another cluster's, `None` unknown; with the
/// evidence, for the operator. Evidence, strongest first: the cluster ID recorded in it
/// against the one in the data dirs of the current members; the peers it was created
/// with (`initial-cluster`) against the current members; the current members' own
/// `initial-cluster` naming this host's member (it was their peer).
fn stale_data_origin(cx: &PlanCx<'_>, v: &NodeView, dd: &EtcdDataDir) -> (Option<bool>, String) {
    // Data dirs of hosts whose member is in the cluster now.
    let member_dirs: Vec<(&str, &EtcdDataDir)> = cx
        .views
        .values()
        .filter(|w| w.name != v.name && w.member.is_some())
        .filter_map(|w| {
            w.host
                .known()
                .and_then(|h| h.etcd_data.as_ref())
                .map(|d| (w.name.as_str(), d))
        })
        .collect();
    if let Some(id) = &dd.cluster_id
        && let Some(ours) = member_dirs.iter().find_map(|(_, d)| d.cluster_id.as_ref())
    {
        return if id == ours {
            (Some(true), format!("same cluster ID {id}"))
        } else {
            (
                Some(false),
                format!("cluster ID {id}; this cluster's is {ours}"),
            )
        };
    }
    origin_by_peers(cx, v, dd, &member_dirs)
}

/// [`stale_data_origin`] when no cluster ID tells: by the peers the data was created with,
/// and by the current members' own peers.
fn origin_by_peers(
    cx: &PlanCx<'_>,
    v: &NodeView,
    dd: &EtcdDataDir,
    member_dirs: &[(&str, &EtcdDataDir)],
) -> (Option<bool>, String) {
    let members: Vec<&EtcdMember> = cx
        .etcd
        .map(|e| e.members.iter().collect())
        .unwrap_or_default();
    let own = v.address;
    let created_with: Peers = dd
        .initial_cluster
        .as_deref()
        .map(peers)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, a)| a.is_none() || *a != own)
        .collect();
    let current: Vec<&(String, Option<IpAddr>)> = created_with
        .iter()
        .filter(|(_, a)| a.is_some() && members.iter().any(|m| m.peer_address() == *a))
        .collect();
    if !current.is_empty() {
        let names: Vec<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        return (
            Some(true),
            format!(
                "it was created with peers that are members now ({})",
                names.join(", ")
            ),
        );
    }
    // A current member that was created with this host's member as a peer.
    if let Some((peer, _)) = member_dirs.iter().find(|(_, d)| {
        d.initial_cluster.as_deref().map(peers).is_some_and(|ps| {
            ps.iter().any(|(name, a)| {
                (own.is_some() && *a == own) || dd.member_name.as_deref().is_some_and(|m| m == name)
            })
        })
    }) {
        return (
            Some(true),
            format!(
                "member {} at this address was a peer of {peer}'s member when it joined",
                dd.member_name.as_deref().unwrap_or("(unnamed)")
            ),
        );
    }
    if !created_with.is_empty() && cx.etcd.is_some() {
        let names: Vec<&str> = created_with.iter().map(|(n, _)| n.as_str()).collect();
        return (
            Some(false),
            format!(
                "none of the peers it was created with ({}) is a member of this cluster",
                names.join(", ")
            ),
        );
    }
    (
        None,
        "no cluster ID could be read and no peer of it is known to this cluster".into(),
    )
}
