//! A supervisor's settings, as its builder validated them, shared by all its
//! incarnations; and where it leaves how it ended.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::child::spec::ChildSpec;
use crate::clock::Clock;
use crate::error::{StartError, SupervisorError};
use crate::supervisor::address::Address;
pub(crate) use crate::supervisor::answers::Observer;
use crate::supervisor::event::Event;
use crate::supervisor::handle::SupervisorRef;
use crate::supervisor::strategy::{AutoShutdown, Strategy};

/// What kind of supervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Children given up front, restarted by a strategy, stopped in order.
    Static(Strategy),
    /// Children started at run time (one_for_one), up to a limit, stopped all at once.
    Dynamic { max_children: Option<usize> },
}

/// The settings a supervisor runs with, shared by all its incarnations.
pub(crate) struct Config {
    /// Names its threads: `label/child-id`.
    pub(crate) label: Arc<str>,
    pub(crate) mode: Mode,
    pub(crate) intensity: u32,
    pub(crate) period: Duration,
    pub(crate) auto_shutdown: AutoShutdown,
    pub(crate) children: Vec<ChildSpec>,
    pub(crate) sinks: Vec<Sender<Event>>,
    /// Sees every event first ([`SupervisorBuilder::on_event`](crate::SupervisorBuilder::on_event)).
    pub(crate) observer: Option<Observer>,
    /// Runs before the first child starts ([`SupervisorBuilder::on_start`](crate::SupervisorBuilder::on_start)).
    pub(crate) on_start: Option<OnStart>,
    /// What the global registry holds for a named supervisor: its typed handle (a
    /// `SupervisorRef`, or a `DynamicSupervisorRef`, which this module does not name).
    pub(crate) named: fn(Address) -> crate::registry::AnyValue,
    /// The clock its builder was given (the test kit's); else it runs on its parent's,
    /// or real time.
    pub(crate) clock: Clock,
    /// Dynamic supervisors: threads kept for reuse, at most this many idle, each for
    /// at most this long (`DynamicSupervisorBuilder::reuse_threads`).
    pub(crate) reuse: Option<(usize, Duration)>,
    /// The stack size of its children's threads, unless a child sets its own.
    pub(crate) stack_size: Option<usize>,
}

impl Config {
    pub(super) fn strategy(&self) -> Strategy {
        match self.mode {
            Mode::Static(strategy) => strategy,
            Mode::Dynamic { .. } => Strategy::OneForOne,
        }
    }
}

/// Runs on a supervisor's thread before its first child starts; an `Err` fails the start.
pub(crate) type OnStart = Arc<dyn Fn(&SupervisorRef) -> Result<(), StartError> + Send + Sync>;

/// How a supervisor ended, beyond its `ExitReason` (which is `Shutdown` either way).
pub(crate) type EndSlot = Arc<Mutex<Option<SupervisorError>>>;
