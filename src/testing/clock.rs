//! The manual clock: time that moves only when a test says so.
//!
//! A clock is an `Instant` taken when it was made plus how far it has been advanced.
//! A thread that waits for a deadline of this clock registers an alarm (a one-slot
//! channel and the deadline) and waits on the alarm's receiver alongside whatever else
//! it waits for; `advance` rings, in deadline order, every alarm the new time has
//! reached. Registering and advancing take the same lock, so an alarm registered for a
//! deadline that has already passed rings at once: no advance is lost to a race with a
//! thread that is about to wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

/// A clock a test advances by hand, for a whole tree (tokio's paused time, for threads).
///
/// Installed with [`SupervisorBuilder::clock`](crate::SupervisorBuilder::clock) (or the
/// dynamic supervisor's), it is the time of that supervisor and of everything it starts,
/// nested supervisors included: restart intensity windows, backoff delays, server timers
/// and idle timeouts, [`Context::sleep`](crate::Context::sleep) and
/// [`Context::recv_timeout`](crate::Context::recv_timeout), readiness deadlines and
/// shutdown timeouts all read it, and a wait for one of its deadlines ends only when
/// [`advance`](ManualClock::advance) reaches it. Time read outside the tree (a call's
/// timeout on the test's thread, the kit's own expectations) stays real.
///
/// ```
/// use std::time::Duration;
/// use steadfast::testing::{ManualClock, TestTree};
/// use steadfast::{channel, Backoff, ChildSpec, Supervisor};
///
/// let clock = ManualClock::new();
/// let (crash, crashes) = channel::unbounded::<()>();
/// let tree = TestTree::start(Supervisor::builder().clock(&clock).child(
///     ChildSpec::worker("db", move |ctx| {
///         ctx.recv(&crashes)?;
///         Err("connection lost".into())
///     })
///     .backoff(Backoff::fixed(Duration::from_secs(30))),
/// ));
/// crash.send(())?;
/// assert_eq!(tree.expect_backoff("db"), Duration::from_secs(30));
/// tree.expect_quiet(Duration::from_millis(10)); // no restart: the clock has not moved
/// clock.advance(Duration::from_secs(30));     // the backoff is over, at once
/// tree.expect_restart("db");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// One `advance` moves the clock to its new time at once: everything due by then is woken,
/// earliest deadline first, and reads the new time (a timer set while handling one that
/// fired is counted from the new time, not from its predecessor's deadline).
#[derive(Clone)]
pub struct ManualClock(Arc<Shared>);

/// How far a clock can be advanced, in nanoseconds (a century: far from any `Instant`'s
/// limit, far beyond any test).
const CENTURY: u64 = 100 * 365 * 24 * 3600 * 1_000_000_000;

struct Shared {
    base: Instant,
    /// Nanoseconds advanced so far.
    advanced: AtomicU64,
    /// Alarms not rung yet, in no order.
    alarms: Mutex<Vec<Pending>>,
}

struct Pending {
    at: Instant,
    ring: Sender<Instant>,
    /// Alive while someone waits on the alarm (see [`Alarm`]).
    waiter: Weak<()>,
}

/// A registered alarm: `rx` receives the clock's time once it reaches the deadline. The
/// alarm counts as a waiter (see [`ManualClock::waiters`]) until dropped.
pub(crate) struct Alarm {
    pub(crate) rx: Receiver<Instant>,
    pub(crate) waiting: Arc<()>,
}

impl ManualClock {
    /// A clock reading the present moment, standing still until advanced.
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(Shared {
            base: Instant::now(),
            advanced: AtomicU64::new(0),
            alarms: Mutex::new(Vec::new()),
        }))
    }

    /// The clock's time.
    pub fn now(&self) -> Instant {
        self.0.base + Duration::from_nanos(self.0.advanced.load(Ordering::Acquire))
    }

    /// How far the clock has been advanced in all.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.0.advanced.load(Ordering::Acquire))
    }

    /// Moves the clock `d` forward and wakes, earliest first, every wait whose deadline
    /// the new time has reached. (The clock stops a century after it was made:
    /// `Duration::MAX` is as good as forever.)
    pub fn advance(&self, d: Duration) {
        let mut alarms = self.0.alarms.lock();
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let before = self.0.advanced.load(Ordering::Acquire);
        self.0
            .advanced
            .store(before.saturating_add(nanos).min(CENTURY), Ordering::Release);
        let now = self.now();
        let mut due: Vec<Pending> = Vec::new();
        alarms.retain(|p| {
            if p.waiter.strong_count() == 0 {
                return false;
            }
            if p.at <= now {
                due.push(Pending {
                    at: p.at,
                    ring: p.ring.clone(),
                    waiter: Weak::new(),
                });
                return false;
            }
            true
        });
        due.sort_by_key(|p| p.at);
        for p in due {
            let _ = p.ring.try_send(now);
        }
    }

    /// Advances the clock to the earliest deadline someone waits for, waking that wait
    /// (and any other due by then); how far it moved, or `None` if nobody waits.
    pub fn advance_to_next(&self) -> Option<Duration> {
        let next = {
            let alarms = self.0.alarms.lock();
            alarms
                .iter()
                .filter(|p| p.waiter.strong_count() > 0)
                .map(|p| p.at)
                .min()?
        };
        let d = next.saturating_duration_since(self.now());
        self.advance(d);
        Some(d)
    }

    /// How many waits for a deadline of this clock are in progress (a thread blocked
    /// until an advance): a test that must advance only once something waits — a
    /// readiness deadline being waited for on another thread — waits for this first.
    pub fn waiters(&self) -> usize {
        self.0
            .alarms
            .lock()
            .iter()
            .filter(|p| p.waiter.strong_count() > 0)
            .count()
    }

    /// Waits (in real time, up to `timeout`) until at least `n` waits for a deadline of
    /// this clock are in progress.
    ///
    /// # Errors
    ///
    /// [`Timeout`](crate::wait::Timeout) if fewer were waiting all along.
    pub fn wait_for_waiters(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), crate::wait::Timeout> {
        crate::wait::until(timeout, || self.waiters() >= n)
    }

    /// An alarm for `at`: rung at once if the clock has reached it already.
    pub(crate) fn alarm(&self, at: Instant) -> Alarm {
        let (ring, rx) = bounded(1);
        let waiting = Arc::new(());
        let mut alarms = self.0.alarms.lock();
        let now = self.now();
        if at <= now {
            let _ = ring.try_send(now);
        } else {
            alarms.retain(|p| p.waiter.strong_count() > 0);
            alarms.push(Pending {
                at,
                ring,
                waiter: Arc::downgrade(&waiting),
            });
        }
        Alarm { rx, waiting }
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .field("waiters", &self.waiters())
            .finish()
    }
}

impl PartialEq for ManualClock {
    fn eq(&self, other: &ManualClock) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
