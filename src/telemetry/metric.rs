//! The `metrics` side: counters, gauges and histograms through the `metrics` facade.
//! Every name and label is in the table of `telemetry`'s docs; labels are bounded (a
//! supervisor's label, a child's id — never a pid — a reason's class, a server's or a
//! pool's name).

use std::time::Duration;

use metrics::{counter, gauge, histogram, Gauge};

use crate::exit::ExitReason;
use crate::supervisor::event::Event;

/// A child's states, counted over its supervisor's table (for the `steadfast_children`
/// gauge): running, restarting, stopped.
pub(crate) type States = [usize; 3];

pub(super) fn event(
    supervisor: &str,
    e: &Event,
    states: Option<States>,
    restart: Option<Duration>,
) {
    let sup = supervisor.to_owned();
    match e {
        Event::ChildExited { id, reason, .. } => {
            counter!("steadfast_child_exits_total", "supervisor" => sup, "child" => id.to_string(),
                "reason" => reason_class(reason))
            .increment(1);
        }
        Event::ChildRestarted { id, .. } => {
            let child = id.to_string();
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
            counter!("steadfast_child_abandoned_total", "supervisor" => sup, "child" => id.to_string())
                .increment(1);
        }
        Event::RestartFailed { id, .. } => {
            counter!("steadfast_restart_failures_total", "supervisor" => sup, "child" => id.to_string())
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
            gauge!("steadfast_children", "supervisor" => supervisor.to_owned(), "state" => state)
                .set(n as f64);
        }
    }
}

/// The class of an exit reason, as a label value.
fn reason_class(reason: &ExitReason) -> &'static str {
    match reason {
        ExitReason::Normal => "normal",
        ExitReason::Shutdown | ExitReason::ShutdownWith(_) => "shutdown",
        ExitReason::Failed(_) => "failed",
        ExitReason::Panicked(_) => "panicked",
        ExitReason::Killed => "killed",
        ExitReason::NoProcess => "noproc",
    }
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
