//! One client over every configured endpoint, for callers that use etcd as a key-value store
//! rather than member by member (k3splan's etcd state backend): etcd-client balances its
//! requests over the endpoints and fails over when one dies.
//!
//! Guarantees:
//! - TLS files are read when the [`SharedClient`] is built, and an unreadable file is an
//!   error naming it ([`EtcdError::TlsFile`]); a CA alone is allowed (the server is checked
//!   against it, no client certificate is sent), a client certificate needs its key;
//! - connecting happens once, at the first [`SharedClient::get`], bounded by the timeout; a
//!   failed connect is not remembered (the next call tries again).
//!
//! Caveat: unlike [`EtcdProvider`](crate::EtcdProvider)'s per-endpoint clients, a shared
//! client cannot say which member answered.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::OnceCell;

use crate::{EtcdError, read_file};

/// Where a [`SharedClient`] connects, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Client URLs (`https://10.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// CA that signed the server certificates (PEM); `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Bound of connecting (and the keep-alive's answer).
    pub timeout: Duration,
}

/// Why a [`SharedClient`] could not be built or connected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints configured")]
    NoEndpoints,
    /// A TLS file could not be read.
    #[error(transparent)]
    Tls(#[from] EtcdError),
    #[error("cert_file and key_file must be given together")]
    HalfIdentity,
    #[error("connect: {}", error_chain(.0))]
    Connect(#[source] etcd_client::Error),
    #[error("connect: no answer within {0:?}")]
    ConnectTimeout(Duration),
}

/// A lazily connected client over all endpoints. Cheap to share; clones of the client it
/// hands out share one connection.
pub struct SharedClient {
    settings: ClientSettings,
    tls: Option<TlsOptions>,
    client: OnceCell<Client>,
}

impl std::fmt::Debug for SharedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SharedClient {
    /// Reads the TLS files (nothing is dialled yet).
    pub fn new(settings: ClientSettings) -> Result<Self, ClientError> {
        if settings.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let s = &settings;
        let mut tls = None;
        if s.ca_file.is_some() || s.cert_file.is_some() || s.key_file.is_some() {
            let mut t = TlsOptions::new();
            if let Some(ca) = &s.ca_file {
                t = t.ca_certificate(Certificate::from_pem(read_file("ca", ca)?));
            }
            match (&s.cert_file, &s.key_file) {
                (Some(c), Some(k)) => {
                    let (cert, key) = (read_file("cert", c)?, read_file("key", k)?);
                    t = t.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => return Err(ClientError::HalfIdentity),
            }
            tls = Some(t);
        }
        Ok(SharedClient {
            settings,
            tls,
            client: OnceCell::new(),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The client, connecting on first use.
    pub async fn get(&self) -> Result<Client, ClientError> {
        let timeout = self.settings.timeout;
        let c = self
            .client
            .get_or_try_init(|| async {
                let mut opts = ConnectOptions::new()
                    .with_connect_timeout(timeout)
                    .with_keep_alive(Duration::from_secs(5), timeout);
                if let Some(tls) = &self.tls {
                    opts = opts.with_tls(tls.clone());
                }
                let endpoints = self.settings.endpoints.clone();
                match tokio::time::timeout(timeout, Client::connect(endpoints, Some(opts))).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(ClientError::Connect(e)),
                    Err(_) => Err(ClientError::ConnectTimeout(timeout)),
                }
            })
            .await?;
        Ok(c.clone())
    }
}

/// The error with its causes, `: `-separated, without repeats.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::chain(e)
}
