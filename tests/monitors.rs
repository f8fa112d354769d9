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
