//! Stress: crash storms, an intensity trip in the middle of one, dynamic churn, a full
//! thread cap, and the registry under random concurrent use checked against a model.
//!
//! Sizes scale with `STEADFAST_STRESS_SCALE` (a percentage, default 100): `=10` for a
//! quick run, `=1000` for a long one. The tests count threads, so they run one at a time.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use steadfast::{
    monitor, ChildSpec, DynamicSupervisor, Event, ExitReason, Pid, Registry, RegistryError,
    Restart, SpawnError, StartError, Supervisor, SupervisorError,
};

/// `n` scaled by `STEADFAST_STRESS_SCALE` percent, at least 1.
fn scaled(n: usize) -> usize {
    let pct: usize = std::env::var("STEADFAST_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    (n * pct / 100).max(1)
}

/// A tiny deterministic generator (xorshift), so a failure can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The test harness runs each test on a thread named after it (helpers a test spawns
/// inherit that name), and starts the next test's thread whenever one finishes.
const TESTS: [&str; 7] = [
    "a_crash_storm_is_seen_exactly_once_per_crash",
    "an_intensity_trip_mid_storm_stops_the_inner_tree_and_escalates",
    "churn_of_dynamic_children_with_concurrent_listing",
    "a_full_thread_cap_refuses_starts_and_recovers",
    "registry_under_random_concurrent_use_matches_a_model",
    "starts_racing_a_shutdown_either_fail_or_are_stopped_by_it",
    "readiness_starts_racing_a_shutdown_are_handed_over_or_stopped",
];

/// This process's threads, from /proc, except the harness's own test threads (Linux
/// keeps the first 15 bytes of a thread's name).
fn tree_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| !TESTS.iter().any(|t| t[..15] == *comm.trim_end()))
        .count()
}

/// Where the process stands before a test: steadfast's threads and the process's.
struct Baseline {
    live: usize,
    tasks: usize,
}

impl Baseline {
    fn take() -> Baseline {
        Baseline {
            live: steadfast::live_threads(),
            tasks: tree_threads(),
        }
    }

    /// Every thread the test started has ended: steadfast's count is exact; the process's
    /// may be lower than before (a thread the harness had not yet reaped), never higher.
    fn assert_restored(&self) {
        let restored = steadfast::wait::until(DEADLINE, || {
            steadfast::live_threads() == self.live && tree_threads() <= self.tasks
        });
        assert!(
            restored.is_ok(),
            "threads: steadfast {} (was {}), process {} (was {})",
            steadfast::live_threads(),
            self.live,
            tree_threads(),
            self.tasks
        );
    }
}

fn quiet() {
    // 10,000 panics: keep them off stderr (and free of backtrace captures).
    steadfast::route_panics_to_log();
}

