//! `k3splan graph [PLAN_FILE] [-format=dot|svg]` (issue 18): the plan's steps and their
//! dependencies as a Graphviz graph, each edge labelled with why the later step waits.
//!
//! Without a plan file it observes and plans exactly as `plan` does (same flags, same checks,
//! nothing changed, no lock). DOT is rendered by the pure core
//! ([`crate::render::dot`]); SVG by piping it through Graphviz's `dot -Tsvg`, which must be
//! on PATH: when it is not, the command fails with an error that says so and what to do,
//! and prints nothing on stdout.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use k3splan_engine::state::Backend as _;

use crate::apply::resume_replacements;
use crate::plan::{self, Plan};
use crate::render::{self, GraphOptions, TextOptions};

use super::args::{GlobalArgs, GraphArgs, GraphFormat};
use super::ops::{Session, plan_options, read_saved_plan, replace_targets, state_backend};
use super::view::Palette;
use super::{CliError, EXIT_OK, load_valid, out};

/// `k3splan graph`.
pub fn cmd_graph(g: &GlobalArgs, a: &GraphArgs, palette: Palette) -> Result<u8, CliError> {
    let plan = match &a.plan_file {
        Some(p) => read_saved_plan(p)?.plan,
        None => plan_now(g, a, palette)?,
    };
    let dot = render::dot(&plan, GraphOptions::default());
    match a.format {
        GraphFormat::Dot => out(dot.as_bytes())?,
        GraphFormat::Svg => out(&svg(&dot)?)?,
    }
    Ok(EXIT_OK)
}

/// Observes and plans as `plan` does; a refused plan is an error (shown on stderr as text).
fn plan_now(g: &GlobalArgs, a: &GraphArgs, palette: Palette) -> Result<Plan, CliError> {
    let loaded = load_valid(&g.config, palette.stderr)?;
    let t = loaded.topology.expect("valid topology");
    let requested = replace_targets(&t, &a.live.replace)?;
    let state = state_backend(g, Some(&t))?.read()?;
    let (replace, _) = resume_replacements(state.as_ref(), &requested);
    let mut session = Session::new(&t, &g.config, &a.live, state.as_ref())?;
    let observed = session.observe_checked(&t, &a.live, false)?;
    let opts = plan_options(
        &a.live.allow_unreachable,
        replace,
        state.as_ref(),
        a.live.rebind_min_not_ready,
    );
    let result = plan::plan(&t, &observed, &opts);
    drop(session);
    match result {
        Ok(p) => Ok(p),
        Err(r) => {
            let text = render::text(
                &Err(r.clone()),
                TextOptions {
                    color: palette.stderr,
                },
            );
            let _ = io::stderr().write_all(text.as_bytes());
            Err(CliError::Refused(r.violations.len()))
        }
    }
}

/// `dot -Tsvg` of `dot_source`.
fn svg(dot_source: &str) -> Result<Vec<u8>, CliError> {
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CliError::Graphviz(
                "-format=svg needs Graphviz's `dot` program, which is not installed (not found on PATH). Install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), or print the DOT source (`k3splan graph`, the default -format=dot) and render it elsewhere".into(),
            ));
        }
        Err(e) => {
            return Err(CliError::Graphviz(format!(
                "cannot run Graphviz's `dot -Tsvg`: {e}"
            )));
        }
    };
    // Written from another thread: `dot` may fill its stdout pipe before it reads all of
    // its input.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = dot_source.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| CliError::Graphviz(format!("Graphviz's `dot -Tsvg` failed: {e}")))?;
    let _ = writer.join();
    if !output.status.success() {
        return Err(CliError::Graphviz(format!(
            "Graphviz's `dot -Tsvg` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}
