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
    assert_eq!(
        (spec.id(), spec.restart_setting()),
        ("a", Restart::Transient)
    );
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

/// A temporary child that declines keeps no row: OTP's "Child spec shall NOT be saved",
/// and `Restart::Temporary`'s own promise (its spec goes once it is not running) — at
/// `start_child` and at the supervisor's start alike.
#[test]
fn a_temporary_child_that_declines_keeps_no_row() {
    let sup = Supervisor::builder()
        .child(declining("once-at-start").restart(Restart::Temporary))
        .child(idle("after"))
        .start()
        .unwrap();
    assert_eq!(ids(sup.which_children().unwrap()), ["after"]);
    assert!(matches!(
        sup.start_child(declining("once").restart(Restart::Temporary)),
        Err(SupervisorError::Ignored)
    ));
    assert_eq!(ids(sup.which_children().unwrap()), ["after"]);
    let counts = sup.count_children().unwrap();
    assert_eq!((counts.specs, counts.active), (1, 1));
    // The id is free again.
    assert!(matches!(
        sup.start_child(declining("once").restart(Restart::Temporary)),
        Err(SupervisorError::Ignored)
    ));
}

/// A dynamic child that crashes and whose restart declines is gone: no `Stopped` row
/// without a pid (which nothing could terminate), and its `max_children` place is free.
#[test]
fn a_dynamic_child_whose_restart_declines_is_forgotten_and_frees_its_place() {
    let sup = DynamicSupervisor::builder()
        .max_children(1)
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    let (crash_tx, crash) = unbounded::<()>();
    let spec = ChildSpec::worker("flaky", move |ctx| {
        if ctx.incarnation() > 0 {
            ctx.ignore();
            return Ok(());
        }
        ctx.ready();
        ctx.recv(&crash)?;
        panic!("crash once, then decline");
    })
    .ready_timeout(DEADLINE);
    sup.start_child(spec).unwrap();
    crash_tx.send(()).unwrap();
    until(&events, |e| {
        matches!(e, steadfast::Event::ChildExited { .. })
    });
    // The restart declines; wait for the supervisor to have handled it.
    steadfast::wait::until(DEADLINE, || sup.which_children().unwrap().is_empty()).unwrap();
    assert_eq!(sup.count_children().unwrap().specs, 0);
    sup.start_child(idle("next")).unwrap();
    assert_eq!(sup.count_children().unwrap().active, 1);
}
