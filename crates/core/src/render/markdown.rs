//! The Markdown rendering: a plan as a merge-request comment (`plan -format=markdown`,
//! `show -format=markdown PLANFILE`), in the spirit of tfcmt and Atlantis.
//!
//! Layout, top to bottom: a `###` summary heading (`k3splan plan: 9 to add, 4 to change, 5
//! to remove`); a destroy warning when anything is destroyed or replaced; the quorum line;
//! an incomplete-plan or refusal block when there is one; the steps inside one collapsible
//! `<details>` block, each step a `####` heading with its reason, its operations as a list,
//! the quorum after each membership change, file writes as ` ```diff ` blocks and the
//! changed attributes as a `diff` block; then a separate "Changed outside k3splan" section
//! (the drift table) and the warnings.
//!
//! Guarantees: the result is at most [`MarkdownOptions::max_chars`] bytes (bytes ≥
//! characters, so the character limits of GitHub, 65,536, and GitLab, 1,000,000, hold);
//! what does not fit is left out whole — a step's diffs first, then whole steps, then rows of
//! the drift table — and a note says what was left out. Output is cut only between
//! self-contained blocks, never inside a fence, a table or the `<details>` element. Every
//! fence is longer than any run of backticks in its content, and text from the plan is
//! escaped (Markdown punctuation in prose, HTML in the `<summary>`), so a file's content or
//! a reason cannot open an element it does not close. Secrets are masked by the planner
//! before rendering, as in the text view.

use std::fmt::Write as _;

use crate::plan::{Operation, Plan, Refusal, Step};

use super::text::{attribute_lines_plain, file_diff_plain};

/// GitHub's limit on the body of an issue or pull-request comment (characters).
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;
/// GitLab's limit on the body of a note (merge-request comment), in characters.
pub const GITLAB_COMMENT_LIMIT: usize = 1_000_000;

/// Markdown rendering options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkdownOptions {
    /// The largest comment to produce, in bytes. Default: GitHub's limit (the smaller of
    /// the two, so one comment fits both).
    pub max_chars: usize,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions {
            max_chars: GITHUB_COMMENT_LIMIT,
        }
    }
}

/// At most this many addresses are named in the destroy warning (the rest are counted).
const MAX_NAMED_DESTROYS: usize = 25;
/// Room kept for the truncation notes.
const NOTE_RESERVE: usize = 600;

/// Render a plan result (a plan or a refusal) as a Markdown comment.
pub fn markdown(result: &Result<Plan, Refusal>, opts: MarkdownOptions) -> String {
    let out = match result {
        Ok(p) => plan_markdown(p, opts.max_chars),
        Err(r) => refusal_markdown(r, opts.max_chars),
    };
    debug_assert!(out.len() <= opts.max_chars.max(MIN_OUTPUT));
    out
}

/// Below this limit not even the summary fits: the summary is produced anyway.
const MIN_OUTPUT: usize = 2048;

fn plan_markdown(p: &Plan, max: usize) -> String {
    let mut head = String::new();
    let sum = p.summary();
    let title = if !p.is_complete() {
        if p.steps.is_empty() {
            "k3splan plan: incomplete (no changes found in what could be read)".to_string()
        } else {
            format!(
                "k3splan plan: incomplete; {} to add, {} to change, {} to remove",
                sum.add, sum.change, sum.remove
            )
        }
    } else if p.steps.is_empty() && p.drift.is_empty() {
        "k3splan plan: no changes".to_string()
    } else if p.steps.is_empty() {
        "k3splan plan: no changes planned, but the cluster differs from the configuration"
            .to_string()
    } else {
        format!(
            "k3splan plan: {} to add, {} to change, {} to remove",
            sum.add, sum.change, sum.remove
        )
    };
    let _ = writeln!(head, "### {}\n", esc(&title));
    unknown_block(&mut head, p);
    destroy_warning(&mut head, p);
    quorum_line(&mut head, p);
    if let Some(e) = &p.estimate {
        // Issue 15: the total only (the text and JSON views have one per step).
        let _ = writeln!(head, "**Estimate:** {}.\n", esc(&e.total_words()));
    }
    if p.steps.is_empty() && p.is_complete() && p.drift.is_empty() {
        head.push_str("The cluster matches the configuration.\n\n");
    }

    // The drift and warnings sections, each an item list that can be cut between items.
    // Objects to create or remove ("present", "replace") are the steps themselves; the
    // section lists what differs on objects that exist (replicas, a join URL, a priority,
    // a member's health, a cordon…).
    let drift_rows: Vec<String> = p
        .drift
        .iter()
        .filter(|d| !matches!(d.attribute.as_str(), "present" | "replace"))
        .map(drift_row)
        .collect();
    let warnings: Vec<String> = p
        .warnings
        .iter()
        .map(|w| format!("- {}\n", esc(w)))
        .collect();
    let tail_full: usize = drift_rows.iter().map(String::len).sum::<usize>()
        + warnings.iter().map(String::len).sum::<usize>()
        + 400;
    let room = max.saturating_sub(head.len() + NOTE_RESERVE);
    // The steps come first; the tail gets what it needs, but at most a quarter.
    let tail_budget = tail_full.min(room / 4);
    let steps_budget = room.saturating_sub(tail_budget);

    let mut o = head;
    if !p.steps.is_empty() {
        steps_section(&mut o, &p.steps, steps_budget);
    }
    tail_section(&mut o, &drift_rows, &warnings, tail_budget);
    o
}

