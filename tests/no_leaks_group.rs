//! A group restart that fails half-way leaves no thread waiting to be reused. This test
//! counts the process's threads, so it has a binary of its own.

mod common;

use common::*;
use crossbeam_channel::unbounded;
use steadfast::{ChildSpec, Strategy, Supervisor};

#[test]
fn a_group_restart_that_fails_half_way_leaves_no_thread_waiting() {
    // rest_for_one over [a, flaky, b, c]: `a` crashes, so the whole group restarts; the
    // threads of `a`, `b` and `c` wait to be reused, `flaky` (a readiness child) fails its
    // restart, so `b` and `c` are not resumed: their threads must end, not wait forever.
    let baseline = thread_count();
    let starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = starts.clone();
    let flaky = ChildSpec::worker("flaky", move |ctx| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            return Err("cannot start again".into());
        }
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE);
    let (a, tx_a) = controlled("a");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::RestForOne)
        .intensity(1_000, DEADLINE)
        .event_sink(sink)
        .child(a)
        .child(flaky)
        .child(idle("b"))
        .child(idle("c"))
        .start()
        .unwrap();
    tx_a.send(Cmd::Panic("crash")).unwrap();
    let seen = briefs_through(&events, "restart-failed flaky");
    assert!(seen.contains(&"restarted a".to_string()), "{seen:?}");
    // Stop retrying: terminating the restarting child ends the loop.
    sup.terminate_child("flaky").unwrap();
    // a (running again) and the supervisor; b and c stopped, their threads gone.
    steadfast::wait::until(DEADLINE, || thread_count() == baseline + 2)
        .unwrap_or_else(|e| panic!("{e}: {} threads, baseline {baseline}", thread_count()));
    drop(sup);
    steadfast::wait::until(DEADLINE, || thread_count() == baseline)
        .unwrap_or_else(|e| panic!("{e}: {} threads, baseline {baseline}", thread_count()));
}
