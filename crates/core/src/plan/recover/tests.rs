//! The recovery planner (issue 16): the source of truth, the data-loss window, the steps, the
//! refusals.

use std::collections::BTreeMap;

use super::*;
use crate::config::Role;
use crate::observed::recovery::{DbStatus, WalIds};
use crate::observed::{Fact, MemberHealth};
use crate::plan::testkit::{cluster, node, observed_matching, topology};

const NOW: u64 = 1_800_000_000;

fn servers(n: usize) -> Topology {
    let s = [Role::Server, Role::Etcd];
    topology(
        cluster("c"),
        (1..=n)
            .map(|i| node(&format!("s{i}"), &format!("10.0.0.{i}"), &s))
            .collect(),
    )
}

/// Every member but `alive` unreachable.
fn quorum_lost(t: &Topology, alive: &[&str]) -> Observed {
    let mut o = observed_matching(t);
    if let Fact::Known(e) = &mut o.etcd {
        for m in &mut e.members {
            let name = t
                .nodes
                .iter()
                .find(|n| m.peer_address() == Some(n.address))
                .map(|n| n.name.clone())
                .unwrap();
            if !alive.contains(&name.as_str()) {
                m.health = MemberHealth::Unreachable {
                    reason: "connection refused".into(),
                };
            } else {
                m.health = MemberHealth::Unhealthy {
                    reason: "no leader".into(),
                };
            }
        }
        e.leader = None;
    }
    o
}

fn member(rev: i64) -> EtcdSurvey {
    EtcdSurvey {
        k3s_active: false,
        k3s_restarting: false,
        etcd_dir: true,
        member_dir: true,
        member_name: Some("x".into()),
        reset_flag: false,
        db: DbRead::Read(DbStatus {
            hash: 1,
            revision: rev,
            total_keys: 10,
            total_size: 4096,
        }),
        wal: Some(WalIds {
            member_id: 7,
            cluster_id: 0xc0ffee,
        }),
        snapshots: vec![],
    }
}

fn lost() -> EtcdSurvey {
    EtcdSurvey::default()
}

fn snap(name: &str, rev: i64, mtime: u64) -> SnapshotFile {
    SnapshotFile {
        path: format!("/var/lib/rancher/k3s/server/db/snapshots/{name}"),
        name: name.into(),
        mtime_unix: mtime,
        status: Some(DbStatus {
            hash: 2,
            revision: rev,
            total_keys: 5,
            total_size: 2048,
        }),
    }
}

fn survey(v: Vec<(&str, EtcdSurvey)>) -> BTreeMap<String, Fact<EtcdSurvey>> {
    v.into_iter()
        .map(|(n, s)| (n.to_string(), Fact::Known(s)))
        .collect()
}

fn ops(p: &Plan) -> Vec<&Operation> {
    p.steps.iter().flat_map(|s| &s.operations).collect()
}

fn run(
    t: &Topology,
    o: &Observed,
    s: &BTreeMap<String, Fact<EtcdSurvey>>,
    ro: &RecoverOptions,
) -> Result<Recovery, Refusal> {
    plan_recovery(t, o, s, &PlanOptions::default(), ro, NOW)
}

