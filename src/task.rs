//! Supervised tasks you wait for: one at a time ([`spawn`], Elixir's `Task.async` /
//! `await` / `yield` / `shutdown`), or a bounded parallel map over many items ([`map`],
//! Elixir's `Task.async_stream`) — the tool for work that can crash or block, where a
//! thread pool of your own would lose a crash or hang on a stuck item.
//!
//! Each task is a child of a dynamic supervisor ([`ChildSpec::task`], temporary): its
//! panic is contained and reported once like any supervised crash, its thread is joined
//! by its supervisor, and a task that outlives its time is stopped (and abandoned,
//! reported `Killed`, if it does not listen to its stop). Its outcome is a
//! `Result<T, ExitReason>`: the value it returned, or how it ended — `Failed` (it
//! returned `Err`), `Panicked`, `Shutdown` (stopped: its timeout, or its supervisor),
//! `Killed` (abandoned).
//!
//! ```
//! use std::time::Duration;
//! use steadfast::task;
//!
//! // Hash some "files", two at a time, one of which is broken.
//! let results: Vec<_> = task::map(["a", "bb", "broken", "dddd"], |name, _ctx| {
//!     if name == "broken" {
//!         panic!("cannot read {name}");
//!     }
//!     Ok(name.len())
//! })
//! .max_concurrency(2)
//! .timeout(Duration::from_secs(10))
//! .run()?
//! .collect();
//! assert_eq!(results[0], Ok(1));
//! assert!(results[2].is_err()); // the panic, contained: the others went on
//! assert_eq!(results[3], Ok(4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select};

use crate::child::context::Context;
use crate::child::spec::{ChildSpec, Shutdown};
use crate::error::{is_stop_error, ChildError, SupervisorError};
use crate::exit::{panic_reason, ExitReason};
use crate::pid::{monitor, Pid};
use crate::supervisor::{DynamicSupervisor, DynamicSupervisorRef};

/// One running task: where its outcome arrives, and its monitor for the ways it can end
/// without sending one (abandoned, or stopped before it began).
struct Running<T> {
    pid: Pid,
    sup: DynamicSupervisorRef,
    outcome: Receiver<Result<T, ExitReason>>,
    exit: Receiver<ExitReason>,
}

impl<T: Send + 'static> Running<T> {
    /// Starts `f` as a task under `sup`.
    fn start<F>(
        sup: &DynamicSupervisorRef,
        id: &str,
        shutdown: Shutdown,
        f: F,
    ) -> Result<Running<T>, SupervisorError>
    where
        F: FnOnce(&Context) -> Result<T, ChildError> + Send + 'static,
    {
        let (tx, outcome) = bounded(1);
        let spec = ChildSpec::task(id, move |ctx| {
            // The outcome goes out as the task's last act; a panic then goes on, so the
            // runner reports it once, as any supervised crash.
            match panic::catch_unwind(AssertUnwindSafe(|| f(ctx))) {
                Ok(Ok(value)) => {
                    let _ = tx.send(Ok(value));
                    Ok(())
                }
                Ok(Err(e)) => {
                    let stopped = ctx.is_stopping() || is_stop_error(&e);
                    let reason = if stopped {
                        ExitReason::Shutdown
                    } else {
                        ExitReason::failed(&e)
                    };
                    let _ = tx.send(Err(reason));
                    Err(e)
                }
                Err(payload) => {
                    let _ = tx.send(Err(ExitReason::Panicked(panic_reason(&*payload))));
                    panic::resume_unwind(payload)
                }
            }
        })
        .shutdown(shutdown);
        let pid = sup.start_child(spec)?;
        Ok(Running {
            pid,
            sup: sup.clone(),
            outcome,
            exit: monitor(pid),
        })
    }

    /// Its outcome, if it has one now.
    fn poll(&self) -> Option<Result<T, ExitReason>> {
        if let Ok(outcome) = self.outcome.try_recv() {
            return Some(outcome);
        }
        // Ended without a word (abandoned, or stopped before it began): the outcome, if
        // it sent one just before, is there now.
        let reason = self.exit.try_recv().ok()?;
        Some(self.outcome.try_recv().unwrap_or(Err(reason)))
    }

    /// Waits up to `timeout` for its outcome.
    fn wait(&self, timeout: Duration) -> Option<Result<T, ExitReason>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(outcome) = self.poll() {
                return Some(outcome);
            }
            let mut select = Select::new();
            select.recv(&self.outcome);
            select.recv(&self.exit);
            let ready = match deadline {
                Some(at) => select.ready_deadline(at).is_ok(),
                None => {
                    select.ready();
                    true
                }
            };
            if !ready {
                return self.poll();
            }
        }
    }

    /// Stops it (its supervisor raises its stop, waits its shutdown timeout, abandons it
    /// if deaf); its outcome: what it sent if it finished first, else how it ended.
    fn stop(&self) -> Result<T, ExitReason> {
        let _ = self.sup.terminate_child(self.pid);
        self.wait(Duration::from_secs(1))
            .unwrap_or(Err(ExitReason::NoProcess))
    }
}

