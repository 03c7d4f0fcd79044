//! Kubernetes provider for k3splan: nodes, pods, local-path volumes and add-ons.
//!
//! This crate knows the Kubernetes API and nothing of plans. It is built on `kube` 5 (rustls,
//! ring, gzip) and `k8s-openapi` 0.29 (feature `latest`, Kubernetes 1.37 types; the fields used
//! are stable since 1.21, so k3s v1.21–v1.37 servers are served alike).
//!
//! - [`KubeProvider::connect`] selects the kubeconfig and context as `kubectl` does.
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
        matches!(self, KubeError::Unreachable { .. })
    }
}

/// A connection to one cluster.
#[derive(Clone)]
pub struct KubeProvider {
    pub(crate) client: kube::Client,
    pub(crate) endpoint: String,
    pub(crate) context: Option<String>,
    pub(crate) settings: KubeSettings,
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
    /// Loads the kubeconfig and builds a client. Does not contact the API server: an
    /// unreachable server is reported by the first call ([`KubeError::Unreachable`]).
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
        let client = kube::Client::try_from(config).map_err(|e| KubeError::Kubeconfig {
            source_desc: desc.clone(),
            message: format!("building the client for {endpoint}: {e}"),
        })?;
        Ok(Self {
            client,
            endpoint,
            context,
            settings,
        })
    }

    /// The API server URL in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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
