//! What a host file's secrets are, read from the parsed file (YAML, or an installer env
//! file), and the file shown with them masked. Pure: the HMAC key of the digests is the
//! caller's (see [`secret_digests`]).
//!
//! Guarantee: [`mask_secrets`] returns a text in which every secret found by parsing is
//! `(sensitive)` (checked by parsing the masked text again), or no content at all.

use super::yaml::mask_yaml;
use super::{SENSITIVE, SENSITIVE_FILE};
use crate::observed::SecretDigests;

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
pub(super) fn has_url_credentials(v: &str) -> bool {
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
pub(super) fn parse_yaml(text: &str) -> Option<Vec<serde_yaml::Value>> {
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
pub(super) struct EnvLine<'a> {
    line: usize,
    key: &'a str,
    eq: usize,
    value: String,
}

/// Parses an environment file: blank lines, `#`/`;` comments and `[export ]KEY=VALUE`
/// lines, VALUE plain or quoted on one line. `None` for anything else.
pub(super) fn parse_env(text: &str) -> Option<Vec<EnvLine<'_>>> {
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

/// The clear value of the secret `key` in a file read from a host (a YAML key, a dotted
/// path ending in it, or an env entry's name), for the apply engine to keep it.
pub fn existing_secret(text: &str, key: &str) -> Option<String> {
    let suffix = format!(".{key}");
    secrets_of(text)?
        .into_iter()
        .find(|(p, _)| p == key || p.ends_with(&suffix))
        .map(|(_, v)| v)
}

/// The keyed digests of the secrets in `text` (the clear file as read from a host), under
/// `key`: the caller draws it at random once per process (see [`SecretDigests`]).
pub fn secret_digests(key: [u8; 32], text: &str) -> SecretDigests {
    SecretDigests::new(key, secrets_of(text).unwrap_or_default())
}

/// A fixed key for tests: what [`SecretDigests::of`] digests under.
#[cfg(any(test, feature = "testkit"))]
const TEST_DIGEST_KEY: [u8; 32] = [0x5a; 32];

#[cfg(any(test, feature = "testkit"))]
impl SecretDigests {
    /// Test support: the digests of `text` under a fixed key (never for a real host: a
    /// fixed key makes the digests guessable).
    pub fn of(text: &str) -> Self {
        secret_digests(TEST_DIGEST_KEY, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::files::yaml_scalar;

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
    fn issue13_secret_digests_see_a_changed_token_and_print_no_digest() {
        let d = SecretDigests::of("token: K10wrong\nnode-name: a\n");
        assert!(d.differs("token", "K10right"));
        assert!(!d.differs("token", "K10wrong"));
        assert!(!d.differs("agent-token", "x"), "unknown is not a change");
        let dbg = format!("{d:?}");
        assert_eq!(dbg, "{\"token\"}");
    }
}
