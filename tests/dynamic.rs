//! Dynamic supervisors: children started and stopped at run time, a child limit that
//! counts restarting children, concurrent shutdown.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{
    registry, ChildSpec, ChildStatus, DynamicSupervisor, DynamicSupervisorRef, ExitReason, Pid,
    Restart, Shutdown, StartError, Supervisor, SupervisorError, SupervisorRef,
};

#[test]
fn start_child_returns_its_pid_and_children_are_listed_in_start_order() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let a = sup.start_child(idle("job")).unwrap();
    let b = sup.start_child(idle("job")).unwrap();
    let children = sup.which_children().unwrap();
    let pids: Vec<_> = children.iter().map(|c| c.pid.unwrap()).collect();
    assert_eq!(pids, [a, b], "ids need not be unique");
    assert_eq!(sup.count_children().unwrap().active, 2);
    sup.shutdown().unwrap();
}

#[test]
fn terminate_child_is_not_found_for_unknown_finished_or_terminated_pids() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let pid = sup.start_child(idle("job")).unwrap();
    sup.terminate_child(pid).unwrap();
    assert!(!pid.is_alive());
    assert!(matches!(
        sup.terminate_child(pid),
        Err(SupervisorError::NotFound)
    ));
    assert!(matches!(
        sup.terminate_child(steadfast::Pid::current()),
        Err(SupervisorError::NotFound)
    ));
    // A temporary child that finished on its own is forgotten too.
    let (spec, tx) = controlled("once");
    let events = sup.events().unwrap();
    let once = sup.start_child(spec.restart(Restart::Temporary)).unwrap();
    tx.send(Cmd::Return).unwrap();
    briefs_through(&events, "exited once normal");
    assert!(matches!(
        sup.terminate_child(once),
        Err(SupervisorError::NotFound)
    ));
    assert_eq!(sup.count_children().unwrap().specs, 0);
    sup.shutdown().unwrap();
}

#[test]
fn crashed_children_are_restarted_with_a_new_pid() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let events = sup.events().unwrap();
    let (spec, tx) = controlled("w");
    let old = sup.start_child(spec).unwrap();
    tx.send(Cmd::Panic("x")).unwrap();
    briefs_through(&events, "restarted w");
    let new = sup.which_children().unwrap()[0].pid.unwrap();
    assert_ne!(old, new);
    assert!(matches!(
        sup.terminate_child(old),
        Err(SupervisorError::NotFound)
    ));
    sup.terminate_child(new).unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn max_children_counts_restarting_children() {
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    let (tx, rx) = unbounded::<()>();
    let flaky = ChildSpec::worker("flaky", move |ctx| {
        if b.load(Ordering::SeqCst) {
            return Err("cannot start".into());
        }
        ctx.ready();
        ctx.recv(&rx)?;
        Err("crash".into())
    })
    .ready_timeout(DEADLINE);
    let sup = DynamicSupervisor::builder()
        .max_children(2)
        .intensity(u32::MAX, Duration::from_secs(1))
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    let old = sup.start_child(flaky).unwrap();
    sup.start_child(idle("other")).unwrap();
    assert!(matches!(
        sup.start_child(idle("third")),
        Err(SupervisorError::MaxChildren)
    ));
    broken.store(true, Ordering::SeqCst);
    tx.send(()).unwrap();
    briefs_through(&events, "restart-failed flaky");
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Restarting);
    assert!(matches!(
        sup.start_child(idle("third")),
        Err(SupervisorError::MaxChildren)
    ));
    // The restarting child is still known by its old pid: terminating it ends the loop
    // and frees its slot.
    sup.terminate_child(old).unwrap();
    assert_eq!(sup.count_children().unwrap().specs, 1);
    sup.start_child(idle("third")).unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn shutdown_stops_children_concurrently() {
    const N: usize = 1_000;
    const CLEANUP: Duration = Duration::from_millis(20);
    let sup = DynamicSupervisor::builder().start().unwrap();
    for _ in 0..N {
        sup.start_child(
            ChildSpec::worker("slow-to-stop", |ctx| {
                let _ = ctx.stop_signal().recv();
                // Simulated clean-up work after the stop signal, not synchronization.
                std::thread::sleep(CLEANUP);
                Ok(())
            })
            .shutdown(Shutdown::Timeout(Duration::from_secs(30))),
        )
        .unwrap();
    }
    let events = sup.events().unwrap();
    let t = Instant::now();
    sup.shutdown().unwrap();
    let took = t.elapsed();
    // One at a time this would take N × 20 ms = 20 s (and the timeouts sum to 8 hours).
    assert!(took < CLEANUP * N as u32 / 4, "took {took:?}");
    let exits = events
        .iter()
        .filter(|e| brief(e) == "exited slow-to-stop shutdown")
        .count();
    assert_eq!(exits, N);
}

