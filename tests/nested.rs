//! Nested supervisors: a supervisor as a child, escalation when it gives up (it exits like
//! OTP's `shutdown`: a permanent parent spec restarts it, a transient one leaves it down),
//! and finding it by name or from its parent.

mod common;

use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{
    registry, ChildKind, ChildSpec, ChildStatus, Event, ExitReason, Restart, StartError, Strategy,
    Supervisor, SupervisorError, SupervisorRef,
};

/// An inner supervisor (intensity 0) with one controlled worker, registered as `name`.
fn inner(name: &str) -> (steadfast::supervisor::SupervisorBuilder, Sender<Cmd>) {
    let (w, tx) = controlled("w");
    let b = Supervisor::builder()
        .name(name)
        .intensity(0, Duration::from_secs(60))
        .child(w);
    (b, tx)
}

fn parent(spec: ChildSpec) -> (Supervisor, Receiver<Event>) {
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(5, Duration::from_secs(60))
        .event_sink(sink)
        .child(spec)
        .child(idle("sibling"))
        .start()
        .unwrap();
    briefs_through(&events, "started sibling");
    (sup, events)
}

#[test]
fn a_permanent_inner_supervisor_that_gives_up_is_restarted_by_its_parent() {
    let (b, tx) = inner("nested::permanent");
    let (sup, events) = parent(ChildSpec::supervisor("inner", b).restart(Restart::Permanent));
    let (old_pid, old_ref) = registry()
        .lookup_as::<SupervisorRef>("nested::permanent")
        .unwrap();
    tx.send(Cmd::Panic("worker dies")).unwrap();
    let seen = until(&events, |e| brief(e) == "restarted inner");
    assert!(matches!(
        &seen[0],
        Event::ChildExited { id, reason: ExitReason::Shutdown, .. } if &**id == "inner"
    ));
    assert_eq!(seen.len(), 2);
    // The old incarnation's name went with it; the new one holds it now.
    assert!(matches!(
        old_ref.which_children(),
        Err(SupervisorError::NoSupervisor)
    ));
    let (new_pid, new_ref) = registry()
        .lookup_as::<SupervisorRef>("nested::permanent")
        .unwrap();
    assert_ne!(old_pid, new_pid);
    assert_eq!(new_ref.count_children().unwrap().active, 1);
    sup.shutdown().unwrap();
    assert!(registry().lookup("nested::permanent").is_none());
}

#[test]
fn a_transient_inner_supervisor_that_gives_up_stays_down() {
    let (b, tx) = inner("nested::transient");
    let (sup, events) = parent(ChildSpec::supervisor("inner", b).restart(Restart::Transient));
    tx.send(Cmd::Panic("worker dies")).unwrap();
    assert_eq!(brief(&next(&events)), "exited inner shutdown");
    let children = sup.which_children().unwrap();
    assert!(events.try_recv().is_err(), "no restart");
    assert_eq!(children[0].status, ChildStatus::Stopped);
    assert_eq!(
        children[1].status,
        ChildStatus::Running,
        "the sibling is untouched"
    );
    assert!(registry().lookup("nested::transient").is_none());
    sup.shutdown().unwrap();
}

#[test]
fn escalation_goes_through_every_level() {
    // worker -> level2 (intensity 0) -> level1 (intensity 0) -> top (intensity 0)
    let (w, tx) = controlled("w");
    let level2 = Supervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .child(w);
    let level1 = Supervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .child(ChildSpec::supervisor("level2", level2));
    let (sink, events) = unbounded();
    let top = Supervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .event_sink(sink)
        .child(ChildSpec::supervisor("level1", level1))
        .start()
        .unwrap();
    briefs_through(&events, "started level1");
    tx.send(Cmd::Fail("deep failure")).unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "exited level1 shutdown",
            "intensity-exceeded",
            "supervisor-stopped"
        ]
    );
    assert!(matches!(
        top.join(),
        Err(SupervisorError::IntensityExceeded { .. })
    ));
}

