//! Job pools: N workers over one job queue, under a supervisor, losing nothing.
//!
//! A [`Pool`] runs a job function over jobs submitted from any thread. Its promise, the
//! pool invariant: every job submitted is, in the end, exactly one of **done** (its
//! function returned `Ok` — and it is never run again after that), **dead-lettered**
//! (it failed `max_attempts` times, by returning `Err` or by crashing its worker; it is
//! handed to the dead-letter sink with the last reason), or **handed back** by
//! [`shutdown`](Pool::shutdown) (never started, or interrupted by the shutdown).
//!
//! ```
//! use std::time::Duration;
//! use steadfast::pool::Pool;
//!
//! let (results, done) = steadfast::channel::unbounded();
//! let pool = Pool::builder(4, move |n: &u64, _ctx| {
//!     results.send(n * n)?;
//!     Ok(())
//! })
//! .start()?;
//! for n in 0..100 {
//!     pool.submit(n)?;
//! }
//! pool.drain(Duration::from_secs(10))?;
//! assert_eq!(done.try_iter().count(), 100);
//! assert!(pool.shutdown().is_empty()); // nothing left to hand back
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How a job survives its worker
//!
//! Each worker owns an in-flight slot that outlives its incarnations. It moves a job
//! from the queue into the slot, runs the function on it by reference, and empties the
//! slot once the function returned `Ok`. A function that returns `Err` or panics counts
//! a failed attempt (the panic is caught on the worker's thread and reported once, as
//! any supervised panic): the job is run again, or dead-lettered once it has had
//! `max_attempts`. A crashing job is what a pool exists to contain, so it does not
//! crash its worker. If the worker itself crashes around a job (a job whose `Drop`
//! panics, say), its supervisor restarts it; the new incarnation finds the job in its
//! slot, counts the failed attempt (with the crash's reason, from
//! [`Context::previous_exit`](crate::Context::previous_exit)) and runs it again.
//!
//! Whether a job was interrupted by a stop is whether its worker's stop was raised,
//! never what its error looks like: a job that returns [`Stopped`](crate::Stopped)
//! unasked has failed an attempt like any other error.
//!
//! ## A pool in your tree
//!
//! [`PoolBuilder::start`] gives the pool a supervisor of its own, owned by the returned
//! [`Pool`]. [`PoolBuilder::child_spec`] makes the workers' supervisor a child of yours
//! instead: its giving up escalates to your supervisor, which restarts it as any nested
//! supervisor, and the `Pool` handle — the queue, the slots and the counts live outside
//! any incarnation — keeps working across those restarts, as a server's mailbox does.
//!
//! ## A pool that is down
//!
//! When no worker will run again — a pool of its own whose supervisor gave up (its
//! [intensity](PoolBuilder::intensity) is exceeded), or a pool in your tree whose spec is
//! gone (your tree gave up on it, or ended) — `submit` and `try_submit` fail at once with
//! [`SubmitError::Down`] and `drain` with [`DrainError::Down`], each saying why, and
//! [`Pool::is_alive`] is `false`. Nothing is lost: `shutdown` hands back what was queued
//! or in a worker's slot.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};
use parking_lot::{Mutex, MutexGuard};

use crate::child::context::Context;
use crate::child::panic_hook::catch;
use crate::child::spec::ChildSpec;
use crate::error::{ChildError, RecvError, StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::hash::Padded;
use crate::supervisor::event::Event;
use crate::supervisor::{Supervisor, SupervisorBuilder};
use crate::wait::{self, Timeout};

/// A job's function: runs on a worker's thread, with the job by reference (so that the
/// job outlives a panic in it).
type Work<J> = dyn Fn(&J, &Context) -> Result<(), ChildError> + Send + Sync;

/// A job that failed `max_attempts` times, with why its last attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter<J> {
    /// The job.
    pub job: J,
    /// How many times it was tried.
    pub attempts: u32,
    /// How its last attempt ended: `Failed` (the function returned `Err`), `Panicked`
    /// (it panicked), or how its worker crashed around it.
    pub reason: ExitReason,
}

