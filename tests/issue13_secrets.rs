//! Issue 13, point 6: a changed secret is visible to the plan, and never printed.

use k3splan::config::{Role, Topology};
use k3splan::observed::{Fact, HostState, K3sConfigFile, Observed};
use k3splan::plan::files::{SENSITIVE_CHANGED, SecretDigests, mask_secrets};
use k3splan::plan::testkit::*;
use k3splan::plan::{Operation, Plan, PlanOptions, plan};
use k3splan::render::{self, TextOptions};

const S: [Role; 1] = [Role::Server];
const RIGHT: &str = "K10secret-token::server:abc"; // the testkit's declared token
const WRONG: &str = "K10WRONG-token::server:zzz";

fn four() -> (Topology, Observed) {
    let three = topology(
        cluster("t"),
        vec![
            node("a", "10.0.0.1", &S),
            node("b", "10.0.0.2", &S),
            node("c", "10.0.0.3", &S),
        ],
    );
    let mut t = three.clone();
    t.nodes.push(node("d", "10.0.0.4", &S));
    let mut o = observed_matching(&three);
    o.hosts
        .insert("d".into(), Fact::Known(HostState::default()));
    (t, o)
}

/// The config.yaml write planned for node d, if any: (before, after).
fn config_write(p: &Plan) -> Option<(Option<String>, String)> {
    p.steps
        .iter()
        .flat_map(|s| &s.operations)
        .find_map(|op| match op {
            Operation::WriteFile {
                node,
                before,
                after,
                ..
            } if node == "d" && after.contains("node-name: d") => {
                Some((before.clone(), after.clone()))
            }
            _ => None,
        })
}

/// Node d with the config.yaml a first (failed) join wrote, holding `token`.
fn with_host_config(t: &Topology, o: &Observed, token: &str) -> Observed {
    let first = plan(t, o, &PlanOptions::default()).expect("plan");
    let (_, after) = config_write(&first).expect("a fresh node gets its config.yaml");
    let raw = after.replace("(sensitive)", token);
    let mut o = o.clone();
    o.hosts.insert(
        "d".into(),
        Fact::Known(HostState {
            config: Some(K3sConfigFile {
                path: "/etc/rancher/k3s/config.yaml".into(),
                server: raw
                    .lines()
                    .find_map(|l| l.strip_prefix("server: "))
                    .map(String::from),
                secrets: SecretDigests::of(&raw),
                raw: raw.clone(),
                ..K3sConfigFile::default()
            }),
            ..HostState::default()
        }),
    );
    // What live.rs keeps of every host's file: masked text and keyed digests.
    for h in o.hosts.values_mut() {
        if let Fact::Known(HostState {
            config: Some(c), ..
        }) = h
        {
            c.raw = mask_secrets(&c.raw);
        }
    }
    o
}

#[test]
fn issue13_changed_token_plans_a_rewrite() {
    let (t, o) = four();
    // Premise: with the right token on the host, the file is not rewritten.
    let same = plan(
        &t,
        &with_host_config(&t, &o, RIGHT),
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(config_write(&same).is_none(), "an equal file is left alone");

    let o = with_host_config(&t, &o, WRONG);
    let result = plan(&t, &o, &PlanOptions::default());
    let p = result.as_ref().expect("plan");
    let (before, after) = config_write(p).expect("a changed token plans a rewrite");
    assert!(before.unwrap().contains("token: (sensitive)\n"));
    assert!(
        after.contains(&format!("token: {SENSITIVE_CHANGED}\n")),
        "{after}"
    );

    let text = render::text(&result, TextOptions::default());
    assert!(text.contains("-token: (sensitive)"), "{text}");
    assert!(text.contains("+token: (sensitive, changed)"), "{text}");
    // Every output of the plan: text, JSON, the saved form, logs (Debug) of the plan and of
    // what was observed.
    let outputs = [
        text,
        render::json(&result),
        serde_json::to_string(p).unwrap(),
        format!("{p:?}"),
        format!("{o:?}"),
        serde_json::to_string(&o).unwrap(),
    ];
    for (i, out) in outputs.iter().enumerate() {
        for secret in [RIGHT, WRONG, "K10secret", "K10WRONG"] {
            assert!(!out.contains(secret), "output {i} holds {secret}:\n{out}");
        }
    }
}
