//! A restart whose start fails does not crash the supervisor: the child shows as
//! `Restarting`, the supervisor retries through its inbox (each retry counts toward
//! intensity) and serves requests in between.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{ChildSpec, ChildStatus, Event, Strategy, Supervisor, SupervisorError};

/// A child that waits for commands after calling `ready()`, but whose next
/// `failing_starts` starts fail before `ready()`.
fn flaky(id: &str, failing_starts: Arc<AtomicUsize>) -> (ChildSpec, Sender<Cmd>) {
    let (tx, rx) = unbounded::<Cmd>();
    let spec = ChildSpec::worker(id, move |ctx| {
        if failing_starts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("cannot open its port".into());
        }
        ctx.ready();
        match ctx.recv(&rx)? {
            Cmd::Panic(m) => panic!("{m}"),
            _ => Err("told to fail".into()),
        }
    })
    .ready_timeout(DEADLINE);
    (spec, tx)
}

/// A supervisor with one `flaky` child "a" (started), its events, the child's command
/// channel, and the switch that makes its next starts fail.
fn one_flaky(
    restarts: u32,
    period: Duration,
) -> (Supervisor, Receiver<Event>, Sender<Cmd>, Arc<AtomicUsize>) {
    let broken = Arc::new(AtomicUsize::new(0));
    let (spec, tx) = flaky("a", broken.clone());
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(restarts, period)
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    briefs_through(&events, "started a");
    (sup, events, tx, broken)
}

#[test]
fn restart_loop_shows_restarting_and_is_ended_by_terminate_child() {
    let (sup, events, tx, broken) = one_flaky(u32::MAX, Duration::from_secs(1));
    broken.store(usize::MAX, Ordering::SeqCst);
    tx.send(Cmd::Panic("crash")).unwrap();
    assert_eq!(
        briefs_through(&events, "restart-failed a"),
        ["exited a panicked", "restart-failed a"]
    );
    // Requests are served between retries.
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Restarting);
    assert_eq!(children[0].pid, None);
    assert!(matches!(
        sup.restart_child("a"),
        Err(SupervisorError::Restarting)
    ));
    assert!(matches!(
        sup.delete_child("a"),
        Err(SupervisorError::Restarting)
    ));
    sup.terminate_child("a").unwrap();
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Stopped);
    let _ = events.try_iter().count();
    // A retry queued before the terminate has been served by now; none follows it.
    sup.which_children().unwrap();
    let later: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(later.is_empty(), "the loop has ended: {later:?}");
    sup.shutdown().unwrap();
}

#[test]
fn failed_restart_attempts_count_toward_intensity() {
    let (sup, events, tx, broken) = one_flaky(3, Duration::from_secs(60));
    broken.store(usize::MAX, Ordering::SeqCst);
    tx.send(Cmd::Panic("crash")).unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "exited a panicked",
            "restart-failed a",
            "restart-failed a",
            "restart-failed a",
            "intensity-exceeded",
            "supervisor-stopped"
        ]
    );
    assert!(matches!(
        sup.join(),
        Err(SupervisorError::IntensityExceeded { restarts: 3, .. })
    ));
}

#[test]
fn a_retry_that_succeeds_brings_the_child_back() {
    let (sup, events, tx, broken) = one_flaky(10, Duration::from_secs(60));
    broken.store(2, Ordering::SeqCst);
    tx.send(Cmd::Panic("crash")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted a"),
        [
            "exited a panicked",
            "restart-failed a",
            "restart-failed a",
            "restarted a"
        ]
    );
    assert_eq!(
        sup.which_children().unwrap()[0].status,
        ChildStatus::Running
    );
    sup.shutdown().unwrap();
}

#[test]
fn one_for_all_retry_restarts_the_whole_group() {
    let broken = Arc::new(AtomicUsize::new(0));
    let (b, _tx_b) = flaky("b", broken.clone());
    let (a, tx_a) = controlled("a");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .intensity(10, Duration::from_secs(60))
        .event_sink(sink)
        .child(a)
        .child(b)
        .child(idle("c"))
        .start()
        .unwrap();
    briefs_through(&events, "started c");
    broken.store(1, Ordering::SeqCst);
    tx_a.send(Cmd::Panic("a dies")).unwrap();
    let seen = briefs_through(&events, "restarted c");
    assert_eq!(
        seen,
        [
            "exited a panicked",
            "exited c shutdown",
            "exited b shutdown",
            "restarted a",
            "restart-failed b",
            // The retry is a one_for_all restart keyed on b: a goes down and all come back.
            "exited a shutdown",
            "restarted a",
            "restarted b",
            "restarted c"
        ]
    );
    assert!(sup
        .which_children()
        .unwrap()
        .iter()
        .all(|c| c.status == ChildStatus::Running));
    let _: Vec<Event> = events.try_iter().collect();
    sup.shutdown().unwrap();
}
