//! Phase `join_urls`: a node's config.yaml whose `server:` URL names a dead or removed
//! server is rewritten to a usable one, and k3s restarted when the quorum
//! simulation allows it (rule 9, restarting a healthy server counts as removing its
//! member); otherwise the new URL takes effect at its next start. Agents and
//! control-plane-only servers first: their restarts do not touch etcd.
//!
//! The installer's env file (`/etc/systemd/system/k3s.service.env`, the unit's
//! `EnvironmentFile=`) holds `K3S_URL` too. k3s reads it as the default of its `--server`
//! flag (urfave/cli `StringFlag.ApplyWithError`: the env var sets the flag's value before the
//! arguments are parsed), and config.yaml's keys are inserted as `--key=value` arguments
//! (k3s `pkg/configfilearg/parser.go`, `Parse`): so config.yaml's `server:` wins, and
//! `K3S_URL` is the join URL when config.yaml has no `server:`. The effective URL is checked;
//! every `K3S_URL` that names an unavailable server, or that config.yaml's rewrite would leave
//! behind, is rewritten too (a shadowed one needs no restart: k3s does not use it now).

use serde_json::json;

use crate::observed::K3sEnvFile;
use crate::observed::url_host;
use crate::plan::cx::PlanCx;
use crate::plan::files::{mask_secrets, rewrite_env_var, rewrite_server_url};
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    join_urls(cx);
    Ok(())
}

/// Why a join URL cannot be used. Its text is shown in the plan (the drift note, the
/// step's reason): it must stay as it is.
#[derive(Debug, thiserror::Error)]
enum UnusableUrl {
    #[error("it is not a URL")]
    NotAUrl,
    #[error("{host} is no known node")]
    UnknownHost { host: String },
    #[error("{node} ({host}) is removed by this plan")]
    Removed { node: String, host: String },
    #[error("{node} ({host}) is not a server")]
    NotAServer { node: String, host: String },
    #[error("it names {node} itself ({host}): a server cannot join through itself")]
    ItsOwn { node: String, host: String },
    #[error("{node} ({host}) is down: {}", .down.join(", "))]
    Down {
        node: String,
        host: String,
        down: Vec<String>,
    },
}

/// A join URL is fine when it names the api_endpoint (unless that is a server's own
/// address: then it is judged as that server) or a server that is healthy (or rejoined by
/// this plan), and never `node` itself.
fn url_is_usable(cx: &PlanCx<'_>, node: &str, url: &str) -> Result<(), UnusableUrl> {
    let Some(host) = url_host(url) else {
        return Err(UnusableUrl::NotAUrl);
    };
    let host = host.to_string();
    if cx.views[node]
        .address
        .is_some_and(|a| a.to_string() == host)
        || cx
            .t
            .node(node)
            .is_some_and(|d| d.address.to_string() == host)
    {
        return Err(UnusableUrl::ItsOwn {
            node: node.to_string(),
            host,
        });
    }
    let names_a_node = cx
        .views
        .values()
        .any(|v| v.address.is_some_and(|a| a.to_string() == host));
    if let Some(e) = &cx.t.cluster.api_endpoint
        && url_host(e) == Some(host.as_str())
        && !names_a_node
    {
        return Ok(());
    }
    let Some(v) = cx
        .views
        .values()
        .find(|v| v.address.is_some_and(|a| a.to_string() == host))
    else {
        return Err(UnusableUrl::UnknownHost { host });
    };
    let node = v.name.clone();
    if v.declared.is_none() {
        return Err(UnusableUrl::Removed { node, host });
    }
    if cx.joined.contains_key(&v.name) {
        return Ok(());
    }
    if v.declared.is_some_and(|d| !d.roles.is_server()) {
        return Err(UnusableUrl::NotAServer { node, host });
    }
    let mut down = Vec::new();
    if v.declared.is_some_and(|d| d.roles.runs_etcd()) {
        match v.member {
            Some(m) if !m.is_healthy() => down.push(format!("etcd member {}", m.health.describe())),
            Some(_) => {}
            None => down.push("no etcd member".to_string()),
        }
    }
    if v.kube.is_some_and(|k| !k.ready) {
        down.push("Node NotReady".to_string());
    }
    if let Some(crate::observed::Supervisor::Refused { reason }) = cx.o.supervisors.get(&v.name) {
        down.push(format!("supervisor port not answering: {reason}"));
    }
    if down.is_empty() {
        Ok(())
    } else {
        Err(UnusableUrl::Down { node, host, down })
    }
}

