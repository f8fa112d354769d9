//! A dynamic supervisor's children started by the caller: `start_child` spawns the child on
//! the calling thread (awaiting its readiness there, if it reports any) and hands the
//! running child over through the supervisor's inbox, instead of a round trip through the
//! supervisor's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::child::context::{History, ReadyMsg};
use crate::child::launch::{Launch, RestartPermit, SpawnArgs};
use crate::child::reuse::ThreadPool;
use crate::child::runner;
use crate::child::spawned::Spawned;
use crate::child::spec::{ChildSpec, Readiness, Shutdown, StartHere};
use crate::child::start_here;
use crate::clock::{self, Clock};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::supervisor::config::{Config, Mode};
use crate::supervisor::inbox::{Inbox, Msg};
use crate::supervisor::start::{not_ready, not_started};
use crate::supervisor::stop::log_abandoned;
use crate::supervisor::strategy::{check_significant, AutoShutdown};

/// How a caller's start of a dynamic child went (`HandOver::start`).
pub(crate) enum CallerStart {
    /// Started and handed over, or failed: the answer to give.
    Done(Result<Pid, SupervisorError>),
    /// No place is free by the caller's count: the supervisor must decide.
    Full(ChildSpec),
}

/// What a caller needs to start a dynamic supervisor's child itself: the child's settings,
/// a reservation against `max_children`, and the way in to the supervisor.
pub(crate) struct HandOver {
    pub(crate) sup: Pid,
    pub(crate) label: Arc<str>,
    pub(crate) max: Option<usize>,
    /// Whether significant children are allowed (see `check_significant`).
    pub(crate) auto_shutdown: AutoShutdown,
    /// Children in the table plus those reserved by callers about to hand one over.
    count: AtomicUsize,
    /// Whether the supervisor still takes children. Held while a caller spawns and hands
    /// over, so that a shutdown either finds the hand-over in its inbox or refuses it.
    pub(crate) open: Mutex<bool>,
    /// Children a caller has started and is waiting for (readiness) before it hands them
    /// over; a shutdown waits until there are none.
    pub(crate) pending: AtomicUsize,
    pub(crate) inbox: Arc<Inbox>,
    /// The supervisor's leave for a child of a given restart type to restart itself.
    pub(crate) permit: PermitFor,
    /// The supervisor's clock, installed on the caller's thread while it starts a child.
    clock: Clock,
    /// Threads kept for reuse (`reuse_threads`), if any.
    pub(crate) threads: Option<Arc<ThreadPool>>,
    /// The stack size of children that do not set their own.
    stack_size: Option<usize>,
}

/// How often a closing hand-over looks again for callers still starting a child.
const CLOSE_POLL: Duration = Duration::from_millis(1);

/// Makes the restart permit of a child from its spec (see `RestartPermit`).
pub(crate) type PermitFor = Arc<dyn Fn(&ChildSpec) -> Option<RestartPermit> + Send + Sync>;

impl HandOver {
    /// The hand-over of dynamic supervisor `sup`, with its settings `cfg`, running on
    /// `clock`.
    pub(crate) fn new(
        sup: Pid,
        cfg: &Config,
        inbox: Arc<Inbox>,
        permit: PermitFor,
        clock: Clock,
    ) -> HandOver {
        let max = match cfg.mode {
            Mode::Dynamic { max_children } => max_children,
            Mode::Static(_) => None,
        };
        let threads = cfg
            .reuse
            .map(|(max_idle, idle_for)| ThreadPool::new(max_idle, idle_for));
        HandOver {
            sup,
            label: cfg.label.clone(),
            max,
            auto_shutdown: cfg.auto_shutdown,
            count: AtomicUsize::new(0),
            open: Mutex::new(true),
            pending: AtomicUsize::new(0),
            inbox,
            permit,
            clock,
            threads,
            stack_size: cfg.stack_size,
        }
    }