/// How long a stopped task is waited for before it is abandoned, by default.
const TASK_SHUTDOWN: Shutdown = Shutdown::Timeout(Duration::from_secs(5));

/// A supervised task whose outcome you wait for; from [`spawn`]. Dropping it stops the
/// task if it still runs.
pub struct Task<T: Send + 'static> {
    running: Option<Running<T>>,
}

impl<T: Send + 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("pid", &self.running.as_ref().map(|r| r.pid))
            .finish()
    }
}

/// Starts `f` as a task under `sup` and returns a handle to wait for it with.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::{task, DynamicSupervisor};
///
/// let tasks = DynamicSupervisor::builder().start()?;
/// let answer = task::spawn(&tasks, |_ctx| Ok(6 * 7))?;
/// assert_eq!(answer.join(Duration::from_secs(10)), Ok(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// What [`DynamicSupervisorRef::start_child`] returns (`MaxChildren`, `NoSupervisor`).
pub fn spawn<T, F>(sup: &DynamicSupervisorRef, f: F) -> Result<Task<T>, SupervisorError>
where
    T: Send + 'static,
    F: FnOnce(&Context) -> Result<T, ChildError> + Send + 'static,
{
    Ok(Task {
        running: Some(Running::start(sup, "task", TASK_SHUTDOWN, f)?),
    })
}

impl<T: Send + 'static> Task<T> {
    /// The task's pid.
    pub fn pid(&self) -> Pid {
        self.running
            .as_ref()
            .expect("a task runs until consumed")
            .pid
    }

    /// Waits up to `timeout` for the task's outcome (Elixir's `await`); a task still
    /// running then is stopped, and its outcome is how that ended (`Shutdown`, or
    /// `Killed` if it was deaf to its stop).
    pub fn join(mut self, timeout: Duration) -> Result<T, ExitReason> {
        let running = self.running.take().expect("a task runs until consumed");
        running.wait(timeout).unwrap_or_else(|| running.stop())
    }

    /// Waits up to `timeout` for the task's outcome (Elixir's `yield`): `Ok` with it, or
    /// the task back, still running.
    ///
    /// # Errors
    ///
    /// The task itself when it is still running at the deadline.
    pub fn yield_for(mut self, timeout: Duration) -> Result<Result<T, ExitReason>, Task<T>> {
        let running = self.running.as_ref().expect("a task runs until consumed");
        match running.wait(timeout) {
            Some(outcome) => {
                self.running = None;
                Ok(outcome)
            }
            None => Err(self),
        }
    }

    /// Stops the task (Elixir's `shutdown`): its value or failure if it had finished
    /// first, `None` if the stop ended it.
    pub fn shutdown(mut self) -> Option<Result<T, ExitReason>> {
        let running = self.running.take().expect("a task runs until consumed");
        if let Some(outcome) = running.poll() {
            return Some(outcome);
        }
        match running.stop() {
            Err(ExitReason::Shutdown | ExitReason::Killed | ExitReason::NoProcess) => None,
            finished => Some(finished),
        }
    }
}

