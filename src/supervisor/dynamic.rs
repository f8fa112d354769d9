//! Dynamic supervisors: children started and stopped at run time (Elixir's
//! `DynamicSupervisor`, on threads). They share the static supervisor's event loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::child::spec::ChildSpec;
use crate::child::spec::{check_name, check_period};
use crate::clock::Clock;
use crate::error::{StartError, SupervisorError};
use crate::pid::Pid;
use crate::supervisor::address::Address;
use crate::supervisor::builder::{DEFAULT_INTENSITY, DEFAULT_PERIOD};
use crate::supervisor::config::{Config, Mode, Observer, OnStart};
use crate::supervisor::event::{ChildCounts, ChildInfo, Event};
use crate::supervisor::handle::SupervisorRef;
use crate::supervisor::handover::CallerStart;
use crate::supervisor::inbox::{ChildRef, Request};
use crate::supervisor::launch::{start_top, Owned, SupervisorSpec};
use crate::supervisor::strategy::AutoShutdown;
use crate::supervisor::tracked::Tracked;

/// How long a kept thread waits idle by default (see `reuse_threads`).
const IDLE_THREAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a [`DynamicSupervisor`]; from [`DynamicSupervisor::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct DynamicSupervisorBuilder {
    name: Option<String>,
    max_children: Option<usize>,
    reuse: Option<(usize, Duration)>,
    intensity: u32,
    period: Duration,
    auto_shutdown: AutoShutdown,
    sinks: Vec<Sender<Event>>,
    observer: Option<Observer>,
    on_start: Option<OnStart>,
    clock: Clock,
    stack_size: Option<usize>,
}

impl fmt::Debug for DynamicSupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicSupervisorBuilder")
            .field("name", &self.name)
            .field("max_children", &self.max_children)
            .field("reuse_threads", &self.reuse)
            .field("intensity", &self.intensity)
            .field("period", &self.period)
            .field("auto_shutdown", &self.auto_shutdown)
            .field("sinks", &self.sinks.len())
            .field("on_event", &self.observer.is_some())
            .field("on_start", &self.on_start.is_some())
            .finish()
    }
}

impl Default for DynamicSupervisorBuilder {
    fn default() -> Self {
        DynamicSupervisorBuilder {
            name: None,
            max_children: None,
            reuse: None,
            intensity: DEFAULT_INTENSITY,
            period: DEFAULT_PERIOD,
            auto_shutdown: AutoShutdown::Never,
            sinks: Vec::new(),
            observer: None,
            clock: Clock::default(),
            stack_size: None,
            on_start: None,
        }
    }
}

impl DynamicSupervisorBuilder {
    /// Registers the supervisor's [`DynamicSupervisorRef`] under `name` in the global
    /// [`registry`](crate::registry()) while it runs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Keeps the threads of ended children for the next ones (default: off): a child's
    /// thread, once the child has exited — its pid ended, its names released, its exit
    /// reported — waits idle, and the next start (or restart) runs on it instead of
    /// spawning a thread, which costs a fraction of a spawn. At most `max_idle` threads
    /// wait; each ends after [`idle_thread_timeout`](Self::idle_thread_timeout) unused
    /// (default 10 s). Idle threads count toward the [thread cap](crate::max_threads)
    /// and are joined when the supervisor stops: none outlives it.
    ///
    /// What a reused thread keeps: the thread-locals its earlier children set (as a
    /// same-thread restart does) and its OS name (that of the child it was spawned
    /// for). A child with its own [`stack_size`](crate::ChildSpec::stack_size) runs only
    /// on a thread spawned with the same. Nested supervisors always get their own
    /// thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{ChildSpec, DynamicSupervisor};
    ///
    /// let jobs = DynamicSupervisor::builder().reuse_threads(16).start()?;
    /// for n in 0..100 {
    ///     // After the first few, each job runs on a thread an earlier one used.
    ///     let pid = jobs.start_child(ChildSpec::task(format!("job-{n}"), |_| Ok(())))?;
    ///     steadfast::monitor(pid).recv()?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reuse_threads(mut self, max_idle: usize) -> Self {
        let idle_for = self.reuse.map_or(IDLE_THREAD_TIMEOUT, |(_, d)| d);
        self.reuse = Some((max_idle, idle_for));
        self
    }

    /// How long a kept thread waits idle before it ends (default 10 s); see
    /// [`reuse_threads`](Self::reuse_threads).
    pub fn idle_thread_timeout(mut self, timeout: Duration) -> Self {
        let max_idle = self.reuse.map_or(0, |(n, _)| n);
        self.reuse = Some((max_idle, timeout));
        self
    }

    /// The most children it holds at once (default: no limit). Children waiting to be
    /// restarted count.
    pub fn max_children(mut self, n: usize) -> Self {
        self.max_children = Some(n);
        self
    }

    /// The stack size, in bytes, of the threads of its children that do not set their
    /// own with [`ChildSpec::stack_size`](crate::ChildSpec::stack_size) (default: std's,
    /// 2 MiB unless `RUST_MIN_STACK` says otherwise). A thread's stack is reserved, not
    /// resident: what a smaller stack saves is address space (and the kernel's page
    /// tables for it), so that many more threads fit under `ulimit -v` (where the
    /// thread cap counts each stack at its size: [`set_max_threads`](crate::set_max_threads));
    /// the memory an idle child uses is the few pages it touched either way. Leave room
    /// for what the child's code needs — a panic that captures a backtrace needs tens of
    /// KiB. Zero is an invalid spec.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// At most `restarts` restarts within any `period` (default 3 in 5 s).
    pub fn intensity(mut self, restarts: u32, period: Duration) -> Self {
        self.intensity = restarts;
        self.period = period;
        self
    }

    /// Shuts the supervisor down when significant children exit (default
    /// [`AutoShutdown::Never`]); see [`AutoShutdown`]. Children started with
    /// [`significant(true)`](crate::ChildSpec::significant) are refused while this is
    /// `Never`.
    pub fn auto_shutdown(mut self, setting: AutoShutdown) -> Self {
        self.auto_shutdown = setting;
        self
    }

    /// Runs `f` on the supervisor's own thread each time it starts (again, when it is a
    /// child that was restarted), before it serves anything; an `Err` fails the start.
    /// Where a layer built on a dynamic supervisor re-attaches its state to a restarted
    /// one (the session manager does).
    pub fn on_start(
        mut self,
        f: impl Fn(&DynamicSupervisorRef) -> Result<(), StartError> + Send + Sync + 'static,
    ) -> Self {
        self.on_start = Some(Arc::new(move |sup: &SupervisorRef| {
            f(&DynamicSupervisorRef(sup.0.clone()))
        }));
        self
    }

    /// Runs this supervisor, and everything it starts, on a test's manual clock
    /// (feature `testing`): see [`ManualClock`](crate::testing::ManualClock). A nested
    /// supervisor without one runs on its parent's.
    #[cfg(feature = "testing")]
    pub fn clock(mut self, clock: &crate::testing::ManualClock) -> Self {
        self.clock = Clock::manual(clock.clone());
        self
    }

    /// Sends every [`Event`] of this supervisor to `sink`.
    pub fn event_sink(mut self, sink: Sender<Event>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Calls `f` with every [`Event`] of this supervisor, on the supervisor's own thread,
    /// before any event sink or subscriber sees it (for counters and metrics), as
    /// [`SupervisorBuilder::on_event`](crate::SupervisorBuilder::on_event) does: keep it
    /// short; questions to this supervisor from `f` are answered, other requests fail
    /// with [`SupervisorError::WouldDeadlock`](crate::SupervisorError::WouldDeadlock).
    /// Setting it again replaces the previous one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use steadfast::{ChildSpec, DynamicSupervisor, Event};
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let counted = started.clone();
    /// let sup = DynamicSupervisor::builder()
    ///     .on_event(move |e| {
    ///         if let Event::ChildStarted { .. } = e {
    ///             counted.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .start()?;
    /// sup.start_child(ChildSpec::task("job", |_ctx| Ok(())))?;
    /// // The supervisor takes the child in (and reports it) on its own thread.
    /// steadfast::wait::until(Duration::from_secs(10), || started.load(Ordering::Relaxed) == 1)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    fn config(&self, label: &str) -> Result<Arc<Config>, StartError> {
        check_period(self.period).map_err(StartError::InvalidSpec)?;
        if self.stack_size == Some(0) {
            return Err(StartError::InvalidSpec(
                "stack size must not be zero".into(),
            ));
        }
        if let Some(name) = &self.name {
            check_name("supervisor name", name).map_err(StartError::InvalidSpec)?;
        }
        Ok(Arc::new(Config {
            label: Arc::from(self.name.as_deref().unwrap_or(label)),
            mode: Mode::Dynamic {
                max_children: self.max_children,
            },
            intensity: self.intensity,
            period: self.period,
            auto_shutdown: self.auto_shutdown,
            children: Vec::new(),
            sinks: self.sinks.clone(),
            observer: self.observer.clone(),
            on_start: self.on_start.clone(),
            named: |handle| Arc::new(DynamicSupervisorRef(handle)),
            clock: self.clock.clone(),
            stack_size: self.stack_size,
            reuse: self.reuse,
        }))
    }

    /// The child spec of this supervisor nested under another, with child id `id`, and
    /// a handle that follows it across its restarts ([`Tracked`]), so that the children
    /// that start connections or jobs under it need no name to find it. Its own
    /// [`on_start`](DynamicSupervisorBuilder::on_start), if any, still runs.
    pub fn build(mut self, id: impl Into<String>) -> (ChildSpec, Tracked<DynamicSupervisorRef>) {
        let id = id.into();
        let wrap = |me: &SupervisorRef| DynamicSupervisorRef(me.0.clone());
        let (tracked, on_start) = Tracked::new(&id, wrap, self.on_start.take());
        self.on_start = Some(on_start);
        (ChildSpec::supervisor(id, self), tracked)
    }

    /// Starts the supervisor (with no children).
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidSpec`] (zero period, empty name), [`StartError::NameTaken`],
    /// [`StartError::Spawn`].
    pub fn start(self) -> Result<DynamicSupervisor, StartError> {
        let cfg = self.config("dynamic")?;
        let (handle, owned) = start_top(cfg, self.name)?;
        Ok(DynamicSupervisor {
            handle: DynamicSupervisorRef(handle),
            owned,
        })
    }
}

