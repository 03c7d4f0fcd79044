//! Direct TLS probe of an endpoint, used only to explain a vague transport failure.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::{TlsFiles, url_host};

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
    let rest = endpoint
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(endpoint);
    let hostport = rest.split('/').next()?.to_string();
    let host = url_host(endpoint);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();

    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&files.ca_file).ok()? {
        roots.add(c.ok()?).ok()?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(host).ok()?;
    let tcp = tokio::net::TcpStream::connect(&hostport).await.ok()?;
    let mut tls = match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => return Some(format!("handshake failed: {e}")),
    };
    // HTTP/2 preface + empty SETTINGS: a healthy server answers with its SETTINGS; a server
    // that rejected our certificate answers with an alert.
    let _ = tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Err(e) => {
            let msg = e.to_string();
            let lower = msg.to_lowercase();
            if lower.contains("alert") || lower.contains("certificate") {
                Some(format!("the server rejected the connection: {msg}"))
            } else {
                None
            }
        }
        Ok(_) => None,
    }
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
    }
}
