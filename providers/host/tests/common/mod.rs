//! Shared helpers of the host provider's integration tests (real sshd via the testkit).
#![allow(dead_code)]

use std::time::Duration;

use k3splan_host::{HostPool, K3sLayout, ObserveSpec, ServiceManager, SshSettings};
use k3splan_testkit_sshd::{ClientKeys, SshdHost};

/// Where the per-host stand-in binaries live (inside the host's private /var/lib/rancher).
pub const BIN: &str = "/var/lib/rancher/testbin";
pub const MANIFEST: &str = "/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml";

pub fn settings(h: &SshdHost, c: &ClientKeys) -> SshSettings {
    SshSettings {
        address: h.addr().ip().to_string(),
        port: h.addr().port(),
        user: "root".into(),
        private_key_file: Some(c.private_key()),
        known_hosts_file: c.known_hosts(),
        agent_socket: None,
        connect_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(120),
        accept_new_host_keys: false,
    }
}

pub fn pool(hosts: &[SshdHost], c: &ClientKeys) -> HostPool {
    HostPool::new(
        hosts
            .iter()
            .map(|h| (h.hostname().to_string(), settings(h, c))),
        0,
    )
}

/// The layout of a lab host: stand-in k3s binary and service manager under [`BIN`].
pub fn layout() -> K3sLayout {
    K3sLayout {
        k3s_bin: format!("{BIN}/k3s"),
        services: ServiceManager::single_program(&format!("{BIN}/svc")),
        uninstall_server: vec![format!("{BIN}/k3s-uninstall.sh")],
        uninstall_agent: vec![format!("{BIN}/k3s-agent-uninstall.sh")],
        ..K3sLayout::default()
    }
}

pub fn spec() -> ObserveSpec {
    ObserveSpec {
        layout: layout(),
        keepalived_manifest: Some(MANIFEST.into()),
        raw_files: false,
    }
}

/// A service manager stand-in: `svc is-active|start|stop|restart UNIT`, state in files.
/// It records its last unit argument verbatim in /var/lib/rancher/svc/last-unit. Like
/// `systemctl is-active`, it prints the state: `active` (exit 0), `activating` (exit 3) when
/// /var/lib/rancher/svc/activating-<cksum of UNIT> exists, else `inactive` (exit 3).
pub const SVC: &str = r#"#!/bin/sh
verb=$1; unit=$2; d=/var/lib/rancher/svc; mkdir -p "$d"
printf '%s' "$unit" > "$d/last-unit"
sum=$(printf '%s' "$unit" | cksum | cut -d' ' -f1)
f="$d/active-$sum"
case "$verb" in
  is-active) if [ -e "$f" ]; then echo active; elif [ -e "$d/activating-$sum" ]; then echo activating; exit 3; else echo inactive; exit 3; fi;;
  start|restart) touch "$f";;
  stop) rm -f "$f";;
  *) echo "svc: unknown verb $verb" >&2; exit 2;;
esac
"#;

/// A k3s stand-in: `--version`, and `etcd-snapshot save --data-dir D [--name N]`, which
/// records its arguments (one per line) in /var/lib/rancher/k3s-args and writes a snapshot.
pub const K3S: &str = r#"#!/bin/sh
case "$1" in
  --version) echo "k3s version v1.28.5+k3s1 (5b2d1271)"; echo "go version go1.20.12";;
  etcd-snapshot)
    : > /var/lib/rancher/k3s-args
    for a in "$@"; do printf '%s\n' "$a" >> /var/lib/rancher/k3s-args; done
    shift 2; dd=/var/lib/rancher/k3s; name=on-demand
    while [ $# -gt 0 ]; do case "$1" in --data-dir) dd=$2; shift 2;; --name) name=$2; shift 2;; *) shift;; esac; done
    mkdir -p "$dd/server/db/snapshots"
    p="$dd/server/db/snapshots/$name-$(hostname)-$(date +%s)"
    echo fake-db > "$p"
    echo "time=\"2024\" level=info msg=\"Saving etcd snapshot to $p\"" >&2;;
  *) echo "k3s stand-in: unsupported $*" >&2; exit 1;;
esac
"#;

/// Installs the stand-ins into a host (executable files in its private /var/lib/rancher).
pub fn install_standins(h: &SshdHost) {
    use std::os::unix::fs::PermissionsExt;
    for (name, text) in [("svc", SVC), ("k3s", K3S)] {
        let p = format!("{BIN}/{name}");
        h.write(&p, text).unwrap();
        std::fs::set_permissions(h.path(&p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
