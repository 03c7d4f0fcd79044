//! Kubernetes provider for k3splan: nodes, pods, local-path volumes and add-ons.
//!
//! This crate knows the Kubernetes API and nothing of plans. It is built on `kube` 5 (rustls,
//! ring, gzip) and `k8s-openapi` 0.29 (feature `latest`, Kubernetes 1.37 types; the fields used
//! are stable since 1.21, so k3s v1.21–v1.37 servers are served alike).
//!
//! - [`KubeProvider::connect`] selects the kubeconfig and context as `kubectl` does; with
//!   [`KubeSettings::fallback_servers`] it checks that the kubeconfig's server answers and,
//!   when it does not (connection-level failures only, never a 401/403), uses the first
//!   fallback that does ([`KubeProvider::failover_note`] says which; `failover` module).
//! - [`KubeProvider::observe`] reads nodes, pods, PVCs, PVs and add-ons into slim structs
//!   ([`ClusterObservation`]), concurrently, gzip, either unpaged with `resourceVersion=0` (the watch cache) or paged
//!   (`limit`/`continue`, a consistent read: the watch cache would ignore `limit`).
//!   An API that cannot be reached is [`KubeError::Unreachable`], never an empty cluster.
//! - The act functions ([`KubeProvider::cordon`], [`KubeProvider::drain`],
//!   [`KubeProvider::delete_node`], [`KubeProvider::rebind_volume`],
//!   [`KubeProvider::set_addon_replicas_and_spread`], ...) are idempotent: acting on something
//!   already done returns [`ActOutcome::AlreadyDone`] rather than an error.

#![warn(missing_docs)]

mod act;
pub mod check;
mod failover;
mod model;
mod observe;
mod wait;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use act::{
    AddonChange, AddonMethod, BlockedPod, DEFAULT_MIN_NOT_READY, DrainMode, DrainOptions,
    DrainReport, HostGoneEvidence, RebindPolicy, RebindReport, RebindRequest,
};
pub use failover::{Attempt, FallbackServer, KUBECONFIG_SERVER, Unanswered};
pub use model::*;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Explicit kubeconfig path (the topology's `kubeconfig`). When `None`: `KUBECONFIG`
    /// (colon-separated list, merged as kubectl does), else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Context to use (the topology's `kube_context`); `None` = the file's `current-context`.
    pub context: Option<String>,
    /// TCP/TLS connect timeout: how long an unreachable API may take to be reported.
    pub connect_timeout: Duration,
    /// Read timeout of one response (large lists need more).
    pub read_timeout: Duration,
    /// `limit` for list calls; `None` lists each kind in one response (faster, more memory).
    /// With a page size, lists are consistent reads (no `resourceVersion`) that follow
    /// `continue`: a real API server ignores `limit` when `resourceVersion=0`, so
    /// [`Self::resource_version_zero`] does not apply to paged lists. A continue token that
    /// expires between pages (410 Gone) restarts the list from its first page (twice at most).
    pub page_size: Option<u32>,
    /// Send `resourceVersion=0` on unpaged lists (served from the API server's watch cache;
    /// may be slightly stale, which is fine at plan time since apply re-observes). Ignored
    /// when [`Self::page_size`] is set.
    pub resource_version_zero: bool,
    /// Other addresses of the same API server (same CA, same credentials), in order of
    /// preference: when the kubeconfig's server does not answer at the connection level,
    /// [`KubeProvider::connect`] uses the first of these that does. Empty (the default): the
    /// kubeconfig's server is used without a check, as kubectl does.
    pub fallback_servers: Vec<FallbackServer>,
}

impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(120),
            page_size: None,
            resource_version_zero: true,
            fallback_servers: Vec::new(),
        }
    }
}

