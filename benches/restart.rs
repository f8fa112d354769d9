//! Restart latency — crash → replacement running — next to its floors, measured in the
//! same run: a hand-rolled supervisor that spawns a thread per restart, and a thread that
//! catches its own panic and re-enters the function.
//!
//! `cargo bench --bench restart`. Run with `RUST_BACKTRACE` unset: with it set, every
//! panic captures a backtrace (≈16 µs) in the standard panic hook. The panic hook is
//! silenced for every thread, floors included, so no row pays for a stderr print.

use std::panic::{self, AssertUnwindSafe};
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use steadfast::{ChildSpec, Strategy, Supervisor};

#[path = "group_floor.rs"]
mod group_floor;
use group_floor::HandGroup;

#[derive(Clone, Copy)]
enum Crash {
    Panic,
    Error,
}

/// A worker that reports each start on `started`, then crashes when told.
fn crasher(id: &str, crash: Receiver<Crash>, started: Sender<()>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        started.send(()).unwrap();
        match ctx.recv(&crash)? {
            Crash::Panic => panic!("crash"),
            Crash::Error => Err("crash".into()),
        }
    })
}

/// The floor: a hand-rolled supervisor thread that spawns a fresh thread per restart.
fn hand_rolled(crash: Receiver<Crash>, started: Sender<()>, stop: Receiver<()>) {
    let (exit_tx, exit_rx) = unbounded::<()>();
    let spawn = |crash: Receiver<Crash>, started: Sender<()>, exit: Sender<()>| {
        thread::spawn(move || {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                started.send(()).unwrap();
                if let Ok(Crash::Panic) = crash.recv() {
                    panic!("crash")
                }
            }));
            drop(r);
            let _ = exit.send(());
        })
    };
    let mut worker = spawn(crash.clone(), started.clone(), exit_tx.clone());
    loop {
        crossbeam_channel::select! {
            recv(exit_rx) -> _ => {
                let _ = worker.join();
                worker = spawn(crash.clone(), started.clone(), exit_tx.clone());
            }
            recv(stop) -> _ => break,
        }
    }
    drop(crash);
    let _ = worker.join();
}

/// Waits for a message without ever parking: the rows that use it measure the restart
/// itself, without the measuring thread's own wake-up (a parked thread takes 5–30 µs to
/// wake on a VM, more than a panicking restart costs).
fn spin_recv(rx: &Receiver<()>) {
    while rx.try_recv().is_err() {
        std::hint::spin_loop();
    }
}

