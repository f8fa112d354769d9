//! The headline benchmarks without criterion, in well under a minute, printed as a table of
//! medians with the ratio to each floor measured in the same run — so you can see the
//! numbers on your own machine.
//!
//! Run with `cargo run --release --example bench_table` (and `RUST_BACKTRACE` unset).

use std::collections::HashMap;
use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::RwLock;
use steadfast::session::{NewSession, SessionManager};
use steadfast::{ChildSpec, DynamicSupervisor, Registry, Strategy, Supervisor};

/// The median time of one call of `op`, over `samples` samples of `batch` calls each.
fn median(samples: usize, batch: u32, mut op: impl FnMut()) -> Duration {
    for _ in 0..batch {
        op(); // warm up
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed() / batch
        })
        .collect();
    times.sort();
    times[samples / 2]
}

fn row(name: &str, floor_name: &str, floor: Duration, ours: Duration) {
    println!(
        "{name:<34} {:>11.2?} {floor_name:<26} {:>11.2?} {:>6.2}x",
        ours,
        floor,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}

fn idle(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |ctx| {
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
}

/// Receives without ever parking.
fn spin_recv(rx: &Receiver<()>) {
    while rx.try_recv().is_err() {
        std::hint::spin_loop();
    }
}

fn bare() -> (Sender<()>, thread::JoinHandle<()>) {
    let (tx, rx) = bounded::<()>(0);
    (
        tx,
        thread::spawn(move || {
            let _ = rx.recv();
        }),
    )
}

/// A supervised worker that reports each start and crashes when told.
fn crasher(id: &str, crash: Receiver<bool>, started: Sender<()>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        started.send(()).unwrap();
        if ctx.recv(&crash)? {
            panic!("crash");
        }
        Err("crash".into())
    })
}

