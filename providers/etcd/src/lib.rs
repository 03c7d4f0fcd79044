//! etcd provider for k3splan: observes and changes etcd membership over TLS.
//!
//! This crate knows etcd and nothing of plans. The planner reads an [`Observation`] from
//! [`EtcdProvider::observe`]; the apply engine calls the act functions
//! ([`EtcdProvider::add_learner`], [`EtcdProvider::promote_learner`],
//! [`EtcdProvider::remove_member`], [`EtcdProvider::move_leader_away`],
//! [`EtcdProvider::snapshot`], [`EtcdProvider::compare_hashes`],
//! [`EtcdProvider::wait_for_join`]).
//!
//! # Guarantees
//! - **Per-endpoint isolation.** Every endpoint is asked over its own client (etcd-client's
//!   `Client` load-balances over its endpoints, so a shared client could not say which
//!   member answered), all endpoints in parallel, each bounded by the configured timeout
//!   (default 5 s). One dead or frozen endpoint costs at most that timeout and never fails
//!   the whole observation while another endpoint answers.
//! - **Unknown is not absent.** A member in the member list whose endpoint does not answer
//!   is reported as [`MemberHealth::Unreachable`] (with the error) or
//!   [`MemberHealth::NotObserved`] (no endpoint configured for it); it is never dropped.
//! - **Idempotent acts where etcd allows it.** Adding a learner whose peer URL is already a
//!   member returns that member; removing an absent member is a no-op; promoting a voter is
//!   a no-op; moving leadership away from a non-leader is a no-op.
//! - **Errors name the endpoint** (and the operation); TLS failures are classified as
//!   [`EndpointErrorKind::Tls`] so an operator sees "certificate" problems as such.
//!
//! # Caveats
//! - The provider enforces no plan safety (quorum, ordering): that is the planner's job.
//! - Observation is a snapshot in time; membership may change right after it.
//! - A learner answers `status` but refuses member list, HashKV and snapshot; the provider
//!   never relies on a learner for those.
//! - Connections are lazy: a wrong endpoint or TLS file content shows up at the first call,
//!   as an [`EndpointError`] naming the endpoint.

mod act;
pub mod client;
mod observe;
mod retry;
mod tlsprobe;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};
use tonic::Code;

pub use act::{
    HashReport, JoinFailure, JoinInfo, JoinStatus, LeaderMove, MemberHash, Promotion, Removal,
    SnapshotInfo,
};
pub use etcd_client;
pub use observe::{
    Alarm, EndpointState, EndpointStatus, HealthSummary, MemberHealth, MemberInfo, Observation,
};

/// Default per-endpoint timeout of observation and of each request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an observation in which a majority of voters answer but none knows a leader is
/// repeated, waiting for the election to end, before it is reported as leaderless: two of
/// k3s's election timeouts (k3s runs etcd with `ElectionTimeout: 5000`,
/// `HeartbeatInterval: 500`, k3s-io/k3s pkg/etcd/etcd.go `cluster()`; raft randomizes the
/// timeout within [T, 2T)) plus a margin.
pub const DEFAULT_ELECTION_WAIT: Duration = Duration::from_secs(12);

/// An etcd member ID. Displayed and serialized as 16 lowercase hex digits, like
/// `etcdctl member list` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for MemberId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s.trim_start_matches("0x"), 16).map(MemberId)
    }
}

impl Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Paths of the TLS files of the topology's `etcd` block (all PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// CA that signed the etcd server certificates (k3s: `server/tls/etcd/server-ca.crt`).
    pub ca_file: PathBuf,
    /// Client certificate (k3s: `server/tls/etcd/client.crt`).
    pub cert_file: PathBuf,
    /// Its private key (k3s: `server/tls/etcd/client.key`).
    pub key_file: PathBuf,
}

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, one per member: `https://ADDRESS:2379` for each etcd node of the
    /// topology, or the `endpoints` override.
    pub endpoints: Vec<String>,
    /// TLS files; `None` for plain `http://` endpoints.
    pub tls: Option<TlsFiles>,
    /// Per-endpoint timeout (connect + requests of one observation); default 5 s.
    pub timeout: Duration,
    /// TLS files the etcd *peer* port (2380) accepts, used only by
    /// [`EtcdProvider::check_join`] to ask a hanging new member which cluster it believes it
    /// belongs to. `None`: the client `tls` files are tried (works when one CA signs client
    /// and peer certificates; k3s uses a separate peer CA: `server/tls/etcd/peer-ca.crt`,
    /// `peer-server-client.crt`, `peer-server-client.key`).
    pub peer_tls: Option<TlsFiles>,
    /// See [`DEFAULT_ELECTION_WAIT`]: an election in progress is not a lost quorum.
    pub election_wait: Duration,
}

