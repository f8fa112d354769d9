//! The stop protocol: raising a child's stop, waiting for its exit within its
//! `Shutdown` (one child, or many at once, each against its own deadline), abandoning a
//! child that is late, and the waits that read the inbox by its ordering rule (see
//! `inbox`) meanwhile. Readiness waits share the same reading.
//!
//! A wait works on children already taken out of the table ([`Waiting`]); it reads the
//! table only to answer questions, and gives back how each child ended ([`Settled`]).
//! It never changes the table: the engine records the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::child::context::ReadyMsg;
use crate::child::reuse::ThreadPool;
use crate::child::spawned::Spawned;
use crate::child::spec::Shutdown;
use crate::clock;
use crate::exit::ExitReason;
use crate::hash::BuildU64;
use crate::pid::{self, Pid};
use crate::supervisor::answers::{answer, lending, Events};
use crate::supervisor::event::Event;
use crate::supervisor::inbox::{Inbox, Msg};
use crate::supervisor::table::{ChildTable, Stopping};
use crate::telemetry::note;

/// How many times a wait for a child's exit looks for it, yielding in between, before it
/// parks (a stopped child usually exits within microseconds; parking costs a wake-up).
const POLLS: usize = 20;

/// How much longer a child whose last incarnation ended just at its deadline is waited
/// for: its final notice is on its way.
const GRACE: Duration = Duration::from_secs(1);

/// Until when to wait for a child to start or stop.
#[derive(Clone, Copy, Debug)]
pub(super) enum Until {
    /// Only what has arrived already.
    Now,
    Deadline(Instant),
    Forever,
}

impl Until {
    /// `d` after `from`; a deadline too far to represent means no deadline.
    pub(super) fn after(from: Instant, d: Duration) -> Until {
        from.checked_add(d).map_or(Until::Forever, Until::Deadline)
    }

    /// How a child stopped at `from` is waited for.
    fn stop(from: Instant, shutdown: Shutdown) -> Until {
        match shutdown {
            Shutdown::Timeout(d) => Until::after(from, d),
            Shutdown::Infinity => Until::Forever,
            Shutdown::Immediate => Until::Now,
        }
    }

    fn passed(self, now: Instant) -> bool {
        match self {
            Until::Now => true,
            Until::Deadline(at) => now >= at,
            Until::Forever => false,
        }
    }
}

/// What a wait needs from its supervisor: the inbox it reads, and the table and events
/// it answers questions and reports with.
pub(super) struct Around<'a> {
    pub(super) inbox: &'a Arc<Inbox>,
    pub(super) table: &'a ChildTable,
    pub(super) events: &'a Events,
    pub(super) label: &'a str,
    /// A dynamic supervisor's reuse pool, if it keeps threads.
    pub(super) threads: Option<&'a Arc<ThreadPool>>,
    /// The stack size of children that do not set their own.
    pub(super) stack_size: Option<usize>,
}

impl Around<'_> {
    fn emit(&self, event: Event) {
        self.events.emit(self.table, event);
    }
}

/// A child the supervisor waits for: to exit once its stop is raised, or to report ready.
pub(super) struct Waiting {
    id: Arc<str>,
    pub(super) run: Spawned,
    until: Until,
    /// Its exit reason, once read.
    exit: Option<ExitReason>,
    /// The incarnation given up on at the deadline (its thread detached).
    abandoned: Option<Pid>,
    /// Its last incarnation ended just at the deadline: its final notice is on its way,
    /// and is waited for a little longer.
    grace: bool,
}

/// How a waited-for child ended, and what becomes of its thread.
pub(super) struct Settled {
    pub(super) id: Arc<str>,
    /// Its last incarnation.
    pub(super) pid: Pid,
    pub(super) reason: ExitReason,
    pub(super) thread: Thread,
}

/// What becomes of a settled child's thread.
pub(super) enum Thread {
    /// It waits to be handed its next incarnation (a group restart reuses it).
    Reuse(Spawned),
    /// Its last incarnation has exited; it still has to be joined.
    Ended(Spawned),
    /// Abandoned: detached, never joined.
    Detached,
}