fn main() {
    panic::set_hook(Box::new(|_| {}));
    steadfast::route_panics_to_log();
    println!(
        "{:<34} {:>11} {:<26} {:>11} {:>7}",
        "scenario", "steadfast", "floor (measured alongside)", "floor", "ratio"
    );

    // Restart: same-thread re-entry floor, and steadfast with an error and a panic.
    let reentry = {
        let (crash_tx, crash_rx) = unbounded::<()>();
        let (started_tx, started) = unbounded();
        let t = thread::spawn(move || loop {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                started_tx.send(()).unwrap();
                crash_rx.recv().is_err() || panic!("crash")
            }));
            if matches!(r, Ok(true)) {
                break;
            }
        });
        started.recv().unwrap();
        let blocking = median(21, 200, || {
            crash_tx.send(()).unwrap();
            started.recv().unwrap();
        });
        let spinning = median(21, 200, || {
            crash_tx.send(()).unwrap();
            spin_recv(&started);
        });
        drop(crash_tx);
        t.join().unwrap();
        (blocking, spinning)
    };
    let spawn_join = median(21, 20, || {
        let (tx, h) = bare();
        drop(tx);
        h.join().unwrap();
    });
    // The last row waits for the replacement without parking: the restart itself, without
    // the measuring thread's own wake-up (which a panicking restart often outlasts).
    for (name, panics, spin) in [
        ("restart one_for_one (error)", false, false),
        ("restart one_for_one (panic)", true, false),
        ("  ... observer spins", true, true),
    ] {
        let (crash_tx, crash_rx) = unbounded();
        let (started_tx, started) = unbounded();
        let sup = Supervisor::builder()
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(crasher("w", crash_rx, started_tx))
            .start()
            .unwrap();
        started.recv().unwrap();
        let d = median(21, 200, || {
            crash_tx.send(panics).unwrap();
            if spin {
                spin_recv(&started);
            } else {
                started.recv().unwrap();
            }
        });
        let floor = if spin { reentry.1 } else { reentry.0 };
        row(name, "same-thread re-entry", floor, d);
        sup.shutdown().unwrap();
    }

    // fresh_thread restarts against a hand-rolled spawn-per-restart supervisor, samples
    // taken in turn so that both see the same machine.
    {
        let (floor_crash, floor_crash_rx) = unbounded::<()>();
        let (floor_started_tx, floor_started) = unbounded();
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let hand_rolled = thread::spawn(move || {
            let (exit_tx, exit_rx) = unbounded::<()>();
            let spawn = |exit: Sender<()>| {
                let (crash, started) = (floor_crash_rx.clone(), floor_started_tx.clone());
                thread::spawn(move || {
                    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                        started.send(()).unwrap();
                        if crash.recv().is_ok() {
                            panic!("crash")
                        }
                    }));
                    let _ = exit.send(());
                })
            };
            let mut worker = spawn(exit_tx.clone());
            loop {
                crossbeam_channel::select! {
                    recv(exit_rx) -> _ => {
                        let _ = worker.join();
                        worker = spawn(exit_tx.clone());
                    }
                    recv(stop_rx) -> _ => break,
                }
            }
            worker
        });
        floor_started.recv().unwrap();
        let (crash_tx, crash_rx) = unbounded();
        let (started_tx, started) = unbounded();
        let sup = Supervisor::builder()
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(crasher("w", crash_rx, started_tx).fresh_thread())
            .start()
            .unwrap();
        started.recv().unwrap();
        let (mut floor_samples, mut our_samples) = (Vec::new(), Vec::new());
        for _ in 0..1_000 {
            let t = Instant::now();
            floor_crash.send(()).unwrap();
            floor_started.recv().unwrap();
            floor_samples.push(t.elapsed());
            let t = Instant::now();
            crash_tx.send(true).unwrap();
            started.recv().unwrap();
            our_samples.push(t.elapsed());
        }
        let mid = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        row(
            "restart fresh_thread (panic)",
            "spawn per restart",
            mid(floor_samples),
            mid(our_samples),
        );
        drop(stop_tx);
        drop(floor_crash);
        let last = hand_rolled.join().unwrap();
        let _ = last.join();
        sup.shutdown().unwrap();
    }

    // one_for_all with ten children: one crashes, all ten run again. Floor: what a group
    // restart does at the least with bare threads — stop and join nine, spawn ten.
    let floor = {
        let spawn = || {
            let (tx, rx) = unbounded::<()>();
            (tx, thread::spawn(move || rx.recv().ok()))
        };
        let mut group: Vec<_> = (0..9).map(|_| spawn()).collect();
        let d = median(15, 10, || {
            for (tx, h) in group.drain(..).rev() {
                drop(tx);
                h.join().unwrap();
            }
            group = (0..10).map(|_| spawn()).collect();
            let (tx, h) = group.pop().unwrap();
            drop(tx);
            h.join().unwrap();
        });
        for (tx, h) in group {
            drop(tx);
            h.join().unwrap();
        }
        d
    };
    {
        let (started_tx, started) = unbounded();
        let (crash_tx, crash_rx) = unbounded();
        let mut builder = Supervisor::builder()
            .strategy(Strategy::OneForAll)
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(crasher("w0", crash_rx, started_tx.clone()));
        let mut keep = Vec::new();
        for i in 1..10 {
            let (tx, rx) = unbounded();
            keep.push(tx);
            builder = builder.child(crasher(&format!("w{i}"), rx, started_tx.clone()));
        }
        let sup = builder.start().unwrap();
        for _ in 0..10 {
            started.recv().unwrap();
        }
        let d = median(15, 10, || {
            crash_tx.send(false).unwrap();
            for _ in 0..10 {
                started.recv().unwrap();
            }
        });
        row(
            "restart one_for_all, 10 children",
            "stop 9 + spawn 10",
            floor,
            d,
        );
        sup.shutdown().unwrap();
    }

    // Dynamic start + stop of one child.
    let pool = DynamicSupervisor::builder().start().unwrap();
    let d = median(21, 20, || {
        let pid = pool.start_child(idle("job")).unwrap();
        pool.terminate_child(pid).unwrap();
    });
    row("dynamic start+stop, 1 child", "spawn + join", spawn_join, d);
    // Start alone: each start timed, its stop not; floor and steadfast samples taken in
    // turn, so that both see the same machine.
    let (mut floor_samples, mut our_samples) = (Vec::new(), Vec::new());
    for _ in 0..201 {
        let t = Instant::now();
        let (tx, h) = bare();
        floor_samples.push(t.elapsed());
        drop(tx);
        h.join().unwrap();
        let t = Instant::now();
        let pid = pool.start_child(idle("job")).unwrap();
        our_samples.push(t.elapsed());
        pool.terminate_child(pid).unwrap();
    }
    let mid = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (floor, ours) = (mid(floor_samples), mid(our_samples));
    row("dynamic start, 1 child", "thread spawn", floor, ours);
    drop(pool);

    // Registry look-up.
    let keys: Vec<String> = (0..1_000).map(|i| format!("session-{i:04}")).collect();
    let reg: Registry<String, u64> = Registry::new();
    let bare_map: RwLock<HashMap<String, u64>> = RwLock::new(HashMap::new());
    for (i, k) in keys.iter().enumerate() {
        reg.register(k.clone(), i as u64).unwrap();
        bare_map.write().insert(k.clone(), i as u64);
    }
    let mut i = 0;
    let floor = median(21, 100_000, || {
        i = (i + 7) % keys.len();
        black_box(bare_map.read().get(keys[i].as_str()).copied());
    });
    let ours = median(21, 100_000, || {
        i = (i + 7) % keys.len();
        black_box(reg.lookup(keys[i].as_str()));
    });
    row("registry look-up, 1 thread", "RwLock<HashMap>", floor, ours);

    // Session create + terminate with two children.
    let floor = median(15, 10, || {
        let threads: Vec<_> = (0..3).map(|_| bare()).collect();
        for (tx, h) in threads {
            drop(tx);
            h.join().unwrap();
        }
    });
    let manager = SessionManager::builder()
        .children(|_| vec![idle("agent"), idle("state")])
        .start()
        .unwrap();
    let ours = median(15, 10, || {
        let id = manager
            .create_session(NewSession::new("bench", "/bench/project"))
            .unwrap();
        manager.terminate_session(id).unwrap();
    });
    row(
        "session create+terminate (2 ch.)",
        "3 threads spawn + join",
        floor,
        ours,
    );
    manager.shutdown();
}
