//! The test kit (`steadfast::testing`) on its own: expectations that wait, their failure
//! messages (which list what did arrive), and the checks a test tree makes when dropped.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use crossbeam_channel::unbounded;
use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
use steadfast::testing::TestTree;
use steadfast::{registry, ChildSpec, ExitReason, Restart, Shutdown, Supervisor};

/// The panic message of `f`, which must panic.
fn failure(f: impl FnOnce()) -> String {
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("it should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn crashing(id: &str) -> (ChildSpec, crossbeam_channel::Sender<bool>) {
    let (tx, rx) = unbounded::<bool>();
    let spec = ChildSpec::worker(id, move |ctx| {
        if ctx.recv(&rx)? {
            panic!("told to panic");
        }
        Err("told to fail".into())
    });
    (spec, tx)
}

#[test]
fn expectations_wait_for_exits_restarts_and_quiet() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::of(spec);
    let first = tree.expect_started("db");
    crash.send(false).unwrap();
    tree.expect_exit(first, &ExitReason::Failed("told to fail".into()));
    let second = tree.expect_restart("db");
    assert_ne!(first, second);
    assert_eq!(tree.wait_running("db"), second);
    crash.send(true).unwrap();
    assert_eq!(
        tree.expect_crash("db"),
        ExitReason::Panicked("told to panic".into())
    );
    tree.expect_restart("db");
    tree.expect_quiet(Duration::from_millis(20));
}

#[test]
fn a_restart_that_never_comes_fails_with_the_events_that_did() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::start(Supervisor::builder().child(spec.restart(Restart::Temporary)))
        .timeout(Duration::from_millis(200));
    crash.send(false).unwrap();
    let message = failure(|| {
        tree.expect_restart("db");
    });
    assert!(
        message.contains("expected child \"db\" to be restarted within 200ms"),
        "{message}"
    );
    assert!(message.contains("started \"db\" as <0."), "{message}");
    assert!(
        message.contains("exited: failed: told to fail"),
        "{message}"
    );
    drop(tree);
}

#[test]
fn quiet_fails_when_something_happens() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::of(spec);
    tree.expect_started("db");
    crash.send(false).unwrap();
    let message = failure(|| tree.expect_quiet(Duration::from_secs(10)));
    assert!(
        message.contains("expected nothing for 10s, got: \"db\""),
        "{message}"
    );
    tree.expect_restart("db");
}

#[test]
fn a_quiet_window_too_long_for_an_instant_is_forever_not_a_panic() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::of(spec);
    tree.expect_started("db");
    crash.send(false).unwrap();
    // It used to add the window to `Instant::now()` and overflow.
    let message = failure(|| tree.expect_quiet(Duration::MAX));
    assert!(message.contains("expected nothing for"), "{message}");
    tree.expect_restart("db");
}

#[test]
fn a_give_up_is_expected_like_any_event() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::start(
        Supervisor::builder()
            .intensity(1, Duration::from_secs(60))
            .child(spec),
    );
    crash.send(false).unwrap();
    crash.send(false).unwrap();
    assert_eq!(tree.expect_gave_up(), (1, Duration::from_secs(60)));
}

#[test]
fn an_unexpected_panic_fails_the_test_when_the_tree_ends() {
    let (spec, crash) = crashing("db");
    let tree = TestTree::of(spec);
    crash.send(true).unwrap();
    tree.expect("the restart", |e| {
        matches!(e, steadfast::Event::ChildRestarted { .. })
    });
    let message = failure(|| drop(tree));
    assert!(message.contains("child \"db\""), "{message}");
    assert!(
        message.contains("panicked and no expectation saw it: told to panic"),
        "{message}"
    );

    // Allowed, it passes.
    let (spec, crash) = crashing("db");
    let tree = TestTree::of(spec);
    tree.allow_panics();
    crash.send(true).unwrap();
    tree.expect("the restart", |e| {
        matches!(e, steadfast::Event::ChildRestarted { .. })
    });
}

#[test]
fn a_thread_that_outlives_the_tree_fails_the_test() {
    let (release, deaf) = unbounded::<()>();
    let nested = Supervisor::builder().child(
        ChildSpec::worker("deaf", move |_| {
            let _ = deaf.recv();
            Ok(())
        })
        .shutdown(Shutdown::Timeout(Duration::from_millis(10))),
    );
    let tree = TestTree::start(Supervisor::builder().child(ChildSpec::supervisor("inner", nested)));
    tree.wait_running("inner");
    let message = failure(|| drop(tree));
    assert!(
        message.contains("a thread outlived the tree: child \"deaf\""),
        "an abandonment one level down is caught: {message}"
    );
    release.send(()).unwrap();
}

/// A server that takes one token from its gate per call.
struct Gated(crossbeam_channel::Receiver<()>);
impl Serve for Gated {}
impl Handle<u64> for Gated {
    type Reply = ();
    fn handle(&mut self, _: u64, _: &mut ServerContext<'_, Self>) {
        let _ = self.0.recv_timeout(Duration::from_secs(10));
    }
}

