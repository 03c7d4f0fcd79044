//! Phase `upgrade` (issue 15): a declared k3s version (`cluster.k3s_version`, or a node's own
//! `k3s_version` for a canary) that differs from what a node runs becomes a rolling upgrade.
//!
//! Pre-flight, refused with the reason ([`Rule::UpgradePreflight`]): a downgrade; a jump of
//! more than one minor version (Kubernetes' skew policy: the API servers of one cluster
//! differ by one minor at most); servers whose declared versions would differ by more than
//! one minor; an agent declared newer (by minor) than a server (a kubelet is never newer
//! than the API server); a learner present; a member that is not a healthy voter (other
//! than the node in flight); a cluster whose quorum does not survive one server's restart;
//! a node to upgrade whose Node is NotReady. Where the host's `k3s --version` and the
//! Node's `kubeletVersion` disagree, a warning says so.
//!
//! Order: servers one at a time — the node an interrupted apply left in flight first, the
//! etcd leader last — each in one step: cordon → drain (when it runs an agent: a server
//! with `disable-agent` runs no pods) → re-run the installer at the new version (k3s
//! restarts: the quorum simulation counts its member as away until the wait) → wait until
//! its member is a healthy voter, its Node Ready at the new version and `k3s --version`
//! says it → uncordon. Then agents in batches of `upgrade.max_unavailable` (default 1):
//! the batch cordoned, drained and restarted together, then waited on and uncordoned.
//!
//! A node whose host has the declared version while its Node reports an older one (k3s
//! installed and not restarted) is restarted within a rollout; alone, it is only reported.
//!
//! Resume: the node in flight (its host already at the new version while its member is not
//! yet a healthy voter again, or its Node not yet Ready at it) is waited on first, without a
//! second restart, so two servers never restart at once.
//!
//! Caveats: the drain evicts what runs at apply time (the plan reads pods of the `storage`
//! namespaces only), so a node without pods is "drained" at once. A node cordoned by someone
//! else before the plan is left cordoned (neither cordoned nor uncordoned by the upgrade).

use serde_json::json;

use crate::config::Node;
use crate::k3s_version::{self, K3sVersion};
use crate::plan::cx::PlanCx;
use crate::plan::views::is_healthy_member;
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal, Rule};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let todo = collect(cx);
    if todo.is_empty() {
        return Ok(());
    }
    if !preflight(cx, &todo) {
        return Ok(());
    }
    plan_steps(cx, todo);
    Ok(())
}

/// Where a node stands with respect to its declared version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Runs an older version: the whole sequence.
    Due,
    /// The host has the new version and k3s is active, but its member or Node is not back
    /// yet (an interrupted apply): wait, do not restart again.
    Restarting,
    /// The host has the new version but k3s is not active: start it through the installer.
    Stopped,
    /// Back at the new version, still cordoned by the interrupted apply: confirmed and
    /// uncordoned first (only while the rollout goes on; else the `leftover_cordons` phase
    /// undoes the cordon).
    Finish,
}

/// A node to upgrade.
#[derive(Debug, Clone)]
struct Todo {
    name: String,
    server: bool,
    etcd: bool,
    agent_runs: bool,
    target: String,
    /// `k3s --version` on the host.
    host_version: Option<String>,
    /// The Node's kubeletVersion.
    node_version: Option<String>,
    stage: Stage,
    /// Cordoned before the plan by someone else than k3splan: left as it is.
    foreign_cordon: bool,
    /// The host has the declared version but the Node still reports an older one, and no
    /// k3splan apply was in flight on it: restarted only as part of a rollout (another node
    /// is due), otherwise reported (a warning and the version drift) and left alone.
    restart_only: bool,
}

