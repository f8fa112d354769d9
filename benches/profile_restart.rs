//! A loop of `Err` restarts (one_for_one, same thread) for three seconds, for a profiler:
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -p steadfast-benches --example profile_restart
//! perf record -g target/release/examples/profile_restart && perf report --no-children
//! ```
//!
//! `STEADFAST_PROFILE_RESTARTS=N` runs exactly N restarts instead, for instruction counts
//! that do not depend on the machine's speed (`valgrind --tool=callgrind`), and
//! `STEADFAST_PROFILE_GROUP=1` makes it one_for_all with nine idle siblings, so that each
//! crash is a group restart.
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use steadfast::{ChildSpec, Strategy, Supervisor};

fn main() {
    let count: Option<u64> = std::env::var("STEADFAST_PROFILE_RESTARTS")
        .ok()
        .and_then(|n| n.parse().ok());
    let group = std::env::var_os("STEADFAST_PROFILE_GROUP").is_some();
    let (crash_tx, crash_rx) = unbounded::<()>();
    let (started_tx, started) = unbounded::<()>();
    let mut builder = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(ChildSpec::worker("w", move |ctx| {
            started_tx.send(()).unwrap();
            ctx.recv(&crash_rx)?;
            Err("crash".into())
        }));
    if group {
        builder = builder.strategy(Strategy::OneForAll);
        for i in 0..9 {
            builder = builder.child(ChildSpec::worker(format!("idle-{i}"), |ctx| {
                let _ = ctx.stop_signal().recv();
                Ok(())
            }));
        }
    }
    let sup = builder.start().unwrap();
    started.recv().unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    let more = |n: u64| match count {
        Some(count) => n < count,
        None => t.elapsed() < Duration::from_secs(3),
    };
    while more(n) {
        crash_tx.send(()).unwrap();
        started.recv().unwrap();
        n += 1;
    }
    println!("{n} restarts, {:?} each", t.elapsed() / n.max(1) as u32);
    drop(sup);
}
