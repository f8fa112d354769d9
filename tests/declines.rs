//! A start that declines (OTP's `ignore`), and reading a child's spec back
//! (`get_childspec`).

mod common;

use std::time::Duration;

use common::*;
use steadfast::channel::unbounded;
use steadfast::{
    ChildSpec, ChildStatus, DynamicSupervisor, Restart, Shutdown, Supervisor, SupervisorError,
};

fn declining(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |ctx| {
        ctx.ignore();
        Ok(())
    })
    .ready_timeout(DEADLINE)
}

#[test]
fn a_declining_child_at_start_is_kept_stopped_and_the_next_one_starts() {
    let sup = Supervisor::builder()
        .child(declining("optional"))
        .child(idle("after"))
        .start()
        .unwrap();
    let children = sup.which_children().unwrap();
    assert_eq!(ids(children.clone()), ["optional", "after"]);
    assert_eq!(children[0].status, ChildStatus::Stopped);
    assert_eq!(children[0].pid, None);
    assert_eq!(children[1].status, ChildStatus::Running);
    assert_eq!(sup.count_children().unwrap().active, 1);
}

#[test]
fn start_child_and_restart_child_report_ignored() {
    let sup = Supervisor::builder().start().unwrap();
    assert!(matches!(
        sup.start_child(declining("d")),
        Err(SupervisorError::Ignored)
    ));
    // A static supervisor keeps the spec, as OTP does.
    assert_eq!(ids(sup.which_children().unwrap()), ["d"]);
    assert!(matches!(
        sup.restart_child("d"),
        Err(SupervisorError::Ignored)
    ));
    sup.delete_child("d").unwrap();
}

#[test]
fn a_dynamic_supervisor_keeps_nothing_of_a_declining_child() {
    let pool = DynamicSupervisor::builder()
        .max_children(1)
        .start()
        .unwrap();
    assert!(matches!(
        pool.start_child(declining("d")),
        Err(SupervisorError::Ignored)
    ));
    assert_eq!(pool.count_children().unwrap().specs, 0);
    // Its place was given back.
    pool.start_child(idle("x")).unwrap();
}

#[test]
fn a_child_that_declines_and_lingers_is_stopped_like_any_other() {
    let (sink, events) = unbounded();
    let sup = Supervisor::builder().event_sink(sink).start().unwrap();
    let spec = ChildSpec::worker("linger", |ctx| {
        ctx.ignore();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE)
    .shutdown(Shutdown::Timeout(Duration::from_secs(30)));
    assert!(matches!(
        sup.start_child(spec),
        Err(SupervisorError::Ignored)
    ));
    assert_eq!(
        sup.which_children().unwrap()[0].status,
        ChildStatus::Stopped
    );
    drop(sup);
    let seen: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(!seen.iter().any(|e| e.contains("abandoned")), "{seen:?}");
}

#[test]
fn a_restart_that_declines_leaves_the_child_stopped() {
    // The first incarnation runs; after a crash, the restart declines.
    let (sink, events) = unbounded();
    let spec = ChildSpec::worker("flaky", |ctx| {
        if ctx.incarnation() > 0 {
            ctx.ignore();
            return Ok(());
        }
        ctx.ready();
        Err("first run fails".into())
    })
    .ready_timeout(DEADLINE);
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .child(idle("other"))
        .start()
        .unwrap();
    briefs_through(&events, "exited flaky failed");
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Stopped);
    assert_eq!(children[1].status, ChildStatus::Running);
}

#[test]
fn ignore_without_readiness_does_nothing() {
    let (tx, rx) = unbounded();
    let sup = Supervisor::builder()
        .child(ChildSpec::worker("plain", move |ctx| {
            ctx.ignore();
            tx.send(()).unwrap();
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .start()
        .unwrap();
    rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        sup.which_children().unwrap()[0].status,
        ChildStatus::Running
    );
}

#[test]
fn child_spec_reads_a_spec_back_by_id_or_pid() {
    let sup = Supervisor::builder()
        .child(idle("a").restart(Restart::Transient))
        .start()
        .unwrap();
    let spec = sup.child_spec("a").unwrap();
    assert_eq!((spec.id(), spec.restart_type()), ("a", Restart::Transient));
    sup.terminate_child("a").unwrap();
    assert_eq!(sup.child_spec("a").unwrap().id(), "a", "kept while stopped");
    assert!(matches!(
        sup.child_spec("nope"),
        Err(SupervisorError::NotFound)
    ));

    let pool = DynamicSupervisor::builder().start().unwrap();
    let pid = pool.start_child(idle("d")).unwrap();
    assert_eq!(pool.child_spec(pid).unwrap().id(), "d");
    pool.terminate_child(pid).unwrap();
    assert!(matches!(
        pool.child_spec(pid),
        Err(SupervisorError::NotFound)
    ));
}