/// The steps in one `<details>` block, cut between whole steps to fit `budget`.
fn steps_section(o: &mut String, steps: &[Step], budget: usize) {
    let n = steps.len();
    let open = format!(
        "<details><summary>{} step{}, in this order (click to expand)</summary>\n\n",
        n,
        if n == 1 { "" } else { "s" }
    );
    let close = "</details>\n\n";
    let mut body = String::new();
    let mut left = budget.saturating_sub(open.len() + close.len());
    let mut shortened = Vec::new();
    let mut shown = 0;
    for s in steps {
        let full = step_block(s, true);
        if full.len() <= left {
            left -= full.len();
            body.push_str(&full);
            shown += 1;
            continue;
        }
        let short = step_block(s, false);
        if short.len() <= left {
            left -= short.len();
            body.push_str(&short);
            shortened.push(s.id);
            shown += 1;
            continue;
        }
        break;
    }
    o.push_str(&open);
    o.push_str(&body);
    if !shortened.is_empty() || shown < n {
        let mut note =
            String::from("> **This comment is shortened** to fit the comment size limit:");
        if !shortened.is_empty() {
            let _ = write!(
                note,
                " the diffs of {} step{} are not shown",
                shortened.len(),
                if shortened.len() == 1 { "" } else { "s" }
            );
        }
        if shown < n {
            if !shortened.is_empty() {
                note.push(';');
            }
            let _ = write!(
                note,
                " steps {}–{n} ({} of {n}) are not shown",
                shown + 1,
                n - shown
            );
        }
        note.push_str(". Run `k3splan show PLANFILE` for the whole plan.\n\n");
        o.push_str(&note);
    }
    o.push_str(close);
}

/// One step: heading, reason, operations (with the quorum after each membership change and
/// the notes), file diffs and attribute changes. Without `diffs`, the file contents and the
/// attribute block are replaced by a line count.
fn step_block(s: &Step, diffs: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### {}. {} {} {}\n",
        s.id,
        code(s.action.symbol()),
        code(&s.address.to_string()),
        s.action.verb()
    );
    let _ = writeln!(o, "Because {}.\n", esc(s.why.trim_end_matches('.')));
    for (i, op) in s.operations.iter().enumerate() {
        let _ = writeln!(o, "- {}", esc(&op.describe()));
        for q in s.quorum.iter().filter(|q| q.operation == i) {
            let when = if q.when == "during" {
                "during the restart"
            } else {
                "after"
            };
            let _ = writeln!(o, "  - **quorum {when}:** {}", esc(&q.quorum.to_string()));
        }
    }
    for n in &s.notes {
        let _ = writeln!(o, "- *note:* {}", esc(n));
    }
    o.push('\n');
    let mut has_file = false;
    for op in &s.operations {
        if let Operation::WriteFile {
            node,
            path,
            before,
            after,
            sensitive,
        } = op
        {
            has_file = true;
            let diff = file_diff_plain(before.as_deref(), after);
            let what = if before.is_some() {
                "changes"
            } else {
                "content"
            };
            if diffs {
                let _ = writeln!(o, "{} on {} ({what}):\n", code(path), code(node));
                o.push_str(&fence(&diff, "diff"));
            } else {
                let _ = writeln!(
                    o,
                    "{} on {}: {} diff lines not shown (comment size limit).\n",
                    code(path),
                    code(node),
                    diff.lines().count()
                );
            }
            for sv in sensitive {
                let _ = writeln!(
                    o,
                    "{} is sensitive: written from {} at apply time.\n",
                    code(&sv.key),
                    code(&sv.source)
                );
            }
        }
    }
    if !has_file {
        let attrs = attribute_lines_plain(s);
        if !attrs.is_empty() {
            if diffs {
                o.push_str(&fence(&attrs, "diff"));
            } else {
                let _ = writeln!(
                    o,
                    "{} attribute changes not shown (comment size limit).\n",
                    attrs.lines().count()
                );
            }
        }
    }
    o
}

