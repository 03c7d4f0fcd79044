//! Views: how the command line shows what the engine reports. An apply's
//! [`ApplyEvent`]s are rendered by one [`ApplyEvents`] implementation chosen once at
//! start-up.

use std::io::Write;

use k3splan_engine::apply::{ApplyEvent, ApplyEvents};

/// Human progress lines, as an operator watches them in a terminal.
pub struct HumanApplyView {
    pub out: Box<dyn Write + Send>,
    pub color: bool,
}

impl HumanApplyView {
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }
}

impl ApplyEvents for HumanApplyView {
    fn event(&mut self, e: &ApplyEvent) {
        let (bold, dim, green, red, reset) = if self.color {
            ("\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[31m", "\x1b[0m")
        } else {
            ("", "", "", "", "")
        };
        let text = match e {
            ApplyEvent::StepStarted {
                index,
                total,
                symbol,
                address,
            } => format!("{bold}[{index}/{total}] {symbol} {address}{reset}"),
            ApplyEvent::Heartbeat {
                operation,
                elapsed_s,
                ..
            } => format!("      {dim}still running: {operation} … {elapsed_s:.0}s{reset}"),
            ApplyEvent::OperationDone {
                operation,
                note,
                elapsed_s,
                ..
            } => format!(
                "      {dim}{operation} … {green}{} ({elapsed_s:.1}s){reset}",
                note.as_deref().unwrap_or("done")
            ),
            ApplyEvent::OperationFailed {
                operation, error, ..
            } => format!("      {red}{operation} … failed: {error}{reset}"),
            ApplyEvent::StepDone { elapsed_s, .. } => {
                format!("      {green}done{reset} {dim}({elapsed_s:.1}s){reset}")
            }
            ApplyEvent::ApplyStopped {
                index,
                total,
                not_done,
            } => format!(
                "\n{red}Apply stopped at step {index} of {total}.{reset} Steps 1–{} are done and recorded in the state. Not done:\n{}\nFix the cause and run `k3splan apply` again: it re-observes the cluster and plans only what is left.",
                index - 1,
                not_done
                    .iter()
                    .map(|s| format!("  {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        self.line(&text);
    }
}
