//! Waiting for a condition: the one poll/deadline loop of the engine.
//!
//! Every wait of the engine (a learner's promotion, a Node turning Ready, a rescheduled
//! volume, the final verification, an etcd election, a state lock) is a [`Wait`]: look,
//! and while the answer is [`Check::Pending`] look again every `every` until `timeout`.
//!
//! Guarantees:
//! - the condition is checked at least once, even with a zero timeout, and once more at
//!   the deadline (the last sleep is shortened to end there), so a condition that holds by
//!   the deadline is never reported as timed out;
//! - on timeout the caller gets the last observation ([`TimedOut::last`]), to say what was
//!   seen instead of only that time ran out;
//! - [`Wait::until`] keeps `tokio::time`'s clock and sleeps (a paused test clock applies);
//!   [`Wait::until_blocking`] keeps the system clock and sleeps the calling thread, for
//!   synchronous callers (the local state lock).
//!
//! Caveat: the timeout bounds when the last check *starts*; a check that itself blocks (a
//! network request) may end after it.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one look at the condition found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T, O> {
    /// The wait is over, with this result.
    Ready(T),
    /// Not yet; this is what was seen.
    Pending(O),
}

/// The condition did not hold within the timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut<O> {
    /// What the last look saw.
    pub last: O,
    /// How long was waited.
    pub waited: Duration,
}

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub timeout: Duration,
    pub every: Duration,
}

impl Wait {
    /// Looks every `every` for up to `timeout`.
    pub fn new(timeout: Duration, every: Duration) -> Self {
        Wait { timeout, every }
    }

    /// Calls `check` until it is [`Check::Ready`] or the timeout has passed.
    pub async fn until<T, O, F, Fut>(&self, mut check: F) -> Result<T, TimedOut<O>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Check<T, O>>,
    {
        let clock = Clock::start(*self, || tokio::time::Instant::now().into_std());
        loop {
            match check().await {
                Check::Ready(v) => return Ok(v),
                Check::Pending(o) => match clock.next_sleep() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(clock.timed_out(o)),
                },
            }
        }
    }

    /// [`Wait::until`] for synchronous code: sleeps the calling thread between looks.
    pub fn until_blocking<T, O>(
        &self,
        mut check: impl FnMut() -> Check<T, O>,
    ) -> Result<T, TimedOut<O>> {
        let clock = Clock::start(*self, Instant::now);
        loop {
            match check() {
                Check::Ready(v) => return Ok(v),
                Check::Pending(o) => match clock.next_sleep() {
                    Some(d) => std::thread::sleep(d),
                    None => return Err(clock.timed_out(o)),
                },
            }
        }
    }
}

/// The deadline arithmetic both loops share.
struct Clock {
    now: fn() -> Instant,
    start: Instant,
    wait: Wait,
}

impl Clock {
    fn start(wait: Wait, now: fn() -> Instant) -> Self {
        Clock {
            now,
            start: now(),
            wait,
        }
    }

    fn elapsed(&self) -> Duration {
        (self.now)().saturating_duration_since(self.start)
    }

    /// How long to sleep before the next look; `None` when the deadline has passed.
    fn next_sleep(&self) -> Option<Duration> {
        let left = self.wait.timeout.checked_sub(self.elapsed())?;
        (!left.is_zero()).then(|| self.wait.every.min(left))
    }

    fn timed_out<O>(&self, last: O) -> TimedOut<O> {
        TimedOut {
            last,
            waited: self.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_at_once_needs_no_sleep() {
        let w = Wait::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(w.until(|| async { Check::<_, ()>::Ready(3) }).await, Ok(3));
    }

    #[test]
    fn a_zero_timeout_still_looks_once_and_returns_the_last_observation() {
        let mut n = 0;
        let r = Wait::new(Duration::ZERO, Duration::from_millis(1)).until_blocking(|| {
            n += 1;
            Check::<(), _>::Pending(n)
        });
        assert_eq!(r.unwrap_err().last, 1);
    }

    #[test]
    fn looks_until_ready_within_the_timeout() {
        let mut n = 0;
        let r = Wait::new(Duration::from_secs(5), Duration::from_millis(1)).until_blocking(|| {
            n += 1;
            if n == 3 {
                Check::Ready(n)
            } else {
                Check::Pending(())
            }
        });
        assert_eq!(r, Ok(3));
    }

    #[test]
    fn gives_up_after_the_timeout_with_the_last_look() {
        let t0 = Instant::now();
        let mut n = 0;
        let r =
            Wait::new(Duration::from_millis(50), Duration::from_millis(10)).until_blocking(|| {
                n += 1;
                Check::<(), _>::Pending(n)
            });
        let e = r.unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(e.last, n);
        assert!(n >= 3, "{n}");
    }
}
