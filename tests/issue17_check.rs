//! Issue 17: `k3splan check` findings judged from plain values (plan_safety style): each
//! finding from a cluster that has it, none from one that does not, unknown never ok, and the
//! `check { … }` block's thresholds. The lab end-to-end tests are in tests/issue17_lab.rs.

use std::collections::BTreeMap;

use k3splan::check::{
    CertFact, CheckFacts, KubeCheckFacts, REMOVE_ANNOTATION, Report, ServerFacts, Severity,
    SnapshotFact, evaluate, ids,
};
use k3splan::config::{Role, Topology, load_str};
use k3splan::observed::{Fact, MemberHealth, Observed};
use k3splan::plan::testkit::*;

const S: [Role; 1] = [Role::Server];
const NOW: i64 = 1_796_169_600; // 2026-12-02T00:00:00Z
const DAY: i64 = 86_400;

fn three() -> Topology {
    topology(
        cluster("t"),
        vec![
            node("a", "10.0.0.1", &S),
            node("b", "10.0.0.2", &S),
            node("c", "10.0.0.3", &S),
        ],
    )
}

fn server_facts(expires_in: i64, snapshot_age: i64) -> ServerFacts {
    ServerFacts {
        certs: vec![CertFact {
            path: "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt".into(),
            subject: Some("kube-apiserver".into()),
            not_after: Some(NOW + expires_in),
            error: None,
        }],
        snapshots: vec![SnapshotFact {
            path: "/var/lib/rancher/k3s/server/db/snapshots/on-demand-a-1".into(),
            mtime: NOW - snapshot_age,
            size: 544,
            intact: Some(true),
        }],
        holds_vip: None,
        member_dir_mtime: Some(NOW - 30 * DAY),
    }
}

/// Facts of a healthy cluster: certificates for a year, a snapshot an hour old, small DBs.
fn healthy(t: &Topology) -> CheckFacts {
    CheckFacts {
        now: NOW,
        servers: t
            .server_nodes()
            .map(|n| (n.name.clone(), Fact::Known(server_facts(300 * DAY, 3600))))
            .collect(),
        db_sizes: t
            .etcd_nodes()
            .map(|n| (member_id(&n.name), 20 << 20))
            .collect(),
        kube: Fact::Known(KubeCheckFacts {
            node_marks: t
                .nodes
                .iter()
                .map(|n| (n.name.clone(), BTreeMap::new()))
                .collect(),
            suc_plans: vec![],
        }),
    }
}

fn only(r: &Report, check: &str) -> Vec<(Severity, String)> {
    r.findings
        .iter()
        .filter(|f| f.check == check)
        .map(|f| (f.severity, f.subject.clone()))
        .collect()
}

fn server<'a>(f: &'a mut CheckFacts, n: &str) -> &'a mut ServerFacts {
    match f.servers.get_mut(n) {
        Some(Fact::Known(s)) => s,
        _ => unreachable!(),
    }
}

#[test]
fn issue17_healthy_cluster_is_ok_with_exit_0() {
    let t = three();
    let r = evaluate(&t, &observed_matching(&t), &healthy(&t));
    assert_eq!(r.findings, vec![], "{r:#?}");
    assert_eq!(r.status, Severity::Ok);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.checked_at, "2026-12-02T00:00:00Z");
    // Every check ran; without a VIP, the VIP check is not listed.
    assert!(r.checks.contains_key(ids::CERT_EXPIRY));
    assert!(!r.checks.contains_key(ids::VIP_HOLDERS));
}

