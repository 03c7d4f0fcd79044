//! Retrying an act while etcd answers "not yet": a `member add` refused as "unhealthy
//! cluster" right after a start, a learner not yet in sync, a new member still joining.
//!
//! # Guarantees
//! - The act runs at least once, even with a zero deadline.
//! - It is not started again once `deadline` has passed since `since`: the wait overruns the
//!   deadline by at most one attempt.
//!
//! # Caveats
//! - An attempt itself is not bounded here (each etcd request has the provider's timeout).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// The deadline passed while the act still answered "not yet".
pub(crate) struct Expired<E> {
    /// The last "not yet".
    pub last: E,
    /// Time since `since`.
    pub waited: Duration,
}

/// Runs `attempt` until it breaks with a result, pausing `pause` after each "not yet"
/// (`Continue`) as long as less than `deadline` has passed since `since`.
pub(crate) async fn retry_until<T, E>(
    since: Instant,
    deadline: Duration,
    pause: Duration,
    mut attempt: impl AsyncFnMut() -> ControlFlow<T, E>,
) -> Result<T, Expired<E>> {
    loop {
        match attempt().await {
            ControlFlow::Break(done) => return Ok(done),
            ControlFlow::Continue(last) if since.elapsed() >= deadline => {
                return Err(Expired {
                    last,
                    waited: since.elapsed(),
                });
            }
            ControlFlow::Continue(_) => tokio::time::sleep(pause).await,
        }
    }
}
