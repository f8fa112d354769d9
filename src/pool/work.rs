//! The worker side of a pool: the queue, the in-flight slots and the counts the handle
//! and the workers share, and the worker loop that keeps a job across its worker's
//! crashes (the module docs of `pool` explain the protocol).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, MutexGuard};

use crate::child::context::Context;
use crate::child::panic_hook::catch;
use crate::error::{ChildError, RecvError};
use crate::exit::ExitReason;
use crate::hash::Padded;
use crate::pool::outcome::{DeadLetter, PoolDown, PoolStats};

/// A job's function: runs on a worker's thread, with the job by reference (so that the
/// job outlives a panic in it).
pub(super) type Work<J> = dyn Fn(&J, &Context) -> Result<(), ChildError> + Send + Sync;

thread_local! {
    /// The attempt the job running on this thread is at (0: no job runs here).
    static ATTEMPT: Cell<u32> = const { Cell::new(0) };
}

/// A worker incarnation's hold on `ATTEMPT`: what was there before is put back when it
/// ends, so that no code after it on this thread sees an attempt.
struct Attempt(u32);

impl Attempt {
    fn enter(attempt: u32) -> Attempt {
        Attempt(ATTEMPT.with(|a| a.replace(attempt)))
    }

    /// The attempt of the job about to run on this thread.
    fn set(attempt: u32) {
        ATTEMPT.with(|a| a.set(attempt));
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        ATTEMPT.with(|a| a.set(self.0));
    }
}

/// Which attempt at its job the pool job running on this thread is: `Some(1)` on the
/// first try, `Some(2)` on the first retry (after an `Err`, a panic or its worker's
/// crash), and so on up to `max_attempts`; `None` outside a pool's workers. As
/// rayon's `current_thread_index`, it reads the calling thread, so a job need not count
/// its own tries to log or change course on a retry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::pool::{current_attempt, Pool};
///
/// let (tries, seen) = steadfast::channel::unbounded();
/// let pool = Pool::builder(1, move |_: &(), _ctx| {
///     let attempt = current_attempt().expect("inside a job");
///     tries.send(attempt)?;
///     if attempt < 3 {
///         return Err(format!("attempt {attempt} failed").into());
///     }
///     Ok(())
/// })
/// .max_attempts(3)
/// .start()?;
/// pool.submit(())?;
/// pool.drain(Duration::from_secs(10))?;
/// assert_eq!(seen.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
/// assert_eq!(current_attempt(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current_attempt() -> Option<u32> {
    Some(ATTEMPT.with(Cell::get)).filter(|&a| a > 0)
}

/// The most a pool's queue may take: it is allocated whole, up front.
pub(super) const MAX_QUEUE_BYTES: usize = 1 << 30;

/// A job and the attempts made at it.
pub(super) struct Entry<J> {
    pub(super) job: J,
    pub(super) attempts: u32,
}

/// A worker's in-flight slot: the job it is running, kept across its crashes.
pub(super) type Slot<J> = Arc<Mutex<Option<Entry<J>>>>;

/// What the pool's handle and its workers share.
pub(super) struct Shared<J> {
    pub(super) queue_tx: Sender<Entry<J>>,
    pub(super) queue_rx: Receiver<Entry<J>>,
    pub(super) work: Arc<Work<J>>,
    pub(super) max_attempts: u32,
    pub(super) dead_letters: Option<Sender<DeadLetter<J>>>,
    pub(super) slots: Vec<Slot<J>>,
    /// Set by `shutdown`, and when the pool goes down: no job is accepted after it.
    pub(super) closed: AtomicBool,
    /// Why the workers' supervisor ended, if it did other than by `shutdown` (set
    /// before `closed`).
    pub(super) down: Mutex<Option<PoolDown>>,
    /// In the user's tree: why the workers' supervisor last gave up (its parent then
    /// decides; this becomes the reason if it is not restarted).
    pub(super) gave_up: Mutex<Option<String>>,
    /// Submitters between their check of `closed` and the end of their send. This and
    /// `submitted` are written by submitters, `done` by workers: each on a cache line of
    /// its own, or each job would cost a cache miss on the other side.
    pub(super) submitting: Padded<AtomicUsize>,
    pub(super) submitted: Padded<AtomicU64>,
    pub(super) done: Padded<AtomicU64>,
    pub(super) dead: AtomicU64,
    pub(super) handed_back: AtomicU64,
    /// Its name, or "pool": telemetry's label.
    #[cfg(feature = "metrics")]
    pub(super) label: String,
    /// Held to read and set the levels, so that the last to set them read them last.
    #[cfg(feature = "metrics")]
    pub(super) levels: Mutex<()>,
}

