//! The headline benchmarks without criterion, in about ten seconds: each row's figure is
//! sampled in turn with its floor (so both see the same machine), medians are printed as
//! a table with the ratio and the target, and then once more as lines a script reads:
//!
//! ```text
//! ROW name=<snake_case> ours_ns=<n> floor_ns=<n> ratio=<r> target=<r>
//! ```
//!
//! `--check` makes it exit non-zero when a row misses its target; any other argument
//! names the sections to run (`restarts`, `one_for_all`, `dynamic`, `sessions`,
//! `registry`, `servers`, `ten_thousand`, `memory`), all by default. Every target is a
//! ratio to a floor measured in the same run (a row kept as context only has an
//! infinite target).
//!
//! Run with `cargo run --release -p steadfast-benches --example bench_table [-- --check]`
//! (and `RUST_BACKTRACE` unset: with it, every panic captures a backtrace).

use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
#[path = "group_floor.rs"]
mod group_floor;
#[path = "server_floor.rs"]
mod server_floor;

use group_floor::HandGroup;
use server_floor::{
    bare_call, bare_server, bare_ticker, lean_call, lean_server, spinning_call, spinning_server,
    Bare, Chain, Counter, Ticker,
};
use steadfast::pool::Pool;
use steadfast::server::ServerSpec;
use steadfast::session::{NewSession, SessionManager};
use steadfast::{ChildSpec, DynamicSupervisor, Groups, Registry, Strategy, Supervisor};

/// A look-up under test (`lookup_2_threads`).
type Lookup = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// A group of rows, run together.
type Section = fn(&mut Vec<Row>);

/// One line of the table.
struct Row {
    name: &'static str,
    floor_what: &'static str,
    ours: Duration,
    floor: Duration,
    target: f64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours.as_secs_f64() / self.floor.as_secs_f64()
    }

    fn met(&self) -> bool {
        self.ratio() <= self.target
    }
}

/// Medians of one call of `floor` and of `ours`, `samples` samples of `batch` calls each,
/// the two sampled in turn.
fn paired(
    samples: usize,
    batch: u32,
    mut floor: impl FnMut(),
    mut ours: impl FnMut(),
) -> (Duration, Duration) {
    for _ in 0..batch {
        floor();
        ours();
    }
    let (mut f, mut o) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..batch {
            floor();
        }
        f.push(t.elapsed() / batch);
        let t = Instant::now();
        for _ in 0..batch {
            ours();
        }
        o.push(t.elapsed() / batch);
    }
    (median(f), median(o))
}

/// `paired` in `rounds` rounds, each with its own warm-up: the medians over the rounds'
/// medians (for rows whose floor is bimodal from one round to the next).
fn paired_rounds(
    rounds: usize,
    samples: usize,
    batch: u32,
    mut floor: impl FnMut(),
    mut ours: impl FnMut(),
) -> (Duration, Duration) {
    let (f, o): (Vec<_>, Vec<_>) = (0..rounds)
        .map(|_| paired(samples, batch, &mut floor, &mut ours))
        .unzip();
    (median(f), median(o))
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
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

/// A supervised worker that reports each start and crashes when told (panics on `true`,
/// returns `Err` on `false`).
fn crasher(id: &str, crash: Receiver<bool>, started: Sender<()>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        started.send(()).unwrap();
        if ctx.recv(&crash)? {
            panic!("crash");
        }
        Err("crash".into())
    })
}

