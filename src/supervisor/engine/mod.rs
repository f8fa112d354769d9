//! The supervisor's loop: one thread owns the child table, the intensity window and the
//! event subscribers, and acts on what the inbox holds, in order (see `inbox` for the
//! ordering rule). It decides and calls down: the table changes itself (`table`), waits
//! and stops are `stop`'s, starts are `start`'s, answers and events are `answers`'s, the
//! decisions are `strategy`'s and `intensity`'s. Static and dynamic supervisors share it.
//!
//! Where to find each step:
//!
//! - the restart decision for an exit: [`Engine::on_exit`];
//! - the strategy's group: [`ChildTable::group_of`] (with `strategy::affected`);
//! - the intensity window: [`Engine::count_restart`] (with `intensity::Intensity`);
//! - the shutdown sequence: [`Engine::stop_everything`];
//! - a group restart (one_for_all, rest_for_one): `group.rs`.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;
use parking_lot::Mutex;

use crate::child::context::{Context, History};
use crate::child::spawned::{self, Spawned};
use crate::child::spec::{ChildSpec, Restart};
use crate::clock::{self, Clock};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::supervisor::answers::{answer, Events};
use crate::supervisor::config::{Config, EndSlot, Mode};
use crate::supervisor::event::{ChildStatus, Event};
use crate::supervisor::handover::HandOver;
use crate::supervisor::inbox::{ChildRef, Inbox, Msg, Reply, Request};
use crate::supervisor::intensity::Intensity;
use crate::supervisor::restart::{due_after, permit};
use crate::supervisor::start::{self, Started};
use crate::supervisor::stop::{self, Around, Joins, Settled, Until, Waiting};
use crate::supervisor::strategy::Strategy;
use crate::supervisor::strategy::{auto_shutdown, check_significant, should_restart};
use crate::supervisor::table::{ChildTable, Due};
use crate::telemetry::note;

mod group;

/// Whether the loop goes on.
enum Flow {
    Continue,
    Exit,
}

/// The parts of an engine a wait needs (see `stop::Around`), borrowed field by field so
/// that the engine's other fields stay free meanwhile.
macro_rules! around {
    ($engine:expr) => {
        Around {
            inbox: &$engine.inbox,
            table: &$engine.table,
            events: &$engine.events,
            label: &$engine.cfg.label,
            threads: $engine.handover.as_ref().and_then(|h| h.threads.as_ref()),
            stack_size: $engine.cfg.stack_size,
        }
    };
}

/// A running supervisor; see the module docs.
pub(crate) struct Engine {
    cfg: Arc<Config>,
    table: ChildTable,
    events: Events,
    /// Shared with children that may restart on their own thread (their permit).
    intensity: Arc<Mutex<Intensity>>,
    inbox: Arc<Inbox>,
    end: Option<EndSlot>,
    /// Dynamic supervisors: what callers use to start children themselves.
    handover: Option<Arc<HandOver>>,
    /// Threads whose last incarnation has exited, to join when idle.
    joins: Joins,
    /// The clock its deadlines are read on (see `clock`): its builder's, or its parent's.
    pub(crate) clock: Clock,
}

impl Drop for Engine {
    /// Whatever is still queued is dropped (callers get `NoSupervisor`), and no thread
    /// outlives its supervisor: those not joined yet are joined by this supervisor's
    /// thread right after it reports its own exit, before it ends.
    fn drop(&mut self) {
        drop(self.inbox.close());
        spawned::join_after_exit(self.joins.take());
        if let Some(threads) = self.handover.as_ref().and_then(|h| h.threads.clone()) {
            spawned::close_after_exit(threads);
        }
    }
}

