#!/usr/bin/env bash
# Lists the tests a nextest run skipped, by reason, and fails under CI=true when any test was
# skipped for a missing capability (no root, no sshd, no etcd: see testkit/caps).
#   scripts/check-skips.sh NEXTEST_OUTPUT SKIP_LOG
# NEXTEST_OUTPUT: what `cargo nextest run` printed (its SKIP lines list every skipped test);
# SKIP_LOG: the file K3SPLAN_SKIP_LOG named during that run, where each test binary appended
# `BINARY<TAB>TEST<TAB>REASON` for every test it skipped for a missing capability.
# A skipped test that is not in SKIP_LOG is ignored on purpose (#[ignore] / `ignore "why"`:
# helper processes, the real-cluster `*_e2e` variants, the release-only benchmark).
# The verdict depends on SKIP_LOG alone (also right after `cargo test`, which prints no SKIP
# lines); NEXTEST_OUTPUT only adds the list of intentional skips. docs/ci.md.
set -euo pipefail
out="${1:?usage: check-skips.sh NEXTEST_OUTPUT SKIP_LOG}"
log="${2:?usage: check-skips.sh NEXTEST_OUTPUT SKIP_LOG}"
touch "$log"

# BINARY TEST, one per line, from nextest's `SKIP [ ] (───) BINARY TEST` lines.
skipped=$(sed 's/\x1b\[[0-9;]*m//g' "$out" 2>/dev/null |
  awk '$1 == "SKIP" { print $(NF-1), $NF }' | sort -u)
capability=$(sort -u "$log")
ncap=$(printf '%s' "$capability" | grep -c . || true)

echo "==> skipped tests"
echo "  missing capability: $ncap"
if [ "$ncap" -gt 0 ]; then
  printf '%s\n' "$capability" | awk -F'\t' '{ printf "    %s %s: %s\n", $1, $2, $3 }'
fi
on_purpose=$(printf '%s\n' "$skipped" | grep . |
  grep -v -x -F -f <(printf '%s\n' "$capability" | awk -F'\t' 'NF { print $1, $2 }') || true)
echo "  ignored on purpose: $(printf '%s' "$on_purpose" | grep -c . || true)"
if [ -n "$on_purpose" ]; then
  printf '%s\n' "$on_purpose" | sed 's/^/    /'
fi

if [ "$ncap" -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "check-skips: FAIL: $ncap test(s) skipped for a missing capability under CI=true" \
      "(CI must run every test: install what is missing, see .ci/run)"
    exit 1
  fi
  echo "check-skips: WARNING: $ncap test(s) skipped for a missing capability (a failure under CI=true)"
fi
