//! Ordered start: `start()` returns after every static child started, in order; if child k
//! fails, children 1..k-1 are stopped in reverse order, the rest never start, and the error
//! names child k.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use steadfast::{registry, ChildSpec, ExitReason, Pid, StartError, Supervisor, SupervisorError};

#[test]
fn a_failing_child_unwinds_those_started_before_it_and_skips_the_rest() {
    let (sink, events) = unbounded();
    let d_ran = Arc::new(AtomicBool::new(false));
    let d_flag = d_ran.clone();
    let err = Supervisor::builder()
        .event_sink(sink)
        .child(idle("a"))
        .child(idle("b"))
        .child(ChildSpec::worker("c", |_| Err("no config".into())).ready_timeout(DEADLINE))
        .child(ChildSpec::worker("d", move |_| {
            d_flag.store(true, Ordering::SeqCst);
            Ok(())
        }))
        .start()
        .unwrap_err();
    assert_eq!(err.child_id(), Some("c"));
    match &err {
        StartError::ChildExited { reason, .. } => {
            assert_eq!(reason, &ExitReason::Failed("no config".into()))
        }
        other => panic!("unexpected {other:?}"),
    }
    let seen: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert_eq!(
        seen,
        [
            "started a",
            "started b",
            "exited b shutdown",
            "exited a shutdown"
        ]
    );
    assert!(
        !d_ran.load(Ordering::SeqCst),
        "children after c never start"
    );
}

