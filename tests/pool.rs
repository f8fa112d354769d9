//! Job pools: retries, dead letters, backpressure, drain, shutdown hand-back, and the
//! invariant (submitted = done + dead-lettered + handed back, nothing run again after it
//! succeeded) under a crash storm with several submitters.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use steadfast::channel::{unbounded, Receiver};
use steadfast::pool::{DrainError, Pool, SubmitError};
use steadfast::{ExitReason, StartError};

#[test]
fn every_job_runs_and_drain_waits_for_them() {
    let (tx, rx) = unbounded();
    let pool = Pool::builder(3, move |n: &u32, _ctx| {
        tx.send(*n)?;
        Ok(())
    })
    .start()
    .unwrap();
    for n in 0..500 {
        pool.submit(n).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    let mut got: Vec<u32> = rx.try_iter().collect();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.done, stats.dead_lettered),
        (500, 500, 0)
    );
    assert!(pool.shutdown().is_empty());
}

#[test]
fn a_job_that_crashes_its_worker_is_retried_then_succeeds() {
    let tries: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let t = tries.clone();
    let pool = Pool::builder(2, move |n: &u32, _ctx| {
        let attempt = {
            let mut tries = t.lock().unwrap();
            let e = tries.entry(*n).or_insert(0);
            *e += 1;
            *e
        };
        if *n == 7 && attempt < 3 {
            panic!("flaky job, attempt {attempt}");
        }
        Ok(())
    })
    .start()
    .unwrap();
    for n in 0..20 {
        pool.submit(n).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    assert_eq!(tries.lock().unwrap()[&7], 3);
    let stats = pool.stats();
    assert_eq!((stats.done, stats.dead_lettered), (20, 0));
}

#[test]
fn a_job_that_keeps_failing_is_dead_lettered_with_the_reason() {
    let (dead_tx, dead) = unbounded();
    let pool = Pool::builder(2, |n: &u32, _ctx| match n {
        1 => panic!("poison {n}"),
        2 => Err(format!("bad input {n}").into()),
        _ => Ok(()),
    })
    .max_attempts(3)
    .dead_letters(dead_tx)
    .start()
    .unwrap();
    for n in 0..5 {
        pool.submit(n).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    let mut letters: Vec<_> = dead.try_iter().collect();
    letters.sort_by_key(|l| l.job);
    assert_eq!(letters.len(), 2);
    assert_eq!((letters[0].job, letters[0].attempts), (1, 3));
    assert_eq!(letters[0].reason, ExitReason::Panicked("poison 1".into()));
    assert_eq!((letters[1].job, letters[1].attempts), (2, 3));
    assert_eq!(letters[1].reason, ExitReason::Failed("bad input 2".into()));
    let stats = pool.stats();
    assert_eq!((stats.done, stats.dead_lettered), (3, 2));
}

/// A pool whose one worker blocks each job until the gate lets it through (or a stop).
fn gated(capacity: usize) -> (Pool<u32>, steadfast::channel::Sender<()>, Receiver<u32>) {
    let (open, gate) = unbounded::<()>();
    let (started_tx, started) = unbounded();
    let pool = Pool::builder(1, move |n: &u32, ctx| {
        started_tx.send(*n)?;
        ctx.recv(&gate)?;
        Ok(())
    })
    .capacity(capacity)
    .start()
    .unwrap();
    (pool, open, started)
}

#[test]
fn a_full_queue_refuses_try_submit_and_makes_submit_wait() {
    let (pool, open, started) = gated(2);
    pool.submit(0).unwrap();
    assert_eq!(started.recv_timeout(DEADLINE).unwrap(), 0); // the worker holds job 0
    pool.submit(1).unwrap();
    pool.submit(2).unwrap();
    match pool.try_submit(3) {
        Err(SubmitError::Full(job)) => assert_eq!(job, 3),
        other => panic!("{other:?}"),
    }
    let pool = Arc::new(pool);
    let waiting = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.submit(3))
    };
    // Room is made only by the worker taking job 1.
    open.send(()).unwrap();
    waiting.join().unwrap().unwrap();
    for _ in 0..3 {
        open.send(()).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    assert_eq!(pool.stats().done, 4);
}

#[test]
fn shutdown_hands_back_the_jobs_not_done_and_then_refuses_more() {
    let (pool, _open, started) = gated(100);
    for n in 0..10 {
        pool.submit(n).unwrap();
    }
    assert_eq!(started.recv_timeout(DEADLINE).unwrap(), 0);
    // Job 0 is interrupted by the stop (its wait returns Stopped): handed back too.
    let mut back = pool.shutdown();
    back.sort_unstable();
    assert_eq!(back, (0..10).collect::<Vec<_>>());
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.done, stats.handed_back),
        (10, 0, 10)
    );
    match pool.submit(11) {
        Err(SubmitError::Closed(job)) => assert_eq!(job, 11),
        other => panic!("{other:?}"),
    }
    assert!(
        pool.shutdown().is_empty(),
        "a second shutdown has nothing more"
    );
}

