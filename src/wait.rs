//! Blocking helpers that wait for a condition with a deadline.
//!
//! They poll with a backoff (a few yields, then sleeps that double up to 10 ms), so a wait
//! does not burn a core, and they return [`Timeout`] instead of panicking. Prefer waiting on
//! something that signals — a [`monitor`](crate::monitor), a `join`, the event stream —
//! and use these for code that did not wait on anything.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

/// A wait gave up: the condition did not hold within the timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct Timeout {
    /// What was waited for.
    pub what: String,
    /// How long the wait lasted.
    pub waited: Duration,
}

/// Blocks until `condition` returns `true`, for at most `timeout`.
///
/// # Errors
///
/// [`Timeout`] if the condition still does not hold when the time is up.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let flag = Arc::new(AtomicBool::new(false));
/// let f = flag.clone();
/// let t = std::thread::spawn(move || f.store(true, Ordering::SeqCst));
/// steadfast::wait::until(Duration::from_secs(5), || flag.load(Ordering::SeqCst)).unwrap();
/// t.join().unwrap();
/// ```
pub fn until(timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<(), Timeout> {
    until_some(timeout, "a condition", || condition().then_some(()))
}

/// Blocks until `probe` returns `Some(value)`, for at most `timeout`, and returns the value.
///
/// `what` names the awaited thing in the [`Timeout`] error.
///
/// # Errors
///
/// [`Timeout`] if `probe` still returns `None` when the time is up.
pub fn until_some<T>(
    timeout: Duration,
    what: impl fmt::Display,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, Timeout> {
    let start = Instant::now();
    // A timeout too large to represent means no deadline.
    let deadline = start.checked_add(timeout);
    let mut backoff = Backoff::new();
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        let now = Instant::now();
        let left = match deadline {
            Some(deadline) if now >= deadline => {
                return Err(Timeout {
                    what: what.to_string(),
                    waited: now - start,
                })
            }
            Some(deadline) => deadline - now,
            None => Duration::MAX,
        };
        backoff.wait(left);
    }
}

struct Backoff {
    step: u32,
}

impl Backoff {
    const YIELDS: u32 = 4;
    const MAX_SLEEP: Duration = Duration::from_millis(10);

    fn new() -> Backoff {
        Backoff { step: 0 }
    }

    fn wait(&mut self, left: Duration) {
        if self.step < Self::YIELDS {
            thread::yield_now();
        } else {
            let exp = (self.step - Self::YIELDS).min(10);
            let nap = (Duration::from_micros(50) * (1 << exp)).min(Self::MAX_SLEEP);
            thread::sleep(nap.min(left));
        }
        self.step += 1;
    }
}