#[test]
fn exceeding_intensity_stops_every_child() {
    let sup = DynamicSupervisor::builder()
        .intensity(0, DEADLINE)
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    let (spec, tx) = controlled("w");
    sup.start_child(spec).unwrap();
    let other = sup.start_child(idle("other")).unwrap();
    tx.send(Cmd::Fail("x")).unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "started w",
            "started other",
            "exited w failed",
            "intensity-exceeded",
            "exited other shutdown",
            "supervisor-stopped"
        ]
    );
    assert!(!other.is_alive());
    assert!(matches!(
        sup.join(),
        Err(SupervisorError::IntensityExceeded { .. })
    ));
}

#[test]
fn a_dynamic_supervisor_under_a_static_one_is_findable() {
    let top = Supervisor::builder()
        .child(ChildSpec::supervisor(
            "pool",
            DynamicSupervisor::builder()
                .name("dynamic::pool")
                .max_children(5),
        ))
        .start()
        .unwrap();
    let (pid, by_name) = registry()
        .lookup_as::<DynamicSupervisorRef>("dynamic::pool")
        .unwrap();
    let row = top.which_children().unwrap().remove(0);
    assert_eq!(row.pid, Some(pid));
    let by_pid = DynamicSupervisorRef::from_pid(pid).unwrap();
    // A dynamic supervisor is not a static one.
    assert!(steadfast::SupervisorRef::from_pid(pid).is_none());
    let child = by_name.start_child(idle("job")).unwrap();
    assert_eq!(by_pid.which_children().unwrap()[0].pid, Some(child));
    top.shutdown().unwrap();
    assert!(!child.is_alive());
    assert!(registry().lookup("dynamic::pool").is_none());
}

#[test]
fn invalid_settings_are_refused() {
    assert!(DynamicSupervisor::builder()
        .intensity(1, Duration::ZERO)
        .start()
        .is_err());
    let sup = DynamicSupervisor::builder()
        .max_children(0)
        .start()
        .unwrap();
    assert!(matches!(
        sup.start_child(idle("x")),
        Err(SupervisorError::MaxChildren)
    ));
    assert!(matches!(
        sup.start_child(idle("")),
        Err(SupervisorError::InvalidSpec(_))
    ));
}

#[test]
fn children_that_exit_at_once_free_their_place_under_the_limit() {
    // A plain worker is spawned by the caller and handed over; one that returns before
    // the supervisor has read the hand-over must still be counted, then forgotten.
    let (sink, events) = unbounded();
    let sup = DynamicSupervisor::builder()
        .max_children(1)
        .event_sink(sink)
        .start()
        .unwrap();
    for _ in 0..50 {
        let pid = sup
            .start_child(ChildSpec::worker("blink", |_| Ok(())).restart(Restart::Temporary))
            .unwrap();
        assert_eq!(
            briefs_through(&events, "exited blink normal"),
            ["started blink", "exited blink normal"]
        );
        assert!(!pid.is_alive());
        // Its place is free again (or, at the latest, once the exit was handled).
        sup.start_child(idle("hold"))
            .map(|p| sup.terminate_child(p))
            .unwrap()
            .unwrap();
        briefs_through(&events, "exited hold shutdown");
    }
    assert_eq!(sup.count_children().unwrap().specs, 0);
    sup.shutdown().unwrap();
}