impl<J> Shared<J> {
    /// The workers will not run again: refuse jobs from now on, and say why.
    pub(super) fn go_down(&self, reason: String) {
        log::error!("pool: down, its workers will not run again: {reason}");
        self.down.lock().get_or_insert(PoolDown { reason });
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(super) fn down(&self) -> Option<PoolDown> {
        self.down.lock().clone()
    }

    /// A job settled: the queue and in-flight levels set. Workers settling at once
    /// each set them; read and set under one lock, the last set is never of a reading
    /// older than another's (which would leave a stale level at rest).
    #[cfg(feature = "metrics")]
    fn report_levels(&self) {
        let _levels = self.levels.lock();
        let settled = self.done.load(Ordering::Relaxed) + self.dead.load(Ordering::Relaxed);
        let queued = self.queue_rx.len();
        let submitted = self.submitted.load(Ordering::Relaxed);
        let in_flight = submitted.saturating_sub(settled + queued as u64);
        crate::telemetry::metric::pool_levels(&self.label, queued, in_flight);
    }
}

impl<J: Send + 'static> Shared<J> {
    /// A worker incarnation: first the job a crashed incarnation left in the slot, then
    /// jobs from the queue until the stop.
    pub(super) fn worker(&self, ctx: &Context, slot: &Slot<J>) -> Result<(), ChildError> {
        // Marks this thread as a pool worker's for this incarnation; each job sets its
        // attempt (one thread-local write a job), and the mark goes when it ends.
        let _attempt = Attempt::enter(0);
        let mut held = slot.lock();
        let retry = held.is_some() && {
            let reason = ctx.previous_exit().cloned();
            self.failed(&mut held, reason.unwrap_or(ExitReason::Killed))
        };
        if retry {
            self.run(ctx, held);
        } else {
            // Dead-lettered, or nothing there: unlocked before the loop locks it again.
            drop(held);
        }
        loop {
            let entry = match ctx.recv(&self.queue_rx) {
                Ok(entry) => entry,
                Err(RecvError::Stopped | RecvError::Disconnected) => return Ok(()),
            };
            let mut held = slot.lock();
            *held = Some(entry);
            self.run(ctx, held);
        }
    }

    /// Runs the job in the slot until it is done, dead-lettered, or interrupted by a stop
    /// (then it stays in the slot, for `shutdown` to hand back). The slot stays locked
    /// while the job runs (nobody else looks at it then). A panic in the job is caught
    /// here and is a failed attempt; one outside it unwinds out of here, unlocking the
    /// slot with the job still inside, for the next incarnation.
    pub(super) fn run(&self, ctx: &Context, mut held: MutexGuard<'_, Option<Entry<J>>>) {
        loop {
            let outcome = match held.as_ref() {
                Some(entry) => {
                    Attempt::set(entry.attempts.saturating_add(1));
                    catch(ctx.id(), ctx.pid(), || (self.work)(&entry.job, ctx))
                }
                None => return,
            };
            let reason = match outcome {
                Ok(Ok(())) => {
                    // Out of the slot, then counted: never run again. Dropped last,
                    // outside the lock: a job whose `Drop` panics is done all the same.
                    let finished = held.take();
                    // Counted before it is settled: once `drain` sees it, so do metrics.
                    #[cfg(feature = "metrics")]
                    crate::telemetry::metric::pool_job(&self.label, "done");
                    self.done.fetch_add(1, Ordering::AcqRel);
                    #[cfg(feature = "metrics")]
                    self.report_levels();
                    drop(held);
                    drop(finished);
                    return;
                }
                // Interrupted by a stop: only if the stop was raised, whatever the error.
                Ok(Err(_)) if ctx.is_stopping() => return,
                Ok(Err(e)) => ExitReason::failed(e),
                Err(panicked) => panicked,
            };
            if !self.failed(&mut held, reason) {
                return;
            }
        }
    }

    /// Counts a failed attempt at the job in the slot; `true` if it is to be tried
    /// again, else it has been dead-lettered.
    pub(super) fn failed(&self, slot: &mut Option<Entry<J>>, reason: ExitReason) -> bool {
        let Some(entry) = slot.as_mut() else {
            return false;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        if entry.attempts < self.max_attempts {
            #[cfg(feature = "metrics")]
            crate::telemetry::metric::pool_job(&self.label, "retried");
            return true;
        }
        let Entry { job, attempts } = slot.take().expect("checked above");
        log::warn!("pool: a job failed {attempts} times and is dead-lettered: {reason}");
        #[cfg(feature = "metrics")]
        crate::telemetry::metric::pool_job(&self.label, "dead_lettered");
        self.dead.fetch_add(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        self.report_levels();
        if let Some(sink) = &self.dead_letters {
            let _ = sink.send(DeadLetter {
                job,
                attempts,
                reason,
            });
        }
        false
    }

    /// The counts `Pool::stats` reports.
    pub(super) fn stats(&self) -> PoolStats {
        let queued = self.queue_rx.len();
        PoolStats {
            submitted: self.submitted.load(Ordering::Acquire),
            done: self.done.load(Ordering::Acquire),
            dead_lettered: self.dead.load(Ordering::Acquire),
            handed_back: self.handed_back.load(Ordering::Acquire),
            queued,
            // Whatever is pending and not queued is in a worker's slot.
            in_flight: self.pending().saturating_sub(queued as u64),
        }
    }

    /// Not done, not dead-lettered: in the queue or in the slots. Quiet moments only.
    pub(super) fn pending(&self) -> u64 {
        let settled = self.done.load(Ordering::Acquire)
            + self.dead.load(Ordering::Acquire)
            + self.handed_back.load(Ordering::Acquire);
        self.submitted
            .load(Ordering::Acquire)
            .saturating_sub(settled)
    }
}
