//! Contents of the host files the planner writes: k3s `config.yaml` and the keepalived
//! static pod manifest. Secrets are written as `(sensitive)` placeholders; the apply engine
//! substitutes them (see [`SensitiveValue`]).

use crate::config::{Node, Topology};
use crate::observed::KeepalivedManifest;
use crate::plan::SensitiveValue;

/// The placeholder written where a secret goes.
pub const SENSITIVE: &str = "(sensitive)";

/// Path of the k3s config file.
pub const K3S_CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";

/// The placeholder of a secret whose value on the host differs from the declared one (the
/// two are compared by a keyed digest, see [`SecretDigests`]). Filled like [`SENSITIVE`].
pub const SENSITIVE_CHANGED: &str = "(sensitive, changed)";

/// How a file that could not be parsed is shown: as one line starting with this, nothing
/// of its content (a secret could be anywhere in it). The apply engine refuses to write a
/// file whose planned content still holds this line.
pub const SENSITIVE_FILE: &str = "(sensitive: ";

/// Is the YAML key or environment variable `name` a secret? `token`, `agent-token`,
/// `password`, `etcd-s3-secret-key`, `etcd-s3-access-key`, `K3S_TOKEN`, `AWS_SECRET_ACCESS_KEY`
/// … (case and `_`/`-` do not matter). `*-file` keys hold paths, not secrets.
pub fn is_secret_key(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    [
        "token",
        "password",
        "secret",
        "secret-key",
        "access-key",
        "access-key-id",
    ]
    .iter()
    .any(|s| n == *s || n.ends_with(&format!("-{s}")) || n.ends_with(s) && s.len() > 6)
}

/// Does `v` hold a URL with credentials (`scheme://user:password@host`)?
fn has_url_credentials(v: &str) -> bool {
    let Some(i) = v.find("://") else { return false };
    let rest = &v[i + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..end].contains('@')
}

/// The secrets of a parsed file: `(path, value)`, where `path` is the key (`token`), a
/// dotted path for nested keys (`a.token`), or the variable's name for `{name: X, value: V}`
/// entries (`KEEPALIVED_PASSWORD`). A secret key with a nested value is one secret.
fn collect_secrets(v: &serde_yaml::Value, path: &str, out: &mut Vec<(String, String)>) {
    use serde_yaml::Value;
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Mapping(m) => {
            let env_name = m
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| is_secret_key(n) && m.contains_key("value"));
            for (k, v) in m {
                let key = scalar_text(k);
                if is_secret_key(&key) {
                    out.push((join(&key), scalar_text(v)));
                } else if key == "value"
                    && let Some(n) = env_name
                {
                    out.push((n.to_string(), scalar_text(v)));
                } else if v
                    .as_str()
                    .is_some_and(|s| s == SENSITIVE || has_url_credentials(s))
                {
                    out.push((join(&key), scalar_text(v)));
                } else {
                    collect_secrets(v, &join(&key), out);
                }
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if v.as_str()
                    .is_some_and(|s| s == SENSITIVE || has_url_credentials(s))
                {
                    out.push((p, scalar_text(v)));
                } else {
                    collect_secrets(v, &p, out);
                }
            }
        }
        Value::Tagged(t) => collect_secrets(&t.value, path, out),
        _ => {}
    }
}

/// A scalar as text (`123`, `true`, `abc`); a non-scalar as its YAML.
fn scalar_text(v: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    }
}

/// The documents of a YAML text, or `None` when it does not parse.
fn parse_yaml(text: &str) -> Option<Vec<serde_yaml::Value>> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// The secrets of a file's text: parsed as an environment file (`KEY=VALUE` lines, the
/// installer's `k3s.service.env`) when it is one, else as YAML (config.yaml, a manifest).
/// `None` when it is neither.
fn secrets_of(text: &str) -> Option<Vec<(String, String)>> {
    if let Some(env) = parse_env(text).filter(|e| !e.is_empty()) {
        return Some(
            env.into_iter()
                .filter(|e| {
                    is_secret_key(e.key) || e.value == SENSITIVE || has_url_credentials(&e.value)
                })
                .map(|e| (e.key.to_string(), e.value))
                .collect(),
        );
    }
    let docs = parse_yaml(text)?;
    if !docs
        .iter()
        .all(|d| d.is_mapping() || d.is_sequence() || d.is_null())
    {
        return None;
    }
    let mut out = Vec::new();
    for d in &docs {
        collect_secrets(d, "", &mut out);
    }
    Some(out)
}

