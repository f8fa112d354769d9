//! The supervisor event loop. One thread owns the child table; every change to it happens
//! here, in the order the inbox holds what happened (see `inbox` for the ordering rule).
//! Static and dynamic supervisors share this machinery.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::Mutex;

use crate::child::context::{Context, ReadyMsg};
use crate::child::runner::{self, Notify, RestartPermit, SpawnArgs, Spawned};
use crate::child::spec::{ChildKind, ChildSpec, Readiness, Restart, Shutdown};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::supervisor::event::{ChildCounts, ChildInfo, ChildStatus, Event};
use crate::supervisor::handover::{log_abandoned, not_started, ready_timeout, HandOver};
use crate::supervisor::inbox::{ChildRef, Inbox, Msg, Reply, Request};
use crate::supervisor::intensity::Intensity;
use crate::supervisor::strategy::{affected, should_restart, Strategy};

/// What kind of supervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Children given up front, restarted by a strategy, stopped in order.
    Static(Strategy),
    /// Children started at run time (one_for_one), up to a limit, stopped all at once.
    Dynamic { max_children: Option<usize> },
}

/// The settings a supervisor runs with, shared by all its incarnations.
pub(crate) struct Config {
    /// Names its threads: `label/child-id`.
    pub(crate) label: Arc<str>,
    pub(crate) mode: Mode,
    pub(crate) intensity: u32,
    pub(crate) period: Duration,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) sinks: Vec<Sender<Event>>,
    /// Sees every event first (the session layer counts restarts with it).
    pub(crate) observer: Option<Observer>,
}

impl Config {
    fn strategy(&self) -> Strategy {
        match self.mode {
            Mode::Static(strategy) => strategy,
            Mode::Dynamic { .. } => Strategy::OneForOne,
        }
    }
}

/// A crate-internal watcher of a supervisor's events, called on the supervisor's thread.
pub(crate) type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// How a supervisor ended, beyond its `ExitReason` (which is `Shutdown` either way).
pub(crate) type EndSlot = Arc<Mutex<Option<SupervisorError>>>;

struct Child {
    spec: ChildSpec,
    run: Option<Spawned>,
    status: ChildStatus,
    /// The pid the child is known by while it is not running (dynamic children keep
    /// their last pid while `Restarting`).
    last_pid: Option<Pid>,
}

pub(crate) struct Server {
    cfg: Arc<Config>,
    /// Children in start order (the key is a start sequence number).
    children: BTreeMap<u64, Child>,
    by_pid: HashMap<Pid, u64>,
    next_seq: u64,
    /// Shared with children that may restart on their own thread (their permit).
    intensity: Arc<Mutex<Intensity>>,
    subscribers: Vec<Sender<Event>>,
    inbox: Arc<Inbox>,
    end: Option<EndSlot>,
    /// Dynamic supervisors: what callers use to start children themselves.
    handover: Option<Arc<HandOver>>,
    /// Threads whose last incarnation has exited, still tearing down: joined when this
    /// supervisor is next idle, and always before it exits.
    exited: Vec<Spawned>,
}

impl Drop for Server {
    /// Whatever is still queued is dropped (callers get `NoSupervisor`), and no thread
    /// outlives its supervisor: those not joined yet are joined by this supervisor's
    /// thread right after it reports its own exit, before it ends.
    fn drop(&mut self) {
        drop(self.inbox.close());
        runner::join_after_exit(std::mem::take(&mut self.exited));
    }
}

enum Flow {
    Continue,
    Exit,
}

/// How many times a wait for a child's exit looks for it, yielding in between, before it
/// parks (a stopped child usually exits within microseconds; parking costs a wake-up).
const POLLS: usize = 20;

/// Until when to wait for a child to start or stop.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// Only what has arrived already.
    Now,
    Deadline(Instant),
    Forever,
}

