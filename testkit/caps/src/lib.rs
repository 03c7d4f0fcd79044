//! k3splan test harness: what a test needs from the machine, asked one way, and a runner that
//! reports a test whose need is missing as **skipped**, with the reason.
//!
//! Rust's built-in test harness has no runtime skip: a test that finds no sshd can only
//! `return` and be reported "ok". Test files that need root, sshd, etcd or `unshare` therefore
//! use `harness = false` and this crate's [`main!`] macro, which runs them through
//! [`libtest_mimic`] (the same command line as libtest: `--list`, `--exact`, `--ignored`,
//! `--nocapture`, `--test-threads`, so `cargo test` and `cargo nextest` work unchanged):
//!
//! ```ignore
//! // Cargo.toml: [[test]] name = "observe" harness = false
//! k3splan_testkit_caps::main! {
//!     observes_three_hosts needs [k3splan_testkit_caps::sshd],
//!     parses_a_manifest,
//!     helper_process ignore "helper process, started by observes_three_hosts",
//! }
//! ```
//!
//! Guarantees:
//! - a test whose probe returns a reason is marked ignored when the binary is listed or run, so
//!   nextest lists it as SKIP (and `cargo test` as "ignored"); it is never reported "ok";
//! - every probe runs at most once per process and is asked at list time, when nextest builds
//!   its test list, so what is skipped reflects the machine the tests run on (no build-time
//!   probe that goes stale);
//! - when `K3SPLAN_SKIP_LOG` names a file, every capability skip appends one line
//!   `BINARY-ID<TAB>TEST<TAB>REASON` to it (BINARY-ID as nextest spells it: `package::target`).
//!   `.ci/run` uses it to fail a CI run that skipped a test for a missing capability, while the
//!   tests that are `ignore`d on purpose (helper processes, real-cluster variants, the release
//!   benchmark) are not logged (docs/ci.md).
//!
//! Caveats: the log is appended to by every listing (nextest lists each binary twice), so a line
//! can repeat; readers deduplicate. A probe that passes at list time but fails when the test
//! runs makes the test fail, which is loud, not silent.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

pub use libtest_mimic;

/// A capability probe: `None` when the capability is there, otherwise why a test needing it
/// must be skipped.
pub type Probe = fn() -> Option<String>;

/// The environment variable naming the file capability skips are appended to.
pub const SKIP_LOG_ENV: &str = "K3SPLAN_SKIP_LOG";

/// Where the sshd harness expects OpenSSH's server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Real sshd hosts can run here: OpenSSH's server, `ssh-keygen`, and `unshare -m -u` (which
/// needs root). Probed once per process.
pub fn sshd() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE.get_or_init(probe_sshd).clone()
}

fn probe_sshd() -> Option<String> {
    if !Path::new(SSHD).exists() {
        return Some(format!(
            "{SSHD} not installed (Debian package openssh-server)"
        ));
    }
    for tool in ["ssh-keygen", "unshare"] {
        if !runs(tool, &["--help"]) {
            return Some(format!("{tool} not found in PATH"));
        }
    }
    match Command::new("unshare")
        .args(["-m", "-u", "--propagation", "private", "true"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`unshare -m -u` not permitted (run the SSH tests as root): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// The etcd binary the etcd harness starts (`$K3SPLAN_ETCD_BIN`, else `/usr/bin/etcd`) and
/// `etcdctl` (its health checks) are there.
pub fn etcd() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let bin =
                std::env::var_os("K3SPLAN_ETCD_BIN").unwrap_or_else(|| "/usr/bin/etcd".into());
            if !Path::new(&bin).exists() {
                return Some(format!(
                    "{} not installed (Debian package etcd-server)",
                    Path::new(&bin).display()
                ));
            }
            if !runs("etcdctl", &["version"]) {
                return Some("etcdctl not found in PATH (Debian package etcd-client)".into());
            }
            None
        })
        .clone()
}

/// The lab can run here: real sshd hosts and real etcd members.
pub fn lab() -> Option<String> {
    sshd().or_else(etcd)
}

/// OpenSSH's client (`ssh`) is in PATH.
pub fn ssh_client() -> Option<String> {
    (!runs("ssh", &["-V"])).then(|| "no OpenSSH client (`ssh`) in PATH".into())
}

/// Whether `tool args` can be started (its exit status does not matter).
fn runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One test of a `harness = false` test binary: a plain `fn()` that panics on failure.
pub struct Test {
    name: &'static str,
    run: fn(),
    needs: Vec<Probe>,
    ignore: Option<&'static str>,
}

impl Test {
    /// A test that always runs.
    pub fn new(name: &'static str, run: fn()) -> Self {
        Self {
            name,
            run,
            needs: Vec::new(),
            ignore: None,
        }
    }

    /// Skipped, with the probe's reason, when the probe finds the capability missing.
    pub fn needs(mut self, probe: Probe) -> Self {
        self.needs.push(probe);
        self
    }

    /// Ignored on purpose, like `#[ignore = "why"]`: runs only with `--ignored`, never logged
    /// as a capability skip.
    pub fn ignore(mut self, why: &'static str) -> Self {
        self.ignore = Some(why);
        self
    }

    fn missing(&self) -> Option<String> {
        self.needs.iter().find_map(|probe| probe())
    }
}

/// Runs `tests` with libtest's command line (`std::env::args`); `binary` is nextest's binary
/// id (`package::target`), for the skip log. Use [`main!`] rather than calling this.
pub fn run(binary: &str, tests: Vec<Test>) -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|t| {
            let missing = t.missing();
            if let Some(reason) = &missing {
                log_skip(binary, t.name, reason);
            }
            let run = t.run;
            let trial = libtest_mimic::Trial::test(t.name, move || {
                run();
                Ok(())
            });
            trial.with_ignored_flag(missing.is_some() || t.ignore.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Tells the human (stderr) and, under `K3SPLAN_SKIP_LOG`, the CI check why a test is skipped.
fn log_skip(binary: &str, test: &str, reason: &str) {
    eprintln!("SKIP {binary} {test}: {reason}");
    let Some(path) = std::env::var_os(SKIP_LOG_ENV) else {
        return;
    };
    let line = format!("{binary}\t{test}\t{}\n", reason.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "cannot append to {SKIP_LOG_ENV}={}: {e}",
            Path::new(&path).display()
        );
    }
}

/// The `main` of a `harness = false` test binary: lists its test functions, each optionally
/// with `needs [probe, ...]` (skipped with the probe's reason when it fails) or
/// `ignore "why"` (ignored on purpose). Test names are the function names, as with `#[test]`.
#[macro_export]
macro_rules! main {
    ( $( $name:ident $( needs [ $( $probe:expr ),+ $(,)? ] )? $( ignore $why:literal )? ),* $(,)? ) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run(
                concat!(env!("CARGO_PKG_NAME"), "::", env!("CARGO_CRATE_NAME")),
                vec![ $(
                    $crate::Test::new(stringify!($name), $name)
                        $( $( .needs($probe) )+ )?
                        $( .ignore($why) )?
                ),* ],
            )
        }
    };
}