/// The declared nodes whose version differs from the declared one (nodes joined, removed
/// or refused by this plan excluded), and the warnings about disagreeing versions.
fn collect(cx: &mut PlanCx<'_>) -> Vec<Todo> {
    let mut todo = Vec::new();
    let mut warnings = Vec::new();
    for d in &cx.t.nodes {
        let Some(target) = cx.t.k3s_version_of(d) else {
            continue;
        };
        if cx.joined.contains_key(&d.name)
            || cx.lost.contains(&d.name)
            || cx.refused.contains(&d.name)
            || !cx.is_present(&d.name)
        {
            continue;
        }
        let v = &cx.views[&d.name];
        let install = v.host.known().and_then(|h| h.k3s.as_ref());
        let host_version = install
            .and_then(|k| k.version.as_deref())
            .map(|s| k3s_version::from_version_output(s).unwrap_or_else(|| s.to_string()));
        let node_version = v.kube.and_then(|k| k.version.clone());
        if let (Some(h), Some(n)) = (&host_version, &node_version)
            && !k3s_version::same(h, n)
        {
            warnings.push(format!(
                "node.{}: the host's `k3s --version` says {h} but the Node's kubeletVersion says {n}: k3s was installed at {h} and not restarted since, or its restart is in progress (k3splan restarts it only within an upgrade it rolls out; otherwise restart k3s on it)",
                d.name
            ));
        }
        let host_at_target = host_version
            .as_deref()
            .is_some_and(|h| k3s_version::same(h, target));
        let node_at_target = node_version
            .as_deref()
            .is_none_or(|n| k3s_version::same(n, target));
        let agent_runs = cx.runs_agent(&d.name);
        let member_back = !d.roles.runs_etcd() || is_healthy_member(v.member);
        let node_back = !agent_runs || v.kube.is_some_and(|k| k.ready && node_at_target);
        let active = install.is_some_and(|k| k.service_active);
        let unschedulable = v.kube.is_some_and(|k| k.unschedulable);
        let own_cordon = unschedulable && cx.opts.cordoned_by_k3splan.contains(&d.name);
        // At the target everywhere but not healthy: an upgrade in flight only when k3splan
        // cordoned it (otherwise it is another phase's matter: a member that is down).
        let in_flight = !node_at_target || own_cordon;
        let mut restart_only = false;
        let stage = match &host_version {
            None if node_version.is_none() || node_at_target => continue,
            // The host is unknown: the Node's version alone says an upgrade is due.
            None => Stage::Due,
            Some(_) if !host_at_target => Stage::Due,
            Some(_) if !active => {
                if !in_flight {
                    continue;
                }
                Stage::Stopped
            }
            Some(_) if member_back && node_back => {
                if !own_cordon {
                    continue;
                }
                Stage::Finish
            }
            // Installed at the target, the old binary still running (never restarted).
            Some(_) if member_back && !node_at_target && v.kube.is_some_and(|k| k.ready) => {
                restart_only = !own_cordon;
                Stage::Due
            }
            Some(_) if in_flight => Stage::Restarting,
            Some(_) => continue,
        };
        todo.push(Todo {
            name: d.name.clone(),
            server: d.roles.is_server(),
            etcd: d.roles.runs_etcd(),
            agent_runs,
            target: target.to_string(),
            host_version,
            node_version,
            stage,
            foreign_cordon: unschedulable && !own_cordon,
            restart_only,
        });
    }
    cx.warnings.extend(warnings);
    if todo
        .iter()
        .all(|t| t.restart_only || t.stage == Stage::Finish)
    {
        todo.clear();
    }
    todo
}

