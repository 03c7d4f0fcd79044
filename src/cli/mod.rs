//! The command line: argument parsing and the commands. `main.rs` is a thin wrapper over
//! [`run`].

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub mod ops;
pub mod view;

use crate::config::fmt::{FmtError, format_source};
use crate::config::{self, Diagnostics, LoadError, Loaded};

/// Exit code: success (and, with `--detailed-exitcode`, no changes).
pub const EXIT_OK: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `plan --detailed-exitcode` when the plan has changes.
pub const EXIT_CHANGES: u8 = 2;

/// Declarative plan/apply reconciler for k3s high-availability clusters.
#[derive(Debug, Parser)]
#[command(name = "k3splan", version, about, long_about = None, disable_version_flag = false)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Topology: a file, or a directory whose *.hcl files are read in name order.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = ".",
        env = "K3SPLAN_CONFIG"
    )]
    pub config: PathBuf,
    /// State file (local backend) [default: state/k3splan.state.json]
    #[arg(long, global = true, env = "K3SPLAN_STATE")]
    pub state: Option<PathBuf>,
    /// No colours in the output (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// More logging: -v info, -vv debug, -vvv trace (to stderr).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the topology files: syntax, schema and semantic rules. No network access.
    Validate {
        /// Print the diagnostics as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite topology files in the canonical format.
    Fmt {
        /// Change nothing; exit 1 and list the files that are not formatted.
        #[arg(long)]
        check: bool,
        /// Print a diff of the changes.
        #[arg(long)]
        diff: bool,
        /// Files or directories (default: the --config path).
        paths: Vec<PathBuf>,
    },
    /// Compare the cluster with the topology and print the ordered plan.
    Plan(PlanArgs),
    /// Carry out a plan (computed now, or saved with `plan -out`).
    Apply {
        /// A plan saved with `plan -out FILE`.
        plan_file: Option<PathBuf>,
        /// Skip the interactive approval.
        #[arg(long)]
        auto_approve: bool,
        /// Nodes whose unreachable hosts may be treated as gone.
        #[arg(long, value_name = "NODE")]
        allow_unreachable: Vec<String>,
        /// Rebuild this node (drain, delete, remove its etcd member, uninstall, join again),
        /// in this apply only. Repeatable; `-replace=node.NAME` as in Terraform.
        #[arg(long = "replace", value_name = "node.NAME")]
        replace: Vec<String>,
        /// How long to wait for the state lock, e.g. 30s.
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Add unknown SSH host keys to known_hosts (a changed key is still refused).
        #[arg(long)]
        accept_new_host_keys: bool,
        /// How many hosts to reach over SSH at once (connect, observe, act).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallelism: u16,
        /// Seconds a lost node must have been NotReady before a PVC pinned to it is deleted.
        #[arg(long, value_name = "SECONDS", env = "K3SPLAN_REBIND_MIN_NOT_READY")]
        rebind_min_not_ready: Option<u64>,
    },
    /// Render a saved plan, or the current state.
    Show {
        /// A plan saved with `plan -out FILE`.
        plan_file: Option<PathBuf>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Release a state lock left by a dead run.
    ForceUnlock {
        /// The lock ID printed by the command that could not take the lock.
        lock_id: String,
    },
    /// Record existing cluster objects in the state without changing them.
    Import,
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the version.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE for `apply FILE`.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Nodes whose unreachable hosts may be treated as gone (safety rule 1).
    #[arg(long, value_name = "NODE")]
    pub allow_unreachable: Vec<String>,
    /// Plan the rebuild of this node (drain, delete, remove its etcd member, uninstall,
    /// join again), for this plan only. Repeatable; `-replace=node.NAME` as in Terraform.
    #[arg(long = "replace", value_name = "node.NAME")]
    pub replace: Vec<String>,
    /// Add unknown SSH host keys to known_hosts (like OpenSSH's accept-new); a changed key
    /// is still refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// How many hosts to reach over SSH at once (connect, observe, act).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallelism: u16,
    /// Seconds a lost node must have been NotReady before a PVC pinned to it is deleted
    /// (default 300: Kubernetes' taint-eviction delay; a kubelet restart or a network blip
    /// turns a Node NotReady within ~50 s).
    #[arg(long, value_name = "SECONDS", env = "K3SPLAN_REBIND_MIN_NOT_READY")]
    pub rebind_min_not_ready: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the objects the state records.
    List,
    /// Show one object of the state.
    Show {
        /// Address, e.g. node.lzx-ha-env-2.
        address: String,
    },
}

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the configuration is invalid: {errors} error(s), {warnings} warning(s)")]
    Invalid { errors: usize, warnings: usize },
    #[error("`k3splan {0}` is not implemented yet")]
    NotImplemented(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{source}")]
    Fmt {
        path: PathBuf,
        #[source]
        source: FmtError,
    },
    #[error("{0} file(s) are not formatted")]
    Unformatted(usize),
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
    #[error("{0}")]
    Message(String),
    /// A command line that parses but names something that does not exist.
    #[error("usage: {0}")]
    Usage(String),
}

/// Whether to colour output: not with `--no-color`, not when `NO_COLOR` is set (non-empty),
/// and only on a terminal.
pub fn use_color(no_color: bool, terminal: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && terminal
}

/// Parses the arguments and runs the command; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse_from(terraform_style_args(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap exits 2 on a usage error, which `plan --detailed-exitcode` means "changes
            // present": a cron job with a mistyped flag would report drift. Usage errors are
            // errors (1); --help and --version are not.
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    init_tracing(cli.global.verbose);
    let color = use_color(cli.global.no_color, io::stderr().is_terminal());
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            let (red, reset) = if color {
                ("\x1b[1;31m", "\x1b[0m")
            } else {
                ("", "")
            };
            let _ = writeln!(io::stderr(), "{red}Error:{reset} {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Accepts Terraform's single-dash spelling of `-replace` (`-replace=node.NAME`,
/// `-replace node.NAME`) as `--replace`. Nothing after `--` is touched.
pub fn terraform_style_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut after_dashes = false;
    args.into_iter()
        .map(|a| {
            if after_dashes {
                return a;
            }
            match a.to_str() {
                Some("--") => {
                    after_dashes = true;
                    a
                }
                Some(s) if s == "-replace" || s.starts_with("-replace=") => format!("-{s}").into(),
                _ => a,
            }
        })
        .collect()
}

fn init_tracing(verbose: u8) {
    // Library crates log their own failures (kube's client logs connection errors at ERROR);
    // k3splan reports those itself with context, so they stay quiet unless -vv.
    let level = match verbose {
        0 => "warn,kube_client=off,kube=off,tower=off,hyper=off,h2=off,rustls=off,russh=off",
        1 => "info,kube_client=warn,russh=warn,h2=warn,hyper=warn,tower=warn,rustls=warn",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("K3SPLAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Runs a parsed command line. Output goes to stdout; diagnostics to stderr.
pub fn try_main(cli: Cli) -> Result<u8, CliError> {
    let g = &cli.global;
    let color_err = use_color(g.no_color, io::stderr().is_terminal());
    let color_out = use_color(g.no_color, io::stdout().is_terminal());
    match &cli.command {
        Command::Validate { json } => cmd_validate(&g.config, *json, color_err, color_out),
        Command::Fmt { check, diff, paths } => {
            let paths = if paths.is_empty() {
                vec![g.config.clone()]
            } else {
                paths.clone()
            };
            cmd_fmt(&paths, *check, *diff)
        }
        Command::Plan(a) => ops::cmd_plan(
            g,
            &ops::LiveFlags {
                allow_unreachable: a.allow_unreachable.clone(),
                replace: a.replace.clone(),
                accept_new_host_keys: a.accept_new_host_keys,
                parallelism: a.parallelism.into(),
                rebind_min_not_ready: a.rebind_min_not_ready,
            },
            a.json,
            a.detailed_exitcode,
            a.out.as_deref(),
        ),
        Command::Apply {
            plan_file,
            auto_approve,
            allow_unreachable,
            replace,
            lock_timeout,
            accept_new_host_keys,
            parallelism,
            rebind_min_not_ready,
        } => ops::cmd_apply(
            g,
            &ops::LiveFlags {
                allow_unreachable: allow_unreachable.clone(),
                replace: replace.clone(),
                accept_new_host_keys: *accept_new_host_keys,
                parallelism: (*parallelism).into(),
                rebind_min_not_ready: *rebind_min_not_ready,
            },
            plan_file.as_deref(),
            *auto_approve,
            lock_timeout,
        ),
        Command::Show { plan_file, json } => ops::cmd_show(g, plan_file.as_deref(), *json),
        Command::State(StateCommand::List) => ops::cmd_state(g, None),
        Command::State(StateCommand::Show { address }) => ops::cmd_state(g, Some(address)),
        Command::ForceUnlock { lock_id } => ops::cmd_force_unlock(g, lock_id),
        Command::Import => Err(CliError::NotImplemented("import")),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "k3splan", &mut buf);
            out(&buf)?;
            Ok(EXIT_OK)
        }
        Command::Version { json } => {
            let v = env!("CARGO_PKG_VERSION");
            let text = if *json {
                format!("{{\"k3splan_version\":\"{v}\"}}\n")
            } else {
                format!("k3splan v{v}\n")
            };
            out(text.as_bytes())?;
            Ok(EXIT_OK)
        }
    }
}

fn out(bytes: &[u8]) -> Result<(), CliError> {
    let mut o = io::stdout().lock();
    o.write_all(bytes)
        .and_then(|_| o.flush())
        .map_err(CliError::Output)
}

fn print_diagnostics(d: &Diagnostics, color: bool) {
    if !d.is_empty() {
        let _ = io::stderr().write_all(d.render(color).as_bytes());
    }
}

/// Loads the topology and fails (after printing the diagnostics) when it has errors.
pub fn load_valid(path: &Path, color: bool) -> Result<Loaded, CliError> {
    let loaded = config::load_path(path, config::process_env())?;
    print_diagnostics(&loaded.diagnostics, color);
    if loaded.diagnostics.has_errors() {
        return Err(CliError::Invalid {
            errors: loaded.diagnostics.errors(),
            warnings: loaded.diagnostics.warnings(),
        });
    }
    Ok(loaded)
}

fn cmd_validate(path: &Path, json: bool, color_err: bool, color_out: bool) -> Result<u8, CliError> {
    let loaded = config::load_path(path, config::process_env())?;
    let d = &loaded.diagnostics;
    if json {
        let items: Vec<serde_json::Value> = d
            .iter()
            .map(|x| {
                serde_json::json!({
                    "severity": x.severity.to_string(),
                    "file": x.path.display().to_string(),
                    "line": x.line,
                    "column": x.col,
                    "message": x.message,
                    "notes": x.notes,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "valid": !d.has_errors(),
            "error_count": d.errors(),
            "warning_count": d.warnings(),
            "diagnostics": items,
        });
        out(format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
        .as_bytes())?;
        return Ok(if d.has_errors() { EXIT_ERROR } else { EXIT_OK });
    }
    print_diagnostics(d, color_err);
    if d.has_errors() {
        return Err(CliError::Invalid {
            errors: d.errors(),
            warnings: d.warnings(),
        });
    }
    let (g, r) = if color_out {
        ("\x1b[1;32m", "\x1b[0m")
    } else {
        ("", "")
    };
    let t = loaded.topology.as_ref();
    let nodes = t.map(|t| t.nodes.len()).unwrap_or(0);
    let voters = t.map(|t| t.etcd_nodes().count()).unwrap_or(0);
    let warn = match d.warnings() {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    out(format!(
        "{g}Success!{r} The configuration is valid{warn}: {nodes} node(s), {voters} etcd member(s).\n"
    )
    .as_bytes())?;
    Ok(EXIT_OK)
}

fn cmd_fmt(paths: &[PathBuf], check: bool, diff: bool) -> Result<u8, CliError> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(hcl_files_recursive(p)?);
    }
    let mut unformatted = 0;
    let mut failed = None;
    for f in &files {
        let src = std::fs::read_to_string(f).map_err(|source| CliError::Io {
            path: f.clone(),
            source,
        })?;
        let formatted = match format_source(&src) {
            Ok(s) => s,
            Err(source) => {
                let _ = writeln!(io::stderr(), "{}:{source}", f.display());
                failed = Some(CliError::Fmt {
                    path: f.clone(),
                    source,
                });
                continue;
            }
        };
        if formatted == src {
            continue;
        }
        unformatted += 1;
        out(format!("{}\n", f.display()).as_bytes())?;
        if diff {
            let d = similar::TextDiff::from_lines(&src, &formatted);
            let text = d
                .unified_diff()
                .header(&f.display().to_string(), &f.display().to_string())
                .to_string();
            out(text.as_bytes())?;
        }
        if !check {
            write_atomic(f, formatted.as_bytes())?;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if check && unformatted > 0 {
        return Err(CliError::Unformatted(unformatted));
    }
    Ok(EXIT_OK)
}

/// `*.hcl` files under `path` (the file itself, or every `*.hcl` below the directory).
fn hcl_files_recursive(path: &Path) -> Result<Vec<PathBuf>, CliError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|source| CliError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if p.is_dir() && !hidden {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hcl") {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(LoadError::NoFiles {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(found)
}

/// Replaces a file atomically (temp file in the same directory, fsync, rename), keeping its
/// permissions.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io_err = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let perms = std::fs::metadata(path).map_err(io_err)?.permissions();
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    std::fs::set_permissions(tmp.path(), perms).map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: Terraform's spelling `-replace=node.NAME` (repeatable) parses, for `plan`
    /// and `apply`, as `--replace` does.
    #[test]
    fn issue13_terraform_style_replace_flag_parses() {
        let args = |v: &[&str]| terraform_style_args(v.iter().map(std::ffi::OsString::from));
        let cli = Cli::try_parse_from(args(&[
            "k3splan",
            "plan",
            "-replace=node.a",
            "-replace",
            "node.b",
            "--replace=node.c",
        ]))
        .expect("parses");
        let Command::Plan(p) = cli.command else {
            panic!("plan")
        };
        assert_eq!(p.replace, ["node.a", "node.b", "node.c"]);
        let cli = Cli::try_parse_from(args(&["k3splan", "apply", "-replace=node.a"])).unwrap();
        let Command::Apply { replace, .. } = cli.command else {
            panic!("apply")
        };
        assert_eq!(replace, ["node.a"]);
        // After `--`, nothing is rewritten.
        assert_eq!(
            args(&["k3splan", "--", "-replace=x"])[2],
            std::ffi::OsString::from("-replace=x")
        );
    }
}
