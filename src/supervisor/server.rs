//! The supervisor event loop. One thread owns the child table; every change to it happens
//! here, in the order the inbox holds what happened (see `inbox` for the ordering rule).
//! Static and dynamic supervisors share this machinery.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Sender};
use parking_lot::Mutex;

use crate::child::context::{Context, History};
use crate::child::runner::{self, Spawned};
use crate::child::spec::{ChildSpec, Restart};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::hash::BuildU64;
use crate::pid::{self, Pid};
use crate::supervisor::event::{ChildStatus, Event};
use crate::supervisor::handover::HandOver;
use crate::supervisor::inbox::{ChildRef, Inbox, Msg, Reply, Request};
use crate::supervisor::intensity::Intensity;
use crate::supervisor::restart::permit;
use crate::supervisor::strategy::{AutoShutdown, Strategy};
use crate::supervisor::table::Child;

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
    pub(crate) auto_shutdown: AutoShutdown,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) sinks: Vec<Sender<Event>>,
    /// Sees every event first ([`SupervisorBuilder::on_event`](crate::SupervisorBuilder::on_event)).
    pub(crate) observer: Option<Observer>,
    /// Runs before the first child starts ([`SupervisorBuilder::on_start`](crate::SupervisorBuilder::on_start)).
    pub(crate) on_start: Option<OnStart>,
    /// What the global registry holds for a named supervisor: its typed handle (a
    /// `SupervisorRef`, or a `DynamicSupervisorRef`, which this module does not name).
    pub(crate) named: fn(crate::supervisor::Handle) -> crate::AnyValue,
}

impl Config {
    pub(super) fn strategy(&self) -> Strategy {
        match self.mode {
            Mode::Static(strategy) => strategy,
            Mode::Dynamic { .. } => Strategy::OneForOne,
        }
    }
}

/// A watcher of a supervisor's events, called on the supervisor's thread.
pub(crate) type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Runs on a supervisor's thread before its first child starts; an `Err` fails the start.
pub(crate) type OnStart =
    Arc<dyn Fn(&crate::SupervisorRef) -> Result<(), StartError> + Send + Sync>;

/// How a supervisor ended, beyond its `ExitReason` (which is `Shutdown` either way).
pub(crate) type EndSlot = Arc<Mutex<Option<SupervisorError>>>;

