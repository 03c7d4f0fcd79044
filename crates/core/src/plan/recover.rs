//! Quorum-loss recovery as a plan (issue 16): `plan --recover` / `apply --recover`.
//!
//! When a majority of etcd voters is gone, the normal planner refuses ("etcd quorum is
//! already lost"). This planner instead:
//! 1. surveys every declared etcd server (from [`EtcdSurvey`]: k3s running, data dir present,
//!    how far its data goes, the snapshots on it) and shows them side by side;
//! 2. chooses the source of truth: the surviving member whose data is most advanced; or the
//!    newest snapshot when no member data survives; or what the operator names
//!    (`--from-snapshot NAME`, `--recover-from NODE`); and states what data is lost;
//! 3. plans: stop k3s on every server; `k3s server --cluster-reset` (with
//!    `--cluster-reset-restore-path` for a snapshot) on the chosen one; start it normally; then
//!    each other server, one at a time: its etcd data dir moved aside (never deleted), its
//!    config.yaml naming the recovered server, k3s started as a learner, promoted; verify.
//!
//! Refusals: etcd still has quorum and some declared server is not a healthy voter (the
//! normal plan handles that; unless an interrupted recovery is resumed, see
//! [`RecoverOptions::resuming`]), a declared server whose host does not answer (unless
//! accepted with `--allow-unreachable`), no source of truth, or two candidates whose data
//! belongs to different clusters (different WAL cluster IDs) unless the operator names the
//! source. A healthy cluster (every declared etcd server a healthy voter) gives an empty plan.
//!
//! Pure, like the rest of the planner: the survey comes from the engine.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::{Node, Topology};
use crate::observed::recovery::{DbRead, EtcdSurvey, SnapshotFile};
use crate::observed::{Fact, Observed};
use crate::plan::files::{self, K3S_CONFIG_PATH, mask_secrets};
use crate::plan::{
    Action, ActionReason, Address, Operation, Plan, PlanOptions, Quorum, Refusal, Rule, Step,
    UnknownSource, Violation,
};

/// What the operator asked of the recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverOptions {
    /// `--from-snapshot NAME`: restore this snapshot (its file name, or its path).
    pub from_snapshot: Option<String>,
    /// `--recover-from NODE`: reset this server's own data.
    pub from_node: Option<String>,
    /// An interrupted apply is being resumed: once quorum is back (the recovered server
    /// runs), the declared etcd servers left out of it rejoin through it (stopped first, their
    /// old data moved aside); a declared server whose member is listed but down goes to the
    /// normal plan instead.
    pub resuming: bool,
}

/// The chosen source of truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A surviving member's own data (`--cluster-reset`).
    Member { node: String, revision: Option<i64> },
    /// A snapshot file on `node` (`--cluster-reset-restore-path`).
    Snapshot { node: String, file: SnapshotFile },
}

impl Source {
    pub fn node(&self) -> &str {
        match self {
            Source::Member { node, .. } | Source::Snapshot { node, .. } => node,
        }
    }
}

/// A recovery plan with what the operator must read before approving it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub plan: Plan,
    /// The survey, side by side (one line per server), then the choice and the data-loss
    /// window. Empty when nothing is to be recovered.
    pub report: Vec<String>,
    pub source: Option<Source>,
}