/// Errors of the provider. Messages name the API endpoint and the call.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be found, read or used.
    #[error("kubeconfig {source_desc}: {message}")]
    Kubeconfig {
        /// Which file(s) or context.
        source_desc: String,
        /// Why.
        message: String,
    },
    /// The API server could not be reached (connection refused, TLS failure, timeout...).
    /// Callers must treat the cluster as unknown, not empty.
    #[error("Kubernetes API {endpoint} unreachable during {call}: {message}")]
    Unreachable {
        /// API server URL.
        endpoint: String,
        /// The call that failed.
        call: String,
        /// Cause.
        message: String,
    },
    /// Neither the kubeconfig's server nor any fallback answered (each failed below HTTP).
    /// Callers must treat the cluster as unknown, not empty.
    #[error("no Kubernetes API server answered; tried {}", list_attempts(.tried))]
    NoServerAnswered {
        /// Every candidate, in the order of preference, with why it did not answer.
        tried: Vec<Attempt>,
    },
    /// The API answered with an error status.
    #[error("Kubernetes API {endpoint}: {call} failed with {code} {reason}: {message}")]
    Api {
        /// API server URL.
        endpoint: String,
        /// The call that failed.
        call: String,
        /// HTTP status code.
        code: u16,
        /// Status reason.
        reason: String,
        /// Status message.
        message: String,
    },
    /// The client failed before reaching the API (credentials plugin, TLS configuration,
    /// request building): a local problem, not an unreachable server.
    #[error("Kubernetes client for {endpoint}: {call}: {message}")]
    Client {
        /// API server URL.
        endpoint: String,
        /// The call.
        call: String,
        /// Cause.
        message: String,
    },
    /// A response could not be decoded.
    #[error("Kubernetes API {endpoint}: decoding the response of {call}: {message}")]
    Decode {
        /// API server URL.
        endpoint: String,
        /// The call.
        call: String,
        /// Cause.
        message: String,
    },
    /// The provider refused a destructive action that would break a safety rule.
    #[error("refused on {endpoint}: {action}: {reason}")]
    Refused {
        /// API server URL.
        endpoint: String,
        /// What was asked.
        action: String,
        /// Why it is refused.
        reason: String,
    },
    /// An object the action needs does not exist.
    #[error("Kubernetes API {endpoint}: {what} not found")]
    NotFound {
        /// API server URL.
        endpoint: String,
        /// The missing object.
        what: String,
    },
    /// A wait did not finish before its deadline.
    #[error("Kubernetes API {endpoint}: timed out after {after:?} waiting for {what}")]
    Timeout {
        /// API server URL.
        endpoint: String,
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
}

impl KubeError {
    /// Whether this error means the API could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            KubeError::Unreachable { .. } | KubeError::NoServerAnswered { .. }
        )
    }
}