impl From<DynamicSupervisorBuilder> for SupervisorSpec {
    fn from(b: DynamicSupervisorBuilder) -> Self {
        SupervisorSpec {
            name: b.name.clone(),
            make: Arc::new(move |label| b.config(label)),
        }
    }
}

/// A cloneable handle to a running dynamic supervisor.
///
/// From [`DynamicSupervisor::handle`], the global [`registry`](crate::registry()) by name,
/// or [`DynamicSupervisorRef::from_pid`]. Dropping it does nothing.
#[derive(Clone)]
pub struct DynamicSupervisorRef(pub(crate) Address);

impl fmt::Debug for DynamicSupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynamicSupervisorRef")
            .field(&self.0.pid)
            .finish()
    }
}

impl DynamicSupervisorRef {
    /// The dynamic supervisor registered under `name`
    /// ([`DynamicSupervisorBuilder::name`]), if one runs.
    pub fn whereis(name: &str) -> Option<DynamicSupervisorRef> {
        crate::registry::registry()
            .lookup_as::<DynamicSupervisorRef>(name)
            .map(|(_, s)| s)
    }

    /// The handle of the live dynamic supervisor running as `pid`, if any.
    pub fn from_pid(pid: Pid) -> Option<DynamicSupervisorRef> {
        Address::lookup(pid, true).map(DynamicSupervisorRef)
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.0.pid
    }

