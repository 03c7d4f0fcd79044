//! The human views: the text an operator reads in a terminal, coloured only when the
//! [`Palette`](super::Palette) says so.

use std::io::{self, BufRead};
use std::path::Path;

use anstyle::{AnsiColor, Style};
use k3splan_engine::apply::{ApplyEvent, ApplyEvents};

use super::{ApplyView, Out, PlanView, styled, write_out};
use crate::cli::CliError;
use crate::plan::{Plan, Refusal, Summary};
use crate::render;

fn plan_text(result: &Result<Plan, Refusal>, color: bool) -> String {
    render::text(result, render::TextOptions { color })
}

/// `plan` and `show` as text.
pub struct HumanPlanView {
    pub out: Out,
    pub color: bool,
}

impl PlanView for HumanPlanView {
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError> {
        write_out(&mut self.out, plan_text(result, self.color).as_bytes())
    }
    fn saved(&mut self, path: &Path) -> Result<(), CliError> {
        let p = path.display();
        let text = format!(
            "\nSaved the plan to: {p}\nTo perform exactly these actions, run: k3splan apply {p}\n"
        );
        write_out(&mut self.out, text.as_bytes())
    }
    fn not_saved(&mut self) -> Result<(), CliError> {
        write_out(
            &mut self.out,
            b"\nThe plan is incomplete: it was not saved.\n",
        )
    }
}

/// Human progress lines, as an operator watches them in a terminal.
pub struct HumanApplyView {
    pub out: Out,
    pub color: bool,
}

impl HumanApplyView {
    fn line(&mut self, s: &str) {
        let _ = write_out(&mut self.out, format!("{s}\n").as_bytes());
    }

    /// The text of one event (no trailing newline).
    pub fn event_text(&self, e: &ApplyEvent) -> String {
        let on = self.color;
        let bold = styled(on, Style::new().bold());
        let dim = styled(on, Style::new().dimmed());
        let green = styled(on, AnsiColor::Green.on_default());
        let red = styled(on, AnsiColor::Red.on_default());
        match e {
            ApplyEvent::StepStarted {
                index,
                total,
                symbol,
                address,
            } => format!("{bold}[{index}/{total}] {symbol} {address}{bold:#}"),
            ApplyEvent::Heartbeat {
                operation,
                elapsed_s,
                ..
            } => format!("      {dim}still running: {operation} … {elapsed_s:.0}s{dim:#}"),
            ApplyEvent::OperationDone {
                operation,
                note,
                elapsed_s,
                ..
            } => format!(
                "      {dim}{operation} … {green}{} ({elapsed_s:.1}s){green:#}",
                note.as_deref().unwrap_or("done")
            ),
            ApplyEvent::OperationFailed {
                operation, error, ..
            } => format!("      {red}{operation} … failed: {error}{red:#}"),
            ApplyEvent::StepDone { elapsed_s, .. } => {
                format!("      {green}done{green:#} {dim}({elapsed_s:.1}s){dim:#}")
            }
            ApplyEvent::ApplyStopped {
                index,
                total,
                not_done,
            } => format!(
                "\n{red}Apply stopped at step {index} of {total}.{red:#} {} Not done:\n{}\nFix the cause and run `k3splan apply` again: it re-observes the cluster and plans only what is left.",
                steps_done(*index),
                not_done
                    .iter()
                    .map(|s| format!("  {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

impl ApplyEvents for HumanApplyView {
    fn event(&mut self, e: &ApplyEvent) {
        let text = self.event_text(e);
        self.line(&text);
    }
}

impl ApplyView for HumanApplyView {
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError> {
        write_out(&mut self.out, plan_text(result, self.color).as_bytes())
    }
    /// Not shown again: `plan -out=FILE` showed it.
    fn saved_plan(&mut self, _plan: &Plan) -> Result<(), CliError> {
        Ok(())
    }
    fn note(&mut self, text: &str) -> Result<(), CliError> {
        write_out(&mut self.out, format!("{text}\n").as_bytes())
    }
    fn approve(&mut self) -> Result<bool, CliError> {
        write_out(
            &mut self.out,
            b"\nDo you want to perform these actions?\n  k3splan will perform the actions described above, in order.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ",
        )?;
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(CliError::Output)?;
        Ok(line.trim() == "yes")
    }
    fn cancelled(&mut self) -> Result<(), CliError> {
        write_out(&mut self.out, b"\nApply cancelled.\n")
    }
    fn starting(&mut self) -> Result<(), CliError> {
        write_out(&mut self.out, b"\n")
    }
    fn complete(&mut self, s: &Summary, applied: bool, serial: u64) -> Result<(), CliError> {
        if !applied {
            return Ok(());
        }
        let text = format!(
            "\nApply complete! Resources: {} added, {} changed, {} removed. State serial {serial}.\n",
            s.add, s.change, s.remove
        );
        write_out(&mut self.out, text.as_bytes())
    }
    /// Errors are shown on stderr by `cli::run`; stdout says nothing more.
    fn error(&mut self, _message: &str) {}
}

/// What an apply stopped at step `index` (1-based) has done: "No step is done." when it
/// stopped at the first step, else the range of the steps done before it.
fn steps_done(index: usize) -> String {
    match index.saturating_sub(1) {
        0 => "No step is done.".into(),
        1 => "Step 1 is done and recorded in the state.".into(),
        n => format!("Steps 1–{n} are done and recorded in the state."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped_at(index: usize, total: usize) -> String {
        let v = HumanApplyView {
            out: Box::new(io::sink()),
            color: false,
        };
        v.event_text(&ApplyEvent::ApplyStopped {
            index,
            total,
            not_done: (index..=total).map(|i| format!("{i}. node.n{i}")).collect(),
        })
    }

    #[test]
    fn a_stop_at_the_first_step_says_no_step_is_done() {
        let t = stopped_at(1, 3);
        assert!(
            t.contains("Apply stopped at step 1 of 3. No step is done."),
            "{t}"
        );
        assert!(!t.contains("1–0"), "{t}");
        assert!(stopped_at(2, 3).contains("Step 1 is done and recorded"));
        assert!(stopped_at(3, 3).contains("Steps 1–2 are done and recorded"));
    }
}