/// Threads whose last incarnation has exited, still tearing down (thread-local
/// destructors, their stacks). Joining one at once would often put the supervisor's
/// thread to sleep in the middle of a stop sequence or a reply: they are joined when it
/// is next idle, and always before it exits.
#[derive(Default)]
pub(super) struct Joins(Vec<Spawned>);

impl Joins {
    /// Lets go of a thread whose last exit has been read.
    pub(super) fn let_go(&mut self, run: Spawned) {
        run.end();
        self.0.push(run);
    }

    /// Takes what a stop settled on: an ended thread is let go of; a detached one is
    /// left alone; one kept for reuse is given back.
    pub(super) fn settled(&mut self, thread: Thread) -> Option<Spawned> {
        match thread {
            Thread::Reuse(run) => Some(run),
            Thread::Ended(run) => {
                self.let_go(run);
                None
            }
            Thread::Detached => None,
        }
    }

    /// Joins them all now.
    pub(super) fn join_all(&mut self) {
        for run in self.0.drain(..) {
            run.finish();
        }
    }

    /// What is left, for the supervisor's thread to join right after it reports its own
    /// exit.
    pub(super) fn take(&mut self) -> Vec<Spawned> {
        std::mem::take(&mut self.0)
    }
}

/// How a readiness wait ended.
pub(super) enum Readied {
    /// The child reported (ready, declined, failed, or exited first).
    Report(ReadyMsg),
    /// The channel closed without a report.
    Silent,
    /// The deadline passed first.
    TimedOut,
}

impl Waiting {
    pub(super) fn new(id: Arc<str>, run: Spawned, until: Until) -> Waiting {
        Waiting {
            id,
            run,
            until,
            exit: None,
            abandoned: None,
            grace: false,
        }
    }

    fn open(&self) -> bool {
        self.exit.is_none() && self.abandoned.is_none()
    }

    /// How it ended: its last pid and its exit as read, or, late, abandoned. With
    /// `keep`, a thread that waits to be reused is kept for that.
    fn settle(self, keep: bool) -> Settled {
        let id = self.id;
        match (self.exit, self.abandoned) {
            (Some(reason), _) => {
                let (pid, run) = (self.run.pid, self.run);
                let thread = if keep && run.resumable {
                    Thread::Reuse(run)
                } else {
                    Thread::Ended(run)
                };
                Settled {
                    id,
                    pid,
                    reason,
                    thread,
                }
            }
            // Dropping the run detaches the thread.
            (None, Some(pid)) => Settled {
                id,
                pid,
                reason: ExitReason::Killed,
                thread: Thread::Detached,
            },
            (None, None) => unreachable!("settled only once decided"),
        }
    }
}

/// The children of a wait still waited for, by the pid of their latest incarnation.
fn open_index(waiting: &[Waiting]) -> HashMap<Pid, usize, BuildU64> {
    let open = waiting.iter().enumerate().filter(|(_, w)| w.open());
    open.map(|(i, w)| (w.run.pid, i)).collect()
}

/// In an ordered stop, about to stop child `seq`, with `next` to stop after it: has
/// `seq`'s thread raise `next`'s signal as soon as its exit is complete (a relay). The
/// next child then starts stopping while the supervisor reads the exit, instead of after
/// (one hand-off between threads per child instead of two). The supervisor still waits
/// for each child in turn, within its `Shutdown`, and raises each signal itself too
/// (again, harmlessly), so a child that ends some other way, or is abandoned, leaves the
/// order as it was. It is relayed only just before `seq`'s own stop, when every child due
/// to stop before it has exited, so whatever ends `seq`, `next` is signalled after it, in
/// order; `seq`'s thread raises it after its names are released and its monitors fired,
/// before its exit notice (the two reach the supervisor in either order).
pub(super) fn relay(table: &ChildTable, seq: u64, next: Option<u64>) {
    if let (Some(this), Some(next)) = (table.running(seq), next.and_then(|k| table.running(k))) {
        this.stop_next_on_exit(next.stop.weak());
    }
}

