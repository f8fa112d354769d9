//! OTP's restart table: permanent / transient / temporary × normal / shutdown / failed /
//! panicked, observed through the event stream and the child table.

mod common;

use common::*;
use crossbeam_channel::unbounded;
use steadfast::{ChildStatus, Restart, Supervisor};

/// Starts a supervisor with one controlled child of `restart` type, makes it exit with
/// `cmd`, and returns the events that handling the exit produced and the child table after.
fn exit_with(restart: Restart, cmd: Cmd) -> (Vec<String>, Vec<steadfast::ChildInfo>) {
    let (spec, tx) = controlled("a");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(10, DEADLINE)
        .event_sink(sink)
        .child(spec.restart(restart))
        .start()
        .unwrap();
    assert_eq!(briefs_through(&events, "started a"), ["started a"]);
    tx.send(cmd).unwrap();
    let first = next(&events);
    // The supervisor handles an exit completely before it serves the next request, so
    // after this reply every event of that handling is in the stream.
    let children = sup.which_children().unwrap();
    let mut seen = vec![brief(&first)];
    seen.extend(events.try_iter().map(|e| brief(&e)));
    sup.shutdown().unwrap();
    (seen, children)
}

#[test]
fn permanent_child_restarts_after_normal_exit() {
    let (ev, children) = exit_with(Restart::Permanent, Cmd::Return);
    assert_eq!(ev, ["exited a normal", "restarted a"]);
    assert_eq!(children[0].status, ChildStatus::Running);
}

#[test]
fn permanent_child_restarts_after_shutdown_exit() {
    let (ev, _) = exit_with(Restart::Permanent, Cmd::Shutdown);
    assert_eq!(ev, ["exited a shutdown", "restarted a"]);
}

#[test]
fn permanent_child_restarts_after_failure() {
    let (ev, _) = exit_with(Restart::Permanent, Cmd::Fail("bad input"));
    assert_eq!(ev, ["exited a failed", "restarted a"]);
}

#[test]
fn permanent_child_restarts_after_panic() {
    let (ev, _) = exit_with(Restart::Permanent, Cmd::Panic("boom"));
    assert_eq!(ev, ["exited a panicked", "restarted a"]);
}

#[test]
fn transient_child_stays_down_after_normal_exit() {
    let (ev, children) = exit_with(Restart::Transient, Cmd::Return);
    assert_eq!(ev, ["exited a normal"]);
    assert_eq!(children.len(), 1, "the spec is kept");
    assert_eq!(children[0].status, ChildStatus::Stopped);
    assert_eq!(children[0].pid, None);
}

#[test]
fn transient_child_stays_down_after_shutdown_exit() {
    let (ev, children) = exit_with(Restart::Transient, Cmd::Shutdown);
    assert_eq!(ev, ["exited a shutdown"]);
    assert_eq!(children[0].status, ChildStatus::Stopped);
}

#[test]
fn transient_child_restarts_after_failure() {
    let (ev, children) = exit_with(Restart::Transient, Cmd::Fail("bad"));
    assert_eq!(ev, ["exited a failed", "restarted a"]);
    assert_eq!(children[0].status, ChildStatus::Running);
}

#[test]
fn transient_child_restarts_after_panic() {
    let (ev, _) = exit_with(Restart::Transient, Cmd::Panic("boom"));
    assert_eq!(ev, ["exited a panicked", "restarted a"]);
}

#[test]
fn temporary_child_is_dropped_after_normal_exit() {
    let (ev, children) = exit_with(Restart::Temporary, Cmd::Return);
    assert_eq!(ev, ["exited a normal"]);
    assert!(children.is_empty(), "a temporary child's spec is removed");
}

#[test]
fn temporary_child_is_dropped_after_shutdown_exit() {
    let (ev, children) = exit_with(Restart::Temporary, Cmd::Shutdown);
    assert_eq!(ev, ["exited a shutdown"]);
    assert!(children.is_empty());
}

#[test]
fn temporary_child_is_dropped_after_failure() {
    let (ev, children) = exit_with(Restart::Temporary, Cmd::Fail("bad"));
    assert_eq!(ev, ["exited a failed"]);
    assert!(children.is_empty());
}

#[test]
fn temporary_child_is_dropped_after_panic() {
    let (ev, children) = exit_with(Restart::Temporary, Cmd::Panic("boom"));
    assert_eq!(ev, ["exited a panicked"]);
    assert!(children.is_empty());
}

#[test]
fn restarted_child_has_a_new_pid_and_the_old_one_is_dead() {
    let (spec, tx) = controlled("a");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    let old = pid_of(&sup.which_children().unwrap(), "a").unwrap();
    tx.send(Cmd::Panic("x")).unwrap();
    briefs_through(&events, "restarted a");
    let new = pid_of(&sup.which_children().unwrap(), "a").unwrap();
    assert_ne!(old, new);
    assert!(!old.is_alive());
    assert!(new.is_alive());
    sup.shutdown().unwrap();
}

#[test]
fn failure_and_panic_messages_reach_the_exit_reason() {
    let (spec, tx) = controlled("a");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    tx.send(Cmd::Fail("disk full")).unwrap();
    tx.send(Cmd::Panic("index out of range")).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        if let steadfast::Event::ChildExited { reason, .. } = next(&events) {
            reasons.push(reason.to_string());
        }
    }
    assert_eq!(
        reasons,
        ["failed: disk full", "panicked: index out of range"]
    );
    sup.shutdown().unwrap();
}
