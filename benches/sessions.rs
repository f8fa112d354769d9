//! Session create+terminate (a session with two children), next to its floor: starting
//! and joining three bare threads, measured in the same run.
//!
//! `cargo bench --bench sessions`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_channel::bounded;
use steadfast::session::{NewSession, SessionManager};
use steadfast::ChildSpec;

fn idle(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |ctx| {
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
}

fn sessions(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    g.bench_function("create_terminate_2_children/floor_3_threads", |b| {
        b.iter(|| {
            // Three threads that run until told to stop, like the session's supervisor and
            // its two children; then stop and join them.
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let (tx, rx) = bounded::<()>(0);
                    (tx, std::thread::spawn(move || rx.recv().ok()))
                })
                .collect();
            for (tx, h) in handles {
                drop(tx);
                h.join().unwrap();
            }
        })
    });
    let manager = SessionManager::builder()
        .max_sessions(4)
        .children(|_| vec![idle("agent"), idle("state")])
        .start()
        .unwrap();
    g.bench_function("create_terminate_2_children/steadfast", |b| {
        b.iter(|| {
            let id = manager
                .create_session(NewSession::new("bench", "/bench/project"))
                .unwrap();
            manager.terminate_session(id).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = sessions
}
criterion_main!(benches);