/// Stops one child taken out of the table: raises its stop (its hooks run here, with the
/// supervisor lent to them), waits as `shutdown` says, abandons it if late. With `keep`,
/// a thread that waits to be reused is kept for that.
pub(super) fn stop_one(at: &Around, mut w: Waiting, shutdown: Shutdown, keep: bool) -> Settled {
    lending(at.table, at.events, || w.run.stop.raise());
    w.until = Until::stop(clock::now(), shutdown);
    let mut all = [w];
    await_exits(at, &mut all);
    let [w] = all;
    w.settle(keep)
}

/// Stops many children at once (a dynamic supervisor's shutdown): raises every stop,
/// then waits for all of them together, each within its own deadline counted from that
/// moment.
pub(super) fn stop_all_at_once(at: &Around, stopping: Vec<Stopping>) -> Vec<Settled> {
    let start = clock::now();
    let mut waiting = Vec::with_capacity(stopping.len());
    for (run, id, shutdown) in stopping {
        lending(at.table, at.events, || run.stop.raise());
        waiting.push(Waiting::new(id, run, Until::stop(start, shutdown)));
    }
    await_exits(at, &mut waiting);
    waiting.into_iter().map(|w| w.settle(false)).collect()
}

/// Gives up on a child whose deadline has passed: releases its names and monitors at
/// once (the thread is detached when the wait is settled), and says so. If its last
/// incarnation ended just now, its final notice is on its way: it gets `GRACE` more.
fn abandon(at: &Around, w: &mut Waiting, now: Instant) {
    // The thread may have restarted itself since this supervisor last heard of it:
    // end whichever incarnation runs now. Once stopping, it does not restart again.
    let current = w.run.current_pid();
    if !pid::exit(current, &ExitReason::Killed) && !w.grace {
        w.grace = true;
        w.until = Until::after(now, GRACE);
        return;
    }
    log_abandoned(at.label, &w.id, current);
    at.emit(Event::ChildAbandoned {
        id: w.id.clone(),
        pid: current,
    });
    w.abandoned = Some(current);
}

/// The one log line for a child that did not stop in time.
pub(super) fn log_abandoned(label: &str, id: &str, pid: Pid) {
    note!(
        warn,
        "{label}: child {id:?} ({pid}) did not stop in time; abandoned (its thread is detached)"
    );
}

/// Waits until every child in `waiting` has exited or, at its deadline, been
/// abandoned, reading what the wait may take from the inbox (see `take_for_wait`).
fn await_exits(at: &Around, waiting: &mut [Waiting]) {
    let mut open = open_index(waiting);
    loop {
        take_for_wait(at, waiting, &mut open, true);
        let now = clock::now();
        let late: Vec<(Pid, usize)> = open
            .iter()
            .filter(|(_, &i)| waiting[i].until.passed(now))
            .map(|(&pid, &i)| (pid, i))
            .collect();
        for (pid, i) in late {
            abandon(at, &mut waiting[i], now);
            if !waiting[i].open() {
                open.remove(&pid);
            }
        }
        if open.is_empty() {
            return;
        }
        if poll_bell(at.inbox) {
            continue;
        }
        let next = open
            .values()
            .filter_map(|&i| match waiting[i].until {
                Until::Deadline(at) => Some(at),
                _ => None,
            })
            .min();
        match next {
            Some(deadline) => {
                let _ = clock::recv_deadline(at.inbox.bell(), deadline);
            }
            None => {
                let _ = at.inbox.bell().recv();
            }
        }
    }
}

