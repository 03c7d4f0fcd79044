//! Issue 18: `import` — the round trip at the core level: the topology written from an
//! observation, loaded by the real loader and planned against the same observation, plans
//! nothing to create, change or remove.
//!
//! - the seed fixtures (`tests/fixtures/observed/`): 002 and 003 are healthy clusters
//!   (002 with two fresh hosts that are not part of it): "No changes.", exit 0. 000, 001 and
//!   004 each have a dead server: the imported topology keeps it (it is still a Node and a
//!   member), so nothing is created or destroyed; the only steps are the repairs k3splan
//!   makes whatever the topology says (config.yaml join URLs that name the dead server),
//!   and the only drift is that server's member health.
//! - healthy clusters built from topologies (split roles, agent-less servers, a VIP with
//!   its primary, agents): the imported topology plans no step, and has the same nodes,
//!   roles and primary as the one the cluster was built from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k3splan::config::load::load_str;
use k3splan::config::{Role, Topology};
use k3splan::import::{ImportSettings, import};
use k3splan::observed::Observed;
use k3splan::plan::testkit::*;
use k3splan::plan::{ActionReason, PlanOptions, plan};
use k3splan::render::{self, TextOptions};

fn fixture(name: &str) -> Observed {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/observed/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn settings() -> ImportSettings {
    ImportSettings {
        cluster_name: "imported".into(),
        etcd_tls: Some([
            "tls/ca.crt".into(),
            "tls/client.crt".into(),
            "tls/client.key".into(),
        ]),
        ..ImportSettings::default()
    }
}

/// Imports `o`, loads the HCL with the real loader (no error allowed) and plans it against
/// `o`, accepting the hosts that could not be read (as the operator would).
fn round_trip(o: &Observed) -> (String, Topology, k3splan::plan::Plan) {
    let i = import(o, &settings());
    let l = load_str("imported.hcl", &i.hcl);
    assert!(
        !l.diagnostics.has_errors(),
        "{}\n{}",
        i.hcl,
        l.diagnostics.render(false)
    );
    // Written formatted: `k3splan fmt` leaves it as it is.
    assert_eq!(k3splan::config::fmt::format_source(&i.hcl).unwrap(), i.hcl);
    let t = l.topology.unwrap();
    let opts = PlanOptions {
        allow_unreachable: o
            .hosts
            .iter()
            .filter(|(_, h)| !h.is_known())
            .map(|(n, _)| n.clone())
            .collect(),
        ..PlanOptions::default()
    };
    let r = plan(&t, o, &opts);
    let text = render::text(&r, TextOptions::default());
    let p = r.unwrap_or_else(|e| panic!("{}\n{e}", i.hcl));
    assert!(p.is_complete(), "{text}");
    // Secrets never written.
    for secret in ["K10secret-token", "MTkyLjE2"] {
        assert!(!i.hcl.contains(secret), "{}", i.hcl);
    }
    (i.hcl, t, p)
}

#[test]
fn healthy_seed_fixtures_import_to_no_changes() {
    for name in ["seed002", "seed003"] {
        let o = fixture(name);
        let (hcl, _, p) = round_trip(&o);
        let r = Ok(p);
        assert_eq!(
            render::detailed_exitcode(&r),
            0,
            "{name}:\n{hcl}\n{}",
            render::text(&r, TextOptions::default())
        );
    }
}

#[test]
fn seed_fixtures_with_a_dead_server_import_to_nothing_created_or_destroyed() {
    for (name, dead) in [
        ("seed000", "s1"),
        ("seed001", "etcd-1"),
        ("seed004", "lzx-ha-env"),
    ] {
        let o = fixture(name);
        let (hcl, t, p) = round_trip(&o);
        let text = render::text(&Ok(p.clone()), TextOptions::default());
        assert!(
            t.node(dead).is_some(),
            "{name}: the dead server is still in the cluster:\n{hcl}"
        );
        let s = p.summary();
        assert_eq!((s.add, s.remove), (0, 0), "{name}:\n{hcl}\n{text}");
        for st in &p.steps {
            assert!(
                matches!(
                    st.reason,
                    ActionReason::JoinUrlNamesUnavailableServer | ActionReason::VerifyAfterApply
                ),
                "{name}: step {} is not a join-URL repair:\n{hcl}\n{text}",
                st.address
            );
        }
        for d in &p.drift {
            assert!(
                d.planned
                    || (d.address == format!("etcd_member.{dead}") && d.attribute == "health"),
                "{name}: unexpected drift {d:?}:\n{hcl}\n{text}"
            );
        }
    }
    // Seed 004: the VIP, its primary (the dead first server, whose manifest could not be
    // read: the survivors both have priority 90), the local-path workloads with "keep".
    let (hcl, t, _) = round_trip(&fixture("seed004"));
    assert_eq!(
        t.primary().map(|n| n.name.as_str()),
        Some("lzx-ha-env"),
        "{hcl}"
    );
    let vip = t.cluster.vip.as_ref().unwrap();
    assert_eq!(
        (
            vip.address.to_string().as_str(),
            vip.interface.as_str(),
            vip.router_id
        ),
        ("192.168.0.66", "eth0", 66)
    );
    assert_eq!(
        vip.password.as_ref().unwrap().source(),
        "env(\"VRRP_PASSWORD\")"
    );
    let storage: Vec<String> = t
        .storage
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.key(), s.kind, s.on_node_loss))
        .collect();
    assert_eq!(
        storage,
        [
            "onecloud/default-victoria-metrics Deployment Keep",
            "onecloud-minio/minio StatefulSet Keep",
            "onecloud-monitoring/monitor-minio StatefulSet Keep"
        ]
    );
    assert!(hcl.contains("# on_node_loss = \"rebind\""), "{hcl}");
    assert!(hcl.contains("# TODO:"), "{hcl}");
    assert!(
        !t.nodes.iter().any(|n| n.name == "lzx-test-add-node"),
        "a host without k3s is not imported"
    );
}