impl<T: Send + 'static> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            if running.poll().is_none() {
                let _ = running.sup.terminate_child(running.pid);
            }
        }
    }
}

/// A bounded parallel map being set up; from [`map`]. [`run`](Map::run) starts it.
#[must_use = "a map does nothing until `run`"]
pub struct Map<I, F> {
    items: I,
    f: Arc<F>,
    max_concurrency: usize,
    ordered: bool,
    timeout: Option<Duration>,
    shutdown: Shutdown,
    under: Option<DynamicSupervisorRef>,
}

impl<I, F> fmt::Debug for Map<I, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("max_concurrency", &self.max_concurrency)
            .field("ordered", &self.ordered)
            .field("timeout", &self.timeout)
            .field("shutdown", &self.shutdown)
            .field("under", &self.under.as_ref().map(DynamicSupervisorRef::pid))
            .finish_non_exhaustive()
    }
}

/// Runs `f` on every item of `items` as supervised tasks, at most
/// [`max_concurrency`](Map::max_concurrency) at a time (default: the machine's
/// parallelism), and yields each outcome as a `Result<R, ExitReason>` — in input order
/// by default ([`ordered`](Map::ordered)). See the [module docs](self).
pub fn map<I, F, R>(items: I, f: F) -> Map<I::IntoIter, F>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item, &Context) -> Result<R, ChildError> + Send + Sync + 'static,
    R: Send + 'static,
{
    Map {
        items: items.into_iter(),
        f: Arc::new(f),
        max_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        ordered: true,
        timeout: None,
        shutdown: TASK_SHUTDOWN,
        under: None,
    }
}

impl<I, F, R> Map<I, F>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
    F: Fn(I::Item, &Context) -> Result<R, ChildError> + Send + Sync + 'static,
    R: Send + 'static,
{
    /// How many tasks run at once (at least 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Outcomes in input order (`true`, the default), or as tasks finish.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// How long each task may run, from its start; one still running then is stopped
    /// (its outcome `Shutdown`, or `Killed` if deaf to its stop). Default: no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a stopped task is waited for before it is abandoned (default 5 s).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Runs the tasks under `sup` (yours, in your tree) instead of a dynamic supervisor
    /// of the map's own (which keeps `max_concurrency` threads for reuse: give yours
    /// [`reuse_threads`](crate::DynamicSupervisorBuilder::reuse_threads) to do the same).
    pub fn under(mut self, sup: &DynamicSupervisorRef) -> Self {
        self.under = Some(sup.clone());
        self
    }

    /// Starts the map: the first tasks start now, more as outcomes are taken.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::StartFailed`] if the map's own supervisor cannot start.
    pub fn run(self) -> Result<MapIter<R>, SupervisorError> {
        let (own, sup) = match self.under {
            Some(sup) => (None, sup),
            None => {
                // Its tasks run on the threads of those that ended: a map of many items
                // spawns about `max_concurrency` threads, not one per item.
                let own = DynamicSupervisor::builder()
                    .reuse_threads(self.max_concurrency)
                    .start()
                    .map_err(SupervisorError::StartFailed)?;
                let sup = own.handle();
                (Some(own), sup)
            }
        };
        let (f, shutdown) = (self.f, self.shutdown);
        let mut items = self.items.enumerate();
        let next_task: NextTask<R> = Box::new(move |sup| {
            let (i, item) = items.next()?;
            let f = f.clone();
            let started = Running::start(sup, "map", shutdown, move |ctx: &Context| f(item, ctx));
            Some((i, started))
        });
        Ok(MapIter {
            next_task: Some(next_task),
            running: HashMap::new(),
            finished: BTreeMap::new(),
            next_out: 0,
            max: self.max_concurrency,
            ordered: self.ordered,
            timeout: self.timeout,
            sup,
            own,
        })
    }
}

/// Takes the next item and starts its task: `None` once the items are exhausted.
type NextTask<R> = Box<
    dyn FnMut(&DynamicSupervisorRef) -> Option<(usize, Result<Running<R>, SupervisorError>)> + Send,
