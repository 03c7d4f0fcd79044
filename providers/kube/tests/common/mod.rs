//! Test targets: the in-memory API server loaded with the seed 004 fixture, or a real cluster
//! named by `K3SPLAN_E2E_KUBECONFIG` (for the `*_e2e` variants, which are `#[ignore]`d otherwise).
#![allow(dead_code)]

use std::time::Duration;

use k3splan_kube::{KubeProvider, KubeSettings};
use k3splan_testkit_kubeapi::{Controllers, KubeApiServer};

pub const DEAD: &str = "lzx-ha-env";
pub const N2: &str = "lzx-ha-env-2";
pub const N3: &str = "lzx-ha-env-3";
pub const NEW: &str = "lzx-test-add-node";

pub struct Target {
    pub kube: KubeProvider,
    pub server: Option<KubeApiServer>,
    /// The kubeconfig the provider was connected with.
    pub kubeconfig: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// The seed 004 cluster served over HTTPS on loopback.
    pub async fn memory(controllers: Controllers) -> Self {
        Self::memory_with(controllers, KubeSettings::default()).await
    }

    pub async fn memory_with(controllers: Controllers, mut settings: KubeSettings) -> Self {
        let server = KubeApiServer::seed004(controllers)
            .await
            .expect("start in-memory API server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        server.write_kubeconfig(&path).expect("write kubeconfig");
        settings.kubeconfig = Some(path.clone());
        let kube = KubeProvider::connect(settings).await.expect("connect");
        Self {
            kube,
            server: Some(server),
            kubeconfig: path,
            _dir: Some(dir),
        }
    }

    /// The real cluster of `K3SPLAN_E2E_KUBECONFIG` (must hold the seed 004 fixture's objects).
    pub async fn e2e() -> Self {
        let path = std::env::var("K3SPLAN_E2E_KUBECONFIG")
            .expect("K3SPLAN_E2E_KUBECONFIG names a kubeconfig");
        let settings = KubeSettings {
            kubeconfig: Some(path.clone().into()),
            ..Default::default()
        };
        let kube = KubeProvider::connect(settings).await.expect("connect");
        Self {
            kube,
            server: None,
            kubeconfig: path.into(),
            _dir: None,
        }
    }

    /// Merge-patches a Node's status through the API (a real one too: the status
    /// subresource), e.g. to set its Ready condition's `lastTransitionTime`.
    pub async fn patch_node_status(&self, node: &str, patch: &serde_json::Value) {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kubeconfig");
        let client = kube::Client::try_from(cfg).expect("client");
        let req = http::Request::builder()
            .method(http::Method::PATCH)
            .uri(format!("/api/v1/nodes/{node}/status"))
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(serde_json::to_vec(patch).expect("json"))
            .expect("request");
        client
            .request::<serde_json::Value>(req)
            .await
            .unwrap_or_else(|e| panic!("PATCH node {node} status: {e}"));
    }

    pub fn server(&self) -> &KubeApiServer {
        self.server.as_ref().expect("in-memory server")
    }

    /// Adds a fresh Ready control-plane node (in-memory only).
    pub fn add_node(&self, name: &str, ip: &str) {
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/etcd": "true", "node-role.kubernetes.io/master": "true"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-12-27T07:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": ip}], "nodeInfo": {"kubeletVersion": "v1.28.5+k3s1"}}});
        self.server().load_values(vec![node]).expect("add node");
    }
}

pub fn quick_drain(mode: k3splan_kube::DrainMode, deadline_ms: u64) -> k3splan_kube::DrainOptions {
    k3splan_kube::DrainOptions {
        mode,
        deadline: Duration::from_millis(deadline_ms),
        retry_interval: Duration::from_millis(100),
        grace_period_seconds: None,
        remove_unmanaged: false,
    }
}

/// Defines `NAME` (in-memory) and `NAME_e2e` (real cluster, ignored unless asked) from one body.
#[macro_export]
macro_rules! dual_test {
    ($name:ident, $e2e:ident, $controllers:expr, $body:ident) => {
        #[tokio::test]
        async fn $name() {
            $body(common::Target::memory($controllers).await).await;
        }
        #[tokio::test]
        #[ignore = "needs a real cluster: set K3SPLAN_E2E_KUBECONFIG to a disposable k3s cluster holding testkit/kubeapi/fixtures/seed004.yaml's workloads and node names"]
        async fn $e2e() {
            $body(common::Target::e2e().await).await;
        }
    };
}

/// Polls `f` every 100 ms until it returns `Some`, or `None` after `deadline`.
pub async fn poll<T, F, Fut>(deadline: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
