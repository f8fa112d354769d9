//! A loop of `Err` restarts (one_for_one, same thread) for three seconds, for a profiler:
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -p steadfast-benches --example profile_restart
//! perf record -g target/release/examples/profile_restart && perf report --no-children
//! ```
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use steadfast::{ChildSpec, Supervisor};

fn main() {
    let (crash_tx, crash_rx) = unbounded::<()>();
    let (started_tx, started) = unbounded::<()>();
    let sup = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(ChildSpec::worker("w", move |ctx| {
            started_tx.send(()).unwrap();
            ctx.recv(&crash_rx)?;
            Err("crash".into())
        }))
        .start()
        .unwrap();
    started.recv().unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        crash_tx.send(()).unwrap();
        started.recv().unwrap();
        n += 1;
    }
    println!("{n} restarts, {:?} each", t.elapsed() / n as u32);
    drop(sup);
}
