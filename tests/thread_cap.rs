//! The global thread cap turns thread exhaustion into an error value. The cap is global
//! state, so these tests have their own binary and run one after another.

mod common;

use common::*;
use parking_lot::Mutex;
use steadfast::{DynamicSupervisor, SpawnError, StartError, Supervisor, SupervisorError};

/// The cap is process-wide: serialize the tests that change it.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn starts_beyond_the_cap_fail_and_succeed_again_after_room_is_made() {
    let _serial = SERIAL.lock();
    let default = steadfast::max_threads();
    assert!(
        default >= 64,
        "a sane default is derived from the system: {default}"
    );
    let pool = DynamicSupervisor::builder().start().unwrap();
    steadfast::set_max_threads(steadfast::live_threads() + 4);
    let pids: Vec<_> = (0..4)
        .map(|_| pool.start_child(idle("job")).unwrap())
        .collect();
    let err = pool.start_child(idle("job")).unwrap_err();
    assert!(
        matches!(
            err,
            SupervisorError::StartFailed(StartError::Spawn {
                source: SpawnError::ThreadLimit { .. },
                ..
            })
        ),
        "{err:?}"
    );
    // A whole new tree is refused the same way, without a panic.
    assert!(matches!(
        Supervisor::builder().start(),
        Err(StartError::Spawn { .. })
    ));
    // The tree and the process stay healthy; terminating makes room again.
    assert_eq!(pool.count_children().unwrap().active, 4);
    pool.terminate_child(pids[0]).unwrap();
    pool.terminate_child(pids[1]).unwrap();
    pool.start_child(idle("job")).unwrap();
    steadfast::set_max_threads(default);
    pool.shutdown().unwrap();
}

#[test]
fn a_cap_of_zero_refuses_every_start() {
    let _serial = SERIAL.lock();
    let default = steadfast::max_threads();
    steadfast::set_max_threads(0);
    let err = Supervisor::builder().child(idle("a")).start().unwrap_err();
    steadfast::set_max_threads(default);
    assert!(matches!(
        err,
        StartError::Spawn {
            source: SpawnError::ThreadLimit { limit: 0 },
            ..
        }
    ));
}