/// Counts of a pool's jobs. `submitted == done + dead_lettered + handed_back + queued +
/// in_flight` at every quiet moment (each count is read on its own, so while jobs move
/// the sum can be off by those moving).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Jobs accepted by `submit` / `try_submit`.
    pub submitted: u64,
    /// Jobs whose function returned `Ok`.
    pub done: u64,
    /// Jobs given up on after `max_attempts`.
    pub dead_lettered: u64,
    /// Jobs returned by `shutdown`.
    pub handed_back: u64,
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// Jobs taken by a worker and not yet settled (running, or waiting in a crashed
    /// worker's slot for its restart).
    pub in_flight: u64,
}

/// Why a pool can no longer run jobs: its workers' supervisor gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pool is down: {reason}")]
pub struct PoolDown {
    /// Why its workers' supervisor ended (for instance, its restart intensity was
    /// exceeded).
    pub reason: String,
}

/// Why [`Pool::drain`] returned before every job settled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// Jobs were still pending when the time was up.
    #[error(transparent)]
    Timeout(#[from] Timeout),
    /// The pool is down: the pending jobs will not run (`shutdown` hands them back).
    #[error(transparent)]
    Down(#[from] PoolDown),
}

/// Why a job was not accepted; the job comes back with it.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<J> {
    /// The queue is full (`try_submit` only; `submit` waits).
    #[error("the pool's queue is full")]
    Full(J),
    /// The pool is shut down (or shutting down).
    #[error("the pool is shut down")]
    Closed(J),
    /// The pool is down: its workers will not run again (see [`PoolDown`]).
    #[error("{1}")]
    Down(J, PoolDown),
}

impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full(_) => f.write_str("Full(..)"),
            SubmitError::Closed(_) => f.write_str("Closed(..)"),
            SubmitError::Down(_, why) => write!(f, "Down(.., {why:?})"),
        }
    }
}

impl<J> SubmitError<J> {
    /// The job that was not accepted.
    pub fn into_job(self) -> J {
        match self {
            SubmitError::Full(job) | SubmitError::Closed(job) | SubmitError::Down(job, _) => job,
        }
    }
}

thread_local! {
    /// The attempt the job running on this thread is at (0: no job runs here).
    static ATTEMPT: Cell<u32> = const { Cell::new(0) };
}

/// Marks the attempt of the job about to run on this thread, until dropped.
struct Attempt(u32);

impl Attempt {
    fn enter(attempt: u32) -> Attempt {
        Attempt(ATTEMPT.with(|a| a.replace(attempt)))
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        ATTEMPT.with(|a| a.set(self.0));
    }
}

/// Which attempt at its job the pool job running on this thread is: `Some(1)` on the
/// first try, `Some(2)` on the first retry (after an `Err`, a panic or its worker's
/// crash), and so on up to `max_attempts`; `None` when called outside a pool job. As
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
const MAX_QUEUE_BYTES: usize = 1 << 30;

/// A job and the attempts made at it.
struct Entry<J> {
    job: J,
    attempts: u32,
}

/// A worker's in-flight slot: the job it is running, kept across its crashes.
type Slot<J> = Arc<Mutex<Option<Entry<J>>>>;

