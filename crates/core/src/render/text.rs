//! The text rendering, modelled on `terraform plan`.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style as AStyle};
use similar::TextDiff;

use crate::plan::estimate::Estimate;
use crate::plan::{Action, Operation, Plan, Refusal, Step, UnknownSource};

/// Text rendering options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colours (see [`crate::render::use_color`]).
    pub color: bool,
}

/// The styles of the text rendering (anstyle, so no escape code is written by hand). With
/// colour off every `paint` is the identity: the plain text is the same bytes either way.
struct Style {
    on: bool,
}

const BOLD: AStyle = AStyle::new().bold();
const ERROR: AStyle = AnsiColor::Red.on_default().bold();
const WARNING: AStyle = AnsiColor::Yellow.on_default().bold();
const GREEN: AStyle = AnsiColor::Green.on_default();
const RED: AStyle = AnsiColor::Red.on_default();
const CYAN: AStyle = AnsiColor::Cyan.on_default();

impl Style {
    fn paint(&self, style: AStyle, s: &str) -> String {
        if self.on {
            format!("{style}{s}{style:#}")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint(BOLD, s)
    }
    fn action(&self, a: Action, s: &str) -> String {
        let color = match a {
            Action::Create => AnsiColor::Green,
            Action::Update => AnsiColor::Yellow,
            Action::Delete => AnsiColor::Red,
            Action::Replace => AnsiColor::Magenta,
            Action::Read => AnsiColor::Cyan,
        };
        self.paint(color.on_default(), s)
    }
    fn line(&self, l: &str) -> String {
        if l.starts_with("@@") {
            self.paint(CYAN, l)
        } else if l.starts_with('+') {
            self.paint(GREEN, l)
        } else if l.starts_with('-') {
            self.paint(RED, l)
        } else {
            l.to_string()
        }
    }
}

/// Render a plan result (a plan or a refusal) as text.
pub fn text(result: &Result<Plan, Refusal>, opts: TextOptions) -> String {
    let st = Style { on: opts.color };
    match result {
        Ok(p) => plan_text(p, &st),
        Err(r) => refusal_text(r, &st),
    }
}

fn plan_text(p: &Plan, st: &Style) -> String {
    let mut o = String::new();
    unknown_text(&mut o, p, st);
    if p.steps.is_empty() {
        if !p.is_complete() {
            let _ = writeln!(
                o,
                "{}",
                st.bold("No changes found in what could be read, but the plan is incomplete: the sources above were not read, so the cluster may differ from the configuration there.")
            );
        } else if p.drift.is_empty() {
            let _ = writeln!(
                o,
                "{}",
                st.bold("No changes. The cluster matches the configuration.")
            );
        } else {
            let _ = writeln!(
                o,
                "{}",
                st.bold("No changes planned, but the cluster differs from the configuration in ways k3splan does not fix:")
            );
        }
        if let Some(q) = &p.quorum_before {
            let _ = writeln!(o, "\netcd: {q}.");
        }
        drift_and_warnings(&mut o, p, st);
        return o;
    }
    let _ = writeln!(
        o,
        "k3splan will perform the following actions, in this order. Symbols:\n  {} create   {} update in-place   {} destroy   {} replace   {} read or check (no change)\n",
        st.action(Action::Create, "+"),
        st.action(Action::Update, "~"),
        st.action(Action::Delete, "-"),
        st.action(Action::Replace, "-/+"),
        st.action(Action::Read, "<="),
    );
    if let Some(q) = &p.quorum_before {
        let _ = writeln!(o, "etcd before the plan: {q}.\n");
    }
    for s in &p.steps {
        step_text(&mut o, s, p.estimate.as_ref(), st);
    }
    let sum = p.summary();
    let _ = writeln!(
        o,
        "{} {} to add, {} to change, {} to remove.",
        st.bold("Plan:"),
        sum.add,
        sum.change,
        sum.remove
    );
    match (p.lowest_quorum(), &p.quorum_before) {
        (Some(low), _) => {
            let _ = writeln!(o, "Quorum: kept after every step; lowest point {low}.");
        }
        (None, Some(q)) => {
            let _ = writeln!(
                o,
                "Quorum: no step changes etcd membership or restarts a member; it stays at {q}."
            );
        }
        (None, None) => {}
    }
    if let Some(e) = &p.estimate {
        let _ = writeln!(o, "{} {}.", st.bold("Estimate:"), e.total_words());
    }
    drift_and_warnings(&mut o, p, st);
    o
}

fn step_text(o: &mut String, s: &Step, estimate: Option<&Estimate>, st: &Style) {
    let heading = format!("# {}. {} {}", s.id, s.address, s.action.verb());
    let _ = writeln!(o, "  {}", st.bold(&heading));
    let _ = writeln!(o, "  #    (because {})", s.why);
    let _ = writeln!(
        o,
        "  {} {}",
        st.action(s.action, s.action.symbol()),
        s.address
    );
    let has_file = s
        .operations
        .iter()
        .any(|op| matches!(op, Operation::WriteFile { .. }));
    for (i, op) in s.operations.iter().enumerate() {
        let _ = writeln!(o, "      {}", op.describe());
        if let Operation::WriteFile {
            before,
            after,
            sensitive,
            ..
        } = op
        {
            file_diff(o, before.as_deref(), after, st);
            for sv in sensitive {
                let _ = writeln!(
                    o,
                    "        ({} is (sensitive): written from {} at apply time)",
                    sv.key, sv.source
                );
            }
        }
        for q in s.quorum.iter().filter(|q| q.operation == i) {
            let when = if q.when == "during" {
                "during the restart"
            } else {
                "after"
            };
            let _ = writeln!(o, "      {} {}: {}", st.bold("quorum"), when, q.quorum);
        }
    }
    for n in &s.notes {
        let _ = writeln!(o, "      note: {n}");
    }
    match estimate.and_then(|e| e.step(s.id)) {
        Some(e) if e.ms.is_some() => {
            let _ = writeln!(o, "      estimate: {}", e.words());
        }
        Some(e) => {
            let _ = writeln!(o, "      {}", e.words());
        }
        None => {}
    }
    if !has_file {
        attributes(o, s, st);
    }
    let _ = writeln!(o);
}

fn file_diff(o: &mut String, before: Option<&str>, after: &str, st: &Style) {
    match before {
        None => {
            for l in after.lines() {
                let _ = writeln!(o, "        {}", st.line(&format!("+ {l}")));
            }
        }
        Some(b) => {
            let diff = TextDiff::from_lines(b, after);
            let u = diff.unified_diff().context_radius(2).to_string();
            for l in u.lines() {
                let _ = writeln!(o, "        {}", st.line(l));
            }
        }
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Attribute lines: `- key = old` (destroy), `+ key = new` (create), `~ key = old -> new`
/// (update: only declared attributes), `(known after apply)` for replaced attributes.
fn attributes(o: &mut String, s: &Step, st: &Style) {
    let empty = serde_json::Map::new();
    let b = s
        .before
        .as_ref()
        .and_then(|v| v.as_object())
        .unwrap_or(&empty);
    let a = s
        .after
        .as_ref()
        .and_then(|v| v.as_object())
        .unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let action = match (s.before.is_some(), s.after.is_some()) {
            (true, false) => Action::Delete,
            (false, true) => Action::Create,
            _ => s.action,
        };
        let line = match (action, b.get(k), a.get(k)) {
            (_, Some(x), Some(y)) if x == y => continue,
            (Action::Delete, Some(x), _) => {
                st.action(Action::Delete, &format!("- {k} = {}", scalar(x)))
            }
            (Action::Create, _, Some(y)) => {
                st.action(Action::Create, &format!("+ {k} = {}", scalar(y)))
            }
            (_, Some(x), Some(y)) => st.action(
                Action::Update,
                &format!("~ {k} = {} -> {}", scalar(x), scalar(y)),
            ),
            (Action::Replace, Some(x), None) => st.action(
                Action::Update,
                &format!("~ {k} = {} -> (known after apply)", scalar(x)),
            ),
            (_, None, Some(y)) => st.action(Action::Create, &format!("+ {k} = {}", scalar(y))),
            _ => continue,
        };
        let _ = writeln!(o, "        {line}");
    }
}

/// Unknown sources named one by one in the text output; the rest are counted by kind
/// (`plan --json` lists every one), so a plan with thousands of unreachable hosts stays
/// readable.
const MAX_LISTED_UNKNOWNS: usize = 10;

/// "4990 unreachable, 3 unknown": the kinds of `rest`, most frequent first.
fn count_by_kind(rest: &[&UnknownSource]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for u in rest {
        match counts.iter_mut().find(|(k, _)| *k == u.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((&u.kind, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unknown declared sources: an error block when any is not accepted (the plan is
/// incomplete), a warning line for each accepted one; past [`MAX_LISTED_UNKNOWNS`] of either,
/// one line counts the rest.
fn unknown_text(o: &mut String, p: &Plan, st: &Style) {
    let open: Vec<_> = p.unaccepted_unknowns().collect();
    if !open.is_empty() {
        let _ = writeln!(
            o,
            "{} the plan is incomplete: {} declared source{} could not be read.",
            st.paint(ERROR, "Error:"),
            open.len(),
            if open.len() == 1 { "" } else { "s" }
        );
        for u in open.iter().take(MAX_LISTED_UNKNOWNS) {
            let _ = writeln!(o, "  - {} is {}: {}", u.address, u.kind, u.reason);
        }
        if open.len() > MAX_LISTED_UNKNOWNS {
            let rest = &open[MAX_LISTED_UNKNOWNS..];
            let _ = writeln!(
                o,
                "  - and {} more ({}); `k3splan plan --json` lists every one",
                rest.len(),
                count_by_kind(rest)
            );
            let _ = writeln!(
                o,
                "  Fix access (credentials, known_hosts, network) and re-run, or accept each with --allow-unreachable NODE.\n"
            );
        } else {
            let names: Vec<&str> = open
                .iter()
                .map(|u| u.address.trim_start_matches("host."))
                .collect();
            let _ = writeln!(
                o,
                "  Fix access (credentials, known_hosts, network) and re-run, or accept each with --allow-unreachable {}.\n",
                names.join(" --allow-unreachable ")
            );
        }
    }
    let accepted: Vec<_> = p.unknown.iter().filter(|u| u.accepted).collect();
    for u in accepted.iter().take(MAX_LISTED_UNKNOWNS) {
        let _ = writeln!(
            o,
            "{} {} is {} (accepted with --allow-unreachable): {}\n",
            st.paint(WARNING, "Warning:"),
            u.address,
            u.kind,
            u.reason
        );
    }
    if accepted.len() > MAX_LISTED_UNKNOWNS {
        let rest = &accepted[MAX_LISTED_UNKNOWNS..];
        let _ = writeln!(
            o,
            "{} {} more source{} could not be read ({}), each accepted with --allow-unreachable; `k3splan plan --json` lists every one\n",
            st.paint(WARNING, "Warning:"),
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            count_by_kind(rest)
        );
    }
}

fn drift_and_warnings(o: &mut String, p: &Plan, st: &Style) {
    let unplanned: Vec<_> = p.drift.iter().filter(|d| !d.planned).collect();
    if !unplanned.is_empty() {
        let _ = writeln!(o, "\nDrift not fixed by this plan:");
        for d in unplanned {
            let _ = write!(
                o,
                "  {}.{}: declared {}, observed {}",
                d.address,
                d.attribute,
                d.declared.as_deref().unwrap_or("(none)"),
                d.observed.as_deref().unwrap_or("(none)")
            );
            match &d.note {
                Some(n) => {
                    let _ = writeln!(o, " ({n})");
                }
                None => {
                    let _ = writeln!(o);
                }
            }
        }
    }
    for w in &p.warnings {
        let _ = writeln!(o, "\n{} {w}", st.paint(WARNING, "Warning:"));
    }
}

fn refusal_text(r: &Refusal, st: &Style) -> String {
    let mut o = String::new();
    let n = r.violations.len();
    let _ = writeln!(
        o,
        "{} k3splan refuses to plan: {} safety violation{}. Nothing will be changed.",
        st.paint(ERROR, "Error:"),
        n,
        if n == 1 { "" } else { "s" }
    );
    if let Some(q) = &r.quorum_before {
        let _ = writeln!(o, "\netcd now: {q}.");
    }
    for v in &r.violations {
        let _ = writeln!(o);
        match &v.step {
            Some(s) => {
                let _ = writeln!(o, "  - {}", st.bold(s));
                let _ = writeln!(o, "    {}", v.message);
            }
            None => {
                let _ = writeln!(o, "  - {}", v.message);
            }
        }
        let _ = writeln!(o, "    violates {}", v.rule.label());
        if let Some(a) = v.advice.as_deref().filter(|a| !a.is_empty()) {
            let _ = writeln!(o, "    what to do: {a}");
        }
    }
    o
}

/// A step's attribute lines without colour and without indentation (the Markdown view
/// shows them in a `diff` block).
pub(super) fn attribute_lines_plain(s: &Step) -> String {
    let mut o = String::new();
    attributes(&mut o, s, &Style { on: false });
    o.lines().map(|l| format!("{}\n", l.trim_start())).collect()
}

/// A file write's diff without colour and without indentation (as the text view shows it).
pub(super) fn file_diff_plain(before: Option<&str>, after: &str) -> String {
    let mut o = String::new();
    file_diff(&mut o, before, after, &Style { on: false });
    o.lines()
        .map(|l| format!("{}\n", l.strip_prefix("        ").unwrap_or(l)))
        .collect()
}