>;

/// The outcomes of a [`map`], as an iterator. Dropping it stops the tasks still running
/// (nothing is left running) and starts no more.
pub struct MapIter<R: Send + 'static> {
    next_task: Option<NextTask<R>>,
    /// By input index: each running task and its deadline.
    running: HashMap<usize, (Running<R>, Option<Instant>)>,
    /// Outcomes not yet yielded (ordered mode: waiting for an earlier index).
    finished: BTreeMap<usize, Result<R, ExitReason>>,
    next_out: usize,
    max: usize,
    ordered: bool,
    timeout: Option<Duration>,
    sup: DynamicSupervisorRef,
    /// The map's own supervisor, if it made one: dropped last.
    own: Option<DynamicSupervisor>,
}

impl<R: Send + 'static> fmt::Debug for MapIter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapIter")
            .field("running", &self.running.len())
            .field("finished", &self.finished.len())
            .field("next_out", &self.next_out)
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> MapIter<R> {
    /// Starts tasks until `max` run or the items run out.
    fn fill(&mut self) {
        while self.running.len() < self.max {
            let Some(next) = self.next_task.as_mut() else {
                return;
            };
            let Some((i, started)) = next(&self.sup) else {
                self.next_task = None;
                return;
            };
            match started {
                Ok(running) => {
                    let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
                    self.running.insert(i, (running, deadline));
                }
                // It could not start (its supervisor is full or gone): that is its outcome.
                Err(e) => {
                    self.finished.insert(i, Err(ExitReason::failed(&e)));
                }
            }
        }
    }

    /// The next outcome to yield, if one is ready.
    fn ready(&mut self) -> Option<Result<R, ExitReason>> {
        let key = if self.ordered {
            Some(self.next_out).filter(|k| self.finished.contains_key(k))
        } else {
            self.finished.keys().next().copied()
        }?;
        self.next_out += 1;
        self.finished.remove(&key)
    }

    /// Moves the outcomes of tasks that have ended, and of those past their deadline
    /// (stopped now), into `finished`.
    fn collect_ended(&mut self) {
        let now = Instant::now();
        let ended: Vec<usize> = self.running.keys().copied().collect();
        for i in ended {
            let (running, deadline) = &self.running[&i];
            let outcome = match running.poll() {
                Some(outcome) => outcome,
                None if deadline.is_some_and(|d| now >= d) => running.stop(),
                None => continue,
            };
            self.running.remove(&i);
            self.finished.insert(i, outcome);
        }
    }

    /// Blocks until a running task sends its outcome, ends, or reaches its deadline.
    fn wait(&self) {
        let mut select = Select::new();
        for (running, _) in self.running.values() {
            select.recv(&running.outcome);
            select.recv(&running.exit);
        }
        let earliest = self.running.values().filter_map(|(_, d)| *d).min();
        match earliest {
            Some(at) => {
                let _ = select.ready_deadline(at);
            }
            None => {
                select.ready();
            }
        }
    }
}

impl<R: Send + 'static> Iterator for MapIter<R> {
    type Item = Result<R, ExitReason>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.fill();
            if let Some(outcome) = self.ready() {
                return Some(outcome);
            }
            if self.running.is_empty() {
                // Nothing runs and nothing is ready: the items are all done (ordered mode
                // cannot be missing an index: every started item ends in `finished`).
                return None;
            }
            self.collect_ended();
            let ready = if self.ordered {
                self.finished.contains_key(&self.next_out)
            } else {
                !self.finished.is_empty()
            };
            if !ready {
                self.wait();
            }
        }
    }
}

impl<R: Send + 'static> Drop for MapIter<R> {
    fn drop(&mut self) {
        self.next_task = None;
        if self.own.is_some() {
            // Dropping the map's own supervisor stops and joins every task.
            self.running.clear();
            self.own = None;
            return;
        }
        for (_, (running, _)) in self.running.drain() {
            let _ = self.sup.terminate_child(running.pid);
        }
    }
}