/// One node's join URLs: config.yaml's `server:` and its env files' `K3S_URL`.
struct NodeUrls<'o> {
    node: &'o crate::config::Node,
    config: Option<(
        &'o crate::observed::K3sConfigFile,
        String,
        Option<UnusableUrl>,
    )>,
    env: Vec<(&'o K3sEnvFile, String, Option<UnusableUrl>)>,
    /// Where k3s takes its join URL from at its next start: config.yaml, else the env file
    /// of the node's unit.
    effective: Effective,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Effective {
    None,
    Config,
    Env(usize),
}

impl NodeUrls<'_> {
    fn effective_unusable(&self) -> Option<&UnusableUrl> {
        match self.effective {
            Effective::None => None,
            Effective::Config => self.config.as_ref().and_then(|c| c.2.as_ref()),
            Effective::Env(i) => self.env[i].2.as_ref(),
        }
    }
    fn effective_url(&self) -> Option<&str> {
        match self.effective {
            Effective::None => None,
            Effective::Config => self.config.as_ref().map(|c| c.1.as_str()),
            Effective::Env(i) => Some(self.env[i].1.as_str()),
        }
    }
    fn anything_unusable(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.2.is_some())
            || self.env.iter().any(|e| e.2.is_some())
    }
}

fn join_urls(cx: &mut PlanCx<'_>) {
    let mut todo = Vec::new();
    for d in &cx.t.nodes {
        if cx.joined.contains_key(&d.name) || !cx.is_present(&d.name) {
            continue;
        }
        let v = &cx.views[&d.name];
        let Some(h) = v.host.known() else { continue };
        for e in h.env_files.iter().filter(|e| e.unreadable.is_some()) {
            cx.warnings.push(format!(
                "host_file.{}:{}: {}; its K3S_URL (the join URL when config.yaml has no `server:`) is unknown",
                d.name,
                e.path,
                e.unreadable.as_deref().unwrap_or_default()
            ));
        }
        // The token k3s takes from the env file when config.yaml has none: compared with the
        // declared one by keyed digest (neither value is kept or shown).
        let declared = cx.t.cluster.token.as_ref().and_then(|t| t.expose());
        for e in &h.env_files {
            if let Some(v) = declared
                && e.secrets.differs("K3S_TOKEN", v)
            {
                cx.warnings.push(format!(
                    "host_file.{}:{}: K3S_TOKEN differs from the declared token (compared by a keyed digest); k3s uses it when config.yaml has no `token:`, and k3splan does not rewrite it",
                    d.name, e.path
                ));
            }
        }
        let config = h.config.as_ref().and_then(|c| {
            let url = c.server.clone()?;
            let bad = url_is_usable(cx, &d.name, &url).err();
            Some((c, url, bad))
        });
        let env: Vec<_> = h
            .env_files
            .iter()
            .filter_map(|e| {
                let url = e.k3s_url.clone().filter(|u| !u.is_empty())?;
                let bad = url_is_usable(cx, &d.name, &url).err();
                Some((e, url, bad))
            })
            .collect();
        let agent = d.roles.is_agent();
        let effective = if config.is_some() {
            Effective::Config
        } else {
            env.iter()
                .position(|(e, ..)| e.unit.ends_with("-agent") == agent)
                .map_or(Effective::None, Effective::Env)
        };
        let n = NodeUrls {
            node: d,
            config,
            env,
            effective,
        };
        if n.anything_unusable() {
            todo.push(n);
        }
    }
    // Control-plane-only and agents first: their restarts do not touch etcd.
    todo.sort_by_key(|n| n.node.roles.runs_etcd());
    for n in todo {
        rewrite_node(cx, n);
    }
}