/// One `KEY=VALUE` line of an environment file (systemd `EnvironmentFile=`, the k3s
/// installer's `k3s.service.env`): `line` is its index, `eq` the byte offset of `=`.
struct EnvLine<'a> {
    line: usize,
    key: &'a str,
    eq: usize,
    value: String,
}

/// Parses an environment file: blank lines, `#`/`;` comments and `[export ]KEY=VALUE`
/// lines, VALUE plain or quoted on one line. `None` for anything else.
fn parse_env(text: &str) -> Option<Vec<EnvLine<'_>>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let eq = line.find('=')?;
        let key = line[..eq].trim();
        let key = key.strip_prefix("export ").unwrap_or(key).trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let v = line[eq + 1..].trim();
        let value = match v.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = v.strip_prefix(q)?.strip_suffix(q)?;
                if q == '"' {
                    inner.replace("\\\"", "\"").replace("\\\\", "\\")
                } else {
                    inner.to_string()
                }
            }
            _ => v.to_string(),
        };
        out.push(EnvLine {
            line: i,
            key,
            eq,
            value,
        });
    }
    Some(out)
}

/// The text shown instead of a file that could not be masked safely.
fn sensitive_file(text: &str, why: &str) -> String {
    format!(
        "{SENSITIVE_FILE}{why}; its {} lines are not shown)\n",
        text.lines().count()
    )
}

/// Replace the secret values of a config.yaml, a manifest or an installer env file by
/// `(sensitive)`, so that the text can be shown in a plan.
///
/// What is secret is decided on the parsed file, not on line patterns: every key for which
/// [`is_secret_key`] holds (quoted or not, `token :`, block scalars, nested), the `value` of
/// `{name: SECRET, value: …}` env entries, and every URL with credentials
/// (`datastore-endpoint: postgres://user:pw@host/db`). The masked text is parsed again and
/// must hold the same secrets, each `(sensitive)`; when it does not, or the file parses
/// neither as YAML nor as an env file, the whole file is hidden ([`SENSITIVE_FILE`]).
pub fn mask_secrets(text: &str) -> String {
    let Some(secrets) = secrets_of(text) else {
        return sensitive_file(text, "not valid YAML nor an env file");
    };
    if secrets.is_empty() {
        return text.to_string();
    }
    let masked = match parse_env(text).filter(|e| !e.is_empty()) {
        Some(env) => mask_env(text, &env),
        None => mask_yaml(text),
    };
    let ok = secrets_of(&masked).is_some_and(|m| {
        m.len() == secrets.len()
            && m.iter()
                .zip(&secrets)
                .all(|((mp, mv), (p, _))| mp == p && mv == SENSITIVE)
    });
    if ok {
        masked
    } else {
        sensitive_file(text, "a secret in it could not be located")
    }
}

