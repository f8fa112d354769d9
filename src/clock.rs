//! The time a tree's deadlines are read in: real time, or — with the test kit — the
//! manual clock a test installed for the tree (`testing::ManualClock`).
//!
//! The clock is a thread's: the runner gives every thread it spawns the clock of the
//! thread that spawned it; a supervisor whose builder was given a clock installs it for
//! its start (which may run on its caller's thread) and its loop; a dynamic supervisor's
//! start of a child on a caller's thread installs its supervisor's clock while it runs.
//! Everything that reads a tree's time — intensity windows, backoff, readiness and
//! shutdown deadlines, server timers, `Context::sleep` — reads it here.
//!
//! A timed wait is a wait on an [`Alarm`] too: with the real clock its receiver never
//! fires and its timeout is the wait; with a manual clock its receiver fires when the
//! clock is advanced to the deadline, and there is no timeout. Without the `testing`
//! feature everything here is the plain real-time call.

use std::time::{Duration, Instant};

use crossbeam_channel::{never, Receiver, RecvTimeoutError};

/// A thread's clock, to carry to another thread or keep for later (see the module docs).
#[derive(Clone, Default)]
pub(crate) struct Clock {
    #[cfg(feature = "testing")]
    manual: Option<crate::testing::ManualClock>,
}

#[cfg(feature = "testing")]
thread_local! {
    static MANUAL: std::cell::RefCell<Option<crate::testing::ManualClock>> =
        const { std::cell::RefCell::new(None) };
}

/// What [`Clock::install`] returns: the thread's previous clock comes back when dropped.
#[must_use]
pub(crate) struct Installed {
    #[cfg(feature = "testing")]
    previous: Option<Option<crate::testing::ManualClock>>,
}

impl Clock {
    /// This thread's clock.
    #[inline]
    pub(crate) fn current() -> Clock {
        Clock {
            #[cfg(feature = "testing")]
            manual: MANUAL.with(|m| m.borrow().clone()),
        }
    }

    /// A manual clock (the test kit's).
    #[cfg(feature = "testing")]
    pub(crate) fn manual(clock: crate::testing::ManualClock) -> Clock {
        Clock {
            manual: Some(clock),
        }
    }

    /// The manual clock this is, if it is one.
    #[cfg(feature = "testing")]
    pub(crate) fn as_manual(&self) -> Option<&crate::testing::ManualClock> {
        self.manual.as_ref()
    }

    /// Whether this is a manual clock.
    pub(crate) fn is_manual(&self) -> bool {
        #[cfg(feature = "testing")]
        return self.manual.is_some();
        #[cfg(not(feature = "testing"))]
        false
    }

    /// Makes this the thread's clock until the guard is dropped. (The real clock
    /// installs nothing: a thread keeps the clock it has.)
    #[inline]
    pub(crate) fn install(&self) -> Installed {
        #[cfg(feature = "testing")]
        if let Some(manual) = &self.manual {
            let previous = MANUAL.with(|m| m.borrow_mut().replace(manual.clone()));
            return Installed {
                previous: Some(previous),
            };
        }
        Installed {
            #[cfg(feature = "testing")]
            previous: None,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        #[cfg(feature = "testing")]
        if let Some(previous) = self.previous.take() {
            MANUAL.with(|m| *m.borrow_mut() = previous);
        }
    }
}

/// The time on this thread's clock.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "testing")]
    if let Some(now) = MANUAL.with(|m| m.borrow().as_ref().map(|c| c.now())) {
        return now;
    }
    Instant::now()
}

/// Whether this thread's clock is a manual one.
#[inline]
pub(crate) fn is_manual() -> bool {
    #[cfg(feature = "testing")]
    return MANUAL.with(|m| m.borrow().is_some());
    #[cfg(not(feature = "testing"))]
    false
}

/// A deadline to wait for in a `select!`: add `recv(alarm.rx)` and `default(alarm.timeout)`.
pub(crate) struct Alarm {
    pub(crate) rx: Receiver<Instant>,
    pub(crate) timeout: Duration,
    /// Keeps the wait counted among the manual clock's waiters.
    #[cfg(feature = "testing")]
    _waiting: Option<std::sync::Arc<()>>,
}

/// An alarm for `at` on this thread's clock.
pub(crate) fn alarm(at: Instant) -> Alarm {
    #[cfg(feature = "testing")]
    if let Some(manual) = MANUAL.with(|m| m.borrow().clone()) {
        let alarm = manual.alarm(at);
        return Alarm {
            rx: alarm.rx,
            timeout: Duration::MAX,
            _waiting: Some(alarm.waiting),
        };
    }
    Alarm {
        rx: never(),
        timeout: at.saturating_duration_since(Instant::now()),
        #[cfg(feature = "testing")]
        _waiting: None,
    }
}

/// `rx.recv_timeout(timeout)`, the timeout counted on this thread's clock (a timeout too
/// long to represent is no timeout).
pub(crate) fn recv_timeout<T>(rx: &Receiver<T>, timeout: Duration) -> Result<T, RecvTimeoutError> {
    match now().checked_add(timeout) {
        Some(at) => recv_deadline(rx, at),
        None => rx.recv().map_err(RecvTimeoutError::from),
    }
}

/// `rx.recv_deadline(at)`, on this thread's clock.
pub(crate) fn recv_deadline<T>(rx: &Receiver<T>, at: Instant) -> Result<T, RecvTimeoutError> {
    if is_manual() {
        let alarm = alarm(at);
        return crossbeam_channel::select! {
            recv(rx) -> msg => msg.map_err(RecvTimeoutError::from),
            recv(alarm.rx) -> _ => rx.try_recv().map_err(|e| match e {
                crossbeam_channel::TryRecvError::Empty => RecvTimeoutError::Timeout,
                crossbeam_channel::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
        };
    }
    rx.recv_deadline(at)
}
