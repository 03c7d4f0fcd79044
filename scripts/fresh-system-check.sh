#!/usr/bin/env bash
# Fresh-system check: proves that `.ci/run --install-only` installs everything a fresh
# Debian 12 (bookworm) machine lacks to build k3splan.
#
# It builds a minimal Debian root with mmdebstrap (variant minbase, the content of the
# debian:bookworm container image; cached under target/fresh-system/), copies the repository
# into it, runs `.ci/run --install-only` there, then `cargo build --locked -p k3splan-etcd`
# (the crate whose dependencies run protoc and link build scripts and proc macros with the
# C toolchain). `--cargo check` runs `cargo check` instead: for a library it compiles, links
# and runs the same build scripts and proc macros (the only steps that use the system: cc,
# libc6-dev, protoc and its well-known types) and skipped about a fifth of the CPU time.
# The Rust toolchain is the host's, bind-mounted read-only; the root gets no C compiler,
# protoc or anything else from the host. Everything runs in a private mount and PID namespace
# (`unshare`), so the mounts and any process started inside disappear with it.
#
#   scripts/fresh-system-check.sh                 # check this working tree's .ci/run
#   scripts/fresh-system-check.sh --ci-run FILE   # check another .ci/run (e.g. an old one)
#   scripts/fresh-system-check.sh --cargo check   # cargo check instead of cargo build
#   scripts/fresh-system-check.sh --refresh       # rebuild the cached base root
#   scripts/fresh-system-check.sh --keep          # keep the root after the run (debugging)
#
# Output: one line `fresh-system-check: PASS ...`, `... FAIL: ...` or `... SKIP: ...`.
# Exit 0 on PASS, 1 on FAIL. When the check cannot run here (not root, no namespaces, no
# mmdebstrap, no Debian mirror) it prints a loud SKIP and exits 0, except under CI=true
# where it exits 1. K3SPLAN_FRESH_CHECK=skip skips on purpose (refused under CI=true).
#
# Needs: root, unshare/chroot, mmdebstrap (installed with apt-get if missing), the Debian
# mirror of the host's apt sources and crates.io (the host's ~/.cargo/registry seeds the
# root's cargo cache, so normally nothing is downloaded from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

CI_RUN=""
CARGO_CMD=build
KEEP=0
REFRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ci-run) CI_RUN="${2:?--ci-run needs a file}"; shift 2 ;;
    --cargo) CARGO_CMD="${2:?--cargo needs check or build}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --refresh) REFRESH=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-system-check: unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
case "$CARGO_CMD" in check|build) ;; *) echo "fresh-system-check: --cargo must be check or build" >&2; exit 1 ;; esac
if [ -n "$CI_RUN" ]; then
  [ -f "$CI_RUN" ] || { echo "fresh-system-check: --ci-run $CI_RUN: no such file" >&2; exit 1; }
  CI_RUN=$(readlink -f "$CI_RUN")
fi

T0=$(date +%s)
SUITE=bookworm
VARIANT=minbase
WORK="$REPO/target/fresh-system"
ROOT="$WORK/root"
LOGS="$WORK/logs"

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }
say() { echo "==> fresh-system-check: $*"; }

skip() {
  local why="$*"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  if [ "${CI:-}" = "true" ]; then
    echo "fresh-system-check: FAIL (CI=true, so no skipping): cannot run: $why" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 1
  fi
  echo "fresh-system-check: SKIP: $why" >&2
  echo "  (the install step of .ci/run was NOT proven on a fresh Debian 12 system)" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  exit 0
}

if [ "${K3SPLAN_FRESH_CHECK:-}" = "skip" ]; then
  skip "K3SPLAN_FRESH_CHECK=skip"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root (chroot, mounts, apt-get inside the root); run it as root"
command -v unshare >/dev/null && command -v chroot >/dev/null || skip "unshare or chroot is missing"
unshare --mount --pid --fork true 2>/dev/null || skip "cannot create mount/PID namespaces here (unshare --mount --pid failed)"

# The host's Rust toolchain: its sysroot, bind-mounted read-only. A distribution rustc
# (sysroot /usr) cannot be mounted alone.
SYSROOT=$(rustc --print sysroot 2>/dev/null) || skip "no rustc on PATH (install Rust with rustup)"
SYSROOT=$(readlink -f "$SYSROOT")
if [ "$SYSROOT" = /usr ] || [ ! -x "$SYSROOT/bin/cargo" ] || [ ! -x "$SYSROOT/bin/rustc" ]; then
  skip "the Rust toolchain at $SYSROOT is not a self-contained rustup toolchain (needs bin/cargo and bin/rustc)"
fi
HOST_CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
HOST_CA=/etc/ssl/certs/ca-certificates.crt
[ -s "$HOST_CA" ] || skip "no CA bundle at $HOST_CA (cargo inside the root could not reach crates.io)"

if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap on the host"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap; } \
    >/dev/null || skip "mmdebstrap is missing and apt-get install mmdebstrap failed"
fi

