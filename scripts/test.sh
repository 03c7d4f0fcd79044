#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the benchmark smoke run, then every
# test of the workspace (unit, golden, property, the tests against real etcd and sshd, and the
# end-to-end seed scenarios against the lab). Needs root and the Debian packages etcd-server,
# etcd-client, openssh-server, protobuf-compiler, libprotobuf-dev, gcc, curl (`.ci/run` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> benchmark smoke run (small sizes, no timing assertions)"
./scripts/bench-smoke.sh

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo test --workspace --doc
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
