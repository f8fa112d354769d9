//! Supervised tasks you wait for (`task::spawn`) and the bounded parallel map
//! (`task::map`): outcomes in order or as they finish, crashes contained, the concurrency
//! bound held, timeouts stopping (and abandoning) tasks, nothing left running when the
//! iterator or the handle is dropped.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{task, DynamicSupervisor, ExitReason, Pid, Shutdown};

#[test]
fn outcomes_come_in_input_order_with_crashes_and_errors_contained() {
    let results: Vec<_> = task::map(0..20u32, |n, _ctx| match n % 7 {
        3 => panic!("item {n} panics"),
        5 => Err(format!("item {n} fails").into()),
        _ => Ok(n * 10),
    })
    .max_concurrency(3)
    .run()
    .unwrap()
    .collect();
    assert_eq!(results.len(), 20);
    for (n, outcome) in results.into_iter().enumerate() {
        let n = n as u32;
        match n % 7 {
            3 => assert_eq!(
                outcome,
                Err(ExitReason::Panicked(format!("item {n} panics").into()))
            ),
            5 => assert_eq!(
                outcome,
                Err(ExitReason::Failed(format!("item {n} fails").into()))
            ),
            _ => assert_eq!(outcome, Ok(n * 10)),
        }
    }
}

/// Tasks that block until the test lets each through, counting how many run at once.
struct Gated {
    open: Sender<()>,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

fn gated(items: u32, max: usize) -> (Gated, std::thread::JoinHandle<Vec<Result<u32, ExitReason>>>) {
    let (open, gate) = unbounded::<()>();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    let consumer = std::thread::spawn(move || {
        task::map(0..items, move |i, ctx| {
            let running = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(running, Ordering::SeqCst);
            let waited = ctx.recv(&gate);
            n.fetch_sub(1, Ordering::SeqCst);
            waited?;
            Ok(i)
        })
        .max_concurrency(max)
        .run()
        .unwrap()
        .collect()
    });
    (Gated { open, now, peak }, consumer)
}

#[test]
fn no_more_than_max_concurrency_tasks_run_at_once() {
    let (g, consumer) = gated(12, 3);
    // The map fills up to its bound: three tasks blocked at once.
    steadfast::wait::until(DEADLINE, || g.now.load(Ordering::SeqCst) == 3).unwrap();
    for _ in 0..12 {
        // Let one through whenever one runs.
        steadfast::wait::until(DEADLINE, || g.now.load(Ordering::SeqCst) >= 1).unwrap();
        g.open.send(()).unwrap();
    }
    let results = consumer.join().unwrap();
    assert_eq!(results, (0..12).map(Ok).collect::<Vec<_>>());
    let peak = g.peak.load(Ordering::SeqCst);
    assert_eq!(peak, 3, "never more than max_concurrency at once");
}

#[test]
fn unordered_outcomes_come_as_tasks_finish() {
    let gates: Vec<(Sender<()>, Receiver<()>)> = (0..3).map(|_| unbounded()).collect();
    let waits: Vec<Receiver<()>> = gates.iter().map(|(_, rx)| rx.clone()).collect();
    let mut outcomes = task::map(0..3usize, move |i, ctx| {
        ctx.recv(&waits[i])?;
        Ok(i)
    })
    .max_concurrency(3)
    .ordered(false)
    .run()
    .unwrap();
    for i in [2, 0, 1] {
        gates[i].0.send(()).unwrap();
        assert_eq!(outcomes.next(), Some(Ok(i)));
    }
    assert_eq!(outcomes.next(), None);
}

#[test]
fn a_task_past_its_timeout_is_stopped_and_a_deaf_one_abandoned() {
    let (release, deaf) = unbounded::<()>();
    let results: Vec<_> = task::map(0..3u32, move |i, ctx| {
        match i {
            0 => Ok(0),
            // Listens to its stop: stopped at the timeout.
            1 => ctx
                .sleep(Duration::from_secs(60))
                .map(|_| 1)
                .map_err(Into::into),
            // Deaf to its stop: abandoned after its shutdown time.
            _ => {
                let _ = deaf.recv();
                Ok(2)
            }
        }
    })
    .max_concurrency(3)
    .timeout(Duration::from_millis(100))
    .shutdown(Shutdown::Timeout(Duration::from_millis(50)))
    .run()
    .unwrap()
    .collect();
    assert_eq!(
        results,
        [Ok(0), Err(ExitReason::Shutdown), Err(ExitReason::Killed)]
    );
    drop(release); // the abandoned thread may end now
}

#[test]
fn dropping_the_iterator_stops_every_task_still_running() {
    for own in [true, false] {
        let sup = DynamicSupervisor::builder().start().unwrap();
        let (pids_tx, pids) = unbounded::<Pid>();
        let (open, gate) = unbounded::<()>();
        let map = task::map(0..6u32, move |i, ctx| {
            pids_tx.send(ctx.pid())?;
            if i > 0 {
                ctx.recv(&gate)?;
            }
            Ok(i)
        })
        .max_concurrency(3);
        let mut outcomes = if own { map } else { map.under(&sup) }.run().unwrap();
        assert_eq!(outcomes.next(), Some(Ok(0)));
        let started: Vec<Pid> = (0..3)
            .map(|_| pids.recv_timeout(DEADLINE).unwrap())
            .collect();
        if !own {
            assert!(
                sup.count_children().unwrap().active >= 2,
                "under the given supervisor"
            );
        }
        drop(outcomes);
        for pid in started {
            assert!(
                !pid.is_alive(),
                "{pid} left running (own supervisor: {own})"
            );
        }
        if !own {
            steadfast::wait::until(DEADLINE, || {
                sup.count_children().is_ok_and(|c| c.active == 0)
            })
            .unwrap();
        }
        drop(open);
        sup.shutdown().unwrap();
    }
}

#[test]
fn a_single_task_joins_yields_and_shuts_down() {
    let sup = DynamicSupervisor::builder().start().unwrap();
    // join: its value, or its crash.
    assert_eq!(
        task::spawn(&sup, |_| Ok(42)).unwrap().join(DEADLINE),
        Ok(42)
    );
    let crashed = task::spawn(&sup, |_| -> Result<u32, _> { panic!("task crash") }).unwrap();
    assert_eq!(
        crashed.join(DEADLINE),
        Err(ExitReason::Panicked("task crash".into()))
    );
    // yield: the task back while it runs, then its value.
    let (open, gate) = unbounded::<()>();
    let waiting = task::spawn(&sup, move |ctx| {
        ctx.recv(&gate)?;
        Ok("done")
    })
    .unwrap();
    let waiting = waiting.yield_for(Duration::from_millis(10)).unwrap_err();
    open.send(()).unwrap();
    assert_eq!(waiting.yield_for(DEADLINE).unwrap(), Ok("done"));
    // join past its time: stopped.
    let slow = task::spawn(&sup, |ctx| {
        ctx.sleep(Duration::from_secs(60))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        slow.join(Duration::from_millis(20)),
        Err(ExitReason::Shutdown)
    );
    // shutdown: None if the stop ended it, its value if it had finished.
    let blocked = task::spawn(&sup, |ctx| {
        ctx.sleep(Duration::from_secs(60))?;
        Ok(1)
    })
    .unwrap();
    let pid = blocked.pid();
    assert_eq!(blocked.shutdown(), None);
    assert!(!pid.is_alive());
    let (done_tx, done) = unbounded();
    let finished = task::spawn(&sup, move |_| {
        done_tx.send(())?;
        Ok(7)
    })
    .unwrap();
    done.recv_timeout(DEADLINE).unwrap();
    steadfast::wait::until(DEADLINE, || !finished.pid().is_alive()).unwrap();
    assert_eq!(finished.shutdown(), Some(Ok(7)));
    // Dropping a handle stops its task.
    let dropped = task::spawn(&sup, |ctx| {
        ctx.sleep(Duration::from_secs(60))?;
        Ok(())
    })
    .unwrap();
    let pid = dropped.pid();
    drop(dropped);
    assert!(!pid.is_alive());
    sup.shutdown().unwrap();
}

/// Hostile: maps over crashing, failing and slow items, dropped after a varying number
/// of outcomes, under the map's own supervisor and under the test's: every task started
/// has ended once the iterator is gone, and the given supervisor is left empty.
#[test]
fn maps_dropped_midway_among_crashes_leave_nothing_running() {
    steadfast::route_panics_to_log(); // hundreds of planned panics: keep stderr readable
    let sup = DynamicSupervisor::builder().start().unwrap();
    for round in 0..40u32 {
        let (pids_tx, pids) = unbounded::<Pid>();
        let map = task::map(0..16u32, move |i, ctx| {
            pids_tx.send(ctx.pid())?;
            match (i + round) % 5 {
                0 => panic!("item {i} crashes"),
                1 => Err(format!("item {i} fails").into()),
                2 => ctx
                    .sleep(Duration::from_secs(60))
                    .map(|_| i)
                    .map_err(Into::into),
                _ => Ok(i),
            }
        })
        .max_concurrency(1 + (round as usize % 4))
        .ordered(round % 2 == 0)
        // Sleepers are stopped at their deadline (a `next` may wait for one).
        .timeout(Duration::from_millis(100));
        let under = round % 3 == 0;
        let mut outcomes = if under { map.under(&sup) } else { map }.run().unwrap();
        let take = (round % 6) as usize;
        for _ in 0..take {
            if outcomes.next().is_none() {
                break;
            }
        }
        drop(outcomes);
        for pid in pids.try_iter() {
            assert!(!pid.is_alive(), "round {round}: {pid} still running");
        }
        if under {
            steadfast::wait::until(DEADLINE, || {
                sup.count_children().is_ok_and(|c| c.active == 0)
            })
            .unwrap();
        }
    }
    sup.shutdown().unwrap();
}