/// The floor of a one_for_one restart: a bare thread that catches its own panic (or
/// error) and re-enters its function, telling an observer each time.
struct Reentry {
    crash: Sender<bool>,
    started: Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reentry {
    fn start() -> Reentry {
        let (crash, crash_rx) = unbounded::<bool>();
        let (started_tx, started) = unbounded();
        let thread = thread::spawn(move || loop {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                started_tx.send(()).unwrap();
                match crash_rx.recv() {
                    Ok(true) => panic!("crash"),
                    Ok(false) => Ok(()),
                    Err(_) => Err(()),
                }
            }));
            if matches!(r, Ok(Err(()))) {
                break;
            }
        });
        started.recv().unwrap();
        Reentry {
            crash,
            started,
            thread: Some(thread),
        }
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        let (tx, _) = unbounded();
        drop(std::mem::replace(&mut self.crash, tx));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn restarts(rows: &mut Vec<Row>) {
    let floor = Reentry::start();
    for (name, panics, spin, target) in [
        // Context only (no target): paced by a parked observer, whose wake-up is most
        // of it, and whose floor is bimodal on a VM.
        ("restart_err", false, false, f64::INFINITY),
        ("restart_panic", true, false, f64::INFINITY),
        ("restart_panic_observer_spins", true, true, 1.5),
    ] {
        let (crash_tx, crash_rx) = unbounded();
        let (started_tx, started) = unbounded();
        let sup = Supervisor::builder()
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(crasher("w", crash_rx, started_tx))
            .start()
            .unwrap();
        started.recv().unwrap();
        let wait = |rx: &Receiver<()>| {
            if spin {
                spin_recv(rx)
            } else {
                rx.recv().unwrap()
            }
        };
        let (f, o) = paired(
            41,
            300,
            || {
                floor.crash.send(panics).unwrap();
                wait(&floor.started);
            },
            || {
                crash_tx.send(panics).unwrap();
                wait(&started);
            },
        );
        rows.push(Row {
            name,
            floor_what: "bare thread re-entering",
            ours: o,
            floor: f,
            target,
        });
        sup.shutdown().unwrap();
    }
    restarts_in_a_row(rows);
}

/// A child failing `FAILS` times in a row, each failure restarted at once on its own
/// thread with nobody watching — the restart's own work (exit ordering, the intensity
/// window, the new incarnation) — against a bare loop making what each failure makes:
/// the child's error, and the reason it becomes.
fn restarts_in_a_row(rows: &mut Vec<Row>) {
    const FAILS: u32 = 1_000;
    let (mut f, mut o) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let t = Instant::now();
        for _ in 0..FAILS {
            let e: steadfast::ChildError = "x".into();
            let reason: Arc<str> = Arc::from(e.to_string());
            black_box(reason);
        }
        f.push(t.elapsed() / FAILS);
        let (done_tx, done) = bounded::<()>(1);
        let spec = ChildSpec::worker("w", move |ctx| {
            if ctx.incarnation() < u64::from(FAILS) {
                return Err("x".into());
            }
            let _ = done_tx.send(());
            let _ = ctx.stop_signal().recv();
            Ok(())
        });
        let t = Instant::now();
        let sup = Supervisor::builder()
            .intensity(u32::MAX, Duration::from_secs(1))
            .child(spec)
            .start()
            .unwrap();
        done.recv().unwrap();
        o.push(t.elapsed() / FAILS);
        sup.shutdown().unwrap();
    }
    rows.push(Row {
        name: "restart_err_in_a_row",
        floor_what: "the error and reason alone",
        ours: median(o),
        floor: median(f),
        target: 1.5,
    });
}

fn one_for_all(rows: &mut Vec<Row>) {
    let hand = HandGroup::start(10);
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
    let (f, o) = paired(
        31,
        20,
        || {
            hand.crash.send(()).unwrap();
            for _ in 0..10 {
                hand.started.recv().unwrap();
            }
        },
        || {
            crash_tx.send(false).unwrap();
            for _ in 0..10 {
                started.recv().unwrap();
            }
        },
    );
    rows.push(Row {
        name: "one_for_all_10",
        floor_what: "same protocol by hand",
        ours: o,
        floor: f,
        target: 1.3,
    });
    sup.shutdown().unwrap();
}

/// Start alone, by `sup`, each start timed and its stop not, sampled in turn with a
/// bare spawn: (floor, ours).
fn start_alone(sup: &DynamicSupervisor) -> (Duration, Duration) {
    let (mut f, mut o) = (Vec::new(), Vec::new());
    for _ in 0..201 {
        let t = Instant::now();
        let (tx, h) = bare();
        f.push(t.elapsed());
        drop(tx);
        h.join().unwrap();
        let t = Instant::now();
        let pid = sup.start_child(idle("job")).unwrap();
        o.push(t.elapsed());
        sup.terminate_child(pid).unwrap();
    }
    (median(f), median(o))
}

