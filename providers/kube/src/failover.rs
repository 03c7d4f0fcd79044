//! Choosing the API server to talk to: the kubeconfig's server, else the first fallback that
//! answers ([`KubeSettings::fallback_servers`](crate::KubeSettings::fallback_servers)).
//!
//! The rule (docs/kubernetes.md, "When the kubeconfig's server does not answer"):
//! - a server *answers* when `GET /version` gets any HTTP response, an error status included:
//!   a 401 or 403 is the server speaking, so bad credentials stay an error naming that server
//!   and never send k3splan to the next address;
//! - a server *does not answer* when the connection fails below HTTP: refused, reset, no
//!   route, timed out, or a TLS handshake that fails (a proxy whose backend is dead, a
//!   certificate that does not name the address). Only then is the next candidate tried;
//! - a local failure (a credentials plugin that fails) is the same for every server: it is
//!   returned at once, without trying others.
//!
//! Every candidate uses the kubeconfig's CA and client credentials: only the URL changes. A
//! k3s server's certificate names its own node IPs, `127.0.0.1`, `localhost` and the
//! `tls-san` values (k3s-io/k3s `pkg/cli/server/server.go`: "Ensure that we add the
//! localhost name/ip and node name/ip to the SAN list. This list is shared by the certs for
//! the supervisor, kube-apiserver cert, and etcd"; `ControlConfig.SANs` starts from
//! `cfg.TLSSan`). So each server's own `https://NODE_IP:6443` verifies, and the VIP does only
//! when it is in `tls-san`; a certificate that does not name the address is reported as such.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;

/// Another address of the same API server (same CA, same credentials), tried when the
/// kubeconfig's server does not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackServer {
    /// `https://HOST:PORT`.
    pub url: String,
    /// What it is, for messages: `the VIP`, `api_endpoint`, `server server-2`.
    pub what: String,
}

/// Why a candidate did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Connection refused (nothing listens there, or the host is down).
    Refused,
    /// Nothing answered in time (connect or `GET /version`).
    TimedOut,
    /// The server's certificate does not name the address dialled.
    CertificateName,
    /// Any other failure below HTTP (reset, no route, TLS handshake, ...).
    Other,
}

/// One candidate that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The URL dialled.
    pub url: String,
    /// `the kubeconfig's server`, or the fallback's [`FallbackServer::what`].
    pub what: String,
    /// The kind of failure.
    pub kind: Unanswered,
    /// The failure, in words (for a certificate: which name it lacks and what to do).
    pub reason: String,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.url, self.what, self.reason)
    }
}

/// What the kubeconfig's server is called in messages.
pub const KUBECONFIG_SERVER: &str = "the kubeconfig's server";

/// The outcome of one probe.
pub(crate) enum Probe {
    /// Some HTTP answer came back.
    Answered,
    /// The connection failed below HTTP.
    Unanswered(Unanswered, String),
    /// A local failure, the same for every server (a credentials plugin).
    Local(String),
}

/// `GET /version` on `client`, bounded by `limit`.
pub(crate) async fn probe(client: &kube::Client, url: &str, limit: Duration) -> Probe {
    match tokio::time::timeout(limit, client.apiserver_version()).await {
        Err(_) => Probe::Unanswered(
            Unanswered::TimedOut,
            format!("no answer to GET /version within {}s", limit.as_secs()),
        ),
        Ok(Ok(_)) => Probe::Answered,
        Ok(Err(e)) => classify(&e, url),
    }
}

fn classify(e: &kube::Error, url: &str) -> Probe {
    match e {
        // An HTTP status (401 and 403 included) or a body that is not JSON: the server spoke.
        kube::Error::Api(_) | kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => {
            Probe::Answered
        }
        kube::Error::Auth(_) => Probe::Local(chain(e)),
        _ => {
            let text = chain(e);
            let lower = text.to_lowercase();
            if lower.contains("not valid for name") || text.contains("NotValidForName") {
                let host = crate::url_host(url).unwrap_or(url);
                return Probe::Unanswered(
                    Unanswered::CertificateName,
                    format!(
                        "the server certificate does not name {host} (k3s names each server's own IPs, 127.0.0.1, localhost and its tls-san values: add {host} to tls-san on the servers): {}",
                        short_tls(&text)
                    ),
                );
            }
            if lower.contains("connection refused") {
                return Probe::Unanswered(Unanswered::Refused, "connection refused".into());
            }
            if lower.contains("connection reset") {
                return Probe::Unanswered(Unanswered::Other, "connection reset".into());
            }
            if lower.contains("timed out") || lower.contains("elapsed") {
                return Probe::Unanswered(Unanswered::TimedOut, "timed out".into());
            }
            Probe::Unanswered(Unanswered::Other, text)
        }
    }
}

/// The part of a TLS error chain that says what the certificate names.
fn short_tls(text: &str) -> &str {
    match text.find("certificate not valid for name") {
        Some(i) => &text[i..],
        None => text,
    }
}

/// An error and its sources, `: `-joined, without repeating a source its parent already
/// spells out.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !message.contains(&t) {
            message.push_str(": ");
            message.push_str(&t);
        }
        src = s.source();
    }
    message
}

/// A candidate: its URL, what it is, and a client for it.
pub(crate) struct Candidate {
    pub url: String,
    pub what: String,
    pub client: kube::Client,
}

/// What [`choose`] found.
pub(crate) enum Chosen {
    /// This candidate answered (its index in the list); `failed` did not, before it.
    Answered { index: usize, failed: Vec<Attempt> },
    /// Nobody answered.
    NoneAnswered(Vec<Attempt>),
    /// A local failure stopped the search.
    Local { url: String, message: String },
}

/// Probes `candidates[0]` alone, then, if it does not answer, all the others at once, and
/// takes the first in list order that answers (so the order is a preference, and dead
/// addresses cost one timeout together, not one each).
pub(crate) async fn choose(candidates: &[Candidate], limit: Duration) -> Chosen {
    let mut failed = Vec::new();
    let attempt = |c: &Candidate, kind, reason| Attempt {
        url: c.url.clone(),
        what: c.what.clone(),
        kind,
        reason,
    };
    let Some(first) = candidates.first() else {
        return Chosen::NoneAnswered(failed);
    };
    match probe(&first.client, &first.url, limit).await {
        Probe::Answered => return Chosen::Answered { index: 0, failed },
        Probe::Local(message) => {
            return Chosen::Local {
                url: first.url.clone(),
                message,
            };
        }
        Probe::Unanswered(kind, reason) => failed.push(attempt(first, kind, reason)),
    }
    let mut rest: FuturesOrdered<_> = candidates[1..]
        .iter()
        .map(|c| async move { probe(&c.client, &c.url, limit).await })
        .collect();
    let mut index = 1;
    while let Some(p) = rest.next().await {
        let c = &candidates[index];
        match p {
            Probe::Answered => return Chosen::Answered { index, failed },
            Probe::Local(message) => {
                return Chosen::Local {
                    url: c.url.clone(),
                    message,
                };
            }
            Probe::Unanswered(kind, reason) => failed.push(attempt(c, kind, reason)),
        }
        index += 1;
    }
    Chosen::NoneAnswered(failed)
}

/// The same URL, for deduplication: scheme and host lower-cased, no trailing `/`.
pub(crate) fn same_url(a: &str, b: &str) -> bool {
    norm(a) == norm(b)
}

fn norm(u: &str) -> String {
    u.trim().trim_end_matches('/').to_ascii_lowercase()
}
