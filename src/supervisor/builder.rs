//! Settings of a static supervisor, validated before anything starts.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::child::context::{Context, History, ReadyMsg};
use crate::child::runner::{self, Launch, SpawnArgs};
use crate::child::spec::{check_name, check_period, Body, ChildSpec, Serve, StartHere};
use crate::child::start_here;
use crate::error::{RegistryError, StartError};
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::registry::registry;
use crate::supervisor::event::Event;
use crate::supervisor::inbox::Inbox;
use crate::supervisor::server::{
    check_significant, Config, EndSlot, Mode, Observer, OnStart, Server,
};
use crate::supervisor::strategy::{AutoShutdown, Strategy};
use crate::supervisor::{Handle, Owned, Supervisor, SupervisorRef, SUPERVISORS};

/// The default restart intensity: 3 restarts ...
pub(crate) const DEFAULT_INTENSITY: u32 = 3;
/// ... within 5 seconds (OTP's defaults are 1 in 5 s; Elixir's 3 in 5 s).
pub(crate) const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

/// Settings for a static [`Supervisor`]; from [`Supervisor::builder`].
///
/// Cloning a builder is cheap (child functions are shared); a nested supervisor's builder
/// is kept by its parent and started again on each restart.
#[derive(Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SupervisorBuilder {
    name: Option<String>,
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    auto_shutdown: AutoShutdown,
    children: Vec<ChildSpec>,
    sinks: Vec<Sender<Event>>,
    observer: Option<Observer>,
    on_start: Option<OnStart>,
}

impl fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("period", &self.period)
            .field("auto_shutdown", &self.auto_shutdown)
            .field("children", &self.children)
            .field("sinks", &self.sinks.len())
            .field("on_event", &self.observer.is_some())
            .field("on_start", &self.on_start.is_some())
            .finish()
    }
}

impl Default for SupervisorBuilder {
    fn default() -> Self {
        SupervisorBuilder {
            name: None,
            strategy: Strategy::OneForOne,
            intensity: DEFAULT_INTENSITY,
            period: DEFAULT_PERIOD,
            auto_shutdown: AutoShutdown::Never,
            children: Vec::new(),
            sinks: Vec::new(),
            observer: None,
            on_start: None,
        }
    }
}

impl SupervisorBuilder {
    /// Registers the supervisor's [`SupervisorRef`] under `name` in the global
    /// [`registry`](crate::registry()) while it runs. Threads are named after it too.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the restart strategy (default [`Strategy::OneForOne`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Allows at most `restarts` restarts within any `period` (default 3 in 5 s); one more
    /// and the supervisor stops its children and exits. `restarts` may be 0 (the first
    /// restart gives up); `period` must not be zero.
    ///
    /// The window is exact (`Instant`s, not OTP's whole seconds) up to 4,096 restarts in
    /// it; past that — possible only with `restarts` above 4,096 — restarts are counted
    /// in slices of `period / 4096`, exact to within one slice, so that a supervisor that
    /// never gives up (`u32::MAX` in `Duration::MAX`) keeps bounded memory however long
    /// a child crash-loops.
    pub fn intensity(mut self, restarts: u32, period: Duration) -> Self {
        self.intensity = restarts;
        self.period = period;
        self
    }

    /// Shuts the supervisor down when significant children exit (default
    /// [`AutoShutdown::Never`]); see [`AutoShutdown`] and
    /// [`ChildSpec::significant`](crate::ChildSpec::significant).
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{AutoShutdown, ChildSpec, Restart, Supervisor};
    ///
    /// // A job runner: the tree lives as long as its one job.
    /// let sup = Supervisor::builder()
    ///     .auto_shutdown(AutoShutdown::AnySignificant)
    ///     .child(ChildSpec::worker("job", |_ctx| Ok(()))
    ///         .restart(Restart::Transient)
    ///         .significant(true))
    ///     .start()?;
    /// sup.join()?; // returns once the job is done
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn auto_shutdown(mut self, setting: AutoShutdown) -> Self {
        self.auto_shutdown = setting;
        self
    }