/// Plans the recovery. `now_unix` dates the snapshots (their age).
pub fn plan_recovery(
    t: &Topology,
    o: &Observed,
    survey: &BTreeMap<String, Fact<EtcdSurvey>>,
    normal: &PlanOptions,
    ro: &RecoverOptions,
    now_unix: u64,
) -> Result<Recovery, Refusal> {
    let servers: Vec<&Node> = t.etcd_nodes().filter(|n| n.roles.is_server()).collect();
    let quorum = quorum_of(o);
    if let Some(q) = &quorum
        && q.ok()
    {
        let healthy = declared_healthy(t, o);
        if servers.iter().all(|n| healthy.contains(&n.name)) {
            return Ok(Recovery {
                plan: empty_plan(
                    Some(q.clone()),
                    format!(
                        "etcd has quorum ({q}) and every declared etcd server is a healthy voter: nothing to recover"
                    ),
                ),
                report: Vec::new(),
                source: None,
            });
        }
        if ro.resuming {
            // Quorum is back (the recovered server runs): the servers left out rejoin; a
            // member still listed but down is the normal plan's (its removal first).
            let p = match finish_rejoins(t, o, survey, q) {
                Some(p) => p,
                None => {
                    let mut p = crate::plan::plan(t, o, normal)?;
                    p.warnings.insert(
                        0,
                        format!("etcd has quorum again ({q}): finishing the interrupted recovery with the normal plan"),
                    );
                    p
                }
            };
            return Ok(Recovery {
                plan: p,
                report: Vec::new(),
                source: None,
            });
        }
        return Err(refusal(
            Rule::Quorum,
            "etcd",
            format!("etcd still has quorum ({q}): this is not a quorum loss, and a cluster reset would throw away a working cluster's membership"),
            Some("run `k3splan plan` / `apply` without --recover: the normal plan replaces or rejoins the servers that are down".into()),
            quorum,
        ));
    }

    let mut report = survey_table(t, survey, now_unix);
    let mut unknown = Vec::new();
    let mut cands: Vec<(&Node, &EtcdSurvey)> = Vec::new();
    let mut reachable: Vec<(&Node, &EtcdSurvey)> = Vec::new();
    for n in &servers {
        match survey.get(&n.name) {
            Some(Fact::Known(s)) => {
                reachable.push((n, s));
                if s.member_dir && s.db.status().is_some() {
                    cands.push((n, s));
                }
            }
            other => {
                let why = match other {
                    Some(Fact::Unknown { reason }) => reason.clone(),
                    _ => "not surveyed".into(),
                };
                unknown.push(UnknownSource {
                    address: format!("host.{}", n.name),
                    reason: why,
                    kind: o.host_word(&n.name).into(),
                    accepted: normal.allow_unreachable.contains(&n.name),
                });
            }
        }
    }
    if let Some(u) = unknown.iter().find(|u| !u.accepted) {
        return Err(refusal(
            Rule::NeverDestroyFromUnknown,
            &u.address,
            format!(
                "cannot plan a cluster reset while {} is unknown ({}): a server left running with the old membership would fight the reset, and its data may be the most advanced",
                u.address, u.reason
            ),
            Some(format!(
                "make it reachable over SSH, or accept that it is gone with --allow-unreachable {}",
                u.address.trim_start_matches("host.")
            )),
            quorum,
        ));
    }

    let source = choose(&cands, &reachable, ro, quorum.clone())?;
    let loss = loss_window(&source, &cands, &reachable, now_unix);
    report.push(String::new());
    report.push(format!(
        "Source of truth: {}",
        describe_source(&source, now_unix)
    ));
    for l in &loss {
        report.push(format!("Data loss: {l}"));
    }

    let mut steps = Vec::new();
    let mut push = |address: Address, action: Action, why: String, ops: Vec<Operation>| {
        let id = steps.len() + 1;
        steps.push(Step {
            id,
            address,
            action,
            reason: ActionReason::QuorumLossRecovery,
            why,
            operations: ops,
            before: None,
            after: None,
            depends_on: if id > 1 { vec![id - 1] } else { vec![] },
            quorum: vec![],
            notes: vec![],
        });
    };
    // 1. Every server stopped: one left running with the old membership fights the reset.
    for (n, s) in &reachable {
        push(
            Address::node(&n.name),
            Action::Update,
            format!(
                "k3s must be down on every server before the reset (it is {})",
                s.k3s_state()
            ),
            vec![Operation::StopK3s {
                node: n.name.clone(),
            }],
        );
    }
    // 2. The reset on the chosen server, then a normal start.
    let chosen = source.node().to_string();
    let restore_path = match &source {
        Source::Snapshot { file, .. } => Some(file.path.clone()),
        Source::Member { .. } => None,
    };
    push(
        Address::member(&chosen),
        Action::Replace,
        format!(
            "the source of truth: {}; it becomes a one-member cluster",
            describe_source(&source, now_unix)
        ),
        vec![
            Operation::ClusterReset {
                node: chosen.clone(),
                restore_path,
            },
            Operation::RestartService {
                node: chosen.clone(),
            },
        ],
    );
    // 3. The others rejoin through it, one at a time, as learners promoted in turn.
    for (n, s) in &reachable {
        if n.name == chosen {
            continue;
        }
        push(
            Address::member(&n.name),
            Action::Replace,
            format!(
                "rejoins the recovered cluster through {chosen} as a new learner; its old etcd data is kept aside (etcd-backup-<unix>), never deleted"
            ),
            rejoin_ops(t, o, n, s.etcd_dir, &chosen),
        );
    }
    // 4. Verify.
    let expect_members = reachable.len();
    let expect_nodes = t.nodes.iter().filter(|d| d.runs_agent()).count();
    let mut verify = Step {
        id: steps.len() + 1,
        address: Address::Verify,
        action: Action::Read,
        reason: ActionReason::VerifyAfterApply,
        why: "the recovery changed the cluster; this checks the result".into(),
        operations: vec![Operation::Verify {
            expect_members,
            expect_nodes,
            unhealthy_left: vec![],
        }],
        before: None,
        after: None,
        depends_on: vec![],
        quorum: vec![],
        notes: vec![],
    };
    verify.depends_on = vec![verify.id - 1];
    steps.push(verify);
    if let Some(first) = steps
        .iter_mut()
        .find(|s| s.address == Address::member(&chosen))
    {
        first.before = Some(json!({ "source": describe_source(&source, now_unix) }));
    }

    let mut warnings: Vec<String> = loss.iter().map(|l| format!("DATA LOSS: {l}")).collect();
    warnings.push(
        "No snapshot is taken first: without quorum etcd cannot serve one. Nothing is deleted: every server's old etcd data dir is kept (etcd-old-<unix>, etcd-backup-<unix>)".into(),
    );
    for u in &unknown {
        warnings.push(format!(
            "{} is unknown and accepted as gone (--allow-unreachable): it is neither stopped nor rejoined; if it comes back with its old data, stop k3s there before it rejoins",
            u.address
        ));
    }
    Ok(Recovery {
        plan: Plan {
            steps,
            drift: vec![],
            warnings,
            // Not a quorum-kept plan: the renderer's quorum line would claim the membership
            // stays; the report and the warnings say what happens instead.
            quorum_before: None,
            unknown,
            estimate: None,
        },
        report,
        source: Some(source),
    })
}

