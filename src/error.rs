//! All public error types.

use std::fmt;
use std::time::Duration;

use crate::exit::ExitReason;
use crate::pid::Pid;

/// The error a child function may return: any error, so `?` works on all of them.
pub type ChildError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a supervisor (or one of its children) could not be started.
///
/// Its `Display` text names the child and gives the cause, down to the root:
/// `child "db" exited before it started: panicked: no such file`. Following Rust's
/// convention (the cause in `Display` or in `source()`, never both), steadfast's errors
/// put it in `Display` and return no `source()`, so an error-chain printer (`anyhow`'s
/// `{:#}`, a `Caused by:` list) shows each cause once. The structured cause is in the
/// variant's fields.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The supervisor's settings or child specs are invalid (duplicate or empty ids, a zero
    /// period, ...); nothing was started.
    InvalidSpec(String),
    /// The supervisor's name is held in the global registry by a live process.
    NameTaken {
        /// The name asked for.
        name: String,
        /// The process that holds it.
        holder: Pid,
    },
    /// A child returned or panicked before it was started (before `ctx.ready()`, for a
    /// child that asks for readiness).
    ChildExited {
        /// The child's id.
        id: String,
        /// How it ended.
        reason: ExitReason,
    },
    /// A child did not call `ctx.ready()` within its `ready_timeout`; it was stopped.
    ReadyTimeout {
        /// The child's id.
        id: String,
        /// Its readiness deadline.
        timeout: Duration,
    },
    /// A server could not take its name: another live process holds it (OTP's
    /// `{already_started, Pid}`).
    AlreadyStarted {
        /// The server's child id.
        id: String,
        /// The name it asked for.
        name: String,
        /// The process that holds the name.
        holder: Pid,
    },
    /// A nested supervisor could not start its own children.
    Nested {
        /// The nested supervisor's id in its parent.
        id: String,
        /// Why it failed.
        source: Box<StartError>,
    },
    /// The operating system refused a thread, or the global thread cap
    /// ([`set_max_threads`](crate::set_max_threads)) was reached.
    Spawn {
        /// The child (or supervisor) id.
        id: String,
        /// What the spawn returned.
        source: SpawnError,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidSpec(why) => write!(f, "invalid supervisor spec: {why}"),
            StartError::NameTaken { name, holder } => {
                write!(
                    f,
                    "supervisor name {name:?} is already registered to {holder}"
                )
            }
            StartError::AlreadyStarted { id, name, holder } => {
                write!(
                    f,
                    "child {id:?} is already started: its name {name:?} is held by {holder}"
                )
            }
            StartError::ChildExited { id, reason } => {
                write!(f, "child {id:?} exited before it started: {reason}")
            }
            StartError::ReadyTimeout { id, timeout } => {
                write!(f, "child {id:?} was not ready within {timeout:?}")
            }
            StartError::Nested { id, source } => {
                write!(f, "supervisor child {id:?} failed to start: {source}")
            }
            StartError::Spawn { id, source } => {
                write!(f, "could not spawn a thread for {id:?}: {source}")
            }
        }
    }
}

/// The cause is part of `Display` (see the type's docs), so `source()` is `None`.
impl std::error::Error for StartError {}

impl StartError {
    /// The id of the child that failed, if the error is about one child.
    pub fn child_id(&self) -> Option<&str> {
        match self {
            StartError::ChildExited { id, .. }
            | StartError::ReadyTimeout { id, .. }
            | StartError::Nested { id, .. }
            | StartError::AlreadyStarted { id, .. }
            | StartError::Spawn { id, .. } => Some(id),
            StartError::InvalidSpec(_) | StartError::NameTaken { .. } => None,
        }
    }
}

/// Why a thread could not be spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// steadfast's global thread cap was reached (see [`set_max_threads`](crate::set_max_threads)).
    #[error("the thread cap of {limit} live threads is reached")]
    ThreadLimit {
        /// The cap in force.
        limit: usize,
    },
    /// Under an address-space limit (`ulimit -v`), this thread's stack would take the
    /// stacks of the live threads past their budget, half of that limit (see
    /// [`set_max_threads`](crate::set_max_threads)).
    #[error(
        "a {stack}-byte stack does not fit: live threads' stacks reserve {reserved} of \
         the {budget} bytes allowed (half the address-space limit); smaller stacks fit more"
    )]
    AddressSpace {
        /// The bytes this thread's stack would reserve.
        stack: usize,
        /// The bytes the live threads' stacks reserve already.
        reserved: usize,
        /// Half of the process's address-space limit.
        budget: usize,
    },
    /// The operating system refused the thread.
    #[error("the operating system refused a thread: {0}")]
    Os(std::io::Error),
}

