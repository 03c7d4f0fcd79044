//! Shared helpers of the etcd provider tests (real etcd via k3splan-testkit-etcd).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use k3splan_etcd::{EtcdConfig, EtcdProvider, Observation, TlsFiles};
use k3splan_testkit_etcd::EtcdCluster;

/// Generous wait for conditions that need an election or a catch-up on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn tls_of(files: &k3splan_testkit_etcd::TlsFiles) -> TlsFiles {
    TlsFiles {
        ca_file: files.ca_file.clone(),
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
    }
}

/// A provider for the given members of `c`, with the cluster's client TLS.
pub fn provider(c: &EtcdCluster, members: &[usize], timeout: Duration) -> EtcdProvider {
    let eps: Vec<String> = members.iter().map(|i| c.member(*i).client_url()).collect();
    EtcdProvider::new(
        EtcdConfig::new(eps)
            .with_tls(tls_of(c.client_tls()))
            .with_timeout(timeout),
    )
    .expect("provider")
}

/// Observes until `pred` holds (or panics after [`WAIT`] with the last observation).
pub async fn observe_until(
    p: &EtcdProvider,
    what: &str,
    pred: impl Fn(&Observation) -> bool,
) -> Observation {
    let start = Instant::now();
    loop {
        let o = p.observe().await;
        if pred(&o) {
            return o;
        }
        if start.elapsed() > WAIT {
            panic!(
                "{what}: not reached within {WAIT:?}; last observation:\n{}",
                serde_json::to_string_pretty(&o).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes `n` keys through `p`'s first endpoint.
pub async fn write_keys(p: &EtcdProvider, prefix: &str, n: usize) {
    let ep = p.config().endpoints[0].clone();
    let mut c = p.client(&ep).await.expect("client");
    for i in 0..n {
        c.put(format!("{prefix}/{i}"), format!("value-{i}"), None)
            .await
            .expect("put");
    }
}

/// Starts a cluster on a blocking thread (the harness blocks while it waits for health).
pub async fn start_cluster(n: usize) -> EtcdCluster {
    tokio::task::spawn_blocking(move || EtcdCluster::start(n))
        .await
        .expect("join")
        .expect("etcd cluster starts")
}
