//! The probe of a server's supervisor port: `GET https://ADDRESS:6443/cacerts` from the
//! machine running k3splan.
//!
//! k3s serves `/cacerts` on the supervisor port without authentication: in k3s-io/k3s
//! `pkg/server/router.go` it is registered on the outer router
//! (`router.Path("/cacerts").Handler(cacerts(serverConfig.Runtime.ServerCA))`), whose
//! `NotFoundHandler` is the authenticated one; joining servers and agents fetch the CA
//! there before they have credentials. The body is the server CA in PEM, the CA a k3s
//! kubeconfig trusts (`certificate-authority-data`).
//!
//! Trust: the probe sends nothing secret, so it does not authenticate the server through
//! the TLS handshake (a server's certificate names the addresses k3s put in it, which need
//! not include the address k3splan dials). It authenticates the *answer* instead: when the
//! cluster CA is known (from the kubeconfig), the server answers only if `/cacerts` holds
//! that CA — a server of another cluster, or anything else on the port, does not. When the
//! CA is not known, any PEM certificate in a 200 answer counts (said in the docs).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::observed::Supervisor;

/// The k3s supervisor (and API) port.
pub const SUPERVISOR_PORT: u16 = 6443;

/// The DER certificates of the PEM blocks in `pem`.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in pem.lines() {
        let l = line.trim();
        if l == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        } else if l == "-----END CERTIFICATE-----" {
            if let Some(b) = cur.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b)
            {
                out.push(der);
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(l);
        }
    }
    out
}

/// Accepts any server certificate: the answer is checked instead (see the module docs).
#[derive(Debug)]
struct AnswerChecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnswerChecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnswerChecked(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Whether an I/O error means "nothing serves there" (refused, reset, no route) rather
/// than "no answer".
fn is_refusal(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::HostUnreachable
            | K::NetworkUnreachable
    )
}

/// Probes `https://ADDRESS:6443/cacerts` within `timeout`. `ca` is the cluster CA (DER
/// certificates) when known.
pub async fn probe(address: IpAddr, ca: Option<&[Vec<u8>]>, timeout: Duration) -> Supervisor {
    match tokio::time::timeout(timeout, fetch_cacerts(address)).await {
        Err(_) => Supervisor::Unknown {
            reason: format!(
                "https://{}/cacerts did not answer within {}s",
                SocketAddr::new(address, SUPERVISOR_PORT),
                timeout.as_secs()
            ),
        },
        Ok(Err(e)) if is_refusal(&e) => Supervisor::Refused {
            reason: format!("{}: {e}", SocketAddr::new(address, SUPERVISOR_PORT)),
        },
        Ok(Err(e)) => Supervisor::Unknown {
            reason: format!("{}: {e}", SocketAddr::new(address, SUPERVISOR_PORT)),
        },
        Ok(Ok((status, body))) => judge(status, &body, ca),
    }
}

/// What an answer of `/cacerts` says.
fn judge(status: u16, body: &str, ca: Option<&[Vec<u8>]>) -> Supervisor {
    if status != 200 {
        return Supervisor::Refused {
            reason: format!("/cacerts answered HTTP {status}"),
        };
    }
    let certs = pem_certs(body);
    if certs.is_empty() {
        return Supervisor::Refused {
            reason: "/cacerts answered without a certificate".into(),
        };
    }
    match ca {
        Some(ca) if !ca.iter().any(|c| certs.contains(c)) => Supervisor::Refused {
            reason: "/cacerts serves another CA than the kubeconfig's: a server of another cluster"
                .into(),
        },
        _ => Supervisor::Answering,
    }
}

/// `GET /cacerts` over TLS; the status and the body.
async fn fetch_cacerts(address: IpAddr) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::new(address, SUPERVISOR_PORT);
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(address.into());
    let mut tls = tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await?;
    let host = match address {
        IpAddr::V4(a) => format!("{a}:{SUPERVISOR_PORT}"),
        IpAddr::V6(a) => format!("[{a}]:{SUPERVISOR_PORT}"),
    };
    let req = format!(
        "GET /cacerts HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nUser-Agent: k3splan\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    // A server that closes without close_notify still gave its answer.
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP answer"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";

    #[test]
    fn answers_are_judged_against_the_cluster_ca() {
        let ca = pem_certs(PEM);
        assert_eq!(ca, vec![vec![0, 1, 2, 3, 4]]);
        assert!(judge(200, PEM, Some(&ca)).is_answering());
        assert!(judge(200, PEM, None).is_answering());
        let other = "-----BEGIN CERTIFICATE-----\nBQY=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            judge(200, other, Some(&ca)),
            Supervisor::Refused { .. }
        ));
        assert!(matches!(
            judge(401, PEM, Some(&ca)),
            Supervisor::Refused { .. }
        ));
        assert!(matches!(judge(200, "ok", None), Supervisor::Refused { .. }));
        assert_eq!(dechunk("4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"), "abcdef");
    }
}