fn dynamic(rows: &mut Vec<Row>) {
    // The plain start, and the same with threads kept for reuse (each start runs on the
    // thread the last child ended on).
    for (name, reuse, target) in [
        ("dynamic_start", None, 1.1),
        ("dynamic_start_reused", Some(4), 0.5),
    ] {
        let mut builder = DynamicSupervisor::builder();
        if let Some(max_idle) = reuse {
            builder = builder.reuse_threads(max_idle);
        }
        let sup = builder.start().unwrap();
        let (floor, ours) = start_alone(&sup);
        rows.push(Row {
            name,
            floor_what: "thread::spawn",
            ours,
            floor,
            target,
        });
    }

    // A parallel map of 1,000 items, two at a time, each item in a process of its own:
    // supervised tasks (on the threads of those that ended) against a bare thread per
    // item, two at a time, each joined for its result.
    const ITEMS: u64 = 1_000;
    let (f, o) = paired(
        15,
        1,
        || {
            let mut done = 0;
            for pair in (0..ITEMS).collect::<Vec<_>>().chunks(2) {
                let threads: Vec<_> = pair
                    .iter()
                    .map(|&i| thread::spawn(move || black_box(i)))
                    .collect();
                for t in threads {
                    black_box(t.join().unwrap());
                    done += 1;
                }
            }
            assert_eq!(done, ITEMS as usize);
        },
        || {
            let outcomes = steadfast::task::map(0..ITEMS, |i, _| Ok(black_box(i)))
                .max_concurrency(2)
                .run()
                .unwrap();
            assert_eq!(outcomes.count(), ITEMS as usize);
        },
    );
    rows.push(Row {
        name: "task_map_1000",
        floor_what: "a thread per item, 2 at once",
        ours: o,
        floor: f,
        target: 1.0,
    });

    // Shutdown of 1,000: the stop of all of them timed, the starts not.
    let (mut f, mut o) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let threads: Vec<_> = (0..1_000).map(|_| bare()).collect();
        let t = Instant::now();
        let (txs, hs): (Vec<_>, Vec<_>) = threads.into_iter().unzip();
        drop(txs);
        hs.into_iter().for_each(|h| h.join().unwrap());
        f.push(t.elapsed());
        let pool = DynamicSupervisor::builder().start().unwrap();
        for _ in 0..1_000 {
            pool.start_child(idle("job")).unwrap();
        }
        let t = Instant::now();
        pool.shutdown().unwrap();
        o.push(t.elapsed());
    }
    rows.push(Row {
        name: "dynamic_shutdown_1000",
        floor_what: "signal all, join all",
        ours: median(o),
        floor: median(f),
        target: 1.15,
    });
}

fn sessions(rows: &mut Vec<Row>) {
    let manager = SessionManager::builder()
        .children(|_| vec![idle("agent"), idle("state")])
        .start()
        .unwrap();
    let (f, o) = paired(
        31,
        10,
        || {
            let threads: Vec<_> = (0..3).map(|_| bare()).collect();
            for (tx, h) in threads {
                drop(tx);
                h.join().unwrap();
            }
        },
        || {
            let id = manager
                .create_session(NewSession::new("bench", "/bench/project"))
                .unwrap();
            manager.terminate_session(id).unwrap();
        },
    );
    rows.push(Row {
        name: "session_create_terminate",
        floor_what: "3 threads spawn + join",
        ours: o,
        floor: f,
        target: 1.3,
    });
    manager.shutdown();
}

