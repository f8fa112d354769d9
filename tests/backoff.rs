//! Restart backoff: the delay, the supervisor staying responsive meanwhile, stops and
//! shutdowns during the wait, intensity, groups, and bad settings.

mod common;

use std::time::{Duration, Instant};

use common::*;
use steadfast::channel::{unbounded, Receiver};
use steadfast::testing::{ManualClock, TestTree};
use steadfast::{
    Backoff, ChildSpec, ChildStatus, DynamicSupervisor, Event, StartError, Strategy, Supervisor,
    SupervisorError,
};

const MS: fn(u64) -> Duration = Duration::from_millis;
/// A delay no test waits out: anything that happens is caused by something else.
const LONG: Duration = Duration::from_secs(120);

/// A worker that fails as soon as it starts.
fn failing(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |_ctx| Err("dependency down".into()))
}

fn scheduled(events: &Receiver<Event>) -> Duration {
    loop {
        if let Event::RestartScheduled { delay, .. } = next(events) {
            return delay;
        }
    }
}

#[test]
fn a_restart_waits_its_delay_and_says_so() {
    let (sink, events) = unbounded();
    let (spec, tx) = controlled("w");
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec.backoff(Backoff::fixed(MS(50))))
        .start()
        .unwrap();
    briefs_through(&events, "started w");
    let crashed = Instant::now();
    tx.send(Cmd::Fail("x")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted w"),
        [
            "exited w failed",
            "RestartScheduled { id: \"w\", delay: 50ms }",
            "restarted w"
        ]
    );
    assert!(crashed.elapsed() >= MS(50));
    let child = &sup.which_children().unwrap()[0];
    assert_eq!(
        (child.status, child.restart_at),
        (ChildStatus::Running, None)
    );
}

#[test]
fn the_supervisor_answers_and_stops_at_once_during_a_wait() {
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(failing("w").backoff(Backoff::fixed(LONG)))
        .child(idle("other"))
        .start()
        .unwrap();
    assert_eq!(scheduled(&events), LONG);
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Restarting);
    let due = children[0].restart_at.expect("a due time");
    assert!(due > Instant::now() + LONG / 2);
    // A waiting child is not running: delete refuses, restart refuses, terminate cancels.
    assert!(matches!(
        sup.delete_child("w"),
        Err(SupervisorError::Restarting)
    ));
    assert!(matches!(
        sup.restart_child("w"),
        Err(SupervisorError::Restarting)
    ));
    sup.terminate_child("w").unwrap();
    let child = &sup.which_children().unwrap()[0];
    assert_eq!(
        (child.status, child.restart_at),
        (ChildStatus::Stopped, None)
    );
    let started = Instant::now();
    sup.shutdown().unwrap();
    assert!(started.elapsed() < LONG / 4);
    assert!(!events
        .try_iter()
        .any(|e| matches!(e, Event::ChildRestarted { .. })));
}

#[test]
fn a_shutdown_during_a_wait_is_immediate_even_for_huge_delays() {
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(failing("w").backoff(Backoff::fixed(Duration::MAX)))
        .start()
        .unwrap();
    assert_eq!(scheduled(&events), Duration::MAX);
    let started = Instant::now();
    sup.shutdown().unwrap();
    assert!(started.elapsed() < LONG / 4);
}

#[test]
fn delays_double_up_to_the_cap() {
    let clock = ManualClock::new();
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .intensity(100, Duration::from_secs(60))
            .child(failing("w").backoff(Backoff::exponential(MS(1), MS(8)).reset_after(LONG))),
    );
    let delays: Vec<Duration> = (0..6)
        .map(|_| {
            let delay = tree.expect_backoff("w");
            clock.advance(delay);
            delay
        })
        .collect();
    assert_eq!(delays, [MS(1), MS(2), MS(4), MS(8), MS(8), MS(8)]);
}

#[test]
fn a_child_that_ran_long_enough_starts_over() {
    // On the tree's clock, each incarnation runs as long as the test says.
    let clock = ManualClock::new();
    let (spec, tx) = controlled("w");
    let tree = TestTree::start(
        Supervisor::builder()
            .clock(&clock)
            .intensity(100, Duration::from_secs(60))
            .child(spec.backoff(Backoff::exponential(MS(1), MS(100)).reset_after(MS(10)))),
    );
    let mut delays = Vec::new();
    for ran in [MS(0), MS(9), MS(10), MS(0), MS(50)] {
        clock.advance(ran);
        tx.send(Cmd::Fail("x")).unwrap();
        let delay = tree.expect_backoff("w");
        clock.advance(delay);
        tree.expect_restart("w");
        delays.push(delay);
    }
    // Less than 10 ms: the delay doubles; 10 ms or more: it starts over.
    assert_eq!(delays, [MS(1), MS(2), MS(1), MS(2), MS(1)]);
}

#[test]
fn delayed_restarts_count_toward_intensity_at_the_crash() {
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(2, Duration::from_secs(60))
        .event_sink(sink)
        .child(failing("w").backoff(Backoff::fixed(MS(1))))
        .start()
        .unwrap();
    let seen = briefs_until(&events, |e| matches!(e, Event::IntensityExceeded { .. }));
    let scheduled = seen
        .iter()
        .filter(|e| e.starts_with("RestartScheduled"))
        .count();
    assert_eq!(scheduled, 2, "{seen:?}");
    assert!(matches!(
        sup.join(),
        Err(SupervisorError::IntensityExceeded { .. })
    ));
}