pub(crate) struct Server {
    pub(super) cfg: Arc<Config>,
    /// Children in start order (the key is a start sequence number).
    pub(super) children: BTreeMap<u64, Box<Child>>,
    pub(super) by_pid: HashMap<Pid, u64, BuildU64>,
    pub(super) next_seq: u64,
    /// Shared with children that may restart on their own thread (their permit).
    pub(super) intensity: Arc<Mutex<Intensity>>,
    /// In a `RefCell` so that a subscription can be answered from a `&Server` lent to
    /// user code on this thread (see `lending`).
    pub(super) subscribers: RefCell<Vec<Sender<Event>>>,
    pub(super) inbox: Arc<Inbox>,
    pub(super) end: Option<EndSlot>,
    /// Dynamic supervisors: what callers use to start children themselves.
    pub(super) handover: Option<Arc<HandOver>>,
    /// Threads whose last incarnation has exited, still tearing down: joined when this
    /// supervisor is next idle, and always before it exits.
    pub(super) exited: Vec<Spawned>,
    /// Restarts waiting out a backoff, by due time (an entry whose child no longer
    /// waits for that time is stale and skipped).
    pub(super) timers: BTreeSet<(Instant, u64)>,
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

pub(super) enum Flow {
    Continue,
    Exit,
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
                    cfg.auto_shutdown,
                    inbox.clone(),
                    Arc::new(move |spec: &ChildSpec| permit(spec, &window)),
                )))
            }
            Mode::Static(_) => None,
        };
        Server {
            handover,
            intensity,
            subscribers: RefCell::new(cfg.sinks.clone()),
            cfg,
            children: BTreeMap::new(),
            by_pid: HashMap::default(),
            next_seq: 0,
            inbox,
            end,
            exited: Vec::new(),
            timers: BTreeSet::new(),
        }
    }

    pub(super) fn is_dynamic(&self) -> bool {
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
    pub(super) fn let_go(&mut self, run: Spawned) {
        run.end();
        self.exited.push(run);
    }

    pub(super) fn join_exited(&mut self) {
        for run in self.exited.drain(..) {
            run.finish();
        }
    }

    /// Starts the static children in order; on a failure stops those started, in reverse.
    pub(crate) fn start_initial(&mut self) -> Result<(), StartError> {
        let cfg = self.cfg.clone();
        for spec in &cfg.children {
            match self.spawn_child(spec, History::default(), true) {
                Ok(Some(run)) => {
                    let pid = run.pid;
                    self.insert(spec.clone(), Some(run));
                    self.emit(Event::ChildStarted {
                        id: spec.id.clone(),
                        pid,
                    });
                }
                // It declined (OTP's `ignore`): the spec is kept, `Stopped` — unless it is
                // temporary (it would never run again).
                Ok(None) if spec.restart == Restart::Temporary => {}
                Ok(None) => self.insert(spec.clone(), None),
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
        let inbox = self.inbox.clone();
        while !ctx.is_stopping() {
            if let Flow::Exit = self.run_due_restarts() {
                break;
            }
            let Some(msg) = inbox.pop() else {
                self.join_exited();
                match self.timers.first() {
                    Some(&(at, _)) => select! {
                        recv(inbox.bell()) -> _ => continue,
                        recv(ctx.stop_signal()) -> _ => break,
                        default(at.saturating_duration_since(Instant::now())) => continue,
                    },
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

    pub(super) fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Exit { pid, reason } => return self.on_exit(pid, reason),
            Msg::Restarted {
                old,
                new,
                reason,
                at,
            } => self.on_local_restart(old, new, reason, at),
            Msg::RetryRestart { seq } => match self.children.get(&seq) {
                Some(c) if c.status == ChildStatus::Restarting && c.due.is_none() => {
                    return self.retry_restart(seq)
                }
                _ => {}
            },
            Msg::Call(req, caller) => self.serve(req, caller),
            Msg::HandOver { spec, run } => self.take_in(spec, run),
        }
        Flow::Continue
    }

    pub(super) fn serve(&mut self, req: Request, caller: Option<Pid>) {
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
            question => self.answer(question),
        }
    }

    /// Answers a question, which needs only a look at the table (so it can be answered
    /// from user code this supervisor runs on its own thread, see `lending`); refuses
    /// anything else with `WouldDeadlock`.
    pub(super) fn answer(&self, req: Request) {
        match req {
            Request::WhichChildren(reply) => {
                let _ = reply.send(self.which_children());
            }
            Request::CountChildren(reply) => {
                let _ = reply.send(self.count_children());
            }
            Request::ChildSpec(which, reply) => {
                let seq = self.find(&which);
                let spec = seq.map(|seq| self.children[&seq].spec.clone());
                let _ = reply.send(spec.ok_or(SupervisorError::NotFound));
            }
            Request::Subscribe(tx, reply) => {
                self.subscribers.borrow_mut().push(tx);
                self.update_watched();
                let _ = reply.send(());
            }
            other => other.refuse(SupervisorError::WouldDeadlock),
        }
    }

    /// Runs `f`, user code on this supervisor's own thread (a stop hook this thread
    /// raises, `on_event`), with this supervisor lent to it: a call `f` makes to this
    /// supervisor cannot wait for the loop (this thread is the loop), so
    /// [`answer_here`] answers its questions from the lent table and refuses the rest.
    pub(super) fn lending<R>(&self, f: impl FnOnce() -> R) -> R {
        LENT.set(self, f)
    }

    pub(super) fn update_watched(&self) {
        let watched = !self.subscribers.borrow().is_empty() || self.cfg.observer.is_some();
        self.inbox.set_watched(watched);
    }

    /// Takes a child a caller started on this supervisor's behalf into the table.
    pub(super) fn take_in(&mut self, spec: ChildSpec, run: Spawned) {
        run.mark_in_table();
        let (id, pid) = (spec.id.clone(), run.pid);
        self.insert(spec, Some(run));
        self.emit(Event::ChildStarted { id, pid });
    }

    /// Stops taking children from callers, and takes in those already handed over (so
    /// that the shutdown that follows stops them too).
    pub(super) fn close_handover(&mut self) {
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
                self.take_in(spec, run);
            }
        }
    }

    pub(super) fn start_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        spec.validate().map_err(SupervisorError::InvalidSpec)?;
        check_significant(&spec, self.cfg.auto_shutdown).map_err(SupervisorError::InvalidSpec)?;
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
        let run = match self.spawn_child(&spec, History::default(), true) {
            Ok(Some(run)) => run,
            started => {
                if let Some(handover) = &self.handover {
                    handover.release();
                } else if started.is_ok() && spec.restart != Restart::Temporary {
                    // Declined: a static supervisor keeps the spec, as OTP does (not a
                    // temporary one's: it would never run again).
                    self.insert(spec, None);
                }
                return Err(started
                    .err()
                    .map_or(SupervisorError::Ignored, SupervisorError::StartFailed));
            }
        };
        let pid = run.pid;
        let id = spec.id.clone();
        self.insert(spec, Some(run));
        self.emit(Event::ChildStarted { id, pid });
        Ok(pid)
    }

    /// Replies when the child has stopped — or, when the caller is the child itself (or
    /// inside its subtree), as soon as its stop is raised: the caller cannot wait for its
    /// own end, and returning lets it see the stop and exit.
    pub(super) fn terminate_child(
        &mut self,
        which: ChildRef,
        caller: Option<Pid>,
        reply: Reply<()>,
    ) {
        let Some(seq) = self.find(&which) else {
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

    pub(super) fn restart_child(&mut self, id: &str) -> Result<Pid, SupervisorError> {
        let seq = self.find_id(id).ok_or(SupervisorError::NotFound)?;
        match self.children[&seq].status {
            ChildStatus::Running => return Err(SupervisorError::Running),
            ChildStatus::Restarting => return Err(SupervisorError::Restarting),
            ChildStatus::Stopped => {}
        }
        let spec = self.children[&seq].spec.clone();
        let history = self.children[&seq].next_history();
        let run = self
            .spawn_child(&spec, history, true)
            .map_err(SupervisorError::StartFailed)?
            .ok_or(SupervisorError::Ignored)?;
        let pid = run.pid;
        self.set_running(seq, run);
        self.emit(Event::ChildStarted { id: spec.id, pid });
        Ok(pid)
    }

    pub(super) fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
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

    /// The child a handle names, if it is in the table.
    pub(super) fn find(&self, which: &ChildRef) -> Option<u64> {
        match which {
            ChildRef::Id(id) => self.find_id(id),
            ChildRef::Pid(pid) => self.by_pid.get(pid).copied(),
        }
    }

    pub(super) fn emit(&mut self, event: Event) {
        self.emit_with(|| event);
    }

    /// Emits the event `make` builds, building it only if someone observes events.
    pub(super) fn emit_with(&mut self, make: impl FnOnce() -> Event) {
        if self.cfg.observer.is_none() && self.subscribers.get_mut().is_empty() {
            return;
        }
        let event = make();
        if let Some(observe) = &self.cfg.observer {
            self.lending(|| observe(&event));
        }
        let subscribers = self.subscribers.get_mut();
        let before = subscribers.len();
        subscribers.retain(|s| s.send(event.clone()).is_ok());
        if subscribers.len() != before {
            self.update_watched();
        }
    }
}

scoped_tls::scoped_thread_local! {
    /// The supervisor lent to user code running on this thread (see `Server::lending`).
    static LENT: Server
}

/// Serves `req`, a call that the supervisor of `inbox` received from its own thread
/// (user code it runs: a stop hook it raised, `on_event`, `on_start`), where its loop
/// cannot serve it: a question is answered from the table it lent (if it did), anything
/// else — and a question with nothing lent — is refused with `WouldDeadlock`.
pub(crate) fn answer_here(inbox: &Arc<Inbox>, req: Request) {
    if !LENT.is_set() {
        return req.refuse(SupervisorError::WouldDeadlock);
    }
    LENT.with(|server| {
        if Arc::ptr_eq(&server.inbox, inbox) {
            server.answer(req);
        } else {
            req.refuse(SupervisorError::WouldDeadlock);
        }
    });
}

/// A significant child needs a supervisor that auto-shuts-down (OTP refuses the
/// combination too: such a child's exit would mean nothing).
pub(crate) fn check_significant(spec: &ChildSpec, setting: AutoShutdown) -> Result<(), String> {
    if spec.significant && setting == AutoShutdown::Never {
        return Err(format!(
            "child {:?} is significant, but the supervisor's auto_shutdown is Never",
            spec.id
        ));
    }
    Ok(())
}
