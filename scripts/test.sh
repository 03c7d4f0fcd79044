#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace
# (unit, golden, property, and the tests against real etcd and sshd processes).
# Needs the Debian packages etcd-server, etcd-client, openssh-server and protobuf-compiler
# (`.ci/run` installs them on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

echo "==> benchmark smoke run (small sizes, no timing assertions)"
./scripts/bench-smoke.sh
