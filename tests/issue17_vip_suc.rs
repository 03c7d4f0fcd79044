//! Issue 17 end to end, the two findings that need more of the lab than tests/issue17_lab.rs:
//! `vip_holders` (each lab host has its own view of the VIP: testkit/lab/src/vipns.rs, and
//! the lab's VRRP model elects one master per `virtual_router_id`) and the SUC `Plan` half
//! of `other_manager` (the in-memory API serves `plans.upgrade.cattle.io` only once its CRD
//! is created, as a real API server does). Each finding comes from a cluster set up to have
//! it; undoing the cause makes a second `k3splan check` clean (exit 0).

mod common;

use std::time::Duration;

use common::{lab_k3splan, ssh_ok as run, stdout};
use k3splan_lab::{KEEPALIVED_MANIFEST, Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;
use serde_json::{Value, json};

k3splan_testkit_caps::main! {
    issue17_check_finds_the_vip_held_by_two_hosts_or_none_then_clean needs [lab],
    issue17_check_finds_a_suc_plan_then_clean_once_deleted needs [lab],
}

const SERVERS: [&str; 3] = ["server-1", "server-2", "server-3"];
const WAIT: Duration = Duration::from_secs(20);

fn check_json(lab: &Lab, topo: &std::path::Path) -> (Option<i32>, Value) {
    let o = lab_k3splan(lab, topo, &["check", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("check --json is JSON: {e}\n{}", stdout(&o)));
    (o.status.code(), v)
}

fn findings<'a>(v: &'a Value, check: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

fn assert_clean(lab: &Lab, topo: &std::path::Path, when: &str) {
    let (code, v) = check_json(lab, topo);
    assert_eq!(code, Some(0), "{when}: a second check is clean\n{v:#}");
    assert_eq!(v["status"], "ok", "{v:#}");
}

fn issue17_check_finds_the_vip_held_by_two_hosts_or_none_then_clean() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        vip: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let nodes: Vec<TopologyNode> = SERVERS
        .iter()
        .map(|n| {
            let t = TopologyNode::server(n);
            if *n == "server-1" { t.primary() } else { t }
        })
        .collect();
    let topo = lab.write_topology("check/vip.hcl", &nodes, "").unwrap();
    common::snapshot_all(&lab, &SERVERS);
    // One holder: server-1 (priority 100); only its `ip -o addr show` lists the VIP.
    lab.wait_vip_holders(&["server-1"], WAIT)
        .expect("one holder");
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(code, Some(0), "one VIP holder is clean:\n{v:#}");
    assert_eq!(v["checks"]["vip_holders"], "ok", "{v:#}");

    // Split brain: server-2's keepalived gets another virtual_router_id, so it no longer
    // hears server-1's adverts and becomes MASTER of its own VRRP instance.
    lab.write_keepalived_vrid("server-2", 90, 67).unwrap();
    lab.wait_vip_holders(&["server-1", "server-2"], WAIT)
        .expect("two holders");
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(code, Some(3), "two holders are critical:\n{v:#}");
    let f = findings(&v, "vip_holders");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "critical", "{v:#}");
    assert_eq!(f[0]["subject"], "cluster");
    assert_eq!(f[0]["evidence"]["holders"], "server-1,server-2", "{v:#}");
    assert_eq!(
        f[0]["evidence"]["vip"],
        lab.vip().unwrap().to_string(),
        "{v:#}"
    );
    let msg = f[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("held by 2 hosts") && msg.contains("server-1") && msg.contains("server-2"),
        "{msg}"
    );
    // The text output says it too.
    let o = lab_k3splan(&lab, &topo, &["check"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("vip_holders"), "{}", stdout(&o));

    // Undone: the same router id again, one master.
    lab.write_keepalived_vrid("server-2", 90, 66).unwrap();
    lab.wait_vip_holders(&["server-1"], WAIT)
        .expect("one holder again");
    assert_clean(&lab, &topo, "after the split brain is undone");

    // Nobody: every server's keepalived static pod removed (kubelet stops keepalived, which
    // removes the VIP).
    for s in SERVERS {
        run(&lab, s, &format!("rm -f {KEEPALIVED_MANIFEST}"));
    }
    lab.wait_vip_holders(&[], WAIT).expect("no holder");
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(code, Some(3), "no holder is critical:\n{v:#}");
    let f = findings(&v, "vip_holders");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "critical", "{v:#}");
    assert_eq!(f[0]["evidence"]["holders"], "", "{v:#}");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("no host holds the VIP"),
        "{v:#}"
    );
    for (i, s) in SERVERS.iter().enumerate() {
        lab.write_keepalived(s, if i == 0 { 100 } else { 90 })
            .unwrap();
    }
    lab.wait_vip_holders(&["server-1"], WAIT)
        .expect("one holder again");
    assert_clean(&lab, &topo, "after keepalived is back");

    // A server that cannot answer (its SSH host key changed: k3splan refuses it) is never
    // "ok": server-1 holds the VIP, server-3 may too.
    lab.rotate_host_key("server-3").unwrap();
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(
        code,
        Some(1),
        "an unread server is an incomplete check:\n{v:#}"
    );
    assert_eq!(v["checks"]["vip_holders"], "unknown", "{v:#}");
    let f = findings(&v, "vip_holders");
    assert_eq!(f.len(), 1, "{v:#}");
    assert!(
        f[0]["message"].as_str().unwrap().contains("server-3"),
        "{v:#}"
    );
}

