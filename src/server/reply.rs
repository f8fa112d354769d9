//! A call's reply: the token the server answers through ([`ReplyTo`]) and the caller's
//! side of it (`Waiter`), one slot between them; and which mailbox a thread serves
//! (`SERVING_HERE`), which decides a self-call and an orphaned token.
//!
//! The protocol: the caller makes the slot, posts the token with its request, and waits
//! on the slot — spinning for a few microseconds first (a server that answers at once is
//! answered without either thread sleeping), then parked until its deadline. Whoever
//! holds the token fills the slot once: with the reply, or, if the token is dropped
//! unanswered, with why (`NoReply`; `Exited` after a crash; `Stopped` around a stop).
//! A caller that parks says so first (`PARKED`), so that a reply to a caller still
//! spinning costs no wake-up; a caller that gave up says so too (`GONE`), and a later
//! reply is dropped.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::hint;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::server::error::CallError;

/// How long a waiting caller (and an idle server, for its next message) spins before it
/// parks: longer than a short handler takes, so back-to-back calls never sleep, short
/// enough that a waiting thread burns little (it parks after this, whatever comes).
pub(super) const SPIN: Duration = Duration::from_micros(20);

/// The caller waits, spinning: a reply needs no wake-up.
const WAITING: u8 = 0;
/// The caller waits, parked: a reply must unpark it.
const PARKED: u8 = 1;
const FILLED: u8 = 2;
/// The caller gave up: a reply is dropped.
const GONE: u8 = 3;

struct Slot<R> {
    state: AtomicU8,
    value: Mutex<Option<Result<R, CallError>>>,
    caller: Thread,
}

/// The caller's reply token (OTP's `From`): answer the call through it with
/// [`send`](ReplyTo::send), now or later, from this thread or another.
///
/// Dropping it unanswered fails the caller at once with
/// [`CallError::NoReply`] (with [`CallError::Exited`] when the server crashed holding it,
/// [`CallError::Stopped`] when it stopped holding it).
#[must_use = "a reply token dropped unanswered fails its caller"]
pub struct ReplyTo<R: Send + 'static> {
    slot: Option<Arc<Slot<R>>>,
}

impl<R: Send + 'static> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("caller_waiting", &self.is_waiting())
            .finish()
    }
}

impl<R: Send + 'static> ReplyTo<R> {
    /// Answers the call. A caller that has given up (its timeout passed) drops it.
    pub fn send(mut self, reply: R) {
        if let Some(slot) = self.slot.take() {
            fill(&slot, Ok(reply));
        }
    }

    /// Whether the caller still waits (it has not timed out).
    pub fn is_waiting(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|s| matches!(s.state.load(Ordering::Acquire), WAITING | PARKED))
    }

    /// Fails the call with `why` (a request refused by a stop, say).
    pub(super) fn fail(mut self, why: CallError) {
        if let Some(slot) = self.slot.take() {
            fill(&slot, Err(why));
        }
    }
}

impl<R: Send + 'static> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if thread::panicking() && on_a_server_thread() {
            // The server is crashing: the reason is known once the panic is caught.
            ORPHANS.with(|o| {
                o.borrow_mut().push(Box::new(move |why: &CallError| {
                    fill(&slot, Err(why.clone()));
                }))
            });
            return;
        }
        let why = ENDING
            .with(|e| e.borrow().clone())
            .unwrap_or(CallError::NoReply);
        fill(&slot, Err(why));
    }
}

fn fill<R>(slot: &Slot<R>, answer: Result<R, CallError>) {
    if slot.state.load(Ordering::Acquire) == GONE {
        return;
    }
    *slot.value.lock() = Some(answer);
    // Release: the value is visible to whoever sees FILLED. A caller that gave up at the
    // same moment has set GONE: its reply stays in the slot, dropped with it.
    match slot.state.swap(FILLED, Ordering::AcqRel) {
        PARKED => slot.caller.unpark(),
        GONE => slot.state.store(GONE, Ordering::Release),
        _ => {}
    }
}

/// The caller's side: waits for the slot to be filled.
pub(super) struct Waiter<R> {
    slot: Arc<Slot<R>>,
}

/// A new call's reply token and its caller's waiter (the calling thread waits).
pub(super) fn reply_slot<R: Send + 'static>() -> (ReplyTo<R>, Waiter<R>) {
    let slot = Arc::new(Slot {
        state: AtomicU8::new(WAITING),
        value: Mutex::new(None),
        caller: thread::current(),
    });
    (
        ReplyTo {
            slot: Some(slot.clone()),
        },
        Waiter { slot },
    )
}

/// How long a caller waits for its reply.
pub(super) enum Limit {
    /// Until this instant (`None`: for ever); the timeout it came from, to report.
    Deadline(Option<Instant>, Duration),
    /// For this long, from about now (read once the spin is over).
    Timeout(Duration),
}