/// Plans one node's rewrites: the files, their drift, and the restart when the URL k3s uses
/// changes.
fn rewrite_node(cx: &mut PlanCx<'_>, n: NodeUrls<'_>) {
    let d = n.node;
    let Some(new) = cx.join_url(&d.name) else {
        let (path, old, why) = match (&n.config, n.env.iter().find(|e| e.2.is_some())) {
            (Some((c, url, Some(why))), _) => (&c.path, url, why),
            (_, Some((e, url, Some(why)))) => (&e.path, url, why),
            _ => return,
        };
        cx.warnings.push(format!(
            "host_file.{}:{path}: join URL {old} names an unavailable server ({why}) and no healthy server or api_endpoint can replace it",
            d.name
        ));
        return;
    };
    let config_rewritten = n.config.as_ref().is_some_and(|c| c.2.is_some());
    let mut ops = Vec::new();
    let mut before = json!({});
    let mut after = json!({});
    let mut address = None;
    let mut rewritten_env = Vec::new();
    if let Some((c, old, Some(why))) = &n.config {
        ops.push(Operation::WriteFile {
            node: d.name.clone(),
            path: c.path.clone(),
            before: Some(mask_secrets(&c.raw)),
            after: mask_secrets(&rewrite_server_url(&c.raw, &new)),
            sensitive: vec![],
        });
        cx.drift.push(Drift {
            address: Address::host_file(&d.name, &c.path).to_string(),
            attribute: "server".into(),
            declared: Some(new.clone()),
            observed: Some(old.clone()),
            planned: true,
            note: Some(why.to_string()),
        });
        before["server"] = json!(old);
        after["server"] = json!(new);
        address = Some(Address::host_file(&d.name, &c.path));
    }
    for (i, (e, old, bad)) in n.env.iter().enumerate() {
        if bad.is_none() && !(config_rewritten && *old != new) {
            continue;
        }
        ops.push(Operation::WriteFile {
            node: d.name.clone(),
            path: e.path.clone(),
            before: Some(mask_secrets(&e.raw)),
            after: mask_secrets(&rewrite_env_var(&e.raw, "K3S_URL", &new)),
            sensitive: vec![],
        });
        let note = match bad {
            Some(why) => why.to_string(),
            None => format!(
                "{} is rewritten to {new}: the env file keeps the same URL",
                n.config
                    .as_ref()
                    .map_or("config.yaml", |c| c.0.path.as_str())
            ),
        };
        cx.drift.push(Drift {
            address: Address::host_file(&d.name, &e.path).to_string(),
            attribute: "K3S_URL".into(),
            declared: Some(new.clone()),
            observed: Some(old.clone()),
            planned: true,
            note: Some(note),
        });
        if before.get("K3S_URL").is_none() {
            before["K3S_URL"] = json!(old);
            after["K3S_URL"] = json!(new);
        }
        address.get_or_insert_with(|| Address::host_file(&d.name, &e.path));
        rewritten_env.push(i);
    }
    let Some(address) = address else { return };
    // k3s takes the new URL at its next start only when the URL it uses now changes.
    let effective_changes = match n.effective {
        Effective::Config => config_rewritten,
        Effective::Env(i) => rewritten_env.contains(&i),
        Effective::None => false,
    };
    let restart = Operation::RestartService {
        node: d.name.clone(),
    };
    let can_restart = effective_changes && cx.sim.clone().apply(&restart).is_ok();
    if can_restart {
        ops.push(restart);
    }
    let why = match (n.effective_unusable(), n.effective_url()) {
        (Some(why), Some(old)) if n.effective == Effective::Config => {
            format!("its join URL {old} names an unavailable server: {why}")
        }
        (Some(why), Some(old)) => format!(
            "its join URL {old} (K3S_URL in the installer's env file; config.yaml has no `server:`) names an unavailable server: {why}"
        ),
        _ => {
            let (e, old, why) = n
                .env
                .iter()
                .find_map(|(e, u, w)| w.as_ref().map(|w| (e, u, w)))
                .expect("a K3S_URL is unusable");
            format!(
                "K3S_URL {old} in {} names an unavailable server: {why}",
                e.path
            )
        }
    };
    let id = cx.push(
        address,
        Action::Update,
        ActionReason::JoinUrlNamesUnavailableServer,
        why,
        ops,
        Some(before),
        Some(after),
    );
    if !effective_changes {
        let why_unused = match &n.config {
            Some((c, url, _)) => format!(
                "{}'s `server: {url}` takes precedence: k3s inserts config.yaml's keys as command-line flags, which override the environment",
                c.path
            ),
            None => format!(
                "the file is not the environment of the unit {} runs",
                d.name
            ),
        };
        cx.note(
            id,
            format!(
                "k3s is not restarted: it does not use this K3S_URL now ({why_unused}); the rewrite keeps a later start from joining through an unavailable server"
            ),
        );
    } else if !can_restart {
        let q = cx.sim.quorum();
        cx.note(
            id,
            format!(
                "k3s is NOT restarted: restarting {} now would leave {}/{} voters healthy (quorum needs {}), and a restart counts as a removal; the new URL takes effect at its next start",
                d.name,
                q.healthy_voters.saturating_sub(1),
                q.voters,
                q.needed
            ),
        );
    }
}

#[cfg(test)]
mod issue19_tests {
    use crate::config::{Role, Topology};
    use crate::observed::{Fact, K3sEnvFile, MemberHealth, Observed, SecretDigests};
    use crate::plan::testkit::{cluster, node, observed_matching, topology};
    use crate::plan::{Operation, PlanOptions, plan};

    const ENV: &str = "/etc/systemd/system/k3s.service.env";

