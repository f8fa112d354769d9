//! The one place that spawns a process thread, catches its panics and reports its exit.
//!
//! Exit ordering (see ARCHITECTURE.md): the thread (a) builds the `ExitReason`, (b) ends its
//! pid — registry entries removed, monitors fired — and only then (c) tells whoever waits:
//! the readiness waiter, the `done` channel, and its supervisor's inbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Sender};
use parking_lot::{Condvar, Mutex};

use crate::child::cap::LiveThread;
use crate::child::context::{Context, History, ReadyMsg, StopHandle};
use crate::child::launch::{Launch, Notify, RestartPermit, SpawnArgs};
use crate::child::panic_hook::{self, catch, SUPERVISED};
use crate::child::reuse::Work;
use crate::child::spawned::{self, Incarnation, Next, Shared, Spawned, Thread};
use crate::child::spec::{Body, Serve};
use crate::clock::{self, Clock};
use crate::error::SpawnError;
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::telemetry::{self, note};

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
        None => Some(LiveThread::acquire(args.stack_size)?),
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
                Err(work) => match LiveThread::acquire(stack) {
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
        // What a supervisor that ran here owes: see `settle_after_exit`.
        spawned::settle_after_exit();
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