/// The system-upgrade-controller's CRD (rancher/system-upgrade-controller: group
/// `upgrade.cattle.io`, version `v1`, kind `Plan`, namespaced, status subresource —
/// pkg/apis/upgrade.cattle.io/v1/types.go and its generated CRD).
fn suc_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "plans.upgrade.cattle.io"},
        "spec": {"group": "upgrade.cattle.io", "scope": "Namespaced",
            "names": {"kind": "Plan", "plural": "plans", "singular": "plan", "listKind": "PlanList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]}})
}

/// A Plan as SUC's README shows for k3s servers (`k3s-upgrade` image, a version, a node
/// selector on the control plane, cordon).
fn server_plan() -> Value {
    json!({"apiVersion": "upgrade.cattle.io/v1", "kind": "Plan",
        "metadata": {"name": "server-plan", "namespace": "system-upgrade"},
        "spec": {"concurrency": 1, "cordon": true, "version": "v1.29.4+k3s1",
            "serviceAccountName": "system-upgrade",
            "nodeSelector": {"matchExpressions": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}]},
            "upgrade": {"image": "rancher/k3s-upgrade"}}})
}

/// One request to the lab's Kubernetes API over HTTPS (`curl`, the lab's CA and token): the
/// status code and the JSON body.
fn kube_call(lab: &Lab, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, lab.kube().ca_pem().expect("TLS")).unwrap();
    let data = dir.path().join("body.json");
    std::fs::write(&data, body.map(|b| b.to_string()).unwrap_or_default()).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .args(["-X", method, "-H"])
        .arg(format!("Authorization: Bearer {}", k3splan_lab::KUBE_TOKEN))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", data.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path}", lab.kube().url()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

fn issue17_check_finds_a_suc_plan_then_clean_once_deleted() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let nodes: Vec<TopologyNode> = SERVERS.iter().map(|n| TopologyNode::server(n)).collect();
    let topo = lab.write_topology("check/suc.hcl", &nodes, "").unwrap();
    common::snapshot_all(&lab, &SERVERS);
    let plans = "/apis/upgrade.cattle.io/v1/namespaces/system-upgrade/plans";
    // SUC not installed: the kind is not served (404), which the check reads as "no plans".
    let (code, _) = kube_call(&lab, "GET", plans, None);
    assert_eq!(code, 404, "plans are not served before the CRD");
    assert_clean(&lab, &topo, "SUC not installed");

    // SUC installed (its CRD) with a Plan in system-upgrade.
    let (code, b) = kube_call(
        &lab,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(&suc_crd()),
    );
    assert_eq!(code, 201, "{b:#}");
    let (code, b) = kube_call(
        &lab,
        "POST",
        "/api/v1/namespaces",
        Some(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "system-upgrade"}}),
        ),
    );
    assert!(code == 201 || code == 409, "{code} {b:#}");
    // Installed, no Plan yet: still clean.
    assert_clean(&lab, &topo, "SUC installed without a Plan");
    let (code, b) = kube_call(&lab, "POST", plans, Some(&server_plan()));
    assert_eq!(code, 201, "{b:#}");
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(code, Some(2), "a SUC Plan is a warning:\n{v:#}");
    let f = findings(&v, "other_manager");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "warning");
    assert_eq!(f[0]["subject"], "cluster");
    assert_eq!(
        f[0]["evidence"]["plans"], "system-upgrade/server-plan",
        "{v:#}"
    );
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("system-upgrade/server-plan"),
        "{v:#}"
    );

    // Deleted: clean again.
    let (code, b) = kube_call(&lab, "DELETE", &format!("{plans}/server-plan"), None);
    assert_eq!(code, 200, "{b:#}");
    assert_clean(&lab, &topo, "after the Plan is deleted");

    // The Plans cannot be read (RBAC denies them: 403): `unknown`, exit 1, never "ok".
    lab.kube().forbid("upgrade.cattle.io", "plans");
    let (code, v) = check_json(&lab, &topo);
    assert_eq!(
        code,
        Some(1),
        "an unreadable source is an incomplete check:\n{v:#}"
    );
    assert_eq!(v["checks"]["other_manager"], "unknown", "{v:#}");
    lab.kube().allow_all();
    assert_clean(&lab, &topo, "once the Plans can be read again");
}
