//! Issue 19, point 5: k3s re-applies its packaged manifests (coredns, local-path-provisioner,
//! metrics-server) from `<data-dir>/server/manifests` at every server start, which undoes a
//! replica patch (seed 003) at the next restart of any server. k3splan writes
//! `NAME.yaml.skip` on every declared server before it scales such an add-on (k3s's own
//! way to leave a packaged manifest alone: `pkg/deploy/controller.go`).
//!
//! The planner tests run on plain values; the lab tests run the compiled `k3splan` against
//! the lab, whose k3s stand-in re-applies the packaged manifests at every start unless the
//! `.skip` exists (docs/lab.md).

mod common;

use std::time::{Duration, Instant};

use common::{combined, lab_k3splan, stdout};
use k3splan::config::{Role, Topology};
use k3splan::observed::{Fact, Observed};
use k3splan::plan::testkit::*;
use k3splan::plan::{ActionReason, Address, Operation, Plan, PlanOptions, plan};
use k3splan::render::{self, TextOptions};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;
use serde_json::json;

k3splan_testkit_caps::main! {
    a_packaged_addon_gets_a_skip_file_on_every_server_before_it_is_scaled,
    a_skip_file_already_present_is_no_change,
    a_server_without_the_skip_file_gets_it_even_when_replicas_match,
    an_addon_k3s_does_not_package_or_ships_as_a_helm_chart_needs_no_skip,
    an_unreachable_server_leaves_the_skip_unknown_never_no_changes,
    issue19_seed003_scaled_coredns_survives_a_server_restart needs [lab],
    issue19_premise_without_skip_a_restart_reverts_a_hand_patch needs [lab],
}

const S: [Role; 1] = [Role::Server];
const SKIP: &str = "/var/lib/rancher/k3s/server/manifests/coredns.yaml.skip";

fn three_with(addons: Vec<k3splan::config::Addon>) -> Topology {
    let mut t = topology(
        cluster("t"),
        vec![
            node("a", "10.0.0.1", &S),
            node("b", "10.0.0.2", &S),
            node("c", "10.0.0.3", &S),
            node("w", "10.0.0.9", &[Role::Agent]),
        ],
    );
    t.addons = addons;
    t
}

fn host_mut<'a>(o: &'a mut Observed, n: &str) -> &'a mut k3splan::observed::HostState {
    match o.hosts.get_mut(n) {
        Some(Fact::Known(h)) => h,
        _ => panic!("host {n} known"),
    }
}

fn kube_addon_mut<'a>(
    o: &'a mut Observed,
    name: &str,
) -> &'a mut k3splan::observed::AddonDeployment {
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.addons.iter_mut().find(|a| a.name == name).unwrap()
}

fn ok(t: &Topology, o: &Observed) -> Plan {
    plan(t, o, &PlanOptions::default()).unwrap_or_else(|r| panic!("{r}"))
}

fn text(p: &Plan) -> String {
    render::text(&Ok(p.clone()), TextOptions { color: false })
}

fn skip_steps(p: &Plan) -> Vec<(usize, String, String)> {
    p.steps
        .iter()
        .filter(|s| s.reason == ActionReason::PackagedAddonSkip)
        .map(|s| match &s.operations[..] {
            [Operation::WriteFile { node, path, .. }] => (s.id, node.clone(), path.clone()),
            ops => panic!("one write_file: {ops:?}"),
        })
        .collect()
}