impl Engine {
    pub(crate) fn new(cfg: Arc<Config>, inbox: Arc<Inbox>, end: Option<EndSlot>) -> Engine {
        let clock = match cfg.clock.is_manual() {
            true => cfg.clock.clone(),
            false => Clock::current(),
        };
        let intensity = Arc::new(Mutex::new(Intensity::new(cfg.intensity, cfg.period)));
        let handover = match cfg.mode {
            Mode::Dynamic { .. } => {
                let window = intensity.clone();
                Some(Arc::new(HandOver::new(
                    Pid::current(),
                    &cfg,
                    inbox.clone(),
                    Arc::new(move |spec: &ChildSpec| permit(Strategy::OneForOne, spec, &window)),
                    clock.clone(),
                )))
            }
            Mode::Static(_) => None,
        };
        Engine {
            table: ChildTable::new(cfg.strategy(), handover.clone()),
            events: Events::new(
                cfg.label.clone(),
                cfg.observer.clone(),
                cfg.sinks.clone(),
                inbox.clone(),
            ),
            handover,
            intensity,
            cfg,
            inbox,
            end,
            joins: Joins::default(),
            clock,
        }
    }

    fn is_dynamic(&self) -> bool {
        self.handover.is_some()
    }

    /// What callers of a dynamic supervisor use to start children themselves.
    pub(crate) fn handover(&self) -> Option<Arc<HandOver>> {
        self.handover.clone()
    }

    fn emit(&self, event: Event) {
        self.events.emit(&self.table, event);
    }

    /// Starts a child for this supervisor (see `start::start_child`).
    fn spawn(&mut self, spec: &ChildSpec, history: History) -> Result<Started, StartError> {
        let strategy = self.cfg.strategy();
        let at = around!(self);
        start::start_child(
            &at,
            strategy,
            &self.intensity,
            spec,
            history,
            &mut self.joins,
        )
    }

