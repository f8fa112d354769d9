//! One-shot tasks: `FnOnce` children that own what they captured, run once, and are never
//! restarted; and the bad input around them.

mod common;

use std::time::Duration;

use common::*;
use steadfast::channel::unbounded;
use steadfast::{
    monitor, ChildSpec, DynamicSupervisor, ExitReason, Restart, Supervisor, SupervisorError,
};

/// Something only one owner may have: not `Clone`, not `Sync`-shared.
struct Owned(std::cell::Cell<u32>);

#[test]
fn a_task_owns_its_captures_and_runs_once() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let (tx, rx) = unbounded();
    let owned = Owned(std::cell::Cell::new(41));
    let pid = pool
        .start_child(ChildSpec::task("job", move |_ctx| {
            let owned = owned; // moved out of the closure: FnOnce
            owned.0.set(owned.0.get() + 1);
            tx.send(owned.0.get()).unwrap();
            Ok(())
        }))
        .unwrap();
    let exited = monitor(pid);
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 42);
    assert!(matches!(
        exited.recv_timeout(DEADLINE).unwrap(),
        ExitReason::Normal | ExitReason::NoProcess
    ));
    // Temporary: gone from the table once it exits.
    steadfast::wait::until(DEADLINE, || pool.count_children().unwrap().specs == 0).unwrap();
}

#[test]
fn a_crashing_task_ends_only_itself_and_is_not_restarted() {
    let (sink, events) = unbounded();
    let pool = DynamicSupervisor::builder()
        .event_sink(sink)
        .intensity(0, DEADLINE) // a single restart would end the supervisor
        .start()
        .unwrap();
    let steady = pool.start_child(idle("steady")).unwrap();
    pool.start_child(ChildSpec::task("bad", |_ctx| panic!("boom")))
        .unwrap();
    let seen = briefs_through(&events, "exited bad panicked");
    assert!(!seen.iter().any(|e| e.starts_with("restarted")), "{seen:?}");
    let children = pool.which_children().unwrap();
    assert_eq!(pids(children), [steady]);
    drop(pool);
}

#[test]
fn a_task_with_another_restart_type_is_an_invalid_spec() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    for restart in [Restart::Permanent, Restart::Transient] {
        let task = ChildSpec::task("t", |_ctx| Ok(())).restart(restart);
        let err = pool.start_child(task).unwrap_err();
        assert!(
            matches!(&err, SupervisorError::InvalidSpec(why) if why.contains("task")),
            "{err}"
        );
    }
    let err = Supervisor::builder()
        .child(ChildSpec::task("t", |_ctx| Ok(())).restart(Restart::Permanent))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("runs once"), "{err}");
}

#[test]
fn a_task_that_ran_cannot_be_started_again() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let task = ChildSpec::task("once", |_ctx| Ok(()));
    let exited = monitor(pool.start_child(task.clone()).unwrap());
    exited.recv_timeout(DEADLINE).unwrap();
    let err = pool.start_child(task).unwrap_err();
    assert!(
        matches!(&err, SupervisorError::InvalidSpec(why) if why.contains("already run")),
        "{err}"
    );
}

#[test]
fn restart_child_on_a_task_finds_nothing_to_restart() {
    let (tx, rx) = unbounded::<()>();
    let sup = Supervisor::builder()
        .child(idle("keep"))
        .child(ChildSpec::task("task", move |ctx| {
            let _ = ctx.recv(&rx);
            Ok(())
        }))
        .start()
        .unwrap();
    // Running: restart_child refuses, as for any running child.
    assert!(matches!(
        sup.restart_child("task"),
        Err(SupervisorError::Running)
    ));
    // Terminated: a temporary child's spec goes with it.
    sup.terminate_child("task").unwrap();
    assert!(matches!(
        sup.restart_child("task"),
        Err(SupervisorError::NotFound)
    ));
    drop(tx);
    assert_eq!(ids(sup.which_children().unwrap()), ["keep"]);
}

#[test]
fn a_task_stopped_during_a_shutdown_exits_with_shutdown() {
    let (sink, events) = unbounded();
    let (up_tx, up) = unbounded();
    let pool = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    pool.start_child(ChildSpec::task("long", move |ctx| {
        up_tx.send(()).unwrap();
        while ctx.sleep(Duration::from_millis(5)).is_ok() {}
        Ok(())
    }))
    .unwrap();
    up.recv_timeout(DEADLINE).unwrap();
    pool.shutdown().unwrap();
    let seen: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(
        seen.contains(&"exited long shutdown".to_string()),
        "{seen:?}"
    );
}