fn list_attempts(tried: &[Attempt]) -> String {
    tried
        .iter()
        .map(Attempt::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The host of an `https://HOST:PORT/...` URL (IPv6 without brackets).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// A connection to one cluster.
#[derive(Clone)]
pub struct KubeProvider {
    pub(crate) client: kube::Client,
    pub(crate) endpoint: String,
    pub(crate) context: Option<String>,
    pub(crate) settings: KubeSettings,
    /// The kubeconfig's server URL (the same as `endpoint` unless a fallback is in use).
    pub(crate) kubeconfig_server: String,
    /// What the fallback in use is (`None`: the kubeconfig's server is in use).
    pub(crate) fallback: Option<String>,
    /// Candidates that did not answer before the one in use.
    pub(crate) failed: Vec<Attempt>,
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider")
            .field("endpoint", &self.endpoint)
            .field("context", &self.context)
            .finish()
    }
}

impl KubeProvider {
    /// The cluster CA (DER certificates) of the kubeconfig `settings` select, resolved as
    /// [`connect`](Self::connect) resolves it (kube's `Config::root_cert`:
    /// `certificate-authority-data` or the `certificate-authority` file), without
    /// connecting. `None` when the kubeconfig cannot be read or names no CA.
    pub async fn cluster_ca(settings: &KubeSettings) -> Option<Vec<Vec<u8>>> {
        let kc = match &settings.kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .ok()?;
        let opts = KubeConfigOptions {
            context: settings.context.clone(),
            cluster: None,
            user: None,
        };
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .ok()?
            .root_cert
            .filter(|c| !c.is_empty())
    }

    /// Loads the kubeconfig and builds a client. Without fallback servers it does not contact
    /// the API server: an unreachable server is reported by the first call
    /// ([`KubeError::Unreachable`]). With [`KubeSettings::fallback_servers`], it sends
    /// `GET /version` to the kubeconfig's server and, when that fails below HTTP, to the
    /// fallbacks (all at once, preferred in their order), and uses the first that answers;
    /// [`KubeError::NoServerAnswered`] lists every URL tried when none does.
    ///
    /// Selection, as kubectl: `settings.kubeconfig` if set, else the files in `KUBECONFIG`
    /// (merged), else `~/.kube/config`; then `settings.context` or the `current-context`.
    pub async fn connect(settings: KubeSettings) -> Result<Self, KubeError> {
        let (kc, desc) = match &settings.kubeconfig {
            Some(p) => (Kubeconfig::read_from(p), p.display().to_string()),
            None => (
                Kubeconfig::read(),
                std::env::var("KUBECONFIG")
                    .map(|v| format!("$KUBECONFIG={v}"))
                    .unwrap_or_else(|_| "~/.kube/config".into()),
            ),
        };
        let kc = kc.map_err(|e| KubeError::Kubeconfig {
            source_desc: desc.clone(),
            message: e.to_string(),
        })?;
        let context = settings
            .context
            .clone()
            .or_else(|| kc.current_context.clone());
        let opts = KubeConfigOptions {
            context: settings.context.clone(),
            cluster: None,
            user: None,
        };
        let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| KubeError::Kubeconfig {
                source_desc: format!(
                    "{desc} (context {})",
                    context.clone().unwrap_or_else(|| "<current>".into())
                ),
                message: e.to_string(),
            })?;
        config.connect_timeout = Some(settings.connect_timeout);
        config.read_timeout = Some(settings.read_timeout);
        // Evictions answer 429 while a PodDisruptionBudget forbids them; the drain loop retries
        // them itself until its own deadline, so kube's blind retry layer is off.
        config.default_retry = false;
        let endpoint = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let build = |config: kube::Config, url: &str| {
            kube::Client::try_from(config).map_err(|e| KubeError::Kubeconfig {
                source_desc: desc.clone(),
                message: format!("building the client for {url}: {e}"),
            })
        };
        let mut candidates = vec![failover::Candidate {
            url: endpoint.clone(),
            what: KUBECONFIG_SERVER.into(),
            client: build(config.clone(), &endpoint)?,
        }];
        for f in &settings.fallback_servers {
            if candidates
                .iter()
                .any(|c| failover::same_url(&c.url, &f.url))
            {
                continue;
            }
            let uri: http::Uri = f.url.parse().map_err(|e| KubeError::Kubeconfig {
                source_desc: desc.clone(),
                message: format!("fallback server {} ({}): {e}", f.url, f.what),
            })?;
            let mut c = config.clone();
            c.cluster_url = uri;
            candidates.push(failover::Candidate {
                url: f.url.trim_end_matches('/').to_string(),
                what: f.what.clone(),
                client: build(c, &f.url)?,
            });
        }
        let mut provider = Self {
            client: candidates[0].client.clone(),
            endpoint: endpoint.clone(),
            context,
            settings,
            kubeconfig_server: endpoint.clone(),
            fallback: None,
            failed: Vec::new(),
        };
        if candidates.len() == 1 {
            return Ok(provider);
        }
        // A TCP connection that is accepted but never answered (a stopped process) must not
        // hold the probe for the whole read timeout.
        let limit = provider.settings.connect_timeout + Duration::from_secs(5);
        match failover::choose(&candidates, limit).await {
            failover::Chosen::Answered { index, failed } => {
                let c = &candidates[index];
                if index > 0 {
                    tracing::info!(
                        kubeconfig = %endpoint,
                        using = %c.url,
                        "the kubeconfig's API server did not answer; using a fallback"
                    );
                    provider.client = c.client.clone();
                    provider.endpoint = c.url.clone();
                    provider.fallback = Some(c.what.clone());
                }
                provider.failed = failed;
                Ok(provider)
            }
            failover::Chosen::NoneAnswered(tried) => Err(KubeError::NoServerAnswered { tried }),
            failover::Chosen::Local { url, message } => Err(KubeError::Client {
                endpoint: url,
                call: "GET /version".into(),
                message,
            }),
        }
    }

    /// The API server URL in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The kubeconfig's server URL (differs from [`Self::endpoint`] when a fallback is used).
    pub fn kubeconfig_server(&self) -> &str {
        &self.kubeconfig_server
    }

    /// Candidates that did not answer before the one in use (empty when the kubeconfig's
    /// server answered, or was not checked).
    pub fn failed_candidates(&self) -> &[Attempt] {
        &self.failed
    }

    /// When a fallback is in use, the line that says so, e.g. `the kubeconfig's
    /// https://10.0.0.11:6443 did not answer (connection refused); using
    /// https://10.0.0.100:6443 (the VIP)`. `None` when the kubeconfig's server is in use.
    pub fn failover_note(&self) -> Option<String> {
        let what = self.fallback.as_deref()?;
        let mut parts: Vec<String> = self
            .failed
            .iter()
            .map(|a| {
                if a.what == KUBECONFIG_SERVER {
                    format!("the kubeconfig's {} did not answer ({})", a.url, a.reason)
                } else {
                    format!("{} ({}) did not answer ({})", a.url, a.what, a.reason)
                }
            })
            .collect();
        parts.push(format!("using {} ({what})", self.endpoint));
        Some(parts.join("; "))
    }

    /// The context in use (None when the kubeconfig has no current-context).
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// `GET /version`: the server's `gitVersion` (e.g. `v1.28.5+k3s1`).
    pub async fn server_version(&self) -> Result<String, KubeError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| self.map_err("GET /version", e))
    }

    pub(crate) fn map_err(&self, call: &str, e: kube::Error) -> KubeError {
        match e {
            kube::Error::Api(s) if s.code == 404 => KubeError::NotFound {
                endpoint: self.endpoint.clone(),
                what: format!("{call}: {}", s.message),
            },
            kube::Error::Api(s) => KubeError::Api {
                endpoint: self.endpoint.clone(),
                call: call.to_string(),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            kube::Error::SerdeError(e) => KubeError::Decode {
                endpoint: self.endpoint.clone(),
                call: call.to_string(),
                message: e.to_string(),
            },
            other => {
                let mut message = other.to_string();
                let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&other);
                while let Some(s) = src {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    src = s.source();
                }
                KubeError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    call: call.to_string(),
                    message,
                }
            }
        }
    }
}
