//! The event stream: every subscriber sees the supervisor's actions in the order it acted,
//! and the stream ends after `SupervisorStopped`.

mod common;

use common::*;
use crossbeam_channel::{unbounded, RecvTimeoutError};
use steadfast::{Event, ExitReason, Supervisor};

#[test]
fn every_subscriber_sees_the_same_order() {
    let (sink, from_start) = unbounded();
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(a)
        .child(idle("b"))
        .start()
        .unwrap();
    let later1 = sup.events().unwrap();
    let later2 = sup.handle().events().unwrap();
    tx.send(Cmd::Panic("x")).unwrap();
    let mut all = briefs_through(&from_start, "restarted a");
    sup.shutdown().unwrap();
    all.extend(from_start.iter().map(|e| brief(&e)));
    assert_eq!(
        all,
        [
            "started a",
            "started b",
            "exited a panicked",
            "restarted a",
            "exited b shutdown",
            "exited a shutdown",
            "supervisor-stopped"
        ]
    );
    // `iter()` ends: the stream disconnects once the supervisor has exited.
    let l1: Vec<String> = later1.iter().map(|e| brief(&e)).collect();
    let l2: Vec<String> = later2.iter().map(|e| brief(&e)).collect();
    assert_eq!(l1, all[2..]);
    assert_eq!(l1, l2);
}

#[test]
fn events_carry_pids_of_each_incarnation() {
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder().child(a).start().unwrap();
    let events = sup.events().unwrap();
    let first = sup.which_children().unwrap()[0].pid.unwrap();
    tx.send(Cmd::Fail("x")).unwrap();
    match next(&events) {
        Event::ChildExited { pid, reason, .. } => {
            assert_eq!(pid, first);
            assert_eq!(reason, ExitReason::Failed("x".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    match next(&events) {
        Event::ChildRestarted { pid, .. } => {
            assert_eq!(Some(pid), sup.which_children().unwrap()[0].pid);
            assert_ne!(pid, first);
        }
        other => panic!("unexpected {other:?}"),
    }
    sup.shutdown().unwrap();
}

#[test]
fn a_dropped_subscriber_does_not_disturb_the_supervisor() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    drop(sup.events().unwrap());
    let kept = sup.events().unwrap();
    sup.terminate_child("a").unwrap();
    assert_eq!(brief(&next(&kept)), "exited a shutdown");
    assert_eq!(
        kept.recv_timeout(std::time::Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    sup.shutdown().unwrap();
}
