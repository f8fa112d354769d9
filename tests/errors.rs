//! What a user sees when printing errors: which child and why, each cause once.

mod common;

use std::error::Error as _;
use std::time::Duration;

use steadfast::{ChildSpec, DynamicSupervisor, StartError, Supervisor, SupervisorError};

/// The error and each of its sources, as an error-chain printer shows them.
fn chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut source = e.source();
    while let Some(inner) = source {
        out.push(inner.to_string());
        source = inner.source();
    }
    out
}

#[test]
fn a_failed_start_child_names_the_child_and_the_cause() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let err = pool
        .start_child(
            ChildSpec::worker("db", |_ctx| panic!("no such file"))
                .ready_timeout(Duration::from_secs(5)),
        )
        .unwrap_err();
    assert!(matches!(err, SupervisorError::StartFailed(_)));
    assert_eq!(
        err.to_string(),
        "child \"db\" exited before it started: panicked: no such file"
    );
    assert_eq!(
        chain(&err).len(),
        1,
        "the cause is shown once: {:?}",
        chain(&err)
    );
}

#[test]
fn a_nested_start_failure_shows_the_whole_cause_once() {
    let inner = Supervisor::builder().child(
        ChildSpec::worker("leaf", |_ctx| Err("config missing".into()))
            .ready_timeout(Duration::from_secs(5)),
    );
    let err = Supervisor::builder()
        .child(ChildSpec::supervisor("branch", inner))
        .start()
        .unwrap_err();
    assert!(matches!(err, StartError::Nested { .. }));
    assert_eq!(
        err.to_string(),
        "supervisor child \"branch\" failed to start: child \"leaf\" exited before it \
         started: failed: config missing"
    );
    assert!(err.source().is_none());
}

#[test]
fn a_spawn_error_names_the_child_and_the_system_reason_once() {
    let err = StartError::Spawn {
        id: "w".into(),
        source: steadfast::SpawnError::ThreadLimit { limit: 3 },
    };
    assert_eq!(
        chain(&err),
        ["could not spawn a thread for \"w\": the thread cap of 3 live threads is reached"]
    );
}