    /// Starts the static children in order; on a failure stops those started, in reverse.
    pub(crate) fn start_initial(&mut self) -> Result<(), StartError> {
        let cfg = self.cfg.clone();
        for spec in &cfg.children {
            match self.spawn(spec, History::default()) {
                Ok(Started::Running(run)) => {
                    let pid = run.pid;
                    self.table.insert(spec.clone(), Some(run));
                    self.emit(Event::ChildStarted {
                        id: spec.id.clone(),
                        pid,
                    });
                }
                // It declined (OTP's `ignore`): the spec is kept, `Stopped` — unless it is
                // temporary (it would never run again).
                Ok(Started::Declined) if spec.restart == Restart::Temporary => {}
                Ok(Started::Declined) => self.table.insert(spec.clone(), None),
                Err(e) => {
                    self.stop_all();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The loop: run the restarts that are due, take the oldest message and act on it,
    /// until asked to stop, until intensity is exceeded, or until significant children
    /// end it; then stop every child.
    pub(crate) fn run(mut self, ctx: &Context) -> ExitReason {
        let _clock = self.clock.install();
        let inbox = self.inbox.clone();
        while !ctx.is_stopping() {
            if let Flow::Exit = self.run_due_restarts() {
                break;
            }
            let Some(msg) = inbox.pop() else {
                self.joins.join_all();
                match self.table.next_due() {
                    Some(at) => {
                        let alarm = clock::alarm(at);
                        select! {
                            recv(inbox.bell()) -> _ => continue,
                            recv(ctx.stop_signal()) -> _ => break,
                            recv(alarm.rx) -> _ => continue,
                            default(alarm.timeout) => continue,
                        }
                    }
                    None => select! {
                        recv(inbox.bell()) -> _ => continue,
                        recv(ctx.stop_signal()) -> _ => break,
                    },
                }
            };
            if let Flow::Exit = self.handle(msg) {
                break;
            }
        }
        self.stop_everything();
        self.emit(Event::SupervisorStopped {
            reason: ExitReason::Shutdown,
        });
        ExitReason::Shutdown
    }

    fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Exit { pid, reason } => return self.on_exit(pid, reason),
            Msg::Restarted {
                old,
                new,
                reason,
                at,
            } => {
                // Stale if the child was stopped, removed or abandoned meanwhile: its
                // thread reports its final exit on its own.
                if let Some(id) = self.table.record_local_restart(old, new, &reason, at) {
                    stop::report_local_restart(&around!(self), id, old, new, reason);
                }
            }
            Msg::RetryRestart { seq } => match self.table.get(seq) {
                Some(c) if c.status == ChildStatus::Restarting && !c.waits_out_backoff() => {
                    return self.retry_restart(seq)
                }
                _ => {}
            },
            Msg::Call(req, caller) => self.serve(req, caller),
            Msg::HandOver { spec, run } => self.take_in(spec, run),
        }
        Flow::Continue
    }

    fn serve(&mut self, req: Request, caller: Option<Pid>) {
        match req {
            Request::StartChild(spec, reply) => {
                let _ = reply.send(self.start_child(spec));
            }
            Request::TerminateChild(which, reply) => self.terminate_child(which, caller, reply),
            Request::RestartChild(id, reply) => {
                let _ = reply.send(self.restart_child(&id));
            }
            Request::DeleteChild(id, reply) => {
                let _ = reply.send(self.delete_child(&id));
            }
            question => answer(question, &self.table, &self.events),
        }
    }

    /// Takes a child a caller started on this supervisor's behalf into the table.
    fn take_in(&mut self, spec: ChildSpec, run: Spawned) {
        run.mark_in_table();
        let (id, pid) = (spec.id.clone(), run.pid);
        self.table.insert(spec, Some(run));
        self.emit(Event::ChildStarted { id, pid });
    }

    /// Stops taking children from callers, and takes in those already handed over (so
    /// that the shutdown that follows stops them too).
    fn close_handover(&mut self) {
        if let Some(handover) = self.handover.clone() {
            for (spec, run) in handover.close() {
                self.take_in(spec, run);
            }
        }
    }

    fn start_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        spec.validate().map_err(SupervisorError::InvalidSpec)?;
        check_significant(&spec, self.cfg.auto_shutdown).map_err(SupervisorError::InvalidSpec)?;
        match &self.handover {
            Some(handover) => handover.reserve()?,
            None => {
                if let Some(seq) = self.table.find_id(&spec.id) {
                    return Err(match self.table.running(seq) {
                        Some(run) => SupervisorError::AlreadyStarted(run.pid),
                        None => SupervisorError::AlreadyPresent,
                    });
                }
            }
        }
        let started = self.spawn(&spec, History::default());
        let run = match started {
            Ok(Started::Running(run)) => run,
            Ok(Started::Declined) => {
                // A static supervisor keeps the spec, as OTP does (not a temporary one's:
                // it would never run again).
                match &self.handover {
                    Some(handover) => handover.release(),
                    None if spec.restart != Restart::Temporary => {
                        self.table.insert(spec, None);
                    }
                    None => {}
                }
                return Err(SupervisorError::Ignored);
            }
            Err(e) => {
                if let Some(handover) = &self.handover {
                    handover.release();
                }
                return Err(SupervisorError::StartFailed(e));
            }
        };
        let pid = run.pid;
        let id = spec.id.clone();
        self.table.insert(spec, Some(run));
        self.emit(Event::ChildStarted { id, pid });
        Ok(pid)
    }

    /// Replies when the child has stopped — or, when the caller is the child itself (or
    /// inside its subtree), as soon as its stop is raised: the caller cannot wait for its
    /// own end, and returning lets it see the stop and exit.
    fn terminate_child(&mut self, which: ChildRef, caller: Option<Pid>, reply: Reply<()>) {
        let Some(seq) = self.table.find(&which) else {
            let _ = reply.send(Err(SupervisorError::NotFound));
            return;
        };
        let from_inside = match (self.table.running(seq), caller) {
            (Some(run), Some(caller)) => pid::is_within(caller, run.current_pid()),
            _ => false,
        };
        if from_inside {
            let _ = reply.send(Ok(()));
        }
        self.stop_child(seq, false);
        if !from_inside {
            let _ = reply.send(Ok(()));
        }
    }

    fn restart_child(&mut self, id: &str) -> Result<Pid, SupervisorError> {
        let seq = self.table.find_id(id).ok_or(SupervisorError::NotFound)?;
        let child = self.table.get(seq).expect("found");
        match child.status {
            ChildStatus::Running => return Err(SupervisorError::Running),
            ChildStatus::Restarting => return Err(SupervisorError::Restarting),
            ChildStatus::Stopped => {}
        }
        let (spec, history) = (child.spec.clone(), child.next_history());
        let run = match self.spawn(&spec, history) {
            Ok(Started::Running(run)) => run,
            Ok(Started::Declined) => return Err(SupervisorError::Ignored),
            Err(e) => return Err(SupervisorError::StartFailed(e)),
        };
        let pid = run.pid;
        self.table.set_running(seq, run);
        self.emit(Event::ChildStarted { id: spec.id, pid });
        Ok(pid)
    }

    fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let seq = self.table.find_id(id).ok_or(SupervisorError::NotFound)?;
        self.table.delete(seq).map_err(|status| match status {
            ChildStatus::Restarting => SupervisorError::Restarting,
            _ => SupervisorError::Running,
        })
    }