/// The "Changed outside k3splan" table and the warnings, cut between rows to fit `budget`.
fn tail_section(o: &mut String, drift_rows: &[String], warnings: &[String], budget: usize) {
    let mut left = budget;
    if !drift_rows.is_empty() {
        let head = "### Changed outside k3splan\n\nAttributes of existing objects that differ from the configuration (drift), and whether this plan fixes them. Objects to create or remove are the steps above.\n\n| address | attribute | declared | observed | fixed by this plan |\n|---|---|---|---|---|\n";
        o.push_str(head);
        left = left.saturating_sub(head.len() + 1);
        let mut shown = 0;
        for r in drift_rows {
            if r.len() > left {
                break;
            }
            left -= r.len();
            o.push_str(r);
            shown += 1;
        }
        o.push('\n');
        if shown < drift_rows.len() {
            let _ = writeln!(
                o,
                "> **This comment is shortened:** {} more difference{} not shown (comment size limit). `k3splan plan -json` lists them all.\n",
                drift_rows.len() - shown,
                if drift_rows.len() - shown == 1 {
                    " is"
                } else {
                    "s are"
                }
            );
        }
    }
    if !warnings.is_empty() {
        let head = "### Warnings\n\n";
        o.push_str(head);
        left = left.saturating_sub(head.len() + 1);
        let mut shown = 0;
        for w in warnings {
            if w.len() > left {
                break;
            }
            left -= w.len();
            o.push_str(w);
            shown += 1;
        }
        o.push('\n');
        if shown < warnings.len() {
            let _ = writeln!(
                o,
                "> **This comment is shortened:** {} more warning{} not shown (comment size limit).\n",
                warnings.len() - shown,
                if warnings.len() - shown == 1 {
                    " is"
                } else {
                    "s are"
                }
            );
        }
    }
}

fn drift_row(d: &crate::plan::Drift) -> String {
    let cell = |s: Option<&str>| match s {
        Some(s) => cell(s),
        None => "*(none)*".to_string(),
    };
    let mut fixed = if d.planned { "yes" } else { "no" }.to_string();
    if let Some(n) = &d.note {
        let _ = write!(fixed, ": {}", cell(Some(n)));
    }
    format!(
        "| {} | {} | {} | {} | {} |\n",
        code(&d.address),
        cell(Some(&d.attribute)),
        cell(d.declared.as_deref()),
        cell(d.observed.as_deref()),
        fixed
    )
}

/// The destroy warning: every step that destroys or replaces its target, or whose
/// operations destroy something (a drain, a member removal, a data dir moved aside).
fn destroy_warning(o: &mut String, p: &Plan) {
    let mut targets: Vec<String> = Vec::new();
    for s in p.steps.iter().filter(|s| s.is_destructive()) {
        let a = s.address.to_string();
        if !targets.contains(&a) {
            targets.push(a);
        }
    }
    if targets.is_empty() {
        return;
    }
    let named: Vec<String> = targets
        .iter()
        .take(MAX_NAMED_DESTROYS)
        .map(|a| code(a))
        .collect();
    let more = targets.len().saturating_sub(MAX_NAMED_DESTROYS);
    let _ = write!(
        o,
        "> :warning: **This plan destroys or replaces {} object{}:** {}",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        named.join(", ")
    );
    if more > 0 {
        let _ = write!(o, " and {more} more");
    }
    o.push('.');
    if let Some(s) = p
        .steps
        .iter()
        .find(|s| s.address.type_name() == "etcd_snapshot")
    {
        let _ = write!(o, " An etcd snapshot is taken first (step {}).", s.id);
    }
    o.push_str("\n\n");
}

fn quorum_line(o: &mut String, p: &Plan) {
    match (p.lowest_quorum(), &p.quorum_before) {
        (Some(low), Some(before)) => {
            let _ = writeln!(
                o,
                "**Quorum:** kept after every step; lowest point {low}. Before the plan: {before}.\n"
            );
        }
        (Some(low), None) => {
            let _ = writeln!(
                o,
                "**Quorum:** kept after every step; lowest point {low}.\n"
            );
        }
        (None, Some(q)) => {
            let _ = writeln!(
                o,
                "**Quorum:** no step changes etcd membership or restarts a member; it stays at {q}.\n"
            );
        }
        (None, None) => {}
    }
}

