//! Views: how the command line shows a plan and an apply, as Terraform's `views` package
//! does. A command talks to one [`PlanView`] or [`ApplyView`], chosen once at start-up
//! from the flags ([`plan_view`], [`apply_view`]): the human one (text, colour when
//! [`Palette`] allows it) or the JSON one (machine-readable, nothing else on stdout).
//!
//! Guarantees: colour is decided once, in [`Palette::detect`] (`--no-color`, `NO_COLOR`,
//! and whether the stream is a terminal); with colour off, the human views write exactly
//! the bytes of the plain text (the goldens compare them). The JSON apply view writes one
//! JSON object per line and nothing else on stdout. Caveat: an apply event that cannot be
//! written (a closed stdout) is dropped, as the engine's [`ApplyEvents`] cannot fail; the
//! apply goes on and its result is still recorded in the state.

mod human;
mod json;

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anstyle::Style;
use k3splan_engine::apply::ApplyEvents;

use crate::plan::{Plan, Refusal, Summary};

use super::CliError;

pub use human::{HumanApplyView, HumanPlanView};
pub use json::{JsonApplyView, JsonPlanView};

/// Where a view writes (stdout, or a buffer in tests).
pub type Out = Box<dyn Write + Send>;

/// Whether stdout and stderr are coloured, decided once at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Palette {
    pub stdout: bool,
    pub stderr: bool,
}

impl Palette {
    /// No colour with `--no-color`, nor when `NO_COLOR` is set (non-empty), and only on a
    /// terminal (each stream on its own).
    pub fn detect(no_color: bool) -> Self {
        let env = std::env::var_os("NO_COLOR").map(|v| v.to_string_lossy().into_owned());
        let allowed = crate::render::use_color(no_color, env.as_deref());
        Palette {
            stdout: allowed && io::stdout().is_terminal(),
            stderr: allowed && io::stderr().is_terminal(),
        }
    }
}

/// `style` when colour is on, else the plain style (which renders as nothing).
pub fn styled(on: bool, style: Style) -> Style {
    if on { style } else { Style::new() }
}

/// Bold red, as errors are marked.
pub const ERROR: Style = anstyle::AnsiColor::Red.on_default().bold();
/// Bold green, as success is marked.
pub const SUCCESS: Style = anstyle::AnsiColor::Green.on_default().bold();

/// Writes `bytes` and flushes (a write error is the command's error: a closed pipe ends
/// the command quietly, see `cli::run`).
pub fn write_out(o: &mut dyn Write, bytes: &[u8]) -> Result<(), CliError> {
    o.write_all(bytes)
        .and_then(|_| o.flush())
        .map_err(CliError::Output)
}

/// What `plan` and `show PLAN_FILE` show.
pub trait PlanView {
    /// The plan, or the refusal to plan.
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError>;
    /// The plan was saved to `path`.
    fn saved(&mut self, path: &Path) -> Result<(), CliError>;
    /// The plan was not saved: it is incomplete.
    fn not_saved(&mut self) -> Result<(), CliError>;
}

/// What `apply` shows: the engine's events ([`ApplyEvents`]) and the messages before and
/// after them.
pub trait ApplyView: ApplyEvents {
    /// The plan about to be applied (or the refusal, or "no changes").
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError>;
    /// A message to the operator (an interrupted apply resumed, a replacement carried on).
    fn note(&mut self, text: &str) -> Result<(), CliError>;
    /// Asks for approval; `false` is a refusal.
    fn approve(&mut self) -> Result<bool, CliError>;
    /// The operator did not approve.
    fn cancelled(&mut self) -> Result<(), CliError>;
    /// The steps are about to run (after the approval).
    fn starting(&mut self) -> Result<(), CliError>;
    /// The apply is over and its result recorded: `summary` was applied (`applied`:
    /// whether any step ran) and the state is at `serial`.
    fn complete(&mut self, summary: &Summary, applied: bool, serial: u64) -> Result<(), CliError>;
    /// The apply ends with an error (also shown on stderr by `cli::run`).
    fn error(&mut self, message: &str);
}

/// The plan view for `--json` or not.
pub fn plan_view(json: bool, palette: Palette) -> Box<dyn PlanView> {
    let out: Out = Box::new(io::stdout());
    if json {
        Box::new(JsonPlanView { out })
    } else {
        Box::new(HumanPlanView {
            out,
            color: palette.stdout,
        })
    }
}

/// The apply view for `--json` or not.
pub fn apply_view(json: bool, palette: Palette) -> Box<dyn ApplyView> {
    let out: Out = Box::new(io::stdout());
    if json {
        Box::new(JsonApplyView { out })
    } else {
        Box::new(HumanApplyView {
            out,
            color: palette.stdout,
        })
    }
}
