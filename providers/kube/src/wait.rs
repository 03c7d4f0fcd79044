//! Deadlines and polling for the act functions' waits: evictions a disruption budget refuses,
//! evicted pods that have not gone yet, a deleted claim.
//!
//! # Guarantees
//! - Every round or check runs at least once, even with a zero deadline.
//! - A wait never starts a pause the deadline has no room for ([`in_rounds`]), or stops at the
//!   first check after the deadline ([`poll_until`]): it overruns by at most one round.
//!
//! # Caveats
//! - A round itself is not bounded here: each request has the client's read timeout.

use std::time::{Duration, Instant};

/// A time budget that starts when it is made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    start: Instant,
    budget: Duration,
}

impl Deadline {
    /// A budget of `budget` from now.
    pub(crate) fn after(budget: Duration) -> Self {
        Self {
            start: Instant::now(),
            budget,
        }
    }

    /// Whether the budget is spent.
    pub(crate) fn passed(&self) -> bool {
        self.start.elapsed() > self.budget
    }

    /// Whether a pause of `pause` from now still ends within the budget.
    pub(crate) fn has_room_for(&self, pause: Duration) -> bool {
        self.start.elapsed() + pause <= self.budget
    }
}

/// Runs `round` over `items` until it leaves none: between rounds it pauses `pause`, as long as
/// the deadline has room for `room`. Returns what the last round left.
pub(crate) async fn in_rounds<T, E>(
    deadline: &Deadline,
    room: Duration,
    pause: Duration,
    mut items: Vec<T>,
    mut round: impl AsyncFnMut(Vec<T>) -> Result<Vec<T>, E>,
) -> Result<Vec<T>, E> {
    loop {
        items = round(items).await?;
        if items.is_empty() || !deadline.has_room_for(room) {
            return Ok(items);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Checks `done` every `pause` until it says so (`Ok(true)`) or the deadline has passed
/// (`Ok(false)`).
pub(crate) async fn poll_until<E>(
    deadline: &Deadline,
    pause: Duration,
    mut done: impl AsyncFnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    loop {
        if done().await? {
            return Ok(true);
        }
        if deadline.passed() {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
    }
}
