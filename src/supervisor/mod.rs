//! Static supervisors: the handles ([`Supervisor`], [`SupervisorRef`]) and their settings
//! ([`SupervisorBuilder`]). The event loop itself is private (`server`).

mod builder;
pub(crate) mod event;
pub(crate) mod handover;
pub(crate) mod inbox;
pub(crate) mod intensity;
mod restart;
pub(crate) mod server;
mod stop;
pub(crate) mod strategy;
mod table;

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use once_cell::sync::Lazy;

use crate::child::spec::ChildSpec;
use crate::error::SupervisorError;
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::registry::Registry;
use event::{ChildCounts, ChildInfo, Event};
use inbox::{ChildRef, Inbox, Msg, Request};
use server::EndSlot;

pub(crate) use builder::{start_top, DEFAULT_INTENSITY, DEFAULT_PERIOD};
pub use builder::{SupervisorBuilder, SupervisorSpec};
pub use strategy::{AutoShutdown, Strategy};

use crate::child::runner::Spawned;

/// Every live supervisor, by pid (so a pid from `which_children` leads to a handle).
pub(crate) static SUPERVISORS: Lazy<Registry<Pid, Handle>> = Lazy::new(Registry::new);

/// The sending side of a supervisor's inbox, shared by its static and dynamic handles.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) pid: Pid,
    /// Its name, or its id in its parent (what a tree snapshot calls it).
    pub(crate) label: Arc<str>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) dynamic: bool,
    /// Dynamic supervisors: lets a caller start a child on its own thread.
    pub(crate) handover: Option<Arc<handover::HandOver>>,
}

impl Handle {
    /// Sends a request and waits for its reply.
    pub(crate) fn call<T>(
        &self,
        request: impl FnOnce(Sender<T>) -> Request,
    ) -> Result<T, SupervisorError> {
        let (tx, rx) = bounded(1);
        let caller = Pid::current_if_any();
        if caller == Some(self.pid) {
            // From user code the supervisor runs on its own thread: its loop, which
            // would serve this, is the caller.
            server::answer_here(&self.inbox, request(tx));
            return rx.recv().map_err(|_| SupervisorError::WouldDeadlock);
        }
        self.inbox
            .send(Msg::Call(request(tx), caller))
            .map_err(|_| SupervisorError::NoSupervisor)?;
        rx.recv().map_err(|_| SupervisorError::NoSupervisor)
    }

    pub(crate) fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.call(Request::WhichChildren)
    }

    /// `which_children`, waiting at most `timeout` for the answer (`None`: no answer in
    /// time, or no supervisor). A late answer is dropped with its channel.
    pub(crate) fn which_children_within(
        &self,
        timeout: std::time::Duration,
    ) -> Option<Vec<ChildInfo>> {
        let (tx, rx) = bounded(1);
        let caller = Pid::current_if_any();
        if caller == Some(self.pid) {
            server::answer_here(&self.inbox, Request::WhichChildren(tx));
            return rx.try_recv().ok();
        }
        self.inbox
            .send(Msg::Call(Request::WhichChildren(tx), caller))
            .ok()?;
        rx.recv_timeout(timeout).ok()
    }

    pub(crate) fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.call(Request::CountChildren)
    }

    pub(crate) fn events(&self) -> Result<Receiver<Event>, SupervisorError> {
        // Wait for the reply, so that every event after this call reaches the stream.
        let (tx, rx) = unbounded();
        self.call(|reply| Request::Subscribe(tx, reply))?;
        Ok(rx)
    }

    /// A handle on no supervisor: every request returns `NoSupervisor` (a placeholder
    /// until a supervisor that is a child of someone else's tree has started).
    #[cfg(feature = "sessions")]
    pub(crate) fn detached(dynamic: bool) -> Handle {
        let pid = Pid::spawn(None);
        crate::pid::exit(pid, &ExitReason::NoProcess);
        let inbox = Arc::new(Inbox::new());
        drop(inbox.close());
        Handle {
            pid,
            label: Arc::from("(not started)"),
            inbox,
            dynamic,
            handover: None,
        }
    }

    pub(crate) fn lookup(pid: Pid, dynamic: bool) -> Option<Handle> {
        SUPERVISORS
            .lookup(&pid)
            .map(|(_, h)| h)
            .filter(|h| h.dynamic == dynamic)
    }
}

/// A cloneable handle to a running static supervisor, for requests from any thread.
///
/// Get one from [`Supervisor::handle`], from the global [`registry`](crate::registry()) by
/// the supervisor's name (`registry().lookup_as::<SupervisorRef>(name)`), or from a pid
/// with [`SupervisorRef::from_pid`]. Dropping it does nothing; once the supervisor has
/// exited, every request returns [`SupervisorError::NoSupervisor`].
///
/// Requests are served by the supervisor's thread one at a time, in arrival order, between
/// its own work (restarts included): a request waits while the supervisor is busy stopping
/// or starting a child — except requests from the very child it waits for: questions
/// (`which_children`, `count_children`, `events`) are answered, others refused with
/// [`SupervisorError::WouldDeadlock`] (see the crate docs, "Calling your own supervisor").
#[derive(Clone)]
pub struct SupervisorRef(pub(crate) Handle);

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SupervisorRef").field(&self.0.pid).finish()
    }
}