    /// An exit read from the inbox: the restart decision (restart type × exit reason),
    /// then a restart, or the child leaves (temporary, dynamic), or significant children
    /// end the supervisor.
    fn on_exit(&mut self, pid: Pid, reason: ExitReason) -> Flow {
        // A notice from an incarnation we no longer track (stopped, replaced, abandoned,
        // or one that failed to start) is stale: it changes nothing.
        let Some((seq, run)) = self.table.take_exited(pid, &reason) else {
            return Flow::Continue;
        };
        let spec = &self.table.get(seq).expect("just exited").spec;
        let restart = should_restart(spec.restart, &reason);
        let id = spec.id.clone();
        let significant = spec.significant;
        // A thread a group restart can reuse waits for that; any other has sent this
        // notice as its last act and is let go of.
        let reuse = if restart && run.resumable {
            Some(run)
        } else {
            self.joins.let_go(run);
            None
        };
        if !matches!(reason, ExitReason::Panicked(_) | ExitReason::Failed(_)) {
            // Crashes were reported once already, by the child's own thread.
            note!(
                debug,
                "{}: child {id:?} ({pid}) exited: {reason}",
                self.cfg.label
            );
        }
        if !restart {
            // Gone before it is reported: whoever sees the exit finds its place free.
            self.table.forget_if_done(seq);
        }
        // Only a significant child's id is needed after the event (for its log line).
        let significant = significant.then(|| id.clone());
        self.emit(Event::ChildExited { id, pid, reason });
        if restart {
            return self.restart(seq, reuse);
        }
        match significant {
            Some(id) if auto_shutdown(self.cfg.auto_shutdown, self.table.significant_alive()) => {
                log::info!(
                    "{}: significant child {id:?} exited; shutting down ({:?})",
                    self.cfg.label,
                    self.cfg.auto_shutdown
                );
                Flow::Exit
            }
            _ => Flow::Continue,
        }
    }

    /// Child `seq` exited and is to be restarted (with, for group strategies, its
    /// group): counts once toward intensity — on exceeding it, tells the loop to stop
    /// everything and exit — then restarts now, or after its backoff.
    ///
    /// `reuse` is the dead child's thread if it waits to be reused.
    fn restart(&mut self, seq: u64, reuse: Option<Spawned>) -> Flow {
        if !self.count_restart() {
            if let Some(run) = reuse {
                run.finish();
            }
            return Flow::Exit;
        }
        match self.table.backoff_delay(seq) {
            Some(delay) => {
                if let Some(run) = reuse {
                    self.joins.let_go(run);
                }
                self.schedule_restart(seq, delay, false);
            }
            None => self.restart_now(seq, reuse),
        }
        Flow::Continue
    }

    /// Another try at a restart that failed: counts toward intensity like the first.
    fn retry_restart(&mut self, seq: u64) -> Flow {
        if !self.count_restart() {
            return Flow::Exit;
        }
        self.restart_now(seq, None);
        Flow::Continue
    }

    /// Adds a restart to the intensity window; `false` (having given up, and said so)
    /// when that exceeds it.
    fn count_restart(&mut self) -> bool {
        let within = self.intensity.lock().add_restart(clock::now());
        if !within {
            self.give_up();
        }
        within
    }

    /// Intensity exceeded: say so; the loop then stops everything.
    fn give_up(&mut self) {
        let (restarts, period) = (self.cfg.intensity, self.cfg.period);
        note!(
            error,
            "{}: restart intensity exceeded ({restarts} in {period:?}); stopping",
            self.cfg.label
        );
        self.emit(Event::IntensityExceeded { restarts, period });
        if let Some(end) = &self.end {
            *end.lock() = Some(SupervisorError::IntensityExceeded { restarts, period });
        }
    }