mkdir -p "$WORK" "$LOGS" "$WORK/apt-archives"
exec 9>"$WORK/lock"
flock -n 9 || { say "another run holds $WORK/lock, waiting"; flock 9; }

# --- cleanup on every exit path ---------------------------------------------------------
NS_PID=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null; then
    kill -KILL "$NS_PID" 2>/dev/null
    wait "$NS_PID" 2>/dev/null
  fi
  # The mounts live in the namespace and die with it; this only matters if one leaked.
  local m
  for m in $(awk -v r="$ROOT" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null
  done
  if awk -v r="$ROOT" 'index($5, r) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "fresh-system-check: WARNING: mounts under $ROOT remain; not removing it" >&2
  elif [ "$KEEP" = 1 ]; then
    echo "fresh-system-check: root kept at $ROOT (--keep)" >&2
  else
    rm -rf --one-file-system "$ROOT"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the host's Debian mirror ---------------------------------------------------------------
# The enabled Debian entries of the host's apt sources (deb822 .sources and one-line .list),
# for SUITE, SUITE-updates and SUITE-security, in one-line form.
host_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (u[i] ~ /debian/ && (s[j] == suite || s[j] ~ ("^" suite "-(updates|security)$")))
              print "deb " u[i] " " s[j] " " comps
        }
        types = ""; uris = ""; suites = ""; comps = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); $1 = "" ; val = substr($0, 2) }
      key == "types" { types = val } key == "uris" { uris = val } key == "suites" { suites = val }
      key == "components" { comps = val } key == "enabled" { enabled = tolower(val) }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i ~ /debian/ && ($(i+1) == suite || $(i+1) ~ ("^" suite "-(updates|security)$"))) {
          line = "deb"; for (k = i; k <= NF; k++) line = line " " $k; print line } }' "$f"
  done
}
SOURCES=$(host_sources | awk '!seen[$0]++')
if ! grep -q " $SUITE " <<<"$SOURCES"; then
  SOURCES="deb http://deb.debian.org/debian $SUITE main"
  say "no Debian $SUITE entry in the host's apt sources; using $SOURCES"
fi

# --- the base root (cached) ---------------------------------------------------------------
KEY=$( { echo "$SUITE $VARIANT v1"; echo "$SOURCES"; } | sha256sum | cut -c1-12)
BASE="$WORK/base-$SUITE-$VARIANT-$KEY.tar"
if [ "$REFRESH" = 1 ] || [ -n "$(find "$BASE" -mtime +30 2>/dev/null)" ]; then rm -f "$BASE"; fi
t=$(date +%s)
if [ -s "$BASE" ]; then
  say "base root: cached $BASE ($(date -u -r "$BASE" +%Y-%m-%d))"
else
  say "base root: mmdebstrap --variant=$VARIANT $SUITE from:"
  sed 's/^/      /' <<<"$SOURCES"
  mirrors=()
  while IFS= read -r l; do mirrors+=("$l"); done <<<"$SOURCES"
  if ! mmdebstrap --mode=root --variant="$VARIANT" --format=tar "$SUITE" "$BASE.tmp" "${mirrors[@]}" \
      >"$LOGS/mmdebstrap.log" 2>&1; then
    tail -n 20 "$LOGS/mmdebstrap.log" >&2
    rm -f "$BASE.tmp"
    skip "mmdebstrap could not build a $SUITE root from the host's mirror (log: $LOGS/mmdebstrap.log)"
  fi
  mv "$BASE.tmp" "$BASE"
  rm -f $(ls "$WORK"/base-*.tar 2>/dev/null | grep -v -x -F "$BASE") 2>/dev/null || true
  say "base root: built in $(elapsed "$t") ($(du -h "$BASE" | cut -f1))"
fi

# --- a fresh root: base + repository + toolchain mount point --------------------------------
t=$(date +%s)
if [ -e "$ROOT" ]; then
  if awk -v r="$ROOT" 'index($5, r) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "fresh-system-check: FAIL: something is mounted under $ROOT; unmount it first" >&2
    exit 1
  fi
  rm -rf --one-file-system "$ROOT"
fi
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$BASE"
# The repository as a fresh clone plus local changes: tracked and untracked, not ignored.
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | { mkdir -p "$ROOT/src" && tar -C "$ROOT/src" -xf -; }
if [ -n "$CI_RUN" ]; then
  install -m 0755 "$CI_RUN" "$ROOT/src/.ci/run"
  say "using .ci/run from $CI_RUN"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$HOST_CA" "$ROOT/etc/ssl/host-ca-certificates.crt" 2>/dev/null \
  || { mkdir -p "$ROOT/etc/ssl" && cp "$HOST_CA" "$ROOT/etc/ssl/host-ca-certificates.crt"; }
# Packages must not start services in the root: it shares the host's network (etcd would
# listen on 127.0.0.1:2379). Container images ship the same policy.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
# Cargo's download cache, copied from the host (not mounted: the root writes to it).
mkdir -p "$ROOT/root/.cargo/registry"
for d in index cache; do
  [ -d "$HOST_CARGO_HOME/registry/$d" ] && cp -a "$HOST_CARGO_HOME/registry/$d" "$ROOT/root/.cargo/registry/"
