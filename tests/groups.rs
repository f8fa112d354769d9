//! Groups (duplicate keys) with dispatch, queries, value updates and listeners; the same
//! queries and listeners on the unique registry; and a concurrency test against a model.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use steadfast::channel::{unbounded, Sender};
use steadfast::{
    groups, monitor, ChildSpec, DynamicSupervisor, Groups, Pid, Registry, RegistryError,
    RegistryEvent,
};

#[test]
fn a_process_may_join_a_key_many_times_and_leave_removes_all_of_them() {
    let g: Groups<&str, u32> = Groups::new();
    g.join("k", 1);
    g.join("k", 2);
    g.join("other", 3);
    let me = Pid::current();
    assert_eq!(g.members(&"k"), [(me, 1), (me, 2)]);
    assert_eq!(g.values(&"k", me), [1, 2]);
    assert_eq!(g.count(), 3);
    let mut keys = g.keys(me);
    keys.sort_unstable();
    assert_eq!(keys, ["k", "other"]);
    assert_eq!(g.leave(&"k"), 2);
    assert_eq!(g.leave(&"k"), 0);
    assert!(g.members(&"k").is_empty());
    assert_eq!(g.count(), 1);
    assert_eq!(g.leave(&"other"), 1);
}

#[test]
fn a_members_entries_are_gone_before_its_exit_is_observable() {
    let g: Groups<&'static str, u32> = Groups::new();
    let pool = DynamicSupervisor::builder().start().unwrap();
    let (joined_tx, joined) = unbounded();
    let (go_tx, go) = unbounded::<()>();
    let g2 = g.clone();
    let pid = pool
        .start_child(ChildSpec::task("member", move |ctx| {
            g2.join("room", 1);
            g2.join("room", 2);
            joined_tx.send(()).unwrap();
            let _ = ctx.recv(&go);
            Ok(())
        }))
        .unwrap();
    joined.recv_timeout(DEADLINE).unwrap();
    assert_eq!(g.count_members(&"room"), 2);
    let exited = monitor(pid);
    drop(go_tx);
    exited.recv_timeout(DEADLINE).unwrap();
    assert!(g.members(&"room").is_empty());
    assert!(g.keys(pid).is_empty());
    assert_eq!(g.count(), 0);
}

#[test]
fn dispatch_runs_on_the_caller_without_a_lock_and_copes_with_empty_keys() {
    let g: Groups<&str, u32> = Groups::new();
    assert_eq!(g.dispatch(&"nobody", |_, _| panic!("not called")), 0);
    for n in 0..5 {
        g.join("k", n);
    }
    let mut seen = Vec::new();
    // The function may change the groups itself: no lock is held.
    let called = g.dispatch(&"k", |_, &n| {
        seen.push(n);
        g.join("k", 100 + n);
        assert!(g.count_members(&"k") > 5);
    });
    assert_eq!(
        called, 5,
        "a dispatch sees the members as they were when it began"
    );
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    assert_eq!(g.count_members(&"k"), 10);
}

#[test]
fn dispatch_send_reaches_every_live_channel() {
    let g: Groups<&str, Sender<String>> = Groups::new();
    let (a_tx, a) = unbounded();
    let (b_tx, b) = unbounded();
    let (gone_tx, gone) = unbounded::<String>();
    g.join("topic", a_tx);
    g.join("topic", b_tx);
    g.join("topic", gone_tx);
    drop(gone);
    assert_eq!(g.dispatch_send(&"topic", "hi".to_string()), 2);
    assert_eq!(a.try_recv().unwrap(), "hi");
    assert_eq!(b.try_recv().unwrap(), "hi");
    assert_eq!(g.dispatch_send(&"none", "x".to_string()), 0);
}

#[test]
fn queries_select_and_count_by_predicate() {
    let g: Groups<u32, u32> = Groups::new();
    for k in 0..10 {
        g.join(k, k * 10);
    }
    let mut big = g.select(|_, _, &v| v >= 70);
    big.sort_unstable();
    let me = Pid::current();
    assert_eq!(big, [(7, me, 70), (8, me, 80), (9, me, 90)]);
    assert_eq!(g.count_matching(|&k, _, _| k % 2 == 0), 5);

    let reg: Registry<u32, &str> = Registry::new();
    reg.register(1, "one").unwrap();
    reg.register(2, "two").unwrap();
    assert_eq!(reg.select(|_, _, v| v.starts_with('t')), [(2, me, "two")]);
    assert_eq!(reg.count_matching(|_, pid, _| pid == me), 2);
    assert_eq!(reg.count_matching(|_, _, _| false), 0);
}

