//! The one place that spawns a process thread, catches its panics and reports its exit.
//!
//! Exit ordering (see ARCHITECTURE.md): the thread (a) builds the `ExitReason`, (b) ends its
//! pid — registry entries removed, monitors fired — and only then (c) tells whoever waits:
//! the readiness waiter, the `done` channel, and its supervisor's inbox.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::child::cap::LiveThread;
use crate::child::context::{
    look_briefly, Context, History, NextStop, ReadyMsg, StopHandle, StopSignal,
};
use crate::child::launch::{Launch, Notify, RestartPermit, SpawnArgs};
use crate::child::panic_hook::{self, catch, SUPERVISED};
use crate::child::reuse::{ThreadPool, Work};
use crate::child::spec::{Body, Serve};
use crate::clock::{self, Clock};
use crate::error::SpawnError;
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::telemetry::{self, note};

/// A running process, as its supervisor holds it.
///
/// Dropping it detaches the thread (an abandoned child); [`Spawned::finish`] ends and
/// joins it.
pub(crate) struct Spawned {
    /// The incarnation the supervisor knows of (it may be behind: see `Shared::current`).
    pub(crate) pid: Pid,
    /// When its thread was spawned: its first incarnation's start (the supervisor may
    /// learn of it later, from a hand-over).
    pub(crate) started_at: Instant,
    shared: Arc<Shared>,
    pub(crate) stop: StopHandle,
    /// Receives the exit reason once the process has exited (registry already clean) —
    /// for a process with no supervisor inbox to tell (a top-level supervisor). A
    /// supervised child's exit is the `Exit` notice in its supervisor's inbox.
    pub(crate) done: Option<Receiver<ExitReason>>,
    thread: Thread,
    /// Receives the start outcome, for a process that reports readiness.
    pub(crate) ready: Option<Receiver<ReadyMsg>>,
    /// Whether its thread, once an incarnation has exited, waits to be handed the next
    /// one (see [`Spawned::resume`]) instead of ending.
    pub(crate) resumable: bool,
    /// Whether its thread waits to be handed its first incarnation (`SpawnArgs::deferred`).
    deferred: bool,
}

/// What a process thread shares with its supervisor's handle on it.
struct Shared {
    /// The incarnation running now, published by the thread at each same-thread restart,
    /// so that abandoning the child ends the right pid even before the supervisor has
    /// read the restart notice.
    current: AtomicU64,
    /// Whether its supervisor has it in its table. A child handed over by the caller
    /// that started it (see `Spawned::handed_over`) is not, until the supervisor reads
    /// the hand-over; until then it leaves restarts to the supervisor.
    in_table: AtomicBool,
    /// Whether the hand-over of a child started by a caller has been sent. The thread
    /// sends nothing to its supervisor before, so nothing can overtake the hand-over.
    handed_over: AtomicBool,
    /// For a resumable thread: its next incarnation, or word to end.
    next: Mutex<Next>,
    wake: Condvar,
    /// The next process of an ordered stop, whose signal this thread raises as soon as
    /// its exit is complete (see [`Spawned::stop_next_on_exit`]).
    next_stop: Mutex<Option<NextStop>>,
}

enum Next {
    Nothing,
    /// Boxed: every thread's shared record has a `Next`, few ever resume.
    Run(Box<Incarnation>),
    /// For a deferred thread: the rest of its first incarnation (see `SpawnArgs::deferred`).
    Begin(Serve),
    End,
}

/// What a resumed thread runs its next incarnation as.
struct Incarnation {
    pid: Pid,
    signal: StopSignal,
    history: History,
}

impl Shared {
    /// Blocks until handed the next incarnation (`Some`) or told to end (`None`).
    fn next(&self) -> Option<Incarnation> {
        // A group restart resumes its members right after the last of them has stopped:
        // the ones stopped last need not park (the supervisor then wakes nobody).
        look_briefly(|| (!matches!(*self.next.lock(), Next::Nothing)).then_some(()));
        let mut next = self.next.lock();
        loop {
            match std::mem::replace(&mut *next, Next::Nothing) {
                Next::Run(inc) => return Some(*inc),
                Next::End => {
                    *next = Next::End;
                    return None;
                }
                other => {
                    *next = other;
                    self.wake.wait(&mut next);
                }
            }
        }
    }

