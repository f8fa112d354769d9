//! The test kit's manual clock: every deadline a tree keeps — intensity windows, backoff,
//! server timers and idle timeouts, `Context::sleep`, readiness and shutdown deadlines —
//! is read on it, and comes only when a test advances it.

use std::thread;
use std::time::{Duration, Instant};

use steadfast::channel::{self, Receiver};
use steadfast::server::{Handle, HandleInfo, Serve, ServerContext, ServerSpec};
use steadfast::testing::{ManualClock, TestTree};
use steadfast::{Backoff, ChildSpec, DynamicSupervisor, Event, Shutdown, StartError, Supervisor};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(10);

/// A worker that crashes each time it is told to.
fn crasher(id: &str, crashes: Receiver<()>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        ctx.recv(&crashes)?;
        Err("told to".into())
    })
}

/// Five crashes in a minute are restarted, a sixth gives up; a minute later the window
/// is clean again — in milliseconds, on the manual clock.
#[test]
fn intensity_window_and_backoff_on_the_manual_clock() {
    let began = Instant::now();
    let clock = ManualClock::new();
    let (crash, crashes) = channel::unbounded();
    let (fail, failures) = channel::unbounded();
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .intensity(5, MINUTE)
            .child(crasher("db", crashes))
            .child(
                crasher("cache", failures)
                    .backoff(Backoff::exponential(SECOND, MINUTE).reset_after(10 * MINUTE)),
            ),
    );
    // Five crashes in this minute: all restarted.
    for _ in 0..5 {
        crash.send(()).unwrap();
        tree.expect_restart("db");
    }
    // A minute later the window is clean again.
    clock.advance(MINUTE + SECOND);
    for _ in 0..3 {
        crash.send(()).unwrap();
        tree.expect_restart("db");
    }
    // Backoff: 1 s, then 2 s; the restart waits for the clock, not for real time.
    fail.send(()).unwrap();
    assert_eq!(tree.expect_backoff("cache"), SECOND);
    tree.expect_quiet(Duration::from_millis(5));
    clock.advance(SECOND - Duration::from_millis(1));
    tree.expect_quiet(Duration::from_millis(5));
    clock.advance(Duration::from_millis(1));
    tree.expect_restart("cache");
    fail.send(()).unwrap();
    assert_eq!(tree.expect_backoff("cache"), 2 * SECOND);
    clock.advance(2 * SECOND);
    tree.expect_restart("cache");
    // That was this minute's fifth restart (three, and the two after a backoff): the
    // sixth gives up.
    crash.send(()).unwrap();
    assert_eq!(tree.expect_gave_up(), (5, MINUTE));
    eprintln!("took {:?} of real time", began.elapsed());
}

/// A backoff's attempts start over after the child ran `reset_after` on the clock.
#[test]
fn backoff_resets_after_a_long_run_on_the_clock() {
    let clock = ManualClock::new();
    let (fail, failures) = channel::unbounded();
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .intensity(100, SECOND)
            .child(
                crasher("job", failures)
                    .backoff(Backoff::exponential(SECOND, MINUTE).reset_after(MINUTE)),
            ),
    );
    for expected in [1, 2, 4] {
        fail.send(()).unwrap();
        assert_eq!(tree.expect_backoff("job"), expected * SECOND);
        clock.advance(expected * SECOND);
        tree.expect_restart("job");
    }
    clock.advance(MINUTE);
    fail.send(()).unwrap();
    assert_eq!(
        tree.expect_backoff("job"),
        SECOND,
        "ran a minute: starts over"
    );
    clock.advance(SECOND);
    tree.expect_restart("job");
}

struct Ticker {
    ticks: channel::Sender<&'static str>,
    idle: Option<Duration>,
}

#[derive(Clone)]
struct Tick;
struct Arm(Duration);

impl Serve for Ticker {
    fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
        ctx.set_idle_timeout(self.idle);
    }

    fn handle_idle(&mut self, _ctx: &mut ServerContext<'_, Self>) {
        let _ = self.ticks.send("idle");
    }
}

impl Handle<Arm> for Ticker {
    type Reply = ();
    fn handle(&mut self, Arm(every): Arm, ctx: &mut ServerContext<'_, Self>) {
        ctx.send_after(every, Tick);
        ctx.send_interval(every * 2, Tick);
    }
}

impl HandleInfo<Tick> for Ticker {
    fn handle_info(&mut self, _: Tick, _ctx: &mut ServerContext<'_, Self>) {
        let _ = self.ticks.send("tick");
    }
}

