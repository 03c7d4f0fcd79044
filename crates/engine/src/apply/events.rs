//! What an apply reports while it runs, as data: [`run_plan`](super::run_plan) emits
//! [`ApplyEvent`]s to an [`ApplyEvents`] sink, and the command line renders them (human
//! lines or a JSON event stream). The engine writes no text of its own.
//!
//! Guarantees: every step emits `StepStarted`, then one `OperationDone` per operation and
//! `StepDone`, or an `OperationFailed` and `ApplyStopped`; while an operation runs longer
//! than the heartbeat interval, `Heartbeat` follows every interval, so a 300 s drain is
//! never silent. Events are emitted after the journal write they describe (a
//! `StepStarted` is on disk as `started` when the sink sees it).

use serde::Serialize;

/// One thing an apply did or is doing. Serialized with `"event": "<snake_case name>"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplyEvent {
    /// Step `index` (1-based) of `total` starts.
    StepStarted {
        index: usize,
        total: usize,
        /// The action's symbol (`+`, `~`, `-`, `-/+`, `<=`).
        symbol: String,
        address: String,
    },
    /// An operation of step `step` is still running after `elapsed_s` seconds.
    Heartbeat {
        step: usize,
        operation: String,
        elapsed_s: f64,
    },
    /// An operation finished; `note` is what the executor said of it (`None`: "done").
    OperationDone {
        step: usize,
        operation: String,
        note: Option<String>,
        elapsed_s: f64,
    },
    /// An operation failed; the apply stops after this step.
    OperationFailed {
        step: usize,
        operation: String,
        error: String,
    },
    /// Step `index` is done and journaled.
    StepDone { index: usize, elapsed_s: f64 },
    /// The apply stopped at step `index` of `total`; `not_done` lists `"ID. ADDRESS"` of the
    /// steps left (the failed one first).
    ApplyStopped {
        index: usize,
        total: usize,
        not_done: Vec<String>,
    },
}

/// Where an apply's events go.
pub trait ApplyEvents: Send {
    fn event(&mut self, e: &ApplyEvent);
}

/// Collects events (tests, and callers that render afterwards).
#[derive(Debug, Default)]
pub struct EventLog(pub Vec<ApplyEvent>);

impl ApplyEvents for EventLog {
    fn event(&mut self, e: &ApplyEvent) {
        self.0.push(e.clone());
    }
}
