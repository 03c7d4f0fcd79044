#!/usr/bin/env bash
# Runs every k3splan benchmark of issue 9 (release build) and prints the figures that
# docs/performance.md records. Needs root (sshd hosts in namespaces), /usr/bin/etcd, and
# for the comparisons ansible-core (pip install ansible-core) and hyperfine (apt).
#
#   scripts/bench.sh                 # everything (about 15-25 minutes on 2 cores)
#   scripts/bench.sh scale fanout    # only some: scale fanout apply startup upgrade
#                                    # (upgrade, issue 15: not in the default set)
#
# Environment: CARGO_TARGET_DIR (default target), ROUNDS (3), SIZES (100,1000,5000; the
# in-memory API server peaks at ~2.4 GB at 5,000 nodes),
# FANOUT_HOSTS (100,300,1000: one fleet of real sshd hosts per size; the OpenSSH loop runs at
# every size, Ansible at the first), APPLY_ROUNDS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$T"
ROUNDS="${ROUNDS:-3}"
SIZES="${SIZES:-100,1000,5000}"
FANOUT_HOSTS="${FANOUT_HOSTS:-100,300,1000}"
APPLY_ROUNDS="${APPLY_ROUNDS:-2}"
what=("$@")
[ ${#what[@]} -eq 0 ] && what=(scale fanout apply startup)

echo "== build (release): k3splan, the lab's k3s stand-in, the benchmarks"
cargo build --release -q -p k3splan -p k3splan-lab -p k3splan-bench --bins
B="$T/release"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"

for w in "${what[@]}"; do
  case "$w" in
    scale)
      echo "== 1+2. plan at scale vs the read floor: $B/bench-scale --nodes $SIZES --rounds $ROUNDS"
      "$B/bench-scale" --nodes "$SIZES" --rounds "$ROUNDS" ;;
    fanout)
      echo "== 3. SSH fan-out vs the OpenSSH loop and ansible: $B/bench-fanout --hosts $FANOUT_HOSTS --rounds $ROUNDS"
      "$B/bench-fanout" --hosts "$FANOUT_HOSTS" --rounds "$ROUNDS" --ansible-rounds 2 ;;
    apply)
      echo "== 4. apply overhead in the lab: $B/bench-apply --rounds $APPLY_ROUNDS"
      "$B/bench-apply" --rounds "$APPLY_ROUNDS" ;;
    upgrade)
      echo "== 4b. upgrade overhead in the lab (issue 15): $B/bench-apply --scenario upgrade --rounds $APPLY_ROUNDS"
      "$B/bench-apply" --scenario upgrade --rounds "$APPLY_ROUNDS" ;;
    startup)
      echo "== 5. start-up: k3splan validate on each example"
      for ex in examples/*/; do
        if command -v hyperfine >/dev/null; then
          hyperfine -N --warmup 5 --runs 50 --style basic "$B/k3splan validate -c $ex" 2>&1 | grep -E 'Time|Range'
        else
          s=$(date +%s%N); for _ in $(seq 50); do "$B/k3splan" validate -c "$ex" >/dev/null; done
          echo "$ex: mean $(( ($(date +%s%N) - s) / 50000 )) µs over 50 runs (no hyperfine)"
        fi
      done ;;
    *) echo "unknown benchmark $w (scale fanout apply startup upgrade)" >&2; exit 2 ;;
  esac
done
echo "== done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
