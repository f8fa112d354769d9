//! A process thread as its supervisor holds it ([`Spawned`]): what the thread and the
//! handle share (its current pid, its next incarnation for a group restart, the ordered
//! stop it relays), how the handle ends and joins it, and what a process thread owes
//! before it ends: the joins of children it let go of and the reuse pools that ran on it
//! ([`settle_after_exit`]). The thread's own life is `runner`'s.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::Receiver;
use parking_lot::{Condvar, Mutex};

use crate::child::briefly::look_briefly;
use crate::child::context::{History, NextStop, ReadyMsg, StopHandle, StopSignal};
use crate::child::panic_hook::SUPERVISED;
use crate::child::reuse::ThreadPool;
use crate::child::spec::Serve;
use crate::exit::ExitReason;
use crate::pid::Pid;

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
    pub(super) shared: Arc<Shared>,
    pub(crate) stop: StopHandle,
    /// Receives the exit reason once the process has exited (registry already clean) —
    /// for a process with no supervisor inbox to tell (a top-level supervisor). A
    /// supervised child's exit is the `Exit` notice in its supervisor's inbox.
    pub(crate) done: Option<Receiver<ExitReason>>,
    pub(super) thread: Thread,
    /// Receives the start outcome, for a process that reports readiness.
    pub(crate) ready: Option<Receiver<ReadyMsg>>,
    /// Whether its thread, once an incarnation has exited, waits to be handed the next
    /// one (see [`Spawned::resume`]) instead of ending.
    pub(crate) resumable: bool,
    /// Whether its thread waits to be handed its first incarnation (`SpawnArgs::deferred`).
    pub(super) deferred: bool,
}

/// What a process thread shares with its supervisor's handle on it.
pub(super) struct Shared {
    /// The incarnation running now, published by the thread at each same-thread restart,
    /// so that abandoning the child ends the right pid even before the supervisor has
    /// read the restart notice.
    pub(super) current: AtomicU64,
    /// Whether its supervisor has it in its table. A child handed over by the caller
    /// that started it (see `Spawned::handed_over`) is not, until the supervisor reads
    /// the hand-over; until then it leaves restarts to the supervisor.
    pub(super) in_table: AtomicBool,
    /// Whether the hand-over of a child started by a caller has been sent. The thread
    /// sends nothing to its supervisor before, so nothing can overtake the hand-over.
    pub(super) handed_over: AtomicBool,
    /// For a resumable thread: its next incarnation, or word to end.
    pub(super) next: Mutex<Next>,
    pub(super) wake: Condvar,
    /// The next process of an ordered stop, whose signal this thread raises as soon as
    /// its exit is complete (see [`Spawned::stop_next_on_exit`]).
    pub(super) next_stop: Mutex<Option<NextStop>>,
}

pub(super) enum Next {
    Nothing,
    /// Boxed: every thread's shared record has a `Next`, few ever resume.
    Run(Box<Incarnation>),
    /// For a deferred thread: the rest of its first incarnation (see `SpawnArgs::deferred`).
    Begin(Serve),
    End,
}

/// What a resumed thread runs its next incarnation as.
pub(super) struct Incarnation {
    pub(super) pid: Pid,
    pub(super) signal: StopSignal,
    pub(super) history: History,
}

impl Shared {
    /// Blocks until handed the next incarnation (`Some`) or told to end (`None`).
    pub(super) fn next(&self) -> Option<Incarnation> {
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
    pub(super) fn begun(&self) -> Option<Serve> {
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
    pub(super) fn await_hand_over(&self) {
        while !self.handed_over.load(Ordering::Acquire) {
            thread::yield_now();
        }
    }

    /// Raises the stop signal handed on to this thread, if any, once its exit is
    /// complete (the ordered stop: see `supervisor::stop::relay`).
    pub(super) fn stop_next(&self) {
        let next = self.next_stop.lock().take();
        if let Some(next) = next {
            next.raise();
        }
    }

    pub(super) fn set(&self, value: Next) {
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

/// The OS thread a process runs on, as its `Spawned` holds it.
pub(super) enum Thread {
    /// Its own, joined at the end (`None` once joined, or until spawned).
    Own(Option<JoinHandle<()>>),
    /// A reuse pool's: the pool joins the thread; the process's life is over when this
    /// disconnects.
    Pooled(Receiver<()>),
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

/// What the calling process thread owes once it has reported its exit: the threads of
/// exited children it let go of are joined (after the report, so that whoever waits for
/// this exit does not also wait for their teardown; this thread ends only after them, so
/// joining it joins them too), then the reuse pools of the supervisors that ran here are
/// closed (every life on their threads is over or abandoned by now).
pub(crate) fn settle_after_exit() {
    for run in AFTER_EXIT.with(|a| std::mem::take(&mut *a.borrow_mut())) {
        run.finish();
    }
    for pool in POOLS_AFTER_EXIT.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        pool.close();
    }
}