impl EtcdConfig {
    /// Config for `endpoints` without TLS and with the default timeout.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            timeout: DEFAULT_TIMEOUT,
            peer_tls: None,
            election_wait: DEFAULT_ELECTION_WAIT,
        }
    }
    /// Sets the peer-port TLS files (see [`EtcdConfig::peer_tls`]).
    pub fn with_peer_tls(mut self, tls: TlsFiles) -> Self {
        self.peer_tls = Some(tls);
        self
    }
    /// Sets the TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Sets the per-endpoint timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What kind of failure an endpoint had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointErrorKind {
    /// TLS handshake or certificate verification failed (wrong CA, wrong client cert,
    /// SAN mismatch).
    Tls,
    /// Connection refused / reset / no route: nothing (healthy) listens there.
    Unreachable,
    /// No answer within the timeout (frozen process, dropped packets).
    Timeout,
    /// The member answered with an error.
    Rpc,
}

/// A failure of one endpoint; the message names the endpoint and the operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("etcd endpoint {endpoint}: {operation} failed ({kind:?}): {message}")]
pub struct EndpointError {
    /// The client URL.
    pub endpoint: String,
    /// The operation (`status`, `member list`, `member add`, ...).
    pub operation: String,
    /// Classification.
    pub kind: EndpointErrorKind,
    /// etcd's or the transport's message, with its causes.
    pub message: String,
}

/// Errors of the etcd provider.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A TLS file could not be read.
    #[error("reading etcd TLS {what} file {path}: {source}")]
    TlsFile {
        /// `ca`, `cert` or `key`.
        what: &'static str,
        /// The path from the `etcd` block.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No endpoints were configured.
    #[error("no etcd endpoints configured")]
    NoEndpoints,
    /// One endpoint failed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// No endpoint is a reachable voting member with a leader.
    #[error("no healthy voting etcd member among {endpoints:?}: {errors}")]
    NoHealthyVoter {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// What each said.
        errors: String,
    },
    /// The member is not in the member list.
    #[error("etcd member {id} not found in the member list (from {endpoint})")]
    MemberNotFound {
        /// The member.
        id: MemberId,
        /// The endpoint that served the list.
        endpoint: String,
    },
    /// A learner did not catch up before the deadline.
    #[error("etcd learner {id} not promoted within {waited:?} via {endpoint}: {last}")]
    PromoteTimedOut {
        /// The learner.
        id: MemberId,
        /// The endpoint used.
        endpoint: String,
        /// How long it was retried.
        waited: Duration,
        /// etcd's last answer.
        last: String,
    },
    /// Leadership cannot move: no other started, reachable voter.
    #[error("cannot move etcd leadership away from {id}: {reason}")]
    CannotMoveLeader {
        /// The current leader.
        id: MemberId,
        /// Why.
        reason: String,
    },
    /// A new member failed to join.
    #[error("etcd member {id} at {endpoint} failed to join: {reason}")]
    JoinFailed {
        /// The member ID returned by `member add`.
        id: MemberId,
        /// Its client URL.
        endpoint: String,
        /// Why it is not joining.
        reason: JoinFailure,
    },
    /// Writing a snapshot file failed.
    #[error("writing etcd snapshot {path} (from {endpoint}): {source}")]
    SnapshotFile {
        /// Target file.
        path: PathBuf,
        /// Source endpoint.
        endpoint: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The etcd provider: a config plus the TLS material loaded once.
#[derive(Clone)]
pub struct EtcdProvider {
    config: EtcdConfig,
    tls: Option<TlsOptions>,
}

impl fmt::Debug for EtcdProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl EtcdProvider {
    /// Builds a provider, reading the TLS files now (errors name the file). Certificate
    /// *content* is only checked at the first handshake.
    pub fn new(config: EtcdConfig) -> Result<Self, EtcdError> {
        if config.endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let tls = match &config.tls {
            None => None,
            Some(files) => {
                let ca = read_file("ca", &files.ca_file)?;
                let cert = read_file("cert", &files.cert_file)?;
                let key = read_file("key", &files.key_file)?;
                Some(
                    TlsOptions::new()
                        .ca_certificate(Certificate::from_pem(ca))
                        .identity(Identity::from_pem(cert, key)),
                )
            }
        };
        Ok(Self { config, tls })
    }

    /// The config this provider was built from.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The same provider (same TLS material and timeout) for other endpoints, e.g. after a
    /// membership change.
    pub fn with_endpoints<S: Into<String>>(&self, endpoints: impl IntoIterator<Item = S>) -> Self {
        let mut p = self.clone();
        p.config.endpoints = endpoints.into_iter().map(Into::into).collect();
        p
    }

    /// An `etcd_client::Client` for exactly one endpoint, with this provider's TLS and
    /// per-request timeout. Lazy: a dead endpoint fails at the first call.
    pub async fn client(&self, endpoint: &str) -> Result<Client, EndpointError> {
        self.client_with_timeout(endpoint, Some(self.config.timeout))
            .await
    }

    async fn client_with_timeout(
        &self,
        endpoint: &str,
        request_timeout: Option<Duration>,
    ) -> Result<Client, EndpointError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.config.timeout)
            .with_keep_alive(Duration::from_secs(10), self.config.timeout);
        if let Some(t) = request_timeout {
            opts = opts.with_timeout(t);
        }
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(tls.clone());
        }
        Client::connect([endpoint], Some(opts)).await.map_err(|e| {
            let mut err = classify(endpoint, "connect", &e);
            // tonic says only "transport error" for unusable TLS material: name the file.
            if let Some(files) = &self.config.tls
                && let Err(reason) = tlsprobe::check_files(files)
            {
                err.kind = EndpointErrorKind::Tls;
                err.message = if err.message.split(": ").all(|p| p == "transport error") {
                    format!("TLS: {reason}")
                } else {
                    format!("TLS: {reason} (transport said: {})", err.message)
                };
            }
            err
        })
    }
}