fn a_packaged_addon_gets_a_skip_file_on_every_server_before_it_is_scaled() {
    let t = three_with(vec![
        addon("coredns", 3, None),
        addon("metrics-server", 2, None),
    ]);
    let mut o = observed_matching(&t);
    for n in ["a", "b", "c"] {
        host_mut(&mut o, n).manifest_skips.clear();
    }
    kube_addon_mut(&mut o, "coredns").replicas = 1;
    kube_addon_mut(&mut o, "metrics-server").replicas = 1;
    let p = ok(&t, &o);
    let txt = text(&p);
    let skips = skip_steps(&p);
    // Servers only (the agent runs no deploy controller), one file per add-on.
    let mut want = Vec::new();
    for n in ["a", "b", "c"] {
        want.push((n.to_string(), SKIP.to_string()));
        want.push((
            n.to_string(),
            "/var/lib/rancher/k3s/server/manifests/metrics-server/metrics-server-deployment.yaml.skip"
                .to_string(),
        ));
    }
    let mut got: Vec<_> = skips
        .iter()
        .map(|(_, n, p)| (n.clone(), p.clone()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{txt}");
    for addon in ["coredns", "metrics-server"] {
        let scale = p
            .steps
            .iter()
            .find(|s| s.address == Address::Addon { name: addon.into() })
            .unwrap_or_else(|| panic!("addon.{addon} scaled:\n{txt}"));
        let file = if addon == "coredns" {
            "coredns.yaml.skip"
        } else {
            "metrics-server-deployment.yaml.skip"
        };
        for (id, _, path) in skips.iter().filter(|(_, _, p)| p.ends_with(file)) {
            assert!(
                *id < scale.id,
                "{path} (step {id}) before the scale (step {}):\n{txt}",
                scale.id
            );
        }
    }
    assert!(
        txt.contains(&format!("host_file.a:{SKIP} will be created")),
        "{txt}"
    );
    assert!(
        txt.contains("k3s re-applies its packaged coredns.yaml at every start of a"),
        "the reason is shown: {txt}"
    );
    let v: serde_json::Value = serde_json::from_str(&render::json(&Ok(p.clone()))).unwrap();
    let rc = v["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == format!("host_file.a:{SKIP}"))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(rc["action_reason"], "packaged_addon_skip");
}

fn a_skip_file_already_present_is_no_change() {
    let t = three_with(vec![
        addon("coredns", 3, None),
        addon("metrics-server", 2, None),
    ]);
    let mut o = observed_matching(&t);
    // k3s keys its skip list by file name, wherever in the manifests tree the .skip lies.
    host_mut(&mut o, "b").manifest_skips = vec![
        "coredns.yaml.skip".into(),
        "elsewhere/metrics-server-deployment.yaml.skip".into(),
    ];
    let p = ok(&t, &o);
    assert!(p.steps.is_empty(), "{}", text(&p));
    assert!(text(&p).contains("No changes."), "{}", text(&p));
}

fn a_server_without_the_skip_file_gets_it_even_when_replicas_match() {
    // The replicas are right today, but without the .skip on c (a server added later, or
    // a file deleted by hand) the next start of c resets them.
    let t = three_with(vec![addon("coredns", 3, None)]);
    let mut o = observed_matching(&t);
    host_mut(&mut o, "c").manifest_skips.clear();
    let p = ok(&t, &o);
    let skips = skip_steps(&p);
    assert_eq!(skips.len(), 1, "{}", text(&p));
    assert_eq!(skips[0].1, "c");
    assert!(
        !p.steps.iter().any(|s| s.address
            == Address::Addon {
                name: "coredns".into()
            }),
        "no scale: replicas match\n{}",
        text(&p)
    );
}

fn an_addon_k3s_does_not_package_or_ships_as_a_helm_chart_needs_no_skip() {
    let mut own = addon("my-dns", 2, None);
    own.namespace = "dns".into();
    let mut in_other_ns = addon("coredns", 2, None);
    in_other_ns.namespace = "apps".into();
    let t = three_with(vec![own, in_other_ns, addon("traefik", 2, None)]);
    let mut o = observed_matching(&t);
    for n in ["a", "b", "c"] {
        host_mut(&mut o, n).manifest_skips.clear();
    }
    for a in ["my-dns", "coredns", "traefik"] {
        kube_addon_mut(&mut o, a).replicas = 1;
    }
    kube_addon_mut(&mut o, "traefik").helm_chart_config = true;
    let p = ok(&t, &o);
    assert!(skip_steps(&p).is_empty(), "{}", text(&p));
    assert_eq!(p.steps.len(), 3, "three scales\n{}", text(&p));
    assert!(text(&p).contains("via HelmChartConfig"), "{}", text(&p));
}

fn an_unreachable_server_leaves_the_skip_unknown_never_no_changes() {
    let t = three_with(vec![addon("coredns", 3, None)]);
    let mut o = observed_matching(&t);
    host_silent(&mut o, "b", "ssh: connect timed out");
    let r = plan(&t, &o, &PlanOptions::default());
    let txt = render::text(&r, TextOptions { color: false });
    assert!(!txt.contains("No changes."), "{txt}");
    assert!(
        txt.contains("whether b holds coredns.yaml.skip is unknown"),
        "{txt}"
    );
    let _ = json!(null);
}

// ---------------------------------------------------------------- lab

fn deployment_replicas(lab: &Lab, name: &str) -> u64 {
    lab.kube()
        .store()
        .get(
            k3splan_testkit_kubeapi::store::ty("Deployment"),
            "kube-system",
            name,
        )
        .map(|d| d["spec"]["replicas"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// Restarts k3s on `host` through the stand-in's service manager (as systemd would); the
/// restart returns once the server is ready, after it processed the packaged manifests.
fn restart(lab: &Lab, host: &str) {
    let (status, out) = lab.service(host, "restart", "k3s").unwrap();
    assert_eq!(status, 0, "restart {host}: {out}");
    let log = lab.k3s_log(host);
    assert!(
        log.contains("Packaged manifests processed"),
        "the stand-in processed its manifests before it reported ready:\n{log}"
    );
}

fn three_servers() -> Vec<TopologyNode> {
    ["server-1", "server-2", "server-3"]
        .iter()
        .map(|n| TopologyNode::server(n))
        .collect()
}

fn issue19_seed003_scaled_coredns_survives_a_server_restart() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let extra = "addon \"coredns\" {\n  replicas = 3\n}\n";
    let topo = lab
        .write_topology("issue19/main.hcl", &three_servers(), extra)
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", combined(&o));
    let plan = stdout(&o);
    for n in ["server-1", "server-2", "server-3"] {
        assert!(
            plan.contains(&format!("host_file.{n}:{SKIP} will be created")),
            "{plan}"
        );
    }
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", combined(&o));
    assert_eq!(deployment_replicas(&lab, "coredns"), 3);
    for n in ["server-1", "server-2", "server-3"] {
        assert!(lab.read_file(n, SKIP).is_some(), "{SKIP} on {n}");
    }
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "second plan: {}", combined(&o));

    // The next start of a server: k3s's deploy controller skips coredns.yaml.
    restart(&lab, "server-2");
    assert!(
        lab.k3s_log("server-2").contains("coredns.yaml.skip exists"),
        "{}",
        lab.k3s_log("server-2")
    );
    assert_eq!(
        deployment_replicas(&lab, "coredns"),
        3,
        "replicas stay at 3"
    );
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "after the restart: {}",
        combined(&o)
    );
}

fn issue19_premise_without_skip_a_restart_reverts_a_hand_patch() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    // Scaled by hand, as the field report did (kubectl scale), with no .skip file.
    lab.kube()
        .store()
        .patch(
            k3splan_testkit_kubeapi::store::ty("Deployment"),
            "kube-system",
            "coredns",
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 3}}),
        )
        .unwrap();
    assert_eq!(deployment_replicas(&lab, "coredns"), 3);
    restart(&lab, "server-3");
    let deadline = Instant::now() + Duration::from_secs(30);
    while deployment_replicas(&lab, "coredns") != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        deployment_replicas(&lab, "coredns"),
        1,
        "k3s re-applied coredns.yaml at start:\n{}",
        lab.k3s_log("server-3")
    );
    // And k3splan sees the drift it caused.
    let extra = "addon \"coredns\" {\n  replicas = 3\n}\n";
    let topo = lab
        .write_topology("issue19/main.hcl", &three_servers(), extra)
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", combined(&o));
    assert!(stdout(&o).contains("replicas 1 → 3"), "{}", stdout(&o));
}