/// What the pool's handle and its workers share.
struct Shared<J> {
    queue_tx: Sender<Entry<J>>,
    queue_rx: Receiver<Entry<J>>,
    work: Arc<Work<J>>,
    max_attempts: u32,
    dead_letters: Option<Sender<DeadLetter<J>>>,
    slots: Vec<Slot<J>>,
    /// Set by `shutdown`, and when the pool goes down: no job is accepted after it.
    closed: AtomicBool,
    /// Why the workers' supervisor ended, if it did other than by `shutdown` (set
    /// before `closed`).
    down: Mutex<Option<PoolDown>>,
    /// In the user's tree: why the workers' supervisor last gave up (its parent then
    /// decides; this becomes the reason if it is not restarted).
    gave_up: Mutex<Option<String>>,
    /// Submitters between their check of `closed` and the end of their send. This and
    /// `submitted` are written by submitters, `done` by workers: each on a cache line of
    /// its own, or each job would cost a cache miss on the other side.
    submitting: Padded<AtomicUsize>,
    submitted: Padded<AtomicU64>,
    done: Padded<AtomicU64>,
    dead: AtomicU64,
    handed_back: AtomicU64,
}

impl<J> Shared<J> {
    /// The workers will not run again: refuse jobs from now on, and say why.
    fn go_down(&self, reason: String) {
        log::error!("pool: down, its workers will not run again: {reason}");
        self.down.lock().get_or_insert(PoolDown { reason });
        self.closed.store(true, Ordering::SeqCst);
    }

    fn down(&self) -> Option<PoolDown> {
        self.down.lock().clone()
    }
}

