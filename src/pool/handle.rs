//! A pool's settings ([`PoolBuilder`]) and its handle ([`Pool`]): submitting, draining,
//! counting, shutting down; a pool of its own or one in the user's tree.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::child::context::Context;
use crate::child::spec::ChildSpec;
use crate::error::{ChildError, StartError, SupervisorError};
use crate::hash::Padded;
use crate::pid::Pid;
use crate::pool::outcome::{DeadLetter, DrainError, PoolDown, PoolStats, SubmitError};
use crate::pool::work::{Entry, Shared, Slot, Work, MAX_QUEUE_BYTES};
use crate::supervisor::event::Event;
use crate::supervisor::{Supervisor, SupervisorBuilder};
use crate::tree::{self, Load, Shown};
use crate::wait;

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
            #[cfg(feature = "metrics")]
            label: self.name.clone().unwrap_or_else(|| "pool".to_owned()),
            #[cfg(feature = "metrics")]
            levels: Mutex::new(()),
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
        let started = Arc::downgrade(shared);
        sup = sup.on_start(move |_| {
            let Some(shared) = started.upgrade() else {
                return Ok(());
            };
            if escalates {
                // A new incarnation: an earlier give-up is history, not the reason it ends.
                shared.gave_up.lock().take();
            }
            // The pool's counts, shown on its supervisor in a tree snapshot.
            let _ =
                tree::SHOWN.register(Pid::current(), Arc::new(Counted(Arc::downgrade(&shared))));
            Ok(())
        });
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
        self.owner.shared.stats()
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

/// A pool's counts, as a tree snapshot shows them on its supervisor.
struct Counted<J>(Weak<Shared<J>>);

impl<J: Send + 'static> Shown for Counted<J> {
    fn load(&self) -> Load {
        Load::Pool(self.0.upgrade().map(|s| s.stats()).unwrap_or_default())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