    /// Starts a child and returns its pid. Ids need not be unique here.
    ///
    /// The child is spawned right here, on the calling thread, and handed over to the
    /// supervisor, which takes it into its table before it handles anything else that
    /// could concern it: for a plain worker the call costs about what a bare
    /// `thread::spawn` costs, with no round trip through the supervisor's thread.
    ///
    /// A child that reports readiness (a worker with
    /// [`ready_timeout`](ChildSpec::ready_timeout), or a nested supervisor) is awaited by
    /// the calling thread and handed over once ready; until then it is not in the
    /// supervisor's table, and the supervisor keeps serving everyone else — that child
    /// included, which may call it before it is ready. (A *restart* of such a child, after
    /// a crash, is awaited by the supervisor itself, as OTP's restarts wait for `init`;
    /// see the crate docs on deadlocks.) If it exits before it is ready,
    /// or is not ready in time (it is then stopped as its
    /// [`shutdown`](ChildSpec::shutdown) says, or abandoned), the start fails and its
    /// place is free again. A shutdown that begins meanwhile waits for the call to stop
    /// that child, and the call returns [`SupervisorError::NoSupervisor`].
    ///
    /// The place a child left under `max_children` is free once the supervisor has
    /// read its exit — at the latest when the [`Event::ChildExited`](crate::Event) is
    /// out, or `terminate_child` has returned. A monitor, or a registry entry going
    /// away, comes a moment before that; a start that finds no place then is served by
    /// the supervisor's thread, after every exit sent before it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::MaxChildren`] when full, [`SupervisorError::InvalidSpec`],
    /// [`SupervisorError::StartFailed`], [`SupervisorError::NoSupervisor`].
    pub fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        // The child is spawned right here, on the caller's thread (which also waits for
        // its readiness, if it reports any), and handed over: no round trip through the
        // supervisor's thread. Unless it is full by the caller's count: then the
        // supervisor decides, having read every exit sent before this request.
        let spec = match &self.0.handover {
            Some(handover) => match handover.start(spec) {
                CallerStart::Done(started) => return started,
                CallerStart::Full(spec) => spec,
            },
            None => spec,
        };
        self.0.call(|r| Request::StartChild(spec, r))?
    }

    /// Stops the child running as `pid` and forgets it. As for
    /// [`SupervisorRef::terminate_child`](crate::SupervisorRef::terminate_child), the
    /// child has exited when this returns, and its thread is joined just after.
    ///
    /// Called by that child itself, it returns `Ok(())` once the stop is raised (the
    /// caller cannot wait for its own end); the child then exits with `Shutdown`.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`] for an unknown pid, or one that already exited or was
    /// terminated; [`SupervisorError::NoSupervisor`].
    pub fn terminate_child(&self, pid: Pid) -> Result<(), SupervisorError> {
        self.0
            .call(|r| Request::TerminateChild(ChildRef::Pid(pid), r))?
    }

    /// The spec the child running as `pid` was started with (OTP's `get_childspec`).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`], [`SupervisorError::NoSupervisor`].
    pub fn child_spec(&self, pid: Pid) -> Result<ChildSpec, SupervisorError> {
        self.0.call(|r| Request::ChildSpec(ChildRef::Pid(pid), r))?
    }

    /// A snapshot of the whole tree under this supervisor; see
    /// [`SupervisorRef::snapshot`](crate::SupervisorRef::snapshot).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn snapshot(&self) -> Result<crate::tree::TreeSnapshot, SupervisorError> {
        crate::tree::snapshot(&self.0)
    }

    /// Every child, in start order.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.0.which_children()
    }

    /// Counts of children.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.0.count_children()
    }

    /// How many threads wait idle for the next child (see
    /// [`reuse_threads`](DynamicSupervisorBuilder::reuse_threads); always 0 without it).
    pub fn idle_threads(&self) -> usize {
        let threads = self.0.handover.as_ref().and_then(|h| h.threads.as_ref());
        threads.map_or(0, |t| t.idle())
    }

    /// A stream of everything the supervisor does from now on.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn events(&self) -> Result<Receiver<Event>, SupervisorError> {
        self.0.events()
    }
}

