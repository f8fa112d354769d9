//! The `tracing` side: a span per process incarnation, a structured event per happening.
//! Fields: `supervisor` (its label), `child` (its id), `pid`, and what the happening
//! carries (`reason`, `abnormal`, `delay_ms`, `error`, ...). Target: `steadfast`.

use tracing::{event, span, Level, Span};

use crate::pid::Pid;
use crate::supervisor::event::Event;
use crate::supervisor::SUPERVISORS;
use crate::telemetry::About;

pub(super) fn child_span(parent: Option<Pid>, id: &str, pid: Pid, incarnation: u64) -> Span {
    let span = span!(
        target: "steadfast",
        Level::INFO,
        "child",
        supervisor = tracing::field::Empty,
        child = id,
        pid = %pid,
        incarnation
    );
    // The label is looked up only for a span someone records.
    if !span.is_disabled() {
        if let Some((_, address)) = parent.and_then(|p| SUPERVISORS.lookup(&p)) {
            span.record("supervisor", &*address.label);
        }
    }
    span
}

pub(super) fn event(supervisor: &str, e: &Event, about: &About<'_>) {
    if !tracing::dispatcher::has_been_set() {
        return; // no subscriber ever: nothing would record it
    }
    match e {
        Event::ChildStarted { id, pid } => {
            event!(target: "steadfast", Level::DEBUG, supervisor, child = &**id, pid = %pid, "child started");
        }
        Event::ChildExited { id, pid, reason } if reason.is_abnormal() => {
            event!(target: "steadfast", Level::WARN, supervisor, child = &**id, pid = %pid,
                reason = %reason, abnormal = true, "child exited");
        }
        Event::ChildExited { id, pid, reason } => {
            event!(target: "steadfast", Level::DEBUG, supervisor, child = &**id, pid = %pid,
                reason = %reason, abnormal = false, "child exited");
        }
        Event::ChildAbandoned { id, pid } => {
            event!(target: "steadfast", Level::WARN, supervisor, child = &**id, pid = %pid,
                "child abandoned: it did not stop in time (its thread is detached)");
        }
        Event::ChildRestarted { id, pid } => {
            let previous = about.previous_exit.map(|r| r.to_string());
            event!(target: "steadfast", Level::INFO, supervisor, child = &**id, pid = %pid,
                previous_exit = previous.as_deref(), "child restarted");
        }
        Event::RestartScheduled { id, delay } => {
            event!(target: "steadfast", Level::INFO, supervisor, child = &**id,
                delay_ms = delay.as_secs_f64() * 1e3, "restart scheduled (backoff)");
        }
        Event::RestartFailed { id, error } => {
            event!(target: "steadfast", Level::WARN, supervisor, child = &**id,
                error = error.as_str(), "restart failed");
        }
        Event::IntensityExceeded { restarts, period } => {
            event!(target: "steadfast", Level::ERROR, supervisor, restarts,
                period_ms = period.as_secs_f64() * 1e3,
                "restart intensity exceeded; giving up");
        }
        Event::SupervisorStopped { reason } => {
            event!(target: "steadfast", Level::INFO, supervisor, reason = %reason,
                "supervisor stopped");
        }
    }
}