/// The pre-flight checks; `false` when one failed (each recorded as a violation).
fn preflight(cx: &mut PlanCx<'_>, todo: &[Todo]) -> bool {
    let before = cx.violations.len();
    let fix = "fix it first (a plan without the version change shows what is wrong), then change the version".to_string();
    // Versions: no downgrade, one minor at a time. The same reason for several nodes (a
    // cluster-wide version two minors ahead) is one violation naming them all.
    let mut version_refusals: Vec<(String, Vec<String>)> = Vec::new();
    for t in todo {
        let Some(to) = K3sVersion::parse(&t.target) else {
            cx.refuse(
                Rule::UpgradePreflight,
                format!("node.{}", t.name),
                format!("the declared k3s version {:?} is not a version", t.target),
                None,
            );
            continue;
        };
        if t.host_version.is_none() && t.stage == Stage::Due {
            let reason = cx.views[&t.name].host_reason().unwrap_or("not observed");
            cx.refuse(
                Rule::SourceUnknown,
                format!("node.{}", t.name),
                format!(
                    "its Node runs {} but the declared version is {}, and its host is unknown ({reason}): the upgrade runs the installer there",
                    t.node_version.as_deref().unwrap_or("?"),
                    t.target
                ),
                Some("make the host reachable over SSH".into()),
            );
            continue;
        }
        let seen: Vec<K3sVersion> = [&t.host_version, &t.node_version]
            .into_iter()
            .flatten()
            .filter_map(|s| K3sVersion::parse(s))
            .collect();
        let (Some(newest), Some(oldest)) = (seen.iter().max(), seen.iter().min()) else {
            continue;
        };
        let why = if to < *newest {
            k3s_version::upgrade_refusal(newest, &to)
        } else {
            k3s_version::upgrade_refusal(oldest, &to)
        };
        if let Some(why) = why {
            match version_refusals.iter_mut().find(|(w, _)| *w == why) {
                Some((_, nodes)) => nodes.push(format!("node.{}", t.name)),
                None => version_refusals.push((why, vec![format!("node.{}", t.name)])),
            }
        }
    }
    for (why, nodes) in version_refusals {
        cx.refuse(
            Rule::UpgradePreflight,
            nodes.join(", "),
            why,
            Some(
                "declare a version one minor above the running one at most (or the one it runs)"
                    .into(),
            ),
        );
    }
    // Skew of the declared versions: servers within one minor; no agent newer than them.
    let declared = |n: &Node| cx.t.k3s_version_of(n).and_then(K3sVersion::parse);
    let servers: Vec<(String, K3sVersion)> =
        cx.t.server_nodes()
            .filter_map(|n| Some((n.name.clone(), declared(n)?)))
            .collect();
    if let (Some(lo), Some(hi)) = (
        servers.iter().min_by(|a, b| a.1.cmp(&b.1)),
        servers.iter().max_by(|a, b| a.1.cmp(&b.1)),
    ) && lo.1.minors_to(&hi.1) > 1
    {
        cx.refuse(
            Rule::UpgradePreflight,
            format!("node.{}", hi.0),
            format!(
                "servers would run {} ({}) and {} ({}): the API servers of one cluster differ by one minor version at most",
                hi.1, hi.0, lo.1, lo.0
            ),
            Some("give the servers versions within one minor of each other".into()),
        );
    }
    if let Some(lo) = servers.iter().min_by(|a, b| a.1.cmp(&b.1)) {
        for n in cx.t.nodes.iter().filter(|n| n.roles.is_agent()) {
            if let Some(v) = declared(n)
                && lo.1.minors_to(&v) > 0
            {
                cx.refuse(
                    Rule::UpgradePreflight,
                    format!("node.{}", n.name),
                    format!(
                        "agent {} would run {v}, newer than server {} ({}): a kubelet must not be newer than the API servers (servers are upgraded first)",
                        n.name, lo.0, lo.1
                    ),
                    Some("upgrade the servers to that minor first".into()),
                );
            }
        }
    }
    // Health: every member a healthy voter (but the node in flight), no learner.
    // Only restarts need the other members healthy: a plan that only waits for (or
    // uncordons) a server in flight restarts none.
    let servers_due = todo
        .iter()
        .any(|t| t.etcd && matches!(t.stage, Stage::Due | Stage::Stopped));
    if servers_due {
        match cx.etcd {
            None => cx.refuse(
                Rule::SourceUnknown,
                "etcd",
                format!(
                    "servers are to be restarted one at a time, but etcd is unknown ({})",
                    cx.o.etcd.unknown_reason().unwrap_or("not read")
                ),
                Some("make etcd reachable".into()),
            ),
            Some(e) => {
                let in_flight: Vec<u64> = todo
                    .iter()
                    .filter(|t| t.stage != Stage::Due)
                    .filter_map(|t| cx.views[&t.name].member.map(|m| m.id))
                    .collect();
                let mut found = Vec::new();
                for m in &e.members {
                    let label = cx.member_label(m);
                    if m.is_learner {
                        found.push((
                            label,
                            "is a learner: a membership change is in progress; let it finish (its promotion) before an upgrade".to_string(),
                        ));
                    } else if !m.is_healthy() && !in_flight.contains(&m.id) {
                        found.push((
                            label,
                            format!(
                                "is {}: every restart of the upgrade needs the other members healthy",
                                m.health.describe()
                            ),
                        ));
                    }
                }
                for (label, why) in found {
                    cx.refuse(
                        Rule::UpgradePreflight,
                        format!("etcd_member {label}"),
                        format!("etcd member {label} {why}"),
                        Some(fix.clone()),
                    );
                }
                let voters = e.members.iter().filter(|m| !m.is_learner).count();
                let needed = voters / 2 + 1;
                if voters > 0 && voters - 1 < needed {
                    cx.refuse(
                        Rule::UpgradePreflight,
                        "etcd",
                        format!(
                            "{voters} etcd voter{}: restarting any server for its upgrade leaves {} of {needed} needed, and etcd stops serving",
                            if voters == 1 { "" } else { "s" },
                            voters - 1
                        ),
                        Some(
                            "add servers first (3 tolerate one restart), or upgrade this cluster by hand with its downtime"
                                .into(),
                        ),
                    );
                }
            }
        }
    }
    for t in todo.iter().filter(|t| t.stage == Stage::Due) {
        if let Some(k) = cx.views[&t.name].kube
            && !k.ready
            && t.agent_runs
        {
            cx.refuse(
                Rule::UpgradePreflight,
                format!("node.{}", t.name),
                format!(
                    "Node {} is NotReady: an upgrade waits for it to be Ready at the new version, which a node that is not Ready now is unlikely to reach",
                    t.name
                ),
                Some(fix.clone()),
            );
        }
    }
    cx.violations.len() == before
}

