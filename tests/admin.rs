//! The admin API: start_child, terminate_child, restart_child, delete_child,
//! which_children and count_children, with OTP's errors.

mod common;

use common::*;
use steadfast::{
    ChildCounts, ChildKind, ChildSpec, ChildStatus, Restart, Supervisor, SupervisorError,
};

#[test]
fn start_child_appends_and_refuses_duplicates() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let pid = sup.start_child(idle("b")).unwrap();
    let children = sup.which_children().unwrap();
    let ids: Vec<&str> = children.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(children[1].pid, Some(pid));
    assert!(matches!(
        sup.start_child(idle("b")),
        Err(SupervisorError::AlreadyStarted(p)) if p == pid
    ));
    sup.terminate_child("b").unwrap();
    assert!(matches!(
        sup.start_child(idle("b")),
        Err(SupervisorError::AlreadyPresent)
    ));
    sup.shutdown().unwrap();
}

#[test]
fn terminate_restart_and_delete_follow_otp() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    assert!(matches!(
        sup.terminate_child("nope"),
        Err(SupervisorError::NotFound)
    ));
    assert!(matches!(
        sup.restart_child("a"),
        Err(SupervisorError::Running)
    ));
    assert!(matches!(
        sup.delete_child("a"),
        Err(SupervisorError::Running)
    ));
    let old = sup.which_children().unwrap()[0].pid.unwrap();
    sup.terminate_child("a").unwrap();
    assert!(!old.is_alive());
    let row = &sup.which_children().unwrap()[0];
    assert_eq!((row.status, row.pid), (ChildStatus::Stopped, None));
    // Terminating a stopped child is fine (nothing to stop).
    sup.terminate_child("a").unwrap();
    let new = sup.restart_child("a").unwrap();
    assert_ne!(new, old);
    sup.terminate_child("a").unwrap();
    sup.delete_child("a").unwrap();
    assert!(matches!(
        sup.delete_child("a"),
        Err(SupervisorError::NotFound)
    ));
    assert!(matches!(
        sup.restart_child("a"),
        Err(SupervisorError::NotFound)
    ));
    assert!(sup.which_children().unwrap().is_empty());
    sup.shutdown().unwrap();
}

#[test]
fn terminating_a_temporary_child_removes_its_spec() {
    let sup = Supervisor::builder()
        .child(idle("t").restart(Restart::Temporary))
        .start()
        .unwrap();
    sup.terminate_child("t").unwrap();
    assert!(sup.which_children().unwrap().is_empty());
    sup.shutdown().unwrap();
}

#[test]
fn count_children_counts_specs_active_supervisors_and_workers() {
    let sup = Supervisor::builder()
        .child(idle("a"))
        .child(idle("b"))
        .child(ChildSpec::supervisor(
            "s",
            Supervisor::builder().child(idle("x")),
        ))
        .start()
        .unwrap();
    let counts: ChildCounts = sup.count_children().unwrap();
    assert_eq!(
        (
            counts.specs,
            counts.active,
            counts.supervisors,
            counts.workers
        ),
        (3, 3, 1, 2)
    );
    sup.terminate_child("b").unwrap();
    assert_eq!(sup.count_children().unwrap().active, 2);
    assert_eq!(sup.count_children().unwrap().specs, 3);
    let kinds: Vec<ChildKind> = sup
        .which_children()
        .unwrap()
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(
        kinds,
        [ChildKind::Worker, ChildKind::Worker, ChildKind::Supervisor]
    );
    sup.shutdown().unwrap();
}

#[test]
fn a_handle_outliving_its_supervisor_gets_no_supervisor() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let handle = sup.handle();
    let handle2 = handle.clone();
    sup.shutdown().unwrap();
    assert!(matches!(
        handle.which_children(),
        Err(SupervisorError::NoSupervisor)
    ));
    assert!(matches!(
        handle2.start_child(idle("b")),
        Err(SupervisorError::NoSupervisor)
    ));
    assert!(matches!(
        handle.events(),
        Err(SupervisorError::NoSupervisor)
    ));
}

#[test]
fn handles_work_from_many_threads() {
    let sup = Supervisor::builder().start().unwrap();
    let handle = sup.handle();
    std::thread::scope(|s| {
        for t in 0..4 {
            let h = handle.clone();
            s.spawn(move || {
                for i in 0..10 {
                    let id = format!("w{t}-{i}");
                    h.start_child(idle(&id)).unwrap();
                    h.terminate_child(&id).unwrap();
                    h.delete_child(&id).unwrap();
                }
            });
        }
    });
    assert_eq!(sup.count_children().unwrap(), ChildCounts::default());
    sup.shutdown().unwrap();
}