#[test]
fn issue17_cert_expiry_warns_then_goes_critical_with_a_deadline() {
    let t = three();
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    *server(&mut f, "a") = server_facts(20 * DAY, 3600);
    *server(&mut f, "b") = server_facts(3 * DAY, 3600);
    let r = evaluate(&t, &o, &f);
    let certs = only(&r, ids::CERT_EXPIRY);
    assert_eq!(certs.len(), 2, "{r:#?}");
    assert_eq!(certs[0].0, Severity::Critical);
    assert!(certs[0].1.starts_with("node.b:"), "{certs:?}");
    assert_eq!(certs[1].0, Severity::Warning);
    let crit = &r.findings[0];
    assert_eq!(crit.deadline.as_deref(), Some("2026-12-05T00:00:00Z"));
    assert!(
        crit.fix
            .as_deref()
            .unwrap()
            .contains("k3s certificate rotate")
    );
    assert_eq!(r.exit_code(), 3);
    // An expired one is critical too, and says so.
    *server(&mut f, "b") = server_facts(-DAY, 3600);
    let r = evaluate(&t, &o, &f);
    assert!(r.findings[0].message.contains("expired 1d ago"), "{r:#?}");
}

#[test]
fn issue17_thresholds_come_from_the_check_block() {
    let hcl = r#"
cluster "t" {}
node "a" {
  address = "10.0.0.1"
  roles   = ["server"]
}
check {
  cert_expiry_warn     = "90d"
  cert_expiry_critical = "60d"
  etcd_quota           = "100MiB"
}
"#;
    let l = load_str("t.hcl", hcl);
    let t = l
        .topology
        .unwrap_or_else(|| panic!("{:?}", l.diagnostics.0));
    assert_eq!(t.check.cert_expiry_warn, 90 * 86_400);
    assert_eq!(t.check.etcd_quota_bytes, 100 << 20);
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    *server(&mut f, "a") = server_facts(70 * DAY, 3600);
    f.db_sizes.insert(member_id("a"), 90 << 20);
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::CERT_EXPIRY)[0].0,
        Severity::Warning,
        "70 days is within the declared 90d: {r:#?}"
    );
    assert_eq!(only(&r, ids::DB_SIZE)[0].0, Severity::Warning, "{r:#?}");
    // A one-voter cluster is odd: no member-count finding.
    assert!(only(&r, ids::MEMBER_COUNT).is_empty());
}

#[test]
fn issue17_bad_check_block_is_a_clear_error() {
    for (attr, value, says) in [
        ("cert_expiry_warn", "\"30\"", "without a unit"),
        ("snapshot_age_warn", "\"3w\"", "unit (s, m, h, d)"),
        ("etcd_quota", "\"8GB\"", "KiB, MiB or GiB"),
        ("cert_expiry_critical", "\"60d\"", "less strict"),
    ] {
        let hcl = format!(
            "cluster \"t\" {{}}\nnode \"a\" {{\n  address = \"10.0.0.1\"\n  roles = [\"server\"]\n}}\ncheck {{\n  {attr} = {value}\n}}\n"
        );
        let l = load_str("t.hcl", &hcl);
        assert!(l.topology.is_none(), "{attr} = {value} must be refused");
        let msgs: Vec<String> = l.diagnostics.0.iter().map(|d| d.message.clone()).collect();
        assert!(msgs.iter().any(|m| m.contains(says)), "{attr}: {msgs:?}");
    }
}

#[test]
fn issue17_snapshots_old_missing_or_corrupt() {
    let t = three();
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    *server(&mut f, "a") = server_facts(300 * DAY, 3 * DAY);
    server(&mut f, "b").snapshots.clear();
    server(&mut f, "c").snapshots[0].intact = Some(false);
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::SNAPSHOT_AGE),
        vec![
            (Severity::Critical, "node.b".into()),
            (Severity::Critical, "node.c".into()),
            (Severity::Warning, "node.a".into()),
        ],
        "{r:#?}"
    );
    assert_eq!(only(&r, ids::SNAPSHOT_UNREADABLE).len(), 1);
}

#[test]
fn issue17_even_and_two_voter_counts() {
    let mut t = three();
    t.nodes.push(node("d", "10.0.0.4", &S));
    let r = evaluate(&t, &observed_matching(&t), &healthy(&t));
    assert_eq!(
        only(&r, ids::MEMBER_COUNT),
        vec![(Severity::Warning, "cluster".into())]
    );
    t.nodes.truncate(2);
    let r = evaluate(&t, &observed_matching(&t), &healthy(&t));
    assert_eq!(only(&r, ids::MEMBER_COUNT)[0].0, Severity::Critical);
    assert!(
        r.findings[0].message.contains("tolerates 0 failures"),
        "{r:#?}"
    );
}