fn mask_env(text: &str, env: &[EnvLine<'_>]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        match env.iter().find(|e| e.line == i) {
            Some(e) if is_secret_key(e.key) || has_url_credentials(&e.value) => {
                out.push_str(&line[..=e.eq]);
                out.push_str(SENSITIVE);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A `KEY: value` mapping entry on one line: `col` is the key's column, `colon` the byte
/// offset of its `:`, `key` the key decoded (quotes removed).
struct YamlEntry {
    col: usize,
    colon: usize,
    key: String,
}

/// The entry a line starts (after indentation and `- ` sequence markers), if any.
fn yaml_entry(body: &str) -> Option<YamlEntry> {
    let mut i = body.len() - body.trim_start().len();
    while body[i..].starts_with("- ") || body[i..].starts_with("-\t") {
        i += 1;
        i += body[i..].len() - body[i..].trim_start().len();
    }
    let col = i;
    let rest = &body[i..];
    let (key, after) = match rest.chars().next()? {
        '"' => {
            let mut esc = false;
            let end = rest[1..].char_indices().find_map(|(j, c)| {
                let hit = c == '"' && !esc;
                esc = c == '\\' && !esc;
                hit.then_some(j + 1)
            })?;
            let k: String = serde_json::from_str(&rest[..=end]).ok()?;
            (k, end + 1)
        }
        '\'' => {
            let mut j = 1;
            loop {
                let k = rest[j..].find('\'')? + j;
                if rest[k + 1..].starts_with('\'') {
                    j = k + 2;
                } else {
                    break (rest[1..k].replace("''", "'"), k + 1);
                }
            }
        }
        '#' | '[' | '{' | '|' | '>' | '&' | '*' | '!' | '%' | '@' | '`' => return None,
        _ => {
            let k = rest
                .match_indices(':')
                .find(|(j, _)| rest[j + 1..].is_empty() || rest[j + 1..].starts_with([' ', '\t']))?
                .0;
            (rest[..k].trim_end().to_string(), k)
        }
    };
    let tail = &rest[after..];
    let ws = tail.len() - tail.trim_start_matches([' ', '\t']).len();
    let tail2 = &tail[ws..];
    if !tail2.starts_with(':') || !(tail2.len() == 1 || tail2[1..].starts_with([' ', '\t'])) {
        return None;
    }
    Some(YamlEntry {
        col,
        colon: i + after + ws,
        key,
    })
}

fn indent_of(body: &str) -> usize {
    body.len() - body.trim_start_matches(' ').len()
}

fn mask_yaml(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    // Column of a `{name: SECRET}` env entry whose `value:` is still to come.
    let mut env_col: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        i += 1;
        let entry = yaml_entry(body);
        if let Some(c) = env_col
            && !body.trim().is_empty()
            && indent_of(body) < c
        {
            env_col = None;
        }
        let mask_from = match &entry {
            Some(e) => {
                let value = body[e.colon + 1..].trim();
                if e.key == "name" && is_secret_key(value.trim_matches(['"', '\''])) {
                    env_col = Some(e.col);
                }
                let env_value = e.key == "value" && env_col == Some(e.col);
                if env_value {
                    env_col = None;
                }
                (is_secret_key(&e.key) || env_value || has_url_credentials(value))
                    .then_some((e.colon + 1, e.col))
            }
            None => {
                let t = body.trim_start();
                let item = t.strip_prefix("- ").map(str::trim);
                item.filter(|v| has_url_credentials(v))
                    .map(|_| (body.len() - t.len() + 1, body.len() - t.len()))
            }
        };
        let Some((from, col)) = mask_from else {
            out.push_str(line);
            continue;
        };
        out.push_str(&body[..from]);
        out.push(' ');
        out.push_str(SENSITIVE);
        out.push_str(nl);
        // The value's continuation lines (block scalar, multi-line or nested value).
        while i < lines.len() {
            let b = lines[i].trim_end_matches(['\n', '\r']);
            if b.trim().is_empty() || indent_of(b) > col {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
}

/// Keyed digests of the secrets of a file read from a host, by key (`token`,
/// `KEEPALIVED_PASSWORD`): HMAC-SHA256 with a random key made once per process, never
/// printed, serialized or stored, so that a changed secret can be seen without its value
/// being kept anywhere. Its `Debug` shows the keys only. It is no part of an observed
/// state's identity (the key differs in every process): all values compare equal.
#[derive(Clone, Default)]
pub struct SecretDigests(std::collections::BTreeMap<String, [u8; 32]>);

impl PartialEq for SecretDigests {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SecretDigests {}

impl std::fmt::Debug for SecretDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretDigests {
    /// The digests of the secrets in `text` (the clear file as read from the host).
    pub fn of(text: &str) -> Self {
        SecretDigests(
            secrets_of(text)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, secret_digest(&v)))
                .collect(),
        )
    }

    /// Is the secret at `key` known and different from `value`?
    pub fn differs(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_some_and(|d| *d != secret_digest(value))
    }
}

/// The per-process HMAC key (32 random bytes from the OS).
fn digest_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Read;
        let mut k = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut k));
        if read.is_err() {
            // No /dev/urandom: the std hasher's random keys, stretched.
            use std::hash::{BuildHasher, Hasher};
            for chunk in k.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default(),
                );
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        k
    })
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (≤ 64 bytes).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn secret_digest(value: &str) -> [u8; 32] {
    hmac_sha256(digest_key(), value.as_bytes())
}

