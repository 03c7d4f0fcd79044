#!/usr/bin/env bash
# The main job. Until the lab (a local k3s-like cluster) lands, the demo builds k3splan and
# runs it on the example topologies: validation with precise diagnostics, then the format
# check, then a deliberately broken topology to show what an operator sees.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building k3splan (release)"
cargo build --release --bin k3splan
bin=target/release/k3splan
"$bin" version

for ex in examples/*/; do
  echo
  echo "==> k3splan validate -c $ex"
  "$bin" validate -c "$ex"
done

echo
echo "==> k3splan fmt --check -c examples"
"$bin" fmt --check -c examples && echo "all example files are formatted"

echo
echo "==> a broken topology: k3splan validate -c tests/fixtures/invalid/many_errors_at_once.hcl"
if "$bin" validate -c tests/fixtures/invalid/many_errors_at_once.hcl; then
  echo "expected the broken topology to be rejected" >&2
  exit 1
fi
echo
echo "demo finished: the broken topology was rejected with every problem reported at once (exit 1), and nothing was changed"
