//! Test targets: the in-memory API server loaded with the seed 004 fixture, or a real cluster
//! named by `K3SPLAN_E2E_KUBECONFIG` (for the `*_e2e` variants, which are `#[ignore]`d otherwise).
#![allow(dead_code)]

use std::time::Duration;

use k3splan_kube::{KubeProvider, KubeSettings};
use k3splan_testkit_kubeapi::loader::{Loader, fixture_docs, ready_nodes};
use k3splan_testkit_kubeapi::{Controllers, KubeApiServer, SEED004_YAML, ServerOptions};

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

    /// The seed 004 cluster put on the in-memory server through the API by the fixture
    /// loader (the path a real server takes), instead of straight into its storage.
    pub async fn memory_via_loader(controllers: Controllers) -> Self {
        let server = KubeApiServer::start(ServerOptions {
            controllers,
            ..Default::default()
        })
        .await
        .expect("start in-memory API server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        server.write_kubeconfig(&path).expect("write kubeconfig");
        let loader = Loader::from_kubeconfig(&path).await.expect("loader");
        let docs = fixture_docs(SEED004_YAML).expect("fixture");
        loader
            .load(&docs)
            .await
            .unwrap_or_else(|e| panic!("loading seed 004 through the API: {e}"));
        let kube = KubeProvider::connect(KubeSettings {
            kubeconfig: Some(path.clone()),
            ..Default::default()
        })
        .await
        .expect("connect");
        Self {
            kube,
            server: Some(server),
            kubeconfig: path,
            _dir: Some(dir),
        }
    }

    /// The real cluster of `K3SPLAN_E2E_KUBECONFIG`: a disposable API server (kube-apiserver
    /// with kube-controller-manager and kube-scheduler; no kubelets needed). The seed 004
    /// fixture is cleaned (a previous run's leftovers) and loaded through the API by
    /// [`Loader`], its Ready nodes kept Ready by a heartbeat; [`E2eSession::finish`] cleans up.
    ///
    /// The e2e tests are serialised (one at a time per cluster, across test threads and test
    /// processes): the fixture is cluster-scoped (Nodes, PersistentVolumes, the k3s add-ons in
    /// `kube-system`) and the tests assert its names (node `lzx-ha-env`, `kube-system/coredns`),
    /// so two tests cannot hold separate copies of it.
    pub async fn e2e() -> (Self, E2eSession) {
        let path = std::env::var("K3SPLAN_E2E_KUBECONFIG")
            .expect("K3SPLAN_E2E_KUBECONFIG names a kubeconfig");
        let serial = e2e_lock(&path).await;
        let loader = Loader::from_kubeconfig(path.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let docs = fixture_docs(SEED004_YAML).expect("fixture");
        loader
            .clean(&docs)
            .await
            .unwrap_or_else(|e| panic!("removing a previous run's seed 004 objects: {e}"));
        loader
            .load(&docs)
            .await
            .unwrap_or_else(|e| panic!("loading seed 004 into {path}: {e}"));
        let heartbeat = loader.heartbeat(ready_nodes(&docs), Duration::from_secs(10));
        let settings = KubeSettings {
            kubeconfig: Some(path.clone().into()),
            ..Default::default()
        };
        let kube = KubeProvider::connect(settings).await.expect("connect");
        (
            Self {
                kube,
                server: None,
                kubeconfig: path.into(),
                _dir: None,
            },
            E2eSession {
                loader,
                docs,
                heartbeat,
                _serial: serial,
            },
        )
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

/// One e2e test's hold on the real cluster: the serialisation lock, the node heartbeat and
/// what to clean up. Dropped without [`Self::finish`] (a failed test), it stops the heartbeat
/// and releases the lock; the next test cleans the leftovers before it loads.
pub struct E2eSession {
    loader: Loader,
    docs: Vec<serde_json::Value>,
    heartbeat: tokio::task::JoinHandle<()>,
    _serial: (tokio::sync::OwnedMutexGuard<()>, std::fs::File),
}

impl E2eSession {
    /// Deletes the fixture's objects and what the test made in its namespaces.
    pub async fn finish(self) {
        self.heartbeat.abort();
        self.loader
            .clean(&self.docs)
            .await
            .unwrap_or_else(|e| panic!("cleaning up seed 004: {e}"));
    }
}

impl Drop for E2eSession {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Serialises the e2e tests on one cluster: a process-wide lock (the test threads) and an
/// exclusive lock on a file named after the kubeconfig (other test processes).
async fn e2e_lock(kubeconfig: &str) -> (tokio::sync::OwnedMutexGuard<()>, std::fs::File) {
    static LOCK: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
        std::sync::OnceLock::new();
    let guard = LOCK
        .get_or_init(Default::default)
        .clone()
        .lock_owned()
        .await;
    let name: String = kubeconfig
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let file = std::env::temp_dir().join(format!("k3splan-e2e-{name}.lock"));
    let f = tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        f.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", file.display()));
        f
    })
    .await
    .expect("lock task");
    (guard, f)
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
        #[ignore = "needs a real API server: set K3SPLAN_E2E_KUBECONFIG to a disposable kube-apiserver with kube-controller-manager and kube-scheduler (each test loads and removes testkit/kubeapi/fixtures/seed004.yaml itself; see docs/kubernetes.md)"]
        async fn $e2e() {
            let (t, session) = common::Target::e2e().await;
            $body(t).await;
            session.finish().await;
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