impl<J: Send + 'static> Shared<J> {
    /// A worker incarnation: first the job a crashed incarnation left in the slot, then
    /// jobs from the queue until the stop.
    fn worker(&self, ctx: &Context, slot: &Slot<J>) -> Result<(), ChildError> {
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
    fn run(&self, ctx: &Context, mut held: MutexGuard<'_, Option<Entry<J>>>) {
        loop {
            let outcome = match held.as_ref() {
                Some(entry) => {
                    let _attempt = Attempt::enter(entry.attempts.saturating_add(1));
                    catch(ctx.id(), ctx.pid(), || (self.work)(&entry.job, ctx))
                }
                None => return,
            };
            let reason = match outcome {
                Ok(Ok(())) => {
                    // Out of the slot, then counted: never run again. Dropped last,
                    // outside the lock: a job whose `Drop` panics is done all the same.
                    let finished = held.take();
                    self.done.fetch_add(1, Ordering::AcqRel);
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
    fn failed(&self, slot: &mut Option<Entry<J>>, reason: ExitReason) -> bool {
        let Some(entry) = slot.as_mut() else {
            return false;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        if entry.attempts < self.max_attempts {
            return true;
        }
        let Entry { job, attempts } = slot.take().expect("checked above");
        log::warn!("pool: a job failed {attempts} times and is dead-lettered: {reason}");
        self.dead.fetch_add(1, Ordering::AcqRel);
        if let Some(sink) = &self.dead_letters {
            let _ = sink.send(DeadLetter {
                job,
                attempts,
                reason,
            });
        }
        false
    }

    /// Not done, not dead-lettered: in the queue or in the slots. Quiet moments only.
    fn pending(&self) -> u64 {
        let settled = self.done.load(Ordering::Acquire)
            + self.dead.load(Ordering::Acquire)
            + self.handed_back.load(Ordering::Acquire);
        self.submitted
            .load(Ordering::Acquire)
            .saturating_sub(settled)
    }
}

/// Settings for a [`Pool`]; from [`Pool::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct PoolBuilder<J> {
    workers: usize,
    work: Arc<Work<J>>,
    capacity: usize,
    max_attempts: u32,
    dead_letters: Option<Sender<DeadLetter<J>>>,
    intensity: (u32, Duration),
    name: Option<String>,
}

/// A builder clones without cloning its job function (it is shared), so one set of
/// settings can make several pools.
impl<J> Clone for PoolBuilder<J> {
    fn clone(&self) -> Self {
        PoolBuilder {
            workers: self.workers,
            work: self.work.clone(),
            capacity: self.capacity,
            max_attempts: self.max_attempts,
            dead_letters: self.dead_letters.clone(),
            intensity: self.intensity,
            name: self.name.clone(),
        }
    }
}

impl<J> fmt::Debug for PoolBuilder<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("max_attempts", &self.max_attempts)
            .field("dead_letters", &self.dead_letters.is_some())
            .field("intensity", &self.intensity)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<J: Send + 'static> PoolBuilder<J> {
    /// The queue's capacity: `submit` waits while it is full (default 1,024). The queue
    /// is allocated up front, so it must fit in 1 GiB (some 44 million jobs of one word).
    pub fn capacity(mut self, jobs: usize) -> Self {
        self.capacity = jobs;
        self
    }

    /// How many times a job is tried before it is dead-lettered (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Where dead-lettered jobs go (default: logged and dropped, still counted).
    pub fn dead_letters(mut self, sink: Sender<DeadLetter<J>>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// The workers' supervisor's restart intensity (default 100 in 1 s). It counts
    /// crashes of the workers themselves, not of jobs: a job that panics or returns `Err`
    /// is a failed attempt, caught on the worker's thread, and never restarts its worker
    /// (however often jobs crash, the pool stays up). A worker crashes only around a job
    /// (a job whose `Drop` panics, say); more such crashes than this within the period
    /// take the pool down (see [`PoolDown`]).
    pub fn intensity(mut self, restarts: u32, period: Duration) -> Self {
        self.intensity = (restarts, period);
        self
    }

    /// Names the workers' supervisor (and their threads).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts the workers, under a supervisor of the pool's own that the returned
    /// [`Pool`] owns (dropping it stops them). For a pool in your own tree, see
    /// [`child_spec`](PoolBuilder::child_spec).
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidSpec`] for zero workers, more workers than the
    /// [thread cap](crate::max_threads), a zero capacity or one whose queue would not fit
    /// in 1 GiB, or zero attempts;
    /// whatever starting the supervisor returns.
    pub fn start(self) -> Result<Pool<J>, StartError> {
        self.check()?;
        let shared = self.shared();
        let sup = self.supervisor(&shared, GiveUp::Down).start()?;
        Ok(Pool::new(shared, Some(sup)))
    }

    /// The pool as a child of your own supervisor, with child id `id`: its workers'
    /// supervisor is that child (a giving-up escalates to your supervisor, as any
    /// nested supervisor's), and the returned [`Pool`] keeps working across its
    /// restarts — what is queued stays queued, as a server's mailbox does, and is
    /// served by the next incarnation. The pool is down (see [`PoolDown`]) only once
    /// its spec is gone: your tree gave up on it, or ended.
    ///
    /// Your tree owns the workers: [`Pool::shutdown`] of such a pool stops taking jobs
    /// and hands back what is queued, and the jobs running finish; the workers stop
    /// with the tree.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::pool::Pool;
    /// use steadfast::Supervisor;
    ///
    /// let (pool_spec, pool) = Pool::builder(2, |n: &u64, _ctx| {
    ///     let _ = n * n;
    ///     Ok(())
    /// })
    /// .child_spec("squares")?;
    /// let app = Supervisor::builder().child(pool_spec).start()?;
    /// pool.submit(7)?;
    /// pool.drain(Duration::from_secs(10))?;
    /// assert_eq!(pool.stats().done, 1);
    /// # drop(app);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidSpec`] for the settings [`start`](PoolBuilder::start)
    /// refuses.
    pub fn child_spec(self, id: impl Into<String>) -> Result<(ChildSpec, Pool<J>), StartError> {
        self.check()?;
        let shared = self.shared();
        let tree = Arc::new(InTree {
            shared: Arc::downgrade(&shared),
        });
        let sup = self.supervisor(&shared, GiveUp::Escalate(tree));
        Ok((ChildSpec::supervisor(id, sup), Pool::new(shared, None)))
    }

    /// The settings `start` and `child_spec` refuse.
    fn check(&self) -> Result<(), StartError> {
        let invalid = |why: &str| Err(StartError::InvalidSpec(format!("pool: {why}")));
        if self.workers == 0 {
            return invalid("it needs at least one worker");
        }
        let cap = crate::max_threads();
        if self.workers > cap {
            return invalid(&format!(
                "{} workers are more than the thread cap allows ({cap}; see set_max_threads)",
                self.workers
            ));
        }
        if self.capacity == 0 {
            return invalid("its queue capacity must not be zero");
        }
        // The queue is allocated whole when the pool starts.
        let slot = std::mem::size_of::<Entry<J>>() + std::mem::size_of::<usize>();
        if self
            .capacity
            .checked_mul(slot)
            .map_or(true, |b| b > MAX_QUEUE_BYTES)
        {
            return invalid(&format!(
                "its queue capacity ({} jobs of {slot} bytes) must fit in {} MiB: the \
                 queue is allocated up front",
                self.capacity,
                MAX_QUEUE_BYTES >> 20
            ));
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        Ok(())
    }

    /// What the handle and the workers share: the queue, the slots, the counts.
    fn shared(&self) -> Arc<Shared<J>> {
        let (queue_tx, queue_rx) = bounded(self.capacity);
        Arc::new(Shared {
            queue_tx,
            queue_rx,
            work: self.work.clone(),
            max_attempts: self.max_attempts,
            dead_letters: self.dead_letters.clone(),
            slots: (0..self.workers).map(|_| Slot::default()).collect(),
            closed: AtomicBool::new(false),
            down: Mutex::new(None),
            gave_up: Mutex::new(None),
            submitting: Padded(AtomicUsize::new(0)),
            submitted: Padded(AtomicU64::new(0)),
            done: Padded(AtomicU64::new(0)),
            dead: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
        })
    }

    /// The workers' supervisor, and what its giving up means (see `GiveUp`).
    fn supervisor(&self, shared: &Arc<Shared<J>>, give_up: GiveUp<J>) -> SupervisorBuilder {
        let workers = shared.slots.iter().enumerate().map(|(i, slot)| {
            let (shared, slot) = (shared.clone(), slot.clone());
            ChildSpec::worker(format!("worker-{i}"), move |ctx| shared.worker(ctx, &slot))
        });
        let watched = Arc::downgrade(shared);
        let escalates = matches!(give_up, GiveUp::Escalate(_));
        let mut sup = SupervisorBuilder::default()
            .intensity(self.intensity.0, self.intensity.1)
            .children(workers)
            .on_event(move |event| {
                let Event::IntensityExceeded { restarts, period } = event else {
                    return;
                };
                let Some(shared) = watched.upgrade() else {
                    return;
                };
                let why = SupervisorError::IntensityExceeded {
                    restarts: *restarts,
                    period: *period,
                };
                match &give_up {
                    GiveUp::Down => shared.go_down(why.to_string()),
                    // Escalated: the parent decides; down only once the spec is gone.
                    GiveUp::Escalate(_tree) => *shared.gave_up.lock() = Some(why.to_string()),
                }
            });
        if escalates {
            // A new incarnation: an earlier give-up is history, not the reason it ends.
            let started = Arc::downgrade(shared);
            sup = sup.on_start(move |_| {
                if let Some(shared) = started.upgrade() {
                    shared.gave_up.lock().take();
                }
                Ok(())
            });
        }
        if let Some(name) = &self.name {
            sup = sup.name(name.clone());
        }
        sup
    }
}

/// What a pool's workers' supervisor giving up means.
enum GiveUp<J> {
    /// A pool of its own (`start`): nobody restarts its supervisor; the pool is down.
    Down,
    /// A pool in the user's tree (`child_spec`): the parent decides. Held by the spec
    /// (in its `on_event`), so that the pool goes down when the last spec is gone.
    Escalate(#[allow(dead_code)] Arc<InTree<J>>),
}

/// A pool in the user's tree: down once nothing can start its workers again.
struct InTree<J> {
    shared: Weak<Shared<J>>,
}

impl<J> Drop for InTree<J> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let last = shared.gave_up.lock().take();
            let reason = match last {
                Some(why) => format!("its supervisor gave up ({why}) and will not be restarted"),
                None => "its supervisor is gone and will not be restarted".to_owned(),
            };
            shared.go_down(reason);
        }
    }
}

/// A running job pool; see the [module docs](crate::pool). Cheap to clone; dropping the
/// last clone shuts it down (the jobs it would hand back are dropped; a pool in your
/// tree only stops taking jobs: its workers stop with the tree).
pub struct Pool<J> {
    owner: Arc<Owner<J>>,
}

impl<J> Clone for Pool<J> {
    fn clone(&self) -> Self {
        Pool {
            owner: self.owner.clone(),
        }
    }
}

/// What the last clone of a `Pool` lets go of.
struct Owner<J> {
    /// The workers' supervisor, for a pool of its own (`start`); `None` in the user's
    /// tree (`child_spec`), or once shut down.
    sup: Mutex<Option<Supervisor>>,
    shared: Arc<Shared<J>>,
    /// In the user's tree: the tree owns the workers.
    in_tree: bool,
}

impl<J> fmt::Debug for Pool<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.owner.shared;
        f.debug_struct("Pool")
            .field("workers", &shared.slots.len())
            .field("queued", &shared.queue_rx.len())
            .field("in_tree", &self.owner.in_tree)
            .finish_non_exhaustive()
    }
}