impl SupervisorRef {
    /// The handle of the live static supervisor running as `pid`, if any.
    pub fn from_pid(pid: Pid) -> Option<SupervisorRef> {
        Handle::lookup(pid, false).map(SupervisorRef)
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.0.pid
    }

    /// Adds a child at the end of the start order and starts it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::InvalidSpec`] (empty id), [`SupervisorError::AlreadyStarted`]
    /// (a running child has this id), [`SupervisorError::AlreadyPresent`] (a stopped one
    /// does), [`SupervisorError::StartFailed`] (the spec is not kept),
    /// [`SupervisorError::NoSupervisor`].
    pub fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        self.0.call(|r| Request::StartChild(spec, r))?
    }

    /// Stops a child (its shutdown timeout, then abandonment) and keeps its spec, as
    /// `Stopped` (a temporary child's spec is removed). A `Restarting` child stops being
    /// retried.
    ///
    /// When it returns, the child (and its subtree) has exited: its function returned,
    /// its names are released and its monitors fired. Its OS thread finishes tearing
    /// down just after; the supervisor joins it when next idle, and always before it
    /// exits itself, so a shutdown still leaves no thread behind.
    ///
    /// Called by the child itself (or from inside its subtree), it returns `Ok(())` as soon
    /// as the stop is raised, since the caller cannot wait for its own end; the child then
    /// returns and exits with [`ExitReason::Shutdown`].
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`], [`SupervisorError::NoSupervisor`].
    pub fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        self.0
            .call(|r| Request::TerminateChild(ChildRef::Id(id.to_owned()), r))?
    }

    /// Starts a `Stopped` child again.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`], [`SupervisorError::Running`],
    /// [`SupervisorError::Restarting`], [`SupervisorError::StartFailed`],
    /// [`SupervisorError::NoSupervisor`].
    pub fn restart_child(&self, id: &str) -> Result<Pid, SupervisorError> {
        self.0.call(|r| Request::RestartChild(id.to_owned(), r))?
    }

    /// Removes a `Stopped` child's spec.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`], [`SupervisorError::Running`],
    /// [`SupervisorError::Restarting`], [`SupervisorError::NoSupervisor`].
    pub fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        self.0.call(|r| Request::DeleteChild(id.to_owned(), r))?
    }

    /// The spec of the child with this id, as the supervisor holds it (OTP's
    /// `get_childspec`), whether it runs or not.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NotFound`], [`SupervisorError::NoSupervisor`].
    pub fn child_spec(&self, id: &str) -> Result<ChildSpec, SupervisorError> {
        self.0
            .call(|r| Request::ChildSpec(ChildRef::Id(id.to_owned()), r))?
    }

    /// Every child, in start order.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.0.which_children()
    }

    /// Counts of specs, running children, supervisors and workers.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.0.count_children()
    }

    /// A snapshot of the whole tree under this supervisor, nested supervisors included,
    /// with each child's restarts, last exit and uptime; its `Display` prints it like
    /// `pstree`. See [`TreeSnapshot`](crate::tree::TreeSnapshot).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{ChildSpec, Supervisor};
    ///
    /// let idle = |id: &str| ChildSpec::worker(id, |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) });
    /// let app = Supervisor::builder()
    ///     .name("snapshot-doc")
    ///     .child(idle("db"))
    ///     .child(ChildSpec::supervisor("web", Supervisor::builder().child(idle("listener"))))
    ///     .start()?;
    /// let tree = app.snapshot()?;
    /// assert_eq!(tree.root.children[1].children[0].id, "listener");
    /// println!("{tree}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Result<crate::tree::TreeSnapshot, SupervisorError> {
        crate::tree::snapshot(&self.0)
    }

    /// A stream of everything the supervisor does from now on, in order.
    ///
    /// The stream ends (disconnects) when the supervisor exits, after
    /// [`Event::SupervisorStopped`].
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn events(&self) -> Result<Receiver<Event>, SupervisorError> {
        self.0.events()
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
///   reported as [`ExitReason::Killed`], its names released at once. Its thread may go on
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

/// The owning side of a top-level supervisor process: its thread, its stop signal, and how
/// it ended. Shared by [`Supervisor`] and [`DynamicSupervisor`](crate::DynamicSupervisor).
pub(crate) struct Owned {
    pub(crate) run: Option<Spawned>,
    pub(crate) end: EndSlot,
}

impl Owned {
    /// Waits for the supervisor process to exit (raising its stop signal first if `stop`)
    /// and joins its thread.
    ///
    /// A process of the tree itself cannot wait for the tree's end (it would wait for
    /// itself): from there, a stop is only raised — the tree then stops the caller like
    /// any other child once it returns — and a plain join is refused with `WouldDeadlock`.
    pub(crate) fn stop_and_join(&mut self, stop: bool) -> Result<(), SupervisorError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        if Pid::current_if_any().is_some_and(|me| crate::pid::is_within(me, run.pid)) {
            if !stop {
                self.run = Some(run);
                return Err(SupervisorError::WouldDeadlock);
            }
            run.stop.raise();
            return Ok(());
        }
        if stop {
            run.stop.raise();
        }
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

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.stop_and_join(true);
    }
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
        self.owned.stop_and_join(true)
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
        self.owned.stop_and_join(false)
    }
}