/// A server's rejoin through `chosen`: its etcd data dir moved aside (when there is one),
/// config.yaml naming `chosen` (never cluster-init), k3s started, the learner promoted, the
/// Node Ready (or the server healthy without an agent).
fn rejoin_ops(
    t: &Topology,
    o: &Observed,
    n: &Node,
    etcd_dir: bool,
    chosen: &str,
) -> Vec<Operation> {
    let chosen_node = t.node(chosen).expect("chosen among the declared servers");
    let via = format!("https://{}", join_host(chosen_node));
    let mut ops = Vec::new();
    if etcd_dir {
        ops.push(Operation::MoveAsideDataDir {
            node: n.name.clone(),
            path: format!(
                "{}/server/db/etcd",
                t.cluster.data_dir.trim_end_matches('/')
            ),
        });
    }
    let host = o.hosts.get(&n.name).and_then(|h| h.known());
    let (after, sensitive) = files::config_yaml_for(t, n, &via);
    let host_secrets = host.and_then(|h| h.config.as_ref()).map(|c| &c.secrets);
    let after = files::mark_changed_secrets(t, &after, &sensitive, host_secrets);
    let before = host
        .and_then(|h| h.config.as_ref())
        .map(|c| mask_secrets(&c.raw));
    if before.as_deref() != Some(after.as_str()) {
        let path = host
            .and_then(|h| h.config.as_ref())
            .map(|c| c.path.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| K3S_CONFIG_PATH.to_string());
        ops.push(Operation::WriteFile {
            node: n.name.clone(),
            path,
            before,
            after,
            sensitive,
        });
    }
    ops.push(Operation::JoinServer {
        node: n.name.clone(),
        via: via.clone(),
        etcd: true,
        control_plane: n.roles.runs_control_plane(),
        version: t.cluster.k3s_version.clone(),
    });
    ops.push(Operation::WaitLearnerPromoted {
        node: n.name.clone(),
    });
    ops.push(if n.runs_agent() {
        Operation::WaitNodeReady {
            node: n.name.clone(),
        }
    } else {
        Operation::WaitServerHealthy {
            node: n.name.clone(),
        }
    });
    ops
}

