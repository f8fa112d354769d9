//! Registry hot paths, each next to its floor: a bare `parking_lot::RwLock<HashMap>`
//! measured in the same run. "Owner exit → name gone" compares a supervised process whose
//! name the registry drops on exit with a bare thread that removes its own key as it ends.
//!
//! `cargo bench --bench registry`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::RwLock;
use std::sync::Arc;
use steadfast::{monitor, ChildSpec, DynamicSupervisor, ExitReason, Registry, Restart};

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

/// Time from telling a name's owner to exit to the moment the exit is observed, by which
/// point the name must be gone.
fn owner_exit(c: &mut Criterion) {
    let mut g = c.benchmark_group("owner_exit_name_gone");
    // Floor: a bare thread owns an entry in a shared map; told to end, it removes the
    // entry and signals; the bench thread waits for the signal.
    let bare: Arc<RwLock<HashMap<u64, u64>>> = Arc::default();
    g.bench_function("floor_bare_thread", |b| {
        let mut n = 0u64;
        b.iter_batched(
            || {
                n += 1;
                let (key, map) = (n, bare.clone());
                let (go_tx, go) = bounded::<()>(1);
                let (gone_tx, gone) = bounded::<()>(1);
                let (ready_tx, ready) = bounded::<()>(1);
                map.write().insert(key, key);
                let t = std::thread::spawn(move || {
                    let _ = ready_tx.send(());
                    let _ = go.recv();
                    map.write().remove(&key);
                    let _ = gone_tx.send(());
                });
                ready.recv().unwrap();
                (key, go_tx, gone, t)
            },
            |(key, go_tx, gone, t): (u64, Sender<()>, Receiver<()>, _)| {
                go_tx.send(()).unwrap();
                gone.recv().unwrap();
                assert!(bare.read().get(&key).is_none());
                t
            },
            BatchSize::PerIteration,
        )
    });
    // steadfast: a dynamic child registers its name; told to return, it exits; the bench
    // thread waits on a monitor (fired after the name was dropped).
    let reg: Registry<u64, ()> = Registry::new();
    let pool = DynamicSupervisor::builder().start().unwrap();
    g.bench_function("steadfast", |b| {
        let mut n = 0u64;
        b.iter_batched(
            || {
                n += 1;
                let key = n;
                let (go_tx, go) = bounded::<()>(1);
                let (ready_tx, ready) = bounded::<()>(1);
                let r = reg.clone();
                let pid = pool
                    .start_child(
                        ChildSpec::worker("owner", move |ctx| {
                            r.register(key, ()).unwrap();
                            let _ = ready_tx.send(());
                            ctx.recv(&go)?;
                            Ok(())
                        })
                        .restart(Restart::Temporary),
                    )
                    .unwrap();
                ready.recv().unwrap();
                (key, go_tx, monitor(pid))
            },
            |(key, go_tx, exit): (u64, Sender<()>, Receiver<ExitReason>)| {
                go_tx.send(()).unwrap();
                assert_eq!(exit.recv().unwrap(), ExitReason::Normal);
                assert!(reg.lookup(&key).is_none());
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    pool.shutdown().unwrap();
}

/// Groups: dispatch to 1,000 members against a bare loop over the same senders, and
/// join + leave against the unique registry's register + unregister.
fn group_rows(c: &mut Criterion) {
    let mut g = c.benchmark_group("groups");
    const MEMBERS: usize = 1_000;
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let senders: Vec<crossbeam_channel::Sender<u64>> = (0..MEMBERS).map(|_| tx.clone()).collect();
    let topic: steadfast::Groups<&'static str, crossbeam_channel::Sender<u64>> =
        steadfast::Groups::new();
    for s in &senders {
        topic.join("topic", s.clone());
    }
    g.bench_function("dispatch_1000/floor_vec_of_senders", |b| {
        b.iter(|| {
            for s in &senders {
                s.send(1).unwrap();
            }
            for _ in rx.try_iter() {}
        })
    });
    g.bench_function("dispatch_1000/steadfast", |b| {
        b.iter(|| {
            black_box(topic.dispatch_send(&"topic", 1));
            for _ in rx.try_iter() {}
        })
    });
    let keys = keys();
    let reg: Registry<String, u64> = Registry::new();
    g.bench_function("join_leave/floor_register_unregister", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            reg.register(keys[i].clone(), 1).unwrap();
            black_box(reg.unregister(keys[i].as_str()));
        })
    });
    let groups: steadfast::Groups<String, u64> = steadfast::Groups::new();
    g.bench_function("join_leave/steadfast", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % KEYS;
            groups.join(keys[i].clone(), 1);
            black_box(groups.leave(keys[i].as_str()));
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
    targets = lookup, owner_exit, group_rows
}
criterion_main!(benches);