#[test]
fn issue17_stuck_learner_orphaned_member_and_db_size() {
    let t = three();
    let mut o = observed_matching(&t);
    let mut f = healthy(&t);
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    // c is a learner since its member dir was made 2 hours ago.
    e.members[2].is_learner = true;
    server(&mut f, "c").member_dir_mtime = Some(NOW - 7200);
    // A member at an address no node declares.
    e.members.push(member(
        "ghost",
        "10.0.0.9".parse().unwrap(),
        MemberHealth::Unreachable {
            reason: "connection refused".into(),
        },
    ));
    f.db_sizes.insert(member_id("a"), 2040 << 20);
    f.db_sizes.insert(member_id("ghost"), 1 << 20);
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::STUCK_LEARNER),
        vec![(
            Severity::Critical,
            format!("member.{:016x}", member_id("c"))
        )],
        "{r:#?}"
    );
    assert_eq!(
        only(&r, ids::ORPHANED_MEMBER),
        vec![(
            Severity::Warning,
            format!("member.{:016x}", member_id("ghost"))
        )]
    );
    assert_eq!(only(&r, ids::DB_SIZE)[0].0, Severity::Critical, "{r:#?}");
    // A fresh learner (5 minutes) is not stuck.
    server(&mut f, "c").member_dir_mtime = Some(NOW - 300);
    let r = evaluate(&t, &o, &f);
    assert!(only(&r, ids::STUCK_LEARNER).is_empty(), "{r:#?}");
}

#[test]
fn issue17_remove_annotation_rancher_labels_and_suc_plans() {
    let t = three();
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    let Fact::Known(k) = &mut f.kube else {
        unreachable!()
    };
    k.node_marks
        .get_mut("b")
        .unwrap()
        .insert(REMOVE_ANNOTATION.into(), "true".into());
    k.node_marks
        .get_mut("c")
        .unwrap()
        .insert("management.cattle.io/cluster-name".into(), "c-x".into());
    k.suc_plans = vec!["system-upgrade/server-plan".into()];
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::REMOVE_ANNOTATION),
        vec![(Severity::Warning, "node.b".into())]
    );
    assert_eq!(
        only(&r, ids::OTHER_MANAGER),
        vec![
            (Severity::Warning, "cluster".into()),
            (Severity::Warning, "node.c".into())
        ]
    );
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn issue17_vip_held_by_none_or_two() {
    let mut t = three();
    t.cluster.vip = Some(vip("10.0.0.100", "eth0", 51));
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    for (n, holds) in [("a", true), ("b", true), ("c", false)] {
        server(&mut f, n).holds_vip = Some(holds);
    }
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::VIP_HOLDERS),
        vec![(Severity::Critical, "cluster".into())]
    );
    assert!(
        r.findings
            .iter()
            .any(|x| x.message.contains("held by 2 hosts"))
    );
    server(&mut f, "a").holds_vip = Some(false);
    let r = evaluate(&t, &o, &f);
    assert!(only(&r, ids::VIP_HOLDERS).is_empty(), "{r:#?}");
    server(&mut f, "b").holds_vip = Some(false);
    let r = evaluate(&t, &o, &f);
    assert!(
        r.findings
            .iter()
            .any(|x| x.message.contains("no host holds"))
    );
    // One holder seen and one host unread: it may be a second holder, so unknown, not ok.
    server(&mut f, "a").holds_vip = Some(true);
    f.servers
        .insert("c".into(), Fact::unknown("ssh: connection refused"));
    let r = evaluate(&t, &o, &f);
    assert_eq!(
        only(&r, ids::VIP_HOLDERS),
        vec![(Severity::Unknown, "cluster".into())],
        "{r:#?}"
    );
    server(&mut f, "a").holds_vip = Some(false);
    // Nobody seen holding it and one host unread: unknown, not "nobody".
    f.servers
        .insert("c".into(), Fact::unknown("ssh: connection refused"));
    let r = evaluate(&t, &o, &f);
    assert!(
        only(&r, ids::VIP_HOLDERS)
            .iter()
            .all(|(s, _)| *s == Severity::Unknown),
        "{r:#?}"
    );
}

