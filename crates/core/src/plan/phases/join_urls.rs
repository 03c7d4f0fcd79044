//! Phase `join_urls`: a node's config.yaml whose `server:` URL names a dead or removed
//! server is rewritten to a usable one, and k3s restarted when the quorum
//! simulation allows it (rule 9, restarting a healthy server counts as removing its
//! member); otherwise the new URL takes effect at its next start. Agents and
//! control-plane-only servers first: their restarts do not touch etcd.

use serde_json::json;

use crate::observed::url_host;
use crate::plan::cx::PlanCx;
use crate::plan::files::{mask_secrets, rewrite_server_url};
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    join_urls(cx);
    Ok(())
}

/// Why a join URL cannot be used. Its text is shown in the plan (the drift note, the
/// step's reason): it must stay as it is.
#[derive(Debug, thiserror::Error)]
enum UnusableUrl {
    #[error("it is not a URL")]
    NotAUrl,
    #[error("it names {node} itself ({host}): a server cannot join through itself")]
    ItsOwn { node: String, host: String },
    #[error("{host} is no known node")]
    UnknownHost { host: String },
    #[error("{node} ({host}) is removed by this plan")]
    Removed { node: String, host: String },
    #[error("{node} ({host}) is not a server")]
    NotAServer { node: String, host: String },
    #[error("{node} ({host}) is down: {}", .down.join(", "))]
    Down {
        node: String,
        host: String,
        down: Vec<String>,
    },
}

/// A join URL is fine when it names the api_endpoint (unless that is a server's own
/// address: then it is judged as that server) or a server that is healthy (or rejoined by
/// this plan), and never `node` itself.
fn url_is_usable(cx: &PlanCx<'_>, node: &str, url: &str) -> Result<(), UnusableUrl> {
    let Some(host) = url_host(url) else {
        return Err(UnusableUrl::NotAUrl);
    };
    let host = host.to_string();
    if cx.views[node]
        .address
        .is_some_and(|a| a.to_string() == host)
        || cx
            .t
            .node(node)
            .is_some_and(|d| d.address.to_string() == host)
    {
        return Err(UnusableUrl::ItsOwn {
            node: node.to_string(),
            host,
        });
    }
    let names_a_node = cx
        .views
        .values()
        .any(|v| v.address.is_some_and(|a| a.to_string() == host));
    if let Some(e) = &cx.t.cluster.api_endpoint
        && url_host(e) == Some(host.as_str())
        && !names_a_node
    {
        return Ok(());
    }
    let Some(v) = cx
        .views
        .values()
        .find(|v| v.address.is_some_and(|a| a.to_string() == host))
    else {
        return Err(UnusableUrl::UnknownHost { host });
    };
    let node = v.name.clone();
    if v.declared.is_none() {
        return Err(UnusableUrl::Removed { node, host });
    }
    if cx.joined.contains_key(&v.name) {
        return Ok(());
    }
    if v.declared.is_some_and(|d| !d.roles.is_server()) {
        return Err(UnusableUrl::NotAServer { node, host });
    }
    let mut down = Vec::new();
    if v.declared.is_some_and(|d| d.roles.runs_etcd()) {
        match v.member {
            Some(m) if !m.is_healthy() => down.push(format!("etcd member {}", m.health.describe())),
            Some(_) => {}
            None => down.push("no etcd member".to_string()),
        }
    }
    if v.kube.is_some_and(|k| !k.ready) {
        down.push("Node NotReady".to_string());
    }
    if let Some(crate::observed::Supervisor::Refused { reason }) = cx.o.supervisors.get(&v.name) {
        down.push(format!("supervisor port not answering: {reason}"));
    }
    if down.is_empty() {
        Ok(())
    } else {
        Err(UnusableUrl::Down { node, host, down })
    }
}

fn join_urls(cx: &mut PlanCx<'_>) {
    let mut todo = Vec::new();
    for d in &cx.t.nodes {
        if cx.joined.contains_key(&d.name) || !cx.is_present(&d.name) {
            continue;
        }
        let v = &cx.views[&d.name];
        let Some(h) = v.host.known() else { continue };
        let Some(c) = &h.config else { continue };
        let Some(url) = &c.server else { continue };
        if let Err(why) = url_is_usable(cx, &d.name, url) {
            todo.push((d, c, url.clone(), why));
        }
    }
    // Control-plane-only and agents first: their restarts do not touch etcd.
    todo.sort_by_key(|(d, ..)| d.roles.runs_etcd());
    for (d, c, old, why) in todo {
        let Some(new) = cx.join_url(&d.name) else {
            cx.warnings.push(format!(
                "host_file.{}:{}: join URL {old} names an unavailable server ({why}) and no healthy server or api_endpoint can replace it",
                d.name, c.path
            ));
            continue;
        };
        let before = mask_secrets(&c.raw);
        let after = mask_secrets(&rewrite_server_url(&c.raw, &new));
        let restart = Operation::RestartService {
            node: d.name.clone(),
        };
        let can_restart = cx.sim.clone().apply(&restart).is_ok();
        let mut ops = vec![Operation::WriteFile {
            node: d.name.clone(),
            path: c.path.clone(),
            before: Some(before.clone()),
            after: after.clone(),
            sensitive: vec![],
        }];
        if can_restart {
            ops.push(restart);
        }
        cx.drift.push(Drift {
            address: Address::host_file(&d.name, &c.path).to_string(),
            attribute: "server".into(),
            declared: Some(new.clone()),
            observed: Some(old.clone()),
            planned: true,
            note: Some(why.to_string()),
        });
        let id = cx.push(
            Address::host_file(&d.name, &c.path),
            Action::Update,
            ActionReason::JoinUrlNamesUnavailableServer,
            format!("its join URL {old} names an unavailable server: {why}"),
            ops,
            Some(json!({ "server": old })),
            Some(json!({ "server": new })),
        );
        if !can_restart {
            let q = cx.sim.quorum();
            cx.note(
                id,
                format!(
                    "k3s is NOT restarted: restarting {} now would leave {}/{} voters healthy (quorum needs {}), and a restart counts as a removal; the new URL takes effect at its next start",
                    d.name,
                    q.healthy_voters.saturating_sub(1),
                    q.voters,
                    q.needed
                ),
            );
        }
    }
}