impl EtcdProvider {
    /// Classifies a failed call; when TLS is configured and the transport only says the
    /// connection was closed (TLS 1.3 servers reject a client certificate *after* the
    /// handshake, so tonic never sees the alert), a direct TLS probe of the endpoint
    /// recovers the real reason (e.g. "received fatal alert: BadCertificate"). When the
    /// transport did see the alert, the probe adds which client certificate was refused.
    pub(crate) async fn explain(
        &self,
        endpoint: &str,
        operation: &str,
        e: &etcd_client::Error,
    ) -> EndpointError {
        let mut err = classify(endpoint, operation, e);
        let lower = err.message.to_lowercase();
        let vague = [
            "closed",
            "canceled",
            "cancelled",
            "reset",
            "broken pipe",
            "eof",
        ]
        .iter()
        .any(|m| lower.contains(m));
        // When the transport did see the server's alert, it still does not say which
        // certificate was refused: the probe does (tonic's error has no typed TLS cause).
        let alert = err.kind == EndpointErrorKind::Tls && lower.contains("fatal alert");
        let unexplained =
            err.kind != EndpointErrorKind::Tls && err.kind != EndpointErrorKind::Timeout && vague;
        if (alert || unexplained)
            && let Some(files) = &self.config.tls
            && let Some(reason) = tlsprobe::diagnose(endpoint, files, self.config.timeout).await
        {
            err.kind = EndpointErrorKind::Tls;
            err.message = format!("TLS: {reason} (transport said: {})", err.message);
        }
        err
    }
}

/// The error with all its causes, `: `-separated, without repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

const TLS_MARKERS: &[&str] = &[
    "certificate",
    "tls",
    "handshake",
    "unknownissuer",
    "unknown ca",
    "unknownca",
    "badcertificate",
    "bad certificate",
    "x509",
    "received fatal alert",
];

