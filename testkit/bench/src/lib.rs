//! k3splan benchmarks at scale (issue 9): helpers shared by the `bench-*` binaries.
//!
//! - `bench-scale`: `k3splan plan` (the real binary, as a process) against a synthetic cluster
//!   served over HTTPS on loopback + a real 3-member etcd with TLS + real sshd hosts, next to
//!   the read floor (the same reads, bare and in parallel, also as a process);
//! - `bench-fanout`: the host provider's observe vs `ansible -m setup` on the same sshd hosts;
//! - `bench-apply`: the seed 004-like server replacement in the lab, overhead vs inherent waits.
//!
//! Every measured program runs as a child process; its wall time is taken from spawn to
//! reap and its peak RSS from `wait4`'s `ru_maxrss` (the child alone, not its children).
//! See docs/performance.md for the figures and scripts/bench.sh for the commands.

pub mod slim;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of a child process.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawn to reap.
    pub wall: Duration,
    /// Peak resident set size of the child (`ru_maxrss`), in MB (10^6 bytes).
    pub max_rss_mb: f64,
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What the child printed on stdout.
    pub stdout: String,
    /// Each stdout line with the time it arrived, in seconds since spawn.
    pub stdout_lines: Vec<(f64, String)>,
    /// What the child printed on stderr.
    pub stderr: String,
}

/// Runs `cmd` to completion with stdout/stderr captured; measures wall time and peak RSS
/// with `wait4`. Panics when the process cannot be spawned (a benchmark cannot go on).
pub fn run_measured(cmd: &mut Command) -> Measured {
    run_measured_inner(cmd, None)
}

/// [`run_measured`] with `input` written to the command's stdin.
pub fn run_measured_with_stdin(cmd: &mut Command, input: &[u8]) -> Measured {
    run_measured_inner(cmd, Some(input.to_vec()))
}

fn run_measured_inner(cmd: &mut Command, input: Option<Vec<u8>>) -> Measured {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(l) = l else { break };
            lines.push((t.elapsed().as_secs_f64(), l));
        }
        lines
    });
    let te = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall on our own child; `ru` is a zeroed POD out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: as above.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = t.elapsed();
    assert_eq!(
        r,
        pid,
        "wait4 on {pid}: {}",
        std::io::Error::last_os_error()
    );
    // The child is reaped: std's handle must not wait on it again.
    std::mem::forget(child);
    let stdout_lines = to.join().unwrap_or_default();
    let stdout: String = stdout_lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let stderr = String::from_utf8_lossy(&te.join().unwrap_or_default()).into_owned();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        wall,
        max_rss_mb: ru.ru_maxrss as f64 * 1024.0 / 1e6,
        code,
        stdout,
        stdout_lines,
        stderr,
    }
}

/// `Lab::start` with up to 3 attempts: the sshd fleet under the lab appends host keys to a
/// shared known_hosts from parallel threads, and lines occasionally interleave ("No ED25519
/// host key is known … Host key verification failed" at bootstrap; see docs/performance.md).
pub fn start_lab(spec: k3splan_lab::LabSpec) -> k3splan_lab::Lab {
    let mut last = None;
    for attempt in 1..=3 {
        match k3splan_lab::Lab::start(spec.clone()) {
            Ok(l) => return l,
            Err(e) => {
                eprintln!("lab start attempt {attempt} failed: {e}");
                last = Some(e);
            }
        }
    }
    panic!("lab: {}", last.expect("an error"))
}

/// Minimum and median of a sample (0 for an empty one).
pub fn min_median(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (s[0], m)
}

/// `/proc/loadavg`'s three load averages, e.g. `"1.89 2.08 3.11"`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Least-squares slope of `ln y` against `ln x`: the exponent `b` of `y ≈ a·x^b`.
pub fn exponent(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (lx, ly): (Vec<f64>, Vec<f64>) = points.iter().map(|(x, y)| (x.ln(), y.ln())).unzip();
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let cov: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = lx.iter().map(|x| (x - mx) * (x - mx)).sum();
    cov / var
}

/// The `k3splan` binary to measure: `$K3SPLAN_BIN`, else `k3splan` next to the current
/// executable (`target/<profile>/`).
pub fn k3splan_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("K3SPLAN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.with_file_name("k3splan");
    assert!(
        p.exists(),
        "{} not found: build it (cargo build -p k3splan) or set K3SPLAN_BIN",
        p.display()
    );
    p
}

/// `--name value` from the command line, or the default.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Quotes a string for HCL.
pub fn hcl_str(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

/// Today's date (UTC) as `YYYY-MM-DD`, from `date`.
pub fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_exponent() {
        assert_eq!(min_median(&[3.0, 1.0, 2.0]), (1.0, 2.0));
        assert_eq!(min_median(&[4.0, 1.0, 2.0, 3.0]), (1.0, 2.5));
        let lin: Vec<(f64, f64)> = [1.0, 10.0, 100.0].iter().map(|x| (*x, 3.0 * x)).collect();
        assert!((exponent(&lin) - 1.0).abs() < 1e-9);
        let sq: Vec<(f64, f64)> = [1.0, 10.0, 100.0].iter().map(|x| (*x, x * x)).collect();
        assert!((exponent(&sq) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn measured_child_reports_exit_code_and_memory() {
        // A child that allocates and touches ~64 MB must show at least that peak RSS.
        let m = run_measured(Command::new("sh").args([
            "-c",
            "head -c 64000000 /dev/zero | tr '\\0' a > /dev/null; echo hi; exit 3",
        ]));
        assert_eq!(m.code, Some(3));
        assert_eq!(m.stdout.trim(), "hi");
        let m = run_measured(Command::new("python3").args([
            "-c",
            "b = bytearray(80_000_000)\nfor i in range(0, len(b), 4096): b[i] = 1",
        ]));
        if m.code == Some(0) {
            assert!(m.max_rss_mb > 80.0, "peak RSS {} MB", m.max_rss_mb);
        }
    }
}