/// A ticker server under a tree on `clock`; what it hears.
fn ticker(
    clock: &ManualClock,
    idle: Option<Duration>,
) -> (
    TestTree,
    steadfast::server::ServerRef<Ticker>,
    Receiver<&'static str>,
) {
    let (ticks, heard) = channel::unbounded();
    let (spec, server) = ServerSpec::new("ticker", move |_| {
        Ok(Ticker {
            ticks: ticks.clone(),
            idle,
        })
    })
    .build();
    let tree = TestTree::start(Supervisor::builder().clock(clock).child(spec));
    (tree, server, heard)
}

/// Server timers fire when the clock reaches them; an interval that fell behind fires
/// once and goes on from the clock's time.
#[test]
fn server_timers_follow_the_clock() {
    let clock = ManualClock::new();
    let (_tree, server, heard) = ticker(&clock, None);
    let quiet = |heard: &Receiver<_>| heard.recv_timeout(Duration::from_millis(5)).is_err();
    server.call(Arm(MINUTE)).unwrap(); // a tick at 1 min, and every 2 min
    clock.advance(MINUTE - SECOND);
    assert!(quiet(&heard));
    clock.advance(SECOND); // 1 min
    assert_eq!(heard.recv_timeout(LONG), Ok("tick"));
    clock.advance(MINUTE); // 2 min: the interval's first
    assert_eq!(heard.recv_timeout(LONG), Ok("tick"));
    clock.advance(2 * MINUTE); // 4 min: its second
    assert_eq!(heard.recv_timeout(LONG), Ok("tick"));
    clock.advance(5 * MINUTE); // 9 min: 6 min's, late: once, no burst; next at 11
    assert_eq!(heard.recv_timeout(LONG), Ok("tick"));
    assert!(quiet(&heard));
    clock.advance(2 * MINUTE);
    assert_eq!(heard.recv_timeout(LONG), Ok("tick"));
}

/// A server's idle timeout is counted on the clock.
#[test]
fn server_idle_timeout_follows_the_clock() {
    let clock = ManualClock::new();
    let (_tree, server, heard) = ticker(&clock, Some(10 * MINUTE));
    clock.wait_for_waiters(1, LONG).unwrap(); // it waits for its idle deadline
    clock.advance(10 * MINUTE - SECOND);
    assert!(heard.recv_timeout(Duration::from_millis(5)).is_err());
    clock.advance(SECOND);
    assert_eq!(heard.recv_timeout(LONG), Ok("idle"));
    drop(server);
}

/// `Context::sleep` and `Context::recv_timeout` wait on the clock.
#[test]
fn context_sleep_and_recv_timeout_wait_on_the_clock() {
    let clock = ManualClock::new();
    let (woke, wakes) = channel::unbounded();
    let (_keep, never) = channel::unbounded::<()>();
    let _tree = TestTree::start(Supervisor::builder().clock(&clock).child(ChildSpec::worker(
        "poller",
        move |ctx| {
            ctx.sleep(Duration::from_secs(3600))?;
            let _ = woke.send("slept an hour");
            let timed_out = ctx.recv_timeout(&never, MINUTE).is_err();
            let _ = woke.send(if timed_out { "timed out" } else { "got one" });
            ctx.recv(&never)?;
            Ok(())
        },
    )));
    clock.wait_for_waiters(1, LONG).unwrap();
    clock.advance(Duration::from_secs(3599));
    assert!(wakes.recv_timeout(Duration::from_millis(5)).is_err());
    clock.advance(SECOND);
    assert_eq!(wakes.recv_timeout(LONG), Ok("slept an hour"));
    clock.wait_for_waiters(1, LONG).unwrap();
    clock.advance(MINUTE);
    assert_eq!(wakes.recv_timeout(LONG), Ok("timed out"));
}

/// A readiness deadline on the clock: the start waits until the clock passes it.
#[test]
fn readiness_deadline_is_on_the_clock() {
    let clock = ManualClock::new();
    let builder = Supervisor::builder().clock(&clock).child(
        ChildSpec::worker("mute", |ctx| {
            ctx.recv(&channel::never::<()>()).map_err(Into::into)
        })
        .ready_timeout(MINUTE),
    );
    thread::scope(|s| {
        let start = s.spawn(move || builder.start().map(|_| ()));
        clock.wait_for_waiters(1, LONG).unwrap();
        assert!(!start.is_finished());
        clock.advance(MINUTE);
        match start.join().unwrap() {
            Err(StartError::ReadyTimeout { id, .. }) => assert_eq!(id, "mute"),
            other => panic!("expected a readiness timeout, got {other:?}"),
        }
    });
}

