//! Child specifications: what to run, and how to restart and stop it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::child::backoff::Backoff;
use crate::child::context::{Context, ReadyMsg};
use crate::error::{is_stop_error, ChildError};
use crate::exit::ExitReason;
use crate::pid::Pid;

/// When a child that exited is restarted. The decision table (OTP's `do_restart`):
///
/// | restart \ exit | `Normal` | `Shutdown` | `Failed` / `Panicked` / `Killed` |
/// |----------------|----------|------------|----------------------------------|
/// | `Permanent`    | restart  | restart    | restart                          |
/// | `Transient`    | —        | —          | restart                          |
/// | `Temporary`    | dropped  | dropped    | dropped                          |
///
/// A temporary child is never restarted, and its spec is removed from the supervisor when
/// it exits. The strategy acts only when the dead child is to be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always restarted (the default).
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted; removed once it exits.
    Temporary,
}

/// How long a supervisor waits for a child to stop once its stop signal is raised.
///
/// Stopping is cooperative: a child that has not returned when the time is up is
/// *abandoned* — its thread is detached, its exit is reported as [`ExitReason::Killed`],
/// its names are released, and the supervisor carries on. In an ordered stop the signal
/// may be raised by the thread of the child stopped just before, a moment before the
/// supervisor starts counting: the wait is never shorter than the setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// Wait up to this long (workers default to 5 s).
    Timeout(Duration),
    /// Wait as long as it takes (supervisors' default).
    Infinity,
    /// Do not wait: raise the signal and abandon the child unless it has already exited.
    Immediate,
}

/// Whether a child is a worker or a supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildKind {
    /// A child running a user function.
    Worker,
    /// A nested (static or dynamic) supervisor.
    Supervisor,
}

/// What a process runs once started: its context in, its exit reason out. Panics are
/// caught around it by the runner.
pub(crate) type Body = Arc<dyn Fn(&Context) -> ExitReason + Send + Sync>;

/// A nested supervisor's start (register, `on_start`, its children), run as process `pid`
/// on the thread that waits for it, ahead of its own thread: what that thread then runs,
/// or why the start failed. See `child::start_here`.
pub(crate) type StartHere = Arc<dyn Fn(Pid) -> Result<Serve, ReadyMsg> + Send + Sync>;

/// The rest of a process's first incarnation once its start has run elsewhere.
pub(crate) type Serve = Box<dyn FnOnce(&Context) -> ExitReason + Send>;

/// When `start` considers a child started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Once its thread has been spawned.
    Spawned,
    /// When it calls `ctx.ready()`, within this deadline.
    Within(Duration),
    /// When it calls `ctx.ready()`, however long that takes (nested supervisors).
    Unbounded,
}

/// A description of one child: its id, what it runs, and how it is restarted and stopped.
///
/// Built with [`ChildSpec::worker`] or [`ChildSpec::supervisor`], then refined with the
/// builder methods. A spec is cheap to clone (the function is shared).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::{ChildSpec, Restart, Shutdown};
///
/// let spec = ChildSpec::worker("ticker", |ctx| {
///     while ctx.sleep(Duration::from_millis(10)).is_ok() {}
///     Ok(())
/// })
/// .restart(Restart::Transient)
/// .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
/// assert_eq!(spec.id(), "ticker");
/// ```
#[derive(Clone)]
#[must_use = "a child spec does nothing until a supervisor starts it"]
pub struct ChildSpec {
    pub(crate) id: Arc<str>,
    pub(crate) kind: ChildKind,
    pub(crate) body: Body,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) readiness: Readiness,
    pub(crate) stack_size: Option<usize>,
    pub(crate) fresh_thread: bool,
    /// Whether its exit may end its supervisor (see [`ChildSpec::significant`]).
    pub(crate) significant: bool,
    /// For a task: set once its function has been taken to run.
    pub(crate) task: Option<Arc<AtomicBool>>,
    pub(crate) backoff: Option<Arc<Backoff>>,
    /// For a nested supervisor: its start, for a caller that waits for it to run itself.
    pub(crate) start_here: Option<StartHere>,
    /// Told each time the supervisor stops this child (see [`OnStopped`]).
    pub(crate) on_stopped: Option<OnStopped>,
}

