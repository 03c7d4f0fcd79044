//! Direct TLS probes: explain a vague transport failure, and read the cluster ID a peer
//! URL answers with (to recognise a member started on a stale data dir).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::{MemberId, TlsFiles};

/// Why the TLS files do not make a usable client identity; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsFileError {
    /// The CA file could not be read, or holds a certificate rustls refuses.
    #[error("CA file {}: {source}", path.display())]
    Ca {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The CA file is not PEM.
    #[error("CA file {}: not PEM: {source}", path.display())]
    CaNotPem { path: PathBuf, source: pem::Error },
    /// The CA file holds no certificate.
    #[error("CA file {}: no PEM certificate in it", path.display())]
    CaEmpty { path: PathBuf },
    /// The client certificate file could not be read.
    #[error("client certificate file {}: {source}", path.display())]
    Cert { path: PathBuf, source: pem::Error },
    /// The client certificate file is not PEM.
    #[error("client certificate file {}: not PEM: {source}", path.display())]
    CertNotPem { path: PathBuf, source: pem::Error },
    /// The client certificate file holds no certificate.
    #[error("client certificate file {}: no PEM certificate in it", path.display())]
    CertEmpty { path: PathBuf },
    /// The client key file holds no private key.
    #[error("client key file {}: no PEM private key in it ({source})", path.display())]
    Key { path: PathBuf, source: pem::Error },
    /// rustls offers no protocol version (does not happen with its defaults).
    #[error(transparent)]
    Protocol(rustls::Error),
    /// The key is not the certificate's.
    #[error(
        "client key file {} does not fit the certificate in {}: {source}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        source: rustls::Error,
    },
}

/// Why a peer URL did not tell its cluster ID.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerCheckError {
    #[error("{url}/members: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("bad peer URL {url}")]
    BadUrl { url: String },
    #[error("connecting to {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url} needs TLS files")]
    NoTlsFiles { url: String },
    #[error(transparent)]
    TlsFiles(#[from] TlsFileError),
    #[error(transparent)]
    ServerName(#[from] InvalidDnsNameError),
    #[error("TLS to {url}: {source}")]
    Handshake { url: String, source: std::io::Error },
    #[error("{url}/members: {source}")]
    Exchange { url: String, source: std::io::Error },
    #[error("{url}/members: bad cluster ID {value:?}: {source}")]
    BadClusterId {
        url: String,
        value: String,
        source: std::num::ParseIntError,
    },
    #[error("{url}/members answered {status:?} without a cluster ID")]
    NoClusterId { url: String, status: String },
}

/// A rustls client config from the TLS files; errors name the file at fault and why.
fn client_config(files: &TlsFiles, alpn: &[u8]) -> Result<ClientConfig, TlsFileError> {
    let ca_path = || files.ca_file.clone();
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::pem_file_iter(&files.ca_file).map_err(|e| TlsFileError::Ca {
        path: ca_path(),
        source: Box::new(e),
    })?;
    for c in ca {
        let c = c.map_err(|source| TlsFileError::CaNotPem {
            path: ca_path(),
            source,
        })?;
        roots.add(c).map_err(|e| TlsFileError::Ca {
            path: ca_path(),
            source: Box::new(e),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsFileError::CaEmpty { path: ca_path() });
    }
    let cert_path = || files.cert_file.clone();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|source| TlsFileError::Cert {
            path: cert_path(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsFileError::CertNotPem {
            path: cert_path(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::CertEmpty { path: cert_path() });
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key_file).map_err(|source| TlsFileError::Key {
            path: files.key_file.clone(),
            source,
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsFileError::Protocol)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|source| TlsFileError::KeyMismatch {
            key: files.key_file.clone(),
            cert: cert_path(),
            source,
        })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Checks that the TLS files make a usable client identity: the error names the file at
/// fault and the reason (no certificate in it, not PEM, a key that does not fit the
/// certificate). tonic only says "transport error" for all of these.
pub(crate) fn check_files(files: &TlsFiles) -> Result<(), TlsFileError> {
    client_config(files, b"h2").map(|_| ())
}

/// `(host:port, host without brackets)` of a URL.
fn target(url: &str) -> Option<(String, String)> {
    let uri = url.trim().parse::<http::Uri>().ok()?;
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    Some((
        authority.as_str().to_string(),
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    ))
}

/// Handshakes with `endpoint` using `files` and reads the first answer. Returns the TLS
/// failure (handshake error, or an alert the server sent after the handshake), or `None`
/// when TLS itself works (or the probe cannot tell).
pub(crate) async fn diagnose(
    endpoint: &str,
    files: &TlsFiles,
    timeout: Duration,
) -> Option<String> {
    tokio::time::timeout(timeout, run(endpoint, files))
        .await
        .ok()
        .flatten()
}

async fn run(endpoint: &str, files: &TlsFiles) -> Option<String> {
    let (hostport, host) = target(endpoint)?;
    let config = match client_config(files, b"h2") {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    let name = ServerName::try_from(host).ok()?;
    let tcp = tokio::net::TcpStream::connect(&hostport).await.ok()?;
    let mut tls = match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "handshake failed: {e} (the server's certificate is checked against the CA file {})",
                files.ca_file.display()
            ));
        }
    };
    // HTTP/2 preface + empty SETTINGS: a healthy server answers with its SETTINGS; a server
    // that rejected our certificate answers with an alert.
    let _ = tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Err(e) if rejects_certificate(&e) => Some(format!(
            "the server rejected the client certificate {}: {e}",
            files.cert_file.display()
        )),
        Err(_) | Ok(_) => None,
    }
}

/// Whether a read failed on a TLS alert or a certificate error (tokio-rustls carries the
/// rustls error inside the I/O error).
fn rejects_certificate(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(
            rustls::Error::AlertReceived(_)
                | rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
        )
    )
}