#[test]
fn a_crash_storm_is_seen_exactly_once_per_crash() {
    let _serial = serial();
    quiet();
    let base = Baseline::take();
    let children = 100;
    let crashes = scaled(10_000);
    let pokers = 4;
    let mut builder = Supervisor::builder().intensity(u32::MAX, Duration::from_secs(60));
    let mut cmds = Vec::new();
    for i in 0..children {
        let (spec, tx) = controlled(&format!("c{i}"));
        builder = builder.child(spec);
        cmds.push(tx);
    }
    let (sink, events) = unbounded();
    let sup = builder.event_sink(sink).start().unwrap();
    let cmds = Arc::new(cmds);
    // Each poker sends its share of crashes to random children and counts them per child.
    let pokers: Vec<_> = (0..pokers)
        .map(|p| {
            let cmds = cmds.clone();
            let share = crashes / pokers + usize::from(p < crashes % pokers);
            thread::spawn(move || {
                let mut rng = Rng::new(p as u64 + 1);
                let mut sent = vec![0usize; cmds.len()];
                for _ in 0..share {
                    let i = rng.below(cmds.len());
                    cmds[i].send(Cmd::Panic("storm")).unwrap();
                    sent[i] += 1;
                }
                sent
            })
        })
        .collect();
    let mut expected = vec![0usize; children];
    for p in pokers {
        for (i, n) in p.join().unwrap().into_iter().enumerate() {
            expected[i] += n;
        }
    }
    assert_eq!(expected.iter().sum::<usize>(), crashes);
    // Every crash appears once as a panicked exit followed, for that child, by a restart.
    let (mut exits, mut restarts) = (vec![0usize; children], vec![0usize; children]);
    let index = |id: &str| id[1..].parse::<usize>().unwrap();
    let mut started = 0;
    while restarts.iter().sum::<usize>() < crashes {
        match next(&events) {
            Event::ChildStarted { .. } => started += 1,
            Event::ChildExited { id, reason, .. } => {
                assert_eq!(reason, ExitReason::Panicked("storm".into()));
                let i = index(&id);
                assert_eq!(exits[i], restarts[i], "{id}: two exits without a restart");
                exits[i] += 1;
            }
            Event::ChildRestarted { id, .. } => {
                let i = index(&id);
                restarts[i] += 1;
                assert_eq!(exits[i], restarts[i], "{id}: a restart without an exit");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(started, children);
    assert_eq!(exits, expected);
    assert_eq!(restarts, expected);
    let counts = sup.count_children().unwrap();
    assert_eq!((counts.specs, counts.active), (children, children));
    sup.shutdown().unwrap();
    drop(cmds);
    let rest = briefs_through(&events, "supervisor-stopped");
    assert_eq!(
        rest.len(),
        children + 1,
        "one shutdown exit per child: {rest:?}"
    );
    assert!(rest[..children].iter().all(|b| b.ends_with(" shutdown")));
    base.assert_restored();
}

/// How many of `events` report a panicked exit.
fn panicked_exits(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::ChildExited {
                    reason: ExitReason::Panicked(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn an_intensity_trip_mid_storm_stops_the_inner_tree_and_escalates() {
    let _serial = serial();
    quiet();
    let base = Baseline::take();
    const WORKERS: usize = 20;
    const INTENSITY: u32 = 50;
    // Workers take crash orders by rendezvous, so an order is only ever taken by a live
    // worker, and orders stop the moment the first inner supervisor is gone.
    let orders: Vec<(Sender<()>, Receiver<()>)> = (0..WORKERS).map(|_| bounded(0)).collect();
    let mut inner = Supervisor::builder().intensity(INTENSITY, Duration::from_secs(60));
    for (i, (_, rx)) in orders.iter().enumerate() {
        let rx = rx.clone();
        inner = inner.child(ChildSpec::worker(format!("w{i}"), move |ctx| {
            ctx.recv(&rx)?;
            panic!("ordered to crash");
        }));
    }
    let (inner_sink, inner_events) = unbounded();
    let (top_sink, top_events) = unbounded();
    let top = Supervisor::builder()
        .event_sink(top_sink)
        .child(ChildSpec::supervisor("inner", inner.event_sink(inner_sink)))
        .start()
        .unwrap();
    let first_inner = pid_of(&top.which_children().unwrap(), "inner").unwrap();
    let orders: Arc<Vec<Sender<()>>> = Arc::new(orders.into_iter().map(|(tx, _)| tx).collect());
    let taken = Arc::new(AtomicUsize::new(0));
    let pokers: Vec<_> = (0..4)
        .map(|p| {
            let (orders, taken) = (orders.clone(), taken.clone());
            thread::spawn(move || {
                let mut rng = Rng::new(p + 100);
                while first_inner.is_alive() {
                    let i = rng.below(orders.len());
                    if orders[i].send_timeout((), Duration::from_millis(5)).is_ok() {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The top supervisor sees its permanent child exit (`shutdown`, as OTP's) and
    // restarts it: the escalation.
    assert_eq!(
        briefs_through(&top_events, "restarted inner"),
        ["started inner", "exited inner shutdown", "restarted inner"]
    );
    for p in pokers {
        p.join().unwrap();
    }
    // The first inner tree, up to its end: every order taken is one crash in the events;
    // exactly `INTENSITY` restarts; then every worker but the one whose crash tripped it
    // stops, in reverse start order; then the supervisor, and nothing after it.
    let first = until(&inner_events, |e| {
        matches!(e, Event::SupervisorStopped { .. })
    });
    let trip = first
        .iter()
        .position(|e| matches!(e, Event::IntensityExceeded { .. }))
        .expect("the intensity was exceeded");
    let restarts = first
        .iter()
        .filter(|e| matches!(e, Event::ChildRestarted { .. }))
        .count();
    assert_eq!(restarts, INTENSITY as usize);
    let crashes = panicked_exits(&first);
    // Orders stop once the first tree is gone; one already on its way may reach the
    // second tree: those crashes are counted when it is shut down, below.
    // A crash the supervisor learns of while stopping shows as an exit and a restart
    // right before that child's last exit; the last exits are what the stop did.
    let after = &first[trip + 1..first.len() - 1];
    let last_exits: Vec<String> = after
        .iter()
        .enumerate()
        .filter_map(|(k, e)| match e {
            Event::ChildExited { id, .. }
                if !matches!(after.get(k + 1), Some(Event::ChildRestarted { .. })) =>
            {
                Some(id.to_string())
            }
            _ => None,
        })
        .collect();
    let mut reverse: Vec<String> = (0..WORKERS).rev().map(|i| format!("w{i}")).collect();
    assert_eq!(last_exits.len(), WORKERS - 1, "{last_exits:?}");
    reverse.retain(|id| last_exits.contains(id));
    assert_eq!(last_exits, reverse);
    // No worker of the first tree is left running.
    let pids: Vec<Pid> = first
        .iter()
        .filter_map(|e| match e {
            Event::ChildStarted { pid, .. } | Event::ChildRestarted { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert!(pids.iter().all(|p| !p.is_alive()));
    top.shutdown().unwrap();
    let second = until(&inner_events, |e| {
        matches!(e, Event::SupervisorStopped { .. })
    });
    let late = panicked_exits(&second);
    assert_eq!(
        crashes + late,
        taken.load(Ordering::Relaxed),
        "each crash seen once"
    );
    base.assert_restored();
}

#[test]
fn churn_of_dynamic_children_with_concurrent_listing() {
    let _serial = serial();
    let base = Baseline::take();
    let per_thread = scaled(5_000);
    let pool = DynamicSupervisor::builder().start().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|t| {
            let pool = pool.handle();
            thread::spawn(move || {
                let mut rng = Rng::new(t + 7);
                let mut mine = Vec::new();
                let mut started = 0;
                while started < per_thread || !mine.is_empty() {
                    // Keep up to 16 of its own alive, in a random order of starts and stops.
                    let start = started < per_thread && (mine.len() < 16 && rng.below(2) == 0);
                    if start || mine.is_empty() {
                        mine.push(pool.start_child(idle("churn")).unwrap());
                        started += 1;
                    } else {
                        let pid = mine.swap_remove(rng.below(mine.len()));
                        pool.terminate_child(pid).unwrap();
                        // Terminating it again is the one expected error.
                        assert!(matches!(
                            pool.terminate_child(pid),
                            Err(SupervisorError::NotFound)
                        ));
                    }
                }
                started
            })
        })
        .collect();
    let lister = {
        let (pool, done) = (pool.handle(), done.clone());
        thread::spawn(move || {
            let mut listings = 0;
            while !done.load(Ordering::Acquire) {
                let children = pool.which_children().unwrap();
                assert!(children.len() <= 32, "{} children", children.len());
                assert!(children.iter().all(|c| c.pid.is_some()));
                listings += 1;
            }
            listings
        })
    };
    let started: usize = churners.into_iter().map(|c| c.join().unwrap()).sum();
    done.store(true, Ordering::Release);
    assert!(lister.join().unwrap() > 0);
    assert_eq!(started, 2 * per_thread);
    assert_eq!(pool.count_children().unwrap().specs, 0);
    pool.shutdown().unwrap();
    base.assert_restored();
}

#[test]
fn a_full_thread_cap_refuses_starts_and_recovers() {
    let _serial = serial();
    let base = Baseline::take();
    let room = scaled(1_000);
    let default = steadfast::max_threads();
    let pool = DynamicSupervisor::builder().start().unwrap();
    steadfast::set_max_threads(steadfast::live_threads() + room);
    let mut pids: Vec<Pid> = (0..room)
        .map(|_| pool.start_child(idle("filler")).unwrap())
        .collect();
    for _ in 0..3 {
        let err = pool.start_child(idle("one-too-many")).unwrap_err();
        assert!(
            matches!(
                err,
                SupervisorError::StartFailed(StartError::Spawn {
                    source: SpawnError::ThreadLimit { .. },
                    ..
                })
            ),
            "{err:?}"
        );
    }
    // Healthy: it answers, and a new tree is refused as cleanly.
    assert_eq!(pool.count_children().unwrap().active, room);
    assert!(Supervisor::builder().child(idle("x")).start().is_err());
    for pid in pids.drain(..10) {
        pool.terminate_child(pid).unwrap();
    }
    for _ in 0..10 {
        pids.push(pool.start_child(idle("again")).unwrap());
    }
    assert!(pool.start_child(idle("one-too-many")).is_err());
    steadfast::set_max_threads(default);
    pool.shutdown().unwrap();
    base.assert_restored();
}

// ---- the registry under random concurrent use, against a model ------------------------

enum Op {
    Register(u32, Sender<Result<(), RegistryError>>),
    Unregister(u32, Sender<bool>),
    Exit,
}

/// A process that registers and unregisters keys (its value: its own pid) when told.
fn registrar(reg: Registry<u32, u64>, ops: Receiver<Op>) -> ChildSpec {
    ChildSpec::worker("registrar", move |ctx| loop {
        match ctx.recv(&ops)? {
            Op::Register(k, reply) => {
                let _ = reply.send(reg.register(k, ctx.pid().as_u64()));
            }
            Op::Unregister(k, reply) => {
                let _ = reply.send(reg.unregister(&k).is_some());
            }
            Op::Exit => return Ok(()),
        }
    })
    .restart(Restart::Temporary)
}

struct Proc {
    pid: Pid,
    ops: Sender<Op>,
}

#[test]
fn registry_under_random_concurrent_use_matches_a_model() {
    let _serial = serial();
    let base = Baseline::take();
    const DRIVERS: u64 = 8;
    const KEYS: u32 = 24;
    let total_ops = scaled(100_000);
    let reg: Registry<u32, u64> = Registry::new();
    let pool = DynamicSupervisor::builder().start().unwrap();
    // The observation clock: each exit a driver has observed (its monitor fired) gets a
    // tick. A look-up started after that tick must never return that holder.
    let clock = Arc::new(AtomicU64::new(1));
    let exited_at: Arc<Mutex<HashMap<Pid, u64>>> = Arc::default();
    let stale = Arc::new(AtomicUsize::new(0));
    let drivers: Vec<_> = (0..DRIVERS)
        .map(|d| {
            let (reg, pool) = (reg.clone(), pool.handle());
            let (clock, exited_at, stale) = (clock.clone(), exited_at.clone(), stale.clone());
            thread::spawn(move || {
                let mut rng = Rng::new(d + 1000);
                // Each driver writes its own key range (so its model is exact) and looks
                // up everyone's.
                let own = |k: u32| d as u32 * KEYS + k;
                let mut procs: Vec<Proc> = Vec::new();
                let mut model: HashMap<u32, Pid> = HashMap::new();
                let ops = total_ops / DRIVERS as usize;
                for _ in 0..ops {
                    match rng.below(20) {
                        // Look-up (the most common operation).
                        0..=8 => {
                            let key = rng.below((KEYS * DRIVERS as u32) as usize) as u32;
                            let start = clock.load(Ordering::SeqCst);
                            if let Some((pid, value)) = reg.lookup(&key) {
                                assert_eq!(value, pid.as_u64());
                                let seen = exited_at.lock().get(&pid).copied();
                                if seen.is_some_and(|t| t < start) {
                                    stale.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            if key / KEYS == d as u32 {
                                let holder = reg.lookup(&key).map(|(p, _)| p);
                                assert_eq!(holder, model.get(&key).copied(), "key {key}");
                            }
                        }
                        // A new process.
                        9..=11 if procs.len() < 6 => {
                            let (tx, rx) = unbounded();
                            let pid = pool.start_child(registrar(reg.clone(), rx)).unwrap();
                            procs.push(Proc { pid, ops: tx });
                        }
                        // A process registers a key.
                        9..=15 if !procs.is_empty() => {
                            let p = &procs[rng.below(procs.len())];
                            let key = own(rng.below(KEYS as usize) as u32);
                            let (tx, rx) = bounded(1);
                            p.ops.send(Op::Register(key, tx)).unwrap();
                            let got = rx.recv_timeout(DEADLINE).unwrap();
                            match model.get(&key) {
                                Some(&holder) => assert!(
                                    matches!(got, Err(RegistryError::AlreadyRegistered(h)) if h == holder),
                                    "key {key}: {got:?}, model says {holder}"
                                ),
                                None => {
                                    got.unwrap();
                                    model.insert(key, p.pid);
                                }
                            }
                        }
                        // A process unregisters a key (its own, or one it does not hold).
                        16..=17 if !procs.is_empty() => {
                            let p = &procs[rng.below(procs.len())];
                            let key = own(rng.below(KEYS as usize) as u32);
                            let (tx, rx) = bounded(1);
                            p.ops.send(Op::Unregister(key, tx)).unwrap();
                            let removed = rx.recv_timeout(DEADLINE).unwrap();
                            let holds = model.get(&key) == Some(&p.pid);
                            assert_eq!(removed, holds, "key {key}");
                            if holds {
                                model.remove(&key);
                            }
                        }
                        // A process exits; its names go with it.
                        _ if !procs.is_empty() => {
                            let p = procs.swap_remove(rng.below(procs.len()));
                            let exit = monitor(p.pid);
                            p.ops.send(Op::Exit).unwrap();
                            assert_eq!(exit.recv_timeout(DEADLINE).unwrap(), ExitReason::Normal);
                            let tick = clock.fetch_add(1, Ordering::SeqCst);
                            exited_at.lock().insert(p.pid, tick);
                            model.retain(|_, holder| *holder != p.pid);
                            // Observed exit: its keys are already free.
                            for (k, holder) in model.iter() {
                                assert_ne!(*holder, p.pid, "key {k}");
                            }
                        }
                        _ => {}
                    }
                }
                (model.len(), procs)
            })
        })
        .collect();
    let mut expected = 0;
    let mut procs = Vec::new();
    for d in drivers {
        let (held, mine) = d.join().unwrap();
        expected += held;
        procs.extend(mine);
    }
    assert_eq!(
        stale.load(Ordering::SeqCst),
        0,
        "a look-up returned an observed-dead holder"
    );
    assert_eq!(reg.count(), expected);
    // Stopping everything empties the registry before the shutdown returns.
    drop(procs);
    pool.shutdown().unwrap();
    assert_eq!(reg.count(), 0);
    base.assert_restored();
}

#[test]
fn starts_racing_a_shutdown_either_fail_or_are_stopped_by_it() {
    let _serial = serial();
    let base = Baseline::take();
    for round in 0..scaled(20) {
        let pool = DynamicSupervisor::builder().start().unwrap();
        let handle = pool.handle();
        let starter = thread::spawn(move || {
            let mut started = Vec::new();
            loop {
                match handle.start_child(idle("racer")) {
                    Ok(pid) => started.push(pid),
                    Err(SupervisorError::NoSupervisor) => return started,
                    Err(e) => panic!("round {round}: unexpected {e:?}"),
                }
            }
        });
        // Let some starts through, then shut down under the starter's feet.
        steadfast::wait::until(DEADLINE, || {
            pool.count_children().map(|c| c.active).unwrap_or(0) >= 3
        })
        .unwrap();
        pool.shutdown().unwrap();
        let started = starter.join().unwrap();
        assert!(started.len() >= 3);
        // Every child that was started is gone: none escaped the shutdown.
        assert!(started.iter().all(|p| !p.is_alive()), "round {round}");
    }
    base.assert_restored();
}

/// A child that reports readiness, of one of four kinds: ready at once, ready after a few
/// yields, exiting before it is ready, or a nested supervisor with one idle worker.
fn ready_kind(kind: usize) -> ChildSpec {
    match kind {
        0 => ChildSpec::worker("ready", |ctx| {
            ctx.ready();
            let _ = ctx.stop_signal().recv();
            Ok(())
        })
        .ready_timeout(DEADLINE),
        1 => ChildSpec::worker("slow", |ctx| {
            for _ in 0..50 {
                thread::yield_now();
            }
            ctx.ready();
            let _ = ctx.stop_signal().recv();
            Ok(())
        })
        .ready_timeout(DEADLINE),
        2 => ChildSpec::worker("broken", |_| Err("no config".into())).ready_timeout(DEADLINE),
        _ => ChildSpec::supervisor("inner", Supervisor::builder().child(idle("w"))),
    }
}

#[test]
fn readiness_starts_racing_a_shutdown_are_handed_over_or_stopped() {
    // Callers await readiness themselves; a shutdown that comes meanwhile must wait for
    // them to stop what they started, and none of it may outlive the shutdown.
    let _serial = serial();
    let base = Baseline::take();
    for round in 0..scaled(20) {
        let pool = DynamicSupervisor::builder().start().unwrap();
        let starters: Vec<_> = (0..3)
            .map(|t| {
                let handle = pool.handle();
                thread::spawn(move || {
                    let mut rng = Rng::new((round * 3 + t) as u64 + 1);
                    let mut started = Vec::new();
                    loop {
                        let kind = rng.below(4);
                        match handle.start_child(ready_kind(kind)) {
                            Ok(pid) => {
                                assert_ne!(kind, 2, "round {round}: a broken child started");
                                started.push(pid);
                            }
                            Err(SupervisorError::StartFailed(StartError::ChildExited {
                                ..
                            })) if kind == 2 => {}
                            Err(SupervisorError::NoSupervisor) => return started,
                            Err(e) => panic!("round {round}: kind {kind}: unexpected {e:?}"),
                        }
                    }
                })
            })
            .collect();
        steadfast::wait::until(DEADLINE, || {
            pool.count_children().map(|c| c.active).unwrap_or(0) >= 6
        })
        .unwrap();
        pool.shutdown().unwrap();
        for starter in starters {
            let started = starter.join().unwrap();
            // Every child that was started is gone: none escaped the shutdown.
            assert!(started.iter().all(|p| !p.is_alive()), "round {round}");
        }
    }
    base.assert_restored();
}
