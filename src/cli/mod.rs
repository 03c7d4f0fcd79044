//! The command line: argument parsing ([`args`]), the commands, and the views that show
//! their results ([`view`]). `main.rs` is a thin wrapper over [`run`].
//!
//! Start-up decides everything about presentation once: the arguments are normalised
//! (Terraform's single-dash long options) and parsed, colour is resolved into a
//! [`view::Palette`], and each command gets the view its flags ask for.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub mod apply_cmd;
pub mod args;
pub mod check_cmd;
pub mod error;
pub mod files;
pub mod graph_cmd;
pub mod import_cmd;
pub mod man;
pub mod ops;
pub mod plan_cmd;
pub mod recover_cmd;
pub mod state_cmd;
pub mod view;

pub use args::{Cli, Command, GlobalArgs, StateCommand, terraform_style_args};
pub use error::CliError;
pub use files::load_valid;
use view::{ERROR, Palette, styled};

/// Exit code: success (and, with `--detailed-exitcode`, no changes).
pub const EXIT_OK: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `plan --detailed-exitcode` when the plan has changes.
pub const EXIT_CHANGES: u8 = 2;

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
    let palette = Palette::detect(cli.global.no_color);
    init_tracing(cli.global.verbose, palette.stderr);
    match try_main(cli, palette) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            let red = styled(palette.stderr, ERROR);
            let _ = writeln!(io::stderr(), "{red}Error:{red:#} {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_tracing(verbose: u8, color: bool) {
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
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

/// Runs a parsed command line. Output goes to stdout; diagnostics to stderr.
pub fn try_main(cli: Cli, palette: Palette) -> Result<u8, CliError> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate { json } => {
            files::cmd_validate(&g.config, *json, palette.stderr, palette.stdout)
        }
        Command::Fmt { check, diff, paths } => {
            let paths = if paths.is_empty() {
                vec![g.config.clone()]
            } else {
                paths.clone()
            };
            files::cmd_fmt(&paths, *check, *diff)
        }
        Command::Plan(a) => {
            let format = args::PlanFormat::resolve(a.format, a.json);
            plan_cmd::cmd_plan(g, a, palette, &mut *view::plan_view_for(format, palette))
        }
        Command::Apply(a) => {
            apply_cmd::cmd_apply(g, a, palette, &mut *view::apply_view(a.json, palette))
        }
        Command::Show {
            plan_file,
            json,
            format,
        } => {
            let format = args::PlanFormat::resolve(*format, *json);
            state_cmd::cmd_show(
                g,
                plan_file.as_deref(),
                format == args::PlanFormat::Json,
                &mut *view::plan_view_for(format, palette),
            )
        }
        Command::State(StateCommand::List) => state_cmd::cmd_state(g, None),
        Command::State(StateCommand::Show { address }) => state_cmd::cmd_state(g, Some(address)),
        Command::ForceUnlock { lock_id } => state_cmd::cmd_force_unlock(g, lock_id),
        Command::Import(a) => import_cmd::cmd_import(g, a, palette),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "k3splan", &mut buf);
            out(&buf)?;
            Ok(EXIT_OK)
        }
        Command::Man { dir } => man::cmd_man(dir.as_deref()),
        Command::Check(a) => check_cmd::cmd_check(g, a, palette),
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
        Command::Graph(a) => graph_cmd::cmd_graph(g, a, palette),
    }
}

/// Writes to stdout and flushes.
fn out(bytes: &[u8]) -> Result<(), CliError> {
    view::write_out(&mut io::stdout().lock(), bytes)
}
