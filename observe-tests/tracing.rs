//! With the `tracing` feature: every process thread runs inside a span (supervisor, child,
//! pid, incarnation), so a child's own events are attributed to it; crashes, restarts,
//! backoff, give-ups, abandonment and stops are structured events with fields.

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock as Lazy};
use std::time::Duration;

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use steadfast::{Backoff, ChildSpec, Restart, Shutdown, Supervisor};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const DEADLINE: Duration = Duration::from_secs(10);

/// One event as recorded: its message, its fields, and the fields of the spans it was in
/// (innermost last).
#[derive(Clone, Debug)]
struct Seen {
    message: String,
    fields: BTreeMap<String, String>,
    spans: Vec<BTreeMap<String, String>>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Records every event, with the fields of its spans.
struct Collect(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields.0);
        }
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(known) = ext.get_mut::<BTreeMap<String, String>>() {
                known.extend(fields.0);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .filter_map(|s| s.extensions().get::<BTreeMap<String, String>>().cloned())
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().push(Seen {
            message,
            fields: fields.0,
            spans,
        });
    }
}

/// Every event recorded in this test binary (one global subscriber: supervisors run on
/// their own threads). Each test reads only its own supervisor's.
static SEEN: Lazy<Arc<Mutex<Vec<Seen>>>> = Lazy::new(|| {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    seen
});

/// Waits until an event of `supervisor` says `message`; returns it.
fn wait_for(supervisor: &str, message: &str) -> Seen {
    let found = steadfast::wait::until_some(DEADLINE, message, || {
        SEEN.lock()
            .iter()
            .find(|s| {
                s.message == message
                    && s.fields.get("supervisor").map(String::as_str) == Some(supervisor)
            })
            .cloned()
    });
    found.unwrap_or_else(|_| {
        let seen: Vec<_> = SEEN
            .lock()
            .iter()
            .filter(|s| s.fields.get("supervisor").map(String::as_str) == Some(supervisor))
            .map(|s| s.message.clone())
            .collect();
        panic!("no {message:?} from {supervisor}; it said: {seen:?}")
    })
}

#[test]
fn a_childs_own_events_are_attributed_to_its_span() {
    Lazy::force(&SEEN);
    let (said_tx, said) = unbounded();
    let sup = Supervisor::builder()
        .name("traced-app")
        .child(ChildSpec::worker("greeter", move |ctx| {
            tracing::info!(greeting = "hello", "greeted");
            said_tx.send(ctx.pid()).unwrap();
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .start()
        .unwrap();
    let pid = said.recv_timeout(DEADLINE).unwrap();
    let greeted = steadfast::wait::until_some(DEADLINE, "the greeting", || {
        SEEN.lock().iter().find(|s| s.message == "greeted").cloned()
    })
    .unwrap();
    assert_eq!(greeted.fields["greeting"], "hello");
    let span = greeted.spans.last().expect("inside the child's span");
    assert_eq!(span["supervisor"], "traced-app");
    assert_eq!(span["child"], "greeter");
    assert_eq!(span["pid"], pid.to_string());
    assert_eq!(span["incarnation"], "0");
    drop(sup);
}

#[test]
fn crashes_restarts_and_stops_are_structured_events() {
    Lazy::force(&SEEN);
    let (flaky, crash_tx) = common::flaky("boom");
    let sup = Supervisor::builder()
        .name("traced-crashes")
        .child(flaky)
        .start()
        .unwrap();
    crash_tx.send(()).unwrap();
    let exited = wait_for("traced-crashes", "child exited");
    assert_eq!(exited.fields["child"], "flaky");
    assert_eq!(exited.fields["reason"], "panicked: boom");
    assert_eq!(exited.fields["abnormal"], "true");
    let restarted = wait_for("traced-crashes", "child restarted");
    assert_eq!(restarted.fields["child"], "flaky");
    assert_eq!(restarted.fields["previous_exit"], "panicked: boom");
    sup.shutdown().unwrap();
    let stopped = wait_for("traced-crashes", "supervisor stopped");
    assert_eq!(stopped.fields["reason"], "shutdown");
}

#[test]
fn backoff_give_ups_and_abandonment_are_structured_events() {
    Lazy::force(&SEEN);
    // A child that fails at once, with a backoff: a scheduled restart, then a give-up.
    let sup = Supervisor::builder()
        .name("traced-backoff")
        .intensity(1, Duration::from_secs(60))
        .child(
            ChildSpec::worker("failing", |_| Err("no disk".into()))
                .backoff(Backoff::fixed(Duration::from_millis(1))),
        )
        .start();
    // The start may fail or succeed depending on how fast it fails; either way:
    let scheduled = wait_for("traced-backoff", "restart scheduled (backoff)");
    assert_eq!(scheduled.fields["child"], "failing");
    assert!(scheduled.fields["delay_ms"].parse::<f64>().unwrap() >= 0.9);
    let gave_up = wait_for("traced-backoff", "restart intensity exceeded; giving up");
    assert_eq!(gave_up.fields["restarts"], "1");
    drop(sup);

    // A child deaf to its stop: abandoned.
    let (release_tx, release) = unbounded::<()>();
    let sup = Supervisor::builder()
        .name("traced-deaf")
        .child(
            ChildSpec::worker("deaf", move |_| {
                let _ = release.recv();
                Ok(())
            })
            .restart(Restart::Temporary)
            .shutdown(Shutdown::Timeout(Duration::from_millis(10))),
        )
        .start()
        .unwrap();
    sup.terminate_child("deaf").unwrap();
    let abandoned = wait_for(
        "traced-deaf",
        "child abandoned: it did not stop in time (its thread is detached)",
    );
    assert_eq!(abandoned.fields["child"], "deaf");
    release_tx.send(()).unwrap();
}
