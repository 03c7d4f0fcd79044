#!/usr/bin/env bash
# Benchmark smoke run for CI: every benchmark at a small size, debug build, no timing
# assertions (each benchmark still fails when k3splan fails: plan errors, observe or
# ansible failures, a failed apply). Keeps the benchmarks compiling and running.
# About 2 minutes on 2 cores once built. Needs root, /usr/bin/etcd; ansible optional.
#   CARGO_TARGET_DIR=... scripts/bench-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$T"
cargo build -q -p k3splan -p k3splan-lab -p k3splan-bench --bins
B="$T/debug"
start=$(date +%s)
echo "== smoke: bench-scale (20 and 40 nodes)"
"$B/bench-scale" --nodes 20,40 --rounds 1 --pods-per-node 3 --pvcs-per-node 1
echo "== smoke: bench-fanout (4 hosts)"
if command -v ansible >/dev/null; then
  "$B/bench-fanout" --hosts 4 --rounds 1 --ansible-rounds 1 --forks 4
else
  "$B/bench-fanout" --hosts 4 --rounds 1 --no-ansible
fi
echo "== smoke: validate"
for ex in examples/*/; do "$B/k3splan" validate -c "$ex" >/dev/null; done
if [ "${BENCH_SMOKE_APPLY:-1}" = 1 ]; then
  echo "== smoke: bench-apply (1 round)"
  "$B/bench-apply" --rounds 1
fi
echo "== bench smoke passed in $(( $(date +%s) - start ))s"
