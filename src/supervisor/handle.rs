//! [`SupervisorRef`]: the cloneable handle on a running static supervisor.

use std::fmt;

use crossbeam_channel::Receiver;

use crate::child::spec::ChildSpec;
use crate::error::SupervisorError;
use crate::pid::Pid;
use crate::supervisor::address::Address;
use crate::supervisor::event::{ChildCounts, ChildInfo, Event};
use crate::supervisor::inbox::{ChildRef, Request};

/// A cloneable handle to a running static supervisor, for requests from any thread.
///
/// Get one from [`Supervisor::handle`](crate::Supervisor::handle), from the global [`registry`](crate::registry()) by
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
pub struct SupervisorRef(pub(crate) Address);

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SupervisorRef").field(&self.0.pid).finish()
    }
}

impl SupervisorRef {
    /// The handle of the live static supervisor running as `pid`, if any.
    pub fn from_pid(pid: Pid) -> Option<SupervisorRef> {
        Address::lookup(pid, false).map(SupervisorRef)
    }

    /// The static supervisor registered under `name`
    /// ([`SupervisorBuilder::name`](crate::SupervisorBuilder::name)), if one runs.
    pub fn whereis(name: &str) -> Option<SupervisorRef> {
        crate::registry::registry()
            .lookup_as::<SupervisorRef>(name)
            .map(|(_, s)| s)
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
    /// returns and exits with [`ExitReason::Shutdown`](crate::ExitReason::Shutdown).
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
