//! A test kit for supervised code (feature `testing`): a tree started for one test and
//! checked when it ends, and expectations that wait for what the tree does — no sleep
//! anywhere in a test.
//!
//! Add it to your dev-dependencies: `steadfast = { version = "..", features =
//! ["testing"] }`.
//!
//! ```
//! use steadfast::testing::TestTree;
//! use steadfast::{channel, ChildSpec, Supervisor};
//!
//! let (crash, crashes) = channel::unbounded::<()>();
//! let tree = TestTree::start(Supervisor::builder().child(ChildSpec::worker("db", move |ctx| {
//!     ctx.recv(&crashes)?;
//!     Err("connection lost".into())
//! })));
//! crash.send(())?;
//! let why = tree.expect_crash("db");           // waits (10 s at most), fails with what came
//! assert_eq!(why.to_string(), "failed: connection lost");
//! let pid = tree.expect_restart("db");         // the new incarnation's pid
//! assert_eq!(tree.wait_running("db"), pid);
//! tree.expect_quiet(std::time::Duration::from_millis(20)); // and then nothing else
//! // Dropped: stopped, and checked (no thread left behind, no panic nobody expected,
//! // no name still held by one of its processes).
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Time, too: a [`ManualClock`] given to the tree (`Supervisor::builder().clock(&clock)`)
//! is the time of every deadline in it, and moves only when the test advances it — see
//! its docs for an example with backoff.
//!
//! Expectations read the root supervisor's events, from its very first start, like
//! ExUnit's `assert_receive`: each takes the first event that matches and has not been
//! taken yet, waiting for it if it has not come; a failure lists every event the tree
//! sent. They cover the root's own children; the checks on drop cover the whole tree.

mod clock;
mod expect;
pub(crate) mod faults;
mod inject;

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Write;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError};

use crate::child::spec::{ChildKind, ChildSpec};
use crate::exit::ExitReason;
use crate::registry::registry;
use crate::supervisor::event::Event;
use crate::supervisor::{AnySupervisorRef, Supervisor, SupervisorBuilder, SupervisorRef};

pub use clock::ManualClock;

/// How long an expectation waits by default: generous, for a loaded machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A supervision tree started for one test (Elixir's `start_supervised!`), with
/// expectations on what it does. When dropped, it stops the tree and fails the test — with
/// a message that says what — if a thread outlived the tree (a child abandoned at any
/// level), a supervised panic among the root's children was not expected by the test (see
/// [`allow_panics`](TestTree::allow_panics)), or a name is still held by one of the tree's
/// processes. (If the test is already failing, it only stops the tree.)
pub struct TestTree {
    sup: Option<Supervisor>,
    events: Receiver<Event>,
    /// Every event received, in order, with whether an expectation took it.
    log: RefCell<Log>,
    timeout: Duration,
    /// Children the test made deaf (`deafen`): their abandonment is expected.
    deaf: RefCell<Vec<String>>,
    /// The tree's manual clock, if it runs on one: advanced as the stop needs it.
    clock: Option<ManualClock>,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    taken: Vec<bool>,
    /// Exits a test has seen (taken, or followed by a restart it expected).
    acknowledged: Vec<bool>,
    panics_allowed: bool,
}

impl std::fmt::Debug for TestTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTree")
            .field("root", &self.sup.as_ref().map(|s| s.pid()))
            .field("events", &self.log.borrow().events.len())
            .finish_non_exhaustive()
    }
}

impl TestTree {
    /// Starts the supervisor `builder` describes, its events followed from its first
    /// start.
    ///
    /// # Panics
    ///
    /// If it does not start (the test fails with the start error).
    #[track_caller]
    pub fn start(builder: SupervisorBuilder) -> TestTree {
        let (tx, events) = unbounded();
        let clock = builder.manual_clock();
        let sup = match builder.event_sink(tx).start() {
            Ok(sup) => sup,
            Err(e) => panic!("the test tree did not start: {e}"),
        };
        TestTree {
            sup: Some(sup),
            events,
            log: RefCell::default(),
            timeout: DEFAULT_TIMEOUT,
            deaf: RefCell::default(),
            clock,
        }
    }

    /// A tree of one child, under a one_for_one supervisor with the defaults.
    ///
    /// # Panics
    ///
    /// As [`start`](TestTree::start).
    #[track_caller]
    pub fn of(spec: ChildSpec) -> TestTree {
        TestTree::start(Supervisor::builder().child(spec))
    }

