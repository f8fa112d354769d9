//! The blocking helpers: they return as soon as the condition holds, and give up with an
//! error (never a panic) at the deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steadfast::wait;

#[test]
fn until_returns_once_the_condition_holds() {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..3 {
            m.fetch_add(1, Ordering::SeqCst);
        }
    });
    wait::until(Duration::from_secs(10), || n.load(Ordering::SeqCst) == 3).unwrap();
    t.join().unwrap();
}

#[test]
fn until_some_hands_back_the_value() {
    let mut polls = 0;
    let v = wait::until_some(Duration::from_secs(10), "the third poll", || {
        polls += 1;
        (polls == 3).then_some("found")
    })
    .unwrap();
    assert_eq!((v, polls), ("found", 3));
}

#[test]
fn a_timeout_is_an_error_that_says_what_was_awaited() {
    let err = wait::until_some(Duration::from_millis(30), "the moon", || None::<()>).unwrap_err();
    assert_eq!(err.what, "the moon");
    assert!(err.waited >= Duration::from_millis(30));
    assert!(err.to_string().contains("the moon"));
    let err = wait::until(Duration::ZERO, || false).unwrap_err();
    assert_eq!(err.what, "a condition");
}
