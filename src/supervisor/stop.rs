//! Stopping children and waiting for them: ordered stops (one at a time, in reverse start
//! order, each handing the next its signal), concurrent stops (dynamic supervisors, each
//! child against its own deadline), abandonment, and the waits that read the inbox by its
//! ordering rule (see `inbox`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::child::context::ReadyMsg;
use crate::child::runner::Spawned;
use crate::child::spec::Shutdown;
use crate::error::SupervisorError;
use crate::exit::ExitReason;
use crate::hash::BuildU64;
use crate::pid::{self, Pid};
use crate::supervisor::event::Event;
use crate::supervisor::handover::log_abandoned;
use crate::supervisor::inbox::Msg;
use crate::supervisor::server::Server;

/// How many times a wait for a child's exit looks for it, yielding in between, before it
/// parks (a stopped child usually exits within microseconds; parking costs a wake-up).
const POLLS: usize = 20;

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
}

/// The children of a wait still waited for, by the pid of their latest incarnation.
fn open_index(waiting: &[Waiting]) -> HashMap<Pid, usize, BuildU64> {
    let open = waiting.iter().enumerate().filter(|(_, w)| w.open());
    open.map(|(i, w)| (w.run.pid, i)).collect()
}

impl Server {
    /// Stops every child: a static supervisor one at a time in reverse start order, a
    /// dynamic one all at once (after taking in the children handed over meanwhile).
    pub(super) fn stop_everything(&mut self) {
        if self.is_dynamic() {
            self.close_handover();
            self.stop_all_concurrently();
        } else {
            self.stop_all();
        }
    }

    /// Stops every child, one at a time, in reverse start order.
    pub(super) fn stop_all(&mut self) {
        let order: Vec<u64> = self.children.keys().rev().copied().collect();
        for (i, &seq) in order.iter().enumerate() {
            self.hand_on(seq, order.get(i + 1).copied());
            self.stop_child_keeping(seq, false);
        }
    }

    /// In an ordered stop, about to stop child `seq`, with `next` to stop after it: has
    /// `seq`'s thread raise `next`'s signal as soon as its exit is complete. The next
    /// child then starts stopping while this supervisor reads the exit, instead of after
    /// (one hand-off between threads per child instead of two). This supervisor still
    /// waits for each child in turn, within its `Shutdown`, and raises each signal itself
    /// too (again, harmlessly), so a child that ends some other way, or is abandoned,
    /// leaves the order as it was. It is handed on only just before `seq`'s own stop,
    /// when every child due to stop before it has exited, so whatever ends `seq`, `next`
    /// is signalled after it, in order; its thread raises it after its names are released
    /// and its monitors fired, before its exit notice (the two reach this supervisor in
    /// either order).
    pub(super) fn hand_on(&self, seq: u64, next: Option<u64>) {
        let run = |k: u64| self.children.get(&k).and_then(|c| c.run.as_ref());
        if let (Some(this), Some(next)) = (run(seq), next.and_then(run)) {
            this.stop_next_on_exit(next.stop.weak());
        }
    }

    /// Stops child `seq` if it runs: raise its signal, wait its shutdown, abandon it if
    /// late. The child stays in the table, `Stopped` (a dynamic one is removed). With
    /// `keep`, a thread that waits to be reused is returned, not ended.
    pub(super) fn stop_child_keeping(&mut self, seq: u64, keep: bool) -> Option<Spawned> {
        let (run, id, shutdown) = self.take_running(seq)?;
        let waiting = Waiting::new(id.clone(), run, Until::Now);
        let (pid, reason, kept) = self.stop_waiting(waiting, shutdown, keep);
        self.record_exit(seq, &reason);
        if self.is_dynamic() {
            // A stopped dynamic child is forgotten; its place is free before its exit
            // is reported.
            self.remove(seq);
        }
        self.emit(Event::ChildExited { id, pid, reason });
        kept
    }

    /// Raises the stop of a child no longer in the table, waits for it as `shutdown`
    /// says, and abandons it if late (see `settle`).
    pub(super) fn stop_waiting(
        &mut self,
        mut w: Waiting,
        shutdown: Shutdown,
        keep: bool,
    ) -> (Pid, ExitReason, Option<Spawned>) {
        self.lending(|| w.run.stop.raise());
        w.until = Until::stop(Instant::now(), shutdown);
        let mut all = [w];
        self.await_exits(&mut all);
        let [w] = all;
        self.settle(w, keep)
    }

    /// Dynamic supervisors: raise every stop signal, then wait for all of them at once,
    /// each within its own deadline counted from that moment.
    pub(super) fn stop_all_concurrently(&mut self) {
        let start = Instant::now();
        let mut waiting = Vec::new();
        for (run, id, shutdown) in self.take_all_running() {
            self.lending(|| run.stop.raise());
            waiting.push(Waiting::new(id, run, Until::stop(start, shutdown)));
        }
        self.await_exits(&mut waiting);
        for w in waiting {
            let id = w.id.clone();
            let (pid, reason, _) = self.settle(w, false);
            self.emit(Event::ChildExited { id, pid, reason });
        }
    }