#[test]
fn bad_settings_are_invalid_specs() {
    let ok = |_: &u32, _: &steadfast::Context| Ok(());
    for builder in [
        Pool::builder(0, ok),
        Pool::builder(1, ok).capacity(0),
        Pool::builder(1, ok).max_attempts(0),
    ] {
        assert!(matches!(builder.start(), Err(StartError::InvalidSpec(_))));
    }
}

/// Sizes no machine can give are refused with the reason, not a panic in `start` or an
/// allocation failure that aborts the program.
#[test]
fn impossible_sizes_are_invalid_specs_not_crashes() {
    let ok = |_: &u32, _: &steadfast::Context| Ok(());
    for (builder, why) in [
        (Pool::builder(1, ok).capacity(usize::MAX), "capacity"),
        (Pool::builder(1, ok).capacity(1 << 40), "capacity"),
        (Pool::builder(usize::MAX, ok), "thread cap"),
        (
            Pool::builder(steadfast::max_threads() + 1, ok),
            "thread cap",
        ),
    ] {
        match builder.start() {
            Err(StartError::InvalidSpec(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // A large queue that fits is fine.
    let pool = Pool::builder(1, ok).capacity(1 << 20).start().unwrap();
    pool.submit(7).unwrap();
    pool.shutdown();
}

/// A cheap, deterministic "random" for job `n`'s attempt `a`.
fn roll(n: u32, a: u32) -> u32 {
    let mut z = u64::from(n) << 32 | u64::from(a);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 100) as u32
}

#[test]
fn nothing_lost_nothing_run_twice_under_a_crash_storm() {
    const JOBS: u32 = 4_000;
    const SUBMITTERS: u32 = 4;
    for stop_early in [false, true] {
        let successes: Arc<Vec<AtomicU8>> = Arc::new((0..JOBS).map(|_| AtomicU8::new(0)).collect());
        let attempts: Arc<Vec<AtomicU32>> =
            Arc::new((0..JOBS).map(|_| AtomicU32::new(0)).collect());
        let (s, a) = (successes.clone(), attempts.clone());
        let (dead_tx, dead) = unbounded();
        let pool = Arc::new(
            Pool::builder(4, move |n: &u32, _ctx| {
                let attempt = a[*n as usize].fetch_add(1, Ordering::SeqCst);
                match roll(*n, attempt) {
                    // Poison for every third of these jobs; flaky for the rest.
                    r if r < 10 && n % 3 == 0 => panic!("poison {n}"),
                    r if r < 20 => panic!("crash on {n}"),
                    r if r < 25 => Err("refused".into()),
                    _ => {
                        s[*n as usize].fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }
            })
            .capacity(64)
            .max_attempts(3)
            .intensity(1_000_000, Duration::from_secs(1))
            .dead_letters(dead_tx)
            .start()
            .unwrap(),
        );
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut refused = 0u64;
                    for n in (t..JOBS).step_by(SUBMITTERS as usize) {
                        if pool.submit(n).is_err() {
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        let back = if stop_early {
            // Shut down while the submitters are still going.
            while pool.stats().done < u64::from(JOBS) / 4 {
                std::thread::yield_now();
            }
            pool.shutdown()
        } else {
            Vec::new()
        };
        let refused: u64 = submitters.into_iter().map(|t| t.join().unwrap()).sum();
        if !stop_early {
            pool.drain(Duration::from_secs(60)).unwrap();
        }
        let back = [back, pool.shutdown()].concat();
        let stats = pool.stats();
        let dead: Vec<_> = dead.try_iter().collect();
        assert_eq!(stats.submitted + refused, u64::from(JOBS));
        assert_eq!(
            stats.submitted,
            stats.done + stats.dead_lettered + stats.handed_back,
            "{stats:?}"
        );
        assert_eq!(stats.handed_back, back.len() as u64);
        assert_eq!(stats.dead_lettered, dead.len() as u64);
        // Each job succeeded at most once, and `done` counts exactly those.
        let succeeded = successes
            .iter()
            .filter(|s| s.load(Ordering::SeqCst) == 1)
            .count() as u64;
        assert!(successes.iter().all(|s| s.load(Ordering::SeqCst) <= 1));
        assert_eq!(succeeded, stats.done);
        // A dead letter or a handed-back job never succeeded.
        for job in dead.iter().map(|d| d.job).chain(back.iter().copied()) {
            assert_eq!(
                successes[job as usize].load(Ordering::SeqCst),
                0,
                "job {job}"
            );
        }
        if !stop_early {
            assert_eq!(stats.submitted, u64::from(JOBS));
            assert!(stats.dead_lettered > 0, "the storm had poison jobs");
        }
    }
}

/// A job that returns `Stopped` without any stop raised has failed an attempt like any
/// other error: it is retried, then dead-lettered, never left in the slot for the next
/// job to overwrite (which lost it, and `drain` never completed).
#[test]
fn a_job_returning_stopped_unasked_is_a_failed_attempt_not_a_lost_job() {
    let (dead_tx, dead) = unbounded();
    let pool = Pool::builder(1, |n: &u32, _ctx| {
        if *n == 1 {
            Err(steadfast::Stopped.into())
        } else {
            Ok(())
        }
    })
    .max_attempts(2)
    .dead_letters(dead_tx)
    .start()
    .unwrap();
    pool.submit(1).unwrap();
    pool.submit(2).unwrap();
    pool.drain(DEADLINE).unwrap();
    let letter = dead.try_recv().expect("job 1 dead-lettered");
    assert_eq!((letter.job, letter.attempts), (1, 2));
    assert!(pool.shutdown().is_empty());
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.done,
            stats.dead_lettered,
            stats.handed_back
        ),
        (2, 1, 1, 0)
    );
}

/// Crashing jobs are what a pool contains: at the default settings a batch where 2 %
/// of 10,000 jobs panic once runs to the end, every job done, the pool alive.
#[test]
fn the_default_pool_survives_an_ordinary_crash_rate() {
    steadfast::route_panics_to_log(); // 200 panics: keep them off stderr
    let tried: Arc<Vec<AtomicU8>> = Arc::new((0..10_000).map(|_| AtomicU8::new(0)).collect());
    let t = tried.clone();
    let pool = Pool::builder(2, move |n: &u32, _ctx| {
        let first = t[*n as usize].fetch_add(1, Ordering::Relaxed) == 0;
        if first && n % 50 == 0 {
            panic!("job {n} crashes once");
        }
        Ok(())
    })
    .start()
    .unwrap();
    for n in 0..10_000 {
        pool.submit(n).unwrap();
    }
    pool.drain(Duration::from_secs(60)).unwrap();
    assert!(pool.is_alive());
    let stats = pool.stats();
    assert_eq!((stats.done, stats.dead_lettered), (10_000, 0));
    assert_eq!(
        tried
            .iter()
            .filter(|t| t.load(Ordering::Relaxed) == 2)
            .count(),
        200
    );
}

/// A job whose `Drop` panics.
#[derive(Debug, PartialEq)]
struct Grenade(u32);

impl Drop for Grenade {
    fn drop(&mut self) {
        if self.0 == 1 && !std::thread::panicking() {
            panic!("grenade {} went off in drop", self.0);
        }
    }
}

/// Once the workers' supervisor has given up, the pool says so: submits fail at once
/// with `Down` and the reason, `drain` too (it does not read as "slow"), `is_alive` is
/// false, and `shutdown` hands back every job that never ran.
#[test]
fn a_pool_whose_workers_are_gone_for_good_fails_at_once_and_loses_nothing() {
    let (open, gate) = unbounded::<()>();
    let (started_tx, started) = unbounded();
    let pool = Pool::builder(1, move |g: &Grenade, ctx| {
        started_tx.send(g.0)?;
        if g.0 == 1 {
            ctx.recv(&gate)?;
        }
        Ok(())
    })
    .intensity(0, Duration::from_secs(60))
    .start()
    .unwrap();
    pool.submit(Grenade(1)).unwrap();
    assert_eq!(started.recv_timeout(DEADLINE).unwrap(), 1);
    for n in 2..6 {
        pool.submit(Grenade(n)).unwrap();
    }
    assert!(pool.is_alive());
    // Job 1 is done; dropping it crashes its worker, past the intensity of 0.
    open.send(()).unwrap();
    steadfast::wait::until(DEADLINE, || !pool.is_alive()).unwrap();
    let why = pool.down_reason().expect("a reason");
    assert!(why.reason.contains("intensity"), "{why}");
    match pool.try_submit(Grenade(6)) {
        Err(SubmitError::Down(job, down)) => {
            assert_eq!((job.0, &down), (6, &why));
        }
        other => panic!("{other:?}"),
    }
    match pool.submit(Grenade(7)) {
        Err(SubmitError::Down(job, _)) => assert_eq!(job.0, 7),
        other => panic!("{other:?}"),
    }
    match pool.drain(DEADLINE) {
        Err(DrainError::Down(down)) => assert_eq!(down, why),
        other => panic!("{other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.done, stats.queued), (5, 1, 4));
    let mut back: Vec<u32> = pool.shutdown().iter().map(|g| g.0).collect();
    back.sort_unstable();
    assert_eq!(back, vec![2, 3, 4, 5]);
    assert_eq!(pool.stats().handed_back, 4);
}

/// `in_flight` counts the jobs a worker holds, and the invariant reads with it.
#[test]
fn stats_count_the_jobs_in_flight() {
    let (pool, open, started) = gated(8);
    pool.submit(0).unwrap();
    assert_eq!(started.recv_timeout(DEADLINE).unwrap(), 0);
    pool.submit(1).unwrap();
    pool.submit(2).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.queued, stats.in_flight), (3, 2, 1));
    for _ in 0..3 {
        open.send(()).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.done, stats.queued, stats.in_flight), (3, 0, 0));
    assert!(pool.shutdown().is_empty());
}

/// A job knows its attempt: 1 first, then one more after each failure, whether it
/// panicked or returned `Err`; other jobs' attempts are their own.
#[test]
fn a_job_knows_its_attempt_across_panics_and_errors() {
    use steadfast::pool::current_attempt;
    let (seen_tx, seen) = unbounded();
    let pool = Pool::builder(2, move |n: &u32, _ctx| {
        let attempt = current_attempt().expect("inside a job");
        seen_tx.send((*n, attempt))?;
        match (n, attempt) {
            (1, 1) => panic!("first try of 1 panics"),
            (1, 2) => Err("second try of 1 fails".into()),
            _ => Ok(()),
        }
    })
    .max_attempts(3)
    .start()
    .unwrap();
    for n in 0..4 {
        pool.submit(n).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    let mut tries: Vec<(u32, u32)> = seen.try_iter().collect();
    tries.sort_unstable();
    assert_eq!(tries, [(0, 1), (1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]);
    assert_eq!(current_attempt(), None, "not inside a job");
    assert_eq!(pool.stats().done, 4);
}

/// A pool in the user's own tree: its workers' supervisor is a child there, and the
/// `Pool` handle keeps working across its restarts — it gives up (a worker crashes
/// around a job, past an intensity of 0), the parent restarts it, and what was queued
/// meanwhile runs on the next incarnation. Once the tree is gone, the pool is down.
#[test]
fn a_pool_in_your_tree_survives_its_restarts_and_is_down_once_the_tree_is_gone() {
    let (open, gate) = unbounded::<()>();
    let (ran_tx, ran) = unbounded();
    let builder = Pool::builder(1, move |g: &Grenade, ctx| {
        ran_tx.send(g.0)?;
        if g.0 == 1 {
            ctx.recv(&gate)?;
        }
        Ok(())
    })
    .intensity(0, Duration::from_secs(60));
    // One set of settings, two pools (the builder clones).
    let (spare_spec, _spare) = builder.clone().child_spec("spare").unwrap();
    let (pool_spec, pool) = builder.child_spec("grenades").unwrap();
    let events = unbounded();
    let root = steadfast::Supervisor::builder()
        .event_sink(events.0)
        .child(pool_spec)
        .child(spare_spec)
        .start()
        .unwrap();
    pool.submit(Grenade(1)).unwrap();
    assert_eq!(ran.recv_timeout(DEADLINE).unwrap(), 1);
    for n in 2..5 {
        pool.submit(Grenade(n)).unwrap(); // queued behind job 1
    }
    // Job 1 is done; dropping it crashes its worker: the pool's supervisor gives up,
    // and the root restarts it.
    open.send(()).unwrap();
    briefs_through(&events.1, "restarted grenades");
    let mut rest: Vec<u32> = (0..3)
        .map(|_| ran.recv_timeout(DEADLINE).unwrap())
        .collect();
    rest.sort_unstable();
    assert_eq!(
        rest,
        [2, 3, 4],
        "what was queued ran on the next incarnation"
    );
    pool.drain(DEADLINE).unwrap();
    assert!(pool.is_alive());
    pool.submit(Grenade(5)).unwrap();
    pool.drain(DEADLINE).unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.done, stats.dead_lettered),
        (5, 5, 0)
    );
    // The tree ends: nothing can start the workers again.
    root.shutdown().unwrap();
    assert!(!pool.is_alive());
    match pool.try_submit(Grenade(6)) {
        Err(SubmitError::Down(job, why)) => {
            assert_eq!(job.0, 6);
            assert!(why.reason.contains("will not be restarted"), "{why}");
            // The give-up before the restart is not why it ended.
            assert!(!why.reason.contains("gave up"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

/// Hostile: a pool in a tree whose supervisor gives up every fiftieth job (a job whose
/// `Drop` panics crashes its worker past an intensity of 0) and is restarted by the
/// parent, while two threads submit 500 jobs: every job is done exactly once, and the
/// handle worked throughout.
#[test]
fn a_pool_in_a_tree_loses_nothing_while_its_supervisor_restarts_under_submitters() {
    steadfast::route_panics_to_log();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..500).map(|_| AtomicU8::new(0)).collect());
    let r = runs.clone();
    let (pool_spec, pool) = Pool::builder(2, move |g: &Grenade, _ctx| {
        if let Some(n) = (g.0 as usize).checked_sub(1000) {
            r[n].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
    .intensity(0, Duration::from_secs(60))
    .child_spec("storm")
    .unwrap();
    let (events_tx, events) = unbounded();
    let root = steadfast::Supervisor::builder()
        .intensity(1_000, Duration::from_secs(1))
        .event_sink(events_tx)
        .child(pool_spec)
        .start()
        .unwrap();
    // Job numbers from 1000: a `Grenade` only goes off for 1.
    let submitters: Vec<_> = (0..2u32)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for n in (t..500).step_by(2) {
                    pool.submit(Grenade(1000 + n)).unwrap();
                    if n % 50 == 0 {
                        // A real grenade: crashes its worker once done.
                        pool.submit(Grenade(1)).unwrap();
                    }
                }
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    pool.drain(Duration::from_secs(60)).unwrap();
    let restarts = events
        .try_iter()
        .filter(|e| matches!(e, steadfast::Event::ChildRestarted { .. }))
        .count();
    assert!(restarts >= 1, "the pool's supervisor was restarted");
    assert!(
        runs.iter().all(|r| r.load(Ordering::Relaxed) == 1),
        "each job once"
    );
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.done), (510, 510));
    assert!(pool.is_alive());
    root.shutdown().unwrap();
}
