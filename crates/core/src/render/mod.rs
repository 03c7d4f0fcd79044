//! Rendering plans: text like Terraform ([`text`]), JSON ([`json`]), and the
//! `--detailed-exitcode` value ([`detailed_exitcode`]).
//!
//! Rendering is pure (strings in, strings out). Secrets never reach the output: file contents
//! in a plan are already masked by the planner (`(sensitive)`), and the renderers print
//! only what the plan holds.

mod graph;
mod json;
mod markdown;
mod text;

pub use graph::{GraphOptions, dot};
pub use json::{FORMAT_VERSION, json, json_value};
pub use markdown::{GITHUB_COMMENT_LIMIT, GITLAB_COMMENT_LIMIT, MarkdownOptions, markdown};
pub use text::{TextOptions, text};

use crate::plan::{Plan, Refusal};

/// The exit code of `plan --detailed-exitcode`: 0 = no changes and no drift, 1 = error
/// (including a refused plan), 2 = changes to apply or drift reported.
pub fn detailed_exitcode(result: &Result<Plan, Refusal>) -> i32 {
    match result {
        Err(_) => 1,
        // An incomplete plan is an error, never "no changes" (an unread host may differ).
        Ok(p) if !p.is_complete() => 1,
        Ok(p) if p.steps.is_empty() && p.drift.is_empty() => 0,
        Ok(_) => 2,
    }
}

/// Whether colour should be used: not when `--no-color` was given or `NO_COLOR` is set
/// (to anything non-empty). The caller passes the environment value (no I/O here).
pub fn use_color(no_color_flag: bool, no_color_env: Option<&str>) -> bool {
    !no_color_flag && no_color_env.is_none_or(str::is_empty)
}
