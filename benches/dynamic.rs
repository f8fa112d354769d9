//! Dynamic supervisors: start+stop of 1, 100 and 1,000 children, start alone (also on a
//! kept thread), and shutdown of 1,000, each next to bare threads doing the same in the
//! same run.
//!
//! `cargo bench --bench dynamic`

use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_channel::bounded;
use steadfast::{ChildSpec, DynamicSupervisor};

fn idle() -> ChildSpec {
    ChildSpec::worker("idle", |ctx| {
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
}

/// A bare thread that runs until its sender is dropped.
fn bare() -> (crossbeam_channel::Sender<()>, thread::JoinHandle<()>) {
    let (tx, rx) = bounded::<()>(0);
    (
        tx,
        thread::spawn(move || {
            let _ = rx.recv();
        }),
    )
}

fn start_stop(c: &mut Criterion) {
    let mut g = c.benchmark_group("dynamic");
    g.sample_size(20);
    let sup = DynamicSupervisor::builder().start().unwrap();
    for n in [1usize, 100, 1_000] {
        g.bench_with_input(
            BenchmarkId::new("start_stop/floor_spawn_join", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    let threads: Vec<_> = (0..n).map(|_| bare()).collect();
                    for (tx, h) in threads {
                        drop(tx);
                        h.join().unwrap();
                    }
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("start_stop/steadfast", n), &n, |b, &n| {
            b.iter(|| {
                let pids: Vec<_> = (0..n).map(|_| sup.start_child(idle()).unwrap()).collect();
                for pid in pids {
                    sup.terminate_child(pid).unwrap();
                }
            })
        });
    }
    // Start alone (the stop is done, untimed, after each start).
    g.bench_function("start_only/floor_spawn", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let (tx, h) = bare();
                total += t.elapsed();
                drop(tx);
                h.join().unwrap();
            }
            total
        })
    });
    // Ours, and the same with threads kept for reuse (each start runs on the last
    // child's thread).
    drop(sup);
    for (name, reuse) in [
        ("start_only/steadfast", false),
        ("start_only/steadfast_reused", true),
    ] {
        let mut builder = DynamicSupervisor::builder();
        if reuse {
            builder = builder.reuse_threads(4);
        }
        let sup = builder.start().unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let pid = sup.start_child(idle()).unwrap();
                    total += t.elapsed();
                    sup.terminate_child(pid).unwrap();
                }
                total
            })
        });
    }

    // Shutdown of 1,000: only the stop is timed.
    g.bench_function("shutdown_1000/floor_signal_all_join_all", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let threads: Vec<_> = (0..1_000).map(|_| bare()).collect();
                let t = Instant::now();
                let (txs, handles): (Vec<_>, Vec<_>) = threads.into_iter().unzip();
                drop(txs);
                for h in handles {
                    h.join().unwrap();
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("shutdown_1000/steadfast", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let sup = DynamicSupervisor::builder().start().unwrap();
                for _ in 0..1_000 {
                    sup.start_child(idle()).unwrap();
                }
                let t = Instant::now();
                sup.shutdown().unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    targets = start_stop
}
criterion_main!(benches);