/// Classifies an etcd-client error for `endpoint`.
pub(crate) fn classify(endpoint: &str, operation: &str, e: &etcd_client::Error) -> EndpointError {
    use etcd_client::Error as E;
    let (message, transport) = match e {
        E::GRpcStatus(st) => {
            let mut msg = st.message().to_string();
            if let Some(src) = std::error::Error::source(st) {
                let c = chain(src);
                if c.contains(&msg) {
                    msg = c;
                } else if !msg.contains(&c) {
                    msg = format!("{msg}: {c}");
                }
            }
            // tonic reports a failed connection as Unavailable or Unknown, codes etcd also
            // answers with itself (e.g. "unhealthy cluster"): only the text tells them apart.
            let code = st.code();
            let transport = code == Code::DeadlineExceeded
                || (matches!(code, Code::Unavailable | Code::Unknown)
                    && (msg.contains("transport")
                        || msg.contains("connect")
                        || msg.contains("tcp")
                        || msg.contains("timed out")
                        || msg.contains("Timeout")
                        || msg.contains("deadline")));
            (msg, transport)
        }
        E::TransportError(_) | E::IoError(_) => (chain(e), true),
        other => (chain(other), false),
    };
    let lower = message.to_lowercase();
    let kind = if TLS_MARKERS.iter().any(|m| lower.contains(m)) {
        EndpointErrorKind::Tls
    } else if lower.contains("timed out") || lower.contains("timeout") || lower.contains("deadline")
    {
        EndpointErrorKind::Timeout
    } else if transport {
        EndpointErrorKind::Unreachable
    } else {
        EndpointErrorKind::Rpc
    };
    EndpointError {
        endpoint: endpoint.to_string(),
        operation: operation.to_string(),
        kind,
        message,
    }
}

/// Whether etcd answered `e` with status `code` and a message containing `text`.
///
/// etcd gives several answers the same code (Unavailable is also "request timed out" and
/// "no leader"; FailedPrecondition is also "can only promote a learner member" and "too many
/// learner members") and its statuses carry no detail beyond the message, so the message
/// says which answer it was.
pub(crate) fn is_etcd_status(e: &etcd_client::Error, code: Code, text: &str) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(st) if st.code() == code && st.message().contains(text))
}

pub(crate) fn timeout_error(endpoint: &str, operation: &str, after: Duration) -> EndpointError {
    EndpointError {
        endpoint: endpoint.to_string(),
        operation: operation.to_string(),
        kind: EndpointErrorKind::Timeout,
        message: format!("no answer within {after:?}"),
    }
}

/// Normalizes a URL for comparison (lowercase, no trailing slash).
pub(crate) fn norm_url(u: &str) -> String {
    u.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Host part of `scheme://host:port/...`, lowercase (brackets kept for IPv6); a string that
/// is no URI is returned whole, lowercase.
pub(crate) fn url_host(u: &str) -> String {
    let uri = u.trim().parse::<http::Uri>().ok();
    uri.as_ref()
        .and_then(http::Uri::host)
        .unwrap_or(u)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_round_trips_as_etcdctl_hex() {
        let id = MemberId(0x8e9e05c52164694d);
        assert_eq!(id.to_string(), "8e9e05c52164694d");
        assert_eq!("8e9e05c52164694d".parse::<MemberId>().unwrap(), id);
        assert_eq!(MemberId(1).to_string(), "0000000000000001");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"8e9e05c52164694d\"");
        assert_eq!(serde_json::from_str::<MemberId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<MemberId>("\"xyz\"").is_err());
    }

    #[test]
    fn url_host_extracts_the_address_peers_are_matched_by() {
        assert_eq!(url_host("https://192.168.0.244:2380"), "192.168.0.244");
        assert_eq!(url_host("https://[fd00::1]:2380/"), "[fd00::1]");
        assert_eq!(url_host("http://Node-1:2379"), "node-1");
        assert_eq!(url_host("https://[FD00::1]:2380"), "[fd00::1]");
        assert_eq!(url_host("http://10.0.0.1"), "10.0.0.1");
        assert_eq!(url_host("10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(url_host("https://user@10.0.0.2:2379/x?y"), "10.0.0.2");
        assert_eq!(
            norm_url("HTTPS://127.0.0.1:2379/"),
            "https://127.0.0.1:2379"
        );
    }

    #[test]
    fn provider_refuses_empty_endpoints() {
        let e = EtcdProvider::new(EtcdConfig::new(Vec::<String>::new())).unwrap_err();
        assert!(matches!(e, EtcdError::NoEndpoints));
    }
}