impl From<std::io::Error> for SpawnError {
    fn from(e: std::io::Error) -> Self {
        SpawnError::Os(e)
    }
}

/// Why a request to a supervisor failed. The variants mirror OTP's supervisor errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No child with that id (or pid) exists.
    #[error("no such child")]
    NotFound,
    /// A child with that id is already running, with this pid.
    #[error("child is already started as {0}")]
    AlreadyStarted(Pid),
    /// A child spec with that id is present (not running); restart or delete it first.
    #[error("a child spec with that id is already present")]
    AlreadyPresent,
    /// The child is running: terminate it first.
    #[error("child is running")]
    Running,
    /// The child is waiting to be restarted after a failed restart.
    #[error("child is restarting")]
    Restarting,
    /// The child could not be started.
    #[error("{0}")]
    StartFailed(StartError),
    /// The supervisor has exited.
    #[error("the supervisor has exited")]
    NoSupervisor,
    /// The request came from a process the supervisor would have to wait for while
    /// serving it — a child it is starting or stopping (or a process inside that child's
    /// subtree), or, for [`join`](crate::Supervisor::join), a process of the tree itself.
    /// Answered at once instead of deadlocking until a timeout.
    #[error("the caller is a process this request would wait for")]
    WouldDeadlock,
    /// The child spec is invalid (empty id, ...).
    #[error("invalid child spec: {0}")]
    InvalidSpec(String),
    /// The child declined to start ([`Context::ignore`](crate::Context::ignore), OTP's
    /// `ignore`). Not a failure: a static supervisor keeps the spec, `Stopped`.
    #[error("the child declined to start (ignore)")]
    Ignored,
    /// A dynamic supervisor already has its `max_children`.
    #[error("the supervisor has reached its maximum number of children")]
    MaxChildren,
    /// The supervisor gave up: more than `restarts` restarts happened within `period`.
    #[error("restart intensity exceeded: more than {restarts} restarts in {period:?}")]
    IntensityExceeded {
        /// The configured intensity.
        restarts: u32,
        /// The configured period.
        period: Duration,
    },
    /// The supervisor's own thread panicked (a bug in steadfast; reported, not hidden).
    #[error("the supervisor thread panicked: {0}")]
    Panicked(String),
}

/// A [`Context`](crate::Context) wait ended because the process was asked to stop.
///
/// Returning it from a child (with `?`) ends the child with [`ExitReason::Shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the process was asked to stop")]
pub struct Stopped;

/// Why [`Context::recv`](crate::Context::recv) returned without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The process was asked to stop. Returned from a child with `?`, this ends it with
    /// [`ExitReason::Shutdown`].
    #[error("the process was asked to stop")]
    Stopped,
    /// The channel is empty and disconnected.
    #[error("receiving on an empty and disconnected channel")]
    Disconnected,
}

/// Why [`Context::recv_timeout`](crate::Context::recv_timeout) returned without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// The process was asked to stop. Returned from a child with `?`, this ends it with
    /// [`ExitReason::Shutdown`].
    #[error("the process was asked to stop")]
    Stopped,
    /// No message arrived in time.
    #[error("timed out waiting on channel")]
    Timeout,
    /// The channel is empty and disconnected.
    #[error("receiving on an empty and disconnected channel")]
    Disconnected,
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Stopped => RecvTimeoutError::Stopped,
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
        }
    }
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The key is held by this live process.
    #[error("key is already registered to {0}")]
    AlreadyRegistered(Pid),
    /// The would-be owner has exited: a dead process cannot own a name.
    #[error("process {0} is not alive")]
    NotAlive(Pid),
    /// No entry under that key.
    #[error("key is not registered")]
    NotRegistered,
    /// The entry belongs to another process: only its owner may change it.
    #[error("key is registered to {0}, not to the caller")]
    NotOwner(Pid),
}

/// Whether an error returned by a child means "I was stopped" (so the exit is `Shutdown`).
pub(crate) fn is_stop_error(err: &ChildError) -> bool {
    err.is::<Stopped>()
        || matches!(err.downcast_ref::<RecvError>(), Some(RecvError::Stopped))
        || matches!(
            err.downcast_ref::<RecvTimeoutError>(),
            Some(RecvTimeoutError::Stopped)
        )
}
