//! issue 19 point 4: when the kubeconfig's server does not answer, the provider uses the first
//! fallback address that does (same CA, same credentials), says which, and lists every URL it
//! tried when none answers. Bad credentials are an answer: they never send it elsewhere.
//! Against the in-memory API server over HTTPS, with real TCP listeners standing for dead,
//! hung and proxied addresses.

use std::time::Duration;

use k3splan_kube::{
    FallbackServer, KubeError, KubeProvider, KubeSettings, ObserveRequest, Unanswered,
};
use k3splan_testkit_kubeapi::{KubeApiServer, SEED004_YAML, ServerOptions};
use tokio::net::TcpListener;

/// An address where nothing listens (bound, then closed): connection refused.
async fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("https://127.0.0.1:{port}")
}

/// A TCP proxy on `ip:0` to `target` (as the lab's `NODE_IP:6443`), returning its port.
async fn proxy(ip: &str, target: std::net::SocketAddr) -> u16 {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    port
}

fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("https://").parse().unwrap()
}

async fn server(opts: ServerOptions) -> KubeApiServer {
    let s = KubeApiServer::start(opts).await.unwrap();
    s.load_yaml("seed004.yaml", SEED004_YAML).unwrap();
    s
}

/// The server's kubeconfig with its `server:` replaced by `url` (and the token by `token`).
fn kubeconfig(
    s: &KubeApiServer,
    dir: &tempfile::TempDir,
    url: &str,
    token: &str,
) -> std::path::PathBuf {
    let text = s
        .kubeconfig_yaml()
        .replace(
            &format!("server: {}\n", s.url()),
            &format!("server: {url}\n"),
        )
        .replace("token: kubeapi-test-token\n", &format!("token: {token}\n"));
    let p = dir
        .path()
        .join(format!("kubeconfig-{}", url.replace([':', '/'], "_")));
    std::fs::write(&p, text).unwrap();
    p
}

fn fallback(url: &str, what: &str) -> FallbackServer {
    FallbackServer {
        url: url.into(),
        what: what.into(),
    }
}

