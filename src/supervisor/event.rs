//! Introspection: what a supervisor reports about its children, and its event stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::spec::{ChildKind, Restart};
use crate::exit::ExitReason;
use crate::pid::Pid;

/// The state of one child in its supervisor's table.
///
/// | status       | pid      | meaning                                                      |
/// |--------------|----------|--------------------------------------------------------------|
/// | `Running`    | `Some`   | its thread is running                                        |
/// | `Restarting` | `None`   | a restart failed (retried), or waits out its backoff         |
/// | `Stopped`    | `None`   | terminated (or exited and not restarted); the spec is kept   |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildStatus {
    /// The child's thread is running.
    Running,
    /// A restart failed and will be retried, or the restart waits out its backoff
    /// (see [`ChildInfo::restart_at`]).
    Restarting,
    /// Not running; the spec is kept, so `restart_child` can start it again.
    Stopped,
}

/// One row of [`which_children`](crate::SupervisorRef::which_children).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildInfo {
    /// The child's id (for a dynamic supervisor's children, the spec's id, not unique).
    pub id: Arc<str>,
    /// The running incarnation's pid.
    pub pid: Option<Pid>,
    /// Running, restarting or stopped.
    pub status: ChildStatus,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
    /// When a `Restarting` child waiting out its [backoff](crate::Backoff) is due to
    /// be restarted (`None` otherwise).
    pub restart_at: Option<Instant>,
    /// How many times it has been restarted (by any path) since its spec was added.
    pub restarts: u64,
    /// How its latest incarnation ended (`None` if none has ended yet).
    pub last_exit: Option<ExitReason>,
    /// When the running incarnation started (`None` while it does not run).
    pub started_at: Option<Instant>,
}

/// The answer of [`count_children`](crate::SupervisorRef::count_children), as OTP's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ChildCounts {
    /// Child specs held (running or not).
    pub specs: usize,
    /// Children whose thread is running.
    pub active: usize,
    /// Specs of kind supervisor.
    pub supervisors: usize,
    /// Specs of kind worker.
    pub workers: usize,
}

/// Something a supervisor did, in the order it did it.
///
/// Subscribe with [`SupervisorRef::events`](crate::SupervisorRef::events) (from then on) or
/// [`SupervisorBuilder::event_sink`](crate::supervisor::SupervisorBuilder::event_sink) (from
/// the very first start). Every subscriber sees the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A child was started (at supervisor start, by `start_child` or `restart_child`).
    ChildStarted {
        /// The child's id.
        id: Arc<str>,
        /// Its new pid.
        pid: Pid,
    },
    /// A child exited (on its own, or stopped by the supervisor).
    ChildExited {
        /// The child's id.
        id: Arc<str>,
        /// The incarnation that exited.
        pid: Pid,
        /// How it ended.
        reason: ExitReason,
    },
    /// A child was abandoned: it did not stop within its shutdown timeout. A
    /// `ChildExited` with reason `Killed` follows.
    ChildAbandoned {
        /// The child's id.
        id: Arc<str>,
        /// The abandoned incarnation.
        pid: Pid,
    },
    /// A child was restarted by the supervisor's strategy.
    ChildRestarted {
        /// The child's id.
        id: Arc<str>,
        /// Its new pid.
        pid: Pid,
    },
    /// A child with a [backoff](crate::Backoff) is to be restarted after `delay`; until
    /// then it is `Restarting`. (For group strategies the group is stopped at once.)
    RestartScheduled {
        /// The child's id.
        id: Arc<str>,
        /// How long until the restart.
        delay: Duration,
    },
    /// A restart could not start the child; it is `Restarting` and will be retried.
    RestartFailed {
        /// The child's id.
        id: Arc<str>,
        /// Why the start failed.
        error: String,
    },
    /// More restarts than the intensity allows happened within the period: the supervisor
    /// stops its children and exits.
    IntensityExceeded {
        /// The configured intensity.
        restarts: u32,
        /// The configured period.
        period: Duration,
    },
    /// The supervisor has stopped every child and is exiting.
    SupervisorStopped {
        /// Why: `Shutdown` when asked, or after exceeding its intensity.
        reason: ExitReason,
    },
}

impl Event {
    /// The id of the child the event is about, if it is about one.
    pub fn child_id(&self) -> Option<&str> {
        match self {
            Event::ChildStarted { id, .. }
            | Event::ChildExited { id, .. }
            | Event::ChildAbandoned { id, .. }
            | Event::ChildRestarted { id, .. }
            | Event::RestartScheduled { id, .. }
            | Event::RestartFailed { id, .. } => Some(id),
            Event::IntensityExceeded { .. } | Event::SupervisorStopped { .. } => None,
        }
    }
}