fn one_for_one(c: &mut Criterion) {
    // Silence panic output for every thread, floors included, so that no row pays for a
    // stderr print; supervised panics are still logged through `log` (no logger here).
    panic::set_hook(Box::new(|_| {}));
    steadfast::route_panics_to_log();
    let mut g = c.benchmark_group("restart");

    {
        let (crash_tx, crash_rx) = unbounded();
        let (started_tx, started) = unbounded();
        let (stop_tx, stop_rx) = bounded(0);
        let sup = thread::spawn(move || hand_rolled(crash_rx, started_tx, stop_rx));
        started.recv().unwrap();
        g.bench_function("one_for_one/floor_spawn_per_restart", |b| {
            b.iter(|| {
                crash_tx.send(Crash::Panic).unwrap();
                started.recv().unwrap();
            })
        });
        drop(stop_tx);
        drop(crash_tx);
        sup.join().unwrap();
    }

    {
        let (crash_tx, crash_rx) = unbounded::<Crash>();
        let (started_tx, started) = unbounded();
        let t = thread::spawn(move || loop {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                started_tx.send(()).unwrap();
                match crash_rx.recv() {
                    Ok(_) => panic!("crash"),
                    Err(_) => true,
                }
            }));
            if matches!(r, Ok(true)) {
                break;
            }
        });
        started.recv().unwrap();
        g.bench_function("one_for_one/floor_same_thread_reentry", |b| {
            b.iter(|| {
                crash_tx.send(Crash::Panic).unwrap();
                started.recv().unwrap();
            })
        });
        g.bench_function(
            "one_for_one/floor_same_thread_reentry_observer_spins",
            |b| {
                b.iter(|| {
                    crash_tx.send(Crash::Panic).unwrap();
                    spin_recv(&started);
                })
            },
        );
        drop(crash_tx);
        t.join().unwrap();
    }

    for (name, crash, fresh) in [
        ("panic", Crash::Panic, false),
        ("error", Crash::Error, false),
        // What `ChildSpec::fresh_thread` costs: a new thread per restart, as the
        // hand-rolled floor does.
        ("fresh_thread_panic", Crash::Panic, true),
    ] {
        let (crash_tx, crash_rx) = unbounded();
        let (started_tx, started) = unbounded();
        let mut spec = crasher("w", crash_rx, started_tx);
        if fresh {
            spec = spec.fresh_thread();
        }
        let sup = Supervisor::builder()
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(spec)
            .start()
            .unwrap();
        started.recv().unwrap();
        g.bench_function(format!("one_for_one/steadfast_{name}"), |b| {
            b.iter(|| {
                crash_tx.send(crash).unwrap();
                started.recv().unwrap();
            })
        });
        if name == "panic" {
            g.bench_function("one_for_one/steadfast_panic_observer_spins", |b| {
                b.iter(|| {
                    crash_tx.send(crash).unwrap();
                    spin_recv(&started);
                })
            });
        }
        sup.shutdown().unwrap();
    }

    // one_for_all with 10 children: one crashes, all ten are running again.
    {
        let (started_tx, started) = unbounded();
        let (crash_tx, crash_rx) = unbounded();
        let mut builder = Supervisor::builder()
            .strategy(Strategy::OneForAll)
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(crasher("w0", crash_rx, started_tx.clone()));
        for i in 1..10 {
            let (_never, rx) = unbounded::<Crash>();
            std::mem::forget(_never);
            builder = builder.child(crasher(&format!("w{i}"), rx, started_tx.clone()));
        }
        let sup = builder.start().unwrap();
        for _ in 0..10 {
            started.recv().unwrap();
        }
        g.bench_function("one_for_all_10/steadfast", |b| {
            b.iter(|| {
                crash_tx.send(Crash::Error).unwrap();
                for _ in 0..10 {
                    started.recv().unwrap();
                }
            })
        });
        sup.shutdown().unwrap();
    }
    g.bench_function("one_for_all_10/floor_same_protocol_by_hand", |b| {
        // The target's floor: a crash noticed by a coordinator, nine ordered stop
        // hand-offs, ten re-entries on the same threads, the observer told of each.
        let hand = HandGroup::start(10);
        b.iter(|| {
            hand.crash.send(()).unwrap();
            for _ in 0..10 {
                hand.started.recv().unwrap();
            }
        });
    });
    g.bench_function("one_for_all_10/floor_stop_9_spawn_10", |b| {
        // What a group restart must do at least: stop and join nine threads, start ten.
        let spawn = || {
            let (tx, rx) = bounded::<()>(0);
            (tx, thread::spawn(move || rx.recv().ok()))
        };
        let mut group: Vec<_> = (0..9).map(|_| spawn()).collect();
        b.iter(|| {
            for (tx, h) in group.drain(..).rev() {
                drop(tx);
                h.join().unwrap();
            }
            group = (0..10).map(|_| spawn()).collect();
            let (tx, h) = group.pop().unwrap(); // the one that "crashed" next time
            drop(tx);
            h.join().unwrap();
        });
        for (tx, h) in group {
            drop(tx);
            h.join().unwrap();
        }
    });
    g.bench_function("one_for_all_10/floor_9_ordered_handoffs", |b| {
        // What the stop order alone costs (the ordered stop: each child signalled only once the
        // one after it has exited): nine parked threads, each waking the next, the last
        // waking the caller. No work, no supervisor, no restart.
        let (first, mut rx) = bounded::<()>(1);
        let mut chain = Vec::new();
        for _ in 0..9 {
            let (tx, next) = bounded::<()>(1);
            let mine = std::mem::replace(&mut rx, next);
            chain.push(thread::spawn(move || {
                while mine.recv().is_ok() {
                    tx.send(()).unwrap();
                }
            }));
        }
        b.iter(|| {
            first.send(()).unwrap();
            rx.recv().unwrap();
        });
        drop(first);
        for t in chain {
            t.join().unwrap();
        }
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = one_for_one
}
criterion_main!(benches);
