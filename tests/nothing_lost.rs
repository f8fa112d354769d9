//! Nothing lost: exits, hand-overs, restart notices and threads raced against waits,
//! stops and subscribers, and extreme input. Each test forces the window where it can (a
//! child that holds its supervisor in a wait, a gate channel), or loops the natural race a
//! bounded number of times.

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use crossbeam_channel::{bounded, unbounded};
use steadfast::{
    monitor, ChildSpec, DynamicSupervisor, ExitReason, Pid, Restart, Shutdown, StartError,
    Supervisor, SupervisorError,
};

/// A worker that, once asked to stop, says so on `stopping` and runs `then` before it
/// returns: it holds its supervisor in the wait for its exit for as long as `then` takes.
fn holds_its_stop(
    id: &str,
    stopping: crossbeam_channel::Sender<()>,
    then: impl Fn() + Send + Sync + 'static,
) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        let _ = ctx.stop_signal().recv();
        let _ = stopping.send(());
        then();
        Ok(())
    })
    .shutdown(Shutdown::Infinity)
}

/// `slow`: once asked to stop, says so on `stopping`, waits for `go`, then shuts its own
/// tree down from inside with the owner it is handed on `owner` (so that the tree's stop
/// is raised while its supervisor still waits for `slow`).
fn slow_then_shutdown<O: Send + 'static>(
    stopping: crossbeam_channel::Sender<()>,
    go: crossbeam_channel::Receiver<()>,
    owner: crossbeam_channel::Receiver<O>,
    shutdown: fn(O),
) -> ChildSpec {
    holds_its_stop("slow", stopping, move || {
        let _ = go.recv_timeout(DEADLINE);
        if let Ok(owner) = owner.try_recv() {
            shutdown(owner);
        }
    })
}

