//! The JSON rendering (`plan --json`), modelled on `terraform show -json`.

use serde_json::{Value, json};

use crate::plan::estimate::Estimate;
use crate::plan::{Plan, Refusal};

/// Version of the JSON format; bumped on incompatible changes.
pub const FORMAT_VERSION: &str = "1.0";

/// The JSON document as a value. See `docs/plan-format.md` for the schema.
pub fn json_value(result: &Result<Plan, Refusal>) -> Value {
    match result {
        Ok(p) => plan_value(p),
        Err(r) => refusal_value(r),
    }
}

fn plan_value(p: &Plan) -> Value {
    let snapshot_step = p
        .steps
        .iter()
        .find(|s| matches!(s.address, crate::plan::Address::EtcdSnapshot))
        .map(|s| s.id);
    let mut v = json!({
        "format_version": FORMAT_VERSION,
        "complete": p.is_complete(),
        "errored": false,
        "unknown": p.unknown,
        "resource_changes": resource_changes(p),
        "safety": {
            "quorum_before": p.quorum_before,
            "quorum": quorum(p),
            "snapshot_step": snapshot_step,
            "refusals": [],
        },
        "drift": p.drift,
        "warnings": p.warnings,
        "summary": p.summary(),
    });
    // Issue 15: only when an earlier apply recorded durations (the document is unchanged
    // otherwise).
    if let Some(e) = &p.estimate {
        v["estimate"] = estimate_value(e);
    }
    v
}

/// Milliseconds as seconds, to a tenth.
fn seconds(ms: u64) -> Value {
    json!((ms as f64 / 100.0).round() / 10.0)
}

fn estimate_value(e: &Estimate) -> Value {
    json!({
        "total_seconds": seconds(e.total_ms),
        "complete": e.complete,
        "text": e.total_words(),
        "steps": e.steps.iter().map(|s| json!({
            "step": s.step,
            "seconds": s.ms.map(seconds),
            "missing": s.missing,
            "text": s.words(),
        })).collect::<Vec<_>>(),
    })
}

fn resource_changes(p: &Plan) -> Vec<Value> {
    p.steps
        .iter()
        .map(|s| {
            json!({
                "step": s.id,
                "address": s.address.to_string(),
                "type": s.address.type_name(),
                "name": s.address.name(),
                "change": {
                    "actions": s.action.json_actions(),
                    "before": s.before,
                    "after": s.after,
                },
                "action_reason": s.reason.as_str(),
                "reason_detail": s.why,
                "operations": s.operations,
                "depends_on": s.depends_on,
                "notes": s.notes,
            })
        })
        .collect()
}

/// The quorum after (or during) each operation that changes it.
fn quorum(p: &Plan) -> Vec<Value> {
    p.steps
        .iter()
        .flat_map(|s| {
            s.quorum.iter().map(move |q| {
                json!({
                    "step": s.id,
                    "address": s.address.to_string(),
                    "operation": s.operations[q.operation].describe(),
                    "when": q.when,
                    "voters": q.quorum.voters,
                    "healthy_voters": q.quorum.healthy_voters,
                    "learners": q.quorum.learners,
                    "needed": q.quorum.needed,
                    "ok": q.quorum.ok(),
                })
            })
        })
        .collect()
}

fn refusal_value(r: &Refusal) -> Value {
    json!({
        "format_version": FORMAT_VERSION,
        "complete": false,
        "errored": true,
        "resource_changes": [],
        "safety": {
            "quorum_before": r.quorum_before,
            "quorum": [],
            "snapshot_step": null,
            "refusals": r.violations.iter().map(|v| json!({
                "rule": v.rule,
                "rule_number": v.rule.number(),
                "rule_title": v.rule.title(),
                "step": v.step,
                "message": v.message,
                "advice": v.advice,
            })).collect::<Vec<_>>(),
        },
        "unknown": [],
        "drift": [],
        "warnings": [],
        "summary": {"add": 0, "change": 0, "remove": 0},
    })
}

/// The JSON document, pretty-printed, with a trailing newline.
pub fn json(result: &Result<Plan, Refusal>) -> String {
    let mut s = serde_json::to_string_pretty(&json_value(result)).expect("plan JSON serializes");
    s.push('\n');
    s
}
