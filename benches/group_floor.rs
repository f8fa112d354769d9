//! The floor of a one_for_all restart, shared by `benches/restart.rs` and `bench_table`:
//! the same protocol done by hand with bare threads and channels.

use std::thread;

use crossbeam_channel::{select, unbounded, Receiver, Sender};

/// The same protocol as a one_for_all restart of ten, by hand: a crash noticed by a
/// coordinator, nine ordered stop hand-offs (each stopped thread stops the one before
/// it), ten re-entries on the same threads, the observer told of each.
pub struct HandGroup {
    /// Makes the first thread crash.
    pub crash: Sender<()>,
    /// Told of each entry and re-entry.
    pub started: Receiver<()>,
    threads: Vec<thread::JoinHandle<()>>,
    quit: Vec<Sender<()>>,
}

impl HandGroup {
    /// Starts `n` threads and the coordinator; returns once all `n` have entered.
    pub fn start(n: usize) -> HandGroup {
        let (started_tx, started) = unbounded();
        let (exit_tx, exit_rx) = unbounded::<bool>();
        let (crash, crash_rx) = unbounded::<()>();
        let stops: Vec<(Sender<()>, Receiver<()>)> = (0..n).map(|_| unbounded()).collect();
        let gos: Vec<(Sender<()>, Receiver<()>)> = (0..n).map(|_| unbounded()).collect();
        let mut threads = Vec::new();
        for i in 0..n {
            let stop_rx = stops[i].1.clone();
            let stop_prev = (i > 1).then(|| stops[i - 1].0.clone());
            let go = gos[i].1.clone();
            let (started, exit) = (started_tx.clone(), exit_tx.clone());
            let crash = (i == 0).then(|| crash_rx.clone());
            threads.push(thread::spawn(move || loop {
                started.send(()).unwrap();
                let crashed = match &crash {
                    Some(crash) => select! {
                        recv(crash) -> m => if m.is_err() { return } else { true },
                        recv(stop_rx) -> m => if m.is_err() { return } else { false },
                    },
                    None => {
                        if stop_rx.recv().is_err() {
                            return;
                        }
                        false
                    }
                };
                if !crashed {
                    if let Some(prev) = &stop_prev {
                        let _ = prev.send(());
                    }
                }
                let _ = exit.send(crashed);
                if go.recv().is_err() {
                    return;
                }
            }));
        }
        let stop_last = stops[n - 1].0.clone();
        let go_all: Vec<Sender<()>> = gos.iter().map(|g| g.0.clone()).collect();
        let (quit_tx, quit_rx) = unbounded::<()>();
        threads.push(thread::spawn(move || loop {
            select! {
                recv(exit_rx) -> crashed => {
                    if !matches!(crashed, Ok(true)) { return; }
                    let _ = stop_last.send(());
                    for _ in 1..n {
                        let _ = exit_rx.recv();
                    }
                    for go in &go_all {
                        let _ = go.send(());
                    }
                }
                recv(quit_rx) -> _ => return,
            }
        }));
        for _ in 0..n {
            started.recv().unwrap();
        }
        let mut quit = vec![quit_tx];
        quit.extend(stops.into_iter().map(|s| s.0));
        quit.extend(gos.into_iter().map(|g| g.0));
        HandGroup {
            crash,
            started,
            threads,
            quit,
        }
    }
}

impl Drop for HandGroup {
    fn drop(&mut self) {
        self.quit.clear();
        let (tx, _) = unbounded();
        drop(std::mem::replace(&mut self.crash, tx));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