/// Quorum is back while an interrupted recovery is resumed: the recovered cluster's healthy
/// members stay, and every declared etcd server without a member rejoins through one of them
/// (stopped first: its old data would dial the old peers). `None` when a declared server
/// still has a member that is not healthy (the normal plan's removals handle that).
fn finish_rejoins(
    t: &Topology,
    o: &Observed,
    survey: &BTreeMap<String, Fact<EtcdSurvey>>,
    q: &Quorum,
) -> Option<Plan> {
    let e = o.etcd.known()?;
    let member_of = |n: &Node| {
        e.members
            .iter()
            .find(|m| m.peer_address() == Some(n.address))
    };
    let servers: Vec<&Node> = t.etcd_nodes().filter(|n| n.roles.is_server()).collect();
    let via = servers
        .iter()
        .find(|n| member_of(n).is_some_and(|m| m.is_healthy() && !m.is_learner))?;
    let mut steps: Vec<Step> = Vec::new();
    for n in &servers {
        match member_of(n) {
            Some(m) if m.is_healthy() => continue,
            Some(_) => return None,
            None => {}
        }
        let etcd_dir = match survey.get(&n.name) {
            Some(Fact::Known(s)) => s.etcd_dir,
            _ => return None,
        };
        let mut ops = vec![Operation::StopK3s {
            node: n.name.clone(),
        }];
        ops.extend(rejoin_ops(t, o, n, etcd_dir, &via.name));
        let id = steps.len() + 1;
        steps.push(Step {
            id,
            address: Address::member(&n.name),
            action: Action::Replace,
            reason: ActionReason::QuorumLossRecovery,
            why: format!(
                "the interrupted recovery left it out of the recovered cluster: it rejoins through {} as a new learner; its old etcd data is kept aside, never deleted",
                via.name
            ),
            operations: ops,
            before: None,
            after: None,
            depends_on: if id > 1 { vec![id - 1] } else { vec![] },
            quorum: vec![],
            notes: vec![],
        });
    }
    let id = steps.len() + 1;
    steps.push(Step {
        id,
        address: Address::Verify,
        action: Action::Read,
        reason: ActionReason::VerifyAfterApply,
        why: "the recovery changed the cluster; this checks the result".into(),
        operations: vec![Operation::Verify {
            expect_members: servers.len(),
            expect_nodes: t.nodes.iter().filter(|d| d.runs_agent()).count(),
            unhealthy_left: vec![],
        }],
        before: None,
        after: None,
        depends_on: if id > 1 { vec![id - 1] } else { vec![] },
        quorum: vec![],
        notes: vec![],
    });
    Some(Plan {
        steps,
        drift: vec![],
        warnings: vec![format!(
            "etcd has quorum again ({q}): finishing the interrupted recovery (the servers left out rejoin through {})",
            via.name
        )],
        quorum_before: None,
        unknown: vec![],
        estimate: None,
    })
}

