//! Starting a supervisor process: top-level (`start_top`, owned by whoever built it) or
//! nested (the child spec [`ChildSpec::supervisor`] makes); its start — registration,
//! `on_start`, its children — and then its loop (`engine`).

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::child::context::{Context, ReadyMsg};
use crate::child::launch::SpawnArgs;
use crate::child::runner;
use crate::child::spawned::Spawned;
use crate::child::spec::{Body, ChildSpec, Serve, StartHere};
use crate::child::start_here;
use crate::error::{RegistryError, StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::registry::registry;
use crate::supervisor::address::{Address, SUPERVISORS};
use crate::supervisor::config::{Config, EndSlot, Mode};
use crate::supervisor::engine::Engine;
use crate::supervisor::handle::SupervisorRef;
use crate::supervisor::inbox::Inbox;

/// Starts a top-level supervisor process: its thread is spawned first and waits, its start
/// (registration, `on_start`, the children) runs here, on the caller's thread, which waits
/// for it anyway, and then its thread is handed the rest (see `child::start_here`).
pub(crate) fn start_top(
    cfg: Arc<Config>,
    name: Option<String>,
) -> Result<(Address, Owned), StartError> {
    let label = cfg.label.to_string();
    let dynamic = matches!(cfg.mode, Mode::Dynamic { .. });
    let end: EndSlot = Arc::new(Mutex::new(None));
    let inbox = Arc::new(Inbox::new());
    let (start_cfg, start_inbox, start_end) = (cfg.clone(), inbox.clone(), end.clone());
    let start_name = name.clone();
    // What the process would run on its own thread; a top-level supervisor is never
    // restarted, so only a start run here, on its behalf, ever replaces it.
    let (slot, first) = (end.clone(), inbox.clone());
    let body: Body = Arc::new(move |ctx: &Context| {
        run_supervisor(
            cfg.clone(),
            name.as_deref(),
            ctx,
            first.clone(),
            Some(slot.clone()),
        )
    });
    let run =
        runner::spawn(SpawnArgs::top_level(&label, body)).map_err(|source| StartError::Spawn {
            id: label.clone(),
            source,
        })?;
    let started = start_here::start_here(&label, run.pid, || {
        let engine = start_supervisor(
            start_cfg,
            start_name.as_deref(),
            run.pid,
            start_inbox,
            Some(start_end),
        )
        .map_err(ReadyMsg::Failed)?;
        Ok(Box::new(move |ctx: &Context| engine.run(ctx)) as Serve)
    });
    match started {
        Ok(serve) => {
            run.begin(serve);
            // The start registered the full handle (with what callers of a dynamic
            // supervisor start children with).
            let handle = Address::lookup(run.pid, dynamic).unwrap_or(Address {
                pid: run.pid,
                label: Arc::from(label.as_str()),
                inbox,
                dynamic,
                handover: None,
            });
            Ok((
                handle,
                Owned {
                    run: Some(run),
                    end,
                },
            ))
        }
        Err(report) => {
            run.cancel();
            run.finish();
            Err(match report {
                ReadyMsg::Failed(e) => e,
                ReadyMsg::Exited(reason) => StartError::ChildExited { id: label, reason },
                // A supervisor neither declines nor reports ready by message.
                ReadyMsg::Ready | ReadyMsg::Ignored => StartError::ChildExited {
                    id: label,
                    reason: ExitReason::Killed,
                },
            })
        }
    }
}

/// The body of every supervisor process, static or dynamic: its start (register, start
/// the children), readiness, then serve.
fn run_supervisor(
    cfg: Arc<Config>,
    name: Option<&str>,
    ctx: &Context,
    inbox: Arc<Inbox>,
    end: Option<EndSlot>,
) -> ExitReason {
    match start_supervisor(cfg, name, ctx.pid(), inbox, end) {
        Ok(engine) => {
            ctx.ready();
            engine.run(ctx)
        }
        Err(e) => {
            let reason = ExitReason::failed(&e);
            ctx.send_ready(ReadyMsg::Failed(e));
            reason
        }
    }
}

/// A supervisor's start, as process `pid`: register (by pid, and by name if it has one),
/// run `on_start`, start the children in order. It runs on the thread of a caller that
/// waits for it anyway (`start_top`, and a dynamic `start_child` of a nested supervisor:
/// see [`ChildSpec::supervisor`]), else on the supervisor's own thread; either way `pid`
/// is the current process meanwhile.
fn start_supervisor(
    cfg: Arc<Config>,
    name: Option<&str>,
    pid: Pid,
    inbox: Arc<Inbox>,
    end: Option<EndSlot>,
) -> Result<Engine, StartError> {
    let dynamic = matches!(cfg.mode, Mode::Dynamic { .. });
    let (on_start, named) = (cfg.on_start.clone(), cfg.named);
    let label = cfg.label.clone();
    let mut engine = Engine::new(cfg, inbox.clone(), end);
    let _clock = engine.clock.install();
    let handle = Address {
        pid,
        label,
        inbox,
        dynamic,
        handover: engine.handover(),
    };
    // Known by pid to its parent's callers; the entry goes with the process.
    let _ = SUPERVISORS.register_for(pid, pid, handle.clone());
    if let Some(name) = name {
        let registered = registry().register(name.to_owned(), named(handle.clone()));
        if let Err(RegistryError::AlreadyRegistered(holder)) = registered {
            return Err(StartError::NameTaken {
                name: name.to_owned(),
                holder,
            });
        }
    }
    if let Some(on_start) = &on_start {
        on_start(&SupervisorRef(handle.clone()))?;
    }
    engine.start_initial()?;
    Ok(engine)
}

/// What makes a nested supervisor: the builder of a static or a dynamic supervisor.
///
/// Built by `From` from [`SupervisorBuilder`](crate::SupervisorBuilder) or
/// [`DynamicSupervisorBuilder`](crate::DynamicSupervisorBuilder); taken by
/// [`ChildSpec::supervisor`].
pub struct SupervisorSpec {
    pub(crate) name: Option<String>,
    pub(crate) make: MakeConfig,
}

/// Validates a nested supervisor's settings and makes its config, given its label.
impl fmt::Debug for SupervisorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub(crate) type MakeConfig = Arc<dyn Fn(&str) -> Result<Arc<Config>, StartError> + Send + Sync>;

impl ChildSpec {
    /// A child that is itself a supervisor, built from a [`SupervisorBuilder`](crate::SupervisorBuilder) or a
    /// [`DynamicSupervisorBuilder`](crate::DynamicSupervisorBuilder).
    ///
    /// Its thread runs the supervisor loop; starting it waits until all its own children
    /// have started. Defaults: [`Restart::Permanent`](crate::Restart::Permanent),
    /// [`Shutdown::Infinity`](crate::Shutdown::Infinity). A nested supervisor that exceeds
    /// its intensity exits with [`ExitReason::Shutdown`], as in OTP: a permanent parent spec
    /// restarts it, a transient one leaves it down. Reach it by name through the
    /// [`registry`](crate::registry()), or by the pid in its parent's `which_children()`
    /// with [`SupervisorRef::from_pid`].
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{ChildSpec, Strategy, Supervisor};
    ///
    /// let inner = Supervisor::builder()
    ///     .strategy(Strategy::OneForAll)
    ///     .child(ChildSpec::worker("w", |ctx| { while ctx.sleep(std::time::Duration::from_millis(5)).is_ok() {} Ok(()) }));
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::supervisor("inner", inner))
    ///     .start()
    ///     .unwrap();
    /// assert_eq!(sup.count_children().unwrap().supervisors, 1);
    /// ```
    pub fn supervisor(id: impl Into<String>, builder: impl Into<SupervisorSpec>) -> ChildSpec {
        let id = id.into();
        let spec: SupervisorSpec = builder.into();
        let (label, name, make) = (id.clone(), spec.name.clone(), spec.make.clone());
        let body: Body = Arc::new(move |ctx: &Context| match (spec.make)(&label) {
            Ok(cfg) => run_supervisor(cfg, spec.name.as_deref(), ctx, Arc::new(Inbox::new()), None),
            Err(e) => {
                let reason = ExitReason::failed(&e);
                ctx.send_ready(ReadyMsg::Failed(e));
                reason
            }
        });
        // The same start, for a caller that waits for it anyway (a dynamic supervisor's
        // `start_child`): it runs on that caller's thread while the supervisor's own thread
        // starts up, instead of after it — the children need not wait for that thread.
        let label = id.clone();
        let start_here: StartHere = Arc::new(move |pid| {
            let cfg = make(&label).map_err(ReadyMsg::Failed)?;
            let inbox = Arc::new(Inbox::new());
            let engine = start_supervisor(cfg, name.as_deref(), pid, inbox, None)
                .map_err(ReadyMsg::Failed)?;
            Ok(Box::new(move |ctx: &Context| engine.run(ctx)) as Serve)
        });
        ChildSpec::nested(id, body, start_here)
    }
}