    /// Stops taking children from callers, and returns those already handed over, in
    /// order, for the supervisor to take in before its shutdown stops them all.
    ///
    /// Children that callers are still waiting for (readiness) will not be handed over
    /// now: those callers stop them. This waits for that, refusing the calls that come
    /// meanwhile (a pending child may be making one). Every hand-over was queued while
    /// open, before anything its child sent.
    pub(crate) fn close(&self) -> Vec<(ChildSpec, Spawned)> {
        *self.open.lock() = false;
        while self.pending.load(Ordering::Acquire) > 0 {
            for msg in self.inbox.take(|m| matches!(m, Msg::Call(..))) {
                if let Msg::Call(req, _) = msg {
                    req.refuse(SupervisorError::NoSupervisor);
                }
            }
            let _ = self.inbox.bell().recv_timeout(CLOSE_POLL);
        }
        let handed = self.inbox.take(|m| matches!(m, Msg::HandOver { .. }));
        handed
            .into_iter()
            .filter_map(|msg| match msg {
                Msg::HandOver { spec, run } => Some((spec, run)),
                _ => None,
            })
            .collect()
    }

    /// Reserves a place against `max_children`.
    pub(crate) fn reserve(&self) -> Result<(), SupervisorError> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if self.max.is_some_and(|max| before >= max) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(SupervisorError::MaxChildren);
        }
        Ok(())
    }

    /// Gives a place back.
    pub(crate) fn release(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    /// Starts `spec` on the calling thread and hands it to the supervisor.
    ///
    /// A plain worker is spawned and handed over under the `open` lock. A child that
    /// reports readiness (a worker with `ready_timeout`, a nested supervisor) is awaited
    /// by the caller, outside the lock, and handed over once ready; until then it is
    /// `pending`, and a shutdown waits for the caller to hand it over or stop it.
    ///
    /// `CallerStart::Full(spec)` when no place is free by the count here: exits the
    /// supervisor has not read yet still hold theirs (a caller may have seen such an exit
    /// through a monitor or an exit hook, which come first), so the caller asks the
    /// supervisor, which reads every exit sent before the request.
    pub(crate) fn start(&self, spec: ChildSpec) -> CallerStart {
        let valid = spec.validate();
        if let Err(e) = valid.and_then(|()| check_significant(&spec, self.auto_shutdown)) {
            return CallerStart::Done(Err(SupervisorError::InvalidSpec(e)));
        }
        let _clock = self.clock.install();
        let open = self.open.lock();
        if !*open {
            return CallerStart::Done(Err(SupervisorError::NoSupervisor));
        }
        if self.reserve().is_err() {
            return CallerStart::Full(spec);
        }
        CallerStart::Done(self.start_reserved(open, spec))
    }

    /// `start`, once a place is reserved (the `open` lock still held).
    fn start_reserved(
        &self,
        open: MutexGuard<'_, bool>,
        spec: ChildSpec,
    ) -> Result<Pid, SupervisorError> {
        let here = spec.start_here.clone();
        if let Some(start) = here.filter(|_| spec.readiness == Readiness::Unbounded) {
            return self.start_here(open, spec, start);
        }
        let awaits = spec.readiness != Readiness::Spawned;
        let mut run = self.spawn(&spec, false)?;
        if !awaits {
            return self.hand_over(open, spec, run);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        drop(open);
        let ready = run.ready.take().expect("a readiness child has a channel");
        let outcome = match spec.readiness {
            // crossbeam treats a deadline past what an `Instant` holds as no deadline.
            Readiness::Within(d) => clock::recv_timeout(&ready, d).map_err(|e| e.is_timeout()),
            _ => ready.recv().map_err(|_| false),
        };
        let failed = match outcome {
            Ok(ReadyMsg::Ready) => return self.hand_over_ready(spec, run),
            Ok(ReadyMsg::Ignored) => {
                self.stop_pending(&spec, run);
                SupervisorError::Ignored
            }
            Err(true) => {
                let pid = run.pid;
                self.stop_pending(&spec, run);
                SupervisorError::StartFailed(not_ready(&self.label, &spec, pid))
            }
            report => {
                self.forget_pending(run);
                SupervisorError::StartFailed(not_started(spec.id.to_string(), report.ok()))
            }
        };
        self.release();
        Err(failed)
    }

    /// Spawns `spec`'s thread on the supervisor's behalf; if it cannot, gives the
    /// reserved place back.
    fn spawn(&self, spec: &ChildSpec, deferred: bool) -> Result<Spawned, SupervisorError> {
        let launch = Launch::ByCaller {
            sup: self.sup,
            notify: self.inbox.clone(),
            permit: (self.permit)(spec),
        };
        let args = SpawnArgs::for_child(spec, &self.label, History::default(), launch)
            .default_stack(self.stack_size)
            .reusing(self.threads.clone());
        runner::spawn(if deferred { args.deferred() } else { args }).map_err(|source| {
            self.release();
            SupervisorError::StartFailed(StartError::Spawn {
                id: spec.id.to_string(),
                source,
            })
        })
    }

    /// Starts a nested supervisor with its start run here, on the caller's thread, which
    /// waits for that start anyway: its own thread is spawned first and waits, so that
    /// thread's start-up runs alongside the children's starts instead of before them,
    /// then it is handed the rest (or told the start failed). Pending meanwhile, as a
    /// child awaited for readiness is.
    fn start_here(
        &self,
        open: MutexGuard<'_, bool>,
        spec: ChildSpec,
        start: StartHere,
    ) -> Result<Pid, SupervisorError> {
        let run = self.spawn(&spec, true)?;
        self.pending.fetch_add(1, Ordering::AcqRel);
        drop(open);
        match start_here::start_here(&spec.id, run.pid, || start(run.pid)) {
            Ok(serve) => {
                run.begin(serve);
                self.hand_over_ready(spec, run)
            }
            Err(report) => {
                // Its pid has ended, as its thread would have ended it; the thread, never
                // begun, ends without a word.
                run.cancel();
                self.forget_pending(run);
                self.release();
                Err(SupervisorError::StartFailed(not_started(
                    spec.id.to_string(),
                    Some(report),
                )))
            }
        }
    }

    /// Hands over a pending child now ready — unless the supervisor was shut down
    /// meanwhile: the shutdown waits for us to stop what we started.
    fn hand_over_ready(&self, spec: ChildSpec, run: Spawned) -> Result<Pid, SupervisorError> {
        let open = self.open.lock();
        if *open {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return self.hand_over(open, spec, run);
        }
        drop(open);
        self.stop_pending(&spec, run);
        self.release();
        Err(SupervisorError::NoSupervisor)
    }

    /// Queues a started child for the supervisor (still holding the `open` lock, so the
    /// supervisor's inbox is open too).
    fn hand_over(
        &self,
        open: MutexGuard<'_, bool>,
        spec: ChildSpec,
        run: Spawned,
    ) -> Result<Pid, SupervisorError> {
        let pid = run.pid;
        let handed_over = run.handed_over();
        let sent = self.inbox.send_notice(Msg::HandOver { spec, run });
        handed_over();
        drop(open);
        if let Err(returned) = sent {
            // Cannot happen while open; be safe: stop the child we started.
            self.release();
            if let Msg::HandOver { run, .. } = *returned {
                run.stop.raise();
                run.finish();
            }
            return Err(SupervisorError::NoSupervisor);
        }
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
            Shutdown::Timeout(d) => clock::recv_timeout(&exited, d).is_ok(),
            Shutdown::Infinity => exited.recv().is_ok(),
            Shutdown::Immediate => exited.try_recv().is_ok(),
        };
        (run.handed_over())();
        if stopped {
            run.finish();
        } else {
            pid::exit(run.pid, &ExitReason::Killed);
            log_abandoned(&self.label, &spec.id, run.pid);
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}