#[test]
fn a_child_crashing_before_the_supervisor_took_it_in_is_restarted_by_the_supervisor() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = runs.clone();
    let (sink, events) = unbounded();
    let sup = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    let first = sup
        .start_child(ChildSpec::worker("early", move |ctx| {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("at once");
            }
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .unwrap();
    assert_eq!(
        briefs_through(&events, "restarted early"),
        ["started early", "exited early panicked", "restarted early"]
    );
    let now = sup.which_children().unwrap()[0].pid.unwrap();
    assert_ne!(now, first);
    assert!(!first.is_alive());
    // The second incarnation runs (it may not have reached its first line yet).
    steadfast::wait::until(DEADLINE, || runs.load(Ordering::SeqCst) == 2).unwrap();
    assert!(now.is_alive());
    sup.shutdown().unwrap();
}

// ---- children with readiness: started and awaited by the caller -------------------------

/// A worker that tells `running` it runs, waits for `go`, then reports ready and idles.
fn gated(id: &str, running: Sender<Pid>, go: Receiver<()>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        running.send(ctx.pid()).unwrap();
        ctx.recv(&go)?;
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE)
}

#[test]
fn while_a_caller_waits_for_a_child_to_be_ready_the_supervisor_serves_others() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let (running_tx, running) = unbounded();
    let (go, go_rx) = unbounded();
    let handle = sup.handle();
    let starter = std::thread::spawn(move || handle.start_child(gated("slow", running_tx, go_rx)));
    let slow = running.recv_timeout(DEADLINE).unwrap();
    // Not ready yet, so not a child yet; the supervisor is free to start and answer.
    assert_eq!(sup.count_children().unwrap().active, 0);
    let other = sup.start_child(idle("other")).unwrap();
    go.send(()).unwrap();
    assert_eq!(starter.join().unwrap().unwrap(), slow);
    assert_eq!(pids(sup.which_children().unwrap()), [other, slow]);
    sup.shutdown().unwrap();
    assert!(!slow.is_alive());
}

#[test]
fn a_child_that_exits_before_it_is_ready_fails_its_start_and_frees_its_place() {
    let sup = DynamicSupervisor::builder()
        .max_children(1)
        .start()
        .unwrap();
    let err = sup
        .start_child(ChildSpec::worker("bad", |_| Err("no config".into())).ready_timeout(DEADLINE))
        .unwrap_err();
    assert!(matches!(
        err,
        SupervisorError::StartFailed(StartError::ChildExited { ref id, .. }) if id == "bad"
    ));
    let nested = ChildSpec::supervisor(
        "inner",
        Supervisor::builder()
            .child(ChildSpec::worker("x", |_| Err("no".into())).ready_timeout(DEADLINE)),
    );
    assert!(matches!(
        sup.start_child(nested),
        Err(SupervisorError::StartFailed(StartError::Nested { .. }))
    ));
    // The place is free again.
    let pid = sup.start_child(idle("next")).unwrap();
    sup.terminate_child(pid).unwrap();
    assert_eq!(sup.count_children().unwrap().specs, 0);
    sup.shutdown().unwrap();
}

#[test]
fn a_child_not_ready_in_time_is_stopped_or_abandoned_and_its_place_freed() {
    let sup = DynamicSupervisor::builder()
        .max_children(1)
        .start()
        .unwrap();
    // Stops when asked.
    let (running_tx, running) = unbounded();
    let (_go, go_rx) = unbounded::<()>();
    let err = sup
        .start_child(gated("late", running_tx, go_rx).ready_timeout(Duration::from_millis(50)))
        .unwrap_err();
    assert!(matches!(
        err,
        SupervisorError::StartFailed(StartError::ReadyTimeout { ref id, .. }) if id == "late"
    ));
    let late = running.recv_timeout(DEADLINE).unwrap();
    assert!(!late.is_alive(), "stopped before start_child returned");
    // Deaf to its stop: abandoned within its shutdown timeout.
    let (running_tx, running) = unbounded();
    let (release, deaf_rx) = unbounded::<()>();
    let deaf = ChildSpec::worker("deaf", move |ctx| {
        running_tx.send(ctx.pid()).unwrap();
        let _ = deaf_rx.recv(); // not ctx.recv: the stop signal goes unheard
        Ok(())
    })
    .ready_timeout(Duration::from_millis(50))
    .shutdown(Shutdown::Timeout(Duration::from_millis(50)));
    assert!(matches!(
        sup.start_child(deaf),
        Err(SupervisorError::StartFailed(
            StartError::ReadyTimeout { .. }
        ))
    ));
    let deaf = running.recv_timeout(DEADLINE).unwrap();
    assert!(!deaf.is_alive(), "abandoned: its pid is gone");
    drop(release); // let its thread end
                   // Either way the place is free.
    sup.start_child(idle("next")).unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn a_shutdown_while_a_caller_waits_for_readiness_stops_that_child_before_it_returns() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let handle = sup.handle();
    let (running_tx, running) = unbounded();
    let (go, go_rx) = unbounded();
    let h = handle.clone();
    let starter = std::thread::spawn(move || h.start_child(gated("pending", running_tx, go_rx)));
    let pending = running.recv_timeout(DEADLINE).unwrap();
    let stopper = std::thread::spawn(move || sup.shutdown());
    // Once the supervisor no longer takes children, let the pending one become ready.
    steadfast::wait::until(DEADLINE, || {
        matches!(
            handle.start_child(idle("probe")),
            Err(SupervisorError::NoSupervisor)
        )
    })
    .unwrap();
    go.send(()).unwrap();
    assert!(matches!(
        starter.join().unwrap(),
        Err(SupervisorError::NoSupervisor)
    ));
    stopper.join().unwrap().unwrap();
    assert!(!pending.is_alive());
}

