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

pub mod check;
mod human;
mod json;
mod markdown;

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anstyle::Style;
use k3splan_engine::apply::ApplyEvents;

use crate::plan::{Plan, Refusal, Summary};

use super::CliError;

pub use human::{HumanApplyView, HumanPlanView};
pub use json::{JsonApplyView, JsonPlanView};
pub use markdown::{MarkdownPlanView, plan_view_for};

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
    /// The saved plan about to be applied (`apply PLAN_FILE`; the operator saw it when it
    /// was saved).
    fn saved_plan(&mut self, plan: &Plan) -> Result<(), CliError>;
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

/// The plan view for `--json` or not, writing to stdout.
pub fn plan_view(json: bool, palette: Palette) -> Box<dyn PlanView> {
    match json {
        true => Box::new(JsonPlanView { out: stdout() }),
        false => Box::new(HumanPlanView {
            out: stdout(),
            color: palette.stdout,
        }),
    }
}

/// The apply view for `--json` or not, writing to stdout.
pub fn apply_view(json: bool, palette: Palette) -> Box<dyn ApplyView> {
    match json {
        true => Box::new(JsonApplyView { out: stdout() }),
        false => Box::new(HumanApplyView {
            out: stdout(),
            color: palette.stdout,
        }),
    }
}

fn stdout() -> Out {
    Box::new(io::stdout())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k3splan_engine::apply::ApplyEvent;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A 45 s drain as the engine reports it with a 20 s heartbeat: started, two
    /// heartbeats, done.
    fn long_drain() -> Vec<ApplyEvent> {
        let op = "drain node server-1".to_string();
        let beat = |s: f64| ApplyEvent::Heartbeat {
            step: 1,
            operation: op.clone(),
            elapsed_s: s,
        };
        vec![
            ApplyEvent::StepStarted {
                index: 1,
                total: 1,
                symbol: "~".into(),
                address: "node.server-1".into(),
            },
            beat(20.0),
            beat(40.0),
            ApplyEvent::OperationDone {
                step: 1,
                operation: op.clone(),
                note: None,
                elapsed_s: 45.2,
            },
            ApplyEvent::StepDone {
                index: 1,
                elapsed_s: 45.3,
            },
        ]
    }

    #[test]
    fn the_human_view_shows_a_heartbeat_line_while_a_long_operation_runs() {
        let buf = Buf::default();
        let mut v = HumanApplyView {
            out: Box::new(buf.clone()),
            color: false,
        };
        for e in long_drain() {
            v.event(&e);
        }
        assert_eq!(
            buf.text(),
            "[1/1] ~ node.server-1\n      still running: drain node server-1 … 20s\n      still running: drain node server-1 … 40s\n      drain node server-1 … done (45.2s)\n      done (45.3s)\n"
        );
        // With colour, the same words between escapes (anstyle's, none written by hand).
        let buf = Buf::default();
        let mut v = HumanApplyView {
            out: Box::new(buf.clone()),
            color: true,
        };
        v.event(&long_drain()[1]);
        assert_eq!(
            buf.text(),
            "      \x1b[2mstill running: drain node server-1 … 20s\x1b[0m\n"
        );
    }

    #[test]
    fn the_json_view_writes_one_object_per_line_ending_with_the_result() {
        let buf = Buf::default();
        let mut v = JsonApplyView {
            out: Box::new(buf.clone()),
        };
        let empty = Plan {
            steps: vec![],
            drift: vec![],
            warnings: vec![],
            quorum_before: None,
            unknown: vec![],
            estimate: None,
        };
        v.plan(&Ok(empty)).unwrap();
        v.note("Resuming.\n").unwrap();
        for e in long_drain() {
            v.event(&e);
        }
        v.complete(&Summary::default(), true, 7).unwrap();
        let lines: Vec<serde_json::Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            events,
            [
                "plan",
                "note",
                "step_started",
                "heartbeat",
                "heartbeat",
                "operation_done",
                "step_done",
                "apply_complete"
            ]
        );
        assert_eq!(
            lines[0]["plan"]["format_version"],
            crate::render::FORMAT_VERSION
        );
        assert_eq!(lines[1]["message"], "Resuming.");
        assert_eq!(lines[4]["elapsed_s"], 40.0);
        assert_eq!(lines[7]["state_serial"], 7);
    }
}