#[test]
fn a_child_panicking_before_ready_fails_the_start() {
    let err = Supervisor::builder()
        .child(ChildSpec::worker("p", |_| panic!("bad init")).ready_timeout(DEADLINE))
        .start()
        .unwrap_err();
    match err {
        StartError::ChildExited { id, reason } => {
            assert_eq!(id, "p");
            assert_eq!(reason, ExitReason::Panicked("bad init".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_child_missing_its_readiness_deadline_is_stopped_and_fails_the_start() {
    let (sink, events) = unbounded();
    let err = Supervisor::builder()
        .event_sink(sink)
        .child(idle("a"))
        .child(
            ChildSpec::worker("slow", |ctx| {
                let _ = ctx.stop_signal().recv(); // never ready
                Ok(())
            })
            .ready_timeout(Duration::from_millis(50)),
        )
        .start()
        .unwrap_err();
    assert!(matches!(
        err,
        StartError::ReadyTimeout { ref id, timeout } if id == "slow" && timeout == Duration::from_millis(50)
    ));
    let seen: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert_eq!(seen, ["started a", "exited a shutdown"]);
}

#[test]
fn start_waits_for_readiness_before_starting_the_next_child() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let sup = Supervisor::builder()
        .child(
            ChildSpec::worker("db", move |ctx| {
                l1.lock().push("db ready");
                ctx.ready();
                let _ = ctx.stop_signal().recv();
                Ok(())
            })
            .ready_timeout(DEADLINE),
        )
        .child(
            ChildSpec::worker("web", move |ctx| {
                l2.lock().push("web running");
                ctx.ready();
                let _ = ctx.stop_signal().recv();
                Ok(())
            })
            .ready_timeout(DEADLINE),
        )
        .start()
        .unwrap();
    // start() returned, so both called ready(), in order.
    assert_eq!(*log.lock(), ["db ready", "web running"]);
    sup.shutdown().unwrap();
}

#[test]
fn invalid_specs_are_refused_before_anything_starts() {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let spy = move || {
        let s = s.clone();
        ChildSpec::worker("spy", move |_| {
            s.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let dup = Supervisor::builder().child(spy()).child(spy()).start();
    assert!(matches!(dup, Err(StartError::InvalidSpec(m)) if m.contains("duplicate")));
    let empty = Supervisor::builder().child(idle("  ")).start();
    assert!(matches!(empty, Err(StartError::InvalidSpec(_))));
    let zero = Supervisor::builder()
        .intensity(1, Duration::ZERO)
        .child(spy())
        .start();
    assert!(matches!(zero, Err(StartError::InvalidSpec(m)) if m.contains("period")));
    assert!(!started.load(Ordering::SeqCst));
}

#[test]
fn start_child_failure_is_an_error_and_keeps_no_spec() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let err = sup
        .start_child(ChildSpec::worker("bad", |_| Err("nope".into())).ready_timeout(DEADLINE))
        .unwrap_err();
    assert!(matches!(
        err,
        SupervisorError::StartFailed(StartError::ChildExited { ref id, .. }) if id == "bad"
    ));
    assert_eq!(sup.count_children().unwrap().specs, 1);
    assert!(matches!(
        sup.start_child(idle("")),
        Err(SupervisorError::InvalidSpec(_))
    ));
    sup.shutdown().unwrap();
}

#[test]
fn a_taken_name_fails_the_start() {
    let first = Supervisor::builder()
        .name("start_failure::unique")
        .child(idle("a"))
        .start()
        .unwrap();
    let err = Supervisor::builder()
        .name("start_failure::unique")
        .child(idle("a"))
        .start()
        .unwrap_err();
    assert!(
        matches!(err, StartError::NameTaken { ref holder, .. } if *holder == first.pid()),
        "{err:?}"
    );
    drop(first);
    // The name went with the first supervisor: it can be taken again at once.
    let again = Supervisor::builder()
        .name("start_failure::unique")
        .start()
        .unwrap();
    again.shutdown().unwrap();
}

/// Threads of this test binary whose name is `name`.
fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// `start` runs the supervisor's start on the caller's thread, which waits for it anyway,
/// but as the new supervisor: `on_start` sees its pid, its name is its own, and the caller
/// is itself again afterwards.
#[test]
fn a_start_runs_as_the_new_supervisor_and_leaves_the_caller_as_it_was() {
    let caller = Pid::current();
    let (seen_tx, seen) = unbounded();
    let sup = Supervisor::builder()
        .name("sf-as-itself")
        .on_start(move |me| {
            seen_tx.send((Pid::current(), me.pid())).unwrap();
            Ok(())
        })
        .child(idle("w"))
        .start()
        .unwrap();
    assert_eq!(Pid::current(), caller, "the caller is itself again");
    let (current, me) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!((current, me), (sup.pid(), sup.pid()));
    let (named, _) = registry().lookup("sf-as-itself").expect("registered");
    assert_eq!(named, sup.pid());
    // Its own thread serves (it may still be starting up when `start` returns).
    steadfast::wait::until(DEADLINE, || threads_named("sf-as-itself") == 1)
        .expect("one thread of that name serves");
    sup.shutdown().unwrap();
}

/// A start that fails on the caller's thread (`on_start` refusing, or panicking) fails
/// `start` with why, and leaves no pid, no name and no thread behind.
#[test]
fn a_failed_on_start_fails_the_start_and_leaves_nothing_behind() {
    let (pid_tx, pids) = unbounded();
    let tx = pid_tx.clone();
    let err = Supervisor::builder()
        .name("sf-refuses")
        .on_start(move |me| {
            tx.send(me.pid()).unwrap();
            Err(StartError::InvalidSpec("not today".into()))
        })
        .child(idle("never"))
        .start()
        .unwrap_err();
    assert!(
        matches!(&err, StartError::InvalidSpec(m) if m == "not today"),
        "{err:?}"
    );
    let pid = pids.recv_timeout(DEADLINE).unwrap();
    assert!(!pid.is_alive());
    assert!(registry().lookup("sf-refuses").is_none());
    // Joined before `start` returned; the kernel wakes a join before it reaps the
    // thread, so /proc may list it a moment longer.
    steadfast::wait::until(DEADLINE, || threads_named("sf-refuses") == 0)
        .expect("no thread of that name left");

    let err = Supervisor::builder()
        .name("sf-panics")
        .on_start(move |me| {
            pid_tx.send(me.pid()).unwrap();
            panic!("on_start broke")
        })
        .start()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StartError::ChildExited { reason: ExitReason::Panicked(m), .. }
                if m.contains("on_start broke")
        ),
        "{err:?}"
    );
    let pid = pids.recv_timeout(DEADLINE).unwrap();
    assert!(!pid.is_alive());
    assert!(registry().lookup("sf-panics").is_none());
    // Joined before `start` returned; the kernel wakes a join before it reaps the
    // thread, so /proc may list it a moment longer.
    steadfast::wait::until(DEADLINE, || threads_named("sf-panics") == 0)
        .expect("no thread of that name left");
}

/// Starts nest: a supervisor started from another's `on_start` starts as itself, and the
/// outer one is itself again afterwards, on the same thread.
#[test]
fn a_start_inside_another_start_restores_the_outer_supervisor() {
    let (seen_tx, seen) = unbounded();
    let (inner_tx, inner) = unbounded();
    let outer = Supervisor::builder()
        .on_start(move |me| {
            let before = Pid::current();
            let seen_inner = seen_tx.clone();
            let sup = Supervisor::builder()
                .on_start(move |inner| {
                    seen_inner
                        .send(("inner", Pid::current(), inner.pid()))
                        .unwrap();
                    Ok(())
                })
                .child(idle("w"))
                .start()?;
            seen_tx.send(("outer before", before, me.pid())).unwrap();
            seen_tx
                .send(("outer after", Pid::current(), me.pid()))
                .unwrap();
            inner_tx.send(sup).unwrap();
            Ok(())
        })
        .child(idle("w"))
        .start()
        .unwrap();
    let inner = inner.recv_timeout(DEADLINE).unwrap();
    for _ in 0..3 {
        let (what, current, me) = seen.recv_timeout(DEADLINE).unwrap();
        assert_eq!(current, me, "{what}");
    }
    inner.shutdown().unwrap();
    outer.shutdown().unwrap();
}