#[test]
fn issue16_most_advanced_survivor_is_reset_and_the_others_rejoin_one_at_a_time() {
    let t = servers(3);
    let o = quorum_lost(&t, &["s2"]);
    let s = survey(vec![
        ("s1", member(90)),
        ("s2", member(120)),
        ("s3", lost()),
    ]);
    let r = run(&t, &o, &s, &RecoverOptions::default()).expect("plan");
    assert_eq!(
        r.source,
        Some(Source::Member {
            node: "s2".into(),
            revision: Some(120)
        })
    );
    let ops = ops(&r.plan);
    // Every server stopped before the reset.
    let reset_at = ops
        .iter()
        .position(
            |o| matches!(o, Operation::ClusterReset { node, restore_path: None } if node == "s2"),
        )
        .expect("reset on s2");
    for n in ["s1", "s2", "s3"] {
        let stop = ops
            .iter()
            .position(|o| matches!(o, Operation::StopK3s { node } if node == n))
            .unwrap_or_else(|| panic!("stop {n}"));
        assert!(stop < reset_at);
    }
    assert!(matches!(ops[reset_at + 1], Operation::RestartService { node } if node == "s2"));
    // s1's data moved aside (it exists), s3's not (it is gone); both rejoin through s2.
    assert!(
        ops.iter()
            .any(|o| matches!(o, Operation::MoveAsideDataDir { node, .. } if node == "s1"))
    );
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Operation::MoveAsideDataDir { node, .. } if node == "s3"))
    );
    let joins: Vec<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Operation::JoinServer { node, via, .. } => {
                assert_eq!(via, "https://10.0.0.2:6443");
                Some(node.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(joins, ["s1", "s3"]);
    // Each join is followed by its promotion before the next join.
    let j3 = ops
        .iter()
        .position(|o| matches!(o, Operation::JoinServer { node, .. } if node == "s3"))
        .unwrap();
    let p1 = ops
        .iter()
        .position(|o| matches!(o, Operation::WaitLearnerPromoted { node } if node == "s1"))
        .unwrap();
    assert!(p1 < j3);
    // The config written never has cluster-init and names the recovered server.
    for o in &ops {
        if let Operation::WriteFile { after, .. } = o {
            assert!(after.contains("server: https://10.0.0.2:6443"), "{after}");
            assert!(!after.contains("cluster-init"), "{after}");
        }
    }
    assert!(matches!(
        ops.last().unwrap(),
        Operation::Verify {
            expect_members: 3,
            ..
        }
    ));
    // The loss is stated plainly, in the plan itself.
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.starts_with("DATA LOSS:") && w.contains("revision 120")),
        "{:?}",
        r.plan.warnings
    );
    let report = r.report.join("\n");
    assert!(
        report.contains("s1") && report.contains("90") && report.contains("120"),
        "{report}"
    );
    assert!(report.contains("missing"), "{report}");
}

