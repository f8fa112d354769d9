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
