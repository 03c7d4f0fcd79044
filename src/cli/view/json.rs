//! The JSON views: `plan --json` (one document, the schema of docs/plan-format.md) and
//! `apply --json`, a line-delimited event stream (docs/cli.md, "apply --json").
//!
//! Guarantees of the stream: one JSON object per line, each with an `"event"` key; first
//! `{"event": "plan", "plan": <the plan --json document>}`, then `note`s and the engine's
//! [`ApplyEvent`]s as the engine serializes them (`step_started`, `heartbeat`, …), and last
//! exactly one of `apply_complete` or `error`. Nothing else is written on stdout.

use std::path::Path;

use k3splan_engine::apply::{ApplyEvent, ApplyEvents};
use serde_json::{Value, json};

use super::{ApplyView, Out, PlanView, write_out};
use crate::cli::CliError;
use crate::cli::error::UsageError;
use crate::plan::{Plan, Refusal, Summary};
use crate::render;

/// `plan --json` and `show --json`: the plan document and nothing else.
pub struct JsonPlanView {
    pub out: Out,
}

impl PlanView for JsonPlanView {
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError> {
        write_out(&mut self.out, render::json(result).as_bytes())
    }
    fn saved(&mut self, _path: &Path) -> Result<(), CliError> {
        Ok(())
    }
    fn not_saved(&mut self) -> Result<(), CliError> {
        Ok(())
    }
}

/// `apply --json`: one JSON object per line.
pub struct JsonApplyView {
    pub out: Out,
}

impl JsonApplyView {
    fn object(&mut self, v: &Value) -> Result<(), CliError> {
        let mut line = serde_json::to_string(v).expect("JSON values serialize");
        line.push('\n');
        write_out(&mut self.out, line.as_bytes())
    }
}

impl ApplyEvents for JsonApplyView {
    fn event(&mut self, e: &ApplyEvent) {
        let v = serde_json::to_value(e).expect("apply events serialize");
        let _ = self.object(&v);
    }
}

impl ApplyView for JsonApplyView {
    fn plan(&mut self, result: &Result<Plan, Refusal>) -> Result<(), CliError> {
        self.object(&json!({"event": "plan", "plan": render::json_value(result)}))
    }
    /// The stream always starts with the plan.
    fn saved_plan(&mut self, plan: &Plan) -> Result<(), CliError> {
        ApplyView::plan(self, &Ok(plan.clone()))
    }
    fn note(&mut self, text: &str) -> Result<(), CliError> {
        self.object(&json!({"event": "note", "message": text.trim_end()}))
    }
    fn approve(&mut self) -> Result<bool, CliError> {
        Err(UsageError::JsonNeedsApproval.into())
    }
    fn cancelled(&mut self) -> Result<(), CliError> {
        Ok(())
    }
    fn starting(&mut self) -> Result<(), CliError> {
        Ok(())
    }
    fn complete(&mut self, s: &Summary, applied: bool, serial: u64) -> Result<(), CliError> {
        self.object(&json!({
            "event": "apply_complete",
            "applied": applied,
            "add": s.add,
            "change": s.change,
            "remove": s.remove,
            "state_serial": serial,
        }))
    }
    fn error(&mut self, message: &str) {
        let _ = self.object(&json!({"event": "error", "message": message}));
    }
}
