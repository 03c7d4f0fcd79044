//! How `k3splan check` shows its report: text (one line per finding, worst first within each
//! check, then a summary line) or the JSON report (docs/check.md: the schema).

use std::io;

use anstyle::{AnsiColor, Style};

use super::{ERROR, SUCCESS, styled, write_out};
use crate::check::{Report, Severity};
use crate::cli::CliError;

const WARN: Style = AnsiColor::Yellow.on_default().bold();
const UNKNOWN: Style = AnsiColor::Magenta.on_default().bold();

/// The report as text (`color`: ANSI styles).
pub fn check_text(r: &Report, color: bool) -> String {
    let mut s = String::new();
    for f in r.problems() {
        let style = styled(
            color,
            match f.severity {
                Severity::Critical => ERROR,
                Severity::Unknown => UNKNOWN,
                Severity::Warning => WARN,
                Severity::Ok => SUCCESS,
            },
        );
        s.push_str(&format!(
            "{style}{:<8}{style:#} {} {}: {}\n",
            f.severity.word(),
            f.check,
            f.subject,
            f.message
        ));
        if let Some(d) = &f.deadline {
            s.push_str(&format!("         deadline: {d}\n"));
        }
        if let Some(fix) = &f.fix {
            s.push_str(&format!("         fix: {fix}\n"));
        }
    }
    let count = |sev| r.findings.iter().filter(|f| f.severity == sev).count();
    let (c, u, w) = (
        count(Severity::Critical),
        count(Severity::Unknown),
        count(Severity::Warning),
    );
    if c + u + w == 0 {
        let ok = styled(color, SUCCESS);
        s.push_str(&format!(
            "{ok}Check: ok.{ok:#} {} checks found nothing ({}).\n",
            r.checks.len(),
            r.checked_at
        ));
    } else {
        s.push_str(&format!(
            "\nCheck: {c} critical, {w} warning, {u} unknown ({} checks, {}).\n",
            r.checks.len(),
            r.checked_at
        ));
    }
    s
}

/// Writes the report on stdout, as text or JSON.
pub fn render_check(r: &Report, json: bool, color: bool) -> Result<(), CliError> {
    let bytes = if json {
        let mut b = serde_json::to_vec_pretty(r).expect("report serializes");
        b.push(b'\n');
        b
    } else {
        check_text(r, color).into_bytes()
    };
    write_out(&mut io::stdout().lock(), &bytes)
}
