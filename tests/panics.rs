//! Panics are contained: whatever a child panics with, the supervisor carries on, and each
//! supervised panic is logged once through `log` with the child id and message. (Uses
//! the crate's test kit, `steadfast::testing`, as a user's tests would.)

mod common;

use std::sync::Once;

use common::*;
use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use steadfast::testing::TestTree;
use steadfast::{ChildSpec, ExitReason, Supervisor};

static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LINES
            .lock()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Log lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<(log::Level, String)> {
    LINES
        .lock()
        .iter()
        .filter(|(_, l)| l.contains(needle))
        .cloned()
        .collect()
}

fn crash_once(id: &str, body: impl Fn() + Send + Sync + 'static) -> ExitReason {
    let (go_tx, go) = unbounded::<()>();
    let tree = TestTree::of(
        ChildSpec::worker(id, move |ctx| {
            ctx.recv(&go)?;
            body();
            Ok(())
        })
        .restart(steadfast::Restart::Temporary),
    );
    go_tx.send(()).unwrap();
    let reason = tree.expect_crash(id);
    // The supervisor survived and still answers.
    assert!(tree.handle().which_children().unwrap().is_empty());
    reason
}

#[test]
fn a_panic_is_logged_once_with_child_id_and_message() {
    capture_logs();
    let reason = crash_once("panics::logged-child", || panic!("the unique message 7731"));
    assert_eq!(
        reason,
        ExitReason::Panicked("the unique message 7731".into())
    );
    let lines = lines_with("the unique message 7731");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, log::Level::Error);
    assert!(
        lines[0].1.contains("panics::logged-child"),
        "{}",
        lines[0].1
    );
}

#[test]
fn a_non_string_payload_gets_a_placeholder() {
    let reason = crash_once("non-string", || std::panic::panic_any(42_u64));
    assert_eq!(
        reason,
        ExitReason::Panicked("<non-string panic payload>".into())
    );
}

#[test]
fn a_formatted_panic_message_is_kept() {
    let reason = crash_once("fmt", || panic!("value was {}", 3));
    assert_eq!(reason, ExitReason::Panicked("value was 3".into()));
}

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("payload drop panicked");
        }
    }
}

#[test]
fn a_payload_whose_drop_panics_is_contained() {
    let reason = crash_once("evil-payload", || std::panic::panic_any(PanicsOnDrop));
    assert_eq!(
        reason,
        ExitReason::Panicked("<non-string panic payload>".into())
    );
}

#[test]
fn a_panicking_child_does_not_disturb_its_siblings() {
    let (a, tx) = controlled("a");
    let tree = TestTree::start(Supervisor::builder().child(a).child(idle("b")));
    let b_before = tree.wait_running("b");
    for _ in 0..3 {
        tx.send(Cmd::Panic("again")).unwrap();
        tree.expect_restart("a");
    }
    assert_eq!(tree.wait_running("b"), b_before);
}

#[test]
fn each_restart_makes_one_info_record_with_the_reason() {
    capture_logs();
    // One child restarted on its own thread, one by its supervisor (fresh thread).
    let (same, same_tx) = controlled("panics::same-thread");
    let (fresh, fresh_tx) = controlled("panics::fresh-thread");
    let sup = Supervisor::builder()
        .intensity(10, DEADLINE)
        .child(same)
        .child(fresh.fresh_thread())
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    same_tx.send(Cmd::Fail("reason-4411")).unwrap();
    briefs_through(&events, "restarted panics::same-thread");
    fresh_tx.send(Cmd::Fail("reason-4412")).unwrap();
    briefs_through(&events, "restarted panics::fresh-thread");
    for (id, why) in [
        ("panics::same-thread", "reason-4411"),
        ("panics::fresh-thread", "reason-4412"),
    ] {
        let restarts: Vec<_> = lines_with(id)
            .into_iter()
            .filter(|(_, l)| l.contains("restarted"))
            .collect();
        assert_eq!(restarts.len(), 1, "{restarts:?}");
        assert_eq!(restarts[0].0, log::Level::Info);
        assert!(
            restarts[0].1.contains(&format!("failed: {why}")),
            "{restarts:?}"
        );
    }
    sup.shutdown().unwrap();
}