    /// How a waited-for child ended: its last pid and its exit as read, or, late,
    /// abandoned. With `keep`, a thread that waits to be reused is returned, not ended.
    pub(super) fn settle(&mut self, w: Waiting, keep: bool) -> (Pid, ExitReason, Option<Spawned>) {
        match (w.exit, w.abandoned) {
            (Some(reason), _) => {
                let (pid, run) = (w.run.pid, w.run);
                if keep && run.resumable {
                    (pid, reason, Some(run))
                } else {
                    self.let_go(run);
                    (pid, reason, None)
                }
            }
            // Dropping the run detaches the thread.
            (None, Some(pid)) => (pid, ExitReason::Killed, None),
            (None, None) => unreachable!("settled only once decided"),
        }
    }

    /// Gives up on a child whose deadline has passed: releases its names and monitors at
    /// once (the thread is detached when the wait is settled), and says so. If its last
    /// incarnation ended just now, its final notice is on its way: it gets a second more.
    pub(super) fn abandon(&mut self, w: &mut Waiting, now: Instant) {
        // The thread may have restarted itself since this supervisor last heard of it:
        // end whichever incarnation runs now. Once stopping, it does not restart again.
        let current = w.run.current_pid();
        if !pid::exit(current, &ExitReason::Killed) && !w.grace {
            w.grace = true;
            w.until = Until::after(now, Duration::from_secs(1));
            return;
        }
        log_abandoned(&self.cfg.label, &w.id, current);
        self.emit(Event::ChildAbandoned {
            id: w.id.clone(),
            pid: current,
        });
        w.abandoned = Some(current);
    }

    /// Waits until every child in `waiting` has exited or, at its deadline, been
    /// abandoned, reading what the wait may take from the inbox (see `take_for_wait`).
    pub(super) fn await_exits(&mut self, waiting: &mut [Waiting]) {
        let mut open = open_index(waiting);
        loop {
            self.take_for_wait(waiting, &mut open, true);
            let now = Instant::now();
            let late: Vec<(Pid, usize)> = open
                .iter()
                .filter(|(_, &i)| waiting[i].until.passed(now))
                .map(|(&pid, &i)| (pid, i))
                .collect();
            for (pid, i) in late {
                self.abandon(&mut waiting[i], now);
                if !waiting[i].open() {
                    open.remove(&pid);
                }
            }
            if open.is_empty() {
                return;
            }
            if self.poll_bell() {
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
                Some(at) => {
                    let _ = self
                        .inbox
                        .bell()
                        .recv_timeout(at.saturating_duration_since(now));
                }
                None => {
                    let _ = self.inbox.bell().recv();
                }
            }
        }
    }

    /// Looks for the bell a few times, yielding in between.
    pub(super) fn poll_bell(&self) -> bool {
        for _ in 0..POLLS {
            if self.inbox.bell().try_recv().is_ok() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    /// Waits for a child's readiness report until its deadline (`None`: timed out; the
    /// inner `None`: the channel closed without a report).
    pub(super) fn await_ready(
        &mut self,
        w: &mut Waiting,
        ready: &Receiver<ReadyMsg>,
    ) -> Option<Option<ReadyMsg>> {
        let bell = self.inbox.bell().clone();
        loop {
            let waiting = std::slice::from_mut(w);
            self.take_for_wait(waiting, &mut open_index(waiting), false);
            let at = match w.until {
                Until::Deadline(at) => at,
                Until::Forever => {
                    select! {
                        recv(ready) -> r => return Some(r.ok()),
                        recv(bell) -> _ => continue,
                    }
                }
                Until::Now => return ready.try_recv().ok().map(Some),
            };
            select! {
                recv(ready) -> r => return Some(r.ok()),
                recv(bell) -> _ => continue,
                default(at.saturating_duration_since(Instant::now())) => {
                    return ready.try_recv().ok().map(Some);
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
    pub(super) fn take_for_wait(
        &mut self,
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
        let taken = self.inbox.take(|msg| {
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
                    self.emit_restart(id, old, new, reason);
                }
                Msg::Exit { reason, .. } => waiting[i].exit = Some(reason),
                Msg::Call(req, caller) if req.is_question() => self.serve(req, caller),
                Msg::Call(req, _) => req.refuse(SupervisorError::WouldDeadlock),
                Msg::RetryRestart { .. } | Msg::HandOver { .. } => {
                    unreachable!("a wait takes only restarts, exits and calls")
                }
            }
        }
    }
}