#[test]
fn issue16_no_member_data_restores_the_newest_snapshot_and_says_what_is_lost() {
    let t = servers(3);
    let o = quorum_lost(&t, &[]);
    let mut a = lost();
    a.snapshots = vec![
        snap("old-s1", 40, NOW - 7200),
        snap("new-s1", 55, NOW - 600),
    ];
    let mut b = lost();
    b.snapshots = vec![snap("mid-s2", 50, NOW - 3600)];
    let s = survey(vec![("s1", a), ("s2", b), ("s3", lost())]);
    let r = run(&t, &o, &s, &RecoverOptions::default()).expect("plan");
    let ops = ops(&r.plan);
    assert!(ops.iter().any(|o| matches!(o,
        Operation::ClusterReset { node, restore_path: Some(p) }
            if node == "s1" && p.ends_with("/new-s1"))));
    assert!(
        r.plan.warnings.iter().any(|w| w.contains(
            "everything written after snapshot new-s1 (revision 55, taken 10m ago) is lost"
        )),
        "{:?}",
        r.plan.warnings
    );
    // The operator names an older one: it is used.
    let r = run(
        &t,
        &o,
        &s,
        &RecoverOptions {
            from_snapshot: Some("mid-s2".into()),
            ..Default::default()
        },
    )
    .expect("plan");
    assert!(ops_of(&r).iter().any(|o| matches!(o,
        Operation::ClusterReset { node, restore_path: Some(p) } if node == "s2" && p.ends_with("/mid-s2"))));
    // A name that exists nowhere: refused, listing what exists.
    let e = run(
        &t,
        &o,
        &s,
        &RecoverOptions {
            from_snapshot: Some("nope".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    let m = format!("{:?}", e.violations);
    assert!(
        m.contains("no snapshot named nope") && m.contains("new-s1 (s1)"),
        "{m}"
    );
}

fn ops_of(r: &Recovery) -> Vec<Operation> {
    r.plan
        .steps
        .iter()
        .flat_map(|s| s.operations.clone())
        .collect()
}

#[test]
fn issue16_snapshot_over_surviving_data_states_the_revisions_lost() {
    let t = servers(3);
    let o = quorum_lost(&t, &["s1"]);
    let mut a = member(200);
    a.snapshots = vec![snap("daily", 150, NOW - 86400)];
    let s = survey(vec![("s1", a), ("s2", lost()), ("s3", lost())]);
    let r = run(
        &t,
        &o,
        &s,
        &RecoverOptions {
            from_snapshot: Some("daily".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        r.plan.warnings.iter().any(|w| w
            .contains("s1's own data goes to revision 200: 50 more revisions than the snapshot")),
        "{:?}",
        r.plan.warnings
    );
}

#[test]
fn issue16_refuses_while_quorum_holds_and_does_nothing_on_a_healthy_cluster() {
    let t = servers(3);
    // Healthy: an empty plan, "No changes".
    let o = observed_matching(&t);
    let s = survey(vec![
        ("s1", member(1)),
        ("s2", member(1)),
        ("s3", member(1)),
    ]);
    let r = run(&t, &o, &s, &RecoverOptions::default()).unwrap();
    assert!(r.plan.steps.is_empty());
    assert!(r.plan.warnings[0].contains("nothing to recover"));
    // One of three down: quorum holds → refused, pointing at the normal plan.
    let mut o = observed_matching(&t);
    if let Fact::Known(e) = &mut o.etcd {
        e.members[2].health = MemberHealth::Unreachable {
            reason: "refused".into(),
        };
    }
    let e = run(&t, &o, &s, &RecoverOptions::default()).unwrap_err();
    let m = format!("{:?}", e.violations);
    assert!(m.contains("etcd still has quorum"), "{m}");
    assert!(m.contains("without --recover"), "{m}");
    // Resuming an interrupted recovery once quorum is back: the normal plan finishes it.
    let r = run(
        &t,
        &o,
        &s,
        &RecoverOptions {
            resuming: true,
            ..Default::default()
        },
    );
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn issue16_two_clusters_are_refused_unless_the_operator_names_the_source() {
    let t = servers(3);
    let o = quorum_lost(&t, &[]);
    let mut other = member(500);
    other.wal = Some(WalIds {
        member_id: 9,
        cluster_id: 0xbad,
    });
    let s = survey(vec![("s1", member(100)), ("s2", other), ("s3", lost())]);
    let e = run(&t, &o, &s, &RecoverOptions::default()).unwrap_err();
    let m = format!("{:?}", e.violations);
    assert!(
        m.contains("different etcd clusters") && m.contains("--recover-from"),
        "{m}"
    );
    let r = run(
        &t,
        &o,
        &s,
        &RecoverOptions {
            from_node: Some("s1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.source.unwrap().node(), "s1");
    // s2's more advanced data (of the other cluster) is named in the loss.
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("s2 has data up to revision 500"))
    );
}

#[test]
fn issue16_an_unknown_server_is_refused_unless_accepted_as_gone() {
    let t = servers(5);
    let o = quorum_lost(&t, &["s1", "s2"]);
    let mut s = survey(vec![
        ("s1", member(10)),
        ("s2", member(12)),
        ("s3", lost()),
        ("s4", lost()),
    ]);
    s.insert("s5".into(), Fact::unknown("connection timed out"));
    let e = run(&t, &o, &s, &RecoverOptions::default()).unwrap_err();
    assert!(format!("{:?}", e.violations).contains("--allow-unreachable s5"));
    let normal = PlanOptions {
        allow_unreachable: ["s5".to_string()].into(),
        ..Default::default()
    };
    let r = plan_recovery(&t, &o, &s, &normal, &RecoverOptions::default(), NOW).unwrap();
    assert!(
        !ops(&r.plan)
            .iter()
            .any(|o| matches!(o, Operation::StopK3s { node } if node == "s5"))
    );
    assert!(matches!(
        ops(&r.plan).last().unwrap(),
        Operation::Verify {
            expect_members: 4,
            ..
        }
    ));
    assert_eq!(r.source.unwrap().node(), "s2");
}

#[test]
fn issue16_nothing_to_recover_from_is_refused() {
    let t = servers(3);
    let o = quorum_lost(&t, &[]);
    let s = survey(vec![("s1", lost()), ("s2", lost()), ("s3", lost())]);
    let e = run(&t, &o, &s, &RecoverOptions::default()).unwrap_err();
    assert!(format!("{:?}", e.violations).contains("nothing to recover from"));
}

/// Resuming after the recovered server started: it is the only member; the others are not
/// listed. They rejoin through it (stopped first), and nothing is reset again.
#[test]
fn issue16_resumed_recovery_rejoins_the_servers_left_out_without_a_second_reset() {
    let t = servers(3);
    let mut o = observed_matching(&t);
    if let Fact::Known(e) = &mut o.etcd {
        e.members.truncate(1);
    }
    let s = survey(vec![("s1", member(30)), ("s2", lost()), ("s3", member(20))]);
    let resume = RecoverOptions {
        resuming: true,
        ..Default::default()
    };
    let r = run(&t, &o, &s, &resume).unwrap();
    let ops = ops(&r.plan);
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Operation::ClusterReset { .. }))
    );
    let joins: Vec<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Operation::JoinServer { node, via, .. } => {
                assert_eq!(via, "https://10.0.0.1:6443");
                Some(node.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(joins, ["s2", "s3"]);
    assert!(
        ops.iter()
            .any(|o| matches!(o, Operation::StopK3s { node } if node == "s3"))
    );
    assert!(
        ops.iter()
            .any(|o| matches!(o, Operation::MoveAsideDataDir { node, .. } if node == "s3"))
    );
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Operation::MoveAsideDataDir { node, .. } if node == "s2"))
    );
    // Not resuming: the same cluster is refused (quorum holds).
    assert!(run(&t, &o, &s, &RecoverOptions::default()).is_err());
}

/// A unit its service manager is about to restart (systemd "activating (auto-restart)") is
/// not "stopped": the survey and the stop step say "restarting", and it is stopped like a
/// running one before the reset.
#[test]
fn a_server_in_auto_restart_is_shown_restarting_and_stopped_first() {
    let t = servers(3);
    let o = quorum_lost(&t, &["s2"]);
    let restarting = EtcdSurvey {
        k3s_restarting: true,
        ..member(90)
    };
    let s = survey(vec![
        ("s1", restarting),
        ("s2", member(120)),
        ("s3", lost()),
    ]);
    let table = survey_table(&t, &s, NOW);
    let line = table
        .iter()
        .find(|l| l.trim_start().starts_with("s1"))
        .unwrap();
    assert!(line.contains(" restarting "), "{table:?}");
    let s3 = table
        .iter()
        .find(|l| l.trim_start().starts_with("s3"))
        .unwrap();
    assert!(s3.contains(" stopped "), "{table:?}");
    // The columns stay aligned: "restarting" fits its column, so the data dir column starts
    // at the same place on every line, the header's included.
    let col = |l: &str, word: &str| l.find(word).unwrap_or_else(|| panic!("{word} in {l:?}"));
    let header = table.iter().find(|l| l.contains("etcd data dir")).unwrap();
    assert_eq!(
        col(line, "present"),
        col(header, "etcd data dir"),
        "{table:#?}"
    );
    assert_eq!(
        col(s3, "missing"),
        col(header, "etcd data dir"),
        "{table:#?}"
    );
    let r = run(&t, &o, &s, &RecoverOptions::default()).expect("plan");
    let stop = r
        .plan
        .steps
        .iter()
        .find(|st| {
            st.operations
                .iter()
                .any(|op| matches!(op, Operation::StopK3s { node } if node == "s1"))
        })
        .expect("s1 stopped");
    assert!(stop.why.contains("(it is restarting)"), "{}", stop.why);
}
