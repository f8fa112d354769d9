//! Significant children and auto-shutdown (OTP 24): which exits end the supervisor, how
//! it reports that, and the specs it refuses.

mod common;

use common::*;
use steadfast::channel::{unbounded, Sender};
use steadfast::{
    AutoShutdown, ChildSpec, DynamicSupervisor, ExitReason, Restart, StartError, Strategy,
    Supervisor, SupervisorError,
};

fn significant(id: &str, restart: Restart) -> (ChildSpec, Sender<Cmd>) {
    let (spec, tx) = controlled(id);
    (spec.restart(restart).significant(true), tx)
}

#[test]
fn any_significant_a_transient_childs_normal_exit_ends_the_supervisor() {
    let (job, tx) = significant("job", Restart::Transient);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .event_sink(sink)
        .child(idle("helper"))
        .child(job)
        .start()
        .unwrap();
    tx.send(Cmd::Return).unwrap();
    // join returns, and Ok: a normal exit.
    sup.join().unwrap();
    let seen: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert_eq!(
        seen,
        [
            "started helper",
            "started job",
            "exited job normal",
            "exited helper shutdown",
            "supervisor-stopped"
        ]
    );
}

#[test]
fn a_transient_significant_child_that_crashes_is_restarted_not_the_end() {
    let (job, tx) = significant("job", Restart::Transient);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .intensity(5, DEADLINE)
        .event_sink(sink)
        .child(job)
        .start()
        .unwrap();
    tx.send(Cmd::Panic("boom")).unwrap();
    briefs_through(&events, "restarted job");
    tx.send(Cmd::Return).unwrap();
    sup.join().unwrap();
}

#[test]
fn all_significant_waits_for_the_last_one() {
    let (a, a_tx) = significant("a", Restart::Temporary);
    let (b, b_tx) = significant("b", Restart::Transient);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AllSignificant)
        .event_sink(sink)
        .child(a)
        .child(b)
        .child(idle("c"))
        .start()
        .unwrap();
    // A temporary child's exit counts whatever the reason.
    a_tx.send(Cmd::Panic("a fails")).unwrap();
    briefs_through(&events, "exited a panicked");
    assert_eq!(sup.count_children().unwrap().active, 2, "still up");
    b_tx.send(Cmd::Return).unwrap();
    sup.join().unwrap();
}

#[test]
fn a_significant_child_stopped_by_the_supervisor_does_not_end_it() {
    let (job, _tx) = significant("job", Restart::Transient);
    let sup = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(job)
        .child(idle("other"))
        .start()
        .unwrap();
    sup.terminate_child("job").unwrap();
    // Still serving: a terminated child is not one that exited on its own.
    assert_eq!(sup.count_children().unwrap().active, 1);
    sup.restart_child("job").unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn a_nested_supervisor_that_auto_shuts_down_is_a_normal_exit_to_its_parent() {
    let (job, tx) = significant("job", Restart::Transient);
    let (sink, events) = unbounded();
    let inner = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(job);
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(ChildSpec::supervisor("inner", inner).restart(Restart::Transient))
        .child(idle("sibling"))
        .start()
        .unwrap();
    tx.send(Cmd::Return).unwrap();
    let seen = briefs_through(&events, "exited inner shutdown");
    assert_eq!(seen.last().unwrap(), "exited inner shutdown");
    // Transient and a normal exit: not restarted; the sibling runs on.
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].pid, None);
    assert!(children[1].pid.is_some());
    assert!(events.try_recv().is_err());
}

#[test]
fn a_dynamic_supervisor_can_auto_shut_down_too() {
    let pool = DynamicSupervisor::builder()
        .auto_shutdown(AutoShutdown::AllSignificant)
        .start()
        .unwrap();
    let (a, a_tx) = significant("a", Restart::Temporary);
    pool.start_child(a).unwrap();
    pool.start_child(idle("plain")).unwrap();
    a_tx.send(Cmd::Return).unwrap();
    pool.join().unwrap();
}

#[test]
fn bad_combinations_are_invalid_specs() {
    // A permanent child can never be significant.
    let err = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(idle("p").significant(true))
        .start()
        .unwrap_err();
    assert!(
        matches!(&err, StartError::InvalidSpec(why) if why.contains("permanent")),
        "{err}"
    );
    // A significant child under a supervisor that never auto-shuts-down.
    let err = Supervisor::builder()
        .child(idle("t").restart(Restart::Transient).significant(true))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("auto_shutdown"), "{err}");
    let sup = Supervisor::builder().start().unwrap();
    let err = sup
        .start_child(idle("t").restart(Restart::Transient).significant(true))
        .unwrap_err();
    assert!(matches!(err, SupervisorError::InvalidSpec(_)), "{err}");
    let pool = DynamicSupervisor::builder().start().unwrap();
    let err = pool
        .start_child(idle("t").restart(Restart::Temporary).significant(true))
        .unwrap_err();
    assert!(matches!(err, SupervisorError::InvalidSpec(_)), "{err}");
    let pool = DynamicSupervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .start()
        .unwrap();
    let err = pool.start_child(idle("p").significant(true)).unwrap_err();
    assert!(matches!(err, SupervisorError::InvalidSpec(_)), "{err}");
}

#[test]
fn auto_shutdown_under_one_for_all_reports_every_exit_once() {
    let (job, tx) = significant("job", Restart::Temporary);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .auto_shutdown(AutoShutdown::AnySignificant)
        .event_sink(sink)
        .child(idle("a"))
        .child(job)
        .child(idle("b"))
        .start()
        .unwrap();
    tx.send(Cmd::Fail("done badly")).unwrap();
    sup.join().unwrap();
    let exits: Vec<(String, ExitReason)> = events
        .try_iter()
        .filter_map(|e| match e {
            steadfast::Event::ChildExited { id, reason, .. } => Some((id.to_string(), reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        exits,
        [
            ("job".to_string(), ExitReason::Failed("done badly".into())),
            ("b".to_string(), ExitReason::Shutdown),
            ("a".to_string(), ExitReason::Shutdown),
        ]
    );
}

#[test]
fn a_significant_exit_raced_against_a_shutdown_ends_cleanly_either_way() {
    for round in 0..200u32 {
        let (sink, events) = unbounded();
        let (go_tx, go) = unbounded::<()>();
        let job = ChildSpec::worker("job", move |_ctx| {
            let _ = go.recv();
            for _ in 0..(round % 13) * 50 {
                std::hint::spin_loop();
            }
            Ok(())
        })
        .restart(Restart::Transient)
        .significant(true);
        let sup = Supervisor::builder()
            .auto_shutdown(AutoShutdown::AnySignificant)
            .event_sink(sink)
            .child(idle("helper"))
            .child(job)
            .start()
            .unwrap();
        go_tx.send(()).unwrap();
        if round % 2 == 0 {
            sup.shutdown().unwrap();
        } else {
            sup.join().unwrap();
        }
        let exits: Vec<String> = events
            .iter()
            .filter(|e| matches!(e, steadfast::Event::ChildExited { .. }))
            .map(|e| brief(&e))
            .collect();
        assert_eq!(exits.len(), 2, "round {round}: {exits:?}");
        assert!(
            exits[0] == "exited job normal" || exits[0] == "exited job shutdown",
            "round {round}: {exits:?}"
        );
        assert_eq!(exits[1], "exited helper shutdown");
    }
}
