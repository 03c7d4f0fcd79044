//! The `kubeapi-serve` binary: serves a fixture over HTTPS and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kubeapi_serve_serves_seed004_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_kubeapi-serve"))
            .args([
                "--kubeconfig",
                kc.to_str().unwrap(),
                "--fixture",
                "seed004",
                "--controllers",
                "all",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("serving https://127.0.0.1:"), "{line}");
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        3
    );
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