#[test]
fn a_nested_supervisor_is_reachable_from_its_parent() {
    let (b, _tx) = inner("nested::reachable");
    let (sup, _events) = parent(ChildSpec::supervisor("inner", b));
    let row = sup.which_children().unwrap().remove(0);
    assert_eq!(row.kind, ChildKind::Supervisor);
    let by_pid = SupervisorRef::from_pid(row.pid.unwrap()).unwrap();
    let (_, by_name) = registry()
        .lookup_as::<SupervisorRef>("nested::reachable")
        .unwrap();
    assert_eq!(by_pid.pid(), by_name.pid());
    assert_eq!(by_pid.which_children().unwrap()[0].id.as_ref(), "w");
    let counts = sup.count_children().unwrap();
    assert_eq!((counts.supervisors, counts.workers), (1, 1));
    sup.shutdown().unwrap();
}

#[test]
fn a_nested_start_failure_names_the_path() {
    let bad = Supervisor::builder()
        .child(idle("ok"))
        .child(ChildSpec::worker("broken", |_| Err("no db".into())).ready_timeout(DEADLINE));
    let err = Supervisor::builder()
        .child(idle("first"))
        .child(ChildSpec::supervisor("inner", bad))
        .start()
        .unwrap_err();
    assert_eq!(err.child_id(), Some("inner"));
    // The cause is in the text (and in the variant), not repeated by `source()`.
    assert!(err.to_string().contains("\"broken\""), "{err}");
    assert!(std::error::Error::source(&err).is_none());
    let StartError::Nested { source, .. } = &err else {
        panic!("not nested: {err:?}")
    };
    assert_eq!(source.child_id(), Some("broken"));
}

#[test]
fn one_for_all_restarts_a_nested_supervisor_with_its_siblings() {
    let (w, tx) = controlled("w");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(ChildSpec::supervisor(
            "inner",
            Supervisor::builder().child(idle("x")),
        ))
        .child(w)
        .start()
        .unwrap();
    briefs_through(&events, "started w");
    tx.send(Cmd::Panic("w dies")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted w"),
        [
            "exited w panicked",
            "exited inner shutdown",
            "restarted inner",
            "restarted w"
        ]
    );
    sup.shutdown().unwrap();
}

/// A child finds its own supervisor and its tree's root from its context, through
/// nested and dynamic supervisors, and again after it restarted on its own thread.
#[test]
fn a_child_finds_its_supervisor_and_the_root_of_its_tree() {
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let (crash_tx, crash) = crossbeam_channel::unbounded::<()>();
    let asks = steadfast::ChildSpec::worker("asks", move |ctx| {
        let mine = ctx.supervisor().expect("its supervisor runs");
        let root = ctx.root().expect("the root runs");
        let counted = mine.count_children().map(|c| c.active);
        let _ = seen_tx.send((mine.pid(), mine.as_dynamic().is_some(), root.pid(), counted));
        ctx.recv(&crash)?;
        Err("crash once".into())
    });
    let root = Supervisor::builder()
        .name("ancestry-root")
        .child(steadfast::ChildSpec::supervisor(
            "pool",
            steadfast::DynamicSupervisor::builder().name("ancestry-pool"),
        ))
        .start()
        .unwrap();
    let (_, pool) = steadfast::registry()
        .lookup_as::<steadfast::DynamicSupervisorRef>("ancestry-pool")
        .unwrap();
    pool.start_child(asks).unwrap();
    let expected = (pool.pid(), true, root.pid(), 1);
    let got = seen.recv_timeout(DEADLINE).unwrap();
    // The first incarnation may ask before its supervisor has read the hand-over (a
    // plain child runs as soon as it is spawned): answered, with 0 or 1.
    assert_eq!((got.0, got.1, got.2), (expected.0, expected.1, expected.2));
    assert!(got.3.unwrap() <= 1, "first incarnation");
    crash_tx.send(()).unwrap();
    let got = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        (got.0, got.1, got.2, got.3.unwrap()),
        expected,
        "after a restart on its own thread"
    );
    // A handle of either kind answers as the typed one does.
    let any = steadfast::AnySupervisorRef::from_pid(root.pid()).unwrap();
    assert_eq!(any.as_static().map(|s| s.pid()), Some(root.pid()));
    assert_eq!(any.which_children().unwrap().len(), 1);
    root.shutdown().unwrap();
}