#[test]
fn a_group_is_stopped_at_once_and_started_after_the_delay() {
    let (sink, events) = unbounded();
    let (a, tx) = controlled("a");
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(a.backoff(Backoff::fixed(MS(20))))
        .child(idle("b"))
        .start()
        .unwrap();
    briefs_through(&events, "started b");
    tx.send(Cmd::Panic("a died")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted b"),
        [
            "exited a panicked",
            "exited b shutdown",
            "RestartScheduled { id: \"a\", delay: 20ms }",
            "restarted a",
            "restarted b"
        ]
    );
    drop(sup);
}

#[test]
fn a_dynamic_child_waiting_out_its_backoff_can_be_terminated_by_its_pid() {
    let (sink, events) = unbounded();
    let pool = DynamicSupervisor::builder()
        .event_sink(sink)
        .start()
        .unwrap();
    let (spec, tx) = controlled("w");
    let pid = pool
        .start_child(spec.backoff(Backoff::fixed(LONG)))
        .unwrap();
    tx.send(Cmd::Fail("x")).unwrap();
    scheduled(&events);
    let children = pool.which_children().unwrap();
    assert_eq!(children[0].status, ChildStatus::Restarting);
    pool.terminate_child(pid).unwrap();
    assert_eq!(pool.count_children().unwrap().specs, 0);
}

#[test]
fn zero_inverted_and_out_of_range_backoffs_are_invalid_specs() {
    let bad = [
        Backoff::fixed(Duration::ZERO),
        Backoff::exponential(Duration::ZERO, MS(10)),
        Backoff::exponential(MS(100), MS(10)),
        Backoff::fixed(MS(1)).jitter(-0.1),
        Backoff::fixed(MS(1)).jitter(f64::INFINITY),
        Backoff::fixed(MS(1)).reset_after(Duration::ZERO),
    ];
    let pool = DynamicSupervisor::builder().start().unwrap();
    for backoff in bad {
        let err = Supervisor::builder()
            .child(idle("w").backoff(backoff.clone()))
            .start()
            .unwrap_err();
        assert!(
            matches!(err, StartError::InvalidSpec(_)),
            "{backoff:?}: {err}"
        );
        let err = pool
            .start_child(idle("w").backoff(backoff.clone()))
            .unwrap_err();
        assert!(
            matches!(err, SupervisorError::InvalidSpec(_)),
            "{backoff:?}: {err}"
        );
    }
}

#[test]
fn a_failed_restart_is_retried_after_its_backoff() {
    // The restart of a readiness child fails; the retry waits its delay too.
    let (sink, events) = unbounded();
    let spec = ChildSpec::worker("w", |ctx| {
        if ctx.incarnation() == 0 {
            ctx.ready();
        }
        Err("x".into())
    })
    .ready_timeout(DEADLINE)
    .backoff(Backoff::fixed(MS(1)));
    let sup = Supervisor::builder()
        .intensity(3, Duration::from_secs(60))
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    let seen = briefs_until(&events, |e| matches!(e, Event::IntensityExceeded { .. }));
    let failed = seen
        .iter()
        .filter(|e| e.starts_with("restart-failed"))
        .count();
    let waits = seen
        .iter()
        .filter(|e| e.starts_with("RestartScheduled"))
        .count();
    assert_eq!((failed, waits), (3, 4), "{seen:?}");
    let _ = sup.join();
}

#[test]
fn stops_and_restarts_raced_against_due_restarts_lose_no_exit() {
    use std::collections::HashSet;
    for round in 0..150u64 {
        let (sink, events) = unbounded();
        let delay = Duration::from_micros(20 + round % 7 * 40);
        let sup = Supervisor::builder()
            .intensity(10_000, Duration::from_secs(60))
            .event_sink(sink)
            .child(failing("w").backoff(Backoff::fixed(delay)))
            .child(idle("x"))
            .start()
            .unwrap();
        let early = until(&events, |e| matches!(e, Event::RestartScheduled { .. }));
        match round % 3 {
            0 => {
                sup.terminate_child("w").unwrap();
                let w = &sup.which_children().unwrap()[0];
                assert_eq!((w.status, w.restart_at), (ChildStatus::Stopped, None));
                let _ = sup.restart_child("w");
            }
            1 => match sup.restart_child("w") {
                Ok(_) | Err(SupervisorError::Running | SupervisorError::Restarting) => {}
                Err(e) => panic!("{e}"),
            },
            _ => {}
        }
        sup.shutdown().unwrap();
        // Every incarnation that started has its exit reported, once.
        let (mut started, mut exited) = (HashSet::new(), HashSet::new());
        for event in early.into_iter().chain(events.iter()) {
            match event {
                Event::ChildStarted { pid, .. } | Event::ChildRestarted { pid, .. } => {
                    assert!(started.insert(pid));
                }
                Event::ChildExited { pid, .. } => assert!(exited.insert(pid)),
                _ => {}
            }
        }
        assert_eq!(started, exited, "round {round}");
    }
}
