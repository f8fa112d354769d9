//! one_for_one, one_for_all and rest_for_one: which children are stopped (in reverse start
//! order) and restarted (in start order), observed through the event stream.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{ChildSpec, ChildStatus, Event, Pid, Restart, Strategy, Supervisor};

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

/// A stop hook: run by child `i` when its stop signal comes, before it returns.
type OnStop = Arc<dyn Fn(usize, &Pids) + Send + Sync>;
type Pids = Arc<Mutex<Vec<Option<Pid>>>>;

/// Children `w0..wn` that, when asked to stop, report every later child still alive: an
/// ordered stop must signal a child only once every child after it has exited. Each
/// incarnation records its pid, then says so on `recorded`; `Cmd::Fail` makes a child
/// fail. Returns once every child has recorded its pid.
fn watchful(strategy: Strategy, n: usize, on_stop: OnStop) -> Watchful {
    let (sink, events) = unbounded();
    let (late_tx, late) = unbounded();
    let (recorded_tx, recorded) = unbounded();
    let pids: Pids = Arc::new(Mutex::new(vec![None; n]));
    let mut builder = Supervisor::builder()
        .strategy(strategy)
        .intensity(1_000, DEADLINE)
        .event_sink(sink);
    let mut txs = Vec::new();
    for i in 0..n {
        let (tx, rx) = unbounded::<Cmd>();
        let (pids, late_tx, on_stop) = (pids.clone(), late_tx.clone(), on_stop.clone());
        let recorded_tx = recorded_tx.clone();
        builder = builder.child(ChildSpec::worker(format!("w{i}"), move |ctx| {
            pids.lock().unwrap()[i] = Some(ctx.pid());
            recorded_tx.send(i)?;
            match ctx.recv(&rx) {
                Ok(Cmd::Fail(msg)) => Err(msg.into()),
                Ok(_) => Ok(()),
                Err(stopped) => {
                    on_stop(i, &pids);
                    let later: Vec<Option<Pid>> = pids.lock().unwrap()[i + 1..].to_vec();
                    for (j, pid) in later.into_iter().enumerate() {
                        if pid.is_some_and(|p| p.is_alive()) {
                            late_tx.send(format!("w{i} stopped while w{} ran", i + 1 + j))?;
                        }
                    }
                    Err(stopped.into())
                }
            }
        }));
        txs.push(tx);
    }
    let sup = builder.start().unwrap();
    briefs_through(&events, &format!("started w{}", n - 1));
    let w = Watchful {
        sup,
        events,
        txs,
        late,
        recorded,
    };
    w.all_recorded(n);
    w
}

struct Watchful {
    sup: Supervisor,
    events: Receiver<Event>,
    txs: Vec<Sender<Cmd>>,
    late: Receiver<String>,
    recorded: Receiver<usize>,
}

impl Watchful {
    /// Waits until `n` incarnations have recorded their pids.
    fn all_recorded(&self, n: usize) {
        for _ in 0..n {
            self.recorded
                .recv_timeout(DEADLINE)
                .expect("an incarnation records its pid");
        }
    }

    /// Shuts the tree down (an ordered stop too) and returns what was stopped too early.
    fn finish(self) -> Vec<String> {
        self.sup.shutdown().unwrap();
        self.late.try_iter().collect()
    }
}

#[test]
fn a_child_is_stopped_only_after_every_later_child_has_exited() {
    let nothing: OnStop = Arc::new(|_, _| {});
    for strategy in [Strategy::OneForAll, Strategy::RestForOne] {
        let w = watchful(strategy, 6, nothing.clone());
        // one_for_all restarts all six, rest_for_one w1 and the four after it.
        let restarted = if strategy == Strategy::OneForAll {
            6
        } else {
            5
        };
        for _ in 0..20 {
            w.txs[1].send(Cmd::Fail("w1 fails")).unwrap();
            briefs_through(&w.events, "restarted w5");
            w.all_recorded(restarted);
        }
        let late = w.finish();
        assert!(late.is_empty(), "{strategy:?}: {late:?}");
    }
}

#[test]
fn a_child_exiting_on_its_own_during_an_ordered_stop_does_not_hurry_the_next() {
    // w3 fails; while w2 is being stopped, w1 fails on its own. w0 must still be stopped
    // only after w2 has exited, however w1's exit came about.
    let w1: Arc<Mutex<Option<Sender<Cmd>>>> = Arc::new(Mutex::new(None));
    let hook_w1 = w1.clone();
    let on_stop: OnStop = Arc::new(move |i, pids| {
        if i == 2 {
            let pid = pids.lock().unwrap()[1];
            let pid = pid.expect("w1 recorded its pid");
            let exited = steadfast::monitor(pid);
            let tx = hook_w1.lock().unwrap().clone().unwrap();
            tx.send(Cmd::Fail("w1 fails meanwhile")).unwrap();
            exited.recv_timeout(DEADLINE).expect("w1 exits");
            // Were w0 signalled now (too early), it would find w2 still running: give it
            // the time to. In order, w0 is not signalled until w2 returns; this wait
            // then just runs out.
            let pid = pids.lock().unwrap()[0];
            let w0 = steadfast::monitor(pid.expect("w0 recorded its pid"));
            let _ = w0.recv_timeout(Duration::from_millis(100));
        }
    });
    let w = watchful(Strategy::OneForAll, 4, on_stop);
    *w1.lock().unwrap() = Some(w.txs[1].clone());
    w.txs[3].send(Cmd::Fail("w3 fails")).unwrap();
    assert_eq!(
        briefs_through(&w.events, "restarted w3"),
        [
            "exited w3 failed",
            "exited w2 shutdown",
            "exited w1 failed",
            "exited w0 shutdown",
            "restarted w0",
            "restarted w1",
            "restarted w2",
            "restarted w3"
        ]
    );
    w.all_recorded(4);
    let late = w.finish();
    assert!(late.is_empty(), "{late:?}");
}
