//! The `metrics` side: counters, gauges and histograms through the `metrics` facade.
//! Every name and label is in the table of `telemetry`'s docs; labels are bounded (a
//! supervisor's label, a child's id — never a pid — a reason's class, a server's or a
//! pool's name).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::exit::ExitReason;
use crate::supervisor::event::Event;

/// A child's states, counted over its supervisor's table (for the `steadfast_children`
/// gauge): running, restarting, stopped.
pub(crate) type States = [usize; 3];

pub(super) fn event(
    supervisor: &Arc<str>,
    e: &Event,
    states: Option<States>,
    restart: Option<Duration>,
) {
    // Labels share the supervisor's and the child's `Arc<str>`: no copy per event.
    let sup = supervisor.clone();
    match e {
        Event::ChildExited { id, reason, .. } => {
            counter!("steadfast_child_exits_total", "supervisor" => sup, "child" => id.clone(),
                "reason" => reason_class(reason))
            .increment(1);
        }
        Event::ChildRestarted { id, .. } => {
            let child = id.clone();
            counter!("steadfast_child_restarts_total", "supervisor" => sup.clone(),
                "child" => child.clone())
            .increment(1);
            if let Some(took) = restart {
                histogram!("steadfast_restart_duration_seconds", "supervisor" => sup,
                    "child" => child)
                .record(took.as_secs_f64());
            }
        }
        Event::ChildAbandoned { id, .. } => {
            counter!("steadfast_child_abandoned_total", "supervisor" => sup, "child" => id.clone())
                .increment(1);
        }
        Event::RestartFailed { id, .. } => {
            counter!("steadfast_restart_failures_total", "supervisor" => sup, "child" => id.clone())
                .increment(1);
        }
        Event::IntensityExceeded { .. } => {
            counter!("steadfast_intensity_exceeded_total", "supervisor" => sup).increment(1);
        }
        Event::ChildStarted { .. }
        | Event::RestartScheduled { .. }
        | Event::SupervisorStopped { .. } => {}
    }
    if let Some([running, restarting, stopped]) = states {
        for (state, n) in [
            ("running", running),
            ("restarting", restarting),
            ("stopped", stopped),
        ] {
            gauge!("steadfast_children", "supervisor" => supervisor.clone(), "state" => state)
                .set(n as f64);
        }
    }
}

/// The classes of exit reasons, as label values.
const CLASSES: [&str; 6] = [
    "normal", "shutdown", "failed", "panicked", "killed", "noproc",
];

/// The class of an exit reason, as a label value.
fn reason_class(reason: &ExitReason) -> &'static str {
    CLASSES[class_index(reason)]
}

fn class_index(reason: &ExitReason) -> usize {
    match reason {
        ExitReason::Normal => 0,
        ExitReason::Shutdown | ExitReason::ShutdownWith(_) => 1,
        ExitReason::Failed(_) => 2,
        ExitReason::Panicked(_) => 3,
        ExitReason::Killed => 4,
        ExitReason::NoProcess => 5,
    }
}

/// The metric handles of the child this thread runs, kept across its restarts on this
/// thread: registered once, then each restart costs a few increments (with no recorder
/// installed, none at all). A recorder is to be installed before the tree starts, as
/// the `metrics` crate asks of every handle.
struct Here {
    supervisor: Arc<str>,
    child: Arc<str>,
    exits: [Option<Counter>; 6],
    restarts: Counter,
    took: Histogram,
}

thread_local! {
    static HERE: RefCell<Option<Here>> = const { RefCell::new(None) };
}

/// A restart a child made on its own thread: its exit and its restart, counted.
pub(super) fn restarted_here(
    supervisor: &Arc<str>,
    child: &Arc<str>,
    reason: &ExitReason,
    took: Option<Duration>,
) {
    HERE.with(|here| {
        let mut here = here.borrow_mut();
        let known = matches!(&*here, Some(h) if Arc::ptr_eq(&h.supervisor, supervisor) && Arc::ptr_eq(&h.child, child));
        if !known {
            *here = Some(Here {
                supervisor: supervisor.clone(),
                child: child.clone(),
                exits: Default::default(),
                restarts: counter!("steadfast_child_restarts_total", "supervisor" => supervisor.clone(),
                    "child" => child.clone()),
                took: histogram!("steadfast_restart_duration_seconds", "supervisor" => supervisor.clone(),
                    "child" => child.clone()),
            });
        }
        let h = here.as_mut().expect("set above");
        let i = class_index(reason);
        let exits = h.exits[i].get_or_insert_with(|| {
            counter!("steadfast_child_exits_total", "supervisor" => h.supervisor.clone(),
                "child" => h.child.clone(), "reason" => CLASSES[i])
        });
        exits.increment(1);
        h.restarts.increment(1);
        if let Some(took) = took {
            h.took.record(took.as_secs_f64());
        }
    });
}

/// A call's round trip, as its caller saw it.
pub(crate) fn server_call(server: &str, took: Duration) {
    histogram!("steadfast_server_call_duration_seconds", "server" => server.to_owned())
        .record(took.as_secs_f64());
}

/// The gauge of a server's mailbox depth (made once per incarnation, set after each
/// message).
pub(crate) fn mailbox_depth(server: &str) -> Gauge {
    gauge!("steadfast_server_mailbox_depth", "server" => server.to_owned())
}

/// A pool's job settled: `done`, `retried` or `dead_lettered`.
pub(crate) fn pool_job(pool: &str, outcome: &'static str) {
    counter!("steadfast_pool_jobs_total", "pool" => pool.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A pool's queue and the jobs its workers hold.
pub(crate) fn pool_levels(pool: &str, queued: usize, in_flight: u64) {
    gauge!("steadfast_pool_queued", "pool" => pool.to_owned()).set(queued as f64);
    gauge!("steadfast_pool_in_flight", "pool" => pool.to_owned()).set(in_flight as f64);
}
