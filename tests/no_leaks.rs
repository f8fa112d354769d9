//! No thread of a tree outlives its shutdown. This test counts the process's threads, so
//! it has a binary of its own (no other test runs beside it).

mod common;

use common::*;
use crossbeam_channel::unbounded;
use steadfast::{ChildSpec, DynamicSupervisor, Strategy, Supervisor};

#[test]
fn thread_count_returns_to_baseline_after_a_tree_is_dropped() {
    let baseline = thread_count();
    assert!(baseline > 0, "/proc/self/task is readable");
    let (a, tx_a) = controlled("a");
    let (w, tx_w) = controlled("w");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .intensity(100, DEADLINE)
        .event_sink(sink)
        .child(a)
        .child(ChildSpec::supervisor(
            "inner",
            Supervisor::builder()
                .child(w)
                .child(idle("x"))
                .child(ChildSpec::supervisor(
                    "pool",
                    DynamicSupervisor::builder().name("no_leaks::pool"),
                )),
        ))
        .start()
        .unwrap();
    briefs_through(&events, "started inner");
    let (_, pool) = steadfast::registry()
        .lookup_as::<steadfast::DynamicSupervisorRef>("no_leaks::pool")
        .unwrap();
    for _ in 0..20 {
        pool.start_child(idle("job")).unwrap();
    }
    // top + a + inner + w + x + pool + 20 jobs
    assert_eq!(thread_count(), baseline + 26);
    assert_eq!(steadfast::live_threads(), 26);
    tx_w.send(Cmd::Panic("inner worker")).unwrap();
    tx_a.send(Cmd::Fail("top worker")).unwrap();
    briefs_through(&events, "restarted inner");
    drop(sup);
    steadfast::wait::until(DEADLINE, || thread_count() == baseline)
        .unwrap_or_else(|e| panic!("{e}: {} threads, baseline {baseline}", thread_count()));
    assert_eq!(steadfast::live_threads(), 0);

    // Dynamic starts that fail while the caller waits for readiness: the caller joins
    // what it started before it returns.
    let pool = DynamicSupervisor::builder().start().unwrap();
    let with_pool = thread_count();
    let early = ChildSpec::worker("early", |_| Err("no config".into())).ready_timeout(DEADLINE);
    assert!(pool.start_child(early).is_err());
    let nested = ChildSpec::supervisor(
        "inner",
        Supervisor::builder()
            .child(ChildSpec::worker("x", |_| Err("no".into())).ready_timeout(DEADLINE)),
    );
    assert!(pool.start_child(nested).is_err());
    let late = ChildSpec::worker("late", |ctx| {
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(std::time::Duration::from_millis(20));
    assert!(pool.start_child(late).is_err());
    // Each failed start has joined its thread before returning (`nothing_lost.rs` checks
    // that with thread-locals, in a loop). The kernel may still list a thread for a
    // moment after its join returns (its task is released after the joiner is woken), so
    // the count is waited for.
    steadfast::wait::until(DEADLINE, || thread_count() == with_pool)
        .unwrap_or_else(|e| panic!("{e}: {} threads, {with_pool} expected", thread_count()));
    drop(pool);
    steadfast::wait::until(DEADLINE, || thread_count() == baseline)
        .unwrap_or_else(|e| panic!("{e}: {} threads, baseline {baseline}", thread_count()));
}
