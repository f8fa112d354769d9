//! Servers and pools, each next to its floor in the same run:
//! - a call round trip against a bare crossbeam request/reply pair between two threads
//!   (a request channel, a reply channel per call: what users wrote by hand);
//! - cast throughput against a bare channel into a thread;
//! - calls back to back against the same hand-written server spinning instead of
//!   parking, and against a bare `u64` exchange between two spinning threads;
//! - a chain of twenty timers against a bare `recv_timeout` loop;
//! - pool throughput on trivial jobs against a hand-rolled crossbeam worker pool.
//!
//! `cargo bench -p steadfast-benches --bench servers`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::bounded;
use steadfast::pool::Pool;
use steadfast::server::ServerSpec;
use steadfast::Supervisor;

#[path = "server_floor.rs"]
mod server_floor;

use server_floor::{
    bare_call, bare_server, bare_ticker, lean_call, lean_server, spinning_call, spinning_server,
    Bare, Chain, Counter, Ticker,
};

const CASTS: u64 = 1_000;

fn servers(c: &mut Criterion) {
    let mut g = c.benchmark_group("server");
    let (bare, bare_thread) = bare_server();
    let (spec, counter) = ServerSpec::new("counter", |_| Ok(Counter(0))).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();

    g.bench_function("call/floor_crossbeam_request_reply", |b| {
        b.iter(|| bare_call(&bare, 1))
    });
    g.bench_function("call/steadfast", |b| b.iter(|| counter.call(1).unwrap()));

    g.throughput(Throughput::Elements(CASTS));
    g.bench_function("cast_1000/floor_channel", |b| {
        b.iter(|| {
            for _ in 0..CASTS {
                bare.send(Bare::Cast(1)).unwrap();
            }
            bare_call(&bare, 0)
        })
    });
    g.bench_function("cast_1000/steadfast", |b| {
        b.iter(|| {
            for _ in 0..CASTS {
                counter.cast(1).unwrap();
            }
            counter.call(0).unwrap()
        })
    });
    g.finish();
    drop(bare);
    bare_thread.join().unwrap();

    // Calls back to back (criterion's loop makes them so), against hand-written servers
    // whose threads spin too: the same protocol (a reply channel per call), and the
    // leanest exchange there is (a u64 each way on two persistent channels).
    let mut g = c.benchmark_group("server_back_to_back");
    let (spinning, spinning_thread) = spinning_server();
    g.bench_function("call/floor_spinning_hand_written", |b| {
        b.iter(|| spinning_call(&spinning, 1))
    });
    let (req, rep, lean_thread) = lean_server();
    g.bench_function("call/floor_spinning_u64", |b| {
        b.iter(|| lean_call(&req, &rep, 1))
    });
    g.bench_function("call/steadfast", |b| b.iter(|| counter.call(1).unwrap()));
    g.finish();
    drop((spinning, req));
    spinning_thread.join().unwrap();
    lean_thread.join().unwrap();
    drop(sup);

    // Twenty 50 µs timers in a row: a server's send_after against a bare recv_timeout.
    let mut g = c.benchmark_group("server_timer");
    let (ticks, ticks_thread) = bare_ticker();
    g.bench_function("chain_20/floor_recv_timeout", |b| {
        b.iter(|| {
            let (done_tx, done) = bounded(1);
            ticks.send(done_tx).unwrap();
            done.recv().unwrap()
        })
    });
    let (spec, ticker) = ServerSpec::new("ticker", |_| Ok(Ticker::new())).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    g.bench_function("chain_20/steadfast", |b| {
        b.iter(|| ticker.call(Chain).unwrap())
    });
    g.finish();
    drop(ticks);
    ticks_thread.join().unwrap();
    drop(sup);
}

const JOBS: u64 = 10_000;
const WORKERS: usize = 2;

/// Waits (spinning, then yielding) until `count` reaches `target`.
fn spin_until(count: &AtomicU64, target: u64) {
    while count.load(Ordering::Acquire) < target {
        thread::yield_now();
    }
}

fn pools(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(JOBS));

    // The hand-rolled pool: workers over a bounded crossbeam channel.
    let done = Arc::new(AtomicU64::new(0));
    let (tx, rx) = bounded::<u64>(1024);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (rx, done) = (rx.clone(), done.clone());
            thread::spawn(move || {
                for job in rx {
                    std::hint::black_box(job);
                    done.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    g.bench_function("jobs_10000/floor_crossbeam_pool", |b| {
        b.iter(|| {
            let start = done.load(Ordering::Acquire);
            for job in 0..JOBS {
                tx.send(job).unwrap();
            }
            spin_until(&done, start + JOBS);
        })
    });
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }

    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let pool = Pool::builder(WORKERS, move |job: &u64, _ctx| {
        std::hint::black_box(job);
        d.fetch_add(1, Ordering::AcqRel);
        Ok(())
    })
    .capacity(1024)
    .start()
    .unwrap();
    g.bench_function("jobs_10000/steadfast", |b| {
        b.iter(|| {
            let start = done.load(Ordering::Acquire);
            for job in 0..JOBS {
                pool.submit(job).unwrap();
            }
            spin_until(&done, start + JOBS);
        })
    });
    g.finish();
    pool.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = servers, pools
}
criterion_main!(benches);