/// The steps: servers one at a time (in flight first, leader last), then agent batches.
fn plan_steps(cx: &mut PlanCx<'_>, todo: Vec<Todo>) {
    let leader = cx.etcd.and_then(|e| e.leader);
    let leaders: std::collections::BTreeSet<String> = todo
        .iter()
        .filter(|t| leader.is_some() && t.etcd && cx.views[&t.name].member.map(|m| m.id) == leader)
        .map(|t| t.name.clone())
        .collect();
    let is_leader = |t: &Todo| leaders.contains(&t.name);
    let mut servers: Vec<(usize, Todo)> = todo
        .iter()
        .filter(|t| t.server)
        .cloned()
        .enumerate()
        .collect();
    servers.sort_by_key(|(i, t)| (t.stage == Stage::Due, is_leader(t), *i));
    let mut agents: Vec<(usize, Todo)> = todo
        .iter()
        .filter(|t| !t.server)
        .cloned()
        .enumerate()
        .collect();
    agents.sort_by_key(|(i, t)| (t.stage == Stage::Due, *i));
    for t in &todo {
        if t.stage == Stage::Finish {
            cx.drift.push(Drift {
                address: Address::node(&t.name).to_string(),
                attribute: "unschedulable".into(),
                declared: Some("false".into()),
                observed: Some("true".into()),
                planned: true,
                note: Some("cordoned by an interrupted upgrade".into()),
            });
            continue;
        }
        let observed = t.host_version.clone().or(t.node_version.clone());
        cx.drift.push(Drift {
            address: Address::node(&t.name).to_string(),
            attribute: "version".into(),
            declared: Some(t.target.clone()),
            observed,
            planned: true,
            note: Some(match t.stage {
                Stage::Due => "rolling upgrade".into(),
                Stage::Restarting => {
                    "an interrupted upgrade: installed, restart in progress".into()
                }
                Stage::Stopped => "an interrupted upgrade: installed, k3s not running".into(),
                Stage::Finish => unreachable!("recorded above"),
            }),
        });
    }
    let n_servers = servers.len();
    for (k, (_, t)) in servers.into_iter().enumerate() {
        let leader_note = is_leader(&t);
        let mut ops = first_half(&t);
        ops.extend(second_half(&t));
        let id = push_step(cx, &t, ops, format!("server {} of {n_servers}", k + 1));
        if leader_note {
            cx.note(
                id,
                "the etcd leader, upgraded last: one leader election instead of one per restart"
                    .into(),
            );
        }
    }
    // A percentage is of the declared agents (docs/configuration.md).
    let declared_agents = cx.t.nodes.iter().filter(|n| n.roles.is_agent()).count();
    let batch = cx.t.cluster.upgrade.max_unavailable.batch(declared_agents);
    let agents: Vec<Todo> = agents.into_iter().map(|(_, t)| t).collect();
    let batches = agents.len().div_ceil(batch);
    for (b, chunk) in agents.chunks(batch).enumerate() {
        let label = format!("agent batch {} of {batches}", b + 1);
        if chunk.len() == 1 {
            let t = &chunk[0];
            let mut ops = first_half(t);
            ops.extend(second_half(t));
            push_step(cx, t, ops, label);
            continue;
        }
        for t in chunk {
            push_step(
                cx,
                t,
                first_half(t),
                format!("{label}: cordon, drain, restart"),
            );
        }
        for t in chunk {
            push_step(cx, t, second_half(t), format!("{label}: wait, uncordon"));
        }
    }
}