done
mkdir -p "$ROOT/opt/rust-toolchain"
say "fresh root ready in $(elapsed "$t") (toolchain $SYSROOT, read-only)"

# --- inside: .ci/run --install-only, then the build ------------------------------------------
# Runs in its own mount and PID namespace; every mount and process goes away with it.
inner() {
  set -euo pipefail
  R=$1 TC=$2 CACHE=$3
  echo "setup" >"$LOGS/failed-step"
  exec 2>"$LOGS/setup.log"
  mount --make-rprivate /
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount --make-rslave "$R/dev"
  mount -t sysfs -o ro sysfs "$R/sys"
  mount -t tmpfs tmpfs "$R/run"
  mount -t tmpfs tmpfs "$R/tmp"
  mount --bind "$TC" "$R/opt/rust-toolchain"
  mount -o remount,bind,ro "$R/opt/rust-toolchain"
  # downloaded .deb files survive between runs (apt still resolves and installs everything)
  mount --bind "$CACHE" "$R/var/cache/apt/archives"
  run() {
    chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  }
  exec 2>&3
  local t
  t=$(date +%s)
  echo "install" >"$LOGS/failed-step"
  echo "==> fresh-system-check: [inside] .ci/run --install-only" >&3
  run /bin/sh -c 'cd /src && ./.ci/run --install-only' >"$LOGS/install.log" 2>&1 || exit 1
  echo "==> fresh-system-check: [inside] install done in $(( $(date +%s) - t ))s" >&3
  t=$(date +%s)
  echo "build" >"$LOGS/failed-step"
  echo "==> fresh-system-check: [inside] cargo $CARGO_CMD --locked -p k3splan-etcd" >&3
  if ! run CARGO_HOME=/root/.cargo CARGO_HTTP_CAINFO=/etc/ssl/host-ca-certificates.crt \
      CARGO_TERM_COLOR=never PATH=/opt/rust-toolchain/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      /bin/sh -c "cd /src && cargo $CARGO_CMD --locked -p k3splan-etcd" >"$LOGS/build.log" 2>&1; then
    exit 1
  fi
  rm -f "$LOGS/failed-step"
  echo "==> fresh-system-check: [inside] build done in $(( $(date +%s) - t ))s" >&3
}
rm -f "$LOGS/failed-step" "$LOGS/setup.log" "$LOGS/install.log" "$LOGS/build.log"
t=$(date +%s)
export LOGS CARGO_CMD
unshare --mount --pid --fork --kill-child bash -c "$(declare -f inner); inner \"\$@\"" inner \
  "$ROOT" "$SYSROOT" "$WORK/apt-archives" 3>&1 &
NS_PID=$!
rc=0
wait "$NS_PID" || rc=$?
NS_PID=""

# Wall time depends on the machine's load; the CPU time (all processes, inside the root too)
# says what the check costs on idle cores.
times >"$LOGS/times"   # the builtin, in this shell (a $(...) subshell would see none of it)
TOTAL="$(elapsed "$T0") wall, CPU $(awk 'END { print $1 " user + " $2 " sys" }' "$LOGS/times"), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$rc" -eq 0 ]; then
  echo "fresh-system-check: PASS: .ci/run --install-only on a fresh Debian $SUITE ($VARIANT) root, then cargo $CARGO_CMD -p k3splan-etcd (total $TOTAL)"
  exit 0
fi
step=$(cat "$LOGS/failed-step" 2>/dev/null || echo setup)
if [ "$step" = setup ]; then
  # The namespace or its mounts failed: the check cannot run here (a container without
  # CAP_SYS_ADMIN, for example); nothing about .ci/run was learnt.
  cat "$LOGS/setup.log" >&2 2>/dev/null || true
  skip "could not set up the namespace and mounts for the root (exit $rc: $(grep -m1 . "$LOGS/setup.log" 2>/dev/null))"
fi
log="$LOGS/$step.log"
[ -f "$log" ] || log=/dev/null
echo "---- last lines of $log ----" >&2
tail -n 25 "$log" >&2
echo "----" >&2
# The most telling line: protoc's own complaint, a missing linker or tool, apt's error, else
# the first error.
first=$(grep -o -m1 -E 'protoc failed: [^\\"]*' "$log" 2>/dev/null \
  || grep -m1 -E '(linker|command|program) .* not found|not found in PATH|Could not find' "$log" 2>/dev/null \
  || grep -m1 -E '^E: |^error' "$log" 2>/dev/null || true)
case "$step" in
  install) what=".ci/run --install-only failed" ;;
  build) what="cargo $CARGO_CMD -p k3splan-etcd failed after .ci/run --install-only" ;;
esac
echo "fresh-system-check: FAIL: $what on a fresh Debian $SUITE root${first:+: $first} (log: $log; total $TOTAL)" >&2
exit 1