/// Defect 1: a sibling's exit that arrives while the supervisor waits in a
/// `terminate_child` stays queued; the shutdown raised next reads it, instead of
/// abandoning that sibling after its timeout (or, with `Infinity`, hanging).
#[test]
fn an_exit_that_arrives_during_a_wait_survives_a_shutdown_raised_next() {
    let (sibling, sibling_cmd) = controlled("sibling");
    let sibling = sibling
        .restart(Restart::Transient)
        .shutdown(Shutdown::Timeout(Duration::from_secs(2)));
    let (stopping_tx, stopping) = unbounded();
    let (owner_tx, owner_rx) = bounded::<Supervisor>(1);
    let (go_tx, go) = unbounded::<()>();
    // `slow`, being terminated, shuts the tree down once the sibling has exited.
    let slow = slow_then_shutdown(stopping_tx, go, owner_rx, |o: Supervisor| {
        let _ = o.shutdown();
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(sibling)
        .child(slow)
        .start()
        .unwrap();
    let sup_pid = sup.pid();
    let handle = sup.handle();
    let sibling_pid = pid_of(&handle.which_children().unwrap(), "sibling").unwrap();
    owner_tx.send(sup).unwrap();
    let terminator = thread::spawn(move || handle.terminate_child("slow"));
    stopping.recv_timeout(DEADLINE).unwrap();
    let sibling_exit = monitor(sibling_pid);
    sibling_cmd.send(Cmd::Return).unwrap();
    assert_eq!(
        sibling_exit.recv_timeout(DEADLINE).unwrap(),
        ExitReason::Normal
    );
    go_tx.send(()).unwrap();
    let _ = terminator.join().unwrap();
    monitor(sup_pid).recv_timeout(DEADLINE).unwrap();
    let seen = briefs_through(&events, "supervisor-stopped");
    assert!(
        seen.contains(&"exited sibling normal".to_string()),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|e| e.contains("abandoned")), "{seen:?}");
}

/// Defect 2: a dynamic child handed over while the supervisor waits in a
/// `terminate_child` is stopped by the shutdown that follows.
#[test]
fn a_child_handed_over_during_a_wait_is_stopped_by_the_shutdown() {
    let (stopping_tx, stopping) = unbounded();
    let (owner_tx, owner_rx) = bounded::<DynamicSupervisor>(1);
    let (go_tx, go) = unbounded::<()>();
    let slow = slow_then_shutdown(stopping_tx, go, owner_rx, |o: DynamicSupervisor| {
        let _ = o.shutdown();
    });
    let (sink, events) = unbounded();
    let sup = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    let sup_pid = sup.pid();
    let handle = sup.handle();
    let slow_pid = sup.start_child(slow).unwrap();
    owner_tx.send(sup).unwrap();
    let h = handle.clone();
    let terminator = thread::spawn(move || h.terminate_child(slow_pid));
    stopping.recv_timeout(DEADLINE).unwrap();
    // Handed over while the supervisor waits for `slow`.
    let (saw_stop_tx, saw_stop) = unbounded();
    let late = ChildSpec::worker("late", move |ctx| {
        let _ = ctx.stop_signal().recv();
        let _ = saw_stop_tx.send(());
        Ok(())
    });
    let late_pid = handle.start_child(late).unwrap();
    go_tx.send(()).unwrap();
    let _ = terminator.join().unwrap();
    saw_stop
        .recv_timeout(DEADLINE)
        .expect("the hand-over was stopped");
    monitor(sup_pid).recv_timeout(DEADLINE).unwrap();
    let seen = briefs_through(&events, "supervisor-stopped");
    assert!(seen.contains(&"started late".to_string()), "{seen:?}");
    assert!(
        seen.contains(&"exited late shutdown".to_string()),
        "{seen:?}"
    );
    assert!(!late_pid.is_alive());
}

/// Defect 3: subscribers that come and go while a child restarts itself in bursts do
/// not make the supervisor lose track of it.
#[test]
fn subscribers_leaving_during_crash_bursts_lose_no_child() {
    let (pids_tx, pids) = unbounded::<Pid>();
    let (cmd_tx, cmd_rx) = unbounded::<()>();
    let burst = Arc::new(AtomicUsize::new(0));
    let left = burst.clone();
    let child = ChildSpec::worker("c", move |ctx| {
        let crash_now = left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if crash_now {
            return Err("burst".into());
        }
        pids_tx.send(ctx.pid()).unwrap();
        ctx.recv(&cmd_rx)?;
        Err("crash".into())
    });
    let sup = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(child)
        .start()
        .unwrap();
    let mut last = pids.recv_timeout(DEADLINE).unwrap();
    for round in 0..300 {
        let events = sup.events().unwrap();
        burst.store(round % 7 + 1, Ordering::SeqCst);
        cmd_tx.send(()).unwrap();
        // The subscriber leaves in the middle of the burst.
        if round % 2 == 0 {
            let _ = events.recv_timeout(DEADLINE);
        }
        drop(events);
        last = pids.recv_timeout(DEADLINE).unwrap();
    }
    steadfast::wait::until(DEADLINE, || {
        pid_of(&sup.which_children().unwrap(), "c") == Some(last)
    })
    .unwrap_or_else(|e| panic!("{e}: listed {:?}, running {last}", sup.which_children()));
    // And its next crash is still seen and answered.
    cmd_tx.send(()).unwrap();
    let next = pids.recv_timeout(DEADLINE).unwrap();
    steadfast::wait::until(DEADLINE, || {
        pid_of(&sup.which_children().unwrap(), "c") == Some(next)
    })
    .unwrap();
    sup.shutdown().unwrap();
}

/// Defect 5: durations too large for an `Instant` mean "as long as it takes", never a
/// panic inside the library.
#[test]
fn huge_durations_mean_no_deadline() {
    let (got_tx, got) = unbounded();
    let (tx, rx) = unbounded::<u32>();
    let waiter = ChildSpec::worker("waiter", move |ctx| {
        let n = ctx.recv_timeout(&rx, Duration::MAX)?;
        got_tx.send(n).unwrap();
        ctx.sleep(Duration::MAX)?;
        Ok(())
    })
    .shutdown(Shutdown::Timeout(Duration::MAX));
    let ready = ChildSpec::worker("ready", |ctx| {
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(Duration::MAX)
    .shutdown(Shutdown::Timeout(Duration::MAX));
    let sup = Supervisor::builder()
        .intensity(1, Duration::MAX)
        .child(waiter)
        .child(ready.clone())
        .start()
        .unwrap();
    tx.send(7).unwrap();
    assert_eq!(got.recv_timeout(DEADLINE).unwrap(), 7);
    sup.terminate_child("waiter").unwrap();
    sup.restart_child("waiter").unwrap();
    assert!(steadfast::wait::until(Duration::MAX, || true).is_ok());

    let pool = DynamicSupervisor::builder()
        .intensity(1, Duration::MAX)
        .start()
        .unwrap();
    let pid = pool.start_child(ready).unwrap();
    pool.terminate_child(pid).unwrap();
    pool.start_child(idle("x").shutdown(Shutdown::Timeout(Duration::MAX)))
        .unwrap();
    pool.shutdown().unwrap();
    sup.shutdown().unwrap();
}

/// Defect 6: a NUL byte in a child id or a supervisor name is refused as invalid before
/// anything is reserved, never a panic.
#[test]
fn nul_bytes_in_ids_and_names_are_invalid_specs() {
    let err = Supervisor::builder().name("x\0y").start().unwrap_err();
    assert!(matches!(err, StartError::InvalidSpec(_)), "{err:?}");
    let err = Supervisor::builder()
        .child(idle("a\0b"))
        .start()
        .unwrap_err();
    assert!(matches!(err, StartError::InvalidSpec(_)), "{err:?}");
    let err = DynamicSupervisor::builder()
        .name("p\0")
        .start()
        .unwrap_err();
    assert!(matches!(err, StartError::InvalidSpec(_)), "{err:?}");

    let sup = Supervisor::builder().child(idle("ok")).start().unwrap();
    let err = sup.start_child(idle("a\0b")).unwrap_err();
    assert!(matches!(err, SupervisorError::InvalidSpec(_)), "{err:?}");
    assert_eq!(sup.count_children().unwrap().active, 1, "still serving");

    let pool = DynamicSupervisor::builder()
        .max_children(1)
        .start()
        .unwrap();
    for _ in 0..3 {
        let err = pool.start_child(idle("a\0b")).unwrap_err();
        assert!(matches!(err, SupervisorError::InvalidSpec(_)), "{err:?}");
    }
    pool.start_child(idle("fits")).expect("no place was leaked");
    pool.shutdown().unwrap();
    sup.shutdown().unwrap();
}

/// Defect 7 (docs and code agree): a dynamic supervisor awaits a restarted readiness
/// child, as OTP's restarts await `init`; the child's questions are answered meanwhile and
/// its other requests fail with `WouldDeadlock` instead of deadlocking.
#[test]
fn a_restarted_readiness_child_is_awaited_and_not_deadlocked() {
    let (answers_tx, answers) = unbounded();
    let incarnation = Arc::new(AtomicUsize::new(0));
    let (sup_tx, sup_rx) = bounded::<steadfast::DynamicSupervisorRef>(1);
    let sup_slot = Arc::new(parking_lot::Mutex::new(None));
    let slot = sup_slot.clone();
    let child = ChildSpec::worker("r", move |ctx| {
        let n = incarnation.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            *slot.lock() = sup_rx.recv_timeout(DEADLINE).ok();
            ctx.ready();
            return Err("first incarnation crashes".into());
        }
        let sup = slot.lock().clone().unwrap();
        let counts = sup.count_children();
        let terminate = sup.terminate_child(Pid::current());
        answers_tx.send((counts.is_ok(), terminate)).unwrap();
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE);
    let (sink, events) = unbounded();
    let pool = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    sup_tx.send(pool.handle()).unwrap();
    pool.start_child(child).unwrap();
    let (counted, terminate) = answers.recv_timeout(DEADLINE).unwrap();
    assert!(counted, "a question is answered during the wait");
    assert!(
        matches!(terminate, Err(SupervisorError::WouldDeadlock)),
        "{terminate:?}"
    );
    briefs_through(&events, "restarted r");
    pool.shutdown().unwrap();
}

/// Defect 10: a child that exits right after `ready()` is not lost: its exit is read
/// after it is in the table, and it is restarted.
#[test]
fn an_exit_right_after_ready_is_not_lost() {
    const CRASHES: usize = 1_500;
    let (pids_tx, pids) = unbounded::<Pid>();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let child = ChildSpec::worker("r", move |ctx| {
        pids_tx.send(ctx.pid()).unwrap();
        ctx.ready();
        if c.fetch_add(1, Ordering::SeqCst) < CRASHES {
            return Err("right after ready".into());
        }
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE);
    let sup = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(child)
        .start()
        .unwrap();
    let mut last = pids.recv_timeout(DEADLINE).unwrap();
    for _ in 0..CRASHES {
        last = pids
            .recv_timeout(DEADLINE)
            .expect("every exit after ready() is answered with a restart");
    }
    steadfast::wait::until(DEADLINE, || {
        pid_of(&sup.which_children().unwrap(), "r") == Some(last)
    })
    .unwrap();
    assert!(last.is_alive());
    sup.shutdown().unwrap();
}

/// Defect 11: in a dynamic shutdown each child has its own deadline from the stop; a
/// child still running past it is abandoned and reported `Killed`, even when it comes
/// after a slower, patient sibling in start order.
#[test]
fn a_late_dynamic_child_is_abandoned_at_its_own_deadline() {
    let (gate_tx, gate) = unbounded::<()>();
    let g = gate.clone();
    let patient = ChildSpec::worker("patient", move |ctx| {
        let _ = ctx.stop_signal().recv();
        let _ = g.recv_timeout(DEADLINE);
        Ok(())
    })
    .shutdown(Shutdown::Infinity);
    let late = ChildSpec::worker("late", move |_ctx| {
        // Deaf to its stop until the gate opens.
        let _ = gate.recv_timeout(DEADLINE);
        Ok(())
    })
    .shutdown(Shutdown::Timeout(Duration::from_millis(50)));
    let (sink, events) = unbounded();
    let pool = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    pool.start_child(patient).unwrap();
    pool.start_child(late).unwrap();
    let stopper = thread::spawn(move || pool.shutdown());
    // The late child is given up on at its deadline, while `patient` still stops.
    let seen = briefs_through(&events, "abandoned late");
    gate_tx.send(()).unwrap();
    gate_tx.send(()).unwrap();
    stopper.join().unwrap().unwrap();
    let rest = briefs_through(&events, "supervisor-stopped");
    let all: Vec<String> = seen.into_iter().chain(rest).collect();
    assert!(all.contains(&"exited late killed".to_string()), "{all:?}");
    assert!(
        all.contains(&"exited patient shutdown".to_string()),
        "{all:?}"
    );
}

thread_local! {
    static ENDED: RefCell<Option<Ended>> = const { RefCell::new(None) };
}

/// Counts a thread's end: dropped with the thread's locals, after its function returned.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn mark_thread(ended: &Arc<AtomicUsize>) {
    ENDED.with(|e| *e.borrow_mut() = Some(Ended(ended.clone())));
}

/// Defect 12: a dynamic start that fails while the caller awaits readiness returns only
/// once the thread it started has ended (its thread-locals dropped).
#[test]
fn a_failed_dynamic_start_returns_after_its_thread_has_ended() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    for round in 0..200 {
        let ended = Arc::new(AtomicUsize::new(0));
        let e = ended.clone();
        let early = ChildSpec::worker("early", move |_| {
            mark_thread(&e);
            Err("no config".into())
        })
        .ready_timeout(DEADLINE);
        assert!(pool.start_child(early).is_err());
        assert_eq!(ended.load(Ordering::SeqCst), 1, "early, round {round}");

        let e = ended.clone();
        let nested = ChildSpec::supervisor(
            "inner",
            Supervisor::builder().child(
                ChildSpec::worker("x", move |_| {
                    mark_thread(&e);
                    Err("no".into())
                })
                .ready_timeout(DEADLINE),
            ),
        );
        assert!(pool.start_child(nested).is_err());
        assert_eq!(ended.load(Ordering::SeqCst), 2, "nested, round {round}");

        if round % 20 == 0 {
            let e = ended.clone();
            let late = ChildSpec::worker("late", move |ctx| {
                mark_thread(&e);
                let _ = ctx.stop_signal().recv();
                Ok(())
            })
            .ready_timeout(Duration::from_millis(5));
            assert!(pool.start_child(late).is_err());
            assert_eq!(ended.load(Ordering::SeqCst), 3, "late, round {round}");
        }
    }
    assert_eq!(pool.count_children().unwrap().specs, 0);
    pool.shutdown().unwrap();
}