impl Until {
    /// `d` after `from`; a deadline too far to represent means no deadline.
    fn after(from: Instant, d: Duration) -> Until {
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
struct Waiting {
    id: Arc<str>,
    run: Spawned,
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
    fn new(id: Arc<str>, run: Spawned, until: Until) -> Waiting {
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

impl Server {
    pub(crate) fn new(cfg: Arc<Config>, inbox: Arc<Inbox>, end: Option<EndSlot>) -> Server {
        inbox.set_watched(!cfg.sinks.is_empty() || cfg.observer.is_some());
        let intensity = Arc::new(Mutex::new(Intensity::new(cfg.intensity, cfg.period)));
        let handover = match cfg.mode {
            Mode::Dynamic { max_children } => {
                let window = intensity.clone();
                Some(Arc::new(HandOver::new(
                    Pid::current(),
                    cfg.label.clone(),
                    max_children,
                    inbox.clone(),
                    Arc::new(move |spec: &ChildSpec| permit(spec, &window)),
                )))
            }
            Mode::Static(_) => None,
        };
        Server {
            handover,
            intensity,
            subscribers: cfg.sinks.clone(),
            cfg,
            children: BTreeMap::new(),
            by_pid: HashMap::new(),
            next_seq: 0,
            inbox,
            end,
            exited: Vec::new(),
        }
    }

    fn is_dynamic(&self) -> bool {
        matches!(self.cfg.mode, Mode::Dynamic { .. })
    }

    /// What callers of a dynamic supervisor use to start children themselves.
    pub(crate) fn handover(&self) -> Option<Arc<HandOver>> {
        self.handover.clone()
    }

    /// Lets go of a child whose last exit has been read. Its thread still has to tear
    /// down (thread-local destructors, its stack); joining it at once would often put
    /// this thread to sleep in the middle of a stop sequence or a reply. It is joined
    /// when this supervisor is next idle, or before it exits.
    fn let_go(&mut self, run: Spawned) {
        run.end();
        self.exited.push(run);
    }

    fn join_exited(&mut self) {
        for run in self.exited.drain(..) {
            run.finish();
        }
    }

    /// Starts the static children in order; on a failure stops those started, in reverse.
    pub(crate) fn start_initial(&mut self) -> Result<(), StartError> {
        let cfg = self.cfg.clone();
        for spec in &cfg.children {
            match self.spawn_child(spec, true) {
                Ok(run) => {
                    let pid = run.pid;
                    self.insert(spec.clone(), run);
                    self.emit(Event::ChildStarted {
                        id: spec.id.clone(),
                        pid,
                    });
                }
                Err(e) => {
                    self.stop_all();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The loop: take the oldest message and act on it, until asked to stop or until
    /// intensity is exceeded; then stop every child.
    pub(crate) fn run(mut self, ctx: &Context) -> ExitReason {
        let inbox = self.inbox.clone();
        while !ctx.is_stopping() {
            let Some(msg) = inbox.pop() else {
                self.join_exited();
                select! {
                    recv(inbox.bell()) -> _ => continue,
                    recv(ctx.stop_signal()) -> _ => break,
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
            Msg::Restarted { old, new, reason } => self.on_local_restart(old, new, reason),
            Msg::RetryRestart { seq } => match self.children.get(&seq) {
                Some(c) if c.status == ChildStatus::Restarting => return self.restart(seq, None),
                _ => {}
            },
            Msg::Call(req, caller) => self.serve(req, caller),
            Msg::HandOver { spec, run } => self.adopt(spec, run),
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
            Request::WhichChildren(reply) => {
                let _ = reply.send(self.which_children());
            }
            Request::CountChildren(reply) => {
                let _ = reply.send(self.count_children());
            }
            Request::Subscribe(tx, reply) => {
                self.subscribers.push(tx);
                self.update_watched();
                let _ = reply.send(());
            }
        }
    }

    fn update_watched(&self) {
        let watched = !self.subscribers.is_empty() || self.cfg.observer.is_some();
        self.inbox.set_watched(watched);
    }

    // ---- dynamic hand-overs -------------------------------------------------------

    /// Takes a child a caller started on this supervisor's behalf into the table.
    fn adopt(&mut self, spec: ChildSpec, run: Spawned) {
        run.mark_known();
        let (id, pid) = (spec.id.clone(), run.pid);
        self.insert(spec, run);
        self.emit(Event::ChildStarted { id, pid });
    }

    /// Stops taking children from callers, and takes in those already handed over (so
    /// that the shutdown that follows stops them too).
    fn close_handover(&mut self) {
        let Some(handover) = self.handover.clone() else {
            return;
        };
        *handover.open.lock() = false;
        // Children that callers are still waiting for (readiness) will not be handed over
        // now: those callers stop them. Wait for that, refusing the calls that come
        // meanwhile (a pending child may be making one).
        while handover.pending.load(std::sync::atomic::Ordering::Acquire) > 0 {
            for msg in self.inbox.take(|m| matches!(m, Msg::Call(..))) {
                if let Msg::Call(req, _) = msg {
                    req.refuse(SupervisorError::NoSupervisor);
                }
            }
            let _ = self.inbox.bell().recv_timeout(Duration::from_millis(1));
        }
        // Every hand-over was queued while open, before anything its child sent.
        for msg in self.inbox.take(|m| matches!(m, Msg::HandOver { .. })) {
            if let Msg::HandOver { spec, run } = msg {
                self.adopt(spec, run);
            }
        }
    }

    // ---- exits and restarts -------------------------------------------------------

    fn on_exit(&mut self, pid: Pid, reason: ExitReason) -> Flow {
        // A notice from an incarnation we no longer track (stopped, replaced, abandoned,
        // or one that failed to start) is stale: it changes nothing.
        let Some(&seq) = self.by_pid.get(&pid) else {
            return Flow::Continue;
        };
        let Some(child) = self.children.get_mut(&seq) else {
            return Flow::Continue;
        };
        if child.run.as_ref().map(|r| r.pid) != Some(pid) {
            return Flow::Continue;
        }
        let run = child.run.take().expect("checked above");
        self.by_pid.remove(&pid);
        let restart = should_restart(child.spec.restart, &reason);
        let id = child.spec.id.clone();
        let temporary = child.spec.restart == Restart::Temporary;
        child.status = ChildStatus::Stopped;
        child.last_pid = Some(pid);
        // A thread a group restart can reuse waits for that; any other has sent this
        // notice as its last act and is let go of.
        let reuse = if restart && run.resumable {
            Some(run)
        } else {
            self.let_go(run);
            None
        };
        if !matches!(reason, ExitReason::Panicked(_) | ExitReason::Failed(_)) {
            // Crashes were reported once already, by the child's own thread.
            log::debug!("{}: child {id:?} ({pid}) exited: {reason}", self.cfg.label);
        }
        if !restart && (temporary || self.is_dynamic()) {
            // Gone before it is reported: whoever sees the exit finds its place free.
            self.remove(seq);
        }
        self.emit(Event::ChildExited { id, pid, reason });
        if restart {
            return self.restart(seq, reuse);
        }
        Flow::Continue
    }

    /// A child restarted itself on its own thread: record the new pid, report both steps.
    fn on_local_restart(&mut self, old: Pid, new: Pid, reason: ExitReason) {
        // Stale if the child was stopped, removed or abandoned meanwhile: its thread
        // reports its final exit on its own.
        let Some(&seq) = self.by_pid.get(&old) else {
            return;
        };
        let Some(child) = self.children.get_mut(&seq) else {
            return;
        };
        let Some(run) = child.run.as_mut().filter(|r| r.pid == old) else {
            return;
        };
        run.pid = new;
        child.last_pid = Some(new);
        let id = child.spec.id.clone();
        self.by_pid.remove(&old);
        self.by_pid.insert(new, seq);
        self.emit_restart(id, old, new, reason);
    }

    fn emit_restart(&mut self, id: Arc<str>, old: Pid, new: Pid, reason: ExitReason) {
        log::info!(
            "{}: child {id:?} restarted on its own thread ({old} -> {new})",
            self.cfg.label
        );
        self.emit(Event::ChildExited {
            id: id.clone(),
            pid: old,
            reason,
        });
        self.emit(Event::ChildRestarted { id, pid: new });
    }

    /// Restarts child `seq` (and, for group strategies, its group). Counts once toward
    /// intensity; on exceeding it, tells the loop to stop everything and exit.
    ///
    /// `reuse` is the dead child's thread if it waits to be reused.
    fn restart(&mut self, seq: u64, reuse: Option<Spawned>) -> Flow {
        let within = self.intensity.lock().add_restart(Instant::now());
        if !within {
            if let Some(run) = reuse {
                run.finish();
            }
            self.give_up();
            return Flow::Exit;
        }
        let order: Vec<u64> = self.children.keys().copied().collect();
        let pos = order
            .iter()
            .position(|&k| k == seq)
            .expect("restarting child exists");
        let group = order[affected(self.cfg.strategy(), pos, order.len())].to_vec();
        let mut parked = self.stop_group(seq, &group);
        if let Some(run) = reuse {
            parked.insert(seq, run);
        }
        self.start_group(&group, &mut parked);
        // Threads kept for members that were not started after all (a failed restart).
        for (_, run) in parked {
            run.finish();
        }
        Flow::Continue
    }

    /// Intensity exceeded: say so; the loop then stops everything.
    fn give_up(&mut self) {
        let (restarts, period) = (self.cfg.intensity, self.cfg.period);
        log::error!(
            "{}: restart intensity exceeded ({restarts} in {period:?}); stopping",
            self.cfg.label
        );
        self.emit(Event::IntensityExceeded { restarts, period });
        if let Some(end) = &self.end {
            *end.lock() = Some(SupervisorError::IntensityExceeded { restarts, period });
        }
    }

    /// Stops the members of `group` other than `failed`, in reverse start order; a
    /// temporary bystander is dropped. Returns the threads that wait to be resumed.
    fn stop_group(&mut self, failed: u64, group: &[u64]) -> HashMap<u64, Spawned> {
        let mut parked = HashMap::new();
        let stops: Vec<u64> = group
            .iter()
            .rev()
            .copied()
            .filter(|&k| k != failed)
            .collect();
        for (i, &k) in stops.iter().enumerate() {
            self.hand_on(k, stops.get(i + 1).copied());
            let temporary = self.children[&k].spec.restart == Restart::Temporary;
            if let Some(run) = self.stop_child_keeping(k, !temporary) {
                parked.insert(k, run);
            }
            if temporary {
                self.remove(k);
            }
        }
        parked
    }

    /// Starts what is left of `group` in start order, resuming parked threads. A member
    /// that fails to start is left `Restarting` (retried through the inbox), and the rest
    /// of the group waits for it.
    fn start_group(&mut self, group: &[u64], parked: &mut HashMap<u64, Spawned>) {
        let group: Vec<u64> = group
            .iter()
            .copied()
            .filter(|k| self.children.contains_key(k))
            .collect();
        for (i, &k) in group.iter().enumerate() {
            let spec = self.children[&k].spec.clone();
            let started = match parked.remove(&k) {
                Some(mut run) => {
                    run.resume();
                    Ok(run)
                }
                // A restart waits for readiness, as OTP's restart waits for `init`.
                None => self.spawn_child(&spec, true),
            };
            match started {
                Ok(run) => {
                    let pid = run.pid;
                    self.set_running(k, run);
                    log::info!("{}: child {:?} restarted ({pid})", self.cfg.label, spec.id);
                    self.emit(Event::ChildRestarted { id: spec.id, pid });
                }
                Err(e) => {
                    log::warn!("{}: restart of {:?} failed: {e}", self.cfg.label, spec.id);
                    let child = self.children.get_mut(&k).expect("child exists");
                    child.status = ChildStatus::Restarting;
                    if let Some(old) = child.last_pid {
                        // Dynamic children stay known by their old pid while restarting.
                        self.by_pid.insert(old, k);
                    }
                    for &later in &group[i + 1..] {
                        self.children.get_mut(&later).expect("child exists").status =
                            ChildStatus::Stopped;
                    }
                    self.emit(Event::RestartFailed {
                        id: spec.id,
                        error: error_chain(&e),
                    });
                    // Back to the loop before trying again, so that requests are served.
                    let _ = self.inbox.send(Msg::RetryRestart { seq: k });
                    break;
                }
            }
        }
    }

    // ---- starting children ----------------------------------------------------------

    /// Spawns a child; with `await_ready`, waits until it is started (as its readiness
    /// says), else counts it started once spawned.
    fn spawn_child(&mut self, spec: &ChildSpec, await_ready: bool) -> Result<Spawned, StartError> {
        let mut run = runner::spawn(SpawnArgs {
            id: spec.id.clone(),
            thread_name: format!("{}/{}", self.cfg.label, spec.id),
            body: spec.body.clone(),
            stack_size: spec.stack_size,
            wants_ready: spec.readiness != Readiness::Spawned,
            notify: Some(self.inbox.clone() as Arc<dyn Notify>),
            permit: self.permit(spec),
            resumable: self.resumable(spec),
            parent: None,
            handed_over: true,
        })
        .map_err(|source| StartError::Spawn {
            id: spec.id.to_string(),
            source,
        })?;
        let ready = run.ready.take();
        let Some(ready) = ready.filter(|_| await_ready) else {
            return Ok(run);
        };
        let until = match spec.readiness {
            Readiness::Within(d) => Until::after(Instant::now(), d),
            _ => Until::Forever,
        };
        let mut waiting = Waiting::new(spec.id.clone(), run, until);
        let report = self.await_ready(&mut waiting, &ready);
        let id = spec.id.to_string();
        match report {
            Some(Some(ReadyMsg::Ready)) => Ok(waiting.run),
            None => {
                let timeout = ready_timeout(spec);
                let pid = waiting.run.pid;
                // Its exit, if any, stays queued: the stop below takes it.
                self.stop_waiting(waiting, spec.shutdown, false);
                log::warn!(
                    "{}: child {id:?} ({pid}) not ready in {timeout:?}",
                    self.cfg.label
                );
                Err(StartError::ReadyTimeout { id, timeout })
            }
            Some(report) => {
                waiting.run.finish();
                Err(not_started(id, report))
            }
        }
    }

    /// Whether `spec`'s crashes may be restarted on the child's own thread, and with
    /// what leave.
    fn permit(&self, spec: &ChildSpec) -> Option<RestartPermit> {
        if self.cfg.strategy() != Strategy::OneForOne {
            return None;
        }
        permit(spec, &self.intensity)
    }

    /// Whether `spec`'s thread may be reused by group restarts: plain workers under
    /// one_for_all or rest_for_one (one_for_one restarts on the child's own thread
    /// already), with no readiness wait and no request for a fresh thread.
    fn resumable(&self, spec: &ChildSpec) -> bool {
        self.cfg.strategy() != Strategy::OneForOne
            && spec.kind == ChildKind::Worker
            && spec.readiness == Readiness::Spawned
            && !spec.fresh_thread
    }

    // ---- stopping children ----------------------------------------------------------

    /// Stops every child: a static supervisor one at a time in reverse start order, a
    /// dynamic one all at once (after taking in the children handed over meanwhile).
    fn stop_everything(&mut self) {
        if self.is_dynamic() {
            self.close_handover();
            self.stop_all_concurrently();
        } else {
            self.stop_all();
        }
    }

    /// Stops every child, one at a time, in reverse start order.
    fn stop_all(&mut self) {
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
    /// leaves the order as it was.
    fn hand_on(&self, seq: u64, next: Option<u64>) {
        let run = |k: u64| self.children.get(&k).and_then(|c| c.run.as_ref());
        if let (Some(this), Some(next)) = (run(seq), next.and_then(run)) {
            this.pass_baton(next.stop.baton());
        }
    }

    /// Stops child `seq` if it runs: raise its signal, wait its shutdown, abandon it if
    /// late. The child stays in the table, `Stopped` (a dynamic one is removed). With
    /// `keep`, a thread that waits to be reused is returned, not ended.
    fn stop_child_keeping(&mut self, seq: u64, keep: bool) -> Option<Spawned> {
        let child = self.children.get_mut(&seq)?;
        child.status = ChildStatus::Stopped;
        let run = child.run.take()?;
        child.last_pid = Some(run.pid);
        let (id, shutdown) = (child.spec.id.clone(), child.spec.shutdown);
        self.by_pid.remove(&run.pid);
        let waiting = Waiting::new(id.clone(), run, Until::Now);
        let (pid, reason, kept) = self.stop_waiting(waiting, shutdown, keep);
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
    fn stop_waiting(
        &mut self,
        mut w: Waiting,
        shutdown: Shutdown,
        keep: bool,
    ) -> (Pid, ExitReason, Option<Spawned>) {
        w.run.stop.raise();
        w.until = Until::stop(Instant::now(), shutdown);
        let mut all = [w];
        self.await_exits(&mut all);
        let [w] = all;
        self.settle(w, keep)
    }

    /// Dynamic supervisors: raise every stop signal, then wait for all of them at once,
    /// each within its own deadline counted from that moment.
    fn stop_all_concurrently(&mut self) {
        let start = Instant::now();
        let mut waiting = Vec::new();
        for child in self.children.values_mut() {
            child.status = ChildStatus::Stopped;
            if let Some(run) = child.run.take() {
                run.stop.raise();
                let until = Until::stop(start, child.spec.shutdown);
                waiting.push(Waiting::new(child.spec.id.clone(), run, until));
            }
        }
        self.by_pid.clear();
        self.await_exits(&mut waiting);
        for w in waiting {
            let id = w.id.clone();
            let (pid, reason, _) = self.settle(w, false);
            self.emit(Event::ChildExited { id, pid, reason });
        }
    }

    /// How a waited-for child ended: its last pid and its exit as read, or, late,
    /// abandoned. With `keep`, a thread that waits to be reused is returned, not ended.
    fn settle(&mut self, w: Waiting, keep: bool) -> (Pid, ExitReason, Option<Spawned>) {
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
    fn abandon(&mut self, w: &mut Waiting, now: Instant) {
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

    // ---- waiting --------------------------------------------------------------------

    /// Waits until every child in `waiting` has exited or, at its deadline, been
    /// abandoned, reading what the wait may take from the inbox (see `take_for_wait`).
    fn await_exits(&mut self, waiting: &mut [Waiting]) {
        loop {
            self.take_for_wait(waiting, true);
            let now = Instant::now();
            for w in waiting.iter_mut() {
                if w.open() && w.until.passed(now) {
                    self.abandon(w, now);
                }
            }
            if !waiting.iter().any(Waiting::open) {
                return;
            }
            if self.poll_bell() {
                continue;
            }
            let next = waiting
                .iter()
                .filter(|w| w.open())
                .filter_map(|w| match w.until {
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
    fn poll_bell(&self) -> bool {
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
    fn await_ready(
        &mut self,
        w: &mut Waiting,
        ready: &Receiver<ReadyMsg>,
    ) -> Option<Option<ReadyMsg>> {
        let bell = self.inbox.bell().clone();
        loop {
            self.take_for_wait(std::slice::from_mut(w), false);
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
    fn take_for_wait(&mut self, waiting: &mut [Waiting], exits: bool) {
        // An abandoned child's later notices are stale: they stay for the loop to drop.
        let open = || waiting.iter().filter(|w| w.open());
        let mut awaited: Vec<Pid> = open().map(|w| w.run.pid).collect();
        let roots: Vec<Pid> = open().map(|w| w.run.current_pid()).collect();
        let taken = self.inbox.take(|msg| match msg {
            Msg::Restarted { old, new, .. } => match awaited.iter_mut().find(|p| **p == *old) {
                Some(p) => {
                    *p = *new;
                    true
                }
                None => false,
            },
            Msg::Exit { pid, .. } => exits && awaited.contains(pid),
            Msg::Call(_, Some(caller)) => roots.iter().any(|r| pid::is_within(*caller, *r)),
            _ => false,
        });
        for msg in taken {
            match msg {
                Msg::Restarted { old, new, reason } => {
                    if let Some(w) = waiting.iter_mut().find(|w| w.open() && w.run.pid == old) {
                        w.run.pid = new;
                        let id = w.id.clone();
                        self.emit_restart(id, old, new, reason);
                    }
                }
                Msg::Exit { pid, reason } => {
                    if let Some(w) = waiting.iter_mut().find(|w| w.open() && w.run.pid == pid) {
                        w.exit = Some(reason);
                    }
                }
                Msg::Call(req, caller) if req.is_question() => self.serve(req, caller),
                Msg::Call(req, _) => req.refuse(SupervisorError::WouldDeadlock),
                Msg::RetryRestart { .. } | Msg::HandOver { .. } => {
                    unreachable!("a wait takes only restarts, exits and calls")
                }
            }
        }
    }

    // ---- requests -----------------------------------------------------------------

    fn start_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        spec.validate().map_err(SupervisorError::InvalidSpec)?;
        match &self.handover {
            Some(handover) => handover.reserve()?,
            None => {
                if let Some(child) = self.find_id(&spec.id).map(|s| &self.children[&s]) {
                    return Err(match &child.run {
                        Some(run) => SupervisorError::AlreadyStarted(run.pid),
                        None => SupervisorError::AlreadyPresent,
                    });
                }
            }
        }
        let run = match self.spawn_child(&spec, true) {
            Ok(run) => run,
            Err(e) => {
                if let Some(handover) = &self.handover {
                    handover.release();
                }
                return Err(SupervisorError::StartFailed(e));
            }
        };
        let pid = run.pid;
        let id = spec.id.clone();
        self.insert(spec, run);
        self.emit(Event::ChildStarted { id, pid });
        Ok(pid)
    }

    /// Replies when the child has stopped — or, when the caller is the child itself (or
    /// inside its subtree), as soon as its stop is raised: the caller cannot wait for its
    /// own end, and returning lets it see the stop and exit.
    fn terminate_child(&mut self, which: ChildRef, caller: Option<Pid>, reply: Reply<()>) {
        let seq = match which {
            ChildRef::Id(id) => self.find_id(&id),
            ChildRef::Pid(pid) => self.by_pid.get(&pid).copied(),
        };
        let Some(seq) = seq else {
            let _ = reply.send(Err(SupervisorError::NotFound));
            return;
        };
        let from_inside = match (&self.children[&seq].run, caller) {
            (Some(run), Some(caller)) => pid::is_within(caller, run.current_pid()),
            _ => false,
        };
        if from_inside {
            let _ = reply.send(Ok(()));
        }
        self.stop_child_keeping(seq, false);
        // A dynamic child is forgotten (a running one already was, before its exit was
        // reported; this covers one that was `Restarting`); a temporary one's spec goes.
        let temporary = self
            .children
            .get(&seq)
            .is_some_and(|c| c.spec.restart == Restart::Temporary);
        if self.is_dynamic() || temporary {
            self.remove(seq);
        }
        if !from_inside {
            let _ = reply.send(Ok(()));
        }
    }

    fn restart_child(&mut self, id: &str) -> Result<Pid, SupervisorError> {
        let seq = self.find_id(id).ok_or(SupervisorError::NotFound)?;
        match self.children[&seq].status {
            ChildStatus::Running => return Err(SupervisorError::Running),
            ChildStatus::Restarting => return Err(SupervisorError::Restarting),
            ChildStatus::Stopped => {}
        }
        let spec = self.children[&seq].spec.clone();
        let run = self
            .spawn_child(&spec, true)
            .map_err(SupervisorError::StartFailed)?;
        let pid = run.pid;
        self.set_running(seq, run);
        self.emit(Event::ChildStarted { id: spec.id, pid });
        Ok(pid)
    }

    fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let seq = self.find_id(id).ok_or(SupervisorError::NotFound)?;
        match self.children[&seq].status {
            ChildStatus::Running => Err(SupervisorError::Running),
            ChildStatus::Restarting => Err(SupervisorError::Restarting),
            ChildStatus::Stopped => {
                self.remove(seq);
                Ok(())
            }
        }
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .values()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.run.as_ref().map(|r| r.pid),
                status: c.status,
                kind: c.spec.kind,
                restart: c.spec.restart,
            })
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts {
            specs: self.children.len(),
            ..ChildCounts::default()
        };
        for c in self.children.values() {
            counts.active += usize::from(c.run.is_some());
            match c.spec.kind {
                ChildKind::Worker => counts.workers += 1,
                ChildKind::Supervisor => counts.supervisors += 1,
            }
        }
        counts
    }

    // ---- the table ----------------------------------------------------------------

    fn find_id(&self, id: &str) -> Option<u64> {
        self.children
            .iter()
            .find(|(_, c)| &*c.spec.id == id)
            .map(|(&seq, _)| seq)
    }

    fn insert(&mut self, spec: ChildSpec, run: Spawned) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_pid.insert(run.pid, seq);
        self.children.insert(
            seq,
            Child {
                spec,
                last_pid: Some(run.pid),
                run: Some(run),
                status: ChildStatus::Running,
            },
        );
    }

    fn set_running(&mut self, seq: u64, run: Spawned) {
        let child = self.children.get_mut(&seq).expect("child exists");
        if let Some(old) = child.last_pid.replace(run.pid) {
            self.by_pid.remove(&old);
        }
        self.by_pid.insert(run.pid, seq);
        child.run = Some(run);
        child.status = ChildStatus::Running;
    }

    fn remove(&mut self, seq: u64) {
        if let Some(child) = self.children.remove(&seq) {
            if let Some(handover) = &self.handover {
                handover.release();
            }
            if let Some(pid) = child.last_pid {
                if self.by_pid.get(&pid) == Some(&seq) {
                    self.by_pid.remove(&pid);
                }
            }
        }
    }

    fn emit(&mut self, event: Event) {
        if let Some(observe) = &self.cfg.observer {
            observe(&event);
        }
        let before = self.subscribers.len();
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
        if self.subscribers.len() != before {
            self.update_watched();
        }
    }
}

/// The leave for a plain worker (no readiness wait, no fresh thread) to restart itself
/// on its own thread: its restart type says so and the restart fits the intensity window.
/// A restart that would exceed the window is left to the supervisor.
fn permit(spec: &ChildSpec, intensity: &Arc<Mutex<Intensity>>) -> Option<RestartPermit> {
    let eligible = spec.kind == ChildKind::Worker
        && spec.readiness == Readiness::Spawned
        && !spec.fresh_thread;
    let (restart, window) = (spec.restart, intensity.clone());
    eligible.then(|| -> RestartPermit {
        Arc::new(move |reason: &ExitReason| {
            should_restart(restart, reason) && window.lock().try_add_restart(Instant::now())
        })
    })
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
