//! Settings of a static supervisor, validated before anything starts.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::child::spec::{check_name, check_period, ChildSpec};
use crate::clock::Clock;
use crate::error::{StartError, SupervisorError};
use crate::supervisor::answers::Observer;
use crate::supervisor::config::{Config, Mode, OnStart};
use crate::supervisor::event::Event;
use crate::supervisor::handle::SupervisorRef;
use crate::supervisor::launch::{start_top, Owned, SupervisorSpec};
use crate::supervisor::strategy::{check_significant, AutoShutdown, Strategy};
use crate::supervisor::tracked::Tracked;

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
    clock: Clock,
    stack_size: Option<usize>,
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
            clock: Clock::default(),
            stack_size: None,
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

    /// Runs this supervisor, and everything it starts, on a test's manual clock
    /// (feature `testing`): see [`ManualClock`](crate::testing::ManualClock). A nested
    /// supervisor without one runs on its parent's.
    #[cfg(feature = "testing")]
    pub fn clock(mut self, clock: &crate::testing::ManualClock) -> Self {
        self.clock = Clock::manual(clock.clone());
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

    /// The child spec of this supervisor nested under another, with child id `id`, and
    /// a handle that follows it across its restarts ([`Tracked`]): what
    /// [`ChildSpec::supervisor`] makes, plus the handle, so that its siblings need no
    /// name to find it. Its own [`on_start`](SupervisorBuilder::on_start), if any, still
    /// runs (after the handle is updated).
    pub fn build(mut self, id: impl Into<String>) -> (ChildSpec, Tracked<SupervisorRef>) {
        let id = id.into();
        let (tracked, on_start) = Tracked::new(&id, SupervisorRef::clone, self.on_start.take());
        self.on_start = Some(on_start);
        (ChildSpec::supervisor(id, self), tracked)
    }

    pub(crate) fn validate(&self) -> Result<(), StartError> {
        check_period(self.period).map_err(StartError::InvalidSpec)?;
        if self.stack_size == Some(0) {
            return Err(StartError::InvalidSpec(
                "stack size must not be zero".into(),
            ));
        }
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

    /// The manual clock it was given, if any (the test kit's tree advances it to stop).
    #[cfg(feature = "testing")]
    pub(crate) fn manual_clock(&self) -> Option<crate::testing::ManualClock> {
        self.clock.as_manual().cloned()
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
            clock: self.clock.clone(),
            stack_size: self.stack_size,
            reuse: None,
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

/// The owner of a running supervision tree; from [`SupervisorBuilder::start`].
///
/// **Dropping a `Supervisor` shuts the tree down and joins it**: every child is stopped in
/// reverse start order (each within its shutdown timeout, then abandoned), and every thread
/// of the tree has ended — except abandoned ones, which are reported — when `drop`
/// returns. Use [`handle`](Supervisor::handle) for a cloneable reference that does not own
/// the tree.
///
/// # Differences from Erlang/OTP
///
/// - **No brutal kill.** Threads cannot be killed; stopping is cooperative. A child that
///   does not return within its [`Shutdown`](crate::Shutdown) is *abandoned*: detached,
///   reported as [`ExitReason::Killed`](crate::ExitReason::Killed), its names released at once. Its thread may go on
///   running until it returns.
/// - **No selective receive.** Children use channels; waits through the
///   [`Context`](crate::Context) also wake on the stop signal.
/// - **Exact windows.** Restart intensity uses `Instant`s, not whole seconds.
/// - **Restarts may reuse the thread.** A one_for_one worker that crashes re-enters its
///   function on its own thread with a new pid; group restarts resume each stopped worker
///   on its own thread (see [`ChildSpec::fresh_thread`](crate::ChildSpec::fresh_thread)).
/// - **Synchronous name clean-up.** A process's names are gone before anyone sees it exit.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::{ChildSpec, Strategy, Supervisor};
///
/// let sup = Supervisor::builder()
///     .strategy(Strategy::OneForOne)
///     .intensity(3, Duration::from_secs(5))
///     .child(ChildSpec::worker("worker", |ctx| {
///         while ctx.sleep(Duration::from_millis(10)).is_ok() {}
///         Ok(())
///     }))
///     .start()
///     .unwrap();
/// assert_eq!(sup.count_children().unwrap().active, 1);
/// sup.shutdown().unwrap();
/// ```
#[must_use = "dropping a `Supervisor` shuts its tree down at once"]
pub struct Supervisor {
    pub(crate) handle: SupervisorRef,
    pub(crate) owned: Owned,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Supervisor")
            .field(&self.handle.pid())
            .finish()
    }
}

impl std::ops::Deref for Supervisor {
    type Target = SupervisorRef;

    /// The handle: every call a handle makes (`start_child`, `which_children`,
    /// `events`, ...) works on the owner too.
    fn deref(&self) -> &SupervisorRef {
        &self.handle
    }
}

impl Supervisor {
    /// Settings for a new supervisor.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::default()
    }

    /// A cloneable handle that does not own the tree.
    pub fn handle(&self) -> SupervisorRef {
        self.handle.clone()
    }

    /// Stops every child in reverse start order, then the supervisor, and joins its thread.
    ///
    /// Called from a process of this very tree, it cannot wait (the tree would wait for the
    /// caller, the caller for the tree): it raises the stop and returns `Ok(())`; the tree
    /// then stops the caller like any other child once the caller returns.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::IntensityExceeded`] if the supervisor had already given up on its
    /// own; [`SupervisorError::Panicked`] for a bug in steadfast's own loop.
    pub fn shutdown(mut self) -> Result<(), SupervisorError> {
        self.owned.stop_and_join()
    }

    /// Blocks until the supervisor exits on its own — when its restart intensity is
    /// exceeded, or when significant children end it (see
    /// [`AutoShutdown`]), which is `Ok(())` — and joins its thread.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::IntensityExceeded`] when that is why it exited;
    /// [`SupervisorError::Panicked`] for a bug in steadfast's own loop;
    /// [`SupervisorError::WouldDeadlock`] when called from a process of this tree (the
    /// handle is consumed all the same, so the tree then stops, as on drop).
    pub fn join(mut self) -> Result<(), SupervisorError> {
        self.owned.join()
    }
}