/// Unknown sources: an error block when the plan is incomplete, the accepted ones as a
/// list. Capped: a cluster with thousands of unreachable agents must still fit.
fn unknown_block(o: &mut String, p: &Plan) {
    let open: Vec<_> = p.unaccepted_unknowns().collect();
    if !open.is_empty() {
        let _ = writeln!(
            o,
            "> :x: **The plan is incomplete:** {} declared source{} could not be read, so the cluster may differ there. `k3splan apply` changes nothing until each is readable or accepted with `--allow-unreachable NODE`.",
            open.len(),
            if open.len() == 1 { "" } else { "s" }
        );
        for u in open.iter().take(MAX_NAMED_DESTROYS) {
            let _ = writeln!(
                o,
                "> - {} is {}: {}",
                code(&u.address),
                u.kind,
                esc(&u.reason)
            );
        }
        if open.len() > MAX_NAMED_DESTROYS {
            let _ = writeln!(o, "> - and {} more", open.len() - MAX_NAMED_DESTROYS);
        }
        o.push('\n');
    }
    let accepted: Vec<_> = p.unknown.iter().filter(|u| u.accepted).collect();
    if !accepted.is_empty() {
        o.push_str("Accepted with `--allow-unreachable`:\n\n");
        for u in accepted.iter().take(MAX_NAMED_DESTROYS) {
            let _ = writeln!(
                o,
                "- {} is {}: {}",
                code(&u.address),
                u.kind,
                esc(&u.reason)
            );
        }
        if accepted.len() > MAX_NAMED_DESTROYS {
            let _ = writeln!(o, "- and {} more", accepted.len() - MAX_NAMED_DESTROYS);
        }
        o.push('\n');
    }
}

fn refusal_markdown(r: &Refusal, max: usize) -> String {
    let n = r.violations.len();
    let mut o = format!(
        "### k3splan refuses to plan: {n} safety violation{}\n\n> :x: **Nothing will be changed.** The plan would break a safety rule.\n\n",
        if n == 1 { "" } else { "s" }
    );
    if let Some(q) = &r.quorum_before {
        let _ = writeln!(o, "**etcd now:** {q}.\n");
    }
    let mut left = max.saturating_sub(o.len() + NOTE_RESERVE);
    let mut shown = 0;
    for v in &r.violations {
        let mut item = String::new();
        match &v.step {
            Some(s) => {
                let _ = writeln!(item, "- **{}**  \n  {}", esc(s), esc(&v.message));
            }
            None => {
                let _ = writeln!(item, "- {}", esc(&v.message));
            }
        }
        let _ = writeln!(item, "  - violates {}", esc(&v.rule.label()));
        if let Some(a) = v.advice.as_deref().filter(|a| !a.is_empty()) {
            let _ = writeln!(item, "  - what to do: {}", esc(a));
        }
        if item.len() > left {
            break;
        }
        left -= item.len();
        o.push_str(&item);
        shown += 1;
    }
    o.push('\n');
    if shown < n {
        let _ = writeln!(
            o,
            "> **This comment is shortened:** {} more violation{} not shown (comment size limit).\n",
            n - shown,
            if n - shown == 1 { " is" } else { "s are" }
        );
    }
    o
}

// ------------------------------------------------------------------ escaping

/// Markdown prose: every ASCII punctuation character that could start an element is
/// backslash-escaped (CommonMark allows escaping any ASCII punctuation); line breaks become
/// spaces.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                o.push('\\');
                o.push(c);
            }
            '\n' | '\r' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A table cell: escaped prose (a `|` is escaped, so it cannot end the cell).
fn cell(s: &str) -> String {
    esc(s)
}

/// An inline code span holding `s` verbatim: delimited by one more backtick than the
/// longest run inside, padded when `s` starts or ends with a backtick.
pub(crate) fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// A fenced code block holding `content` verbatim: the fence is longer than any backtick run
/// in the content, so no line of it can close the block early.
pub(crate) fn fence(content: &str, info: &str) -> String {
    let ticks = "`".repeat((longest_run(content, '`') + 1).max(3));
    let mut o = format!("{ticks}{info}\n{content}");
    if !content.ends_with('\n') {
        o.push('\n');
    }
    let _ = writeln!(o, "{ticks}\n");
    o
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outlast_backticks_in_the_content() {
        let f = fence("a\n````\nb\n", "diff");
        assert!(f.starts_with("`````diff\n"), "{f}");
        assert!(f.ends_with("`````\n\n"), "{f}");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }

    #[test]
    fn prose_cannot_open_elements() {
        assert_eq!(esc("<details> *x* |"), "\\<details\\> \\*x\\* \\|");
    }
}