#[test]
fn only_the_owner_updates_its_value() {
    let reg: Registry<&'static str, u32> = Registry::new();
    reg.register("hits", 0).unwrap();
    reg.update_value("hits", |n| *n += 5).unwrap();
    assert_eq!(reg.lookup("hits").map(|(_, n)| n), Some(5));
    assert_eq!(
        reg.update_value("missing", |n| *n += 1),
        Err(RegistryError::NotRegistered)
    );
    let me = Pid::current();
    let reg2 = reg.clone();
    let other = std::thread::spawn(move || reg2.update_value("hits", |n| *n = 0))
        .join()
        .unwrap();
    assert_eq!(other, Err(RegistryError::NotOwner(me)));
    assert_eq!(reg.lookup("hits").map(|(_, n)| n), Some(5));
}

#[test]
fn listeners_see_registrations_and_exits_in_order_and_a_dropped_one_is_dropped() {
    let reg: Registry<&'static str, u32> = Registry::new();
    let events = reg.listen();
    let dropped = reg.listen();
    drop(dropped);
    let sup = DynamicSupervisor::builder().start().unwrap();
    let (done_tx, done) = unbounded();
    let r = reg.clone();
    let pid = sup
        .start_child(ChildSpec::task("owner", move |_| {
            r.register("name", 1).unwrap();
            r.unregister("name");
            r.register("name", 2).unwrap();
            done_tx.send(()).unwrap();
            Ok(())
        }))
        .unwrap();
    done.recv_timeout(DEADLINE).unwrap();
    monitor(pid).recv_timeout(DEADLINE).unwrap();
    let got: Vec<_> = events.try_iter().collect();
    assert_eq!(
        got,
        [
            RegistryEvent::Registered {
                key: "name",
                pid,
                value: 1
            },
            RegistryEvent::Unregistered {
                key: "name",
                pid,
                exited: false
            },
            RegistryEvent::Registered {
                key: "name",
                pid,
                value: 2
            },
            RegistryEvent::Unregistered {
                key: "name",
                pid,
                exited: true
            },
        ]
    );
    // The registry carries on without the dropped listener.
    reg.register("after", 3).unwrap();
    assert!(matches!(
        events.try_recv(),
        Ok(RegistryEvent::Registered { key: "after", .. })
    ));
}

#[test]
fn the_global_groups_hold_typed_values() {
    groups().join_value("groups::typed", 7u64);
    groups().join_value("groups::typed", "text");
    assert_eq!(
        groups().members_as::<u64>("groups::typed"),
        [(Pid::current(), 7)]
    );
    assert_eq!(groups().leave("groups::typed"), 2);
}

/// Deterministic per-thread randomness.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn eight_members_joining_leaving_and_exiting_at_random_match_a_model() {
    const KEYS: u64 = 4;
    let g: Groups<u64, u64> = Groups::new();
    let events = g.listen();
    let pool = DynamicSupervisor::builder().start().unwrap();
    // Pids whose exit a monitor has reported, in order.
    let dead: Arc<Mutex<HashSet<Pid>>> = Arc::default();
    let joins = Arc::new(Mutex::new(0u64));
    let mut watchers = Vec::new();
    for round in 0..3u64 {
        let mut pids = Vec::new();
        for t in 0..8u64 {
            let (g, joins) = (g.clone(), joins.clone());
            let spec = ChildSpec::task(format!("member-{t}"), move |_ctx| {
                let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (round * 8 + t + 1);
                let mine: HashMap<u64, usize> = HashMap::new();
                let mut mine = mine;
                let steps = 200 + next(&mut rng) % 300;
                for step in 0..steps {
                    let key = next(&mut rng) % KEYS;
                    match next(&mut rng) % 10 {
                        0..=5 => {
                            g.join(key, step);
                            *joins.lock() += 1;
                            *mine.entry(key).or_default() += 1;
                        }
                        6..=8 => {
                            let left = g.leave(&key);
                            assert_eq!(left, mine.remove(&key).unwrap_or(0));
                        }
                        _ => {
                            let me = Pid::current();
                            assert_eq!(g.values(&key, me).len(), *mine.get(&key).unwrap_or(&0));
                        }
                    }
                }
                // Exit with whatever is still joined: the exit removes it.
                Ok(())
            });
            pids.push(pool.start_child(spec).unwrap());
        }
        for pid in pids {
            let (dead, exited) = (dead.clone(), monitor(pid));
            watchers.push(std::thread::spawn(move || {
                exited.recv_timeout(DEADLINE).unwrap();
                dead.lock().insert(pid);
            }));
        }
        // A checker: no member whose exit was observed is ever returned.
        for _ in 0..200 {
            let observed: HashSet<Pid> = dead.lock().clone();
            for key in 0..KEYS {
                for (pid, _) in g.members(&key) {
                    assert!(!observed.contains(&pid), "{pid} returned after its exit");
                }
                g.dispatch(&key, |pid, _| assert!(!observed.contains(&pid)));
            }
        }
    }
    for w in watchers {
        w.join().unwrap();
    }
    // Every member has exited: nothing left, and the listener saw every entry come and
    // go exactly once.
    assert_eq!(g.count(), 0);
    for key in 0..KEYS {
        assert!(g.members(&key).is_empty());
    }
    let mut net: HashMap<(u64, Pid), i64> = HashMap::new();
    let (mut registered, mut unregistered) = (0u64, 0u64);
    for event in events.try_iter() {
        match event {
            RegistryEvent::Registered { key, pid, .. } => {
                registered += 1;
                *net.entry((key, pid)).or_default() += 1;
            }
            RegistryEvent::Unregistered { key, pid, .. } => {
                unregistered += 1;
                let n = net.entry((key, pid)).or_default();
                *n -= 1;
                assert!(
                    *n >= 0,
                    "an entry of {pid} under {key} left before it joined"
                );
            }
            _ => {}
        }
    }
    assert_eq!(registered, *joins.lock());
    assert_eq!(unregistered, registered);
    assert!(net.values().all(|&n| n == 0));
}

