//! Issue 17: what `k3splan check` reads of system-upgrade-controller `Plan` objects
//! (`plans.upgrade.cattle.io`, rancher/system-upgrade-controller
//! `pkg/apis/upgrade.cattle.io/v1/types.go`: group `upgrade.cattle.io`, version `v1`,
//! namespaced). SUC not installed (the kind is not served: 404) is "no plans"; installed, each
//! Plan is listed as `namespace/name`; any other error (403 from RBAC) is an error, which the
//! check reports as `unknown`. The `*_e2e` variant runs the same body against
//! `K3SPLAN_E2E_KUBECONFIG` (it refuses to touch a cluster where SUC is really installed).

mod common;

use std::time::Duration;

use common::{Target, poll};
use k3splan_kube::KubeError;
use k3splan_testkit_kubeapi::Controllers;
use serde_json::{Value, json};

const CRD: &str = "plans.upgrade.cattle.io";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const PLANS: &str = "/apis/upgrade.cattle.io/v1/namespaces/system-upgrade/plans";
const LABEL: (&str, &str) = ("k3splan.test/suc-plans", "true");

fn keep_nothing(_: &str) -> bool {
    false
}

async fn client(t: &Target) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&t.kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

/// One request; `Err(code)` for an API error.
async fn call(
    c: &kube::Client,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, u16> {
    let req = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            body.map(|b| serde_json::to_vec(b).unwrap())
                .unwrap_or_default(),
        )
        .expect("request");
    match c.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// SUC's CRD, as its generated manifest defines it (scope Namespaced, kind Plan, v1 with a
/// status subresource), labelled as this test's.
fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD, "labels": {LABEL.0: LABEL.1}},
        "spec": {"group": "upgrade.cattle.io", "scope": "Namespaced",
            "names": {"kind": "Plan", "plural": "plans", "singular": "plan", "listKind": "PlanList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]}})
}

async fn wait_plans_served(c: &kube::Client, served: bool) {
    poll(Duration::from_secs(60), || async {
        let r = call(c, http::Method::GET, PLANS, None).await;
        let done = if served { r.is_ok() } else { r == Err(404) };
        done.then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("plans served={served} within 60 s"));
}

async fn suc_plans_body(t: Target) {
    let c = client(&t).await;
    // A real SUC on the cluster: not ours to remove.
    match call(&c, http::Method::GET, &format!("{CRDS}/{CRD}"), None).await {
        Ok(v) if v["metadata"]["labels"][LABEL.0] != LABEL.1 => panic!(
            "{CRD} exists and was not created by this test: run it against a disposable cluster"
        ),
        Ok(_) => {
            call(&c, http::Method::DELETE, &format!("{CRDS}/{CRD}"), None)
                .await
                .expect("remove a previous run's CRD");
            wait_plans_served(&c, false).await;
        }
        Err(404) => {}
        Err(code) => panic!("GET {CRD}: {code}"),
    }

    // Not installed: the kind is not served, which is "no plans", not an error.
    assert_eq!(call(&c, http::Method::GET, PLANS, None).await, Err(404));
    let r = t
        .kube
        .read_check(keep_nothing)
        .await
        .expect("404 is no plans");
    assert!(r.suc_plans.is_empty(), "{r:?}");

    // Installed, one Plan.
    call(&c, http::Method::POST, CRDS, Some(&crd()))
        .await
        .expect("create the CRD");
    wait_plans_served(&c, true).await;
    let ns_created = call(
        &c,
        http::Method::POST,
        "/api/v1/namespaces",
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "system-upgrade"}})),
    )
    .await
    .is_ok();
    let r = t.kube.read_check(keep_nothing).await.expect("read");
    assert!(r.suc_plans.is_empty(), "installed, no Plan: {r:?}");
    let plan = json!({"apiVersion": "upgrade.cattle.io/v1", "kind": "Plan",
        "metadata": {"name": "k3s-server", "namespace": "system-upgrade"},
        "spec": {"concurrency": 1, "cordon": true, "version": "v1.29.4+k3s1",
            "nodeSelector": {"matchExpressions": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}]},
            "upgrade": {"image": "rancher/k3s-upgrade"}}});
    let created = call(&c, http::Method::POST, PLANS, Some(&plan))
        .await
        .expect("create the Plan");
    assert_eq!(created["kind"], "Plan");
    let r = t.kube.read_check(keep_nothing).await.expect("read");
    assert_eq!(r.suc_plans, vec!["system-upgrade/k3s-server".to_string()]);

    // RBAC denies plans (in-memory only: a real cluster's admin credentials are not ours to
    // narrow): an error, never "no plans".
    if let Some(s) = &t.server {
        s.forbid("upgrade.cattle.io", "plans");
        match t.kube.read_check(keep_nothing).await {
            Err(KubeError::Api { code: 403, .. }) => {}
            other => panic!("403 must be an error: {other:?}"),
        }
        s.allow_all();
    }

    // Deleted: none again.
    call(
        &c,
        http::Method::DELETE,
        &format!("{PLANS}/k3s-server"),
        None,
    )
    .await
    .expect("delete the Plan");
    let r = t.kube.read_check(keep_nothing).await.expect("read");
    assert!(r.suc_plans.is_empty(), "{r:?}");

    // Uninstalled: the CRD's deletion removes the kind (and its objects).
    call(&c, http::Method::POST, PLANS, Some(&plan))
        .await
        .expect("create the Plan again");
    call(&c, http::Method::DELETE, &format!("{CRDS}/{CRD}"), None)
        .await
        .expect("delete the CRD");
    wait_plans_served(&c, false).await;
    let r = t
        .kube
        .read_check(keep_nothing)
        .await
        .expect("404 is no plans");
    assert!(r.suc_plans.is_empty(), "{r:?}");
    if ns_created {
        let _ = call(
            &c,
            http::Method::DELETE,
            "/api/v1/namespaces/system-upgrade",
            None,
        )
        .await;
    }
}

dual_test!(
    issue17_suc_plans_not_installed_listed_deleted,
    issue17_suc_plans_not_installed_listed_deleted_e2e,
    Controllers::default(),
    suc_plans_body
);