/// The owner of a running dynamic supervisor; from [`DynamicSupervisorBuilder::start`].
///
/// **Dropping it shuts it down and joins it.** At shutdown every child's stop signal is
/// raised at once, then each is waited for within its own timeout (counted from that
/// moment) and abandoned if late — so stopping 1,000 children takes about as long as the
/// slowest one, not the sum.
///
/// # Examples
///
/// ```
/// use steadfast::{ChildSpec, DynamicSupervisor, SupervisorError};
///
/// let sup = DynamicSupervisor::builder().max_children(1).start().unwrap();
/// let idle = || ChildSpec::worker("idle", |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) });
/// let pid = sup.start_child(idle()).unwrap();
/// assert!(matches!(sup.start_child(idle()), Err(SupervisorError::MaxChildren)));
/// sup.terminate_child(pid).unwrap();
/// assert!(matches!(sup.terminate_child(pid), Err(SupervisorError::NotFound)));
/// ```
#[must_use = "dropping a `DynamicSupervisor` shuts it down at once"]
pub struct DynamicSupervisor {
    handle: DynamicSupervisorRef,
    owned: Owned,
}

impl fmt::Debug for DynamicSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynamicSupervisor")
            .field(&self.handle.pid())
            .finish()
    }
}

impl std::ops::Deref for DynamicSupervisor {
    type Target = DynamicSupervisorRef;

    /// The handle: every call a handle makes (`start_child`, `which_children`,
    /// `events`, ...) works on the owner too.
    fn deref(&self) -> &DynamicSupervisorRef {
        &self.handle
    }
}

impl DynamicSupervisor {
    /// Settings for a new dynamic supervisor.
    pub fn builder() -> DynamicSupervisorBuilder {
        DynamicSupervisorBuilder::default()
    }

    /// A cloneable handle that does not own the supervisor.
    pub fn handle(&self) -> DynamicSupervisorRef {
        self.handle.clone()
    }

    /// Stops every child concurrently, then the supervisor, and joins its thread.
    ///
    /// From a process of this tree it only raises the stop and returns (see
    /// [`Supervisor::shutdown`](crate::Supervisor::shutdown)).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::IntensityExceeded`] if it had already given up on its own.
    pub fn shutdown(mut self) -> Result<(), SupervisorError> {
        self.owned.stop_and_join()
    }

    /// Blocks until the supervisor exits on its own (intensity exceeded; or significant
    /// children ended it, see [`AutoShutdown`], which is `Ok(())`) and joins it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::IntensityExceeded`] when that is why it exited;
    /// [`SupervisorError::WouldDeadlock`] when called from a process of this tree.
    pub fn join(mut self) -> Result<(), SupervisorError> {
        self.owned.join()
    }
}