/// Runs `body` on a thread and waits for it within the deadline: a hang fails the test
/// (naming `what`) instead of hanging the suite.
fn within_deadline(what: &str, body: impl FnOnce() + Send + 'static) {
    let (done_tx, done) = unbounded::<()>();
    let t = std::thread::spawn(move || {
        body();
        let _ = done_tx.send(());
    });
    assert!(
        done.recv_timeout(DEADLINE).is_ok(),
        "{what}: still running after {DEADLINE:?} (deadlocked)"
    );
    t.join().unwrap();
}

/// A predicate (`select`, `count_matching`) or an `update_value` closure may use the
/// same registry — look up, register, unregister — while other threads write to it:
/// nothing runs under a lock the closure could wait for. (A nested read used to queue
/// behind a waiting writer and hang both threads for good.)
#[test]
fn registry_closures_may_use_the_same_registry_while_others_write() {
    let reg: Registry<u32, u32> = Registry::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (reg, stop) = (reg.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1_000u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reg.register(n, n).unwrap();
                reg.unregister(&n);
                n = 1_000 + (n + 1) % 64;
            }
        })
    };
    let r = reg.clone();
    within_deadline("select with look-ups inside", move || {
        for k in 0..64 {
            r.register(k, k).unwrap();
        }
        for _ in 0..500 {
            let found = r.select(|k, _, _| *k < 64 && r.lookup(k).is_some());
            assert_eq!(found.len(), 64);
            assert_eq!(
                r.count_matching(|k, _, _| r.lookup(k).is_some() && *k < 64),
                64
            );
            // Writes from inside work too (this thread's own key).
            r.select(|k, _, _| {
                if *k == 0 {
                    r.register(9_999, 1).unwrap();
                    r.unregister(&9_999);
                }
                false
            });
            r.update_value(&7, |v| *v = r.lookup(&8).map_or(0, |(_, v)| v))
                .unwrap();
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(reg.lookup(&7).map(|(_, v)| v), Some(8));
}

/// The same for groups: predicates may read and write the groups they query.
#[test]
fn groups_predicates_may_use_the_same_groups_while_others_write() {
    let g: Groups<u32, u32> = Groups::new();
    for k in 0..64 {
        g.join(k, k);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (g, stop) = (g.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1_000u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                g.join(n, n);
                g.leave(&n);
                n = 1_000 + (n + 1) % 64;
            }
        })
    };
    let gr = g.clone();
    within_deadline("groups select with reads inside", move || {
        for _ in 0..500 {
            let found = gr.select(|k, _, _| *k < 64 && gr.count_members(k) == 1);
            assert_eq!(found.len(), 64);
            assert_eq!(
                gr.count_matching(|k, _, _| *k < 64 && !gr.members(k).is_empty()),
                64
            );
            gr.select(|k, _, _| {
                if *k == 0 {
                    gr.join(9_999, 1);
                    gr.leave(&9_999);
                }
                false
            });
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}