/// Cordon, drain and the installer's restart (what is left of them for a node in flight).
fn first_half(t: &Todo) -> Vec<Operation> {
    let mut ops = Vec::new();
    let cordons = t.agent_runs && !t.foreign_cordon;
    if t.stage == Stage::Due {
        if cordons {
            ops.push(Operation::Cordon {
                node: t.name.clone(),
            });
        }
        if t.agent_runs {
            ops.push(Operation::Drain {
                node: t.name.clone(),
                skip_eviction: false,
            });
        }
    }
    if matches!(t.stage, Stage::Due | Stage::Stopped) {
        ops.push(Operation::UpgradeK3s {
            node: t.name.clone(),
            from: t.host_version.clone().or(t.node_version.clone()),
            version: t.target.clone(),
            agent: !t.server,
        });
    }
    ops
}

/// The wait, and the uncordon of a cordon k3splan made.
fn second_half(t: &Todo) -> Vec<Operation> {
    let mut ops = vec![Operation::WaitUpgraded {
        node: t.name.clone(),
        version: t.target.clone(),
    }];
    if t.agent_runs && !t.foreign_cordon {
        ops.push(Operation::Uncordon {
            node: t.name.clone(),
        });
    }
    ops
}

fn push_step(cx: &mut PlanCx<'_>, t: &Todo, ops: Vec<Operation>, label: String) -> usize {
    if ops.iter().any(|o| matches!(o, Operation::Uncordon { .. })) {
        cx.uncordoned.insert(t.name.clone());
    }
    let from = t.host_version.clone().or(t.node_version.clone());
    let why = match t.stage {
        Stage::Due => format!(
            "k3s_version {} is declared; it runs {} ({label})",
            t.target,
            from.as_deref().unwrap_or("an unknown version")
        ),
        Stage::Restarting => format!(
            "an interrupted apply installed {} and restarted k3s; waiting for it to be back before anything else restarts ({label})",
            t.target
        ),
        Stage::Stopped => format!(
            "an interrupted apply installed {} but k3s is not running; the installer starts it ({label})",
            t.target
        ),
        Stage::Finish => format!(
            "an interrupted apply upgraded it to {} and did not uncordon it; finished before anything else restarts ({label})",
            t.target
        ),
    };
    let id = cx.push(
        Address::node(&t.name),
        Action::Update,
        ActionReason::UpgradeK3sVersion,
        why,
        ops,
        Some(json!({ "version": from })),
        Some(json!({ "version": t.target })),
    );
    if t.foreign_cordon && t.agent_runs {
        cx.note(
            id,
            format!(
                "{} was cordoned before this plan, not by k3splan: it is left cordoned",
                t.name
            ),
        );
    }
    id
}

#[cfg(test)]
mod tests;
