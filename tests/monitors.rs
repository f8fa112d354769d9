//! Monitors fire exactly once: with the exit reason, or at once with `NoProcess`.

mod common;

use common::*;
use crossbeam_channel::RecvTimeoutError;
use steadfast::{monitor, ExitReason, Supervisor};

#[test]
fn a_monitor_fires_once_with_the_reason() {
    let (spec, tx) = controlled("a");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    let (m1, m2) = (monitor(pid), monitor(pid));
    assert_eq!(
        m1.recv_timeout(std::time::Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(Cmd::Fail("bye")).unwrap();
    for m in [m1, m2] {
        assert_eq!(
            m.recv_timeout(DEADLINE),
            Ok(ExitReason::Failed("bye".into()))
        );
        // Exactly once: then the channel is closed.
        assert_eq!(
            m.recv_timeout(DEADLINE),
            Err(RecvTimeoutError::Disconnected)
        );
    }
    sup.shutdown().unwrap();
}

#[test]
fn a_monitor_on_a_gone_process_fires_at_once_with_no_process() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    sup.shutdown().unwrap();
    let m = monitor(pid);
    assert_eq!(m.try_recv(), Ok(ExitReason::NoProcess));
    assert!(m.try_recv().is_err());
}

#[test]
fn a_supervisor_can_be_monitored() {
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let m = monitor(sup.pid());
    sup.shutdown().unwrap();
    assert_eq!(m.try_recv(), Ok(ExitReason::Shutdown));
}

/// A monitor taken while the process is exiting — its names being released — fires only
/// once they are all gone, like any other: `NoProcess` never arrives before the names
/// go, and `is_alive` does not turn false before either. (A monitor taken in that window
/// used to answer `NoProcess` at once.)
#[test]
fn a_monitor_taken_during_the_exit_fires_after_the_names_are_gone() {
    use steadfast::{ChildSpec, DynamicSupervisor, Registry};
    const NAMES: usize = 20_000;
    let reg: Registry<usize, ()> = Registry::new();
    let pool = DynamicSupervisor::builder().start().unwrap();
    for round in 0..5 {
        let (ready_tx, ready) = crossbeam_channel::bounded::<()>(0);
        let r = reg.clone();
        let pid = pool
            .start_child(ChildSpec::task("owner", move |_| {
                for n in 0..NAMES {
                    r.register(n, ()).unwrap();
                }
                // The watcher is polling from here on; the exit releases the names.
                ready_tx.send(()).unwrap();
                Ok(())
            }))
            .unwrap();
        ready.recv_timeout(DEADLINE).unwrap();
        let reason = loop {
            // Nor is the process reported gone by `is_alive` while it still holds names.
            if !pid.is_alive() {
                let held = reg.lookup(&0).is_some() || reg.lookup(&(NAMES - 1)).is_some();
                assert!(!held, "round {round}: not alive, names still held");
            }
            if let Ok(reason) = monitor(pid).try_recv() {
                break reason;
            }
            std::hint::spin_loop();
        };
        let left = (0..NAMES).filter(|n| reg.lookup(n).is_some()).count();
        assert_eq!(
            left, 0,
            "round {round}: {reason:?} with {left} names still held"
        );
    }
    pool.shutdown().unwrap();
}
