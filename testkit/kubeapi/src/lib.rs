//! k3splan test harness: an in-memory Kubernetes API server with real semantics, served over
//! HTTP(S) on loopback.
//!
//! [`KubeApiServer::start`] binds `127.0.0.1:0`, serves HTTPS with a freshly generated CA and
//! server certificate (or plain HTTP), and keeps objects as JSON in memory ([`store::Store`]).
//! It implements what `kube` clients use: `/version`, discovery (`/api`, `/apis`, resource
//! lists), GET/LIST (label and field selectors, `limit`/`continue`, list `resourceVersion`),
//! POST, PUT (optimistic concurrency on `resourceVersion`), PATCH (JSON merge, strategic merge
//! applied as a merge, JSON patch, server-side apply applied as a merge), DELETE and
//! DELETE-collection (grace periods, finalizers, owner-reference garbage collection with
//! `propagationPolicy`), the `status` and `scale` subresources, `pods/eviction` honouring
//! PodDisruptionBudgets (429 when disallowed), `Status` objects for errors, and gzip responses
//! when the client sends `Accept-Encoding: gzip`. Watches are not implemented (405).
//!
//! Fixtures are multi-document YAML ([`KubeApiServer::load_yaml`]); `fixtures/seed004.yaml`
//! reproduces the seed 004 cluster. [`KubeApiServer::write_kubeconfig`] writes a kubeconfig
//! that `kubectl` and `kube` accept. The server stops when the handle is dropped.

#![warn(missing_docs)]

pub mod loader;
pub mod select;
pub mod store;
pub mod synthetic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use store::{ApiError, Controllers, DeleteOpts, Store};

/// The seed 004 fixture (three control-plane nodes, one dead; MinIO and monitor-MinIO
/// StatefulSets and a victoria-metrics Deployment on local-path; k3s add-ons; a DaemonSet; PDBs).
pub const SEED004_YAML: &str = include_str!("../fixtures/seed004.yaml");

/// Errors of the harness itself.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Binding the loopback listener failed.
    #[error("binding 127.0.0.1:0 for the in-memory API server: {0}")]
    Bind(#[source] std::io::Error),
    /// Certificate generation failed.
    #[error("generating the test CA/server certificate: {0}")]
    Cert(String),
    /// A fixture document could not be parsed or stored.
    #[error("loading fixture {what}: {message}")]
    Fixture {
        /// Which fixture.
        what: String,
        /// Why.
        message: String,
    },
    /// Writing the kubeconfig failed.
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Target path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve HTTPS with a generated CA (default) or plain HTTP.
    pub tls: bool,
    /// Controllers run after every write.
    pub controllers: Controllers,
    /// The `gitVersion` served at `/version`.
    pub git_version: String,
    /// Start the store in compact mode ([`Store::set_compact`]): objects kept as JSON bytes
    /// plus a small head, for benchmark clusters of many thousand nodes. Off by default.
    pub compact: bool,
    /// More addresses the server certificate names, besides `127.0.0.1` and `localhost`
    /// (the lab: every server's address and the VIP, as k3s's certificate names each
    /// server's node IPs and its `tls-san` values).
    pub extra_sans: Vec<std::net::IpAddr>,
    /// When set, every request must carry `Authorization: Bearer TOKEN`; any other request
    /// gets `401 Unauthorized`, as a real API server answers bad credentials. `None` (the
    /// default): credentials are not checked.
    pub bearer_token: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: true,
            controllers: Controllers::default(),
            git_version: "v1.28.5+k3s1".into(),
            compact: false,
            extra_sans: Vec::new(),
            bearer_token: None,
        }
    }
}

struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<String>>,
    gzip_requests: std::sync::atomic::AtomicUsize,
    expire_continue: std::sync::atomic::AtomicUsize,
    /// `(group, plural)` the caller may not read: RBAC denies them (403).
    forbidden: Mutex<Vec<(String, String)>>,
    git_version: String,
    bearer_token: Option<String>,
    /// The CA's PEM (TLS servers), served at `/cacerts` like k3s's supervisor.
    ca_pem: Option<String>,
}

