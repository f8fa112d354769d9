//! Memory per idle child against a bare thread with the same (default) stack size: RSS and
//! thread count from `/proc/self/status`, each scenario in a fresh subprocess (so one
//! scenario's allocator arenas do not flatter the next), five runs each, medians.
//!
//! `cargo bench --bench memory` (Linux only).

use std::process::Command;
use std::thread;

use crossbeam_channel::unbounded;
use steadfast::{ChildSpec, DynamicSupervisor};

const N: usize = 1_000;
const RUNS: usize = 5;
const MODE: &str = "STEADFAST_MEMORY_BENCH_MODE";

/// (resident KiB, threads) of this process.
fn status() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// Runs one scenario in this process and prints "rss_kib threads" added by `N` idle ones.
fn measure(mode: &str) {
    // Warm the allocator and the runtime the same way in both scenarios.
    let warm: Vec<thread::JoinHandle<()>> = (0..4).map(|_| thread::spawn(|| ())).collect();
    warm.into_iter().for_each(|t| t.join().unwrap());
    match mode {
        "bare" => {
            let (stop_tx, stop_rx) = unbounded::<()>();
            let before = status();
            let threads: Vec<_> = (0..N)
                .map(|_| {
                    let stop = stop_rx.clone();
                    thread::spawn(move || {
                        let _ = stop.recv();
                    })
                })
                .collect();
            let after = status();
            println!("{} {}", after.0 - before.0, after.1 - before.1);
            drop(stop_tx);
            threads.into_iter().for_each(|t| t.join().unwrap());
        }
        "steadfast" => {
            let pool = DynamicSupervisor::builder().start().unwrap();
            let before = status();
            for _ in 0..N {
                pool.start_child(ChildSpec::worker("idle", |ctx| {
                    let _ = ctx.stop_signal().recv();
                    Ok(())
                }))
                .unwrap();
            }
            let after = status();
            println!("{} {}", after.0 - before.0, after.1 - before.1);
            pool.shutdown().unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if let Ok(mode) = std::env::var(MODE) {
        measure(&mode);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let exe = std::env::current_exe().unwrap();
    let per_thread = |mode: &str| -> (f64, u64) {
        let mut kib = Vec::new();
        let mut threads = 0;
        for _ in 0..RUNS {
            let out = Command::new(&exe).env(MODE, mode).output().unwrap();
            assert!(out.status.success(), "{mode}: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().unwrap());
            kib.push(parts.next().unwrap() as f64 / N as f64);
            threads = parts.next().unwrap();
        }
        (median(kib), threads)
    };
    let (bare, bare_threads) = per_thread("bare");
    let (ours, our_threads) = per_thread("steadfast");
    println!(
        "memory per idle thread, {N} of them, default stack, median of {RUNS} fresh processes"
    );
    println!("  floor: bare thread     {bare:7.1} KiB RSS  ({bare_threads} threads added)");
    println!("  steadfast idle child   {ours:7.1} KiB RSS  ({our_threads} threads added)");
    println!(
        "  ratio                  {:7.2}x  (target <= 1.1x)",
        ours / bare
    );
}