#[test]
fn waits_for_names_and_mailboxes() {
    let (gate, tokens) = unbounded();
    let (spec, slow) = ServerSpec::new("slow", move |_| Ok(Gated(tokens.clone())))
        .name("testing-kit-slow")
        .build();
    let tree = TestTree::of(spec);
    tree.wait_registered("testing-kit-slow");
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let slow = slow.clone();
            std::thread::spawn(move || slow.call(0u64))
        })
        .collect();
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    tree.wait_mailbox_empty(&slow);
    for caller in callers {
        caller.join().unwrap().unwrap();
    }
    tree.handle().terminate_child("slow").unwrap();
    tree.wait_unregistered("testing-kit-slow");
    assert!(registry().lookup("testing-kit-slow").is_none());
}

/// A worker that reads its channel through its context, forever: what injected faults
/// act on, without its code knowing.
fn listener(id: &str) -> (ChildSpec, crossbeam_channel::Sender<()>) {
    let (tx, rx) = unbounded::<()>();
    let spec = ChildSpec::worker(id, move |ctx| loop {
        ctx.recv(&rx)?;
    });
    (spec, tx)
}

#[test]
fn an_injected_crash_ends_the_child_with_the_chosen_reason_at_its_next_call() {
    let (spec, poke) = listener("svc");
    let tree = TestTree::of(spec);
    let pid = tree.wait_running("svc");
    tree.crash("svc", ExitReason::Failed("injected".into()));
    poke.send(()).unwrap(); // its next `recv` is where it crashes
    tree.expect_exit(pid, &ExitReason::Failed("injected".into()));
    let next = tree.expect_restart("svc");
    // A panic, too: reported with the chosen message, and expected here.
    tree.crash("svc", ExitReason::Panicked("injected panic".into()));
    poke.send(()).unwrap();
    tree.expect_exit(next, &ExitReason::Panicked("injected panic".into()));
    tree.expect_restart("svc");
}

#[test]
fn a_next_start_can_be_made_to_fail_or_decline() {
    // A child that reports readiness: its restart fails, and is retried.
    let (tx, rx) = unbounded::<()>();
    let spec = ChildSpec::worker("ready", move |ctx| {
        ctx.ready();
        ctx.recv(&rx)?;
        Err("poked".into())
    })
    .ready_timeout(Duration::from_secs(10));
    let tree = TestTree::of(spec);
    tree.fail_next_start("ready", "no database");
    tx.send(()).unwrap();
    tree.expect_crash("ready");
    let failed = tree.expect("the restart to fail", |e| {
        matches!(e, steadfast::Event::RestartFailed { error, .. } if error.contains("no database"))
    });
    assert!(matches!(failed, steadfast::Event::RestartFailed { .. }));
    tree.expect_restart("ready");
    drop(tree);

    // Declined (a child that reports readiness: declining is part of that handshake):
    // `restart_child` says so, the child stays stopped, its spec kept.
    let (_poke, never) = unbounded::<()>();
    let spec = ChildSpec::worker("svc", move |ctx| {
        ctx.ready();
        ctx.recv(&never)?;
        Ok(())
    })
    .ready_timeout(Duration::from_secs(10));
    let tree = TestTree::of(spec);
    tree.wait_running("svc");
    tree.handle().terminate_child("svc").unwrap();
    tree.decline_next_start("svc");
    assert!(matches!(
        tree.handle().restart_child("svc"),
        Err(steadfast::SupervisorError::Ignored)
    ));
    let status = tree.handle().which_children().unwrap()[0].status;
    assert_eq!(status, steadfast::ChildStatus::Stopped);
    assert!(
        tree.handle().restart_child("svc").is_ok(),
        "a later start runs its code"
    );
    tree.wait_running("svc");
}

#[test]
fn a_deafened_child_is_abandoned_by_its_stop_and_released_when_the_tree_ends() {
    let (ended_tx, ended) = unbounded::<()>();
    let (_poke, rx) = unbounded::<()>();
    let spec = ChildSpec::worker("deaf", move |ctx| {
        let result = ctx.recv(&rx).map(drop);
        let _ = ended_tx.send(()); // its thread is about to end
        Ok(result?)
    })
    .shutdown(Shutdown::Timeout(Duration::from_millis(20)));
    let tree = TestTree::of(spec);
    tree.wait_running("deaf");
    tree.deafen_next_start("deaf");
    tree.handle().terminate_child("deaf").unwrap();
    ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the first incarnation hears its stop");
    let pid = tree.handle().restart_child("deaf").unwrap();
    tree.handle().terminate_child("deaf").unwrap();
    tree.expect(
        &format!("{pid} to be abandoned"),
        |e| matches!(e, steadfast::Event::ChildAbandoned { pid: p, .. } if *p == pid),
    );
    tree.expect_exit(pid, &ExitReason::Killed);
    assert!(ended.try_recv().is_err(), "deaf: its stop did not reach it");
    drop(tree); // expected: no failure; its thread is let go
    ended
        .recv_timeout(Duration::from_secs(10))
        .expect("released when the tree ended");
}