    /// For a deferred thread: blocks until handed the rest of its first incarnation
    /// (`Some`) or told that its start failed (`None`).
    fn begun(&self) -> Option<Serve> {
        let mut next = self.next.lock();
        loop {
            match std::mem::replace(&mut *next, Next::Nothing) {
                Next::Begin(serve) => return Some(serve),
                Next::End => {
                    *next = Next::End;
                    return None;
                }
                other => {
                    *next = other;
                    self.wake.wait(&mut next);
                }
            }
        }
    }

    /// Waits (briefly: the caller sends it right after the spawn) until the hand-over
    /// of a child started by a caller has been sent.
    fn await_hand_over(&self) {
        while !self.handed_over.load(Ordering::Acquire) {
            thread::yield_now();
        }
    }

    /// Raises the stop signal handed on to this thread, if any, once its exit is
    /// complete (the ordered stop: see `supervisor::stop::relay`).
    fn stop_next(&self) {
        let next = self.next_stop.lock().take();
        if let Some(next) = next {
            next.raise();
        }
    }

    fn set(&self, value: Next) {
        *self.next.lock() = value;
        self.wake.notify_one();
    }

    /// Tells a deferred thread to end, unless it has been handed its first incarnation
    /// already: that one runs (and is stopped) like any other.
    fn end_unless_begun(&self) {
        let mut next = self.next.lock();
        if !matches!(*next, Next::Begin(_)) {
            *next = Next::End;
        }
        drop(next);
        self.wake.notify_one();
    }
}