/// A shutdown timeout on the clock: a child that ignores its stop is abandoned when the
/// clock passes it, not before.
#[test]
fn shutdown_timeout_is_on_the_clock() {
    let clock = ManualClock::new();
    let (release, released) = channel::bounded::<()>(1);
    let (events_tx, events) = channel::unbounded();
    let sup = Supervisor::builder()
        .clock(&clock)
        .event_sink(events_tx)
        .child(
            ChildSpec::worker("deaf", move |_ctx| {
                let _ = released.recv(); // ignores its stop
                Ok(())
            })
            .shutdown(Shutdown::Timeout(MINUTE)),
        )
        .start()
        .unwrap();
    let handle = sup.handle();
    thread::scope(|s| {
        let stop = s.spawn(|| handle.terminate_child("deaf"));
        clock.wait_for_waiters(1, LONG).unwrap();
        assert!(!stop.is_finished());
        clock.advance(MINUTE);
        stop.join().unwrap().unwrap();
    });
    let abandoned = events
        .try_iter()
        .any(|e| matches!(e, Event::ChildAbandoned { ref id, .. } if &**id == "deaf"));
    assert!(abandoned);
    release.send(()).unwrap();
    sup.shutdown().unwrap();
}

/// A dynamic supervisor's clock reaches the children callers start (on the caller's
/// thread), and a nested supervisor runs on its parent's clock.
#[test]
fn dynamic_and_nested_supervisors_share_the_clock() {
    let clock = ManualClock::new();
    let (events_tx, events) = channel::unbounded();
    let jobs = DynamicSupervisor::builder()
        .clock(&clock)
        .event_sink(events_tx)
        .start()
        .unwrap();
    let (fail, failures) = channel::unbounded();
    jobs.start_child(crasher("job", failures).backoff(Backoff::fixed(MINUTE)))
        .unwrap();
    fail.send(()).unwrap();
    let scheduled = |events: &Receiver<Event>| {
        events
            .iter()
            .find(|e| matches!(e, Event::RestartScheduled { .. }))
            .is_some()
    };
    assert!(scheduled(&events));
    clock.advance(MINUTE);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ChildRestarted { .. })));

    let (inner_tx, inner) = channel::unbounded();
    let (fail, failures) = channel::unbounded();
    let nested = Supervisor::builder()
        .event_sink(inner_tx)
        .child(crasher("leaf", failures).backoff(Backoff::fixed(MINUTE)));
    let _tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .child(ChildSpec::supervisor("inner", nested)),
    );
    fail.send(()).unwrap();
    assert!(scheduled(&inner));
    clock.advance(MINUTE);
    assert!(inner
        .iter()
        .any(|e| matches!(e, Event::ChildRestarted { .. })));
    jobs.shutdown().unwrap();
}

/// A tree on a manual clock whose child is deaf to its stop still ends when the test
/// tree is dropped: the stop advances the clock through the shutdown timeout.
#[test]
fn a_test_tree_on_the_clock_stops_a_deaf_child_when_dropped() {
    let clock = ManualClock::new();
    let (crash, crashes) = channel::unbounded();
    let tree =
        TestTree::start(Supervisor::builder().clock(&clock).child(
            crasher("deaf", crashes).shutdown(Shutdown::Timeout(Duration::from_secs(3600))),
        ));
    tree.deafen_next_start("deaf");
    crash.send(()).unwrap();
    tree.expect_restart("deaf");
    drop(tree); // would wait an hour of real time without the clock
    assert!(clock.elapsed() >= Duration::from_secs(3600));
}

/// Extreme advances: `Duration::MAX` runs everything due and leaves the clock usable.
#[test]
fn advancing_by_duration_max_is_as_good_as_forever() {
    let clock = ManualClock::new();
    let (fail, failures) = channel::unbounded();
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .child(crasher("job", failures).backoff(Backoff::fixed(Duration::from_secs(86_400)))),
    );
    fail.send(()).unwrap();
    tree.expect_backoff("job");
    clock.advance(Duration::MAX);
    tree.expect_restart("job");
    clock.advance(Duration::MAX);
    assert_eq!(clock.advance_to_next(), None);
}
