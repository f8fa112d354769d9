//! The README's "Testing your supervised code" example, run; and a check that the README
//! still shows this very code.

use std::time::Duration;

use steadfast::server::{Handle, HandleCast, Serve, ServerContext, ServerSpec};
use steadfast::testing::{ManualClock, TestTree};
use steadfast::{Backoff, ExitReason, Supervisor};

/// The code under test: a counter server.
struct Counter(u64);
struct Add(u64);
struct Get;

impl Serve for Counter {}

impl HandleCast<Add> for Counter {
    fn handle_cast(&mut self, Add(n): Add, _: &mut ServerContext<'_, Self>) {
        self.0 += n;
    }
}

impl Handle<Get> for Counter {
    type Reply = u64;
    fn handle(&mut self, _: Get, _: &mut ServerContext<'_, Self>) -> u64 {
        self.0
    }
}

#[test]
fn the_counter_comes_back_after_its_backoff() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(); // the tree's time moves when the test says
    let (spec, counter) = ServerSpec::new("counter", |_| Ok(Counter(0))).build();
    let backoff = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60));
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .child(spec.backoff(backoff)),
    );

    counter.cast(Add(2))?;
    assert_eq!(counter.call(Get)?, 2);

    // A fault the server's code knows nothing of: it crashes at its next step (once
    // the message that wakes it is handled).
    tree.crash("counter", ExitReason::Failed("disk full".into()));
    counter.cast(Add(1))?;
    assert_eq!(
        tree.expect_crash("counter").to_string(),
        "failed: disk full"
    );

    // Its restart waits out the backoff on the tree's clock: not a moment of real time.
    assert_eq!(tree.expect_backoff("counter"), Duration::from_secs(1));
    tree.expect_quiet(Duration::from_millis(20)); // nothing until the clock moves
    clock.advance(Duration::from_secs(1));
    tree.expect_restart("counter");

    // The same handle reaches the new incarnation, which starts from a fresh state.
    assert_eq!(counter.call(Get)?, 0);
    Ok(())
    // Dropped: the tree is stopped, and the test fails if a thread outlived it, a panic
    // went unexpected, or one of its processes still holds a name.
}

#[test]
fn the_readme_shows_this_example() {
    let readme = include_str!("../README.md");
    let this = include_str!("readme_testing.rs");
    let section = readme
        .split("## Testing your supervised code")
        .nth(1)
        .expect("the README's testing section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block in it");
    let example = this
        .split("use std::time::Duration;")
        .nth(1)
        .and_then(|rest| {
            rest.split("#[test]\nfn the_readme_shows_this_example")
                .next()
        })
        .expect("this file's example");
    assert_eq!(
        block.trim(),
        format!("use std::time::Duration;{}", example.trim_end()).trim(),
        "the README's example differs from tests/readme_testing.rs"
    );
}
