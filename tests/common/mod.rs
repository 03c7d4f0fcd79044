//! Shared by the root crate's integration tests: the compiled `k3splan` binary as they run
//! it, in one place (the environment it gets, the lab's variables and state file, its
//! captured output), and the golden-file comparison ([`golden`]).
//!
//! Guarantees: [`k3splan`] never inherits the variables of the developer's shell that change
//! what k3splan reads or does (`K3SPLAN_CONFIG`, `K3SPLAN_STATE`, `K3S_TOKEN`, the test hold
//! point `K3SPLAN_TEST_HOLD_AT`, and `NO_COLOR`, so that "no colour when the output is not a
//! terminal" is proven by the pipe, not by the developer's shell). A test sets what it needs
//! after that.
//! Caveat: [`lab_k3splan`] echoes every run (`$ k3splan ARGS`, the exit code and both streams)
//! on stderr, which nextest shows only for a failing test.
#![allow(dead_code)]

pub mod golden;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k3splan_lab::Lab;

/// The compiled binary, with a clean k3splan environment.
pub fn k3splan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_k3splan"));
    c.env_remove("K3SPLAN_CONFIG")
        .env_remove("K3SPLAN_STATE")
        .env_remove("K3S_TOKEN")
        .env_remove("K3SPLAN_TEST_HOLD_AT")
        .env_remove("NO_COLOR");
    c
}

/// `k3splan` with the lab's variables (token, kubeconfig, rebind settings).
pub fn k3splan_for(lab: &Lab) -> Command {
    let mut c = k3splan();
    c.envs(lab.k3splan_env());
    c
}

/// The lab's local state file.
pub fn lab_state(lab: &Lab) -> PathBuf {
    lab.dir().join("state/k3splan.state.json")
}

/// `k3splan ARGS -c TOPO --state LAB_STATE` with the lab's variables, not yet started.
pub fn lab_cmd(lab: &Lab, topo: &Path, args: &[&str]) -> Command {
    let mut c = k3splan_for(lab);
    c.args(args)
        .arg("-c")
        .arg(topo)
        .arg("--state")
        .arg(lab_state(lab));
    c
}

/// Runs [`lab_cmd`] to completion and echoes the run on stderr.
pub fn lab_k3splan(lab: &Lab, topo: &Path, args: &[&str]) -> Output {
    let o = lab_cmd(lab, topo, args).output().expect("run k3splan");
    eprintln!(
        "$ k3splan {}\n--- exit {:?}\n{}{}",
        args.join(" "),
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// Bytes of a stream as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The run's stdout.
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// The run's stdout and stderr.
pub fn streams(o: &Output) -> (String, String) {
    (text(&o.stdout), text(&o.stderr))
}

/// The run's stdout followed by its stderr.
pub fn combined(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Runs `script` on `host` over the lab's SSH and returns its output; panics, naming the
/// host, the script and its output, unless it exits 0.
pub fn ssh_ok(lab: &Lab, host: &str, script: &str) -> String {
    let (code, out) = lab.ssh(host, &[], script).expect("ssh");
    assert_eq!(code, 0, "{host}: {script}\n{out}");
    out
}

/// `k3s etcd-snapshot save` on each of `servers` (the stand-in runs `etcdctl snapshot
/// save`): a fresh lab cluster has no snapshot, which `check` reports as a finding.
pub fn snapshot_all(lab: &Lab, servers: &[&str]) {
    for s in servers {
        ssh_ok(
            lab,
            s,
            &format!("{} etcd-snapshot save", k3splan_lab::hostcfg::K3S_BIN),
        );
    }
}