fn roles_of(t: &Topology) -> BTreeSet<(String, String, bool, bool)> {
    t.nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.address.to_string(),
                t.primary().is_some_and(|p| p.name == n.name),
                n.disables_agent(),
            )
        })
        .collect()
}

#[test]
fn clusters_built_from_a_topology_import_to_the_same_nodes_and_no_changes() {
    let mut split = topology(
        cluster("split"),
        vec![
            node("etcd-1", "10.0.1.1", &[Role::Etcd]),
            node("etcd-2", "10.0.1.2", &[Role::Etcd]),
            node("etcd-3", "10.0.1.3", &[Role::Etcd]),
            node("cp-1", "10.0.1.11", &[Role::ControlPlane]),
            node("cp-2", "10.0.1.12", &[Role::ControlPlane]),
            node("worker-1", "10.0.1.21", &[Role::Agent]),
        ],
    );
    split.cluster.api_endpoint = Some("https://10.0.1.1:6443".into());
    let mut agentless = topology(
        cluster("agentless"),
        vec![
            node("s1", "10.0.5.1", &[Role::Server]),
            node("s2", "10.0.5.2", &[Role::Server]),
            node("s3", "10.0.5.3", &[Role::Server]),
            node("a1", "10.0.5.4", &[Role::Agent]),
        ],
    );
    for n in agentless.nodes.iter_mut().take(3) {
        n.k3s_config
            .insert("disable-agent".into(), serde_json::Value::Bool(true));
    }
    let mut vip = topology(
        cluster("vip"),
        vec![
            node("s1", "10.0.6.1", &[Role::Server]),
            node("s2", "10.0.6.2", &[Role::Server]),
            node("s3", "10.0.6.3", &[Role::Server]),
        ],
    );
    vip.cluster.vip = Some(k3splan::plan::testkit::vip("10.0.6.100", "eth1", 51));
    vip.cluster.api_endpoint = Some("https://10.0.6.100:6443".into());
    vip.nodes[1].primary = true;
    for t in [split, agentless, vip] {
        let o = observed_matching(&t);
        let (hcl, imported, p) = round_trip(&o);
        let r = Ok(p);
        assert_eq!(
            render::detailed_exitcode(&r),
            0,
            "{}:\n{hcl}\n{}",
            t.cluster.name,
            render::text(&r, TextOptions::default())
        );
        assert_eq!(
            roles_of(&imported),
            roles_of(&t),
            "{}:\n{hcl}",
            t.cluster.name
        );
        for n in &t.nodes {
            assert_eq!(
                imported.node(&n.name).unwrap().roles,
                n.roles,
                "{}: {}:\n{hcl}",
                t.cluster.name,
                n.name
            );
        }
    }
}

/// The observation is all import reads: a host that could not be read is said so, never
/// guessed into the file.
#[test]
fn unknown_hosts_and_missing_tls_are_todos_and_notes() {
    let o = fixture("seed001");
    let i = import(
        &o,
        &ImportSettings {
            cluster_name: "x".into(),
            ..ImportSettings::default()
        },
    );
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("etcd-1") && n.contains("could not be read")),
        "{:?}",
        i.notes
    );
    assert!(
        i.todos.iter().any(|t| t.starts_with("cluster.etcd:")),
        "{:?}",
        i.todos
    );
    assert!(
        i.hcl
            .contains("# TODO: etcd's client TLS files were not given"),
        "{}",
        i.hcl
    );
}
