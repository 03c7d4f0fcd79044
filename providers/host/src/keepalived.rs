//! The keepalived static pod manifest: the format k3splan reads and writes.
//!
//! k3splan manages the API VIP with a static pod (kubelet runs every manifest in
//! `<data_dir>/agent/pod-manifests/`) using the `osixia/keepalived` image, configured entirely
//! by environment variables, so no ConfigMap or keepalived.conf file is needed:
//!
//! | env var | meaning | example |
//! |---|---|---|
//! | `KEEPALIVED_INTERFACE` | interface carrying the VIP | `eth0` |
//! | `KEEPALIVED_VIRTUAL_IPS` | the VIP(s), osixia list syntax | `#PYTHON2BASH:['192.168.0.66']` |
//! | `KEEPALIVED_ROUTER_ID` | VRRP virtual router id (1–255) | `66` |
//! | `KEEPALIVED_PRIORITY` | VRRP priority (primary 100, others 90) | `100` |
//! | `KEEPALIVED_STATE` | initial state, `MASTER` or `BACKUP` | `MASTER` |
//! | `KEEPALIVED_PASSWORD` | VRRP auth password (secret, optional) | |
//! | `KEEPALIVED_UNICAST_PEERS` | peers, osixia list syntax (optional) | `#PYTHON2BASH:['192.168.0.243']` |
//!
//! Reading accepts the list syntax `#PYTHON2BASH:['a','b']` and plain comma/space separated
//! lists. The password is never returned: only whether one is set (and the observe script
//! redacts it on the host before the manifest is sent).

use serde::{Deserialize, Serialize};

/// The keepalived settings found in (or to be rendered into) a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepalivedConfig {
    /// VRRP priority.
    pub priority: Option<u8>,
    /// `MASTER` or `BACKUP` (as written).
    pub state: Option<String>,
    /// Virtual IPs.
    pub virtual_ips: Vec<String>,
    /// Interface.
    pub interface: Option<String>,
    /// Virtual router id.
    pub router_id: Option<u8>,
    /// Unicast peers, when set.
    pub unicast_peers: Vec<String>,
    /// Whether `KEEPALIVED_PASSWORD` is set (its value is never read).
    pub password_present: bool,
    /// Container image.
    pub image: Option<String>,
}

/// Parse failure of a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("keepalived manifest {path}: not valid YAML: {detail}")]
    Yaml {
        /// Path on the host.
        path: String,
        /// Parser message.
        detail: String,
    },
    /// No keepalived container with KEEPALIVED_* env vars.
    #[error("keepalived manifest {path}: no container with KEEPALIVED_* environment variables")]
    NoKeepalived {
        /// Path on the host.
        path: String,
    },
    /// A numeric field is not a number in range.
    #[error("keepalived manifest {path}: {var}={value:?} is not a number 0-255")]
    BadNumber {
        /// Path on the host.
        path: String,
        /// Env var.
        var: String,
        /// Value found.
        value: String,
    },
}

/// Splits an osixia list value (`#PYTHON2BASH:['a','b']`) or a plain `a,b` / `a b` list.
pub fn parse_list(v: &str) -> Vec<String> {
    let v = v.trim();
    let inner = v.strip_prefix("#PYTHON2BASH:").unwrap_or(v).trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(inner);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses a static pod manifest (`path` only names it in errors).
pub fn parse_manifest(path: &str, text: &str) -> Result<KeepalivedConfig, ManifestError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ManifestError::Yaml {
        path: path.into(),
        detail: e.to_string(),
    })?;
    let containers = doc
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.as_sequence())
        .cloned()
        .unwrap_or_default();
    for c in containers {
        let Some(env) = c.get("env").and_then(|e| e.as_sequence()) else {
            continue;
        };
        let mut found = false;
        let mut cfg = KeepalivedConfig {
            image: c.get("image").and_then(|i| i.as_str()).map(String::from),
            ..Default::default()
        };
        for var in env {
            let Some(name) = var.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let value = match var.get("value") {
                Some(serde_yaml::Value::String(s)) => s.clone(),
                Some(serde_yaml::Value::Number(n)) => n.to_string(),
                Some(serde_yaml::Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            };
            let number = |var: &str| {
                value
                    .trim()
                    .parse::<u8>()
                    .map(Some)
                    .map_err(|_| ManifestError::BadNumber {
                        path: path.into(),
                        var: var.into(),
                        value: value.clone(),
                    })
            };
            match name {
                "KEEPALIVED_PRIORITY" => cfg.priority = number(name)?,
                "KEEPALIVED_ROUTER_ID" => cfg.router_id = number(name)?,
                "KEEPALIVED_STATE" => cfg.state = Some(value.trim().to_string()),
                "KEEPALIVED_INTERFACE" => cfg.interface = Some(value.trim().to_string()),
                "KEEPALIVED_VIRTUAL_IPS" => cfg.virtual_ips = parse_list(&value),
                "KEEPALIVED_UNICAST_PEERS" => cfg.unicast_peers = parse_list(&value),
                "KEEPALIVED_PASSWORD" => cfg.password_present = !value.is_empty(),
                _ => continue,
            }
            found = true;
        }
        if found {
            return Ok(cfg);
        }
    }
    Err(ManifestError::NoKeepalived { path: path.into() })
}

