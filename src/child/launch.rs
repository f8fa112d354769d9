//! Who starts a process thread, and so whom it reports to and how it may restart: the
//! child's side of its supervisor (`Notify`), the supervisor's leave to restart on the
//! child's own thread (`RestartPermit`), and what `runner::spawn` takes (`SpawnArgs`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::child::context::History;
use crate::child::reuse::ThreadPool;
use crate::child::spec::{Body, ChildSpec, Readiness, Restart};
use crate::exit::ExitReason;
use crate::pid::Pid;

/// Where a supervised process reports: its supervisor, seen from the child's side.
pub(crate) trait Notify: Send + Sync {
    /// The process's last incarnation, `pid`, has exited (sent last, once its names are
    /// released and its monitors fired).
    fn exited(&self, pid: Pid, reason: ExitReason);
    /// Incarnation `old` ended with `reason` and `new` runs in its place on the same
    /// thread. May hold the thread back while the supervisor catches up, until
    /// `stopping` is raised.
    /// `at` is when `new` started.
    fn restarted(&self, old: Pid, new: Pid, reason: ExitReason, at: Instant, stopping: &AtomicBool);
}

/// The supervisor's leave for a child to restart itself on its own thread after an exit
/// with the given reason: the decision stays the supervisor's (restart type, intensity),
/// handed to the child as a value. `false` leaves the exit to the supervisor, as if
/// there were no fast path.
///
/// A value rather than a closure, so that a child's permit costs no allocation of its own.
#[derive(Clone)]
pub(crate) struct RestartPermit {
    pub(crate) restart: Restart,
    pub(crate) window: Arc<dyn RestartWindow>,
}

/// The supervisor's side of a [`RestartPermit`]: whether an exit with `reason` of a child
/// with restart type `restart` may restart now (and, if so, the restart is counted).
pub(crate) trait RestartWindow: Send + Sync {
    fn permits(&self, restart: Restart, reason: &ExitReason) -> bool;
}

impl RestartPermit {
    pub(crate) fn permits(&self, reason: &ExitReason) -> bool {
        self.window.permits(self.restart, reason)
    }
}

/// What to spawn.
pub(crate) struct SpawnArgs {
    pub(crate) id: Arc<str>,
    pub(crate) thread_name: String,
    pub(crate) body: Body,
    pub(crate) stack_size: Option<usize>,
    pub(crate) wants_ready: bool,
    /// Which incarnation of its child the first one run is.
    pub(crate) history: History,
    pub(crate) launch: Launch,
    /// Whether the thread, once spawned, waits to be handed what its first incarnation
    /// runs ([`Spawned::begin`]) or told that its start failed ([`Spawned::cancel`]):
    /// meanwhile its start runs on the spawning thread, as its pid (`child::start_here`).
    pub(crate) deferred: bool,
    /// A pool whose idle threads may run it (see `child::reuse`).
    pub(crate) reuse: Option<Arc<ThreadPool>>,
}

impl SpawnArgs {
    /// What spawning `spec`'s thread under supervisor `label` takes: it reports
    /// readiness if its spec says so, and runs its first incarnation at once.
    pub(crate) fn for_child(
        spec: &ChildSpec,
        label: &str,
        history: History,
        launch: Launch,
    ) -> SpawnArgs {
        SpawnArgs {
            id: spec.id.clone(),
            thread_name: spec.thread_name(label),
            body: spec.body.clone(),
            stack_size: spec.stack_size,
            wants_ready: spec.readiness != Readiness::Spawned,
            history,
            launch,
            deferred: false,
            reuse: None,
        }
    }

    /// A top-level supervisor's thread, named `label`: nobody to notify, and waiting to
    /// be handed its first incarnation (its start runs on the thread that spawns it).
    pub(crate) fn top_level(label: &str, body: Body) -> SpawnArgs {
        SpawnArgs {
            id: Arc::from(label),
            thread_name: label.to_owned(),
            body,
            stack_size: None,
            wants_ready: false,
            history: History::default(),
            launch: Launch::TopLevel,
            deferred: true,
            reuse: None,
        }
    }

    /// With the stack size `default` unless the spec sets its own.
    pub(crate) fn default_stack(mut self, default: Option<usize>) -> SpawnArgs {
        self.stack_size = self.stack_size.or(default);
        self
    }

    /// Run by one of `pool`'s idle threads if one is free (see `child::reuse`).
    pub(crate) fn reusing(mut self, pool: Option<Arc<ThreadPool>>) -> SpawnArgs {
        self.reuse = pool;
        self
    }

    /// The same thread, waiting to be handed its first incarnation (see `deferred`);
    /// its start runs on the spawning thread, which learns the outcome itself.
    pub(crate) fn deferred(mut self) -> SpawnArgs {
        self.deferred = true;
        self.wants_ready = false;
        self
    }
}

/// Who starts a process thread: that decides whom it reports to and how it restarts.
pub(crate) enum Launch {
    /// A top-level supervisor, started by whoever builds the tree: it has nobody to
    /// notify; its exit goes to [`Spawned::done`].
    TopLevel,
    /// A child started by its supervisor's own thread.
    BySupervisor {
        /// Told of the exit last.
        notify: Arc<dyn Notify>,
        /// Set when a crashed incarnation may be restarted on this same thread.
        permit: Option<RestartPermit>,
        /// Whether the thread waits for a next incarnation after each exit (group
        /// restarts reuse it); a readiness child never does.
        resumable: bool,
    },
    /// A dynamic child started by a caller on supervisor `sup`'s behalf and handed over
    /// afterwards: it sends its supervisor nothing until [`Spawned::handed_over`].
    ByCaller {
        sup: Pid,
        notify: Arc<dyn Notify>,
        permit: Option<RestartPermit>,
    },
}