/// A running in-memory API server; stops when dropped.
pub struct KubeApiServer {
    shared: Arc<Shared>,
    url: String,
    ca_pem: Option<String>,
    task: JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        // Stop accepting and close every open connection (kept-alive ones included), so that a
        // dropped server looks to clients exactly like a dead API server.
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

impl std::fmt::Debug for KubeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApiServer")
            .field("url", &self.url)
            .finish()
    }
}

fn tls_config(
    extra_sans: &[std::net::IpAddr],
) -> Result<(Arc<rustls::ServerConfig>, String), HarnessError> {
    let e = |x: &dyn std::fmt::Display| HarnessError::Cert(x.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(|x| e(&x))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|x| e(&x))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "k3splan-testkit-kubeapi-ca");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|x| e(&x))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(|x| e(&x))?;
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend(extra_sans.iter().map(|ip| ip.to_string()));
    let mut leaf_params = rcgen::CertificateParams::new(names).map_err(|x| e(&x))?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|x| e(&x))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|x| e(&x))?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
    .map_err(|x| e(&x))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), ca_cert.pem()))
}

impl KubeApiServer {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start(opts: ServerOptions) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::Bind)?;
        let addr = listener.local_addr().map_err(HarnessError::Bind)?;
        let (acceptor, ca_pem) = if opts.tls {
            let (cfg, pem) = tls_config(&opts.extra_sans)?;
            (Some(tokio_rustls::TlsAcceptor::from(cfg)), Some(pem))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            ca_pem: ca_pem.clone(),
            store: Mutex::new({
                let mut st = Store::new(opts.controllers.clone());
                st.set_compact(opts.compact);
                st
            }),
            requests: Mutex::new(Vec::new()),
            gzip_requests: Default::default(),
            expire_continue: Default::default(),
            git_version: opts.git_version.clone(),
            bearer_token: opts.bearer_token.clone(),
            forbidden: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(shared.clone())
            .layer(tower_http::compression::CompressionLayer::new().gzip(true));
        let scheme = if opts.tls { "https" } else { "http" };
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let svc = hyper_util::service::TowerToHyperService::new(router.clone());
                let acceptor = acceptor.clone();
                let mut stop = shutdown_rx.clone();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let serve = async move {
                        match acceptor {
                            Some(acc) => {
                                if let Ok(tls) = acc.accept(tcp).await {
                                    let _ = builder
                                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                        .await;
                                }
                            }
                            None => {
                                let _ = builder
                                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                                    .await;
                            }
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Ok(Self {
            shared,
            url: format!("{scheme}://{addr}"),
            ca_pem,
            task,
            shutdown,
        })
    }

    /// Starts an HTTPS server loaded with the seed 004 fixture.
    pub async fn seed004(controllers: Controllers) -> Result<Self, HarnessError> {
        let s = Self::start(ServerOptions {
            controllers,
            ..Default::default()
        })
        .await?;
        s.load_yaml("seed004.yaml", SEED004_YAML)?;
        Ok(s)
    }

    /// Base URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// PEM of the CA that signed the server certificate (None for plain HTTP).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Locks the store for direct inspection or modification (tests, lab).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The requests served so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests asked for a gzip response (`Accept-Encoding: gzip`).
    pub fn gzip_requests(&self) -> usize {
        self.shared
            .gzip_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The next `n` list requests that carry a `continue` token answer `410 Gone` (reason
    /// `Expired`), as a real API server does once etcd has compacted the revision the token
    /// was issued at (about five minutes after the first page).
    pub fn expire_continue_tokens(&self, n: usize) {
        self.shared
            .expire_continue
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on, every request for `plural` of `group` (`""` core) answers `403
    /// Forbidden`, as a real API server answers a user whose RBAC role does not grant the
    /// verb (its message: `plans.upgrade.cattle.io is forbidden: User "…" cannot list
    /// resource "plans" in API group "upgrade.cattle.io" at the cluster scope`).
    pub fn forbid(&self, group: &str, plural: &str) {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((group.to_string(), plural.to_string()));
    }

    /// Undoes every [`Self::forbid`].
    pub fn allow_all(&self) {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Loads a multi-document YAML fixture (documents may be `kind: List`).
    pub fn load_yaml(&self, what: &str, yaml: &str) -> Result<(), HarnessError> {
        let fx = |message: String| HarnessError::Fixture {
            what: what.to_string(),
            message,
        };
        let mut docs = Vec::new();
        for de in serde_yaml::Deserializer::from_str(yaml) {
            let v: Value = serde::Deserialize::deserialize(de).map_err(|e| fx(e.to_string()))?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        self.load_values(docs).map_err(|e| fx(e.to_string()))
    }

    /// Loads objects (bulk: controllers run once at the end). The objects are consumed one
    /// at a time, so an iterator that builds them lazily (as [`synthetic::objects`]) never
    /// holds more than one in memory.
    pub fn load_values(&self, docs: impl IntoIterator<Item = Value>) -> Result<(), ApiError> {
        let mut st = self.store();
        st.bulk_load(docs)
    }

    /// Kubeconfig YAML for this server (context and cluster `kubeapi-test`, a bearer token).
    pub fn kubeconfig_yaml(&self) -> String {
        let ca = self
            .ca_pem
            .as_ref()
            .map(|p| {
                format!(
                    "\n    certificate-authority-data: {}",
                    base64::engine::general_purpose::STANDARD.encode(p)
                )
            })
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubeapi-test\n  cluster:\n    server: {}{ca}\n\
             contexts:\n- name: kubeapi-test\n  context:\n    cluster: kubeapi-test\n    user: kubeapi-test\n    namespace: default\n\
             current-context: kubeapi-test\nusers:\n- name: kubeapi-test\n  user:\n    token: kubeapi-test-token\n",
            self.url
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| HarnessError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Store {
    /// Inserts many objects, running the controllers once at the end (consumed one at a time).
    pub fn bulk_load(&mut self, docs: impl IntoIterator<Item = Value>) -> Result<(), ApiError> {
        self.set_bulk(true);
        let mut res = Ok(());
        for d in docs {
            if let Err(e) = self.load(d) {
                res = Err(e);
                break;
            }
        }
        self.set_bulk(false);
        self.reconcile();
        res
    }
}

/// A list response body, written in chunks of about [`ListBody::CHUNK`] bytes from the
/// stored items (shared, not copied), so that a large list never exists twice in memory.
/// Its exact length is known up front (`Content-Length` as with a single buffer).
struct ListBody {
    head: Option<Vec<u8>>,
    items: std::vec::IntoIter<Arc<Vec<u8>>>,
    first: bool,
    done: bool,
    remaining: u64,
}

impl ListBody {
    const CHUNK: usize = 256 * 1024;

    fn new(head: Vec<u8>, items: Vec<Arc<Vec<u8>>>) -> Self {
        let len = head.len()
            + items.iter().map(|i| i.len()).sum::<usize>()
            + items.len().saturating_sub(1)
            + 2;
        Self {
            head: Some(head),
            items: items.into_iter(),
            first: true,
            done: false,
            remaining: len as u64,
        }
    }
}

impl hyper::body::Body for ListBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return std::task::Poll::Ready(None);
        }
        let mut buf = this.head.take().unwrap_or_default();
        buf.reserve(Self::CHUNK);
        while buf.len() < Self::CHUNK {
            match this.items.next() {
                Some(item) => {
                    if !this.first {
                        buf.push(b',');
                    }
                    this.first = false;
                    buf.extend_from_slice(&item);
                }
                None => {
                    buf.extend_from_slice(b"]}");
                    this.done = true;
                    break;
                }
            }
        }
        this.remaining = this.remaining.saturating_sub(buf.len() as u64);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

fn json_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn value_response(code: StatusCode, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

fn error_response(e: &ApiError) -> Response {
    value_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = store::TYPES
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(|t| {
            let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update"]);
            let short: &[&str] = match t.plural {
                "namespaces" => &["ns"],
                "nodes" => &["no"],
                "pods" => &["po"],
                "persistentvolumeclaims" => &["pvc"],
                "persistentvolumes" => &["pv"],
                "services" => &["svc"],
                "configmaps" => &["cm"],
                "statefulsets" => &["sts"],
                "deployments" => &["deploy"],
                "replicasets" => &["rs"],
                "daemonsets" => &["ds"],
                "poddisruptionbudgets" => &["pdb"],
                "storageclasses" => &["sc"],
                _ => &[],
            };
            let mut v = vec![json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs, "shortNames": short})];
            v.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
            if t.kind == "Pod" {
                v.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
            }
            if matches!(t.kind, "Deployment" | "StatefulSet" | "ReplicaSet") {
                v.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
            }
            v
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn groups(st: &store::Store) -> Value {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for t in store::TYPES
        .iter()
        .filter(|t| !t.group.is_empty() && st.serves_group(t.group, t.version))
    {
        if !seen.contains(&(t.group, t.version)) {
            seen.push((t.group, t.version));
        }
    }
    let groups: Vec<Value> = seen
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("decoding the request body: {e}")))
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sh.requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!(
            "{method} {}",
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        ));
    if headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.contains("gzip"))
    {
        sh.gzip_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let q: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let segs: Vec<&str> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // The public paths answer without credentials, as a real API server's do (anonymous
    // access to /version, /healthz, /readyz, /livez through system:public-info-viewer) and
    // as k3s's supervisor serves /cacerts: the token is checked for everything else.
    let public = matches!(
        segs.as_slice(),
        ["version" | "healthz" | "readyz" | "livez" | "cacerts"]
    );
    if let Some(token) = sh.bearer_token.as_ref().filter(|_| !public) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return value_response(
                StatusCode::UNAUTHORIZED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            );
        }
    }
    match segs.as_slice() {
        ["version"] => {
            let gv = &sh.git_version;
            let minor = gv.split('.').nth(1).unwrap_or("28");
            return value_response(
                StatusCode::OK,
                &json!({"major": "1", "minor": minor, "gitVersion": gv, "gitCommit": "", "gitTreeState": "clean",
                        "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.20", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        // Unauthenticated, as kube-apiserver serves them to anyone (system:public-info-viewer).
        ["healthz" | "readyz" | "livez"] => return (StatusCode::OK, "ok").into_response(),
        // k3s's supervisor serves the server CA at /cacerts without authentication
        // (k3s-io/k3s pkg/server/router.go: `router.Path("/cacerts")` on the outer router,
        // before the authenticated handlers); the lab's per-server :6443 proxies here.
        ["cacerts"] => {
            return match &sh.ca_pem {
                Some(pem) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain")],
                    pem.clone(),
                )
                    .into_response(),
                None => {
                    (StatusCode::NOT_FOUND, "no CA: this server runs without TLS").into_response()
                }
            };
        }
        ["api"] => {
            return value_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            );
        }
        ["apis"] => {
            let st = sh.store.lock().unwrap_or_else(|p| p.into_inner());
            return value_response(StatusCode::OK, &groups(&st));
        }
        ["api", v] => return value_response(StatusCode::OK, &resource_list("", v)),
        ["apis", g, v] => {
            // A group whose kinds come from CRDs none of which exists: not served (404).
            if !sh
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .serves_group(g, v)
            {
                return error_response(&ApiError {
                    code: 404,
                    reason: "NotFound".into(),
                    message: "the server could not find the requested resource".into(),
                    causes: vec![],
                });
            }
            return value_response(StatusCode::OK, &resource_list(g, v));
        }
        _ => {}
    }
    // What a real API server answers for a path it serves no resource at (also a custom
    // resource whose CRD does not exist).
    let not_found = || {
        error_response(&ApiError {
            code: 404,
            reason: "NotFound".into(),
            message: format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
            causes: vec![],
        })
    };
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return not_found(),
    };
    // (namespace, plural, name, subresource)
    let (ns, plural, name, sub): (Option<&str>, &str, Option<&str>, Option<&str>) = match rest {
        ["namespaces", ns, plural] => (Some(ns), plural, None, None),
        ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name), None),
        ["namespaces", ns, plural, name, sub] => (Some(ns), plural, Some(name), Some(sub)),
        [plural] => (None, plural, None, None),
        [plural, name] => (None, plural, Some(name), None),
        [plural, name, sub] => (None, plural, Some(name), Some(sub)),
        _ => return not_found(),
    };
    let Some(t) = store::type_by_path(group, version, plural) else {
        return not_found();
    };
    if sh
        .forbidden
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|(g, p)| g == group && p == plural)
    {
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        return error_response(&ApiError {
            code: 403,
            reason: "Forbidden".into(),
            message: format!(
                "{resource} is forbidden: User \"k3splan\" cannot {} resource \"{plural}\" in API group \"{group}\"",
                if method == Method::GET {
                    "list"
                } else {
                    "change"
                }
            ),
            causes: vec![],
        });
    }
    if !sh.store.lock().unwrap_or_else(|p| p.into_inner()).serves(t) {
        // A custom resource whose CRD does not exist (store/crd.rs).
        return not_found();
    }
    let tp = store::TYPES[t];
    let ns_s = if tp.namespaced { ns.unwrap_or("") } else { "" };
    let result: Result<Response, ApiError> = (|| match (method.clone(), name, sub) {
        (Method::GET, None, None) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return Err(ApiError {
                    code: 405,
                    reason: "MethodNotAllowed".into(),
                    message: "watch is not implemented by the in-memory API server".into(),
                    causes: vec![],
                });
            }
            let (labels, fields) = selectors(&q)?;
            let cont = q.get("continue").filter(|c| !c.is_empty());
            if cont.is_some()
                && sh
                    .expire_continue
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    )
                    .is_ok()
            {
                // The real server's message (apiserver storage/etcd3/store.go, `GetList`).
                return Err(ApiError {
                    code: 410,
                    reason: "Expired".into(),
                    message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                    causes: vec![],
                });
            }
            // A list with `resourceVersion=0` is served from the watch cache, which ignores
            // `limit` (kubernetes staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go,
            // `computeListLimit`: "the limit is ignored for requests that set RV == 0"): the
            // whole list in one response, no `continue`. Without `resourceVersion` (a
            // consistent read) or with a continue token, `limit` pages.
            let rv0 = q.get("resourceVersion").is_some_and(|rv| rv == "0") && cont.is_none();
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|_| !rv0);
            let page = {
                let st = sh.store.lock().unwrap_or_else(|p| p.into_inner());
                st.list(
                    t,
                    if tp.namespaced { ns } else { None },
                    &labels,
                    &fields,
                    limit,
                    cont.map(String::as_str),
                )?
            };
            let mut m = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(c) = &page.continue_token {
                m["continue"] = json!(c);
                m["remainingItemCount"] = json!(page.remaining);
            }
            let head = format!(
                "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                tp.kind,
                tp.api_version(),
                m
            );
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::new(ListBody::new(head.into_bytes(), page.items)),
            )
                .into_response())
        }
        (Method::GET, Some(n), None | Some("status")) => {
            let b = sh
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_bytes(t, ns_s, n)?;
            Ok(json_response(StatusCode::OK, b.to_vec()))
        }
        (Method::GET, Some(n), Some("scale")) => {
            let v = sh
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(t, ns_s, n)?;
            Ok(value_response(StatusCode::OK, &scale_of(&v)))
        }
        (Method::POST, None, None) => {
            let v = parse_body(&body)?;
            let out = sh
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .create_via_api(t, ns_s, v)?;
            Ok(value_response(StatusCode::CREATED, &out))
        }
        (Method::POST, Some(n), Some("eviction")) if tp.kind == "Pod" => {
            let v = parse_body(&body)?;
            let grace = v["deleteOptions"]["gracePeriodSeconds"].as_i64();
            sh.store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .evict(ns_s, n, grace)?;
            Ok(value_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::PUT, Some(n), sub @ (None | Some("status"))) => {
            let v = parse_body(&body)?;
            let out = sh
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update_via_api(t, ns_s, n, None, Some(v), sub.is_some())?;
            Ok(value_response(StatusCode::OK, &out))
        }
        (Method::PATCH, Some(n), sub @ (None | Some("status"))) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("application/merge-patch+json");
            let v = parse_body(&body)?;
            let mut st = sh.store.lock().unwrap_or_else(|p| p.into_inner());
            let out = if ct.starts_with("application/apply-patch") && st.get(t, ns_s, n).is_err() {
                let mut v = v;
                v["metadata"]["name"] = json!(n);
                st.create_via_api(t, ns_s, v)?
            } else {
                st.update_via_api(t, ns_s, n, Some((ct, &v)), None, sub.is_some())?
            };
            Ok(value_response(StatusCode::OK, &out))
        }
        (Method::PATCH | Method::PUT, Some(n), Some("scale")) => {
            let v = parse_body(&body)?;
            let replicas = v["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas missing"))?;
            let mut st = sh.store.lock().unwrap_or_else(|p| p.into_inner());
            let out = st.patch(
                t,
                ns_s,
                n,
                "application/merge-patch+json",
                &json!({"spec": {"replicas": replicas}}),
            )?;
            Ok(value_response(StatusCode::OK, &scale_of(&out)))
        }
        (Method::DELETE, n, None) => {
            let b = parse_body(&body)?;
            let opts = DeleteOpts {
                grace_period_seconds: q
                    .get("gracePeriodSeconds")
                    .and_then(|g| g.parse().ok())
                    .or(b["gracePeriodSeconds"].as_i64()),
                propagation: q
                    .get("propagationPolicy")
                    .cloned()
                    .or(b["propagationPolicy"].as_str().map(str::to_string)),
                precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
            };
            let mut st = sh.store.lock().unwrap_or_else(|p| p.into_inner());
            match n {
                Some(n) => {
                    let out = st.delete(t, ns_s, n, &opts)?;
                    if tp.kind == "CustomResourceDefinition" {
                        st.purge_custom_resources(n);
                    }
                    Ok(value_response(StatusCode::OK, &out))
                }
                None => {
                    let (labels, fields) = selectors(&q)?;
                    let victims: Vec<Value> =
                        st.select(t, if tp.namespaced { ns } else { None }, &labels, &fields);
                    let mut items = Vec::new();
                    for v in victims {
                        let vn = v["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let vns = v["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        if let Ok(o) = st.delete(t, &vns, &vn, &opts) {
                            items.push(o);
                        }
                    }
                    Ok(value_response(
                        StatusCode::OK,
                        &json!({"kind": format!("{}List", tp.kind), "apiVersion": tp.api_version(), "metadata": {}, "items": items}),
                    ))
                }
            }
        }
        _ => Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed".into(),
            message: format!("{method} is not supported on {}", uri.path()),
            causes: vec![],
        }),
    })();
    result.unwrap_or_else(|e| error_response(&e))
}

fn scale_of(v: &Value) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": v["metadata"]["name"], "namespace": v["metadata"]["namespace"], "resourceVersion": v["metadata"]["resourceVersion"]},
           "spec": {"replicas": v["spec"]["replicas"]}, "status": {"replicas": v["status"]["replicas"].as_i64().unwrap_or(0)}})
}

/// The `labelSelector` and `fieldSelector` of a list or delete-collection query (empty when
/// absent; a malformed one is a 400).
fn selectors(
    q: &HashMap<String, String>,
) -> Result<(Vec<select::LabelReq>, Vec<select::FieldReq>), ApiError> {
    let labels = q
        .get("labelSelector")
        .map(|s| select::parse_label_selector(s))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let fields = q
        .get("fieldSelector")
        .map(|s| select::parse_field_selector(s))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    Ok((labels, fields))
}
