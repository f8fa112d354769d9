//! What a running tree tells the outside, besides its event channels
//! ([`SupervisorRef::events`](crate::SupervisorRef::events)) and its snapshot
//! ([`TreeSnapshot`](crate::tree::TreeSnapshot); the live page is the `observer` module,
//! feature `observer`).
//!
//! **Default: `log` lines.** Crashes are `warn`, restarts and backoffs `info`, a give-up
//! `error`, other exits `debug`.
//!
//! **Feature `tracing`.** Every process thread runs each incarnation inside a span named
//! `child` with the fields `supervisor` (its label), `child` (its id), `pid` and
//! `incarnation`, so a child's own `tracing` events are attributed to it. The tree's
//! happenings are structured events (target `steadfast`) instead of `log` lines:
//!
//! | message | level | fields |
//! |---|---|---|
//! | `child started` | DEBUG | `supervisor`, `child`, `pid` |
//! | `child exited` | WARN if abnormal, else DEBUG | `supervisor`, `child`, `pid`, `reason`, `abnormal` |
//! | `child restarted` | INFO | `supervisor`, `child`, `pid` (the new one), `previous_exit` |
//! | `restart scheduled (backoff)` | INFO | `supervisor`, `child`, `delay_ms` |
//! | `restart failed` | WARN | `supervisor`, `child`, `error` |
//! | `restart intensity exceeded; giving up` | ERROR | `supervisor`, `restarts`, `period_ms` |
//! | `child abandoned: ...` | WARN | `supervisor`, `child`, `pid` |
//! | `supervisor stopped` | INFO | `supervisor`, `reason` |
//!
//! **Feature `metrics`**, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any recorder (Prometheus, StatsD, ...) and these arrive. Labels are bounded: a
//! supervisor's label, a child's id (dynamic children share their spec's id; never a pid),
//! a reason's class, a server's name (else its child id), a pool's name (else `pool`).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `steadfast_child_exits_total` | counter | `supervisor`, `child`, `reason` (`normal`, `shutdown`, `failed`, `panicked`, `killed`, `noproc`) | exits, of every kind |
//! | `steadfast_child_restarts_total` | counter | `supervisor`, `child` | restarts by the strategy |
//! | `steadfast_restart_duration_seconds` | histogram | `supervisor`, `child` | from an exit to the child running again |
//! | `steadfast_restart_failures_total` | counter | `supervisor`, `child` | restarts whose start failed |
//! | `steadfast_child_abandoned_total` | counter | `supervisor`, `child` | children that did not stop in time |
//! | `steadfast_intensity_exceeded_total` | counter | `supervisor` | give-ups |
//! | `steadfast_children` | gauge | `supervisor`, `state` (`running`, `restarting`, `stopped`) | its children by state, after each event |
//! | `steadfast_server_call_duration_seconds` | histogram | `server` | a call's round trip, as its caller saw it |
//! | `steadfast_server_mailbox_depth` | gauge | `server` | requests waiting, after each message served |
//! | `steadfast_pool_jobs_total` | counter | `pool`, `outcome` (`done`, `retried`, `dead_lettered`) | jobs settled |
//! | `steadfast_pool_queued` | gauge | `pool` | jobs waiting, after each settles |
//! | `steadfast_pool_in_flight` | gauge | `pool` | jobs its workers hold, after each settles |
//!
//! With either feature on, every event is built and reported whether or not anyone
//! subscribes (without them, an event nobody watches is never built). With neither, none
//! of this is compiled in.

use crate::supervisor::event::Event;

#[cfg(feature = "metrics")]
pub(crate) mod metric;
#[cfg(feature = "tracing")]
mod trace;

/// Whether every event is built and handed here, watched or not (a feature that reads
/// them all is on).
pub(crate) const EVERY_EVENT: bool = cfg!(any(feature = "tracing", feature = "metrics"));

/// What the engine knows about an event besides the event.
#[derive(Default)]
#[allow(dead_code)] // read by the features
pub(crate) struct About<'a> {
    /// For a restart: how the previous incarnation ended.
    pub(crate) previous_exit: Option<&'a crate::exit::ExitReason>,
    /// Its supervisor's children running, restarting and stopped (with `metrics`).
    pub(crate) states: Option<[usize; 3]>,
    /// For a restart: how long since the exit it answers.
    pub(crate) restart_took: Option<std::time::Duration>,
}

/// Reports `event` of supervisor `label` (nothing without the features).
#[allow(unused_variables)]
pub(crate) fn event(label: &std::sync::Arc<str>, event: &Event, about: About<'_>) {
    #[cfg(feature = "tracing")]
    trace::event(label, event, &about);
    #[cfg(feature = "metrics")]
    metric::event(label, event, about.states, about.restart_took);
}

/// A restart a child made on its own thread, reported from that thread as it happens
/// (its supervisor reads the notice later, and tells only its subscribers): the exit
/// and the restart, as `observe::event` would.
#[allow(unused_variables)]
pub(crate) fn restarted_here(
    parent: Option<crate::pid::Pid>,
    id: &std::sync::Arc<str>,
    old: crate::pid::Pid,
    new: crate::pid::Pid,
    reason: &crate::exit::ExitReason,
    at: std::time::Instant,
) {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    {
        let Some((_, address)) = parent.and_then(|p| crate::supervisor::SUPERVISORS.lookup(&p))
        else {
            return;
        };
        let took = EXITED_AT
            .with(|e| e.take())
            .map(|t| at.saturating_duration_since(t));
        #[cfg(feature = "metrics")]
        metric::restarted_here(&address.label, id, reason, took);
        // With no subscriber ever set, nothing would record these: not even built.
        #[cfg(feature = "tracing")]
        if tracing::dispatcher::has_been_set() {
            let exited = Event::ChildExited {
                id: id.clone(),
                pid: old,
                reason: reason.clone(),
            };
            trace::event(&address.label, &exited, &About::default());
            let restarted = Event::ChildRestarted {
                id: id.clone(),
                pid: new,
            };
            let about = About {
                previous_exit: Some(reason),
                restart_took: took,
                ..About::default()
            };
            trace::event(&address.label, &restarted, &about);
        }
    }
}

#[cfg(any(feature = "tracing", feature = "metrics"))]
thread_local! {
    /// When this thread's incarnation last exited (to time a restart on the same thread).
    static EXITED_AT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Notes that this thread's incarnation has just exited (with `metrics`: the restart's
/// duration is timed from here).
pub(crate) fn exited_here() {
    #[cfg(feature = "metrics")]
    EXITED_AT.with(|e| e.set(Some(std::time::Instant::now())));
}

/// A log line for a happening that also has an event: with `tracing` on, the event is
/// reported as a structured `tracing` event instead (`observe::event`).
macro_rules! note {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(not(feature = "tracing"))]
        log::$level!($($arg)+);
        #[cfg(feature = "tracing")]
        let _ = format_args!($($arg)+);
    }};
}
pub(crate) use note;

/// Entered around a child's function: with `tracing`, a span naming its supervisor, its
/// id, its pid and its incarnation, so that the child's own `tracing` events are
/// attributed to it.
#[must_use]
pub(crate) struct ChildSpan {
    #[cfg(feature = "tracing")]
    _entered: tracing::span::EnteredSpan,
}

#[allow(unused_variables)]
pub(crate) fn child_span(
    parent: Option<crate::pid::Pid>,
    id: &str,
    pid: crate::pid::Pid,
    incarnation: u64,
) -> ChildSpan {
    ChildSpan {
        #[cfg(feature = "tracing")]
        _entered: trace::child_span(parent, id, pid, incarnation).entered(),
    }
}
