//! The global registry from a fresh process: these tests see its whole state, so they live
//! in their own binary and run one after another.

mod common;

use common::*;
use steadfast::{
    registry, DynamicSupervisor, DynamicSupervisorRef, Pid, Supervisor, SupervisorRef,
};

#[test]
fn named_supervisors_appear_and_vanish() {
    let _s = serial();
    assert_eq!(registry().count(), 0, "fresh");
    let sup = Supervisor::builder()
        .name("app")
        .child(idle("a"))
        .start()
        .unwrap();
    let pool = DynamicSupervisor::builder().name("pool").start().unwrap();
    assert_eq!(registry().count(), 2);
    let (pid, app) = registry().lookup_as::<SupervisorRef>("app").unwrap();
    assert_eq!(pid, sup.pid());
    assert_eq!(app.pid(), sup.pid());
    // The wrong type finds nothing and never panics.
    assert!(registry().lookup_as::<SupervisorRef>("pool").is_none());
    assert!(registry().lookup_as::<String>("app").is_none());
    drop(sup);
    pool.shutdown().unwrap();
    assert_eq!(registry().count(), 0);
}

#[test]
fn any_value_can_be_registered_and_looked_up_by_type() {
    let _s = serial();
    registry().register_value("answer", 42_u64).unwrap();
    registry()
        .register_value("greeting", String::from("hello"))
        .unwrap();
    assert_eq!(
        registry().lookup_as::<u64>("answer"),
        Some((Pid::current(), 42))
    );
    assert_eq!(
        registry().lookup_as::<String>("greeting").map(|(_, v)| v),
        Some("hello".to_string())
    );
    assert_eq!(registry().lookup_as::<u32>("answer"), None);
    assert!(registry().register_value("answer", 1_u64).is_err());
    assert_eq!(
        registry().keys(Pid::current()).len(),
        2,
        "this thread owns both"
    );
    registry().unregister("answer").unwrap();
    registry().unregister("greeting").unwrap();
    assert_eq!(registry().count(), 0);
}

#[test]
fn typed_waits_return_the_typed_value_and_skip_other_types() {
    use std::time::Duration;
    let _s = serial();
    let name = "global_registry::typed-wait";
    // Registered from another thread meanwhile: the wait sees it.
    let registrar = std::thread::spawn(move || Supervisor::builder().name(name).start().unwrap());
    let (pid, handle) = registry()
        .wait_for_registration_as::<SupervisorRef>(name, DEADLINE)
        .unwrap();
    assert_eq!(pid, handle.pid());
    // The same name held with another type does not count: the wait times out.
    let err = registry()
        .wait_for_registration_as::<DynamicSupervisorRef>(name, Duration::from_millis(20))
        .unwrap_err();
    assert!(err.what.contains("DynamicSupervisorRef"), "{err}");
    drop(registrar.join().unwrap());
    assert!(registry()
        .wait_for_registration_as::<SupervisorRef>(name, Duration::ZERO)
        .is_err());
}
