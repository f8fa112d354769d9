//! Shutdown is cooperative: the stop signal, the child's shutdown timeout, then abandonment
//! (reported as `Killed`, names released at once, the tree carries on). Dropping the owning
//! handle shuts the tree down and joins it.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use steadfast::{monitor, ChildSpec, ChildStatus, ExitReason, Registry, Shutdown, Supervisor};

thread_local! {
    /// Dropped when the thread that set it has ended completely (after the runner's last act).
    static ON_THREAD_END: RefCell<Option<Sender<()>>> = const { RefCell::new(None) };
}

/// A child that ignores its stop signal until `release` gets a message; `ended` disconnects
/// once its thread has ended completely. It registers `name` in `reg` first.
fn stubborn(
    id: &str,
    reg: Registry<String, ()>,
    name: &str,
) -> (ChildSpec, Sender<()>, Receiver<()>) {
    let (release_tx, release) = unbounded::<()>();
    let (ended_tx, ended) = bounded::<()>(0);
    let name = name.to_owned();
    // Only the first incarnation's thread holds the sender, so `ended` disconnects when
    // that thread ends and not when the spec is dropped.
    let ended_tx = Mutex::new(Some(ended_tx));
    let spec = ChildSpec::worker(id, move |ctx| {
        let tx = ended_tx.lock().take();
        ON_THREAD_END.with(|g| *g.borrow_mut() = tx);
        reg.register(name.clone(), ()).unwrap();
        ctx.ready();
        let _ = release.recv(); // deaf to the stop signal
        Ok(())
    })
    .ready_timeout(DEADLINE);
    (spec, release_tx, ended)
}

fn assert_thread_ended(ended: &Receiver<()>) {
    assert_eq!(
        ended.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected),
        "the abandoned thread ended"
    );
}

#[test]
fn a_child_ignoring_its_stop_signal_is_abandoned_after_its_timeout() {
    let reg = Registry::new();
    let (spec, release, ended) = stubborn("deaf", reg.clone(), "deaf-name");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(idle("a"))
        .child(spec.shutdown(Shutdown::Timeout(Duration::from_millis(100))))
        .start()
        .unwrap();
    let pid = pid_of(&sup.which_children().unwrap(), "deaf").unwrap();
    let mon = monitor(pid);
    assert!(reg.lookup("deaf-name").is_some());
    let t = Instant::now();
    sup.shutdown().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "it waited the timeout"
    );
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "started a",
            "started deaf",
            "abandoned deaf",
            "exited deaf killed",
            "exited a shutdown",
            "supervisor-stopped"
        ]
    );
    // Abandoned means: reported Killed, no longer alive, names released at once.
    assert_eq!(mon.try_recv(), Ok(ExitReason::Killed));
    assert!(!pid.is_alive());
    assert_eq!(reg.lookup("deaf-name"), None);
    // Let the detached thread go, and see it end.
    release.send(()).unwrap();
    assert_thread_ended(&ended);
}

#[test]
fn terminating_a_deaf_child_abandons_it_and_the_tree_carries_on() {
    let reg = Registry::new();
    let (spec, release, ended) = stubborn("deaf", reg.clone(), "n");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        // Intensity 0: a late exit notice that counted as a crash would kill the tree.
        .intensity(0, Duration::from_secs(60))
        .event_sink(sink)
        .child(spec.shutdown(Shutdown::Timeout(Duration::from_millis(20))))
        .child(idle("b"))
        .start()
        .unwrap();
    briefs_through(&events, "started b");
    sup.terminate_child("deaf").unwrap();
    assert_eq!(
        briefs_through(&events, "exited deaf killed"),
        ["abandoned deaf", "exited deaf killed"]
    );
    assert_eq!(reg.count(), 0);
    // The abandoned thread finally returns; its exit notice is stale and changes nothing.
    release.send(()).unwrap();
    assert_thread_ended(&ended);
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Stopped);
    assert_eq!(children[1].status, ChildStatus::Running);
    assert!(events.try_recv().is_err(), "no restart, no intensity trip");
    // And the child can be started again.
    assert!(sup.restart_child("deaf").is_ok());
    let _ = sup.terminate_child("deaf"); // abandoned again, quickly
    release.send(()).unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn immediate_shutdown_does_not_wait() {
    let reg = Registry::new();
    let (spec, release, ended) = stubborn("busy", reg, "x");
    let sup = Supervisor::builder()
        .child(spec.shutdown(Shutdown::Immediate))
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    let t = Instant::now();
    sup.shutdown().unwrap();
    assert!(t.elapsed() < DEADLINE);
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        ["abandoned busy", "exited busy killed", "supervisor-stopped"]
    );
    release.send(()).unwrap();
    assert_thread_ended(&ended);
}

#[test]
fn infinity_waits_for_a_slow_child_to_finish() {
    let (go_tx, go) = unbounded::<()>();
    let (stopping_tx, stopping) = unbounded::<()>();
    let sup = Supervisor::builder()
        .child(
            ChildSpec::worker("slow", move |ctx| {
                let _ = ctx.stop_signal().recv();
                stopping_tx.send(()).unwrap();
                go.recv().unwrap(); // clean-up that takes as long as the test says
                Ok(())
            })
            .shutdown(Shutdown::Infinity),
        )
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    let mon = monitor(pid);
    let joiner = std::thread::spawn(move || sup.shutdown());
    stopping.recv_timeout(DEADLINE).unwrap();
    assert!(mon.try_recv().is_err(), "still finishing");
    go_tx.send(()).unwrap();
    joiner.join().unwrap().unwrap();
    assert_eq!(mon.try_recv(), Ok(ExitReason::Shutdown));
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        ["exited slow shutdown", "supervisor-stopped"]
    );
}

#[test]
fn dropping_the_supervisor_stops_and_joins_every_child() {
    let sup = Supervisor::builder()
        .child(idle("a"))
        .child(idle("b"))
        .start()
        .unwrap();
    let monitors: Vec<_> = sup
        .which_children()
        .unwrap()
        .iter()
        .map(|c| monitor(c.pid.unwrap()))
        .collect();
    let sup_mon = monitor(sup.pid());
    drop(sup);
    for m in monitors {
        assert_eq!(
            m.try_recv(),
            Ok(ExitReason::Shutdown),
            "exited before drop returned"
        );
    }
    assert_eq!(sup_mon.try_recv(), Ok(ExitReason::Shutdown));
}

#[test]
fn a_child_returning_ok_when_stopped_exits_with_shutdown_and_is_not_restarted() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let events = sup.events().unwrap();
    sup.terminate_child("a").unwrap();
    assert_eq!(brief(&next(&events)), "exited a shutdown");
    assert_eq!(
        sup.which_children().unwrap()[0].status,
        ChildStatus::Stopped
    );
    assert!(events.try_recv().is_err());
    sup.shutdown().unwrap();
}