#[test]
fn issue17_version_skew_between_nodes_and_hosts() {
    let mut t = three();
    t.cluster.k3s_version = Some("v1.30.4+k3s1".into());
    let mut o = observed_matching(&t);
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes[1].version = Some("v1.29.9+k3s1".into());
    let r = evaluate(&t, &o, &healthy(&t));
    assert_eq!(
        only(&r, ids::VERSION_SKEW),
        vec![(Severity::Warning, "cluster".into())]
    );
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes[1].version = Some("v1.27.1+k3s1".into());
    let r = evaluate(&t, &o, &healthy(&t));
    assert_eq!(
        only(&r, ids::VERSION_SKEW)[0].0,
        Severity::Critical,
        "{r:#?}"
    );
}

#[test]
fn issue17_unknown_sources_are_never_ok() {
    let t = three();
    let mut o: Observed = observed_matching(&t);
    o.etcd = Fact::unknown("etcd: every endpoint refused");
    let mut f = healthy(&t);
    f.kube = Fact::unknown("Kubernetes API: connection refused");
    f.servers
        .insert("a".into(), Fact::unknown("ssh: timed out"));
    let r = evaluate(&t, &o, &f);
    assert_eq!(r.status, Severity::Unknown, "{r:#?}");
    assert_eq!(r.exit_code(), 1);
    for c in [
        ids::MEMBER_COUNT,
        ids::STUCK_LEARNER,
        ids::ORPHANED_MEMBER,
        ids::DB_SIZE,
        ids::REMOVE_ANNOTATION,
        ids::OTHER_MANAGER,
        ids::CERT_EXPIRY,
        ids::SNAPSHOT_AGE,
    ] {
        assert_eq!(r.checks[c], Severity::Unknown, "{c}: {r:#?}");
    }
    // A critical finding still wins over unknown: exit 3.
    *server(&mut f, "b") = server_facts(DAY, 3600);
    assert_eq!(evaluate(&t, &o, &f).exit_code(), 3);
}

#[test]
fn issue17_json_report_has_the_documented_fields() {
    let t = three();
    let mut f = healthy(&t);
    *server(&mut f, "a") = server_facts(3 * DAY, 3600);
    let r = evaluate(&t, &observed_matching(&t), &f);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["status"], "critical");
    assert_eq!(v["checks"]["cert_expiry"], "critical");
    assert_eq!(v["checks"]["snapshot_age"], "ok");
    let f0 = &v["findings"][0];
    for k in [
        "check", "severity", "subject", "message", "evidence", "deadline", "fix",
    ] {
        assert!(f0.get(k).is_some(), "{k} missing: {f0}");
    }
    assert_eq!(f0["evidence"]["not_after"], "2026-12-05T00:00:00Z");
}

// ------------------------------------------------------------------ fixes as plan steps

use k3splan::plan::{ActionReason, Operation, PlanOptions, plan};

fn with_report(t: &Topology, o: &Observed, f: &CheckFacts) -> PlanOptions {
    PlanOptions {
        check: Some(evaluate(t, o, f)),
        ..PlanOptions::default()
    }
}

