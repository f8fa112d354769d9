//! The supervisor event loop. One thread owns the child table; every change to it happens
//! here, in the order events arrive: requests from handles and exit notices from children.
//! Static and dynamic supervisors share this machinery; `Mode` says which one runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};
use parking_lot::{Mutex, MutexGuard};

use crate::child::context::{Context, ReadyMsg};
use crate::child::runner::{self, LocalRestart, SpawnArgs, Spawned};
use crate::child::spec::{ChildKind, ChildSpec, Readiness, Restart, Shutdown};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::supervisor::event::{ChildCounts, ChildInfo, ChildStatus, Event};
use crate::supervisor::intensity::Intensity;
use crate::supervisor::strategy::{affected, should_restart, Strategy};

/// Everything a supervisor's inbox carries.
pub(crate) enum Msg {
    /// A child's thread has exited (sent last, after its names were released).
    Exit { pid: Pid, reason: ExitReason },
    /// A request from a handle, with its own reply channel, and the calling process (if
    /// the caller is one).
    Call(Request, Option<Pid>),
    /// A child crashed and restarted itself on its own thread (the fast path), already
    /// counted in the intensity window.
    Restarted {
        old: Pid,
        new: Pid,
        reason: ExitReason,
    },
    /// A restart failed earlier: try again (sent by the supervisor to itself, so that
    /// requests that arrived meanwhile — a shutdown, a `terminate_child` — are served first).
    RetryRestart { seq: u64 },
    /// A dynamic child a caller spawned on this supervisor's behalf (see `Fast`); its
    /// thread waits until this message is sent.
    Adopt { spec: ChildSpec, run: Spawned },
}

/// What a caller needs to start a dynamic supervisor's child itself — on its own thread,
/// handing the running child over afterwards — instead of a round trip through the
/// supervisor's thread: the child's settings, and a reservation against `max_children`.
pub(crate) struct Fast {
    sup: Pid,
    label: Arc<str>,
    max: Option<usize>,
    /// Children in the table plus those reserved by callers about to hand one over.
    count: AtomicUsize,
    /// Whether the supervisor still takes children. Held while a caller spawns and hands
    /// over, so that a shutdown either sees the hand-over in its inbox or refuses it.
    open: Mutex<bool>,
    /// Children a caller has started and is waiting for (readiness) before it hands them
    /// over; a shutdown waits until there are none.
    pending: AtomicUsize,
    inbox: Sender<Msg>,
    intensity: Arc<Mutex<Intensity>>,
    log: Sender<Msg>,
    watched: Arc<AtomicBool>,
}

