//! The `k3splan` binary as an operator runs it: exit codes, output streams, files touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{k3splan, text};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    k3splan().args(args).output().unwrap()
}

#[test]
fn validate_accepts_every_example() {
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let o = run(&["validate", "-c", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", dir.display(), text(&o.stderr));
        assert!(text(&o.stdout).starts_with("Success! The configuration is valid"));
        assert_eq!(text(&o.stderr), "", "no warning on the examples");
    }
}

#[test]
fn validate_reports_every_error_with_location_and_exits_1() {
    let f = root().join("tests/fixtures/invalid/many_errors_at_once.hcl");
    let o = run(&["validate", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    let loc = format!("{}:", f.display());
    let errors = err
        .lines()
        .filter(|l| l.starts_with(&loc) && l.contains(": error: "))
        .count();
    assert_eq!(errors, 5, "{err}");
    assert!(
        err.contains(
            ":6:3: error: unknown attribute `adress` in `node` block; did you mean `address`?"
        ),
        "{err}"
    );
    assert!(
        err.ends_with("Error: the configuration is invalid: 5 error(s), 1 warning(s)\n"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no colour when stderr is not a terminal"
    );
    assert_eq!(text(&o.stdout), "");
}

#[test]
fn validate_json_is_machine_readable() {
    let f = root().join("tests/fixtures/invalid/duplicate_node_name.hcl");
    let o = run(&["validate", "--json", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error_count"], 1);
    assert_eq!(v["diagnostics"][0]["line"], 20);
    assert_eq!(v["diagnostics"][0]["column"], 6);
    assert_eq!(v["diagnostics"][0]["message"], "duplicate node name \"s2\"");
}

#[test]
fn a_missing_config_path_is_a_clear_error() {
    let o = run(&["validate", "-c", "/nonexistent/topology"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("/nonexistent/topology: cannot read configuration"));
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["validate", "-c", empty.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no *.hcl files in this directory"));
}

#[test]
fn config_directory_reads_all_hcl_files_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.hcl"),
        "cluster \"c\" {\n  token = env(\"K3S_TOKEN\")\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nodes.hcl"),
        "node \"a\" {\n  address = \"10.1.0.1\"\n  roles   = [\"server\"]\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not hcl").unwrap();
    let o = run(&["validate", "-c", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("1 node(s), 1 etcd member(s)"));
}

fn copy_to_temp(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("main.hcl");
    std::fs::copy(src, &dst).unwrap();
    (dir, dst)
}

#[test]
fn fmt_check_passes_on_examples_and_changes_nothing() {
    let o = run(&[
        "fmt",
        "--check",
        "-c",
        root().join("examples").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
}

#[test]
fn fmt_check_flags_unformatted_files_then_fmt_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.hcl");
    let messy = "cluster \"c\"{\ntoken=env(\"K3S_TOKEN\")\n}\nnode \"a\" {\n    address = \"10.1.0.1\" # first\n roles=[\"server\"]\n}\n\n\n";
    std::fs::write(&f, messy).unwrap();
    let o = run(&["fmt", "--check", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("t.hcl"));
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        messy,
        "--check changes nothing"
    );

    let o = run(&["fmt", "-c", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let fixed = std::fs::read_to_string(&f).unwrap();
    assert_eq!(
        fixed,
        "cluster \"c\" {\n  token = env(\"K3S_TOKEN\")\n}\nnode \"a\" {\n  address = \"10.1.0.1\" # first\n  roles   = [\"server\"]\n}\n"
    );
    let o = run(&["fmt", "--check", "-c", f.to_str().unwrap()]);
    assert!(o.status.success());
}

#[test]
fn fmt_refuses_a_file_with_a_syntax_error_and_leaves_it() {
    let (_d, f) = copy_to_temp(&root().join("tests/fixtures/invalid/syntax_bad_expression.hcl"));
    let before = std::fs::read_to_string(&f).unwrap();
    let o = run(&["fmt", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("syntax error"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), before);
}

#[test]
fn version_and_completions() {
    let o = run(&["version"]);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout),
        format!("k3splan v{}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = run(&["completions", "bash"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("_k3splan()"));
    assert!(text(&o.stdout).contains("validate"));
    let o = run(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "usage errors exit 1 (2 means changes)"
    );
}

/// Issue 18: `import` of a cluster that cannot be read fails, says why, and writes no file
/// and no state (the lab round trips are in tests/issue18_import_e2e.rs).
#[test]
fn import_of_an_unreadable_cluster_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let state = dir.path().join("s.json");
    let o = k3splan()
        .args(["import", "--kubeconfig", "/nonexistent/kubeconfig", "--out"])
        .arg(&out)
        .arg("--state")
        .arg(&state)
        .arg("-c")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("could not be read, so nothing was imported")
            && err.contains("/nonexistent/kubeconfig"),
        "{err}"
    );
    assert!(!out.join("cluster.hcl").exists() && !state.exists());
    // The etcd TLS files go together.
    let o = k3splan()
        .args(["import", "--etcd-ca", "ca.crt", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--etcd-ca, --etcd-cert and --etcd-key go together"));
}

/// A topology on loopback addresses where nothing listens: every source refuses at once.
fn unreachable_topology() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: abc\ncurrent-context: c\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    let mut hcl = String::from(
        "cluster \"t\" {\n  token      = env(\"K3S_TOKEN\")\n  kubeconfig = \"kubeconfig\"\n\n  ssh {\n    known_hosts_file = \"known_hosts\"\n  }\n}\n",
    );
    for i in 1..=3 {
        hcl.push_str(&format!(
            "\nnode \"s{i}\" {{\n  address = \"127.0.251.{i}\"\n  roles   = [\"server\"]\n}}\n"
        ));
    }
    std::fs::write(dir.path().join("main.hcl"), hcl).unwrap();
    dir
}

#[test]
fn plan_and_apply_against_an_unreachable_cluster_fail_and_change_nothing() {
    let dir = unreachable_topology();
    let cfg = dir.path().to_str().unwrap();
    let state = dir.path().join("state/k3splan.state.json");
    for args in [
        vec!["plan", "-c", cfg, "--state", state.to_str().unwrap()],
        vec![
            "plan",
            "--detailed-exitcode",
            "-c",
            cfg,
            "--state",
            state.to_str().unwrap(),
        ],
        vec![
            "apply",
            "--auto-approve",
            "-c",
            cfg,
            "--state",
            state.to_str().unwrap(),
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains("the cluster could not be read"), "{err}");
        assert!(
            err.contains("https://127.0.0.1:1"),
            "names the API endpoint: {err}"
        );
        assert!(
            err.contains("https://127.0.251.1:2379"),
            "names the etcd endpoint: {err}"
        );
        assert!(
            !text(&o.stdout).contains("No changes"),
            "never claims the cluster matches"
        );
        assert!(!state.exists(), "no state written");
    }
}

#[test]
fn show_state_and_force_unlock_without_a_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.json");
    let st = state.to_str().unwrap();
    let o = run(&["show", "--state", st]);
    assert!(o.status.success());
    assert_eq!(text(&o.stdout), "No state.\n");
    let o = run(&["state", "list", "--state", st]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no state at"));
    let o = run(&["force-unlock", "abc", "--state", st]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("is not locked"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn show_renders_a_saved_plan_file_and_rejects_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.json");
    std::fs::write(&f, "{\"hello\": 1}").unwrap();
    let o = run(&["show", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not a k3splan saved plan"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn plan_on_an_invalid_topology_reports_the_diagnostics_first() {
    let f = root().join("tests/fixtures/invalid/two_primaries.hcl");
    let o = run(&["plan", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("is a second VIP primary"), "{err}");
    assert!(!err.contains("not implemented"), "{err}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = k3splan()
        .args(["completions", "bash"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    assert_eq!(text(&status.stderr), "");
}

/// `--parallelism 0` would observe nothing; it is refused before anything is read, with
/// exit 1: exit 2 means "changes present" to `plan --detailed-exitcode`.
#[test]
fn parallelism_out_of_range_is_refused_before_anything_is_read() {
    for args in [
        &["plan", "--parallelism", "0"][..],
        &["apply", "--parallelism", "5000"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(
            err.contains("--parallelism") && err.contains("1..=1024"),
            "{args:?}: {err}"
        );
        assert_eq!(text(&o.stdout), "");
    }
}

/// A cron job runs `plan --detailed-exitcode`, where 2 means "changes present". A mistyped
/// flag must not look like drift: usage errors exit 1; `--help` exits 0.
#[test]
fn usage_errors_exit_1_not_the_changes_present_code() {
    let o = run(&["plan", "--detailed-exitcode", "--detailled"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--detailled"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["plan", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("--detailed-exitcode"));
}

/// issue 13: `-v` adds info lines (what was read, what is unknown); without it, none.
#[test]
fn issue13_verbose_adds_info_lines_and_quiet_has_none() {
    let dir = unreachable_topology();
    let cfg = dir.path().to_str().unwrap();
    let state = dir.path().join("state/k3splan.state.json");
    let args = ["plan", "-c", cfg, "--state", state.to_str().unwrap()];
    let quiet = run(&args);
    assert!(
        !text(&quiet.stderr).contains("INFO"),
        "{}",
        text(&quiet.stderr)
    );
    let mut v = args.to_vec();
    v.push("-v");
    let o = run(&v);
    let err = text(&o.stderr);
    assert!(
        err.contains("INFO") && err.contains("observed the cluster"),
        "{err}"
    );
    assert!(err.contains("Kubernetes API unknown"), "{err}");
    assert!(!err.contains("DEBUG"), "-v is info, not debug: {err}");
}

/// The help shows `--out <FILE>` and Terraform's `-out=FILE`, and both parse as that; a
/// one-letter `-o` (which once swallowed `-out=p.json` as `-o ut=p.json`) is refused.
#[test]
fn out_flag_spellings_match_the_help() {
    let o = run(&["plan", "--help"]);
    let help = text(&o.stdout);
    assert!(
        help.contains("--out <FILE>") && help.contains("-out=FILE"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    // `-o` is refused; `-out=p.json` parses (this plan then fails on the missing topology,
    // as with --out).
    for (args, says) in [
        (&["plan", "-o", "p.json"][..], "unexpected argument '-o'"),
        (
            &["plan", "-out=p.json", "-detailed-exitcode"],
            "no *.hcl files",
        ),
    ] {
        let o = k3splan()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!dir.path().join("ut=p.json").exists());
}

/// `apply --json` cannot prompt: without --auto-approve or a saved plan it stops before
/// anything is read, and its stdout is still one JSON object per line.
#[test]
fn apply_json_without_approval_is_a_usage_error_in_the_stream() {
    let o = run(&["apply", "--json", "-c", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["event"], "error");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("--auto-approve"),
        "{out}"
    );
    assert!(text(&o.stderr).contains("--auto-approve"));
}

/// `k3splan man` prints k3splan(1), which lists every command; `man --dir` installs one
/// page per command.
#[test]
fn man_page_lists_every_command_and_installs_into_a_directory() {
    let o = run(&["man"]);
    assert!(o.status.success());
    let page = text(&o.stdout).replace("\\-", "-");
    assert!(
        page.starts_with(".ie") || page.contains(".TH k3splan 1"),
        "{page}"
    );
    for cmd in [
        "validate",
        "fmt",
        "plan",
        "apply",
        "show",
        "state",
        "force-unlock",
        "import",
        "graph",
        "completions",
        "man",
        "version",
    ] {
        assert!(page.contains(&format!("k3splan-{cmd}(1)")), "{cmd}: {page}");
    }
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    let o = run(&["man", "--dir", man1.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let apply = std::fs::read_to_string(man1.join("k3splan-apply.1")).unwrap();
    assert!(apply.contains("auto\\-approve"), "{apply}");
    assert!(man1.join("k3splan.1").exists());
}
