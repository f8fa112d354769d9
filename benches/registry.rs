//! Registry hot paths, each next to its floor: a bare `parking_lot::RwLock<HashMap>`
//! measured in the same run.
//!
//! `cargo bench --bench registry`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use parking_lot::RwLock;
use steadfast::Registry;

const KEYS: usize = 1_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("session-{i:04}")).collect()
}

/// Runs `op(i)` `iters` times on each of `threads` threads at once; returns the wall time
/// divided by the thread count, so criterion reports aggregate time per operation.
fn parallel(threads: usize, iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, op) = (&barrier, &op);
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters as usize {
                    op(i.wrapping_mul(7).wrapping_add(t * 31) % KEYS);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed() / threads as u32
    })
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let reg: Registry<String, u64> = Registry::new();
    let bare: RwLock<HashMap<String, u64>> = RwLock::new(HashMap::new());
    for (i, k) in keys.iter().enumerate() {
        reg.register(k.clone(), i as u64).unwrap();
        bare.write().insert(k.clone(), i as u64);
    }
    let mut g = c.benchmark_group("registry");
    for threads in [1, 2] {
        g.bench_function(
            format!("lookup_{threads}_thread/floor_rwlock_hashmap"),
            |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, |i| {
                        black_box(bare.read().get(keys[i].as_str()).copied());
                    })
                })
            },
        );
        g.bench_function(format!("lookup_{threads}_thread/steadfast"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |i| {
                    black_box(reg.lookup(keys[i].as_str()));
                })
            })
        });
    }
    g.bench_function("register_unregister/floor_rwlock_hashmap", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            let k = keys[i].clone();
            bare.write().insert(k, 1);
            black_box(bare.write().remove(keys[i].as_str()));
        })
    });
    let fresh: Registry<String, u64> = Registry::new();
    g.bench_function("register_unregister/steadfast", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            fresh.register(keys[i].clone(), 1).unwrap();
            black_box(fresh.unregister(keys[i].as_str()));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = lookup
}
criterion_main!(benches);