    /// How long each expectation waits (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> TestTree {
        self.timeout = timeout;
        self
    }

    /// The root supervisor.
    pub fn handle(&self) -> SupervisorRef {
        self.sup().handle()
    }

    /// Supervised panics among the root's children no longer fail the test on drop.
    pub fn allow_panics(&self) {
        self.log.borrow_mut().panics_allowed = true;
    }

    /// Every event the root has sent so far (read up to now).
    pub fn events(&self) -> Vec<Event> {
        self.receive_ready();
        self.log.borrow().events.clone()
    }

    fn sup(&self) -> &Supervisor {
        self.sup.as_ref().expect("running until dropped")
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        let Some(sup) = self.sup.take() else { return };
        // The whole tree as it is now: its pids (for the registry check) and its nested
        // supervisors' events (an abandonment deeper down is reported only there).
        let mut pids = HashSet::new();
        let mut nested = Vec::new();
        if let Ok(tree) = sup.snapshot() {
            for node in tree.root.iter() {
                let Some(pid) = node.pid else { continue };
                pids.insert(pid);
                if node.kind == ChildKind::Supervisor && pid != sup.pid() {
                    if let Some(events) =
                        AnySupervisorRef::from_pid(pid).and_then(|s| s.events().ok())
                    {
                        nested.push((node.id.clone(), events));
                    }
                }
            }
        }
        let root = sup.pid();
        shut_down(sup, self.clock.as_ref());
        // Faults end with the tree; a deaf child's abandoned thread is let go.
        let mut ours: Vec<_> = pids.iter().copied().collect();
        ours.push(root);
        faults::clear(&ours);
        if thread::panicking() {
            return;
        }
        let deaf = self.deaf.borrow();
        self.receive_ready();
        let log = self.log.borrow();
        let mut problems = Vec::new();
        let deeper = nested.iter().flat_map(|(_, events)| events.try_iter());
        for event in log.events.iter().cloned().chain(deeper) {
            if let Event::ChildAbandoned { id, pid } = event {
                if deaf.iter().any(|d| **d == *id) {
                    continue; // the test asked for it
                }
                problems.push(format!(
                    "a thread outlived the tree: child {id:?} ({pid}) did not stop in time and was abandoned"
                ));
            }
        }
        if !log.panics_allowed {
            for (i, event) in log.events.iter().enumerate() {
                if let Event::ChildExited {
                    id,
                    pid,
                    reason: ExitReason::Panicked(msg),
                } = event
                {
                    if !log.acknowledged[i] {
                        problems.push(format!(
                            "child {id:?} ({pid}) panicked and no expectation saw it: {msg} \
                             (expect it, or call allow_panics)"
                        ));
                    }
                }
            }
        }
        let held = registry().select(|_, pid, _| pids.contains(&pid));
        for (name, pid, _) in held {
            problems.push(format!(
                "{pid} still holds the name {name:?} after the tree stopped"
            ));
        }
        if !problems.is_empty() {
            let mut message = String::from("the test tree ended badly:\n");
            for p in &problems {
                let _ = writeln!(message, "  - {p}");
            }
            message.push_str(&log.describe());
            panic!("{message}");
        }
    }
}

/// Stops the tree. On a manual clock, time runs meanwhile: whenever the stop has not
/// ended for a moment, the clock is advanced to the next deadline anything waits for (a
/// child slow to stop is waited for its shutdown timeout, as it would be in real time).
fn shut_down(sup: Supervisor, clock: Option<&ManualClock>) {
    let Some(clock) = clock else {
        let _ = sup.shutdown();
        return;
    };
    let (done, stopped) = bounded::<()>(1);
    thread::scope(|s| {
        s.spawn(move || {
            let _ = sup.shutdown();
            let _ = done.send(());
        });
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(ADVANCE_AFTER) {
            clock.advance_to_next();
        }
    });
}

/// How long a stop on a manual clock runs before the clock is advanced for it.
const ADVANCE_AFTER: Duration = Duration::from_millis(20);

impl Log {
    fn push(&mut self, event: Event) {
        self.events.push(event);
        self.taken.push(false);
        self.acknowledged.push(false);
    }

    /// The events, one a line, for a failure message.
    fn describe(&self) -> String {
        let mut out = String::from("the tree's events:\n");
        if self.events.is_empty() {
            out.push_str("  (none)\n");
        }
        for (i, e) in self.events.iter().enumerate() {
            let taken = if self.taken[i] { " (taken)" } else { "" };
            let _ = writeln!(out, "  {}{taken}", expect::brief(e));
        }
        out
    }
}