    /// Stops child `seq`'s group now and has the loop restart it after `delay` (see
    /// `run_due_restarts`); `counts`: the restart counts toward intensity when it runs.
    fn schedule_restart(&mut self, seq: u64, delay: Duration, counts: bool) {
        let group = self.table.group_of(seq);
        for (_, run) in self.stop_group(seq, &group) {
            self.joins.let_go(run);
        }
        let pos = group.iter().position(|&k| k == seq).unwrap_or(0);
        let due = Due {
            at: due_after(delay),
            counts,
        };
        self.table.schedule(seq, due, &group[pos + 1..]);
        let id = self.table.get(seq).expect("scheduled").spec.id.clone();
        note!(
            info,
            "{}: child {id:?} restarts in {delay:?} (backoff)",
            self.cfg.label
        );
        self.emit(Event::RestartScheduled { id, delay });
    }

    /// Runs the restarts whose backoff is over.
    fn run_due_restarts(&mut self) -> Flow {
        if self.table.next_due().is_none() {
            return Flow::Continue;
        }
        let now = clock::now();
        while let Some((seq, due)) = self.table.pop_due(now) {
            if due.counts {
                if let Flow::Exit = self.retry_restart(seq) {
                    return Flow::Exit;
                }
            } else {
                self.restart_now(seq, None);
            }
        }
        Flow::Continue
    }

    /// Restarts child `seq` and its group now: stops the members still running, starts
    /// them all again.
    fn restart_now(&mut self, seq: u64, reuse: Option<Spawned>) {
        let group = self.table.group_of(seq);
        let mut parked = self.stop_group(seq, &group);
        if let Some(run) = reuse {
            parked.insert(seq, run);
        }
        self.start_group(&group, &mut parked);
        // Threads kept for members that were not started after all (a failed restart).
        for (_, run) in parked {
            run.finish();
        }
    }

    /// The shutdown sequence: a static supervisor stops its children one at a time in
    /// reverse start order; a dynamic one takes in the children handed over meanwhile,
    /// then stops all at once.
    fn stop_everything(&mut self) {
        if self.is_dynamic() {
            self.close_handover();
            let stopping = self.table.take_all_running();
            for settled in stop::stop_all_at_once(&around!(self), stopping) {
                self.report_stopped(settled);
            }
        } else {
            self.stop_all();
        }
    }

    /// Stops every child, one at a time, in reverse start order.
    fn stop_all(&mut self) {
        let order = self.table.order(true);
        for (i, &seq) in order.iter().enumerate() {
            stop::relay(&self.table, seq, order.get(i + 1).copied());
            self.stop_child(seq, false);
        }
    }

    /// Stops child `seq` (if it runs: raise its signal, wait its shutdown, abandon it if
    /// late); it is `Stopped`, or leaves the table if it has no place left (temporary,
    /// dynamic). With `keep`, a thread that waits to be reused is returned, not ended.
    fn stop_child(&mut self, seq: u64, keep: bool) -> Option<Spawned> {
        let stopping = self.table.take_running(seq);
        let kept = stopping.and_then(|(run, id, shutdown)| {
            let waiting = Waiting::new(id, run, Until::Now);
            let settled = stop::stop_one(&around!(self), waiting, shutdown, keep);
            self.table.record_exit(seq, &settled.reason);
            // Its place is free before its exit is reported.
            self.table.forget_if_done(seq);
            self.report_stopped(settled)
        });
        // Not running (waiting to restart): it leaves if it has no place left.
        self.table.forget_if_done(seq);
        kept
    }

    /// Takes what a stop settled on (its thread, see `Joins::settled`) and reports the
    /// exit; returns the thread if it is kept for a restart.
    fn report_stopped(&mut self, settled: Settled) -> Option<Spawned> {
        let Settled {
            id,
            pid,
            reason,
            thread,
        } = settled;
        let kept = self.joins.settled(thread);
        self.emit(Event::ChildExited { id, pid, reason });
        kept
    }
}