fn registry(rows: &mut Vec<Row>) {
    let keys: Arc<Vec<String>> = Arc::new((0..1_000).map(|i| format!("session-{i:04}")).collect());
    let reg: Registry<String, u64> = Registry::new();
    for (i, k) in keys.iter().enumerate() {
        reg.register(k.clone(), i as u64).unwrap();
    }
    // The floor of both rows: the same keys in a `RwLock<HashMap>`.
    let map: Arc<parking_lot::RwLock<std::collections::HashMap<String, u64>>> = Arc::new(
        parking_lot::RwLock::new(keys.iter().cloned().zip(0..).collect()),
    );
    // Two threads looking up at once: wall time over every look-up made, the registry's
    // and the map's sampled in turn.
    const PER_THREAD: usize = 1_000_000;
    let two_threads = |look: Lookup| {
        let t = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|n| {
                let (look, keys) = (look.clone(), keys.clone());
                thread::spawn(move || {
                    let mut i = n * 500;
                    for _ in 0..PER_THREAD {
                        i = (i + 7) % keys.len();
                        black_box(look(keys[i].as_str()));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        t.elapsed() / (2 * PER_THREAD as u32)
    };
    let (mut f, mut o) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let m = map.clone();
        f.push(two_threads(Arc::new(move |k| m.read().get(k).copied())));
        let r = reg.clone();
        o.push(two_threads(Arc::new(move |k| r.lookup(k).map(|(_, v)| v))));
    }
    rows.push(Row {
        name: "lookup_2_threads",
        floor_what: "RwLock<HashMap>, 2 threads",
        ours: median(o),
        floor: median(f),
        target: 0.3,
    });
    let fresh: Registry<String, u64> = Registry::new();
    let empty = parking_lot::RwLock::new(std::collections::HashMap::<String, u64>::new());
    let (mut i, mut j) = (0, 0);
    let (f, o) = paired(
        21,
        10_000,
        || {
            j = (j + 1) % keys.len();
            empty.write().insert(keys[j].clone(), 1);
            black_box(empty.write().remove(keys[j].as_str()));
        },
        || {
            i = (i + 1) % keys.len();
            fresh.register(keys[i].clone(), 1).unwrap();
            black_box(fresh.unregister(keys[i].as_str()));
        },
    );
    rows.push(Row {
        name: "register_unregister",
        floor_what: "RwLock<HashMap> insert+remove",
        ours: o,
        floor: f,
        target: 1.6,
    });

    // Dispatch to 1,000 channel members against a loop over the same senders.
    let (tx, rx) = unbounded::<u64>();
    let senders: Vec<Sender<u64>> = (0..1_000).map(|_| tx.clone()).collect();
    let topic: Groups<&'static str, Sender<u64>> = Groups::new();
    for s in &senders {
        topic.join("topic", s.clone());
    }
    let (f, o) = paired(
        41,
        20,
        || {
            for s in &senders {
                s.send(1).unwrap();
            }
            for _ in rx.try_iter() {}
        },
        || {
            black_box(topic.dispatch_send(&"topic", 1));
            for _ in rx.try_iter() {}
        },
    );
    rows.push(Row {
        name: "dispatch_1000",
        floor_what: "loop over Vec<Sender>",
        ours: o,
        floor: f,
        target: 1.2,
    });
}

/// What a waiting server burns: the CPU time of its thread (from the kernel's
/// schedstat) over calls spaced 2 ms apart, per call. Printed as an `INFO` line.
fn server_idle_cpu(counter: &steadfast::server::ServerRef<Counter>) {
    let tid = counter
        .get_state(|_| std::fs::read_link("/proc/thread-self").ok())
        .unwrap()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Some(tid) = tid else { return };
    let cpu_ns = || -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        stat.split_whitespace().next()?.parse().ok()
    };
    const CALLS: u32 = 200;
    let (Some(before), t) = (cpu_ns(), Instant::now()) else {
        return;
    };
    for _ in 0..CALLS {
        black_box(counter.call(1).unwrap());
        thread::sleep(Duration::from_millis(2));
    }
    let (Some(after), wall) = (cpu_ns(), t.elapsed()) else {
        return;
    };
    println!(
        "INFO server_cpu_per_paced_call_ns={} (calls 2 ms apart; server thread busy {:.2}% of the time)",
        (after - before) / u64::from(CALLS),
        (after - before) as f64 / wall.as_nanos() as f64 * 100.0
    );
}

fn servers(rows: &mut Vec<Row>) {
    let (bare_tx, bare_thread) = bare_server();
    let bare_call = |n| bare_call(&bare_tx, n);
    let (spec, counter) = ServerSpec::new("counter", |_| Ok(Counter(0))).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (f, o) = paired(
        20_001,
        1,
        || {
            black_box(bare_call(1));
        },
        || {
            black_box(counter.call(1).unwrap());
        },
    );
    rows.push(Row {
        name: "server_call",
        floor_what: "crossbeam request/reply",
        ours: o,
        floor: f,
        target: 1.1,
    });
    let (f, o) = paired_rounds(
        7,
        31,
        1,
        || {
            for _ in 0..1_000 {
                bare_tx.send(Bare::Cast(1)).unwrap();
            }
            black_box(bare_call(0));
        },
        || {
            for _ in 0..1_000 {
                counter.cast(1).unwrap();
            }
            black_box(counter.call(0).unwrap());
        },
    );
    rows.push(Row {
        name: "server_cast_1000",
        floor_what: "bare channel",
        ours: o,
        floor: f,
        target: 1.2,
    });
    // Back to back: the caller's next call follows its reply at once. Samples of 1,000
    // calls: a sample's first microseconds overlap the other side's server still
    // spinning down (for 20 µs) from its own sample.
    let (spinning_tx, spinning_thread) = spinning_server();
    let (f, o) = paired(
        301,
        1_000,
        || {
            black_box(spinning_call(&spinning_tx, 1));
        },
        || {
            black_box(counter.call(1).unwrap());
        },
    );
    rows.push(Row {
        name: "server_call_back_to_back",
        floor_what: "hand-written server, spinning",
        ours: o,
        floor: f,
        target: 1.3,
    });
    drop(spinning_tx);
    spinning_thread.join().unwrap();
    let (req, rep, lean_thread) = lean_server();
    let (f, o) = paired(
        301,
        1_000,
        || {
            black_box(lean_call(&req, &rep, 1));
        },
        || {
            black_box(counter.call(1).unwrap());
        },
    );
    rows.push(Row {
        name: "server_call_back_to_back_lean",
        floor_what: "u64 each way, spinning",
        ours: o,
        floor: f,
        target: 1.3,
    });
    drop(req);
    lean_thread.join().unwrap();
    server_idle_cpu(&counter);
    drop(bare_tx);
    bare_thread.join().unwrap();
    drop(sup);

    // A chain of timers, each armed when the one before fires.
    let (tick_tx, tick_thread) = bare_ticker();
    let (spec, ticker) = ServerSpec::new("ticker", |_| Ok(Ticker::new())).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (f, o) = paired(
        101,
        1,
        || {
            let (done_tx, done) = bounded(1);
            tick_tx.send(done_tx).unwrap();
            done.recv().unwrap();
        },
        || ticker.call(Chain).unwrap(),
    );
    rows.push(Row {
        name: "server_timer",
        floor_what: "bare recv_timeout loop",
        ours: o / server_floor::TICKS,
        floor: f / server_floor::TICKS,
        target: 1.2,
    });
    drop(tick_tx);
    tick_thread.join().unwrap();
    drop(sup);

    // Pools of 2 workers, 10,000 trivial jobs.
    const JOBS: u64 = 10_000;
    let spin_until = |count: &AtomicU64, target: u64| {
        while count.load(Ordering::Acquire) < target {
            thread::yield_now();
        }
    };
    let hand_done = Arc::new(AtomicU64::new(0));
    let (job_tx, job_rx) = bounded::<u64>(1024);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (rx, done) = (job_rx.clone(), hand_done.clone());
            thread::spawn(move || {
                for job in rx {
                    black_box(job);
                    done.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let pool = Pool::builder(2, move |job: &u64, _| {
        black_box(job);
        d.fetch_add(1, Ordering::AcqRel);
        Ok(())
    })
    .start()
    .unwrap();
    let (f, o) = paired_rounds(
        7,
        5,
        1,
        || {
            let start = hand_done.load(Ordering::Acquire);
            for job in 0..JOBS {
                job_tx.send(job).unwrap();
            }
            spin_until(&hand_done, start + JOBS);
        },
        || {
            let start = done.load(Ordering::Acquire);
            for job in 0..JOBS {
                pool.submit(job).unwrap();
            }
            spin_until(&done, start + JOBS);
        },
    );
    rows.push(Row {
        name: "pool_10000_jobs",
        floor_what: "hand-rolled crossbeam pool",
        ours: o,
        floor: f,
        target: 1.2,
    });
    drop(job_tx);
    workers.into_iter().for_each(|w| w.join().unwrap());
    pool.shutdown();
}

const MEMORY_MODE: &str = "STEADFAST_BENCH_TABLE_MEMORY";
const IDLE: usize = 500;

/// Resident KiB of this process.
fn rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("VmRSS:"));
    let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kib.unwrap_or(0)
}

/// In a subprocess: the RSS `IDLE` idle threads (bare or supervised) add, in KiB.
/// What the hand-written floor of `which_children` lists per thread: what a
/// `ChildInfo` holds. (Only cloned: what counts is what a listing copies.)
#[derive(Clone)]
#[allow(dead_code)]
struct Record {
    id: Arc<str>,
    pid: Option<u64>,
    state: (u8, u8, u8),
    restart_at: Option<Instant>,
    restarts: u64,
    last_exit: Option<Arc<str>>,
    started_at: Option<Instant>,
}

/// Children of the ten-thousand rows.
const TEN_K: usize = 10_000;

/// A dynamic supervisor with ten thousand idle children: starting them all, listing
/// them, shutting them all down — against as many bare threads doing the same.
fn ten_thousand(rows: &mut Vec<Row>) {
    let cap = steadfast::max_threads();
    steadfast::set_max_threads(cap.max(3 * TEN_K));
    let (mut f, mut o) = ([vec![], vec![], vec![]], [vec![], vec![], vec![]]);
    for _ in 0..3 {
        let t = Instant::now();
        let threads: Vec<_> = (0..TEN_K).map(|i| (format!("job-{i}"), bare())).collect();
        f[0].push(t.elapsed());
        // The same listing by hand: a record per thread with what `ChildInfo` holds,
        // cloned out from under a lock.
        let table = parking_lot::Mutex::new(
            threads
                .iter()
                .enumerate()
                .map(|(i, (id, _))| Record {
                    id: Arc::from(id.as_str()),
                    pid: Some(i as u64),
                    state: (0, 0, 0),
                    restart_at: None,
                    restarts: 0,
                    last_exit: None,
                    started_at: Some(Instant::now()),
                })
                .collect::<Vec<_>>(),
        );
        let t = Instant::now();
        let listed = table.lock().clone();
        f[1].push(t.elapsed());
        black_box(listed);
        let t = Instant::now();
        let (stops, joins): (Vec<_>, Vec<_>) = threads.into_iter().map(|(_, t)| t).unzip();
        drop(stops);
        joins.into_iter().for_each(|h| h.join().unwrap());
        f[2].push(t.elapsed());

        let sup = DynamicSupervisor::builder().start().unwrap();
        let t = Instant::now();
        for i in 0..TEN_K {
            sup.start_child(idle(&format!("job-{i}"))).unwrap();
        }
        // Started includes taken in: a hand-over is queued quietly, and the supervisor
        // has read them all once it answers.
        assert_eq!(sup.count_children().unwrap().active, TEN_K);
        o[0].push(t.elapsed());
        let t = Instant::now();
        let listed = sup.which_children().unwrap();
        o[1].push(t.elapsed());
        assert_eq!(listed.len(), TEN_K);
        let t = Instant::now();
        sup.shutdown().unwrap();
        o[2].push(t.elapsed());
    }
    steadfast::set_max_threads(cap);
    let [fs, fl, fd] = f;
    let [os, ol, od] = o;
    for (name, floor_what, ours, floor) in [
        ("ten_thousand_start", "10,000 thread::spawn", os, fs),
        (
            "ten_thousand_which_children",
            "the same records by hand",
            ol,
            fl,
        ),
        ("ten_thousand_shutdown", "signal all, join all", od, fd),
    ] {
        rows.push(Row {
            name,
            floor_what,
            ours: median(ours),
            floor: median(floor),
            target: 1.15,
        });
    }
}

/// Stacks of the small-stack memory rows.
const SMALL_STACK: usize = 64 * 1024;

fn memory_subprocess(mode: &str) {
    let warm: Vec<_> = (0..4).map(|_| thread::spawn(|| ())).collect();
    warm.into_iter().for_each(|t| t.join().unwrap());
    let small = mode.ends_with("64k");
    let count = if mode.ends_with("10k") { TEN_K } else { IDLE };
    steadfast::set_max_threads(steadfast::max_threads().max(3 * count));
    let before = rss_kib();
    let (stop_tx, stop_rx) = unbounded::<()>();
    let mut builder = DynamicSupervisor::builder();
    if small {
        builder = builder.stack_size(SMALL_STACK);
    }
    let pool = builder.start().unwrap();
    let mut threads = Vec::new();
    for _ in 0..count {
        if mode.starts_with("bare") {
            let stop = stop_rx.clone();
            let mut bare = thread::Builder::new();
            if small {
                bare = bare.stack_size(SMALL_STACK);
            }
            threads.push(
                bare.spawn(move || {
                    let _ = stop.recv();
                })
                .unwrap(),
            );
        } else {
            pool.start_child(idle("idle")).unwrap();
        }
    }
    println!("{}", rss_kib().saturating_sub(before));
    drop(stop_tx);
    threads.into_iter().for_each(|t| t.join().unwrap());
    pool.shutdown().unwrap();
}

fn memory(rows: &mut Vec<Row>) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let run = |mode: &str| -> Option<u64> {
        let out = Command::new(&me).env(MEMORY_MODE, mode).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    // Reported in nanoseconds' place: bytes per idle thread.
    let per = |kib: u64, count: usize| Duration::from_nanos(kib * 1024 / count as u64);
    for (name, bare, ours, count) in [
        ("memory_per_idle_child_bytes", "bare", "steadfast", IDLE),
        (
            "memory_per_idle_child_64k_stack",
            "bare-64k",
            "steadfast-64k",
            IDLE,
        ),
        (
            "memory_per_child_of_10k",
            "bare-10k",
            "steadfast-10k",
            TEN_K,
        ),
    ] {
        let (mut f, mut o) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            f.extend(run(bare));
            o.extend(run(ours));
        }
        if f.is_empty() || o.is_empty() {
            continue;
        }
        rows.push(Row {
            name,
            floor_what: "bare parked thread, same stack",
            ours: per(median(o), count),
            floor: per(median(f), count),
            target: 1.15,
        });
    }
}

fn main() {
    if let Ok(mode) = std::env::var(MEMORY_MODE) {
        memory_subprocess(&mode);
        return;
    }
    let check = std::env::args().any(|a| a == "--check");
    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut rows = Vec::new();
    // Any other argument names the sections to run (all of them by default).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--check")
        .collect();
    let sections: [(&str, Section); 8] = [
        ("restarts", restarts),
        ("one_for_all", one_for_all),
        ("dynamic", dynamic),
        ("sessions", sessions),
        ("registry", registry),
        ("servers", servers),
        ("ten_thousand", ten_thousand),
        ("memory", memory),
    ];
    for (name, section) in sections {
        if only.is_empty() || only.iter().any(|o| o == name) {
            section(&mut rows);
        }
    }

    println!(
        "{:<30} {:>11} {:<27} {:>11} {:>7} {:>7}",
        "row", "steadfast", "floor (measured alongside)", "floor", "ratio", "target"
    );
    for r in &rows {
        println!(
            "{:<30} {:>11.2?} {:<27} {:>11.2?} {:>6.2}x {:>6.2}x {}",
            r.name,
            r.ours,
            r.floor_what,
            r.floor,
            r.ratio(),
            r.target,
            if r.met() { "ok" } else { "MISSED" }
        );
    }
    println!("(memory row: bytes per idle thread, printed as if nanoseconds)");
    println!("ran in {:.1?}", started.elapsed());
    for r in &rows {
        println!(
            "ROW name={} ours_ns={} floor_ns={} ratio={:.2} target={:.2}",
            r.name,
            r.ours.as_nanos(),
            r.floor.as_nanos(),
            r.ratio(),
            r.target
        );
    }
    let missed: Vec<&str> = rows.iter().filter(|r| !r.met()).map(|r| r.name).collect();
    if check && !missed.is_empty() {
        eprintln!("missed targets: {}", missed.join(", "));
        std::process::exit(1);
    }
}
