//! With the `metrics` feature: the counters, gauges and histograms in `telemetry`'s
//! table, read back through `metrics-util`'s debugging recorder.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use metrics::Key;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use parking_lot::Mutex;
use steadfast::pool::Pool;
use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
use steadfast::Supervisor;

const DEADLINE: Duration = Duration::from_secs(10);

/// The recorder, installed once for this test binary (supervisors run on their own
/// threads: a thread-local recorder would not see them).
static SNAPSHOTTER: LazyLock<Snapshotter> = LazyLock::new(|| {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder");
    snapshotter
});

/// Histogram samples seen so far, by key: a snapshot drains histograms, and the tests
/// of this binary take snapshots concurrently.
static SAMPLES: LazyLock<Mutex<HashMap<Key, usize>>> = LazyLock::new(Mutex::default);

/// One metric's value by name and labels (every given label must match); a histogram's
/// value is the number of samples recorded so far.
fn value(name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
    let mut samples = SAMPLES.lock();
    let mut found = None;
    for (key, _, _, value) in SNAPSHOTTER.snapshot().into_vec() {
        let key = key.key().clone();
        let value = match value {
            DebugValue::Histogram(h) => {
                let n = samples.entry(key.clone()).or_default();
                *n += h.len();
                DebugValue::Histogram(vec![Default::default(); *n])
            }
            other => other,
        };
        let matches = key.name() == name
            && labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
        if matches && found.is_none() {
            found = Some(value);
        }
    }
    found
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(name, labels) {
        Some(DebugValue::Counter(n)) => n,
        _ => 0,
    }
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match value(name, labels) {
        Some(DebugValue::Gauge(g)) => Some(g.into_inner()),
        _ => None,
    }
}

fn histogram_len(name: &str, labels: &[(&str, &str)]) -> usize {
    match value(name, labels) {
        Some(DebugValue::Histogram(h)) => h.len(),
        _ => 0,
    }
}

#[test]
fn exits_restarts_give_ups_and_children_by_state() {
    LazyLock::force(&SNAPSHOTTER);
    let (flaky, crash_tx) = common::flaky("boom");
    let sup = Supervisor::builder()
        .name("metered")
        .intensity(2, Duration::from_secs(60))
        .child(flaky)
        .start()
        .unwrap();
    let labels = [("supervisor", "metered"), ("child", "flaky")];
    crash_tx.send(()).unwrap();
    steadfast::wait::until(DEADLINE, || {
        counter("steadfast_child_restarts_total", &labels) == 1
    })
    .unwrap();
    let panicked = [
        ("supervisor", "metered"),
        ("child", "flaky"),
        ("reason", "panicked"),
    ];
    assert_eq!(counter("steadfast_child_exits_total", &panicked), 1);
    assert_eq!(
        histogram_len("steadfast_restart_duration_seconds", &labels),
        1
    );
    let running = [("supervisor", "metered"), ("state", "running")];
    assert_eq!(gauge("steadfast_children", &running), Some(1.0));
    // Past the intensity: a give-up, counted.
    for _ in 0..3 {
        let _ = crash_tx.send(());
    }
    steadfast::wait::until(DEADLINE, || {
        counter(
            "steadfast_intensity_exceeded_total",
            &[("supervisor", "metered")],
        ) == 1
    })
    .unwrap();
    drop(sup);
}

struct Echo;
impl Serve for Echo {}
impl Handle<u32> for Echo {
    type Reply = u32;
    fn handle(&mut self, n: u32, _: &mut ServerContext<'_, Self>) -> u32 {
        n
    }
}

#[test]
fn server_call_latency_and_mailbox_depth() {
    LazyLock::force(&SNAPSHOTTER);
    let (spec, echo) = ServerSpec::new("echo", |_| Ok(Echo))
        .name("metered-echo")
        .build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    for i in 0..10 {
        assert_eq!(echo.call(i).unwrap(), i);
    }
    let server = [("server", "metered-echo")];
    assert_eq!(
        histogram_len("steadfast_server_call_duration_seconds", &server),
        10
    );
    // Set after each message, once its reply has gone: read it when it settles.
    steadfast::wait::until(DEADLINE, || {
        gauge("steadfast_server_mailbox_depth", &server) == Some(0.0)
    })
    .unwrap();
    drop(sup);
}

#[test]
fn pool_jobs_by_outcome_and_levels() {
    LazyLock::force(&SNAPSHOTTER);
    let pool = Pool::builder(2, |job: &u32, _| {
        if *job == 0 {
            return Err("zero".into());
        }
        Ok(())
    })
    .name("metered-pool")
    .max_attempts(2)
    .start()
    .unwrap();
    for job in 0..5 {
        pool.submit(job).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    let of = |outcome| {
        counter(
            "steadfast_pool_jobs_total",
            &[("pool", "metered-pool"), ("outcome", outcome)],
        )
    };
    assert_eq!((of("done"), of("retried"), of("dead_lettered")), (4, 1, 1));
    // The levels are set after each job settles: read them once they do.
    steadfast::wait::until(DEADLINE, || {
        gauge("steadfast_pool_queued", &[("pool", "metered-pool")]) == Some(0.0)
    })
    .unwrap();
    drop(pool);
}

/// Workers settling jobs at once each set the levels: whichever sets them last must not
/// leave a level read before another's settle (a queue of one, say, at rest).
#[test]
fn pool_levels_at_rest_are_zero_however_settles_race() {
    LazyLock::force(&SNAPSHOTTER);
    for round in 0..40 {
        let name = format!("levels-{round}");
        let pool = Pool::builder(4, |_: &u32, _| Ok(()))
            .name(&name)
            .start()
            .unwrap();
        for job in 0..16 {
            pool.submit(job).unwrap();
        }
        pool.drain(DEADLINE).unwrap();
        let pool_label = [("pool", name.as_str())];
        let at_rest = steadfast::wait::until(DEADLINE, || {
            gauge("steadfast_pool_queued", &pool_label) == Some(0.0)
                && gauge("steadfast_pool_in_flight", &pool_label) == Some(0.0)
        });
        assert!(
            at_rest.is_ok(),
            "round {round}: queued {:?}, in flight {:?} at rest",
            gauge("steadfast_pool_queued", &pool_label),
            gauge("steadfast_pool_in_flight", &pool_label)
        );
        drop(pool);
    }
}