#[test]
fn issue17_plan_fixes_findings_with_their_reasons_one_rotation_per_server() {
    let t = three();
    let o = observed_matching(&t);
    let mut f = healthy(&t);
    *server(&mut f, "b") = server_facts(3 * DAY, 3600);
    server(&mut f, "b").certs.push(CertFact {
        path: "/var/lib/rancher/k3s/agent/client-kubelet.crt".into(),
        subject: None,
        not_after: Some(NOW + 2 * DAY),
        error: None,
    });
    *server(&mut f, "c") = server_facts(20 * DAY, 9 * DAY);
    let Fact::Known(k) = &mut f.kube else {
        unreachable!()
    };
    k.node_marks
        .get_mut("a")
        .unwrap()
        .insert(REMOVE_ANNOTATION.into(), "true".into());
    let p = plan(&t, &o, &with_report(&t, &o, &f)).expect("a plan");
    let ops: Vec<(&Operation, &str)> = p
        .steps
        .iter()
        .filter(|s| s.reason == ActionReason::CheckFinding)
        .flat_map(|s| s.operations.iter().map(move |op| (op, s.why.as_str())))
        .collect();
    let rotations: Vec<&str> = ops
        .iter()
        .filter_map(|(op, _)| match op {
            Operation::RotateCertificates { node } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rotations,
        ["b", "c"],
        "one rotation per server: {:#?}",
        p.steps
    );
    assert!(ops.iter().any(
        |(op, why)| matches!(op, Operation::Snapshot { node: Some(n) } if n == "c")
            && why.starts_with("because check snapshot_age found")
    ));
    assert!(ops.iter().any(|(op, _)| matches!(op, Operation::RemoveNodeAnnotation { node, key } if node == "a" && key == REMOVE_ANNOTATION)));
    assert!(ops.iter().all(|(_, why)| why.starts_with("because check ")));
    // The findings are beside the plan.
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("check cert_expiry found (critical) node.b:")),
        "{:?}",
        p.warnings
    );
    // The rotations restart servers: the quorum simulation saw each one.
    assert!(
        p.steps
            .iter()
            .filter(|s| s.reason == ActionReason::CheckFinding)
            .any(|s| !s.quorum.is_empty()),
        "{:#?}",
        p.steps
    );
    // Without a report (no check block), nothing of this is planned.
    let p = plan(&t, &o, &PlanOptions::default()).unwrap();
    assert!(
        p.steps
            .iter()
            .all(|s| s.reason != ActionReason::CheckFinding)
    );
}

#[test]
fn issue17_rotation_that_would_lose_quorum_is_not_planned() {
    let t = three();
    let mut o = observed_matching(&t);
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    e.members[0].health = MemberHealth::Unreachable {
        reason: "connection refused".into(),
    };
    let mut f = healthy(&t);
    *server(&mut f, "b") = server_facts(3 * DAY, 3600);
    let r = plan(&t, &o, &with_report(&t, &o, &f));
    let p = match r {
        Ok(p) => p,
        Err(e) => panic!("an optional fix must not refuse the plan: {e:?}"),
    };
    assert!(
        !p.steps
            .iter()
            .flat_map(|s| &s.operations)
            .any(|op| matches!(op, Operation::RotateCertificates { .. })),
        "{:#?}",
        p.steps
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("certificates on b are not rotated by this plan")),
        "{:?}",
        p.warnings
    );
}

// ------------------------------------------------------------------ the binary, nothing answering

#[path = "common/mod.rs"]
mod common;

/// A cluster where nothing answers (no SSH, no etcd, no API): `check` exits 1 and says which
/// checks could not be made; it never reports ok.
#[test]
fn issue17_check_of_an_unreachable_cluster_exits_1_and_reports_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("main.hcl");
    std::fs::write(
        &topo,
        format!(
            "cluster \"t\" {{\n  kubeconfig = \"{k}\"\n  ssh {{\n    known_hosts_file = \"{kh}\"\n  }}\n}}\nnode \"a\" {{\n  address = \"127.0.0.1\"\n  roles   = [\"server\"]\n  ssh {{\n    port = 1\n  }}\n}}\ncheck {{}}\n",
            k = dir.path().join("missing-kubeconfig").display(),
            kh = dir.path().join("known_hosts").display(),
        ),
    )
    .unwrap();
    let o = common::k3splan()
        .args(["check", "--json", "-c"])
        .arg(&topo)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "unknown", "{v:#}");
    for c in ["cert_expiry", "etcd_member_count", "etcd_remove_annotation"] {
        assert_eq!(v["checks"][c], "unknown", "{c}: {v:#}");
    }
    // The text form says the same, and never "Check: ok.".
    let o = common::k3splan()
        .args(["check", "-c"])
        .arg(&topo)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1));
    assert!(!text.contains("Check: ok."), "{text}");
    assert!(text.contains("unknown"), "{text}");
}