/// `ADDRESS:6443`, with brackets for IPv6.
fn join_host(n: &Node) -> String {
    match n.address {
        std::net::IpAddr::V6(a) => format!("[{a}]:6443"),
        a => format!("{a}:6443"),
    }
}

fn quorum_of(o: &Observed) -> Option<Quorum> {
    let e = o.etcd.known()?;
    if e.members.is_empty() {
        return None;
    }
    let voters = e.members.iter().filter(|m| !m.is_learner).count();
    let healthy = e
        .members
        .iter()
        .filter(|m| !m.is_learner && m.is_healthy())
        .count();
    let learners = e.members.len() - voters;
    Some(Quorum::new(voters, healthy, learners))
}

/// Declared nodes whose member (matched by peer address) is a healthy voter.
fn declared_healthy(t: &Topology, o: &Observed) -> Vec<String> {
    let Some(e) = o.etcd.known() else {
        return Vec::new();
    };
    t.nodes
        .iter()
        .filter(|n| {
            e.members
                .iter()
                .any(|m| m.peer_address() == Some(n.address) && m.is_healthy() && !m.is_learner)
        })
        .map(|n| n.name.clone())
        .collect()
}

fn empty_plan(q: Option<Quorum>, note: String) -> Plan {
    Plan {
        steps: vec![],
        drift: vec![],
        warnings: vec![note],
        quorum_before: q,
        unknown: vec![],
        estimate: None,
    }
}

fn refusal(
    rule: Rule,
    step: &str,
    message: String,
    advice: Option<String>,
    q: Option<Quorum>,
) -> Refusal {
    Refusal {
        violations: vec![Violation {
            rule,
            step: Some(step.into()),
            message,
            advice,
        }],
        quorum_before: q,
    }
}

/// The survey, side by side: a header, then one line per declared etcd server (what its
/// host shows, or why it is unknown). The CLI shows it before a recovery plan or refusal.
pub fn survey_table(
    t: &Topology,
    survey: &BTreeMap<String, Fact<EtcdSurvey>>,
    now_unix: u64,
) -> Vec<String> {
    let mut out = vec![
        "Quorum-loss recovery: what survives on each declared etcd server".to_string(),
        format!(
            "  {:<14} {:<10} {:<26} {:<12} {:<18} snapshots",
            "server", "k3s", "etcd data dir", "revision", "cluster id"
        ),
    ];
    for n in t.etcd_nodes().filter(|n| n.roles.is_server()) {
        out.push(match survey.get(&n.name) {
            Some(Fact::Known(s)) => survey_line(&n.name, s, now_unix),
            Some(Fact::Unknown { reason }) => format!(
                "  {:<14} unknown: its host did not answer ({reason})",
                n.name
            ),
            None => format!("  {:<14} unknown: not surveyed", n.name),
        });
    }
    out
}

fn survey_line(name: &str, s: &EtcdSurvey, now: u64) -> String {
    let dir = if !s.etcd_dir {
        "missing".to_string()
    } else if !s.member_dir {
        "present, no member data".to_string()
    } else if s.reset_flag {
        "present (reset-flag)".to_string()
    } else {
        "present".to_string()
    };
    let rev = match &s.db {
        DbRead::Read(d) => d.revision.to_string(),
        DbRead::Absent => "-".into(),
        DbRead::Unreadable { .. } => "unreadable".into(),
    };
    let cid = s
        .wal
        .map(|w| format!("{:x}", w.cluster_id))
        .unwrap_or_else(|| "-".into());
    let snaps = match newest(&s.snapshots) {
        Some(f) => format!(
            "{} (newest: {}, revision {}, {} old)",
            s.snapshots.len(),
            f.name,
            f.status
                .map(|d| d.revision.to_string())
                .unwrap_or_else(|| "?".into()),
            age(now, f.mtime_unix)
        ),
        None => "none".into(),
    };
    let mut line = format!(
        "  {:<14} {:<10} {:<26} {:<12} {:<18} {snaps}",
        name,
        s.k3s_state(),
        dir,
        rev,
        cid
    );
    if let DbRead::Unreadable { reason } = &s.db {
        line.push_str(&format!("\n  {:<14} database unreadable: {reason}", ""));
    }
    line
}