/// Asks an etcd *peer* URL for `/members` and returns the `X-Etcd-Cluster-ID` it answers
/// with: the cluster that process believes it belongs to. etcd serves its peer port before
/// it is ready for clients, so this works for a member that hangs on a stale data dir.
/// Needs credentials the peer port accepts (`--peer-trusted-ca-file`).
pub(crate) async fn peer_cluster_id(
    peer_url: &str,
    files: Option<&TlsFiles>,
    timeout: Duration,
) -> Result<MemberId, PeerCheckError> {
    match tokio::time::timeout(timeout, peer_cluster_id_inner(peer_url, files)).await {
        Ok(r) => r,
        Err(_) => Err(PeerCheckError::Timeout {
            url: peer_url.to_string(),
            timeout,
        }),
    }
}

async fn peer_cluster_id_inner(
    peer_url: &str,
    files: Option<&TlsFiles>,
) -> Result<MemberId, PeerCheckError> {
    let url = || peer_url.to_string();
    let (hostport, host) = target(peer_url).ok_or_else(|| PeerCheckError::BadUrl { url: url() })?;
    let tcp = tokio::net::TcpStream::connect(&hostport)
        .await
        .map_err(|source| PeerCheckError::Connect { url: url(), source })?;
    let request = format!("GET /members HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    let response = if peer_url.starts_with("https://") {
        let files = files.ok_or_else(|| PeerCheckError::NoTlsFiles { url: url() })?;
        let config = client_config(files, b"http/1.1")?;
        let name = ServerName::try_from(host)?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| PeerCheckError::Handshake { url: url(), source })?;
        exchange(tls, &request).await
    } else {
        exchange(tcp, &request).await
    }
    .map_err(|source| PeerCheckError::Exchange { url: url(), source })?;
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    let status = head.lines().next().unwrap_or("");
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("x-etcd-cluster-id")
        {
            return v
                .trim()
                .parse::<MemberId>()
                .map_err(|source| PeerCheckError::BadClusterId {
                    url: url(),
                    value: v.to_string(),
                    source,
                });
        }
    }
    Err(PeerCheckError::NoClusterId {
        url: url(),
        status: status.to_string(),
    })
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> Result<String, std::io::Error> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                // Only the header is needed; etcd keeps the connection open.
                if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 1 << 16 {
                    break;
                }
            }
            // A peer closing TLS without close_notify after a complete answer is fine.
            Err(e) if !buf.is_empty() => {
                tracing::debug!("peer read ended: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k3splan_testkit_etcd::{EtcdCluster, Pki};

    fn files(t: &k3splan_testkit_etcd::TlsFiles) -> TlsFiles {
        TlsFiles {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
        }
    }

    #[tokio::test]
    async fn probe_names_a_rejected_client_certificate_and_passes_a_good_one() {
        let c = tokio::task::spawn_blocking(|| EtcdCluster::start(1))
            .await
            .unwrap()
            .unwrap();
        let ep = c.member(0).client_url();
        let t = Duration::from_secs(5);
        assert_eq!(diagnose(&ep, &files(c.client_tls()), t).await, None);
        let other = Pki::create(&c.root().join("other"), "other-ca").unwrap();
        let mut bad = files(c.client_tls());
        let intruder = other.issue_client("intruder").unwrap();
        bad.cert_file = intruder.cert_file;
        bad.key_file = intruder.key_file;
        let why = diagnose(&ep, &bad, t).await.expect("rejection explained");
        assert!(why.contains("BadCertificate"), "{why}");
        let mut wrong_ca = files(c.client_tls());
        wrong_ca.ca_file = other.ca_file().to_path_buf();
        let why = diagnose(&ep, &wrong_ca, t)
            .await
            .expect("handshake failure explained");
        assert!(why.contains("UnknownIssuer"), "{why}");
        // The peer port tells which cluster the process belongs to.
        let peer = c.member(0).peer_url();
        let id = peer_cluster_id(&peer, Some(&files(c.client_tls())), t)
            .await
            .unwrap();
        assert_ne!(id.0, 0);
        let err = peer_cluster_id(&peer, Some(&wrong_ca), t)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&peer), "{err}");
    }
}