async fn connect(
    kubeconfig: std::path::PathBuf,
    fallbacks: Vec<FallbackServer>,
) -> Result<KubeProvider, KubeError> {
    KubeProvider::connect(KubeSettings {
        kubeconfig: Some(kubeconfig),
        connect_timeout: Duration::from_secs(1),
        fallback_servers: fallbacks,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_dead_kubeconfig_server_falls_over_to_the_first_fallback_that_answers_and_says_so() {
    let s = server(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url().await;
    let dead2 = dead_url().await;
    let kc = kubeconfig(&s, &dir, &dead, "kubeapi-test-token");
    let live = s.url().to_string();
    let kube = connect(
        kc,
        vec![
            fallback(&dead2, "the VIP"),
            fallback(&live, "server server-2"),
        ],
    )
    .await
    .expect("a fallback answers");
    assert_eq!(kube.endpoint(), live);
    assert_eq!(kube.kubeconfig_server(), dead);
    let note = kube.failover_note().expect("a note says which answered");
    assert_eq!(
        note,
        format!(
            "the kubeconfig's {dead} did not answer (connection refused); {dead2} (the VIP) did not answer (connection refused); using {live} (server server-2)"
        )
    );
    let tried: Vec<Unanswered> = kube.failed_candidates().iter().map(|a| a.kind).collect();
    assert_eq!(tried, [Unanswered::Refused, Unanswered::Refused]);
    // The cluster is read through it.
    let o = kube.observe(&ObserveRequest::default()).await.unwrap();
    assert!(!o.nodes.is_empty());
}

#[tokio::test]
async fn the_order_is_a_preference_and_a_live_kubeconfig_server_needs_no_note() {
    let s = server(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = addr_of(s.url()).port();
    let by_name = format!("https://localhost:{port}");
    // Both fallbacks answer: the first one listed is used.
    let kc = kubeconfig(&s, &dir, &dead_url().await, "kubeapi-test-token");
    let kube = connect(
        kc,
        vec![
            fallback(&by_name, "the VIP"),
            fallback(s.url(), "server server-1"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(kube.endpoint(), by_name);
    assert!(
        kube.failover_note()
            .unwrap()
            .ends_with(&format!("using {by_name} (the VIP)"))
    );
    // The kubeconfig's server answers: it is used, with nothing to say.
    let kc = kubeconfig(&s, &dir, s.url(), "kubeapi-test-token");
    let kube = connect(kc, vec![fallback(&by_name, "the VIP")])
        .await
        .unwrap();
    assert_eq!(kube.endpoint(), s.url());
    assert_eq!(kube.failover_note(), None);
}

#[tokio::test]
async fn when_nothing_answers_the_error_lists_every_url_tried_and_is_unreachable() {
    let s = server(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dead_url().await, dead_url().await, dead_url().await);
    // An address that accepts connections and never answers (a stopped process).
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("https://{}", hung.local_addr().unwrap());
    let kc = kubeconfig(&s, &dir, &a, "kubeapi-test-token");
    let started = std::time::Instant::now();
    let err = connect(
        kc,
        vec![
            fallback(&b, "the VIP"),
            fallback(&hung_url, "api_endpoint"),
            fallback(&c, "server server-3"),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let KubeError::NoServerAnswered { tried } = &err else {
        panic!("{err}")
    };
    let urls: Vec<&str> = tried.iter().map(|t| t.url.as_str()).collect();
    assert_eq!(urls, [a.as_str(), &b, &hung_url, &c]);
    assert_eq!(tried[2].kind, Unanswered::TimedOut, "{err}");
    let text = err.to_string();
    for (u, what) in [
        (&a, "the kubeconfig's server"),
        (&b, "the VIP"),
        (&hung_url, "api_endpoint"),
        (&c, "server server-3"),
    ] {
        assert!(text.contains(&format!("{u} ({what}): ")), "{text}");
    }
    // The hung address costs one bounded wait (connect timeout + 5 s), not the read timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(hung);
}

#[tokio::test]
async fn bad_credentials_are_an_answer_naming_the_server_never_a_reason_to_go_elsewhere() {
    let s = server(ServerOptions {
        bearer_token: Some("right".into()),
        ..Default::default()
    })
    .await;
    let other = server(ServerOptions {
        bearer_token: Some("wrong".into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The kubeconfig's server answers 401: it stays in use; the error names it.
    let kc = kubeconfig(&s, &dir, s.url(), "wrong");
    let kube = connect(kc, vec![fallback(other.url(), "the VIP")])
        .await
        .unwrap();
    assert_eq!(kube.endpoint(), s.url());
    let err = kube.observe(&ObserveRequest::default()).await.unwrap_err();
    assert!(!err.is_unreachable(), "{err}");
    assert!(
        matches!(&err, KubeError::Api { code: 401, endpoint, .. } if endpoint == s.url()),
        "{err}"
    );
    // The kubeconfig's server is dead and the fallback answers 401: the fallback is used,
    // and its 401 is the error (with the server named).
    let kc = kubeconfig(&s, &dir, &dead_url().await, "wrong");
    let kube = connect(kc, vec![fallback(s.url(), "the VIP")])
        .await
        .unwrap();
    assert_eq!(kube.endpoint(), s.url());
    let err = kube.observe(&ObserveRequest::default()).await.unwrap_err();
    assert!(
        matches!(&err, KubeError::Api { code: 401, endpoint, .. } if endpoint == s.url()),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_that_does_not_name_the_fallback_address_is_reported_as_such() {
    // The server's certificate names 127.0.0.1 and localhost only; 127.0.0.2 reaches it
    // through a proxy, as a VIP missing from k3s's tls-san does.
    let s = server(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = proxy("127.0.0.2", addr_of(s.url())).await;
    let via = format!("https://127.0.0.2:{port}");
    let kc = kubeconfig(&s, &dir, &dead_url().await, "kubeapi-test-token");
    let err = connect(kc, vec![fallback(&via, "the VIP")])
        .await
        .unwrap_err();
    let KubeError::NoServerAnswered { tried } = &err else {
        panic!("{err}")
    };
    assert_eq!(tried[1].kind, Unanswered::CertificateName, "{err}");
    assert!(
        tried[1]
            .reason
            .starts_with("the server certificate does not name 127.0.0.2"),
        "{err}"
    );
    assert!(tried[1].reason.contains("tls-san"), "{err}");
    // With the address in the certificate (as k3s does with tls-san), it answers.
    let named = server(ServerOptions {
        extra_sans: vec!["127.0.0.2".parse().unwrap()],
        ..Default::default()
    })
    .await;
    let port = proxy("127.0.0.2", addr_of(named.url())).await;
    let via = format!("https://127.0.0.2:{port}");
    let kc = kubeconfig(&named, &dir, &dead_url().await, "kubeapi-test-token");
    let kube = connect(kc, vec![fallback(&via, "the VIP")]).await.unwrap();
    assert_eq!(kube.endpoint(), via);
    kube.observe(&ObserveRequest::default()).await.unwrap();
}

/// The cluster CA the supervisor probe checks answers against comes from the kubeconfig
/// the provider connects with, resolved the same way: the API server's CA for a TLS
/// server, nothing for a kubeconfig that names no CA.
#[tokio::test]
async fn cluster_ca_is_the_kubeconfigs_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = server(ServerOptions::default()).await;
    let path = dir.path().join("tls");
    tls.write_kubeconfig(&path).unwrap();
    let settings = KubeSettings {
        kubeconfig: Some(path),
        ..KubeSettings::default()
    };
    let ca = KubeProvider::cluster_ca(&settings)
        .await
        .expect("a TLS server's kubeconfig names its CA");
    assert_eq!(ca.len(), 1, "one CA certificate");
    // The DER is the PEM's body: its base64 length is 4 * ceil(len / 3).
    let body: String = tls
        .ca_pem()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(
        body.len(),
        4 * ca[0].len().div_ceil(3),
        "DER of the server's CA"
    );

    let plain = server(ServerOptions {
        tls: false,
        ..ServerOptions::default()
    })
    .await;
    let path = dir.path().join("plain");
    plain.write_kubeconfig(&path).unwrap();
    let settings = KubeSettings {
        kubeconfig: Some(path),
        ..KubeSettings::default()
    };
    assert_eq!(KubeProvider::cluster_ca(&settings).await, None);
}