impl<R> Waiter<R> {
    /// Waits until the reply comes or the limit passes: spinning for a moment first, the
    /// clock read only every 64 spins.
    pub(super) fn wait(self, limit: Limit) -> Result<R, CallError> {
        let mut spun_until: Option<Instant> = None;
        let mut spins = 0u32;
        while self.slot.state.load(Ordering::Acquire) == WAITING {
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                let now = Instant::now();
                if now >= *spun_until.get_or_insert(now + SPIN) {
                    let (deadline, timeout) = match limit {
                        Limit::Deadline(at, timeout) => (at, timeout),
                        Limit::Timeout(timeout) => (now.checked_add(timeout), timeout),
                    };
                    return self.park(deadline, timeout);
                }
            }
            hint::spin_loop();
        }
        self.take()
    }

    fn park(self, deadline: Option<Instant>, timeout: Duration) -> Result<R, CallError> {
        let state = &self.slot.state;
        if state
            .compare_exchange(WAITING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return self.take(); // filled meanwhile
        }
        while state.load(Ordering::Acquire) == PARKED {
            match deadline {
                None => thread::park(),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        // Give up, unless the reply lands at this very moment.
                        let gone = state.compare_exchange(
                            PARKED,
                            GONE,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        if gone.is_ok() {
                            return Err(CallError::Timeout(timeout));
                        }
                        break;
                    }
                    thread::park_timeout(at - now);
                }
            }
        }
        self.take()
    }

    fn take(self) -> Result<R, CallError> {
        self.slot
            .value
            .lock()
            .take()
            .unwrap_or(Err(CallError::NoReply))
    }
}

/// A token dropped while its server's thread unwound: fails its caller with the crash.
type Orphan = Box<dyn FnOnce(&CallError)>;

thread_local! {
    /// Why tokens dropped on this thread now fail their callers: set by a server's loop
    /// while it drops its state after a crash or a stop.
    static ENDING: RefCell<Option<CallError>> = const { RefCell::new(None) };
    /// Tokens dropped while this server's thread unwinds, failed once the panic is known.
    static ORPHANS: RefCell<Vec<Orphan>> = const { RefCell::new(Vec::new()) };
}

fn on_a_server_thread() -> bool {
    SERVING_HERE.with(|s| s.get() != 0)
}

thread_local! {
    /// The mailbox this thread serves (its address; 0: none), from the start of `init`
    /// to the end of `terminate`: a call to it from here could only deadlock, and a token
    /// dropped here while unwinding is its crash's to fail.
    pub(super) static SERVING_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving a mailbox until dropped.
pub(super) struct ServingHere(usize);

impl ServingHere {
    pub(super) fn enter(address: usize) -> ServingHere {
        ServingHere(SERVING_HERE.with(|s| s.replace(address)))
    }
}

impl Drop for ServingHere {
    fn drop(&mut self) {
        SERVING_HERE.with(|s| s.set(self.0));
    }
}

/// Fails the tokens dropped while this thread unwound (their server crashed with `why`).
pub(super) fn fail_orphans(why: &CallError) {
    let orphans = ORPHANS.with(|o| std::mem::take(&mut *o.borrow_mut()));
    for orphan in orphans {
        orphan(why);
    }
}

/// Runs `f` (which drops a server's state) with tokens dropped meanwhile failing `why`.
pub(super) fn ending<T>(why: CallError, f: impl FnOnce() -> T) -> T {
    let before = ENDING.with(|e| e.replace(Some(why)));
    let out = f();
    ENDING.with(|e| *e.borrow_mut() = before);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_sent_from_another_thread_wakes_the_parked_caller() {
        let (token, waiter) = reply_slot::<u32>();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5)); // past the spin: the caller parks
            token.send(7);
        });
        assert_eq!(waiter.wait(Limit::Timeout(Duration::MAX)), Ok(7));
        t.join().unwrap();
    }

    #[test]
    fn a_dropped_token_fails_its_caller_at_once_with_no_reply() {
        let (token, waiter) = reply_slot::<u32>();
        drop(token);
        let hour = Duration::from_secs(3600);
        assert_eq!(waiter.wait(Limit::Timeout(hour)), Err(CallError::NoReply));
    }

    #[test]
    fn a_reply_after_the_caller_gave_up_is_dropped_and_the_token_says_so() {
        let (token, waiter) = reply_slot::<u32>();
        let past = Instant::now();
        assert_eq!(
            waiter.wait(Limit::Deadline(Some(past), Duration::ZERO)),
            Err(CallError::Timeout(Duration::ZERO))
        );
        assert!(!token.is_waiting());
        token.send(1);
    }
}
