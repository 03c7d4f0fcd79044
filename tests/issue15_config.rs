//! Issue 15: the topology language of upgrades: `upgrade { max_unavailable = N | "N%" }` in
//! `cluster`, and a node's own `k3s_version` (a canary). Bad values are errors at their
//! `file:line:col`, never a panic.

use k3splan::config::{MaxUnavailable, load_str};

fn src(upgrade: &str, node_extra: &str) -> String {
    format!(
        "cluster \"lab\" {{\n  k3s_version = \"v1.29.0+k3s1\"\n{upgrade}}}\n\nnode \"s1\" {{\n  address = \"10.0.0.1\"\n  roles   = [\"server\"]\n{node_extra}}}\n"
    )
}

fn errors(text: &str) -> Vec<String> {
    let l = load_str("t.hcl", text);
    l.diagnostics
        .iter()
        .filter(|d| d.render(false).contains("error"))
        .map(|d| d.render(false))
        .collect()
}

#[test]
fn issue15_max_unavailable_is_a_count_or_a_percentage() {
    for (v, want) in [
        ("2", MaxUnavailable::Count(2)),
        ("\"25%\"", MaxUnavailable::Percent(25)),
        ("\"100%\"", MaxUnavailable::Percent(100)),
    ] {
        let l = load_str(
            "t.hcl",
            &src(
                &format!("  upgrade {{\n    max_unavailable = {v}\n  }}\n"),
                "",
            ),
        );
        let t = l
            .topology
            .unwrap_or_else(|| panic!("{v}: {:?}", l.diagnostics));
        assert_eq!(t.cluster.upgrade.max_unavailable, want, "{v}");
    }
    let t = load_str("t.hcl", &src("", "")).topology.unwrap();
    assert_eq!(t.cluster.upgrade.max_unavailable, MaxUnavailable::Count(1));
    assert_eq!(MaxUnavailable::Percent(25).batch(10), 2);
    assert_eq!(MaxUnavailable::Percent(10).batch(3), 1);
}

#[test]
fn issue15_bad_max_unavailable_is_an_error_at_its_place() {
    for v in ["0", "\"0%\"", "\"101%\"", "\"two\"", "-1", "true", "1.5"] {
        let text = src(
            &format!("  upgrade {{\n    max_unavailable = {v}\n  }}\n"),
            "",
        );
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.contains("t.hcl:4:")
                && (e.contains("`upgrade.max_unavailable` must be")
                    || e.contains("max_unavailable"))),
            "{v}: {errs:?}"
        );
    }
}

#[test]
fn issue15_node_k3s_version_overrides_the_clusters() {
    let l = load_str("t.hcl", &src("", "  k3s_version = \"v1.29.1+k3s1\"\n"));
    let t = l.topology.expect("valid");
    let n = t.node("s1").unwrap();
    assert_eq!(t.k3s_version_of(n), Some("v1.29.1+k3s1"));
    let errs = errors(&src("", "  k3s_version = \"latest\"\n"));
    assert!(
        errs.iter().any(|e| e.contains("t.hcl:8:17:")
            && e.contains("node \"s1\": `k3s_version` must look like")),
        "{errs:?}"
    );
}
