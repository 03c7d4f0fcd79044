//! Issue 18: `k3splan graph [PLANFILE]`, the step order with its dependencies as DOT, and
//! `-format=svg` through Graphviz's `dot` when it is installed.
//!
//! The DOT of the five seeds is golden (`tests/golden/graph/`, written by `plan_golden`);
//! here its shape is checked (one node per step, edges only backwards in the plan order,
//! labelled) and the command line is run on a saved plan.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k3splan::apply::{SAVED_PLAN_VERSION, SavedPlan};
use k3splan::config::Role;
use k3splan::observed::{Fact, HostState};
use k3splan::plan::testkit::*;
use k3splan::plan::{Plan, PlanOptions, plan};
use k3splan::render::{self, GraphOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (from, to, label) of every edge of a DOT text k3splan wrote.
fn edges(dot: &str) -> Vec<(usize, usize, String)> {
    dot.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (a, rest) = l.split_once(" -> ")?;
            let (b, rest) = rest.split_once(" [label=\"")?;
            let label = rest.split("\"").next()?.to_string();
            Some((
                a.trim_start_matches('s').parse().ok()?,
                b.trim_start_matches('s').parse().ok()?,
                label,
            ))
        })
        .collect()
}

fn step_nodes(dot: &str) -> usize {
    dot.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with('s') && l.contains(" [label=") && !l.contains(" -> ")
        })
        .count()
}

#[test]
fn golden_graphs_of_the_seeds_have_one_node_per_step_and_labelled_edges() {
    for name in ["seed000", "seed001", "seed002", "seed003", "seed004"] {
        let dot = std::fs::read_to_string(root().join(format!("tests/golden/graph/{name}.dot")))
            .unwrap_or_else(|e| panic!("{name}: {e} (bless plan_golden)"));
        assert!(dot.starts_with("digraph k3splan_plan {\n") && dot.ends_with("}\n"));
        let text =
            std::fs::read_to_string(root().join(format!("tests/golden/plan/{name}.txt"))).unwrap();
        let steps = text
            .lines()
            .filter(|l| {
                l.strip_prefix("  # ")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        assert_eq!(step_nodes(&dot), steps, "{name}");
        let e = edges(&dot);
        assert!(
            e.len() >= steps - 1,
            "{name}: every step after the first waits"
        );
        for (a, b, label) in &e {
            assert!(
                a < b,
                "{name}: edge s{a} -> s{b} goes forward in plan order"
            );
            assert!(!label.is_empty(), "{name}: s{a} -> s{b} has no reason");
        }
    }
    // Seed 004: the rebinds wait for the join of the node their volumes land on, and say so.
    let dot = std::fs::read_to_string(root().join("tests/golden/graph/seed004.dot")).unwrap();
    let e = edges(&dot);
    let rebinds: Vec<_> = e
        .iter()
        .filter(|(a, b, _)| *a == 6 && *b >= 11 && *b <= 13)
        .collect();
    assert_eq!(rebinds.len(), 3, "{dot}");
    for (_, _, l) in rebinds {
        assert!(l.contains("rebound onto lzx-test-add-node"), "{l}");
    }
    assert!(
        e.iter()
            .any(|(a, b, l)| (*a, *b) == (1, 2) && l.contains("snapshot")),
        "{dot}"
    );
}

fn small_plan() -> Plan {
    let t0 = topology(
        cluster("g"),
        vec![
            node("s1", "10.8.0.1", &[Role::Server]),
            node("s2", "10.8.0.2", &[Role::Server]),
            node("s3", "10.8.0.3", &[Role::Server]),
        ],
    );
    let mut t = t0.clone();
    t.nodes.push(node("a1", "10.8.0.4", &[Role::Agent]));
    let mut o = observed_matching(&t0);
    o.hosts.insert(
        "a1".into(),
        Fact::Known(HostState {
            address: Some("10.8.0.4".parse().unwrap()),
            ..Default::default()
        }),
    );
    plan(&t, &o, &PlanOptions::default()).unwrap()
}

fn saved(dir: &Path, p: &Plan) -> PathBuf {
    let file = dir.join("p.json");
    let s = SavedPlan {
        format_version: SAVED_PLAN_VERSION,
        k3splan_version: "0".into(),
        created_at: "2026-12-02T00:00:00Z".into(),
        config_digest: "x".into(),
        observed_digest: "y".into(),
        state_serial: None,
        state_lineage: None,
        allow_unreachable: vec![],
        replace: vec![],
        plan: p.clone(),
    };
    std::fs::write(&file, serde_json::to_vec(&s).unwrap()).unwrap();
    file
}

#[test]
fn graph_of_a_saved_plan_prints_its_dot() {
    let p = small_plan();
    let dir = tempfile::tempdir().unwrap();
    let file = saved(dir.path(), &p);
    let o = common::k3splan().arg("graph").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let dot = common::stdout(&o);
    assert_eq!(dot, render::dot(&p, GraphOptions::default()));
    assert_eq!(step_nodes(&dot), p.steps.len());
    // The agent joins after its config.yaml is written, and the edge says why.
    assert!(
        edges(&dot)
            .iter()
            .any(|(_, _, l)| l == "a1's file is written before k3s starts there"),
        "{dot}"
    );
    // Terraform's spelling of the flag.
    let o = common::k3splan()
        .args(["graph", "-format=dot"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(common::stdout(&o), dot);
}

#[test]
fn svg_without_graphviz_is_a_clear_error_and_with_it_the_output_of_dot() {
    let p = small_plan();
    let dir = tempfile::tempdir().unwrap();
    let file = saved(dir.path(), &p);
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let o = common::k3splan()
        .args(["graph", "-format=svg"])
        .arg(&file)
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = common::text(&o.stderr);
    assert!(
        err.contains("Graphviz") && err.contains("not installed") && err.contains("-format=dot"),
        "{err}"
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout when there is no SVG"
    );

    // A `dot` on PATH gets `-Tsvg` and the DOT source on stdin; its stdout is the SVG.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("dot");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -Tsvg ] || { echo \"bad args: $*\" >&2; exit 3; }\necho '<svg>'\ncat\necho '</svg>'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = common::k3splan()
        .args(["graph", "-format=svg"])
        .arg(&file)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let svg = common::stdout(&o);
    assert_eq!(
        svg,
        format!(
            "<svg>\n{}</svg>\n",
            render::dot(&p, GraphOptions::default())
        )
    );
    // A failing `dot` is an error with its message.
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n",
    )
    .unwrap();
    let o = common::k3splan()
        .args(["graph", "-format=svg"])
        .arg(&file)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(common::text(&o.stderr).contains("syntax error in line 1"));
}
