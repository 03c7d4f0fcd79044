//! Golden tests of the topology language: every rejected input under
//! `tests/fixtures/invalid/` produces exactly the diagnostics in its `.expected` file; every
//! input under `tests/fixtures/warnings/` is accepted with exactly the warnings expected;
//! the examples load cleanly.
//!
//! Regenerate the expected files with `K3SPLAN_BLESS=1 cargo nextest run -p k3splan --test
//! config_fixtures`, then review the diff (tests/common/golden.rs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k3splan::config::{EnvSource, LoadOptions, SourceFile, load_path, load_sources};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    v.sort();
    v
}

fn test_env() -> EnvSource {
    EnvSource::Map(BTreeMap::from([
        ("K3S_TOKEN".to_string(), "K10-test-token".to_string()),
        ("VRRP_PASSWORD".to_string(), "vrrp-test".to_string()),
    ]))
}

/// Loads a fixture under its bare file name, so the expected output has no machine paths.
fn render(path: &Path) -> (String, bool, bool) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let loaded = load_sources(
        vec![SourceFile::new(name, text)],
        &LoadOptions {
            base_dir: Some(path.parent().unwrap().to_path_buf()),
            env: test_env(),
        },
    );
    (
        loaded.diagnostics.render(false),
        loaded.diagnostics.has_errors(),
        loaded.topology.is_some(),
    )
}

fn check_golden(dir: &str, want_errors: bool) -> usize {
    let mut failures = Vec::new();
    let files = fixtures(dir);
    for f in &files {
        let (out, has_errors, has_topology) = render(f);
        if let Some(failure) = common::golden::compare(&f.with_extension("expected"), &out) {
            failures.push(failure);
        }
        if has_errors != want_errors {
            failures.push(format!("{}: has_errors = {has_errors}", f.display()));
        }
        if has_topology == want_errors {
            failures.push(format!(
                "{}: topology returned = {has_topology}",
                f.display()
            ));
        }
        if out.is_empty() {
            failures.push(format!("{}: no diagnostic at all", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    files.len()
}

#[test]
fn invalid_fixtures_produce_their_golden_diagnostics() {
    let n = check_golden("invalid", true);
    assert!(n >= 30, "at least 30 rejected inputs, found {n}");
}

#[test]
fn warning_fixtures_are_accepted_with_their_golden_warnings() {
    check_golden("warnings", false);
}

#[test]
fn every_diagnostic_names_file_line_and_column() {
    for f in fixtures("invalid") {
        let (out, _, _) = render(&f);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for line in out
            .lines()
            .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
        {
            let loc = line.split(": ").next().unwrap();
            let parts: Vec<&str> = loc.split(':').collect();
            if name == "missing_cluster.hcl" && parts.len() == 1 {
                continue; // about the configuration as a whole
            }
            assert_eq!(parts.len(), 3, "{line}");
            assert_eq!(parts[0], name, "{line}");
            assert!(parts[1].parse::<usize>().unwrap() >= 1, "{line}");
            assert!(parts[2].parse::<usize>().unwrap() >= 1, "{line}");
        }
    }
}

#[test]
fn examples_validate_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        n += 1;
        // No K3S_TOKEN in the environment: env() secrets may be unset at validation time.
        let loaded = load_path(&dir, EnvSource::Map(BTreeMap::new())).unwrap();
        assert!(
            loaded.diagnostics.is_empty(),
            "{}:\n{}",
            dir.display(),
            loaded.diagnostics
        );
        let t = loaded.topology.expect("topology");
        assert!(t.etcd_nodes().count() % 2 == 1, "{}", dir.display());
    }
    assert!(n >= 3, "at least three examples");
}
