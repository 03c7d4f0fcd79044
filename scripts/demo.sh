#!/usr/bin/env bash
# The main job: the lab demo. Builds k3splan and the lab (release), brings up a local
# 3-server k3s-like HA cluster with a keepalived VIP and the seed 004 workloads (real sshd
# hosts, real etcd members, a k3s stand-in, an in-memory Kubernetes API), kills the first
# server, shows `k3splan plan`, applies it with live progress, shows the healthy cluster
# and a clean second plan, and tears the lab down.
#
# Needs the Debian packages etcd-server, openssh-server and protobuf-compiler (.ci/run
# installs them) and root (network-free mount namespaces for the simulated hosts).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null || ! command -v sshd >/dev/null && ! [ -x /usr/sbin/sshd ]; then
  echo "the demo needs etcd and sshd: apt-get install etcd-server openssh-server protobuf-compiler" >&2
  exit 1
fi

echo "==> building k3splan and the lab (release)"
cargo build --release -p k3splan -p k3splan-lab --bins

echo "==> the demo"
exec target/release/k3splan-lab demo --k3splan target/release/k3splan
