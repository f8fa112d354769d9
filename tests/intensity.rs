//! Restart intensity: at most N restarts within a period, over all children; one more and
//! the supervisor stops everything in reverse order and exits.

mod common;

use std::time::Duration;

use common::*;
use crossbeam_channel::unbounded;
use steadfast::testing::{ManualClock, TestTree};
use steadfast::{Strategy, Supervisor, SupervisorError};

#[test]
fn intensity_zero_gives_up_on_the_first_crash() {
    let (sink, events) = unbounded();
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder()
        .intensity(0, Duration::from_secs(5))
        .event_sink(sink)
        .child(a)
        .child(idle("b"))
        .child(idle("c"))
        .start()
        .unwrap();
    briefs_through(&events, "started c");
    let pids: Vec<_> = sup
        .which_children()
        .unwrap()
        .iter()
        .map(|c| c.pid.unwrap())
        .collect();
    tx.send(Cmd::Panic("first and last")).unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "exited a panicked",
            "intensity-exceeded",
            "exited c shutdown",
            "exited b shutdown",
            "supervisor-stopped"
        ]
    );
    match sup.join() {
        Err(SupervisorError::IntensityExceeded { restarts, period }) => {
            assert_eq!((restarts, period), (0, Duration::from_secs(5)));
        }
        other => panic!("expected IntensityExceeded, got {other:?}"),
    }
    assert!(
        pids.iter().all(|p| !p.is_alive()),
        "no child is left running"
    );
}

#[test]
fn restarts_add_up_across_children() {
    let (sink, events) = unbounded();
    let (a, tx_a) = controlled("a");
    let (b, tx_b) = controlled("b");
    let sup = Supervisor::builder()
        .intensity(2, Duration::from_secs(60))
        .event_sink(sink)
        .child(a)
        .child(b)
        .start()
        .unwrap();
    briefs_through(&events, "started b");
    tx_a.send(Cmd::Panic("1")).unwrap();
    briefs_through(&events, "restarted a");
    tx_b.send(Cmd::Panic("2")).unwrap();
    briefs_through(&events, "restarted b");
    tx_a.send(Cmd::Panic("3")).unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "exited a panicked",
            "intensity-exceeded",
            "exited b shutdown",
            "supervisor-stopped"
        ]
    );
    assert!(matches!(
        sup.join(),
        Err(SupervisorError::IntensityExceeded { .. })
    ));
}

#[test]
fn a_group_restart_counts_once() {
    let (sink, events) = unbounded();
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .intensity(1, Duration::from_secs(60))
        .event_sink(sink)
        .child(a)
        .child(idle("b"))
        .child(idle("c"))
        .start()
        .unwrap();
    briefs_through(&events, "started c");
    tx.send(Cmd::Panic("once")).unwrap();
    // Three children restarted, one restart counted: still within intensity 1.
    briefs_through(&events, "restarted c");
    assert_eq!(sup.count_children().unwrap().active, 3);
    tx.send(Cmd::Panic("twice")).unwrap();
    let seen = briefs_through(&events, "supervisor-stopped");
    assert!(seen.contains(&"intensity-exceeded".to_string()), "{seen:?}");
    assert!(sup.join().is_err());
}

#[test]
fn restarts_older_than_the_period_are_forgotten() {
    // On the tree's clock: the gaps between crashes are exactly what the test says
    // (a hundredth of the period either way: the window counts in 1/4096ths of it).
    let period = Duration::from_secs(60);
    let clock = ManualClock::new();
    let (a, tx) = controlled("a");
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .intensity(1, period)
            .child(a),
    );
    for _ in 0..4 {
        tx.send(Cmd::Fail("crash")).unwrap();
        tree.expect_restart("a"); // alone in its window
        clock.advance(period + period / 100);
    }
    // One within the period of the last one is one too many.
    tx.send(Cmd::Fail("crash")).unwrap();
    tree.expect_restart("a");
    clock.advance(period - period / 100);
    tx.send(Cmd::Fail("crash")).unwrap();
    assert_eq!(tree.expect_gave_up(), (1, period));
}

#[test]
fn shutdown_after_giving_up_reports_intensity_exceeded() {
    let (sink, events) = unbounded();
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder()
        .intensity(0, Duration::from_secs(1))
        .event_sink(sink)
        .child(a)
        .start()
        .unwrap();
    let handle = sup.handle();
    briefs_through(&events, "started a");
    tx.send(Cmd::Fail("x")).unwrap();
    briefs_through(&events, "supervisor-stopped");
    assert!(matches!(
        sup.shutdown(),
        Err(SupervisorError::IntensityExceeded { .. })
    ));
    assert!(matches!(
        handle.which_children(),
        Err(SupervisorError::NoSupervisor)
    ));
}