#[test]
fn a_child_may_call_its_dynamic_supervisor_before_it_is_ready() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    let handle = sup.handle();
    let eager = ChildSpec::worker("eager", move |ctx| {
        // The caller, not the supervisor, waits for this child: the supervisor serves it.
        let sibling = handle.start_child(idle("sibling"))?;
        assert!(sibling.is_alive());
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE);
    sup.start_child(eager).unwrap();
    assert_eq!(ids(sup.which_children().unwrap()), ["sibling", "eager"]);
    sup.shutdown().unwrap();
}

/// A nested supervisor a caller starts runs its start (`on_start`, its children) on the
/// caller's thread, which waits for it anyway — but as itself: meanwhile the current
/// process is the new supervisor (what `on_start` and its name see), afterwards the
/// caller's own again.
#[test]
fn a_nested_supervisor_started_by_a_caller_starts_as_itself() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let (seen_tx, seen) = unbounded();
    let nested = ChildSpec::supervisor(
        "inner",
        Supervisor::builder()
            .name("dynamic::starts-as-itself")
            .on_start(move |me| {
                seen_tx.send((Pid::current(), me.pid())).unwrap();
                Ok(())
            })
            .child(idle("w")),
    );
    // The caller is itself a process.
    let (out_tx, out) = unbounded();
    let handle = pool.handle();
    let caller = Supervisor::builder()
        .child(ChildSpec::task("caller", move |ctx| {
            let started = handle.start_child(nested);
            out_tx.send((ctx.pid(), Pid::current(), started)).unwrap();
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .start()
        .unwrap();
    let (caller_pid, current_after, started) = out.recv_timeout(DEADLINE).unwrap();
    let pid = started.expect("the nested supervisor starts");
    assert_eq!(current_after, caller_pid, "the caller is itself again");
    let (current_in_start, me) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!((current_in_start, me), (pid, pid));
    let (named, _) = registry()
        .lookup("dynamic::starts-as-itself")
        .expect("registered by name");
    assert_eq!(named, pid);
    let inner = SupervisorRef::from_pid(pid).expect("known by pid");
    assert_eq!(inner.count_children().unwrap().active, 1);
    caller.shutdown().unwrap();
    pool.shutdown().unwrap();
    assert!(!pid.is_alive());
}

/// A nested supervisor whose start fails on the caller's thread ends as it would on its
/// own: the children it had started are stopped, its pid and name are gone, and the
/// error says why — a panic in `on_start` included, which stays off the caller.
#[test]
fn a_nested_supervisor_whose_start_fails_leaves_nothing_behind() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let (pid_tx, pids) = unbounded();
    let panics = ChildSpec::supervisor(
        "inner",
        Supervisor::builder()
            .name("dynamic::start-panics")
            .on_start(move |me| {
                pid_tx.send(me.pid()).unwrap();
                panic!("on_start broke")
            }),
    );
    let err = pool.start_child(panics).unwrap_err();
    assert!(
        matches!(
            &err,
            SupervisorError::StartFailed(StartError::ChildExited {
                reason: ExitReason::Panicked(m),
                ..
            }) if m.contains("on_start broke")
        ),
        "{err:?}"
    );
    let pid = pids.recv_timeout(DEADLINE).unwrap();
    assert!(!pid.is_alive());
    assert!(registry().lookup("dynamic::start-panics").is_none());

    let (started_tx, started) = unbounded();
    let torn_down = Arc::new(AtomicBool::new(false));
    let torn = torn_down.clone();
    let second_fails = ChildSpec::supervisor(
        "inner",
        Supervisor::builder()
            .name("dsf")
            .child(ChildSpec::worker("first", move |ctx| {
                // Its thread ends with a slow tear-down that says when it is done.
                SLOW_TEARDOWN.with(|t| *t.borrow_mut() = Some(SlowTeardown(torn.clone())));
                started_tx.send(ctx.pid()).unwrap();
                let _ = ctx.stop_signal().recv();
                Ok(())
            }))
            .child(
                ChildSpec::worker("second", |_| Err("no config".into())).ready_timeout(DEADLINE),
            ),
    );
    // Started from a process: the threads its failed start stopped are joined (their
    // tear-down over) before `start_child` returns, not left for that process's exit.
    let (out_tx, out) = unbounded();
    let handle = pool.handle();
    let torn = torn_down.clone();
    let caller = Supervisor::builder()
        .child(ChildSpec::task("caller", move |ctx| {
            let err = handle.start_child(second_fails).unwrap_err();
            out_tx.send((err, torn.load(Ordering::Acquire))).unwrap();
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .start()
        .unwrap();
    let (err, joined) = out.recv_timeout(DEADLINE).unwrap();
    assert!(
        matches!(
            &err,
            SupervisorError::StartFailed(StartError::Nested { .. })
        ),
        "{err:?}"
    );
    assert!(joined, "the stopped child's thread was joined");
    let first = started.recv_timeout(DEADLINE).unwrap();
    assert!(
        !first.is_alive(),
        "the child started before the failure was stopped"
    );
    caller.shutdown().unwrap();
    assert!(registry().lookup("dsf").is_none());
    assert_eq!(pool.count_children().unwrap().specs, 0);
    pool.shutdown().unwrap();
}

/// A thread-local whose drop (at its thread's tear-down) takes a while, then says so.
struct SlowTeardown(Arc<AtomicBool>);

impl Drop for SlowTeardown {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(200));
        self.0.store(true, Ordering::Release);
    }
}

thread_local! {
    static SLOW_TEARDOWN: std::cell::RefCell<Option<SlowTeardown>> = const { std::cell::RefCell::new(None) };
}

/// A child's start time is when it started, not when its supervisor got round to
/// reading the news: a dynamic child is handed over by its caller, and a one_for_one
/// worker restarts on its own thread, both telling an unwatched supervisor only when it
/// next looks (here: at the `which_children` call, after the times taken below).
#[test]
fn start_times_are_when_the_child_started_not_when_the_supervisor_looked() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    sup.start_child(idle("handed-over")).unwrap();
    let after_start = std::time::Instant::now();
    let listed = sup.which_children().unwrap();
    let started_at = listed[0].started_at.expect("running");
    assert!(
        started_at <= after_start,
        "stamped when the supervisor looked"
    );
    drop(sup);

    let (began_tx, began) = unbounded();
    let (crash_tx, crash) = unbounded::<()>();
    let sup = steadfast::Supervisor::builder()
        .child(ChildSpec::worker("restarts-itself", move |ctx| {
            began_tx.send(std::time::Instant::now())?;
            ctx.recv(&crash)?;
            Err("crash".into())
        }))
        .start()
        .unwrap();
    began.recv_timeout(DEADLINE).unwrap();
    crash_tx.send(()).unwrap();
    let second = began.recv_timeout(DEADLINE).unwrap();
    let listed = sup.which_children().unwrap();
    assert_eq!(listed[0].restarts, 1);
    assert!(listed[0].started_at.expect("running") <= second);
    sup.shutdown().unwrap();
}