/// Called by a supervisor each time it decides to stop a child — terminate, shutdown,
/// a group restart, giving up — whether an incarnation runs (called just before its stop
/// is raised) or the child waits to be restarted (after a crash, or out a backoff). What
/// outlives a child's incarnations (a server's mailbox) learns here that the child is
/// stopped, however its incarnation then ends: returning, panicking, or abandoned.
/// A crash is not a stop: it is not called then. Runs on the supervisor's thread.
pub(crate) type OnStopped = Arc<dyn Fn() + Send + Sync>;

/// The default shutdown timeout of a worker.
pub(crate) const WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

impl ChildSpec {
    /// A worker child running `f` on its own thread.
    ///
    /// **Worker or task?** A worker is a service that can start over from scratch — a
    /// connection pool, a listener, a cache — so `f` is `Fn` and runs again on each
    /// restart (permanent by default). For one piece of work that owns what it needs (an
    /// accepted socket, a job) and must not run twice, use a [`task`](ChildSpec::task).
    ///
    /// `f` is called once per incarnation. It returns `Ok(())` to exit normally (or, after
    /// its stop signal, with `Shutdown`), `Err(e)` to exit with [`ExitReason::Failed`],
    /// or `Err(reason.into())` with an [`ExitReason`] to exit with that reason (a
    /// [`ShutdownWith`](ExitReason::ShutdownWith), say, which is not a crash).
    /// Returning one of the context's stop errors ([`Stopped`](crate::Stopped),
    /// [`RecvError::Stopped`](crate::RecvError::Stopped), ...) with `?` counts as `Shutdown`.
    ///
    /// Defaults: [`Restart::Permanent`], [`Shutdown::Timeout`] of 5 s. It counts as started
    /// once its thread has been spawned (whether or not `f` has begun running): the next
    /// child starts right away. To make the next child wait for this one's set-up, give it
    /// a [`ready_timeout`](ChildSpec::ready_timeout) and call
    /// [`Context::ready`](crate::Context::ready) when set up.
    ///
    /// # Panics
    ///
    /// A panic in `f` is caught on the child's thread and becomes
    /// [`ExitReason::Panicked`]; it never reaches the supervisor.
    pub fn worker<F>(id: impl Into<String>, f: F) -> ChildSpec
    where
        F: Fn(&Context) -> Result<(), ChildError> + Send + Sync + 'static,
    {
        let body: Body = Arc::new(move |ctx: &Context| match f(ctx) {
            Ok(()) if ctx.is_stopping() => ExitReason::Shutdown,
            Ok(()) => ExitReason::Normal,
            Err(e) if is_stop_error(&e) => ExitReason::Shutdown,
            Err(e) => match e.downcast::<ExitReason>() {
                Ok(reason) => *reason,
                Err(e) => ExitReason::failed(e),
            },
        });
        ChildSpec {
            id: Arc::from(id.into()),
            kind: ChildKind::Worker,
            body,
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(WORKER_SHUTDOWN),
            readiness: Readiness::Spawned,
            stack_size: None,
            fresh_thread: false,
            significant: false,
            task: None,
            backoff: None,
            start_here: None,
            on_stopped: None,
        }
    }

    /// A one-shot child: `f` runs once, owning what it captured, and is never restarted
    /// (a [`Restart::Temporary`] child, removed from its supervisor when it exits) —
    /// Elixir's `Task.Supervisor` case, most often under a
    /// [`DynamicSupervisor`](crate::DynamicSupervisor).
    ///
    /// **Worker or task?** A [`worker`](ChildSpec::worker) is a service: its function can
    /// run again from scratch, so it is `Fn` and restarted when it dies. A task is a piece
    /// of work with something only it owns — an accepted `TcpStream`, a job, a file —
    /// that makes no sense to run twice: its function is `FnOnce`, so it can move those
    /// out of its captures. A crash ends only that task and is reported like any other
    /// (an event, a log record, its monitors); its siblings carry on.
    ///
    /// Setting another restart type on a task makes it an invalid spec (a second run
    /// would have nothing to run), and so does starting a task (or a clone of it) whose
    /// function has run already.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Write};
    /// use std::net::{TcpListener, TcpStream};
    /// use steadfast::{ChildSpec, DynamicSupervisor};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let client = TcpStream::connect(listener.local_addr()?)?;
    /// let (mut stream, _) = listener.accept()?;
    /// let handlers = DynamicSupervisor::builder().start()?;
    /// handlers.start_child(ChildSpec::task("greet", move |_ctx| {
    ///     stream.write_all(b"hello\n")?; // the task owns the stream, and drops it when done
    ///     Ok(())
    /// }))?;
    /// let mut line = String::new();
    /// BufReader::new(client).read_line(&mut line)?;
    /// assert_eq!(line, "hello\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task<F>(id: impl Into<String>, f: F) -> ChildSpec
    where
        F: FnOnce(&Context) -> Result<(), ChildError> + Send + 'static,
    {
        let ran = Arc::new(AtomicBool::new(false));
        let slot = Mutex::new(Some(f));
        let taken = ran.clone();
        let id = id.into();
        let task_id = id.clone();
        let mut spec = ChildSpec::worker(id, move |ctx| {
            let f = slot.lock().take();
            taken.store(true, Ordering::Release);
            match f {
                Some(f) => f(ctx),
                None => Err(format!("task {task_id:?} has already run; a task runs once").into()),
            }
        });
        spec.restart = Restart::Temporary;
        spec.task = Some(ran);
        spec
    }