impl<J: Send + 'static> Pool<J> {
    fn new(shared: Arc<Shared<J>>, sup: Option<Supervisor>) -> Pool<J> {
        Pool {
            owner: Arc::new(Owner {
                in_tree: sup.is_none(),
                sup: Mutex::new(sup),
                shared,
            }),
        }
    }

    /// Settings for a pool of `workers` running `work` on each job.
    pub fn builder<F>(workers: usize, work: F) -> PoolBuilder<J>
    where
        F: Fn(&J, &Context) -> Result<(), ChildError> + Send + Sync + 'static,
    {
        PoolBuilder {
            workers,
            work: Arc::new(work),
            capacity: 1024,
            max_attempts: 3,
            dead_letters: None,
            intensity: (100, Duration::from_secs(1)),
            name: None,
        }
    }

    /// Queues a job, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] (with the job) once the pool is shut down — also for a
    /// submit that was waiting for room when the shutdown began; [`SubmitError::Down`]
    /// once its workers will not run again (also for one waiting for room).
    pub fn submit(&self, job: J) -> Result<(), SubmitError<J>> {
        self.enqueue(job, true)
    }

    /// Queues a job if there is room now.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`], [`SubmitError::Closed`] or [`SubmitError::Down`], with the
    /// job.
    pub fn try_submit(&self, job: J) -> Result<(), SubmitError<J>> {
        self.enqueue(job, false)
    }

    /// The submit protocol against a shutdown: announce (`submitting`), then check
    /// `closed`; the shutdown sets `closed`, then waits for no announced submitter
    /// before it drains the queue. Both sides use `SeqCst`, so either the submitter sees
    /// `closed`, or the shutdown sees it announced and waits for its send.
    fn enqueue(&self, job: J, wait: bool) -> Result<(), SubmitError<J>> {
        let shared = &self.owner.shared;
        shared.submitting.fetch_add(1, Ordering::SeqCst);
        let result = self.send(job, wait);
        if result.is_ok() {
            shared.submitted.fetch_add(1, Ordering::AcqRel);
        }
        shared.submitting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn send(&self, job: J, wait: bool) -> Result<(), SubmitError<J>> {
        let shared = &self.owner.shared;
        let mut entry = Entry { job, attempts: 0 };
        loop {
            if shared.closed.load(Ordering::SeqCst) {
                return Err(match shared.down() {
                    Some(why) => SubmitError::Down(entry.job, why),
                    None => SubmitError::Closed(entry.job),
                });
            }
            entry = match shared.queue_tx.try_send(entry) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(e) | TrySendError::Disconnected(e)) if !wait => {
                    return Err(SubmitError::Full(e.job))
                }
                Err(TrySendError::Full(e) | TrySendError::Disconnected(e)) => e,
            };
            // Wakes now and then to see a shutdown that began while it waited.
            match shared
                .queue_tx
                .send_timeout(entry, Duration::from_millis(10))
            {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(e) | SendTimeoutError::Disconnected(e)) => entry = e,
            }
        }
    }

    /// Waits until every job submitted so far is done or dead-lettered.
    ///
    /// # Errors
    ///
    /// [`DrainError::Timeout`] if jobs are still pending when the time is up;
    /// [`DrainError::Down`], at once, if jobs are pending and the pool is down (they
    /// will not run: `shutdown` hands them back).
    pub fn drain(&self, timeout: Duration) -> Result<(), DrainError> {
        let shared = &self.owner.shared;
        let settled = wait::until_some(timeout, "the pool to drain", || {
            if shared.pending() == 0 {
                return Some(Ok(()));
            }
            shared.down().map(Err)
        })?;
        Ok(settled?)
    }

    /// Whether the workers run: `false` once the pool is shut down, or down (then
    /// [`down_reason`](Pool::down_reason) says why).
    pub fn is_alive(&self) -> bool {
        !self.owner.shared.closed.load(Ordering::Acquire)
    }

    /// Why the pool is down, if it is: its workers' supervisor gave up.
    pub fn down_reason(&self) -> Option<PoolDown> {
        self.owner.shared.down()
    }

    /// The pool's counts.
    pub fn stats(&self) -> PoolStats {
        let s = &self.owner.shared;
        let queued = s.queue_rx.len();
        PoolStats {
            submitted: s.submitted.load(Ordering::Acquire),
            done: s.done.load(Ordering::Acquire),
            dead_lettered: s.dead.load(Ordering::Acquire),
            handed_back: s.handed_back.load(Ordering::Acquire),
            queued,
            // Whatever is pending and not queued is in a worker's slot.
            in_flight: s.pending().saturating_sub(queued as u64),
        }
    }

    /// Stops taking jobs, stops the workers (a job being run finishes first, within the
    /// workers' shutdown timeout), and hands back every job not done nor dead-lettered:
    /// those never started, and those a stop interrupted. Calling it again returns
    /// nothing more.
    ///
    /// A job whose worker had to be abandoned (still running past its shutdown timeout)
    /// is neither handed back nor counted; the log says so.
    ///
    /// A pool in your tree ([`PoolBuilder::child_spec`]) stops taking jobs and hands back
    /// what is queued (and what a crashed worker left for its restart); the jobs running
    /// finish and are counted, and the workers stop with your tree.
    pub fn shutdown(&self) -> Vec<J> {
        let shared = &self.owner.shared;
        shared.closed.store(true, Ordering::SeqCst);
        while shared.submitting.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        let sup = self.owner.sup.lock().take();
        if let Some(sup) = sup {
            match sup.shutdown() {
                Ok(()) | Err(SupervisorError::IntensityExceeded { .. }) => {}
                Err(e) => log::warn!("pool: its supervisor ended with: {e}"),
            }
        }
        let mut back: Vec<J> = shared.queue_rx.try_iter().map(|e| e.job).collect();
        let in_tree = self.owner.in_tree;
        for slot in &shared.slots {
            match slot.try_lock() {
                Some(mut entry) => back.extend(entry.take().map(|e| e.job)),
                // Its worker runs on (the tree owns it): the job settles as usual.
                None if in_tree => {}
                None => log::warn!("pool: a job is still running on an abandoned worker"),
            }
        }
        shared
            .handed_back
            .fetch_add(back.len() as u64, Ordering::AcqRel);
        back
    }
}

impl<J> Drop for Owner<J> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Dropping the supervisor stops and joins the workers.
        drop(self.sup.lock().take());
    }
}