impl Fast {
    /// Reserves a place against `max_children`.
    fn reserve(&self) -> Result<(), SupervisorError> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if self.max.is_some_and(|max| before >= max) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(SupervisorError::MaxChildren);
        }
        Ok(())
    }

    fn release(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts `spec` on the calling thread and hands it to the supervisor.
    ///
    /// A plain worker is spawned and handed over under the `open` lock. A child that
    /// reports readiness (a worker with `ready_timeout`, a nested supervisor) is awaited
    /// by the caller, outside the lock, and handed over once ready; until then it is
    /// `pending`, and a shutdown waits for the caller to hand it over or stop it.
    ///
    /// `Err(spec)` when no place is free by the count here: exits the supervisor has not
    /// read yet still hold theirs (a caller may have seen such an exit through a monitor
    /// or an exit hook, which come first), so the caller asks the supervisor, which reads
    /// every exit sent before the request.
    pub(crate) fn start(&self, spec: ChildSpec) -> Result<Result<Pid, SupervisorError>, ChildSpec> {
        if let Err(e) = spec.validate() {
            return Ok(Err(SupervisorError::InvalidSpec(e)));
        }
        let open = self.open.lock();
        if !*open {
            return Ok(Err(SupervisorError::NoSupervisor));
        }
        if self.reserve().is_err() {
            return Err(spec);
        }
        Ok(self.start_reserved(open, spec))
    }

    /// `start`, once a place is reserved (the `open` lock still held).
    fn start_reserved(
        &self,
        open: MutexGuard<'_, bool>,
        spec: ChildSpec,
    ) -> Result<Pid, SupervisorError> {
        let awaits = spec.readiness != Readiness::Spawned;
        let local = (!spec.fresh_thread && !awaits).then(|| LocalRestart {
            restart: spec.restart,
            intensity: self.intensity.clone(),
            log: self.log.clone(),
            watched: self.watched.clone(),
        });
        let spawned = runner::spawn(SpawnArgs {
            id: spec.id.clone(),
            thread_name: format!("{}/{}", self.label, spec.id),
            body: spec.body.clone(),
            stack_size: spec.stack_size,
            wants_ready: awaits,
            notify: Some(self.inbox.clone()),
            local,
            resumable: false,
            parent: Some(self.sup),
            handed_over: false,
        });
        let mut run = match spawned {
            Ok(run) => run,
            Err(source) => {
                self.release();
                return Err(SupervisorError::StartFailed(StartError::Spawn {
                    id: spec.id.to_string(),
                    source,
                }));
            }
        };
        if !awaits {
            return self.hand_over(open, spec, run);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        drop(open);
        let ready = run.ready.take().expect("a readiness child has a channel");
        let outcome = match spec.readiness {
            Readiness::Within(d) => ready.recv_timeout(d).map_err(|e| e.is_timeout()),
            _ => ready.recv().map_err(|_| false),
        };
        let id = spec.id.to_string();
        let failed = match outcome {
            Ok(ReadyMsg::Ready) => {
                let open = self.open.lock();
                if *open {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    return self.hand_over(open, spec, run);
                }
                // Shut down meanwhile: the shutdown waits for us to stop what we started.
                drop(open);
                self.stop_pending(&spec, run);
                SupervisorError::NoSupervisor
            }
            Err(true) => {
                let timeout = ready_timeout(&spec);
                let pid = run.pid;
                self.stop_pending(&spec, run);
                log::warn!(
                    "{}: child {id:?} ({pid}) not ready in {timeout:?}",
                    self.label
                );
                SupervisorError::StartFailed(StartError::ReadyTimeout { id, timeout })
            }
            report => {
                self.forget_pending(run);
                SupervisorError::StartFailed(not_started(id, report.ok()))
            }
        };
        self.release();
        Err(failed)
    }

    /// Sends a started child to the supervisor (still holding the `open` lock).
    fn hand_over(
        &self,
        open: MutexGuard<'_, bool>,
        spec: ChildSpec,
        run: Spawned,
    ) -> Result<Pid, SupervisorError> {
        let pid = run.pid;
        let handed_over = run.handed_over();
        // Like a restart notice: through the restart log when nobody watches the events
        // (read before every message, without waking the supervisor), else the inbox.
        let sent = if self.watched.load(Ordering::Acquire) {
            self.inbox.send(Msg::Adopt { spec, run })
        } else {
            self.log.send(Msg::Adopt { spec, run })
        };
        handed_over();
        if let Err(returned) = sent {
            // Cannot happen while open (the supervisor reads both until it closes); be
            // safe: stop the child we started.
            self.release();
            if let Msg::Adopt { run, .. } = returned.into_inner() {
                run.stop.raise();
                run.finish();
            }
            return Err(SupervisorError::NoSupervisor);
        }
        drop(open);
        Ok(pid)
    }

    /// A pending child that has already exited: let it send its (stale) exit notice,
    /// join it, and stop counting it as pending.
    fn forget_pending(&self, run: Spawned) {
        (run.handed_over())();
        run.finish();
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Stops a pending child as its supervisor would (its shutdown setting, then
    /// abandonment), and stops counting it as pending. It never was in the table, so no
    /// event tells of it: the log does.
    fn stop_pending(&self, spec: &ChildSpec, run: Spawned) {
        let exited = pid::monitor(run.pid);
        run.stop.raise();
        let stopped = match spec.shutdown {
            Shutdown::Timeout(d) => exited.recv_timeout(d).is_ok(),
            Shutdown::Infinity => exited.recv().is_ok(),
            Shutdown::Immediate => exited.try_recv().is_ok(),
        };
        (run.handed_over())();
        if stopped {
            run.finish();
        } else {
            pid::exit(run.pid, &ExitReason::Killed);
            log::warn!(
                "{}: child {:?} ({}) did not stop in time; abandoned (its thread is detached)",
                self.label,
                spec.id,
                run.pid
            );
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a child that reports readiness did not start, from its report (`None`: none came;
/// the runner always reports before it drops the channel, so this is only for safety).
fn not_started(id: String, report: Option<ReadyMsg>) -> StartError {
    match report {
        Some(ReadyMsg::Exited(reason)) => StartError::ChildExited { id, reason },
        Some(ReadyMsg::Failed(source)) => StartError::Nested {
            id,
            source: Box::new(source),
        },
        Some(ReadyMsg::Ready) | None => StartError::ChildExited {
            id,
            reason: ExitReason::Killed,
        },
    }
}

/// The readiness deadline of a child whose bounded wait timed out.
fn ready_timeout(spec: &ChildSpec) -> Duration {
    match spec.readiness {
        Readiness::Within(d) => d,
        _ => unreachable!("only a bounded wait times out"),
    }
}

type Reply<T> = Sender<Result<T, SupervisorError>>;

/// How a handle names a child: static supervisors by id, dynamic ones by pid.
pub(crate) enum ChildRef {
    Id(String),
    Pid(Pid),
}

pub(crate) enum Request {
    StartChild(ChildSpec, Reply<Pid>),
    TerminateChild(ChildRef, Reply<()>),
    RestartChild(String, Reply<Pid>),
    DeleteChild(String, Reply<()>),
    WhichChildren(Sender<Vec<ChildInfo>>),
    CountChildren(Sender<ChildCounts>),
    Subscribe(Sender<Event>, Sender<()>),
}

/// The settings a supervisor runs with, shared by all its incarnations.
pub(crate) struct Config {
    /// Names its threads: `label/child-id`.
    pub(crate) label: Arc<str>,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: u32,
    pub(crate) period: std::time::Duration,
    /// `Some` for a dynamic supervisor.
    pub(crate) dynamic: Option<Option<usize>>,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) sinks: Vec<Sender<Event>>,
    /// Sees every event first (the session layer counts restarts with it).
    pub(crate) observer: Option<Observer>,
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
    /// Shared with children that may restart on their own thread.
    intensity: Arc<Mutex<Intensity>>,
    subscribers: Vec<Sender<Event>>,
    inbox_tx: Sender<Msg>,
    inbox_rx: Receiver<Msg>,
    /// Messages taken from the inbox while waiting for a child to start or stop, to be
    /// handled, in order, before the inbox.
    deferred: VecDeque<Msg>,
    /// Exit notices of children no longer in `by_pid` (being stopped), taken from the
    /// inbox during a wait; emptied after each message the loop handles.
    early_exits: HashMap<Pid, ExitReason>,
    /// Same-thread restarts nobody is watching are written here instead of to the inbox,
    /// so that they do not wake this thread; it reads them before anything else it does.
    log_tx: Sender<Msg>,
    log_rx: Receiver<Msg>,
    /// Whether anyone watches the events (subscribers or an observer): then same-thread
    /// restarts are sent to the inbox, so that their events go out at once.
    watched: Arc<AtomicBool>,
    end: Option<EndSlot>,
    /// Dynamic supervisors: what callers use to start children themselves.
    fast: Option<Arc<Fast>>,
    /// Threads whose last incarnation has exited, still tearing down: joined when this
    /// supervisor is next idle, and always before it exits (see `bury`).
    graves: Vec<Spawned>,
}

impl Drop for Server {
    /// No thread outlives its supervisor: those let go of and not joined yet are joined
    /// by this supervisor's thread right after it reports its own exit, before it ends.
    fn drop(&mut self) {
        runner::join_after_exit(std::mem::take(&mut self.graves));
    }
}

enum Flow {
    Continue,
    Exit,
}

/// How many times a wait for a child's exit looks at the inbox, yielding in between,
/// before it parks.
const POLLS: usize = 20;

/// Looks at `inbox` up to `POLLS` times, yielding in between.
fn poll(inbox: &Receiver<Msg>) -> Option<Msg> {
    for _ in 0..POLLS {
        if let Ok(msg) = inbox.try_recv() {
            return Some(msg);
        }
        std::thread::yield_now();
    }
    None
}

/// What a wait for a child ended with.
enum Awaited {
    /// Its readiness report (`None`: the channel closed without one).
    Ready(Option<ReadyMsg>),
    Exited(ExitReason),
    TimedOut,
}

/// How long to wait for a child to start or stop.
#[derive(Clone, Copy)]
enum Until {
    Now,
    Deadline(Instant),
    Forever,
}

impl Request {
    /// Answers a request with `error` without serving it.
    fn refuse(self, error: SupervisorError) {
        match self {
            Request::StartChild(_, r) | Request::RestartChild(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::TerminateChild(_, r) | Request::DeleteChild(_, r) => {
                let _ = r.send(Err(error));
            }
            // Questions are always answered; dropping the reply is the fallback.
            Request::WhichChildren(_) | Request::CountChildren(_) | Request::Subscribe(..) => {}
        }
    }
}

impl Server {
    pub(crate) fn new(
        cfg: Arc<Config>,
        inbox_tx: Sender<Msg>,
        inbox_rx: Receiver<Msg>,
        end: Option<EndSlot>,
    ) -> Server {
        let (log_tx, log_rx) = unbounded();
        let watched = Arc::new(AtomicBool::new(
            !cfg.sinks.is_empty() || cfg.observer.is_some(),
        ));
        let intensity = Arc::new(Mutex::new(Intensity::new(cfg.intensity, cfg.period)));
        let fast = cfg.dynamic.map(|max| {
            Arc::new(Fast {
                sup: Pid::current(),
                label: cfg.label.clone(),
                max,
                count: AtomicUsize::new(0),
                open: Mutex::new(true),
                pending: AtomicUsize::new(0),
                inbox: inbox_tx.clone(),
                intensity: intensity.clone(),
                log: log_tx.clone(),
                watched: watched.clone(),
            })
        });
        Server {
            log_tx,
            log_rx,
            watched,
            fast,
            intensity,
            subscribers: cfg.sinks.clone(),
            cfg,
            children: BTreeMap::new(),
            by_pid: HashMap::new(),
            next_seq: 0,
            inbox_tx,
            inbox_rx,
            deferred: VecDeque::new(),
            early_exits: HashMap::new(),
            end,
            graves: Vec::new(),
        }
    }

    fn is_dynamic(&self) -> bool {
        self.cfg.dynamic.is_some()
    }

    /// Lets go of a child whose last exit has been read. Its thread still has to tear
    /// down (thread-local destructors, its stack); joining it at once would often put
    /// this thread to sleep until the kernel wakes it, in the middle of a stop sequence
    /// or a reply. It is joined when this supervisor is next idle, or before it exits.
    fn bury(&mut self, run: Spawned) {
        run.end();
        self.graves.push(run);
    }

    /// Joins the threads `bury` let go of.
    fn reap(&mut self) {
        for run in self.graves.drain(..) {
            run.finish();
        }
    }

    /// What callers of a dynamic supervisor use to start children themselves.
    pub(crate) fn fast(&self) -> Option<Arc<Fast>> {
        self.fast.clone()
    }

    /// Takes a child a caller started on this supervisor's behalf into the table.
    fn adopt(&mut self, spec: ChildSpec, run: Spawned) {
        run.mark_known();
        let (id, pid) = (spec.id.clone(), run.pid);
        self.insert(spec, run);
        self.emit(Event::ChildStarted { id, pid });
    }

    /// Stops taking children from callers, and takes in those already handed over (so
    /// that the shutdown that follows stops them too).
    fn close(&mut self) {
        let Some(fast) = self.fast.clone() else {
            return;
        };
        *fast.open.lock() = false;
        // Children that callers are still waiting for (readiness) will not be handed over
        // now: those callers stop them. Wait for that, refusing the requests that come
        // meanwhile (a pending child may be making one).
        while fast.pending.load(Ordering::Acquire) > 0 {
            match self.inbox_rx.recv_timeout(Duration::from_millis(1)) {
                Ok(Msg::Call(request, _)) => request.refuse(SupervisorError::NoSupervisor),
                Ok(other) => self.deferred.push_back(other),
                Err(_) => {}
            }
        }
        // Every hand-over was sent while open: it is in the restart log or queued now,
        // or deferred.
        self.read_log();
        let queued = self.inbox_rx.len();
        let pending: Vec<Msg> = self.inbox_rx.try_iter().take(queued).collect();
        self.deferred.extend(pending);
        for msg in std::mem::take(&mut self.deferred) {
            match msg {
                Msg::Adopt { spec, run } => self.adopt(spec, run),
                other => self.deferred.push_back(other),
            }
        }
    }

    /// Starts the static children in order; on a failure stops those started, in reverse.
    pub(crate) fn start_initial(&mut self) -> Result<(), StartError> {
        let cfg = self.cfg.clone();
        for spec in &cfg.children {
            match self.spawn_child(spec) {
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

    /// The loop: serve the inbox until asked to stop or until intensity is exceeded.
    pub(crate) fn run(mut self, ctx: &Context) -> ExitReason {
        let inbox = self.inbox_rx.clone();
        loop {
            let msg = match self.deferred.pop_front() {
                Some(msg) if !ctx.is_stopping() => msg,
                // Deferred requests still waiting at shutdown get `NoSupervisor`.
                Some(_) => break,
                None => {
                    self.reap();
                    let msg = select! {
                        recv(inbox) -> msg => msg,
                        recv(ctx.stop_signal()) -> _ => break,
                    };
                    // We hold a sender ourselves, so the inbox never disconnects.
                    let Ok(msg) = msg else { break };
                    msg
                }
            };
            self.read_log();
            if let Flow::Exit = self.handle(msg) {
                // Children handed over meanwhile are stopped too.
                if self.is_dynamic() {
                    self.close();
                    self.stop_all_concurrently();
                }
                self.emit(Event::SupervisorStopped {
                    reason: ExitReason::Shutdown,
                });
                return ExitReason::Shutdown;
            }
        }
        self.read_log();
        self.close();
        if self.is_dynamic() {
            self.stop_all_concurrently();
        } else {
            self.stop_all();
        }
        self.emit(Event::SupervisorStopped {
            reason: ExitReason::Shutdown,
        });
        ExitReason::Shutdown
    }

    /// Applies the same-thread restarts written to the log since last time, in order.
    /// A child's restarts are always logged before its final exit notice is sent, so
    /// reading the log first keeps every child's history in order.
    fn read_log(&mut self) {
        while let Ok(msg) = self.log_rx.try_recv() {
            match msg {
                Msg::Restarted { old, .. } if !self.by_pid.contains_key(&old) => {
                    // A child being stopped (its wait catches up on it) or stale.
                    self.deferred.push_back(msg);
                }
                Msg::Restarted { old, new, reason } => self.on_local_restart(old, new, reason),
                Msg::Adopt { spec, run } => self.adopt(spec, run),
                other => self.deferred.push_back(other),
            }
        }
    }

    fn update_watched(&self) {
        let watched = !self.subscribers.is_empty() || self.cfg.observer.is_some();
        self.watched.store(watched, Ordering::Release);
    }

    fn handle(&mut self, msg: Msg) -> Flow {
        let flow = match msg {
            Msg::Exit { pid, reason } => self.on_exit(pid, reason),
            Msg::Restarted { old, new, reason } => {
                self.on_local_restart(old, new, reason);
                Flow::Continue
            }
            Msg::RetryRestart { seq } => match self.children.get(&seq) {
                Some(c) if c.status == ChildStatus::Restarting => self.restart(seq, None),
                _ => Flow::Continue,
            },
            Msg::Call(req, caller) => {
                self.serve(req, caller);
                Flow::Continue
            }
            Msg::Adopt { spec, run } => {
                self.adopt(spec, run);
                Flow::Continue
            }
        };
        // Whatever is left aside belongs to no child this supervisor still tracks.
        if !self.early_exits.is_empty() {
            self.early_exits.clear();
        }
        flow
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

    /// Waits until `until` for `run` to report ready (with `ready`) or, without it, to
    /// exit (its `Exit` notice, the last thing its thread sends), reading the inbox
    /// meanwhile. A request from inside the awaited child's subtree cannot wait (its
    /// sender is what we wait for): a question is answered at once, anything else refused
    /// with `WouldDeadlock`. Exits of children already being stopped are kept aside for
    /// their own wait; everything else is deferred, in order, for the loop — so other
    /// callers never see the table halfway through a stop or a group restart.
    fn await_child(
        &mut self,
        run: &Spawned,
        ready: Option<&Receiver<ReadyMsg>>,
        until: Until,
    ) -> Awaited {
        let inbox = self.inbox_rx.clone();
        let never = crossbeam_channel::never();
        let ready_rx = ready.unwrap_or(&never);
        // `Now` looks only at what is queued already (others may keep writing).
        let mut budget = inbox.len();
        loop {
            if ready.is_none() {
                if let Some(reason) = self.take_exit(run.current_pid()) {
                    return Awaited::Exited(reason);
                }
            }
            // A stopped child usually exits within microseconds: look again a few times,
            // yielding the CPU to it, before parking (which costs a wake-up to undo).
            let polled = if ready.is_none() && !matches!(until, Until::Now) {
                poll(&inbox)
            } else {
                None
            };
            let msg = match polled {
                Some(msg) => Ok(msg),
                None => match until {
                    Until::Now => match budget.checked_sub(1) {
                        Some(left) => {
                            budget = left;
                            inbox.try_recv().map_err(|_| crossbeam_channel::RecvError)
                        }
                        None => return Awaited::TimedOut,
                    },
                    Until::Forever => select! {
                        recv(ready_rx) -> r => return Awaited::Ready(r.ok()),
                        recv(inbox) -> msg => msg,
                    },
                    Until::Deadline(at) => select! {
                        recv(ready_rx) -> r => return Awaited::Ready(r.ok()),
                        recv(inbox) -> msg => msg,
                        default(at.saturating_duration_since(Instant::now())) => {
                            return Awaited::TimedOut
                        }
                    },
                },
            };
            // We hold a sender ourselves, so the inbox never disconnects.
            let Ok(msg) = msg else { continue };
            match msg {
                Msg::Exit { pid, reason } if !self.by_pid.contains_key(&pid) => {
                    // A hand-over it follows may be waiting in the restart log.
                    self.read_log();
                    if self.by_pid.contains_key(&pid) || self.adopting(pid) {
                        self.deferred.push_back(Msg::Exit { pid, reason });
                    } else {
                        // The awaited child's, or one being stopped with it, or stale.
                        self.early_exits.insert(pid, reason);
                    }
                }
                Msg::Call(req, Some(caller)) if pid::is_within(caller, run.current_pid()) => {
                    match req {
                        Request::WhichChildren(_)
                        | Request::CountChildren(_)
                        | Request::Subscribe(..) => self.serve(req, Some(caller)),
                        req => req.refuse(SupervisorError::WouldDeadlock),
                    }
                }
                msg => self.deferred.push_back(msg),
            }
        }
    }

    /// Whether a deferred hand-over brings child `pid` (its notices must stay behind it).
    fn adopting(&self, pid: Pid) -> bool {
        self.deferred
            .iter()
            .any(|m| matches!(m, Msg::Adopt { run, .. } if run.pid == pid))
    }

    /// The exit notice of `pid`, if it has arrived: kept aside during a wait, or deferred
    /// (it came while the child still ran, during an earlier wait).
    fn take_exit(&mut self, pid: Pid) -> Option<ExitReason> {
        if let Some(reason) = self.early_exits.remove(&pid) {
            return Some(reason);
        }
        let at = self
            .deferred
            .iter()
            .position(|m| matches!(m, Msg::Exit { pid: p, .. } if *p == pid))?;
        match self.deferred.remove(at) {
            Some(Msg::Exit { reason, .. }) => Some(reason),
            _ => None,
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
        // A thread a group restart can reuse waits for that; any other has sent this
        // notice as its last act and is let go of (joined once this supervisor is idle).
        let reuse = if restart && run.resumable {
            Some(run)
        } else {
            run.end();
            self.graves.push(run);
            None
        };
        let id = child.spec.id.clone();
        let temporary = child.spec.restart == Restart::Temporary;
        child.status = ChildStatus::Stopped;
        child.last_pid = Some(pid);
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
        self.emit(Event::ChildExited {
            id: id.clone(),
            pid: old,
            reason,
        });
        self.emit(Event::ChildRestarted { id, pid: new });
    }

    /// Restarts child `seq` (and, for group strategies, its group). Counts once toward
    /// intensity; on exceeding it stops everything and tells the loop to exit.
    ///
    /// `reuse` is the dead child's thread if it waits to be reused. Group members whose
    /// threads can wait too are stopped and resumed on their own threads: a group restart
    /// then costs the stops and hand-offs, not a thread spawn per child.
    fn restart(&mut self, seq: u64, reuse: Option<Spawned>) -> Flow {
        let within = self.intensity.lock().add_restart(Instant::now());
        if !within {
            if let Some(run) = reuse {
                run.finish();
            }
            let (restarts, period) = (self.cfg.intensity, self.cfg.period);
            log::error!(
                "{}: restart intensity exceeded ({restarts} in {period:?}); stopping",
                self.cfg.label
            );
            self.emit(Event::IntensityExceeded { restarts, period });
            if self.is_dynamic() {
                self.stop_all_concurrently();
            } else {
                self.stop_all();
            }
            if let Some(end) = &self.end {
                *end.lock() = Some(SupervisorError::IntensityExceeded { restarts, period });
            }
            return Flow::Exit;
        }
        let order: Vec<u64> = self.children.keys().copied().collect();
        let pos = order
            .iter()
            .position(|&k| k == seq)
            .expect("restarting child exists");
        let group = &order[affected(self.cfg.strategy, pos, order.len())];
        let mut parked: HashMap<u64, Spawned> = HashMap::new();
        if let Some(run) = reuse {
            parked.insert(seq, run);
        }
        // Stop the others in reverse start order; temporary bystanders are dropped.
        let stops: Vec<u64> = group.iter().rev().copied().filter(|&k| k != seq).collect();
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
        // Start the group in start order.
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
                None => self.spawn_child(&spec),
            };
            match started {
                Ok(run) => {
                    let pid = run.pid;
                    self.set_running(k, run);
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
                    // The rest of the group waits for the retry to bring it back.
                    for &later in &group[i + 1..] {
                        self.children.get_mut(&later).expect("child exists").status =
                            ChildStatus::Stopped;
                    }
                    self.emit(Event::RestartFailed {
                        id: spec.id,
                        error: error_chain(&e),
                    });
                    // Back to the loop before trying again, so that requests are served.
                    let _ = self.inbox_tx.send(Msg::RetryRestart { seq: k });
                    break;
                }
            }
        }
        // Threads kept for members that were not started after all (a failed restart).
        for (_, run) in parked {
            run.finish();
        }
        Flow::Continue
    }

    // ---- starting and stopping children -------------------------------------------

    /// Spawns a child and waits until it is started (as its readiness says).
    fn spawn_child(&mut self, spec: &ChildSpec) -> Result<Spawned, StartError> {
        let mut run = runner::spawn(SpawnArgs {
            id: spec.id.clone(),
            thread_name: format!("{}/{}", self.cfg.label, spec.id),
            body: spec.body.clone(),
            stack_size: spec.stack_size,
            wants_ready: spec.readiness != Readiness::Spawned,
            notify: Some(self.inbox_tx.clone()),
            local: self.local_restart(spec),
            resumable: self.resumable(spec),
            parent: None,
            handed_over: true,
        })
        .map_err(|source| StartError::Spawn {
            id: spec.id.to_string(),
            source,
        })?;
        let Some(ready) = run.ready.take() else {
            return Ok(run);
        };
        let until = match spec.readiness {
            Readiness::Within(d) => Until::Deadline(Instant::now() + d),
            _ => Until::Forever,
        };
        let outcome = self.await_child(&run, Some(&ready), until);
        let id = spec.id.to_string();
        match outcome {
            Awaited::Ready(Some(ReadyMsg::Ready)) => Ok(run),
            Awaited::TimedOut => {
                let timeout = ready_timeout(spec);
                let pid = run.pid;
                self.wait_stopped(&spec.id, spec.shutdown, run, false);
                log::warn!(
                    "{}: child {id:?} ({pid}) not ready in {timeout:?}",
                    self.cfg.label
                );
                Err(StartError::ReadyTimeout { id, timeout })
            }
            Awaited::Ready(report) => {
                run.finish();
                Err(not_started(id, report))
            }
            Awaited::Exited(_) => {
                run.finish();
                Err(not_started(id, None))
            }
        }
    }

    /// Whether `spec`'s crashes may be restarted on the child's own thread: only where a
    /// restart touches that child alone (one_for_one, dynamic), and only for plain workers
    /// that need no readiness wait and did not ask for a fresh thread.
    fn local_restart(&self, spec: &ChildSpec) -> Option<LocalRestart> {
        let eligible = self.cfg.strategy == Strategy::OneForOne
            && spec.kind == ChildKind::Worker
            && spec.readiness == Readiness::Spawned
            && !spec.fresh_thread;
        eligible.then(|| LocalRestart {
            restart: spec.restart,
            intensity: self.intensity.clone(),
            log: self.log_tx.clone(),
            watched: self.watched.clone(),
        })
    }

    /// Whether `spec`'s thread may be reused by group restarts: plain workers under
    /// one_for_all or rest_for_one (one_for_one restarts on the child's own thread
    /// already), with no readiness wait and no request for a fresh thread.
    fn resumable(&self, spec: &ChildSpec) -> bool {
        self.cfg.strategy != Strategy::OneForOne
            && !self.is_dynamic()
            && spec.kind == ChildKind::Worker
            && spec.readiness == Readiness::Spawned
            && !spec.fresh_thread
    }

    /// Stops child `seq` if it runs: raise its signal, wait its shutdown, abandon if late.
    /// The child stays in the table, `Stopped`.
    fn stop_child(&mut self, seq: u64) {
        self.stop_child_keeping(seq, false);
    }

    /// As `stop_child`; with `keep`, a thread that waits to be reused after its stop is
    /// returned, not ended.
    fn stop_child_keeping(&mut self, seq: u64, keep: bool) -> Option<Spawned> {
        let child = self.children.get_mut(&seq)?;
        child.status = ChildStatus::Stopped;
        let run = child.run.take()?;
        child.last_pid = Some(run.pid);
        let (id, shutdown) = (child.spec.id.clone(), child.spec.shutdown);
        self.by_pid.remove(&run.pid);
        let (pid, reason, kept) = self.wait_stopped(&id, shutdown, run, keep);
        if self.is_dynamic() {
            // A stopped dynamic child is forgotten; its place is free before its exit
            // is reported.
            self.remove(seq);
        }
        self.emit(Event::ChildExited { id, pid, reason });
        kept
    }

    /// Raises `run`'s stop signal and waits for it as `shutdown` says; abandons it if it
    /// is still running then. Returns its last incarnation's pid and how it ended.
    fn wait_stopped(
        &mut self,
        id: &Arc<str>,
        shutdown: Shutdown,
        run: Spawned,
        keep: bool,
    ) -> (Pid, ExitReason, Option<Spawned>) {
        run.stop.raise();
        self.wait_or_abandon(id, shutdown, Instant::now(), run, keep)
    }

    /// Waits for a signalled child until `signalled + its timeout` (as `shutdown` says),
    /// then joins it, or abandons it if it is still running. Returns the pid of its last
    /// incarnation (it may have restarted itself unseen just before) and how it ended.
    fn wait_or_abandon(
        &mut self,
        id: &Arc<str>,
        shutdown: Shutdown,
        signalled: Instant,
        mut run: Spawned,
        keep: bool,
    ) -> (Pid, ExitReason, Option<Spawned>) {
        let until = match shutdown {
            Shutdown::Timeout(d) => Until::Deadline(signalled + d),
            Shutdown::Infinity => Until::Forever,
            Shutdown::Immediate => Until::Now,
        };
        match self.await_child(&run, None, until) {
            Awaited::Exited(reason) => {
                self.catch_up(id, &mut run);
                let pid = run.pid;
                if keep && run.resumable {
                    return (pid, reason, Some(run));
                }
                self.bury(run);
                (pid, reason, None)
            }
            _ => {
                self.catch_up(id, &mut run);
                let (pid, reason) = self.abandon(id, run);
                (pid, reason, None)
            }
        }
    }

    /// Reports the same-thread restarts of a child being stopped that this supervisor
    /// had not read yet (the child crashed and restarted itself just before its stop), so
    /// that every crash appears in the events, in order, before the child's last exit.
    /// Afterwards `run.pid` is its latest known incarnation.
    fn catch_up(&mut self, id: &Arc<str>, run: &mut Spawned) {
        // The thread publishes each new pid before it sends the notice: nothing unseen.
        if run.current_pid() == run.pid {
            return;
        }
        // Its notices are in the restart log, the inbox, or already deferred; other
        // children's notices are applied or kept as usual.
        // They were sent before its last exit, so they are among what is queued now; take
        // no more than that (other children may keep writing while we read).
        let mut notices: Vec<Msg> = self.log_rx.try_iter().take(self.log_rx.len()).collect();
        let queued = self.inbox_rx.len();
        self.deferred.extend(self.inbox_rx.try_iter().take(queued));
        let mut kept = VecDeque::with_capacity(self.deferred.len());
        for msg in std::mem::take(&mut self.deferred) {
            match msg {
                Msg::Restarted { .. } => notices.push(msg),
                other => kept.push_back(other),
            }
        }
        self.deferred = kept;
        for msg in notices {
            let Msg::Restarted { old, new, reason } = msg else {
                continue;
            };
            if old == run.pid {
                run.pid = new;
                self.emit(Event::ChildExited {
                    id: id.clone(),
                    pid: old,
                    reason,
                });
                self.emit(Event::ChildRestarted {
                    id: id.clone(),
                    pid: new,
                });
            } else {
                self.on_local_restart(old, new, reason);
            }
        }
    }

    /// Gives up on a child that did not stop in time: releases its names and monitors at
    /// once, and detaches its thread.
    fn abandon(&mut self, id: &Arc<str>, run: Spawned) -> (Pid, ExitReason) {
        // The thread may have restarted itself since this supervisor last heard of it:
        // end whichever incarnation runs now.
        let current = run.current_pid();
        if !pid::exit(current, &ExitReason::Killed) {
            // That incarnation ended just now; once stopping, the thread does not restart
            // again, so its final reason is on its way.
            let soon = Until::Deadline(Instant::now() + Duration::from_secs(1));
            if let Awaited::Exited(reason) = self.await_child(&run, None, soon) {
                run.finish();
                return (current, reason);
            }
        }
        let latest = run.current_pid();
        if latest != current {
            pid::exit(latest, &ExitReason::Killed);
        }

        log::warn!(
            "{}: child {id:?} ({latest}) did not stop in time; abandoned (its thread is detached)",
            self.cfg.label,
        );
        self.emit(Event::ChildAbandoned {
            id: id.clone(),
            pid: latest,
        });
        (latest, ExitReason::Killed)
    }

    /// Stops every child, one at a time, in reverse start order.
    fn stop_all(&mut self) {
        let order: Vec<u64> = self.children.keys().rev().copied().collect();
        for (i, &seq) in order.iter().enumerate() {
            self.hand_on(seq, order.get(i + 1).copied());
            self.stop_child(seq);
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

    /// Dynamic supervisors: raise every stop signal, then wait for each within its own
    /// deadline, counted from the moment all were signalled.
    fn stop_all_concurrently(&mut self) {
        let mut running = Vec::new();
        for child in self.children.values_mut() {
            child.status = ChildStatus::Stopped;
            if let Some(run) = child.run.take() {
                run.stop.raise();
                running.push((child.spec.id.clone(), child.spec.shutdown, run));
            }
        }
        self.by_pid.clear();
        let start = Instant::now();
        for (id, shutdown, run) in running {
            let (pid, reason, _) = self.wait_or_abandon(&id, shutdown, start, run, false);
            self.emit(Event::ChildExited { id, pid, reason });
        }
    }

    // ---- requests -----------------------------------------------------------------

    fn start_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        spec.validate().map_err(SupervisorError::InvalidSpec)?;
        match &self.fast {
            Some(fast) => fast.reserve()?,
            None => {
                if let Some(child) = self.find_id(&spec.id).map(|s| &self.children[&s]) {
                    return Err(match &child.run {
                        Some(run) => SupervisorError::AlreadyStarted(run.pid),
                        None => SupervisorError::AlreadyPresent,
                    });
                }
            }
        }
        let run = match self.spawn_child(&spec) {
            Ok(run) => run,
            Err(e) => {
                if let Some(fast) = &self.fast {
                    fast.release();
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
        self.stop_child(seq);
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
            .spawn_child(&spec)
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
            if let Some(fast) = &self.fast {
                fast.release();
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