fn newest(files: &[SnapshotFile]) -> Option<&SnapshotFile> {
    files
        .iter()
        .max_by_key(|f| (f.mtime_unix, f.status.map(|d| d.revision)))
}

fn age(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

fn describe_source(s: &Source, now: u64) -> String {
    match s {
        Source::Member { node, revision } => format!(
            "{node}'s own etcd data (revision {})",
            revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        Source::Snapshot { node, file } => format!(
            "snapshot {} on {node} (revision {}, {} old)",
            file.name,
            file.status
                .map(|d| d.revision.to_string())
                .unwrap_or_else(|| "?".into()),
            age(now, file.mtime_unix)
        ),
    }
}

fn choose(
    cands: &[(&Node, &EtcdSurvey)],
    reachable: &[(&Node, &EtcdSurvey)],
    ro: &RecoverOptions,
    q: Option<Quorum>,
) -> Result<Source, Refusal> {
    if ro.from_snapshot.is_some() && ro.from_node.is_some() {
        return Err(refusal(
            Rule::SourceUnknown,
            "recover",
            "--from-snapshot and --recover-from name two sources: name one".into(),
            None,
            q,
        ));
    }
    if let Some(want) = &ro.from_snapshot {
        let mut found: Vec<(&Node, &SnapshotFile)> = reachable
            .iter()
            .flat_map(|(n, s)| s.snapshots.iter().map(move |f| (*n, f)))
            .filter(|(_, f)| &f.name == want || &f.path == want)
            .collect();
        found.sort_by_key(|(n, f)| (std::cmp::Reverse(f.mtime_unix), n.name.clone()));
        return match found.first() {
            Some((n, f)) if f.status.is_some() => Ok(Source::Snapshot {
                node: n.name.clone(),
                file: (*f).clone(),
            }),
            Some((n, f)) => Err(refusal(
                Rule::SourceUnknown,
                "recover",
                format!(
                    "snapshot {} on {} cannot be read (etcdctl snapshot status failed): it may be corrupt",
                    f.path, n.name
                ),
                None,
                q,
            )),
            None => Err(refusal(
                Rule::SourceUnknown,
                "recover",
                format!("no snapshot named {want} on any reachable server"),
                Some(format!(
                    "the snapshots found: {}",
                    list_snapshots(reachable)
                )),
                q,
            )),
        };
    }
    if let Some(want) = &ro.from_node {
        return match cands.iter().find(|(n, _)| &n.name == want) {
            Some((n, s)) => Ok(Source::Member {
                node: n.name.clone(),
                revision: s.db.status().map(|d| d.revision),
            }),
            None => Err(refusal(
                Rule::SourceUnknown,
                "recover",
                format!("{want} has no readable etcd member data to reset from"),
                None,
                q,
            )),
        };
    }
    if !cands.is_empty() {
        let mut clusters: Vec<u64> = cands
            .iter()
            .filter_map(|(_, s)| s.wal.map(|w| w.cluster_id))
            .collect();
        clusters.sort();
        clusters.dedup();
        if clusters.len() > 1 {
            let who: Vec<String> = cands
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{} (cluster {})",
                        n.name,
                        s.wal
                            .map(|w| format!("{:x}", w.cluster_id))
                            .unwrap_or_else(|| "?".into())
                    )
                })
                .collect();
            return Err(refusal(
                Rule::SourceUnknown,
                "recover",
                format!(
                    "the surviving data belongs to different etcd clusters: {}; k3splan will not guess which one is yours",
                    who.join(", ")
                ),
                Some("name the source: --recover-from NODE (or --from-snapshot NAME)".into()),
                q,
            ));
        }
        let (n, s) = cands
            .iter()
            .max_by(|(a, x), (b, y)| {
                let rx = x.db.status().map(|d| d.revision);
                let ry = y.db.status().map(|d| d.revision);
                // Most advanced; on a tie, the first declared (stable).
                rx.cmp(&ry).then_with(|| b.name.cmp(&a.name))
            })
            .expect("not empty");
        return Ok(Source::Member {
            node: n.name.clone(),
            revision: s.db.status().map(|d| d.revision),
        });
    }
    let mut snaps: Vec<(&Node, &SnapshotFile)> = reachable
        .iter()
        .flat_map(|(n, s)| s.snapshots.iter().map(move |f| (*n, f)))
        .filter(|(_, f)| f.status.is_some())
        .collect();
    snaps.sort_by_key(|(n, f)| {
        (
            std::cmp::Reverse(f.mtime_unix),
            std::cmp::Reverse(f.status.map(|d| d.revision)),
            n.name.clone(),
        )
    });
    match snaps.first() {
        Some((n, f)) => Ok(Source::Snapshot {
            node: n.name.clone(),
            file: (*f).clone(),
        }),
        None => Err(refusal(
            Rule::SourceUnknown,
            "recover",
            "no server has readable etcd member data and no readable snapshot was found: there is nothing to recover from".into(),
            Some("copy a snapshot into a server's <data-dir>/server/db/snapshots and re-run plan --recover --from-snapshot NAME".into()),
            q,
        )),
    }
}

