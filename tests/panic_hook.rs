//! `route_panics_to_log` keeps supervised panics away from the previous panic hook (the
//! one that prints to stderr) and leaves every other thread's panics to it. The panic hook
//! is process-global, so this test has its own binary.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use steadfast::{ChildSpec, Restart, Supervisor};

#[test]
fn supervised_panics_skip_the_previous_hook_and_others_do_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    std::panic::set_hook(Box::new(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    steadfast::route_panics_to_log();
    steadfast::route_panics_to_log(); // idempotent

    let sup = Supervisor::builder()
        .child(
            ChildSpec::worker("p", |_| panic!("quiet"))
                .restart(Restart::Temporary)
                .ready_timeout(DEADLINE),
        )
        .start();
    assert!(sup.is_err(), "it panicked before ready");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "not passed to the previous hook"
    );

    let plain = std::thread::spawn(|| panic!("loud"));
    assert!(plain.join().is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "plain threads keep the previous hook"
    );
    let _ = std::panic::take_hook();
}
