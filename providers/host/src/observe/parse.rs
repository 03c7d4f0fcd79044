//! Parsing the observe script's output into [`HostFacts`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::facts::*;
use crate::error::HostError;
use crate::keepalived::parse_manifest;

fn sections(out: &str, marker: &str) -> BTreeMap<String, Vec<String>> {
    let prefix = format!("{marker} ");
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix(&prefix) {
            cur = Some(name.to_string());
            map.entry(name.to_string()).or_default();
        } else if let Some(c) = &cur {
            map.get_mut(c)
                .expect("section exists")
                .push(line.to_string());
        }
    }
    map
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').trim_matches('\'').to_string()
}

fn service_state(lines: Option<&Vec<String>>) -> ServiceState {
    match lines.and_then(|l| l.first()).map(|s| s.trim()) {
        Some("0") => ServiceState::Active,
        Some("126") | Some("127") => {
            ServiceState::Unknown("service manager command not found or not executable".into())
        }
        Some(_) => ServiceState::Inactive,
        None => ServiceState::Unknown("no output".into()),
    }
}

fn yaml_bool(v: Option<&serde_yaml::Value>) -> bool {
    match v {
        Some(serde_yaml::Value::Bool(b)) => *b,
        Some(serde_yaml::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn yaml_list(v: Option<&serde_yaml::Value>) -> Vec<String> {
    match v {
        Some(serde_yaml::Value::Sequence(seq)) => seq
            .iter()
            .filter_map(|x| match x {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_yaml::Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Why `config.yaml` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum K3sConfigError {
    /// Not YAML.
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    /// YAML, but not a mapping of keys.
    #[error("top level is not a mapping")]
    NotAMapping,
}

/// Parses (redacted) `config.yaml` text.
pub fn parse_k3s_config(text: &str) -> Result<K3sConfig, K3sConfigError> {
    if text.trim().is_empty() {
        return Ok(K3sConfig::default());
    }
    let v: serde_yaml::Value = serde_yaml::from_str(text)?;
    let Some(map) = v.as_mapping() else {
        return Err(K3sConfigError::NotAMapping);
    };
    let get = |k: &str| map.get(k);
    let string = |k: &str| match get(k) {
        Some(serde_yaml::Value::String(s)) => Some(s.clone()),
        Some(serde_yaml::Value::Sequence(_)) => yaml_list(get(k)).into_iter().next(),
        _ => None,
    };
    let mut keys: Vec<String> = map
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    keys.sort();
    Ok(K3sConfig {
        server: string("server"),
        cluster_init: yaml_bool(get("cluster-init")),
        token_present: get("token").is_some(),
        agent_token_present: get("agent-token").is_some(),
        disable_etcd: yaml_bool(get("disable-etcd")),
        disable_apiserver: yaml_bool(get("disable-apiserver")),
        disable_controller_manager: yaml_bool(get("disable-controller-manager")),
        disable_scheduler: yaml_bool(get("disable-scheduler")),
        disable_agent: yaml_bool(get("disable-agent")),
        node_name: string("node-name"),
        node_ip: string("node-ip"),
        data_dir: string("data-dir"),
        node_labels: yaml_list(get("node-label")),
        node_taints: yaml_list(get("node-taint")),
        disable: yaml_list(get("disable")),
        tls_san: yaml_list(get("tls-san")),
        keys,
    })
}

/// Parses the observe script's output.
pub fn parse_observe_output(
    host: &str,
    out: &str,
    marker: &str,
    spec: &ObserveSpec,
) -> Result<HostFacts, HostError> {
    let out = Output {
        host,
        s: sections(out, marker),
    };
    if !out.s.contains_key("end") {
        return Err(out.bad("the script did not run to its end marker".into()));
    }
    let hostname = out
        .first("hostname")
        .ok_or_else(|| out.bad("no hostname".into()))?;
    Ok(HostFacts {
        hostname,
        os: out.first("os").map(|o| unquote(&o)),
        kernel: out.first("kernel"),
        k3s_binary: out.k3s_binary(),
        server_service: service_state(out.s.get("svc-server")),
        agent_service: service_state(out.s.get("svc-agent")),
        config: out.config(spec)?,
        server_env: out.env_file(
            "env-server",
            &spec.layout.env_file(&spec.layout.server_unit),
        )?,
        agent_env: out.env_file("env-agent", &spec.layout.env_file(&spec.layout.agent_unit))?,
        keepalived: out.keepalived(spec)?,
        etcd_data: out.etcd_data(),
        disk: out.disk(),
        manifest_skips: out
            .lines("manifest-skips")
            .into_iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        raw_config: out.raw("config-raw")?,
        raw_keepalived: out.raw("manifest-raw")?,
        raw_server_env: out.raw("env-server-raw")?,
        raw_agent_env: out.raw("env-agent-raw")?,
    })
}

/// The script's output of one host, by section.
struct Output<'a> {
    host: &'a str,
    s: BTreeMap<String, Vec<String>>,
}

impl Output<'_> {
    fn bad(&self, detail: String) -> HostError {
        HostError::Output {
            host: self.host.to_string(),
            command: "observe script".into(),
            detail,
        }
    }

    /// The section's first line, trimmed, unless empty.
    fn first(&self, k: &str) -> Option<String> {
        self.s
            .get(k)
            .and_then(|l| l.first())
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
    }

    fn lines(&self, k: &str) -> Vec<String> {
        self.s.get(k).cloned().unwrap_or_default()
    }

    /// A file section: its state line, and the file's text after it.
    fn body(&self, k: &str) -> (String, String) {
        let lines = self.lines(k);
        let state = lines.first().cloned().unwrap_or_default();
        (state, lines.get(1..).unwrap_or(&[]).join("\n"))
    }

    fn k3s_binary(&self) -> K3sBinary {
        let k3s_lines = self.lines("k3s");
        K3sBinary {
            present: k3s_lines.first().map(|l| l.trim()) == Some("present"),
            version: k3s_lines.get(1).and_then(|l| {
                // "k3s version v1.28.5+k3s1 (5b2d1271)"
                let mut w = l.split_whitespace();
                while let Some(x) = w.next() {
                    if x == "version" {
                        return w.next().map(String::from);
                    }
                }
                None
            }),
        }
    }

    fn config(&self, spec: &ObserveSpec) -> Result<ConfigFile, HostError> {
        let (cstate, ctext) = self.body("config");
        Ok(match cstate.trim() {
            "absent" => ConfigFile::Absent,
            "unreadable" => ConfigFile::Invalid {
                reason: format!("{} is not readable", spec.layout.config_path),
            },
            "present" => match parse_k3s_config(&ctext) {
                Ok(c) => ConfigFile::Present(c),
                Err(e) => ConfigFile::Invalid {
                    reason: format!("{}: {e}", spec.layout.config_path),
                },
            },
            other => return Err(self.bad(format!("config section state {other:?}"))),
        })
    }

    /// An installer env file's section: its state, then its `K3S_URL=` lines.
    fn env_file(&self, k: &str, path: &str) -> Result<EnvFile, HostError> {
        let (state, text) = self.body(k);
        Ok(match state.trim() {
            // An observer older than the env file sections: nothing was read.
            "" if !self.s.contains_key(k) => EnvFile::Absent,
            "absent" => EnvFile::Absent,
            "unreadable" => EnvFile::Invalid {
                reason: format!("{path} is not readable"),
            },
            "present" => EnvFile::Present {
                k3s_url: text.lines().rev().find_map(env_assignment_value),
            },
            other => return Err(self.bad(format!("{k} section state {other:?}"))),
        })
    }

    fn keepalived(&self, spec: &ObserveSpec) -> Result<ManifestFile, HostError> {
        let (mstate, mtext) = self.body("manifest");
        let mpath = spec.keepalived_manifest.clone().unwrap_or_default();
        Ok(match mstate.trim() {
            "skipped" => ManifestFile::NotRequested,
            "absent" => ManifestFile::Absent,
            "unreadable" => ManifestFile::Invalid {
                reason: format!("{mpath} is not readable"),
            },
            "present" => match parse_manifest(&mpath, &mtext) {
                Ok(c) => ManifestFile::Present(c),
                Err(e) => ManifestFile::Invalid {
                    reason: e.to_string(),
                },
            },
            other => return Err(self.bad(format!("manifest section state {other:?}"))),
        })
    }

    fn etcd_data(&self) -> EtcdDataDir {
        let mut etcd_data = EtcdDataDir::default();
        let mut config_lines = Vec::new();
        for line in self.s.get("etcd").into_iter().flatten() {
            let line = line.trim_end();
            match line {
                "exists" => etcd_data.exists = true,
                "member-dir" => etcd_data.has_member_dir = true,
                "tombstone" => etcd_data.tombstone = true,
                _ => {
                    if let Some(n) = line.strip_prefix("name ") {
                        etcd_data.member_name =
                            Some(n.trim().to_string()).filter(|n| !n.is_empty());
                    } else if let Some(b) = line.strip_prefix("backup ") {
                        etcd_data.backups.push(b.to_string());
                    } else if let Some(c) = line.strip_prefix("config ") {
                        config_lines.push(c);
                    }
                }
            }
        }
        let config = EtcdConfigKeys::parse(&config_lines.join("\n"));
        let value = |v: Option<String>| v.filter(|v| !v.is_empty());
        etcd_data.initial_cluster = value(config.initial_cluster);
        etcd_data.initial_cluster_state = value(config.initial_cluster_state);
        etcd_data.peer_urls = value(config.initial_advertise_peer_urls);
        etcd_data
    }

    fn disk(&self) -> Option<DiskSpace> {
        let l = self.s.get("disk")?;
        let path = l.first()?.trim().to_string();
        let cols: Vec<&str> = l.get(1)?.split_whitespace().collect();
        // Filesystem 1024-blocks Used Available Capacity Mounted-on
        let total: u64 = cols.get(1)?.parse().ok()?;
        let avail: u64 = cols.get(3)?.parse().ok()?;
        Some(DiskSpace {
            path,
            available_bytes: avail * 1024,
            total_bytes: total * 1024,
        })
    }

    /// The exact bytes of a file the script sent as `od` hex.
    fn raw(&self, k: &str) -> Result<Option<RawText>, HostError> {
        let Some(lines) = self.s.get(k) else {
            return Ok(None);
        };
        if lines.first().map(|l| l.trim()) != Some("present") {
            return Ok(None);
        }
        // The text is what `plan` shows and `apply` rewrites: a truncated read must not pass
        // for a shorter file. `od` ends with `ok` only when it read the whole file.
        let (last, hex) = match lines[1..].split_last() {
            Some((last, hex)) => (last.trim(), hex),
            None => ("", &[][..]),
        };
        if last != "ok" {
            return Err(self.bad(format!(
                "{k} section: `od -An -v -tx1` did not read the whole file ({})",
                if last == "failed" {
                    "it failed; is od (POSIX) installed?"
                } else {
                    "output cut short"
                }
            )));
        }
        let mut bytes = Vec::new();
        for w in hex.iter().flat_map(|l| l.split_whitespace()) {
            let b = u8::from_str_radix(w, 16)
                .map_err(|_| self.bad(format!("{k} section: {w:?} is not a hex byte")))?;
            bytes.push(b);
        }
        Ok(Some(RawText::new(bytes)))
    }
}

/// The value of a `[export ]K3S_URL=VALUE` line of a systemd `EnvironmentFile=` (what the
/// installer writes: `K3S_URL='https://…'` from `sh -c export`), unquoted: single quotes
/// taken literally, double quotes with `\"` and `\\` unescaped, a plain value trimmed.
/// `None` for a line that assigns no value.
pub fn env_assignment_value(line: &str) -> Option<String> {
    let t = line.trim();
    let t = t.strip_prefix("export").map_or(t, |r| {
        if r.starts_with([' ', '\t']) {
            r.trim_start()
        } else {
            t
        }
    });
    let (_, v) = t.split_once('=')?;
    let v = v.trim();
    let value = match v.chars().next() {
        Some('\'') => v.strip_prefix('\'')?.strip_suffix('\'')?.to_string(),
        Some('"') => v
            .strip_prefix('"')?
            .strip_suffix('"')?
            .replace("\\\"", "\"")
            .replace("\\\\", "\\"),
        _ => v.to_string(),
    };
    Some(value)
}

/// The keys k3splan reads from etcd's own `config` file in the data dir (YAML k3s writes).
/// The script sends only these top-level `key: value` lines, which form a YAML mapping.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct EtcdConfigKeys {
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    initial_advertise_peer_urls: Option<String>,
}

impl EtcdConfigKeys {
    /// The keys of `text`; none when it is not a YAML mapping of strings (the planner then
    /// sees the data dir's origin as unknown).
    fn parse(text: &str) -> Self {
        if text.trim().is_empty() {
            return Self::default();
        }
        serde_yaml::from_str(text).unwrap_or_else(|e| {
            tracing::debug!("etcd config lines are not YAML: {e}");
            Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(raw_section: &str) -> String {
        let m = "@@m@@";
        format!(
            "{m} hostname\nh1\n{m} config\npresent\nserver: https://10.0.0.1:6443\n{m} manifest\nskipped\n{m} config-raw\n{raw_section}{m} end\n"
        )
    }

    fn spec() -> ObserveSpec {
        ObserveSpec {
            raw_files: true,
            ..ObserveSpec::default()
        }
    }

    /// The `.skip` files under `server/manifests`, one relative path a line (issue 19).
    #[test]
    fn manifest_skip_files_are_read_one_a_line() {
        let m = "@@m@@";
        let out = format!(
            "{m} hostname\nh1\n{m} config\nabsent\n{m} manifest\nskipped\n{m} manifest-skips\ncoredns.yaml.skip\nmetrics-server/metrics-server-deployment.yaml.skip\n\n{m} end\n"
        );
        let f = parse_observe_output("h1", &out, m, &ObserveSpec::default()).unwrap();
        assert_eq!(
            f.manifest_skips,
            [
                "coredns.yaml.skip",
                "metrics-server/metrics-server-deployment.yaml.skip"
            ]
        );
        let f = parse_observe_output("h1", &output("present\nok\n"), m, &spec()).unwrap();
        assert!(f.manifest_skips.is_empty(), "no manifests dir: none");
    }

    /// `plan` rewrites config.yaml from this text: a read that failed or was cut short must
    /// be an observation failure, never an empty or shorter file.
    #[test]
    fn a_raw_read_without_its_ok_trailer_fails_the_observation() {
        let ok = parse_observe_output("h1", &output("present\n 61 0a\nok\n"), "@@m@@", &spec())
            .expect("complete read");
        assert_eq!(ok.raw_config.unwrap().expose(), b"a\n");
        let empty = parse_observe_output("h1", &output("present\nok\n"), "@@m@@", &spec())
            .expect("an empty file is fine");
        assert_eq!(empty.raw_config.unwrap().expose(), b"");
        for (section, why) in [
            ("present\nfailed\n", "is od (POSIX) installed?"),
            ("present\n", "output cut short"),
            ("present\n 61 0a\n", "output cut short"),
        ] {
            let e = parse_observe_output("h1", &output(section), "@@m@@", &spec())
                .expect_err(section)
                .to_string();
            assert!(
                e.contains("config-raw") && e.contains(why),
                "{section:?}: {e}"
            );
            assert!(e.contains("h1"), "names the host: {e}");
        }
    }

    /// etcd's config lines are read as YAML: quoted or plain values alike, an empty value is
    /// none, and text that is no YAML mapping leaves the data dir's origin unknown.
    #[test]
    fn etcd_config_lines_are_read_as_yaml() {
        let m = "@@m@@";
        let out = format!(
            "{m} hostname\nh1\n{m} config\nabsent\n{m} manifest\nskipped\n{m} etcd\nexists\n\
             config initial-cluster: 'a=https://10.0.0.1:2380,b=https://10.0.0.2:2380'\n\
             config initial-cluster-state: existing\nconfig initial-advertise-peer-urls: \n{m} end\n"
        );
        let f = parse_observe_output("h1", &out, m, &ObserveSpec::default()).unwrap();
        assert_eq!(
            f.etcd_data.initial_cluster.as_deref(),
            Some("a=https://10.0.0.1:2380,b=https://10.0.0.2:2380")
        );
        assert_eq!(
            f.etcd_data.initial_cluster_state.as_deref(),
            Some("existing")
        );
        assert_eq!(f.etcd_data.peer_urls, None);
        let keys = EtcdConfigKeys::parse("initial-cluster: [unclosed");
        assert_eq!(keys.initial_cluster, None);
    }

    /// The installer's env files: the last `K3S_URL` assignment, unquoted the way systemd
    /// reads `EnvironmentFile=`; an unreadable file is no "absent".
    #[test]
    fn issue19_env_file_sections_give_the_last_k3s_url() {
        let m = "@@m@@";
        let out = format!(
            "{m} hostname\nh1\n{m} config\nabsent\n{m} env-server\npresent\nK3S_URL='https://10.0.0.1:6443'\n  export K3S_URL=\"https://10.0.0.2:6443\"\n\n\
             {m} env-agent\nunreadable\n{m} manifest\nskipped\n{m} end\n"
        );
        let f = parse_observe_output("h1", &out, m, &ObserveSpec::default()).unwrap();
        assert_eq!(
            f.server_env,
            EnvFile::Present {
                k3s_url: Some("https://10.0.0.2:6443".into())
            }
        );
        assert!(
            matches!(&f.agent_env, EnvFile::Invalid { reason } if reason.contains("/etc/systemd/system/k3s-agent.service.env")),
            "{:?}",
            f.agent_env
        );
        assert_eq!(
            env_assignment_value("K3S_URL=https://a:6443 ").as_deref(),
            Some("https://a:6443")
        );
        assert_eq!(env_assignment_value("K3S_URL='unclosed"), None);
    }
}
