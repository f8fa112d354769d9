//! The tree at a glance: snapshots of a nested tree, taken while children crash and come
//! and go, are coherent per supervisor; the per-child counters are exact once quiet.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use steadfast::channel::{unbounded, Receiver, Sender};
use steadfast::tree::Node;
use steadfast::{
    ChildKind, ChildSpec, ChildStatus, DynamicSupervisor, DynamicSupervisorRef, ExitReason,
    Supervisor,
};

/// A child that reports each start and panics on command.
fn crashing(id: &str) -> (ChildSpec, Sender<()>, Receiver<()>) {
    let (cmd_tx, cmd) = unbounded::<()>();
    let (up_tx, up) = unbounded();
    let spec = ChildSpec::worker(id, move |ctx| {
        up_tx.send(()).unwrap();
        ctx.recv(&cmd)?;
        panic!("told to crash")
    });
    (spec, cmd_tx, up)
}

/// What must hold of every supervisor's part of any snapshot.
fn check(node: &Node) {
    if node.kind == ChildKind::Supervisor && node.pid.is_some() {
        for child in &node.children {
            let running = child.status == ChildStatus::Running;
            assert_eq!(child.pid.is_some(), running, "{child:?}");
            assert_eq!(child.uptime.is_some(), running, "{child:?}");
            if child.restarts > 0 {
                assert!(child.last_exit.is_some(), "{child:?}");
            }
            check(child);
        }
    }
}

#[test]
fn snapshots_during_crashes_and_churn_are_coherent_and_the_counts_exact_after() {
    const CRASHES: usize = 150;
    let (a, a_cmd, a_up) = crashing("a");
    let (b, b_cmd, b_up) = crashing("b");
    let app = Supervisor::builder()
        .name("tree::app")
        .intensity(10_000, Duration::from_secs(60))
        .child(a)
        .child(ChildSpec::supervisor(
            "inner",
            Supervisor::builder()
                .intensity(10_000, Duration::from_secs(60))
                .child(idle("x"))
                .child(b),
        ))
        .child(ChildSpec::supervisor(
            "pool",
            DynamicSupervisor::builder().name("tree::pool"),
        ))
        .start()
        .unwrap();
    a_up.recv_timeout(DEADLINE).unwrap();
    b_up.recv_timeout(DEADLINE).unwrap();
    let (_, pool) = steadfast::registry()
        .lookup_as::<DynamicSupervisorRef>("tree::pool")
        .unwrap();

    // Crashes in two supervisors and churn in a third, while snapshots are taken.
    let done = Arc::new(AtomicBool::new(false));
    let storm = {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..CRASHES {
                a_cmd.send(()).unwrap();
                b_cmd.send(()).unwrap();
                a_up.recv_timeout(DEADLINE).unwrap();
                b_up.recv_timeout(DEADLINE).unwrap();
                let pid = pool.start_child(idle("job")).unwrap();
                pool.terminate_child(pid).unwrap();
            }
            done.store(true, Ordering::SeqCst);
            // Kept alive: a closed command channel would make them fail in a loop.
            (a_cmd, b_cmd)
        })
    };
    let mut last_restarts: HashMap<String, u64> = HashMap::new();
    let mut taken = 0;
    while !done.load(Ordering::SeqCst) || taken < 10 {
        let tree = app.snapshot().unwrap();
        check(&tree.root);
        assert_eq!(tree.root.children.len(), 3);
        // Restarts never go backwards between snapshots.
        for node in tree.root.iter().filter(|n| n.kind == ChildKind::Worker) {
            let seen = last_restarts.entry(node.id.clone()).or_default();
            assert!(node.restarts >= *seen, "{node:?}");
            *seen = node.restarts;
        }
        let text = tree.to_string();
        assert!(text.starts_with("tree::app <"), "{text}");
        for id in ["a", "inner", "x", "b", "pool"] {
            assert!(
                text.contains(&format!("── {id}  ")),
                "{id} missing from\n{text}"
            );
        }
        taken += 1;
    }
    let _commands = storm.join().unwrap();

    // Quiet now: the counters are exact.
    let tree = app.snapshot().unwrap();
    let find = |id: &str| tree.root.iter().find(|n| n.id == id).unwrap().clone();
    for id in ["a", "b"] {
        let node = find(id);
        assert_eq!(node.restarts, CRASHES as u64, "{node:?}");
        assert_eq!(
            node.last_exit,
            Some(ExitReason::Panicked("told to crash".into()))
        );
        assert_eq!(node.status, ChildStatus::Running);
    }
    assert_eq!(find("x").restarts, 0);
    assert_eq!(find("x").last_exit, None);
    assert!(find("pool").children.is_empty());
    let info = app.which_children().unwrap();
    assert_eq!(info[0].restarts, CRASHES as u64);
    assert!(info[0].started_at.is_some());
    drop(app);
}

#[test]
fn a_stopped_child_shows_its_last_exit_and_no_uptime() {
    let app = Supervisor::builder().child(idle("w")).start().unwrap();
    app.terminate_child("w").unwrap();
    let tree = app.snapshot().unwrap();
    let w = &tree.root.children[0];
    assert_eq!(
        (w.status, w.pid, w.uptime),
        (ChildStatus::Stopped, None, None)
    );
    assert_eq!(w.last_exit, Some(ExitReason::Shutdown));
    assert!(
        tree.to_string()
            .contains("w  worker stopped (last: shutdown)"),
        "{tree}"
    );
}

#[test]
fn health_is_ready_only_while_every_root_child_runs_and_live_while_the_root_answers() {
    use steadfast::service::health;
    use steadfast::{Backoff, Shutdown};
    let (flaky, crash, _up) = crashing("flaky");
    let (stuck_tx, stuck_rx) = unbounded::<()>();
    let app = Supervisor::builder()
        .child(flaky.backoff(Backoff::fixed(Duration::from_secs(120))))
        .child(
            ChildSpec::worker("deaf", move |_ctx| {
                // Ignores its stop until told: keeps its supervisor busy stopping it.
                let _ = stuck_rx.recv();
                Ok(())
            })
            .shutdown(Shutdown::Timeout(Duration::from_secs(120))),
        )
        .start()
        .unwrap();
    let root = app.handle();
    let h = health(&root, DEADLINE);
    assert!(h.live && h.ready, "{h:?}");
    // A child waiting out its backoff: live, not ready.
    let events = app.events().unwrap();
    crash.send(()).unwrap();
    loop {
        if let steadfast::Event::RestartScheduled { .. } = next(&events) {
            break;
        }
    }
    let h = health(&root, DEADLINE);
    assert!(h.live && !h.ready, "{h:?}");
    // The root busy stopping a child that does not stop: not live (no answer in time).
    let stopper = {
        let root = root.clone();
        std::thread::spawn(move || root.terminate_child("deaf"))
    };
    steadfast::wait::until(DEADLINE, || !health(&root, Duration::from_millis(50)).live).unwrap();
    stuck_tx.send(()).unwrap();
    stopper.join().unwrap().unwrap();
    assert!(health(&root, DEADLINE).live);
}