/// The declared value of the secret read from `source` (`env("K3S_TOKEN")`), if set.
pub fn declared_secret<'a>(t: &'a Topology, source: &str) -> Option<&'a str> {
    let c = &t.cluster;
    [
        c.token.as_ref(),
        c.vip.as_ref().and_then(|v| v.password.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|s| s.source() == source)
    .and_then(|s| s.expose())
}

/// `after` with the placeholder of each declared secret whose value on the host (`host`)
/// differs written as [`SENSITIVE_CHANGED`], so that the diff shows the change and the
/// file is rewritten.
pub fn mark_changed_secrets(
    t: &Topology,
    after: &str,
    sensitive: &[SensitiveValue],
    host: Option<&SecretDigests>,
) -> String {
    let Some(host) = host else {
        return after.to_string();
    };
    let changed: Vec<&str> = sensitive
        .iter()
        .filter(|sv| declared_secret(t, &sv.source).is_some_and(|v| host.differs(&sv.key, v)))
        .map(|sv| sv.key.as_str())
        .collect();
    if changed.is_empty() {
        return after.to_string();
    }
    let mut out = String::with_capacity(after.len() + 16);
    for line in after.split_inclusive('\n') {
        match yaml_entry(line.trim_end_matches('\n')) {
            Some(e) if changed.contains(&e.key.as_str()) && line.contains(SENSITIVE) => {
                out.push_str(&line.replacen(SENSITIVE, SENSITIVE_CHANGED, 1))
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The clear value of the secret `key` in a file read from a host (a YAML key, a dotted
/// path ending in it, or an env entry's name), for the apply engine to keep it.
pub fn existing_secret(text: &str, key: &str) -> Option<String> {
    let suffix = format!(".{key}");
    secrets_of(text)?
        .into_iter()
        .find(|(p, _)| p == key || p.ends_with(&suffix))
        .map(|(_, v)| v)
}

/// `v` as a YAML scalar: as is when plain is safe, else double-quoted.
pub fn yaml_scalar(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=@~".contains(c))
        && !v.contains(": ")
        && !v.ends_with(':')
        && parse_yaml(&format!("k: {v}\n")).is_some_and(|d| {
            d.first().and_then(|m| m.get("k")).and_then(|x| x.as_str()) == Some(v)
        });
    if plain {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// The config.yaml of a server or agent joining through `join_url`. Never contains
/// `cluster-init` (rule 10). Returns the text and the secrets to substitute.
pub fn config_yaml_for(t: &Topology, node: &Node, join_url: &str) -> (String, Vec<SensitiveValue>) {
    let mut s = String::from("# Managed by k3splan.\n");
    s.push_str(&format!("server: {join_url}\n"));
    let mut sensitive = Vec::new();
    if let Some(tok) = &t.cluster.token {
        s.push_str(&format!("token: {SENSITIVE}\n"));
        sensitive.push(SensitiveValue {
            key: "token".into(),
            source: tok.source().to_string(),
        });
    }
    s.push_str(&format!("node-name: {}\n", node.name));
    s.push_str(&format!("node-ip: {}\n", node.address));
    if t.cluster.data_dir != crate::config::DEFAULT_DATA_DIR {
        s.push_str(&format!("data-dir: {}\n", t.cluster.data_dir));
    }
    let r = &node.roles;
    if r.is_server() {
        if !r.runs_etcd() {
            s.push_str("disable-etcd: true\n");
        }
        if !r.runs_control_plane() {
            s.push_str("disable-apiserver: true\n");
            s.push_str("disable-controller-manager: true\n");
            s.push_str("disable-scheduler: true\n");
        }
        let mut sans = Vec::new();
        if let Some(v) = &t.cluster.vip {
            sans.push(v.address.to_string());
        }
        if let Some(h) = t
            .cluster
            .api_endpoint
            .as_deref()
            .and_then(crate::observed::url_host)
            && !sans.iter().any(|x| x == h)
        {
            sans.push(h.to_string());
        }
        if !sans.is_empty() {
            s.push_str("tls-san:\n");
            for x in sans {
                s.push_str(&format!("  - {x}\n"));
            }
        }
    }
    if !node.labels.is_empty() {
        s.push_str("node-label:\n");
        for (k, v) in &node.labels {
            s.push_str(&format!("  - {k}={v}\n"));
        }
    }
    if !node.taints.is_empty() {
        s.push_str("node-taint:\n");
        for x in &node.taints {
            s.push_str(&format!("  - {x}\n"));
        }
    }
    (s, sensitive)
}

/// `raw` with its `server:` line set to `url` and any `cluster-init` line removed
/// (a `server:` line is added at the top when missing).
pub fn rewrite_server_url(raw: &str, url: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in raw.lines() {
        let t = line.trim_start();
        if t.starts_with("server:") {
            if !done {
                out.push_str(&format!("server: {url}\n"));
                done = true;
            }
        } else if t.starts_with("cluster-init:") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out = format!("server: {url}\n{out}");
    }
    out
}

/// Desired keepalived settings for a node.
pub(crate) struct KeepalivedWant {
    pub priority: u8,
    pub vip: String,
    pub interface: String,
    pub router_id: u8,
    pub node_ip: String,
    pub master: bool,
}

pub(crate) fn keepalived_want(t: &Topology, node: &Node) -> Option<KeepalivedWant> {
    let vip = t.cluster.vip.as_ref()?;
    let priority = t.vip_priority(node)?;
    Some(KeepalivedWant {
        priority,
        vip: vip.address.to_string(),
        interface: vip.interface.clone(),
        router_id: vip.router_id,
        node_ip: node.address.to_string(),
        master: node.primary,
    })
}

pub(crate) fn keepalived_matches(m: &KeepalivedManifest, w: &KeepalivedWant) -> bool {
    m.priority == Some(w.priority)
        && m.vip.as_deref() == Some(w.vip.as_str())
        && m.interface.as_deref() == Some(w.interface.as_str())
        && m.router_id == Some(w.router_id)
}

/// The full keepalived static pod manifest for a server node (`None` without a VIP or for
/// an agent). The VRRP password is the `(sensitive)` placeholder.
pub fn keepalived_manifest_for(t: &Topology, node: &Node) -> Option<(String, Vec<SensitiveValue>)> {
    let w = keepalived_want(t, node)?;
    let vip = t.cluster.vip.as_ref()?;
    let mut sensitive = Vec::new();
    let mut env = vec![
        ("KEEPALIVED_PRIORITY", format!("\"{}\"", w.priority)),
        (
            "KEEPALIVED_VIRTUAL_IPS",
            format!("\"#PYTHON2BASH:['{}']\"", w.vip),
        ),
        (
            "KEEPALIVED_STATE",
            if w.master { "MASTER" } else { "BACKUP" }.to_string(),
        ),
    ];
    if let Some(p) = &vip.password {
        env.push(("KEEPALIVED_PASSWORD", SENSITIVE.to_string()));
        sensitive.push(SensitiveValue {
            key: "KEEPALIVED_PASSWORD".into(),
            source: p.source().to_string(),
        });
    }
    env.push(("KEEPALIVED_ROUTER_ID", format!("\"{}\"", w.router_id)));
    env.push(("KEEPALIVED_NODE_IP", format!("\"{}\"", w.node_ip)));
    env.push(("KEEPALIVED_INTERFACE", format!("\"{}\"", w.interface)));
    let mut s = String::from(
        "# Managed by k3splan.\napiVersion: v1\nkind: Pod\nmetadata:\n  name: keepalived\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n    - name: keepalived\n      image: osixia/keepalived:2.0.20\n      securityContext:\n        capabilities:\n          add: [\"NET_ADMIN\", \"NET_BROADCAST\", \"NET_RAW\"]\n      env:\n",
    );
    for (k, v) in env {
        s.push_str(&format!("        - name: {k}\n          value: {v}\n"));
    }
    Some((s, sensitive))
}

/// `raw` (an existing manifest) with its keepalived env values set as wanted; other lines
/// (image, password, probes) are kept.
pub(crate) fn rewrite_keepalived(raw: &str, w: &KeepalivedWant) -> String {
    let wanted: [(&str, String); 5] = [
        ("KEEPALIVED_PRIORITY", format!("\"{}\"", w.priority)),
        (
            "KEEPALIVED_VIRTUAL_IPS",
            format!("\"#PYTHON2BASH:['{}']\"", w.vip),
        ),
        (
            "KEEPALIVED_STATE",
            if w.master { "MASTER" } else { "BACKUP" }.to_string(),
        ),
        ("KEEPALIVED_ROUTER_ID", format!("\"{}\"", w.router_id)),
        ("KEEPALIVED_INTERFACE", format!("\"{}\"", w.interface)),
    ];
    let mut out = String::new();
    let mut pending: Option<&str> = None;
    for line in raw.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if let Some(key) = pending
            && let Some(_) = t.strip_prefix("value:")
        {
            let v = &wanted.iter().find(|(k, _)| *k == key).expect("key").1;
            out.push_str(&format!("{indent}value: {v}\n"));
            pending = None;
            continue;
        }
        if let Some(name) = t.trim_start_matches("- ").strip_prefix("name:") {
            let name = name.trim().trim_matches('"');
            pending = wanted.iter().find(|(k, _)| *k == name).map(|(k, _)| *k);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_token_and_vrrp_password() {
        let raw = "server: https://a:6443\ntoken: K10abc::server:xyz\nenv:\n- name: KEEPALIVED_PASSWORD\n  value: \"MTkyLjE2\"\n- name: X\n  value: keep\n";
        let m = mask_secrets(raw);
        assert!(!m.contains("K10abc") && !m.contains("MTkyLjE2"), "{m}");
        assert!(m.contains("token: (sensitive)") && m.contains("value: keep"));
    }

    /// `text` masked: the secret is gone, the result still parses and holds `(sensitive)`.
    fn masked_without(text: &str, secrets: &[&str]) -> String {
        let m = mask_secrets(text);
        for s in secrets {
            assert!(!m.contains(s), "{s:?} leaked in\n{m}");
        }
        m
    }

    #[test]
    fn issue13_masks_quoted_spaced_and_block_scalar_keys() {
        let m = masked_without("\"token\": \"K10quoted\"\nnode-name: a\n", &["K10quoted"]);
        assert_eq!(m, "\"token\": (sensitive)\nnode-name: a\n");
        let m = masked_without("'token': K10single\n", &["K10single"]);
        assert_eq!(m, "'token': (sensitive)\n");
        let m = masked_without(
            "token : K10spaced\nserver: https://a:6443\n",
            &["K10spaced"],
        );
        assert_eq!(m, "token : (sensitive)\nserver: https://a:6443\n");
        let m = masked_without(
            "token: |\n  K10block\n  second-line\n\nnode-name: a\n",
            &["K10block", "second-line"],
        );
        assert_eq!(m, "token: (sensitive)\nnode-name: a\n");
        let m = masked_without(
            "token: >-\n    K10folded\nnode-ip: 1.2.3.4\n",
            &["K10folded"],
        );
        assert_eq!(m, "token: (sensitive)\nnode-ip: 1.2.3.4\n");
        // The value on the next line, as a plain multi-line scalar.
        masked_without("token:\n  K10nextline\n", &["K10nextline"]);
    }

    #[test]
    fn issue13_masks_agent_token_and_s3_keys() {
        let m = masked_without(
            "agent-token: K10agent\netcd-s3-secret-key: s3SECRET\netcd-s3-access-key: AKIAKEY\netcd-s3-bucket: b\n",
            &["K10agent", "s3SECRET", "AKIAKEY"],
        );
        assert!(m.contains("etcd-s3-bucket: b"), "{m}");
        assert_eq!(m.matches(SENSITIVE).count(), 3, "{m}");
    }

    #[test]
    fn issue13_masks_datastore_endpoint_credentials() {
        let m = masked_without(
            "datastore-endpoint: postgres://k3s:pa55w0rd@db.local:5432/k3s\nnode-name: a\n",
            &["pa55w0rd"],
        );
        assert_eq!(m, "datastore-endpoint: (sensitive)\nnode-name: a\n");
        // Without credentials the endpoint is shown.
        let plain = "datastore-endpoint: https://10.0.0.1:2379\n";
        assert_eq!(mask_secrets(plain), plain);
        // In a list too.
        masked_without(
            "etcd-endpoints:\n  - https://u:hidden@e1:2379\n",
            &["hidden"],
        );
    }

    #[test]
    fn issue13_unlocatable_or_unparsable_secrets_hide_the_whole_file() {
        // A flow mapping, an env entry with its value before its name, broken YAML.
        for text in [
            "{token: K10flow, node-name: a}\n",
            "env:\n- value: \"VRRPfirst\"\n  name: KEEPALIVED_PASSWORD\n",
            "token: K10broken\n  bad: [\n",
        ] {
            let m = masked_without(text, &["K10flow", "VRRPfirst", "K10broken"]);
            assert!(m.starts_with(SENSITIVE_FILE), "{m}");
        }
    }

    #[test]
    fn issue13_masks_installer_env_files() {
        let env = "K3S_TOKEN=K10envtok\nK3S_URL=https://10.0.0.1:6443\nexport K3S_AGENT_TOKEN='K10agent'\nK3S_DATASTORE_ENDPOINT=\"mysql://root:dbpass@tcp(db:3306)/k3s\"\n# comment\n";
        let m = masked_without(env, &["K10envtok", "K10agent", "dbpass"]);
        assert!(m.contains("K3S_URL=https://10.0.0.1:6443\n"), "{m}");
        assert!(m.contains("K3S_TOKEN=(sensitive)\n"), "{m}");
        assert_eq!(
            existing_secret(env, "K3S_TOKEN").as_deref(),
            Some("K10envtok")
        );
    }

    #[test]
    fn issue13_existing_secrets_are_read_from_the_parsed_file() {
        let cfg = "\"token\": |\n  K10block\nserver: https://a:6443\n";
        assert_eq!(existing_secret(cfg, "token").as_deref(), Some("K10block\n"));
        assert_eq!(existing_secret(cfg, "agent-token"), None);
        assert_eq!(yaml_scalar("K10abc::server:xyz"), "K10abc::server:xyz");
        assert_eq!(yaml_scalar("K10block\n"), "\"K10block\\n\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let d = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(d),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn issue13_secret_digests_see_a_changed_token_and_print_no_digest() {
        let d = SecretDigests::of("token: K10wrong\nnode-name: a\n");
        assert!(d.differs("token", "K10right"));
        assert!(!d.differs("token", "K10wrong"));
        assert!(!d.differs("agent-token", "x"), "unknown is not a change");
        let dbg = format!("{d:?}");
        assert_eq!(dbg, "{\"token\"}");
    }

    #[test]
    fn rewrite_server_drops_cluster_init() {
        let r = rewrite_server_url("cluster-init: true\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
        let r = rewrite_server_url("server: https://old:6443\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
    }
}