/// Spawns a process thread running `args.body` under `catch_unwind`.
pub(crate) fn spawn(mut args: SpawnArgs) -> Result<Spawned, SpawnError> {
    // A thread of a reuse pool may run it: an idle one is counted toward the cap already.
    // (Not a thread that waits to be handed its first or next incarnation.)
    let regrouped = matches!(
        args.launch,
        Launch::BySupervisor {
            resumable: true,
            ..
        }
    );
    let reuse = args.reuse.take().filter(|_| !args.deferred && !regrouped);
    let guard = match reuse {
        None => Some(LiveThread::acquire()?),
        Some(_) => None,
    };
    panic_hook::install();
    // The parent is the calling process (a supervisor's thread, or whoever starts a
    // top-level tree), unless a caller spawns it on a supervisor's behalf.
    let (parent, notify, permit, resumable, handed_over) = match args.launch {
        Launch::TopLevel => (Pid::current_if_any(), None, None, false, true),
        Launch::BySupervisor {
            notify,
            permit,
            resumable,
        } => (Pid::current_if_any(), Some(notify), permit, resumable, true),
        Launch::ByCaller {
            sup,
            notify,
            permit,
        } => (Some(sup), Some(notify), permit, false, false),
    };
    let pid = Pid::spawn(parent);
    let (stop, signal) = StopHandle::new(args.id.clone());
    let (done_tx, done) = match notify {
        Some(_) => (None, None),
        None => {
            let (tx, rx) = bounded(1);
            (Some(tx), Some(rx))
        }
    };
    let (ready_tx, ready) = if args.wants_ready {
        let (tx, rx) = bounded(1);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    // Names are validated before anything is reserved; a NUL byte that got past that
    // must still not make the thread builder panic.
    let mut name = args.thread_name;
    if name.contains('\0') {
        name = name.replace('\0', "?");
    }
    let mut builder = thread::Builder::new().name(name);
    if let Some(size) = args.stack_size {
        builder = builder.stack_size(size);
    }
    let SpawnArgs {
        id,
        body,
        history,
        deferred,
        ..
    } = args;
    let resumable = resumable && !args.wants_ready;
    let shared = Arc::new(Shared {
        current: AtomicU64::new(pid.as_u64()),
        in_table: AtomicBool::new(handed_over),
        handed_over: AtomicBool::new(handed_over),
        next: Mutex::new(Next::Nothing),
        wake: Condvar::new(),
        next_stop: Mutex::new(None),
    });
    let thread = ProcessThread {
        id,
        body,
        parent,
        notify,
        permit,
        resumable,
        deferred,
        shared: shared.clone(),
    };
    let first = Incarnation {
        pid,
        signal,
        history,
    };
    // The thread runs on its spawner's clock (see `clock`).
    let clock = Clock::current();
    let life = move |guard: LiveThread| {
        let _clock = clock.install();
        thread.run(first, ready_tx, done_tx, guard)
    };
    let (stack, mut thread) = (args.stack_size, Thread::Own(None));
    let spawned = match (reuse, guard) {
        (None, Some(guard)) => builder.spawn(move || life(guard)).map(|join| {
            thread = Thread::Own(Some(join));
        }),
        (Some(pool), _) => {
            let (over, life_over) = bounded(0);
            thread = Thread::Pooled(life_over);
            let work = Work {
                run: Box::new(life),
                done: over,
            };
            match pool.run_idle(stack, work) {
                Ok(()) => Ok(()),
                Err(work) => match LiveThread::acquire() {
                    Ok(guard) => pool.spawn(builder, stack, work, guard),
                    Err(limit) => {
                        pid::exit(pid, &ExitReason::failed(&limit));
                        return Err(limit);
                    }
                },
            }
        }
        (None, None) => unreachable!("a guard is acquired unless a pool may run it"),
    };
    match spawned {
        Ok(()) => Ok(Spawned {
            pid,
            started_at: clock::now(),
            shared,
            stop,
            done,
            thread,
            resumable,
            deferred,
            ready,
        }),
        Err(e) => {
            pid::exit(pid, &ExitReason::failed(&e));
            Err(SpawnError::Os(e))
        }
    }
}

/// The OS thread a process runs on, as its `Spawned` holds it.
enum Thread {
    /// Its own, joined at the end (`None` once joined, or until spawned).
    Own(Option<JoinHandle<()>>),
    /// A reuse pool's: the pool joins the thread; the process's life is over when this
    /// disconnects.
    Pooled(Receiver<()>),
}

/// What a process thread runs with: everything `spawn` hands it.
struct ProcessThread {
    id: Arc<str>,
    body: Body,
    parent: Option<Pid>,
    notify: Option<Arc<dyn Notify>>,
    permit: Option<RestartPermit>,
    resumable: bool,
    deferred: bool,
    shared: Arc<Shared>,
}

impl ProcessThread {
    /// The thread's life: its incarnations, then the report of the last exit (exit
    /// ordering: by then its pid has ended, names released and monitors fired).
    fn run(
        self,
        first: Incarnation,
        ready_tx: Option<Sender<ReadyMsg>>,
        done_tx: Option<Sender<ExitReason>>,
        guard: LiveThread,
    ) {
        SUPERVISED.with(|s| s.set(true));
        let last = if self.deferred {
            // A failed start has ended the pid already: nothing to run or report.
            let serve = self.shared.begun();
            serve.and_then(|serve| self.incarnations(first, ready_tx, Some(serve)))
        } else {
            self.incarnations(first, ready_tx, None)
        };
        let ProcessThread {
            body,
            notify,
            shared,
            ..
        } = self;
        // Release the body (and what it captured) before reporting the exit.
        drop(body);
        Pid::set_current(None);
        SUPERVISED.with(|s| s.set(false));
        let Some((pid, reason)) = last else { return };
        // It no longer counts against the cap once it reports: its supervisor may spawn
        // a replacement before it joins this thread.
        drop(guard);
        match (notify, done_tx) {
            (Some(notify), _) => {
                shared.await_hand_over();
                shared.stop_next();
                notify.exited(pid, reason);
            }
            (None, Some(done)) => {
                let _ = done.send(reason);
            }
            (None, None) => {}
        }
        // Threads of exited children this process (a supervisor) let go of: joined now,
        // after the report, so that whoever waits for this exit does not also wait for
        // their teardown. This thread ends only after them, so joining it joins them too.
        for run in AFTER_EXIT.with(|a| std::mem::take(&mut *a.borrow_mut())) {
            run.finish();
        }
        // Then the reuse pools of the supervisors that ran here: every life on their
        // threads is over or abandoned by now.
        for pool in POOLS_AFTER_EXIT.with(|p| std::mem::take(&mut *p.borrow_mut())) {
            pool.close();
        }
    }

    /// Runs incarnations: those restarted on this thread by its permit, and, for a
    /// resumable thread, those a group restart hands it. Returns the last exit still to
    /// report (`None`: a resumable thread told to end, its last exit reported already).
    fn incarnations(
        &self,
        mut inc: Incarnation,
        ready_tx: Option<Sender<ReadyMsg>>,
        mut serve: Option<Serve>,
    ) -> Option<(Pid, ExitReason)> {
        let mut ready_tx = ready_tx;
        loop {
            let reason = self.until_final_exit(&mut inc, ready_tx.take(), serve.take());
            if !self.resumable {
                return Some((inc.pid, reason));
            }
            // Resumable: report now, then wait. A group restart hands this thread its next
            // incarnation; anything else ends it right after reading the report.
            Pid::set_current(None);
            if let Some(notify) = &self.notify {
                self.shared.await_hand_over();
                self.shared.stop_next();
                notify.exited(inc.pid, reason);
            }
            inc = self.shared.next()?;
        }
    }

    /// Runs the body (the first time `serve` instead, if given) until an exit that is not
    /// restarted on this thread; `inc.pid` is then the incarnation that made it.
    fn until_final_exit(
        &self,
        inc: &mut Incarnation,
        mut ready_tx: Option<Sender<ReadyMsg>>,
        mut serve: Option<Serve>,
    ) -> ExitReason {
        // One context for the incarnations this thread runs in a row (same thread, same
        // stop signal); each ends (its stop hooks dropped) before the restart decision.
        let mut ctx = Context::new(
            inc.pid,
            self.id.clone(),
            &inc.signal,
            std::mem::take(&mut inc.history),
            ready_tx.take(),
        );
        loop {
            Pid::set_current(Some(inc.pid));
            let this = ctx.incarnation();
            let span = telemetry::child_span(self.parent, &self.id, inc.pid, this);
            let reason = match (self.injected_start(&ctx), serve.take()) {
                (Some(reason), _) => reason,
                (None, Some(serve)) => run_body(&self.id, inc.pid, || serve(&ctx)),
                (None, None) => run_body(&self.id, inc.pid, || (self.body)(&ctx)),
            };
            drop(span);
            telemetry::exited_here();
            pid::exit(inc.pid, &reason);
            ctx.report_early_exit(&reason);
            ctx.end_incarnation();
            match (&self.permit, &self.notify) {
                (Some(permit), Some(notify))
                    if self.shared.in_table.load(Ordering::Acquire)
                        && !inc.signal.flag().load(Ordering::Acquire)
                        && permit.permits(&reason) =>
                {
                    // Same-thread restart: the old pid is gone (names released, monitors
                    // fired); the notice is queued before anything the new incarnation
                    // sends, so the supervisor reads the two in that order.
                    let new = Pid::spawn(self.parent);
                    self.shared.current.store(new.as_u64(), Ordering::Release);
                    let history = History {
                        incarnation: this.saturating_add(1),
                        previous_exit: Some(reason.clone()),
                    };
                    let at = clock::now();
                    telemetry::restarted_here(self.parent, &self.id, inc.pid, new, &reason, at);
                    notify.restarted(inc.pid, new, reason, at, inc.signal.flag());
                    ctx.begin_incarnation(new, history);
                    inc.pid = new;
                }
                _ => return reason,
            }
        }
    }
}

impl ProcessThread {
    /// With the test kit: how this start ends instead of running the child, if the test
    /// has made it fail or decline.
    #[cfg(feature = "testing")]
    fn injected_start(&self, ctx: &Context) -> Option<ExitReason> {
        use crate::testing::faults::{at_start, StartFault};
        match at_start(self.parent, &self.id, ctx.pid())? {
            StartFault::Fail(why) => Some(ExitReason::Failed(why.into())),
            StartFault::Decline => {
                ctx.ignore();
                Some(ExitReason::Normal)
            }
            StartFault::Deaf => {
                crate::testing::faults::deafen(ctx.pid(), self.parent?);
                None
            }
        }
    }

    #[cfg(not(feature = "testing"))]
    #[inline]
    fn injected_start(&self, _: &Context) -> Option<ExitReason> {
        None
    }
}

impl Spawned {
    /// The pid of the incarnation running now.
    pub(crate) fn current_pid(&self) -> Pid {
        Pid::from_raw(self.shared.current.load(Ordering::Acquire)).unwrap_or(self.pid)
    }

    /// Has this process raise `next`'s stop signal as soon as its exit is complete (the
    /// ordered stop, explained at `supervisor::stop::relay`).
    pub(crate) fn stop_next_on_exit(&self, next: NextStop) {
        *self.shared.next_stop.lock() = Some(next);
    }

    /// Hands a deferred thread (see `SpawnArgs::deferred`) the rest of its first
    /// incarnation, once its start has succeeded.
    pub(crate) fn begin(&self, serve: Serve) {
        self.shared.set(Next::Begin(serve));
    }

    /// Tells a deferred thread that its start failed: it ends without running or
    /// reporting anything (whoever ran the start has ended its pid).
    pub(crate) fn cancel(&self) {
        self.shared.set(Next::End);
    }

    /// Records that the supervisor has this child in its table.
    pub(crate) fn mark_in_table(&self) {
        self.shared.in_table.store(true, Ordering::Release);
    }

    /// For a child a caller spawned on a supervisor's behalf: call once the hand-over is
    /// sent (or has failed); until then the child sends its supervisor nothing.
    pub(crate) fn handed_over(&self) -> impl FnOnce() {
        let shared = self.shared.clone();
        move || shared.handed_over.store(true, Ordering::Release)
    }

    /// Ends the thread (a resumable one waits to be told) and joins it — or, on a reuse
    /// pool's thread, waits until the process's life on it is over.
    pub(crate) fn finish(mut self) {
        self.end();
        match &mut self.thread {
            Thread::Own(join) => {
                if let Some(join) = join.take() {
                    let _ = join.join();
                }
            }
            Thread::Pooled(life_over) => {
                let _ = life_over.recv();
            }
        }
    }

    /// Hands a resumable thread, whose incarnation has exited (its `Exit` notice was
    /// read), a new incarnation: a new pid and a new stop signal. Returns the new pid.
    pub(crate) fn resume(&mut self, id: Arc<str>, history: History) -> Pid {
        debug_assert!(self.resumable);
        let pid = Pid::spawn(Pid::current_if_any());
        let (stop, signal) = StopHandle::new(id);
        self.shared.next_stop.lock().take();
        self.shared.current.store(pid.as_u64(), Ordering::Release);
        self.shared.set(Next::Run(Box::new(Incarnation {
            pid,
            signal,
            history,
        })));
        self.pid = pid;
        self.stop = stop;
        pid
    }
}

impl Spawned {
    /// Tells a resumable thread to end once its incarnation has returned (no other
    /// thread waits for that word), and a deferred one never begun to end at once.
    pub(crate) fn end(&self) {
        if self.resumable {
            self.shared.set(Next::End);
        } else if self.deferred {
            self.shared.end_unless_begun();
        }
    }
}

impl Drop for Spawned {
    /// Detaches: a resumable thread is told to end once its incarnation returns, a
    /// deferred one never begun at once.
    fn drop(&mut self) {
        self.end();
    }
}

/// Joins `runs` — threads whose last incarnation has exited — once the calling process
/// thread has reported its own exit (at once on any other thread).
pub(crate) fn join_after_exit(runs: Vec<Spawned>) {
    if runs.is_empty() {
        return;
    }
    if SUPERVISED.with(|s| s.get()) {
        AFTER_EXIT.with(|a| a.borrow_mut().extend(runs));
    } else {
        for run in runs {
            run.finish();
        }
    }
}

/// How many joins the calling thread holds for its exit so far (see `join_after_exit`).
pub(crate) fn held_joins() -> usize {
    AFTER_EXIT.with(|a| a.borrow().len())
}

/// Takes back the joins the calling thread took on since it held `held`.
pub(crate) fn take_joins_since(held: usize) -> Vec<Spawned> {
    AFTER_EXIT.with(|a| a.borrow_mut().split_off(held))
}

/// Runs the body, turning a panic into `Panicked` and logging it (or a failure) once.
fn run_body(id: &str, pid: Pid, body: impl FnOnce() -> ExitReason) -> ExitReason {
    match catch(id, pid, body) {
        Ok(reason) => {
            if let ExitReason::Failed(msg) = &reason {
                note!(warn, "child {id:?} ({pid}) failed: {msg}");
            }
            reason
        }
        Err(panicked) => panicked,
    }
}

/// Closes `pool` (see `child::reuse`) once the calling process thread has reported its
/// exit and finished the joins it holds for then (at once on any other thread).
pub(crate) fn close_after_exit(pool: Arc<ThreadPool>) {
    if SUPERVISED.with(|s| s.get()) {
        POOLS_AFTER_EXIT.with(|p| p.borrow_mut().push(pool));
    } else {
        pool.close();
    }
}

thread_local! {
    static AFTER_EXIT: RefCell<Vec<Spawned>> = const { RefCell::new(Vec::new()) };
    static POOLS_AFTER_EXIT: RefCell<Vec<Arc<ThreadPool>>> = const { RefCell::new(Vec::new()) };
}
