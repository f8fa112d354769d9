//! one_for_one, one_for_all and rest_for_one: which children are stopped (in reverse start
//! order) and restarted (in start order), observed through the event stream.

mod common;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{ChildStatus, Event, Restart, Strategy, Supervisor};

/// A supervisor with controlled children `ids`, its event stream (past the starts) and one
/// command sender per child.
fn tree(strategy: Strategy, ids: &[&str]) -> (Supervisor, Receiver<Event>, Vec<Sender<Cmd>>) {
    tree_with(strategy, ids, &[])
}

fn tree_with(
    strategy: Strategy,
    ids: &[&str],
    temporary: &[&str],
) -> (Supervisor, Receiver<Event>, Vec<Sender<Cmd>>) {
    let (sink, events) = unbounded();
    let mut builder = Supervisor::builder()
        .strategy(strategy)
        .intensity(10, DEADLINE)
        .event_sink(sink);
    let mut txs = Vec::new();
    for id in ids {
        let (spec, tx) = controlled(id);
        let restart = if temporary.contains(id) {
            Restart::Temporary
        } else {
            Restart::Permanent
        };
        builder = builder.child(spec.restart(restart));
        txs.push(tx);
    }
    let sup = builder.start().unwrap();
    let last = format!("started {}", ids.last().unwrap());
    let starts = briefs_through(&events, &last);
    let expected: Vec<String> = ids.iter().map(|id| format!("started {id}")).collect();
    assert_eq!(starts, expected, "static children start in list order");
    (sup, events, txs)
}

#[test]
fn children_start_in_order_and_stop_in_reverse_order() {
    let (sup, events, _txs) = tree(Strategy::OneForOne, &["a", "b", "c"]);
    sup.shutdown().unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "exited c shutdown",
            "exited b shutdown",
            "exited a shutdown",
            "supervisor-stopped"
        ]
    );
}

#[test]
fn one_for_one_restarts_only_the_dead_child() {
    let (sup, events, txs) = tree(Strategy::OneForOne, &["a", "b", "c"]);
    let before = sup.which_children().unwrap();
    txs[1].send(Cmd::Panic("b dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted b"),
        ["exited b panicked", "restarted b"]
    );
    let after = sup.which_children().unwrap();
    assert_eq!(pid_of(&before, "a"), pid_of(&after, "a"));
    assert_ne!(pid_of(&before, "b"), pid_of(&after, "b"));
    assert_eq!(pid_of(&before, "c"), pid_of(&after, "c"));
    let ids: Vec<&str> = after.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["a", "b", "c"], "the restarted child keeps its place");
}

#[test]
fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let (sup, events, txs) = tree(Strategy::OneForAll, &["a", "b", "c"]);
    let before = sup.which_children().unwrap();
    txs[1].send(Cmd::Fail("b fails")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted c"),
        [
            "exited b failed",
            "exited c shutdown",
            "exited a shutdown",
            "restarted a",
            "restarted b",
            "restarted c"
        ]
    );
    let after = sup.which_children().unwrap();
    for id in ["a", "b", "c"] {
        assert_ne!(
            pid_of(&before, id),
            pid_of(&after, id),
            "{id} has a new pid"
        );
    }
}

#[test]
fn rest_for_one_restarts_the_dead_child_and_those_after_it() {
    let (sup, events, txs) = tree(Strategy::RestForOne, &["a", "b", "c", "d"]);
    let before = sup.which_children().unwrap();
    txs[1].send(Cmd::Panic("b dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted d"),
        [
            "exited b panicked",
            "exited d shutdown",
            "exited c shutdown",
            "restarted b",
            "restarted c",
            "restarted d"
        ]
    );
    let after = sup.which_children().unwrap();
    assert_eq!(
        pid_of(&before, "a"),
        pid_of(&after, "a"),
        "a is before b: untouched"
    );
}

#[test]
fn one_for_all_drops_a_temporary_bystander() {
    let (sup, events, txs) = tree_with(Strategy::OneForAll, &["a", "t", "c"], &["t"]);
    txs[2].send(Cmd::Panic("c dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted c"),
        [
            "exited c panicked",
            "exited t shutdown",
            "exited a shutdown",
            "restarted a",
            "restarted c"
        ]
    );
    let ids: Vec<String> = sup
        .which_children()
        .unwrap()
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["a", "c"], "the temporary bystander is gone");
}

#[test]
fn rest_for_one_drops_a_temporary_bystander_after_the_dead_child() {
    let (sup, events, txs) = tree_with(Strategy::RestForOne, &["a", "b", "t"], &["t"]);
    txs[1].send(Cmd::Panic("b dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted b"),
        ["exited b panicked", "exited t shutdown", "restarted b"]
    );
    assert_eq!(sup.count_children().unwrap().specs, 2);
}

#[test]
fn one_for_all_brings_back_a_terminated_sibling() {
    let (sup, events, txs) = tree(Strategy::OneForAll, &["a", "b", "c"]);
    sup.terminate_child("b").unwrap();
    assert_eq!(next(&events).child_id(), Some("b"));
    txs[2].send(Cmd::Panic("c dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted c"),
        [
            "exited c panicked",
            "exited a shutdown",
            "restarted a",
            "restarted b",
            "restarted c"
        ]
    );
    let children = sup.which_children().unwrap();
    assert!(children.iter().all(|c| c.status == ChildStatus::Running));
}

#[test]
fn rest_for_one_brings_back_a_terminated_later_sibling() {
    let (sup, events, txs) = tree(Strategy::RestForOne, &["a", "b", "c"]);
    sup.terminate_child("c").unwrap();
    assert_eq!(brief(&next(&events)), "exited c shutdown");
    txs[1].send(Cmd::Panic("b dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted c"),
        ["exited b panicked", "restarted b", "restarted c"]
    );
    drop(sup);
}

#[test]
fn group_strategy_does_not_act_when_the_dead_child_is_not_restarted() {
    let (sink, events) = unbounded();
    let (b, tx_b) = controlled("b");
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(idle("a"))
        .child(b.restart(Restart::Transient))
        .child(idle("c"))
        .start()
        .unwrap();
    briefs_through(&events, "started c");
    let before = sup.which_children().unwrap();
    tx_b.send(Cmd::Return).unwrap();
    assert_eq!(brief(&next(&events)), "exited b normal");
    let after = sup.which_children().unwrap();
    assert!(events.try_recv().is_err(), "nobody else was touched");
    assert_eq!(pid_of(&before, "a"), pid_of(&after, "a"));
    assert_eq!(pid_of(&before, "c"), pid_of(&after, "c"));
    assert_eq!(after[1].status, ChildStatus::Stopped);
}