/// What to render into a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepalivedSpec {
    /// Container image (`osixia/keepalived:2.0.20`).
    pub image: String,
    /// Interface.
    pub interface: String,
    /// The VIP.
    pub virtual_ip: String,
    /// Virtual router id.
    pub router_id: u8,
    /// Priority (100 on the primary, 90 elsewhere by convention).
    pub priority: u8,
    /// `MASTER` on the primary, `BACKUP` elsewhere.
    pub state: String,
    /// Unicast peers (empty: multicast).
    pub unicast_peers: Vec<String>,
    /// VRRP password; goes into the file, so pass it in the write's `secrets` too so that
    /// the diff shows it redacted.
    pub password: Option<String>,
}

fn yaml_str(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("string serialises")
}

fn python_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("#PYTHON2BASH:[{}]", inner.join(","))
}

/// Renders the static pod manifest. Deterministic: same spec, same bytes (so an unchanged
/// spec produces an empty diff).
pub fn render_manifest(spec: &KeepalivedSpec) -> String {
    let mut env = vec![
        ("KEEPALIVED_INTERFACE", spec.interface.clone()),
        (
            "KEEPALIVED_VIRTUAL_IPS",
            python_list(std::slice::from_ref(&spec.virtual_ip)),
        ),
        ("KEEPALIVED_ROUTER_ID", spec.router_id.to_string()),
        ("KEEPALIVED_PRIORITY", spec.priority.to_string()),
        ("KEEPALIVED_STATE", spec.state.clone()),
    ];
    if !spec.unicast_peers.is_empty() {
        env.push(("KEEPALIVED_UNICAST_PEERS", python_list(&spec.unicast_peers)));
    }
    if let Some(p) = &spec.password {
        env.push(("KEEPALIVED_PASSWORD", p.clone()));
    }
    let mut out = String::from(
        "# Managed by k3splan: keepalived for the Kubernetes API VIP (static pod).\n\
         apiVersion: v1\n\
         kind: Pod\n\
         metadata:\n  name: keepalived\n  namespace: kube-system\n\
         spec:\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  containers:\n",
    );
    out.push_str(&format!(
        "    - name: keepalived\n      image: {}\n      args: [\"--copy-service\"]\n\
         \x20     securityContext:\n        capabilities:\n          add: [\"NET_ADMIN\", \"NET_BROADCAST\", \"NET_RAW\"]\n\
         \x20     env:\n",
        yaml_str(&spec.image)
    ));
    for (k, v) in env {
        out.push_str(&format!(
            "        - name: {k}\n          value: {}\n",
            yaml_str(&v)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KeepalivedSpec {
        KeepalivedSpec {
            image: "osixia/keepalived:2.0.20".into(),
            interface: "eth0".into(),
            virtual_ip: "192.168.0.66".into(),
            router_id: 66,
            priority: 100,
            state: "MASTER".into(),
            unicast_peers: vec!["192.168.0.243".into(), "192.168.0.239".into()],
            password: Some("s3cr\"et".into()),
        }
    }

    #[test]
    fn render_then_parse_round_trips_without_the_password() {
        let text = render_manifest(&spec());
        let got = parse_manifest("/m.yaml", &text).unwrap();
        assert_eq!(got.priority, Some(100));
        assert_eq!(got.router_id, Some(66));
        assert_eq!(got.state.as_deref(), Some("MASTER"));
        assert_eq!(got.interface.as_deref(), Some("eth0"));
        assert_eq!(got.virtual_ips, vec!["192.168.0.66"]);
        assert_eq!(got.unicast_peers, vec!["192.168.0.243", "192.168.0.239"]);
        assert!(got.password_present);
        assert!(!format!("{got:?}").contains("s3cr"));
    }

    #[test]
    fn plain_lists_and_bad_numbers() {
        assert_eq!(
            parse_list("10.0.0.1, 10.0.0.2"),
            vec!["10.0.0.1", "10.0.0.2"]
        );
        let text = "spec:\n  containers:\n  - name: k\n    env:\n    - name: KEEPALIVED_PRIORITY\n      value: high\n";
        assert!(matches!(
            parse_manifest("/m", text),
            Err(ManifestError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_manifest("/m", "kind: Pod\n"),
            Err(ManifestError::NoKeepalived { .. })
        ));
    }
}