/// A nested supervisor's handle built with its spec follows it across its restarts:
/// after the nested supervisor gives up and its parent restarts it, the same handle
/// reaches the new incarnation; no name is looked up.
#[test]
fn a_tracked_handle_follows_a_nested_supervisor_across_its_restarts() {
    let (pool_spec, pool) = steadfast::DynamicSupervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .build("pool");
    let (inner_spec, inner) = Supervisor::builder().child(idle("w")).build("inner");
    let root = Supervisor::builder()
        .child(pool_spec)
        .child(inner_spec)
        .start()
        .unwrap();
    assert_eq!(pool.id(), "pool");
    let first = pool.get().unwrap();
    assert_eq!(inner.get().unwrap().which_children().unwrap().len(), 1);
    // A child that crashes takes the pool past its intensity of 0: the root restarts it.
    let (crash, crashed) = unbounded::<()>();
    first
        .start_child(steadfast::ChildSpec::worker("doomed", move |ctx| {
            ctx.recv(&crashed)?;
            Err("crash".into())
        }))
        .unwrap();
    let gone = steadfast::monitor(first.pid());
    crash.send(()).unwrap();
    gone.recv_timeout(DEADLINE).unwrap();
    let next = pool.wait(DEADLINE).unwrap();
    assert_ne!(next.pid(), first.pid(), "a new incarnation");
    assert!(matches!(
        first.count_children(),
        Err(steadfast::SupervisorError::NoSupervisor)
    ));
    next.start_child(idle("fresh")).unwrap();
    assert_eq!(pool.get().unwrap().pid(), next.pid());
    // Gone for good with its tree: the handle says so at once.
    root.shutdown().unwrap();
    assert!(matches!(
        pool.get(),
        Err(steadfast::SupervisorError::NoSupervisor)
    ));
}

/// Hostile: a tracked handle read in a tight loop while its supervisor is made to give
/// up and is restarted thirty times: every read is a live handle or `NoSupervisor`,
/// every call through it an answer or `NoSupervisor` — never a hang, never another error.
#[test]
fn a_tracked_handle_raced_against_restarts_answers_or_says_no_supervisor() {
    let (pool_spec, pool) = steadfast::DynamicSupervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .build("raced");
    let root = Supervisor::builder()
        .intensity(100, Duration::from_secs(1))
        .child(pool_spec)
        .start()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut answered, mut absent) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match pool.get().and_then(|sup| sup.count_children()) {
                    Ok(_) => answered += 1,
                    Err(steadfast::SupervisorError::NoSupervisor) => absent += 1,
                    Err(other) => panic!("unexpected: {other}"),
                }
            }
            (answered, absent)
        })
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        let sup = pool.wait(DEADLINE).unwrap();
        assert!(seen.insert(sup.pid()), "a new incarnation each round");
        let (crash, crashed) = unbounded::<()>();
        let gone = steadfast::monitor(sup.pid());
        sup.start_child(steadfast::ChildSpec::worker("doomed", move |ctx| {
            ctx.recv(&crashed)?;
            Err("crash".into())
        }))
        .unwrap();
        crash.send(()).unwrap();
        gone.recv_timeout(DEADLINE).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, _absent) = reader.join().unwrap();
    assert!(answered > 0);
    root.shutdown().unwrap();
}