fn list_snapshots(reachable: &[(&Node, &EtcdSurvey)]) -> String {
    let all: Vec<String> = reachable
        .iter()
        .flat_map(|(n, s)| {
            s.snapshots
                .iter()
                .map(move |f| format!("{} ({})", f.name, n.name))
        })
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// What is lost compared with the other candidates, in plain words.
fn loss_window(
    source: &Source,
    cands: &[(&Node, &EtcdSurvey)],
    reachable: &[(&Node, &EtcdSurvey)],
    now: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let best_member = cands
        .iter()
        .filter_map(|(n, s)| s.db.status().map(|d| (n.name.clone(), d.revision)))
        .max_by_key(|(_, r)| *r);
    match source {
        Source::Member { node, revision } => {
            let r = revision.unwrap_or(0);
            for (n, s) in cands {
                if n.name == *node {
                    continue;
                }
                if let Some(d) = s.db.status()
                    && d.revision > r
                {
                    out.push(format!(
                        "{} has data up to revision {}: the {} revisions after {r} are lost",
                        n.name,
                        d.revision,
                        d.revision - r
                    ));
                }
            }
            out.push(format!(
                "the cluster restarts from {node}'s data at revision {r}; writes acknowledged by the lost quorum that never reached {node} are gone (the revision is read from its database file: entries only in its WAL are replayed and kept)"
            ));
            if let Some((sn, f)) = reachable
                .iter()
                .flat_map(|(n, s)| s.snapshots.iter().map(move |f| (n.name.clone(), f)))
                .filter(|(_, f)| f.status.is_some_and(|d| d.revision > r))
                .max_by_key(|(_, f)| f.status.map(|d| d.revision))
            {
                out.push(format!(
                    "snapshot {} on {sn} is more advanced (revision {}): consider --from-snapshot {}",
                    f.name,
                    f.status.map(|d| d.revision).unwrap_or(0),
                    f.name
                ));
            }
        }
        Source::Snapshot { file, .. } => {
            let r = file.status.map(|d| d.revision).unwrap_or(0);
            out.push(format!(
                "everything written after snapshot {} (revision {r}, taken {} ago) is lost",
                file.name,
                age(now, file.mtime_unix)
            ));
            if let Some((n, br)) = best_member
                && br > r
            {
                out.push(format!(
                    "{n}'s own data goes to revision {br}: {} more revisions than the snapshot, lost by restoring it",
                    br - r
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