    /// Its thread's name under supervisor `label`: the label, `/`, its id (one
    /// allocation, sized up front: `format!` would grow it twice).
    pub(crate) fn thread_name(&self, label: &str) -> String {
        let mut name = String::with_capacity(label.len() + 1 + self.id.len());
        name.push_str(label);
        name.push('/');
        name.push_str(&self.id);
        name
    }

    /// A child that runs a body of the crate's own (a nested supervisor).
    pub(crate) fn nested(id: impl Into<String>, body: Body, start_here: StartHere) -> ChildSpec {
        ChildSpec {
            id: Arc::from(id.into()),
            kind: ChildKind::Supervisor,
            body,
            restart: Restart::Permanent,
            shutdown: Shutdown::Infinity,
            readiness: Readiness::Unbounded,
            stack_size: None,
            fresh_thread: true,
            significant: false,
            task: None,
            backoff: None,
            start_here: Some(start_here),
            on_stopped: None,
        }
    }

    /// Sets the restart type (default [`Restart::Permanent`]).
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets how long the supervisor waits for this child to stop (default 5 s for workers,
    /// [`Shutdown::Infinity`] for supervisors).
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Makes starting this child wait until it calls [`Context::ready`], for at most
    /// `timeout`.
    ///
    /// Use it for children that must finish their set-up (open a socket, register a name)
    /// before the next child starts. A child that returns or panics before `ready()`, or
    /// misses the deadline, fails to start.
    pub fn ready_timeout(mut self, timeout: Duration) -> ChildSpec {
        self.readiness = Readiness::Within(timeout);
        self
    }

    /// Sets the stack size of the child's thread, in bytes (default: its supervisor's
    /// [`stack_size`](crate::SupervisorBuilder::stack_size), else std's).
    ///
    /// Zero is an invalid spec; a size the operating system cannot give fails the start
    /// with [`SpawnError::Os`](crate::SpawnError::Os); under an address-space limit the
    /// thread cap counts the stack at this size ([`set_max_threads`](crate::set_max_threads)).
    pub fn stack_size(mut self, bytes: usize) -> ChildSpec {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs every incarnation on a new thread.
    ///
    /// By default, a worker of a one_for_one (or dynamic) supervisor that crashes and is to
    /// be restarted re-enters its function **on its own thread**, with a new [`Pid`](crate::Pid):
    /// the decision (restart type, the supervisor's intensity window, not stopping) is made
    /// on that thread and the supervisor is told afterwards. That saves a thread spawn per
    /// restart. What carries over to the next incarnation is the thread itself: its
    /// thread-locals, its name, its stack size. Group restarts (one_for_all, rest_for_one)
    /// likewise stop each member as usual — its incarnation returns and exits, names
    /// released — and then hand its thread the next incarnation instead of spawning one.
    /// A child whose code keeps state in thread-locals (or must not see what a panic left
    /// there) should ask for a fresh thread per incarnation with this.
    ///
    /// Children that wait for readiness and nested supervisors always get a fresh thread,
    /// and so does a dynamic child that crashes before its supervisor has taken it in
    /// (see [`DynamicSupervisorRef::start_child`](crate::DynamicSupervisorRef::start_child)).
    pub fn fresh_thread(mut self) -> ChildSpec {
        self.fresh_thread = true;
        self
    }

    /// Marks the child significant (OTP 24's `significant`): when it exits on its own and
    /// is not restarted, its supervisor may shut itself down, as its
    /// [`AutoShutdown`](crate::AutoShutdown) setting says.
    ///
    /// Only a [`Transient`](Restart::Transient) or [`Temporary`](Restart::Temporary)
    /// child can be significant (a permanent one never ends for good); a supervisor whose
    /// auto-shutdown is [`Never`](crate::AutoShutdown::Never) refuses significant
    /// children. Both are invalid specs.
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }

    /// Waits before each restart of this child, as `backoff` says, instead of
    /// restarting at once — for a child that crashes while something it needs is down.
    ///
    /// The supervisor keeps serving requests while a restart waits: the child shows as
    /// [`Restarting`](crate::ChildStatus::Restarting) with its
    /// [`restart_at`](crate::ChildInfo::restart_at), an
    /// [`Event::RestartScheduled`](crate::Event::RestartScheduled) says when, and a
    /// `terminate_child` or a shutdown during the wait takes effect at once. The restart
    /// counts toward the supervisor's intensity when the child exits, not when the
    /// delayed restart happens, so the intensity still measures how often the child
    /// fails. A child with a backoff restarts on a new thread. For group strategies the
    /// group is stopped at once and started again after the delay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::{Backoff, ChildSpec};
    ///
    /// let spec = ChildSpec::worker("uplink", |_ctx| Err("connection refused".into()))
    ///     .backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30)));
    /// # let _ = spec;
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> ChildSpec {
        self.backoff = Some(Arc::new(backoff));
        self
    }

    /// Whether this child is significant (see [`significant`](ChildSpec::significant)).
    pub fn is_significant(&self) -> bool {
        self.significant
    }

    /// Whether this child is a one-shot task (see [`task`](ChildSpec::task)).
    pub fn is_task(&self) -> bool {
        self.task.is_some()
    }

    /// The child's restart type.
    pub fn restart_setting(&self) -> Restart {
        self.restart
    }

    /// The child's restart type (the former name of
    /// [`restart_setting`](ChildSpec::restart_setting)).
    #[deprecated(since = "0.1.0", note = "use `restart_setting`, as `shutdown_setting`")]
    pub fn restart_type(&self) -> Restart {
        self.restart
    }

    /// The child's shutdown setting.
    pub fn shutdown_setting(&self) -> Shutdown {
        self.shutdown
    }

    /// The child's restart backoff, if any.
    pub fn backoff_setting(&self) -> Option<&Backoff> {
        self.backoff.as_deref()
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this child is a worker or a supervisor.
    pub fn kind(&self) -> ChildKind {
        self.kind
    }

    /// Checks what a supervisor checks before it starts the child.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_name("child id", &self.id)?;
        let id = &self.id;
        if self.stack_size == Some(0) {
            return Err(format!("child {id:?}: stack size must not be zero"));
        }
        if self.significant && self.restart == Restart::Permanent {
            return Err(format!(
                "child {id:?}: a permanent child cannot be significant (it never ends for \
                 good); make it transient or temporary"
            ));
        }
        if let Some(ran) = &self.task {
            if self.restart != Restart::Temporary {
                return Err(format!(
                    "child {id:?} is a task, which runs once: its restart type must be \
                     Temporary, not {:?}",
                    self.restart
                ));
            }
            if ran.load(Ordering::Acquire) {
                return Err(format!(
                    "task {id:?} has already run; a task runs once (start a new task, or \
                     use a worker to run the same function again)"
                ));
            }
        }
        if let Some(backoff) = &self.backoff {
            backoff
                .validate()
                .map_err(|why| format!("child {id:?}: {why}"))?;
        }
        Ok(())
    }
}

/// A name that ends up in a thread's name (a child id, a supervisor name): not blank, and
/// free of NUL bytes, which the thread builder refuses.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.contains('\0') {
        return Err(format!("{what} {name:?} must not contain a NUL byte"));
    }
    Ok(())
}

/// A restart-intensity period: not zero.
pub(crate) fn check_period(period: Duration) -> Result<(), String> {
    if period.is_zero() {
        return Err("period must not be zero".to_owned());
    }
    Ok(())
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("readiness", &self.readiness)
            .field("stack_size", &self.stack_size)
            .field("fresh_thread", &self.fresh_thread)
            .field("significant", &self.significant)
            .field("task", &self.task.is_some())
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}