/// The owning side of a top-level supervisor process: its thread, its stop signal, and how
/// it ended. Shared by [`Supervisor`] and [`DynamicSupervisor`](crate::DynamicSupervisor).
pub(crate) struct Owned {
    pub(crate) run: Option<Spawned>,
    pub(crate) end: EndSlot,
}

impl Owned {
    /// Raises the supervisor's stop, waits for it to exit and joins its thread.
    ///
    /// A process of the tree itself cannot wait for the tree's end (it would wait for
    /// itself): from there the stop is only raised, and the tree then stops the caller
    /// like any other child once it returns.
    pub(crate) fn stop_and_join(&mut self) -> Result<(), SupervisorError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        run.stop.raise();
        if from_inside(&run) {
            return Ok(());
        }
        self.wait(run)
    }

    /// Waits for the supervisor to exit on its own and joins its thread; refused with
    /// `WouldDeadlock` from a process of the tree itself (the handle stays).
    pub(crate) fn join(&mut self) -> Result<(), SupervisorError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        if from_inside(&run) {
            self.run = Some(run);
            return Err(SupervisorError::WouldDeadlock);
        }
        self.wait(run)
    }

    /// Waits for the supervisor's exit, joins its thread, and says how it ended.
    fn wait(&mut self, run: Spawned) -> Result<(), SupervisorError> {
        let reason = match &run.done {
            Some(done) => done.recv().unwrap_or(ExitReason::Killed),
            None => ExitReason::Killed,
        };
        run.finish();
        if let Some(e) = self.end.lock().take() {
            return Err(e);
        }
        match reason {
            ExitReason::Panicked(msg) => Err(SupervisorError::Panicked(msg.to_string())),
            _ => Ok(()),
        }
    }
}

/// Whether the calling process is within the tree of supervisor `run`.
fn from_inside(run: &Spawned) -> bool {
    Pid::current_if_any().is_some_and(|me| crate::pid::is_within(me, run.pid))
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