    /// Adds a child; children start in the order they are added.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// Adds several children, in order.
    pub fn children(mut self, specs: impl IntoIterator<Item = ChildSpec>) -> Self {
        self.children.extend(specs);
        self
    }

    /// Sends every [`Event`] of this supervisor to `sink`, from its very first child start.
    ///
    /// For a nested supervisor the sink sees every incarnation.
    pub fn event_sink(mut self, sink: Sender<Event>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Calls `f` with every [`Event`] of this supervisor, on the supervisor's own thread,
    /// before any event sink or subscriber sees it (for counters and metrics).
    ///
    /// `f` runs inside the supervisor's loop: keep it short. It may ask this supervisor
    /// questions (`which_children`, `count_children`, `child_spec`, `events`), answered
    /// there and then; other requests to it fail with
    /// [`SupervisorError::WouldDeadlock`](crate::SupervisorError::WouldDeadlock) at once
    /// (they would wait for the thread that is running `f`).
    /// Setting it again replaces the previous one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use steadfast::{ChildSpec, Event, Supervisor};
    ///
    /// let restarts = Arc::new(AtomicUsize::new(0));
    /// let counted = restarts.clone();
    /// let sup = Supervisor::builder()
    ///     .on_event(move |e| {
    ///         if let Event::ChildRestarted { .. } = e {
    ///             counted.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .child(ChildSpec::worker("w", |ctx| {
    ///         let _ = ctx.stop_signal().recv();
    ///         Ok(())
    ///     }))
    ///     .start()
    ///     .unwrap();
    /// assert_eq!(restarts.load(Ordering::Relaxed), 0);
    /// sup.shutdown().unwrap();
    /// ```
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Calls `f` each time the supervisor starts, once it is registered (by pid, and by
    /// name if it has one) and before its first child starts, with its own handle. An
    /// `Err` fails the start, as a child's failure would: no child is started, and
    /// `start` (or the parent's start of this nested supervisor) returns that error.
    ///
    /// `f` runs as the supervisor's process ([`Pid::current`](crate::Pid::current) is
    /// its pid), but not always on its thread: a start that a caller waits for anyway
    /// (`start`, or a dynamic supervisor's `start_child` of a nested one) runs on that
    /// caller's thread, so that the children need not wait for the supervisor's thread
    /// to be scheduled; a restart runs on the supervisor's own thread. Do not rely on
    /// thread-locals set in `f`.
    ///
    /// Use it to tie something to this supervisor's process before anything can depend
    /// on it. Do not call this supervisor from `f` other than for its pid: it serves no
    /// requests until its children have started.
    pub fn on_start(
        mut self,
        f: impl Fn(&SupervisorRef) -> Result<(), StartError> + Send + Sync + 'static,
    ) -> Self {
        self.on_start = Some(Arc::new(f));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StartError> {
        check_period(self.period).map_err(StartError::InvalidSpec)?;
        if let Some(name) = &self.name {
            check_name("supervisor name", name).map_err(StartError::InvalidSpec)?;
        }
        let mut seen = HashSet::new();
        for spec in &self.children {
            spec.validate().map_err(StartError::InvalidSpec)?;
            check_significant(spec, self.auto_shutdown).map_err(StartError::InvalidSpec)?;
            if !seen.insert(spec.id()) {
                return Err(StartError::InvalidSpec(format!(
                    "duplicate child id {:?}",
                    spec.id()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn config(&self, label: &str) -> Arc<Config> {
        Arc::new(Config {
            label: Arc::from(self.name.as_deref().unwrap_or(label)),
            mode: Mode::Static(self.strategy),
            intensity: self.intensity,
            period: self.period,
            auto_shutdown: self.auto_shutdown,
            children: self.children.clone(),
            sinks: self.sinks.clone(),
            observer: self.observer.clone(),
            on_start: self.on_start.clone(),
            named: |handle| Arc::new(SupervisorRef(handle)),
        })
    }

    /// Starts the supervisor and its children, in order, and returns once all are started.
    ///
    /// # Errors
    ///
    /// - [`StartError::InvalidSpec`]: duplicate or empty child ids, a zero period, an
    ///   empty name.
    /// - [`StartError::NameTaken`]: the name is held by a live process.
    /// - [`StartError::ChildExited`], [`StartError::ReadyTimeout`], [`StartError::Nested`],
    ///   [`StartError::Spawn`]: child *k* failed to start. Children 1..k-1 were stopped in
    ///   reverse order, the rest never started; no thread is left behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{ChildSpec, StartError, Supervisor};
    ///
    /// let err = Supervisor::builder()
    ///     .child(ChildSpec::worker("a", |_| Ok(())))
    ///     .child(ChildSpec::worker("a", |_| Ok(())))
    ///     .start()
    ///     .unwrap_err();
    /// assert!(matches!(err, StartError::InvalidSpec(_)));
    /// ```
    pub fn start(self) -> Result<Supervisor, StartError> {
        self.validate()?;
        let label = self.name.clone().unwrap_or_else(|| "supervisor".into());
        let (handle, owned) = start_top(self.config(&label), self.name)?;
        Ok(Supervisor {
            handle: SupervisorRef(handle),
            owned,
        })
    }
}

/// Starts a top-level supervisor process: its thread is spawned first and waits, its start
/// (registration, `on_start`, the children) runs here, on the caller's thread, which waits
/// for it anyway, and then its thread is handed the rest (see `child::start_here`).
pub(crate) fn start_top(
    cfg: Arc<Config>,
    name: Option<String>,
) -> Result<(Handle, Owned), StartError> {
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
    let run = runner::spawn(SpawnArgs {
        id: Arc::from(label.as_str()),
        thread_name: label.clone(),
        body,
        stack_size: None,
        wants_ready: false,
        history: History::default(),
        launch: Launch::TopLevel,
        deferred: true,
    })
    .map_err(|source| StartError::Spawn {
        id: label.clone(),
        source,
    })?;
    let started = start_here::start_here(&label, run.pid, || {
        let server = start_supervisor(
            start_cfg,
            start_name.as_deref(),
            run.pid,
            start_inbox,
            Some(start_end),
        )
        .map_err(ReadyMsg::Failed)?;
        Ok(Box::new(move |ctx: &Context| server.run(ctx)) as Serve)
    });
    match started {
        Ok(serve) => {
            run.begin(serve);
            // The start registered the full handle (with what callers of a dynamic
            // supervisor start children with).
            let handle = Handle::lookup(run.pid, dynamic).unwrap_or(Handle {
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
        Ok(server) => {
            ctx.ready();
            server.run(ctx)
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
) -> Result<Server, StartError> {
    let dynamic = matches!(cfg.mode, Mode::Dynamic { .. });
    let (on_start, named) = (cfg.on_start.clone(), cfg.named);
    let label = cfg.label.clone();
    let mut server = Server::new(cfg, inbox.clone(), end);
    let handle = Handle {
        pid,
        label,
        inbox,
        dynamic,
        handover: server.handover(),
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
    server.start_initial()?;
    Ok(server)
}

/// What makes a nested supervisor: the builder of a static or a dynamic supervisor.
///
/// Built by `From` from [`SupervisorBuilder`] or
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

impl From<SupervisorBuilder> for SupervisorSpec {
    fn from(b: SupervisorBuilder) -> Self {
        SupervisorSpec {
            name: b.name.clone(),
            make: Arc::new(move |label| {
                b.validate()?;
                Ok(b.config(label))
            }),
        }
    }
}

impl ChildSpec {
    /// A child that is itself a supervisor, built from a [`SupervisorBuilder`] or a
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
            let server = start_supervisor(cfg, name.as_deref(), pid, inbox, None)
                .map_err(ReadyMsg::Failed)?;
            Ok(Box::new(move |ctx: &Context| server.run(ctx)) as Serve)
        });
        ChildSpec::nested(id, body, start_here)
    }
}