/// Looks for the bell a few times, yielding in between.
fn poll_bell(inbox: &Inbox) -> bool {
    for _ in 0..POLLS {
        if inbox.bell().try_recv().is_ok() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Waits for a child's readiness report until its deadline, reading the inbox as a
/// stop's wait does (its restarts, and calls from inside it).
pub(super) fn await_ready(at: &Around, w: &mut Waiting, ready: &Receiver<ReadyMsg>) -> Readied {
    let bell = at.inbox.bell().clone();
    let report = |r: Result<ReadyMsg, _>| r.map_or(Readied::Silent, Readied::Report);
    loop {
        let waiting = std::slice::from_mut(w);
        take_for_wait(at, waiting, &mut open_index(waiting), false);
        let deadline = match w.until {
            Until::Deadline(deadline) => deadline,
            Until::Forever => {
                select! {
                    recv(ready) -> r => return report(r),
                    recv(bell) -> _ => continue,
                }
            }
            Until::Now => return ready.try_recv().map_or(Readied::TimedOut, Readied::Report),
        };
        let alarm = clock::alarm(deadline);
        select! {
            recv(ready) -> r => return report(r),
            recv(bell) -> _ => continue,
            recv(alarm.rx) -> _ => {
                return ready.try_recv().map_or(Readied::TimedOut, Readied::Report);
            }
            default(alarm.timeout) => {
                return ready.try_recv().map_or(Readied::TimedOut, Readied::Report);
            }
        }
    }
}

/// Takes out of the inbox, in order, what a wait may act on now; everything else stays
/// queued, in place, for the loop:
/// - the same-thread restarts of the awaited children (caught up on, so every crash is
///   reported before the last exit) and, with `exits`, their exit notices;
/// - calls from inside an awaited child's subtree: such a caller is what we wait for,
///   so a question is answered now and anything else refused (`WouldDeadlock`).
///
/// `open` indexes the children still waited for by their latest pid known here; an
/// exit taken closes its child (an abandoned child's later notices are stale: they
/// stay for the loop, which drops them).
fn take_for_wait(
    at: &Around,
    waiting: &mut [Waiting],
    open: &mut HashMap<Pid, usize, BuildU64>,
    exits: bool,
) {
    // The child each taken message concerns, in the order taken.
    let mut concerns = Vec::new();
    let within = |open: &HashMap<Pid, usize, BuildU64>, caller: Pid| {
        open.values()
            .any(|&i| pid::is_within(caller, waiting[i].run.current_pid()))
    };
    let taken = at.inbox.take(|msg| {
        let child = match msg {
            Msg::Restarted { old, new, .. } => open.remove(old).map(|i| {
                open.insert(*new, i);
                i
            }),
            Msg::Exit { pid, .. } if exits => open.remove(pid),
            Msg::Call(_, Some(caller)) => within(open, *caller).then_some(usize::MAX),
            _ => None,
        };
        concerns.extend(child);
        child.is_some()
    });
    for (msg, i) in taken.into_iter().zip(concerns) {
        match msg {
            Msg::Restarted {
                old, new, reason, ..
            } => {
                let id = waiting[i].id.clone();
                waiting[i].run.pid = new;
                report_local_restart(at, id, old, new, reason);
            }
            Msg::Exit { reason, .. } => waiting[i].exit = Some(reason),
            Msg::Call(req, _) => answer(req, at.table, at.events),
            Msg::RetryRestart { .. } | Msg::HandOver { .. } => {
                unreachable!("a wait takes only restarts, exits and calls")
            }
        }
    }
}

/// Reports a restart a child made on its own thread: one log record, and its two
/// events (telemetry had them from the child's thread, at the time).
pub(super) fn report_local_restart(
    at: &Around,
    id: Arc<str>,
    old: Pid,
    new: Pid,
    reason: ExitReason,
) {
    note!(
        info,
        "{}: child {id:?} restarted as {new} on its own thread ({old} exited: {reason})",
        at.label
    );
    at.events.emit_reported(at.table, || Event::ChildExited {
        id: id.clone(),
        pid: old,
        reason,
    });
    at.events
        .emit_reported(at.table, || Event::ChildRestarted { id, pid: new });
}
