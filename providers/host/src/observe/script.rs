//! The observe script: one POSIX `sh` script whose sections start with marker lines carrying
//! a per-run nonce. Every value in it is quoted with [`sh_quote`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::facts::ObserveSpec;
use crate::quote::{sh_command, sh_quote};

static NONCE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{:x}",
        t,
        std::process::id(),
        NONCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds the observe script. Every value is quoted with [`sh_quote`].
pub fn observe_script(spec: &ObserveSpec, marker: &str) -> String {
    let l = &spec.layout;
    let manifest = spec.keepalived_manifest.clone().unwrap_or_default();
    format!(
        r#"M={marker}
CFG={cfg}
DATA={data}
MAN={man}
K3S={k3s}
RAW={raw}
ENVS={env_server}
ENVA={env_agent}
echo "$M hostname"
if [ -r /proc/sys/kernel/hostname ]; then IFS= read -r h </proc/sys/kernel/hostname; printf '%s\n' "$h"; else hostname 2>/dev/null; fi
echo "$M os"
if [ -r /etc/os-release ]; then while IFS= read -r l || [ -n "$l" ]; do case $l in PRETTY_NAME=*) printf '%s\n' "${{l#PRETTY_NAME=}}";; esac; done </etc/os-release; fi; echo
echo "$M kernel"
if [ -r /proc/sys/kernel/ostype ] && [ -r /proc/sys/kernel/osrelease ]; then IFS= read -r o </proc/sys/kernel/ostype; IFS= read -r r </proc/sys/kernel/osrelease; printf '%s %s\n' "$o" "$r"; else uname -sr 2>/dev/null; fi
echo "$M k3s"
if [ -f "$K3S" ] && [ -x "$K3S" ]; then echo present; "$K3S" --version </dev/null 2>/dev/null | head -n 1; else echo absent; fi
echo "$M svc-server"; {server_active} </dev/null >/dev/null 2>&1; echo $?
echo "$M svc-agent"; {agent_active} </dev/null >/dev/null 2>&1; echo $?
echo "$M config"
if [ ! -e "$CFG" ]; then echo absent
elif [ ! -r "$CFG" ]; then echo unreadable
else echo present; sed -E 's/^([[:space:]]*["'"'"']?(token|agent-token)["'"'"']?[[:space:]]*:).*$/\1 "<redacted>"/' "$CFG"; echo
fi
for u in server agent; do
  if [ "$u" = server ]; then F=$ENVS; else F=$ENVA; fi
  echo "$M env-$u"
  if [ ! -e "$F" ]; then echo absent
  elif [ ! -r "$F" ]; then echo unreadable
  else echo present; grep -E '^[[:space:]]*(export[[:space:]]+)?K3S_URL[[:space:]]*=' "$F"; echo
  fi
done
echo "$M manifest"
if [ -z "$MAN" ]; then echo skipped
elif [ ! -e "$MAN" ]; then echo absent
elif [ ! -r "$MAN" ]; then echo unreadable
else echo present; awk '{{ if ($0 ~ /KEEPALIVED_PASSWORD/) {{ if ($0 ~ /value:/) sub(/value:.*/, "value: \"<redacted>\"}}"); else p=1 }} else if (p && $0 ~ /value:/) {{ sub(/value:.*/, "value: \"<redacted>\""); p=0 }} sub(/auth_pass[[:space:]].*/, "auth_pass <redacted>"); print }}' "$MAN"
fi
echo "$M etcd"
E="$DATA/server/db/etcd"
if [ -d "$E" ]; then
  echo exists
  if [ -d "$E/member" ]; then echo member-dir; fi
  if [ -e "$E/tombstone" ]; then echo tombstone; fi
  if [ -f "$E/name" ]; then n=; IFS= read -r n <"$E/name" || true; printf 'name %s\n' "$n"; fi
  if [ -f "$E/config" ]; then grep -E '^(initial-cluster|initial-cluster-state|initial-advertise-peer-urls):' "$E/config" | sed 's/^/config /'; fi
else echo missing
fi
for b in "$DATA"/server/db/etcd-backup-*; do if [ -e "$b" ]; then printf 'backup %s\n' "$b"; fi; done
echo "$M manifest-skips"
if [ -d "$DATA/server/manifests" ]; then (cd "$DATA/server/manifests" && find . -name '*.skip' 2>/dev/null | sed 's|^\./||'); fi
echo "$M disk"
p=$DATA; while [ ! -e "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname -- "$p"); done
echo "$p"; df -Pk -- "$p" 2>/dev/null | tail -n 1
if [ "$RAW" = 1 ]; then
  echo "$M config-raw"; if [ -f "$CFG" ] && [ -r "$CFG" ]; then echo present; if od -An -v -tx1 -- "$CFG"; then echo ok; else echo failed; fi; fi
  echo "$M env-server-raw"; if [ -f "$ENVS" ] && [ -r "$ENVS" ]; then echo present; if od -An -v -tx1 -- "$ENVS"; then echo ok; else echo failed; fi; fi
  echo "$M env-agent-raw"; if [ -f "$ENVA" ] && [ -r "$ENVA" ]; then echo present; if od -An -v -tx1 -- "$ENVA"; then echo ok; else echo failed; fi; fi
  echo "$M manifest-raw"; if [ -n "$MAN" ] && [ -f "$MAN" ] && [ -r "$MAN" ]; then echo present; if od -An -v -tx1 -- "$MAN"; then echo ok; else echo failed; fi; fi
fi
echo "$M end"
"#,
        marker = sh_quote(marker),
        cfg = sh_quote(&l.config_path),
        data = sh_quote(l.data_dir.trim_end_matches('/')),
        man = sh_quote(&manifest),
        k3s = sh_quote(&l.k3s_bin),
        env_server = sh_quote(&l.env_file(&l.server_unit)),
        env_agent = sh_quote(&l.env_file(&l.agent_unit)),
        raw = if spec.raw_files { "1" } else { "0" },
        server_active = l.services.is_active_command(&l.server_unit),
        agent_active = l.services.is_active_command(&l.agent_unit),
    )
}

/// The remote command line that runs [`observe_script`] (what [`HostSession::observe`] sends).
pub fn observe_command(spec: &ObserveSpec, marker: &str) -> String {
    sh_command(&["sh", "-c", &observe_script(spec, marker)])
}