    /// Servers a, b, c (a the first, dead: member unreachable, Node NotReady) and d, a
    /// control-plane-only server whose env file names a.
    fn seed001(config_server: Option<&str>) -> (Topology, Observed) {
        let t = topology(
            cluster("c"),
            vec![
                node("a", "10.0.0.1", &[Role::Server]),
                node("b", "10.0.0.2", &[Role::Server]),
                node("c", "10.0.0.3", &[Role::Server]),
                node("d", "10.0.0.4", &[Role::ControlPlane]),
            ],
        );
        let mut o = observed_matching(&t);
        if let Fact::Known(e) = &mut o.etcd {
            e.members[0].health = MemberHealth::Unreachable {
                reason: "refused".into(),
            };
        }
        if let Fact::Known(k) = &mut o.kube {
            k.nodes[0].ready = false;
        }
        let Fact::Known(h) = o.hosts.get_mut("d").unwrap() else {
            unreachable!()
        };
        let cfg = h.config.as_mut().unwrap();
        cfg.server = config_server.map(String::from);
        cfg.raw = match config_server {
            Some(u) => format!("server: {u}\ntoken: (sensitive)\nnode-name: d\n"),
            None => "token: (sensitive)\nnode-name: d\n".into(),
        };
        let clear = "# ops\nK3S_TOKEN='K10secret'\nK3S_URL='https://10.0.0.1:6443'\n";
        h.env_files.push(K3sEnvFile {
            path: ENV.into(),
            unit: "k3s".into(),
            k3s_url: Some("https://10.0.0.1:6443".into()),
            unreadable: None,
            raw: crate::plan::files::mask_secrets(clear),
            secrets: SecretDigests::of(clear),
        });
        (t, o)
    }

    fn step_on<'p>(p: &'p crate::plan::Plan, node: &str) -> &'p crate::plan::Step {
        p.steps
            .iter()
            .find(|s| {
                s.address
                    .to_string()
                    .starts_with(&format!("host_file.{node}:"))
            })
            .unwrap_or_else(|| panic!("no host_file step on {node}: {:#?}", p.steps))
    }

    /// config.yaml without `server:`: k3s joins through K3S_URL, so the env file is the
    /// join URL; it is rewritten (other lines kept, token masked) and k3s restarted.
    #[test]
    fn issue19_k3s_url_used_by_k3s_is_rewritten_and_restarted() {
        let (t, o) = seed001(None);
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        let s = step_on(&p, "d");
        assert_eq!(s.address.to_string(), format!("host_file.d:{ENV}"));
        let writes: Vec<_> = s
            .operations
            .iter()
            .filter_map(|op| match op {
                Operation::WriteFile { path, after, .. } => Some((path.as_str(), after.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            writes,
            vec![(
                ENV,
                "# ops\nK3S_TOKEN=(sensitive)\nK3S_URL='https://10.0.0.2:6443'\n"
            )]
        );
        assert!(
            s.operations
                .iter()
                .any(|op| matches!(op, Operation::RestartService { .. })),
            "{s:?}"
        );
        let text = crate::render::text(&Ok(p.clone()), Default::default());
        assert!(!text.contains("K10secret"), "{text}");
        assert!(text.contains("-K3S_URL='https://10.0.0.1:6443'"), "{text}");
    }

    /// config.yaml's `server:` names a live server: k3s does not use K3S_URL now. The stale
    /// K3S_URL is still rewritten, without a restart, and the note says why.
    #[test]
    fn issue19_shadowed_k3s_url_is_rewritten_without_a_restart() {
        let (t, o) = seed001(Some("https://10.0.0.3:6443"));
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        let s = step_on(&p, "d");
        assert_eq!(
            s.operations.len(),
            1,
            "only the env file: {:?}",
            s.operations
        );
        assert!(
            s.notes
                .iter()
                .any(|n| n.contains("not restarted") && n.contains("takes precedence")),
            "{:?}",
            s.notes
        );
        assert!(
            p.drift
                .iter()
                .any(|d| d.attribute == "K3S_URL" && d.planned)
        );
        // The env file's K3S_TOKEN (K10secret) is not the declared one: a warning, no value.
        let w: Vec<_> = p
            .warnings
            .iter()
            .filter(|w| w.contains("K3S_TOKEN differs"))
            .collect();
        assert_eq!(w.len(), 1, "{:?}", p.warnings);
        assert!(!w[0].contains("K10secret"), "{w:?}");
    }

    /// config.yaml's `server:` names the dead server too: both files in one step, one
    /// restart.
    #[test]
    fn issue19_config_and_env_file_rewritten_together() {
        let (t, o) = seed001(Some("https://10.0.0.1:6443"));
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        let s = step_on(&p, "d");
        let paths: Vec<_> = s
            .operations
            .iter()
            .filter_map(|op| match op {
                Operation::WriteFile { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(paths, vec!["/etc/rancher/k3s/config.yaml", ENV]);
        assert_eq!(
            s.operations
                .iter()
                .filter(|op| matches!(op, Operation::RestartService { .. }))
                .count(),
            1
        );
    }
}
