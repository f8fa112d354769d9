//! Registries: unique keys owned by live processes, removed in the owner's own thread
//! before its exit is reported — so whoever observed the exit finds the name gone at once.

mod common;

use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Sender};
use steadfast::{
    monitor, ChildSpec, ExitReason, Pid, Registry, RegistryError, Restart, Shutdown, Supervisor,
};

/// A child that registers `name` in `reg`, reports ready, then obeys commands. With
/// `deaf`, it ignores its stop signal until `Cmd::Return` arrives.
fn named(reg: &Registry<String, u32>, name: &str, deaf: bool) -> (ChildSpec, Sender<Cmd>) {
    let (tx, rx) = unbounded::<Cmd>();
    let (reg, name) = (reg.clone(), name.to_owned());
    let spec = ChildSpec::worker(name.clone(), move |ctx| {
        reg.register(name.clone(), 7)?;
        ctx.ready();
        let cmd = if deaf { rx.recv()? } else { ctx.recv(&rx)? };
        match cmd {
            Cmd::Panic(m) => panic!("{m}"),
            Cmd::Fail(m) => Err(m.into()),
            Cmd::Return => Ok(()),
            Cmd::Shutdown => Err(steadfast::Stopped.into()),
        }
    })
    .restart(Restart::Temporary)
    .ready_timeout(DEADLINE);
    (spec, tx)
}

/// Starts a named child, makes it exit with `cmd`, waits on a monitor, and checks at once
/// (no waiting) that the name is gone.
fn cleaned_after(cmd: Cmd, expected: ExitReason) {
    let reg = Registry::new();
    let (spec, tx) = named(&reg, "n", false);
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (pid, value) = reg.lookup("n").unwrap();
    assert_eq!(value, 7);
    assert_eq!(reg.keys(pid), ["n".to_string()]);
    let exit = monitor(pid);
    tx.send(cmd).unwrap();
    assert_eq!(exit.recv_timeout(DEADLINE).unwrap(), expected);
    assert_eq!(reg.lookup("n"), None, "gone before the exit was reported");
    assert_eq!(reg.count(), 0);
    assert!(reg.keys(pid).is_empty());
    sup.shutdown().unwrap();
}

#[test]
fn names_are_gone_when_a_normal_exit_is_observed() {
    cleaned_after(Cmd::Return, ExitReason::Normal);
}

#[test]
fn names_are_gone_when_a_failure_is_observed() {
    cleaned_after(Cmd::Fail("e"), ExitReason::Failed("e".into()));
}

#[test]
fn names_are_gone_when_a_panic_is_observed() {
    cleaned_after(Cmd::Panic("p"), ExitReason::Panicked("p".into()));
}

#[test]
fn names_are_gone_when_the_supervisor_observes_the_exit() {
    let reg = Registry::new();
    let (spec, tx) = named(&reg, "n", false);
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let events = sup.events().unwrap();
    tx.send(Cmd::Panic("x")).unwrap();
    assert_eq!(brief(&next(&events)), "exited n panicked");
    assert_eq!(reg.lookup("n"), None);
    sup.shutdown().unwrap();
}

#[test]
fn names_are_released_when_a_child_is_abandoned() {
    let reg = Registry::new();
    let (spec, tx) = named(&reg, "n", true);
    let sup = Supervisor::builder()
        .child(spec.shutdown(Shutdown::Timeout(Duration::from_millis(20))))
        .start()
        .unwrap();
    let (holder, _) = reg.lookup("n").unwrap();
    sup.terminate_child("n").unwrap();
    // The supervisor gave up on it; its thread still runs, but the name is free.
    assert_eq!(reg.lookup("n"), None);
    assert!(!holder.is_alive());
    // The new registration wins; the abandoned thread can neither take it back nor remove it.
    reg.register("n".into(), 1).unwrap();
    assert_eq!(
        reg.register_for(holder, "m".into(), 2),
        Err(RegistryError::NotAlive(holder))
    );
    assert_eq!(reg.unregister_for(holder, "n"), None);
    assert_eq!(reg.lookup("n"), Some((Pid::current(), 1)));
    tx.send(Cmd::Return).unwrap();
    reg.unregister("n").unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn names_are_gone_when_the_supervisor_has_shut_down() {
    let reg = Registry::new();
    let (a, _ta) = named(&reg, "a", false);
    let (b, _tb) = named(&reg, "b", false);
    let sup = Supervisor::builder().child(a).child(b).start().unwrap();
    assert_eq!(reg.count(), 2);
    sup.shutdown().unwrap();
    assert_eq!(reg.count(), 0);
}

#[test]
fn names_are_gone_when_join_returns_after_intensity_is_exceeded() {
    let reg = Registry::new();
    let (a, ta) = named(&reg, "a", false);
    let (b, _tb) = named(&reg, "b", false);
    let sup = Supervisor::builder()
        .intensity(0, DEADLINE)
        .child(a.restart(Restart::Permanent))
        .child(b)
        .start()
        .unwrap();
    ta.send(Cmd::Fail("x")).unwrap();
    assert!(sup.join().is_err());
    assert_eq!(reg.count(), 0);
}

#[test]
fn a_live_holder_keeps_its_key() {
    let reg = Registry::new();
    let (spec, _tx) = named(&reg, "n", false);
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (holder, _) = reg.lookup("n").unwrap();
    assert_eq!(
        reg.register("n".into(), 1),
        Err(RegistryError::AlreadyRegistered(holder))
    );
    // Registering twice from the same process is a conflict too.
    reg.register("mine".into(), 1).unwrap();
    assert_eq!(
        reg.register("mine".into(), 2),
        Err(RegistryError::AlreadyRegistered(Pid::current()))
    );
    // Only the holder can unregister.
    assert_eq!(reg.unregister("n"), None);
    assert!(reg.lookup("n").is_some());
    assert_eq!(reg.unregister("mine"), Some(1));
    sup.shutdown().unwrap();
}

#[test]
fn a_key_is_free_again_once_its_holders_exit_was_observed() {
    let reg = Registry::new();
    let (spec, tx) = named(&reg, "n", false);
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let exit = monitor(reg.lookup("n").unwrap().0);
    tx.send(Cmd::Return).unwrap();
    exit.recv_timeout(DEADLINE).unwrap();
    reg.register("n".into(), 8).unwrap();
    assert_eq!(reg.lookup("n"), Some((Pid::current(), 8)));
    reg.unregister("n");
    sup.shutdown().unwrap();
}

#[test]
fn registering_for_a_dead_pid_is_an_error() {
    let reg: Registry<&str, ()> = Registry::new();
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    sup.shutdown().unwrap();
    assert_eq!(
        reg.register_for(pid, "k", ()),
        Err(RegistryError::NotAlive(pid))
    );
    assert_eq!(reg.count(), 0);
}

#[test]
fn register_for_ties_the_entry_to_that_process() {
    let reg: Registry<&str, ()> = Registry::new();
    let sup = Supervisor::builder().child(idle("a")).start().unwrap();
    let pid = sup.which_children().unwrap()[0].pid.unwrap();
    reg.register_for(pid, "k", ()).unwrap();
    assert_eq!(reg.keys(pid), ["k"]);
    let exit = monitor(pid);
    sup.terminate_child("a").unwrap();
    exit.recv_timeout(DEADLINE).unwrap();
    assert_eq!(reg.lookup("k"), None);
    sup.shutdown().unwrap();
}

#[test]
fn wait_for_cleanup_serves_an_observer_that_did_not_wait_on_the_exit() {
    let reg = Registry::new();
    let (spec, tx) = named(&reg, "n", false);
    let sup = Supervisor::builder().child(spec).start().unwrap();
    tx.send(Cmd::Return).unwrap(); // the exit happens on its own time
    reg.wait_for_cleanup("n", DEADLINE).unwrap();
    assert_eq!(reg.lookup("n"), None);
    sup.shutdown().unwrap();
}

#[test]
fn wait_for_registration_returns_the_entry() {
    let reg = Registry::new();
    let sup = Supervisor::builder().start().unwrap();
    let (spec, _tx) = named(&reg, "late", false);
    let h = sup.handle();
    let starter = std::thread::spawn(move || h.start_child(spec).unwrap());
    let (pid, value) = reg.wait_for_registration("late", DEADLINE).unwrap();
    assert_eq!(value, 7);
    assert_eq!(starter.join().unwrap(), pid);
    sup.shutdown().unwrap();
}

#[test]
fn waits_time_out_with_an_error_naming_the_key() {
    let reg: Registry<String, ()> = Registry::new();
    let err = reg
        .wait_for_registration("never", Duration::from_millis(20))
        .unwrap_err();
    assert!(err.to_string().contains("\"never\""), "{err}");
    assert!(err.waited >= Duration::from_millis(20));
    reg.register("stays".into(), ()).unwrap();
    assert!(reg
        .wait_for_cleanup("stays", Duration::from_millis(20))
        .is_err());
    reg.unregister("stays");
}

#[test]
fn concurrent_register_and_unregister_keep_count_exact() {
    let reg: Registry<(usize, usize), usize> = Registry::new();
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let reg = reg.clone();
            s.spawn(move || {
                for i in 0..ROUNDS {
                    reg.register((t, i), i).unwrap();
                    // Everyone contends for one shared key too.
                    let _ = reg.register((usize::MAX, 0), t);
                    if i % 4 != 0 {
                        assert_eq!(reg.unregister(&(t, i)), Some(i));
                    }
                    reg.unregister(&(usize::MAX, 0));
                }
            });
        }
    });
    // Each thread keeps every fourth key; the shared key was always released by its holder.
    assert_eq!(reg.count(), THREADS * ROUNDS / 4);
    assert_eq!(reg.lookup(&(usize::MAX, 0)), None);
}

#[test]
fn readers_on_more_threads_than_lock_slots_never_see_a_write_half_done() {
    // Look-ups lock only their own thread's slot; a writer locks every slot. Many more
    // threads than slots (there are at most eight), writers changing values in place and
    // re-registering, readers checking each entry they see is whole and correctly owned.
    // The writers go on until every reader has seen enough entries, so the two overlap
    // however the threads are scheduled.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Barrier, Mutex};
    use std::time::Instant;
    let reg: Registry<u32, (u64, u64)> = Registry::new();
    const WRITERS: u32 = 4;
    const READERS: usize = 8;
    const HITS: usize = 200;
    let owners = Mutex::new(vec![None; WRITERS as usize]);
    let start = Barrier::new(WRITERS as usize + READERS);
    let satisfied = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let reg = reg.clone();
            let (owners, start, satisfied) = (&owners, &start, &satisfied);
            s.spawn(move || {
                owners.lock().unwrap()[w as usize] = Some(Pid::current());
                start.wait();
                let mut n = 0u64;
                while satisfied.load(Ordering::Acquire) < READERS && Instant::now() < deadline {
                    let key = w * 16 + (n % 16) as u32;
                    reg.register(key, (n, n)).unwrap();
                    reg.update_value(&key, |v| {
                        // A window a reader could fall into, were it not locked out.
                        v.0 += 1;
                        for _ in 0..50 {
                            std::hint::black_box(&mut *v);
                        }
                        v.1 += 1;
                    })
                    .unwrap();
                    assert_eq!(reg.unregister(&key), Some((n + 1, n + 1)));
                    n += 1;
                }
            });
        }
        for r in 0..READERS {
            let reg = reg.clone();
            let (owners, start, satisfied) = (&owners, &start, &satisfied);
            s.spawn(move || {
                start.wait();
                let owners = owners.lock().unwrap().clone();
                let (mut i, mut hits) = (r as u32, 0);
                while hits < HITS {
                    assert!(Instant::now() < deadline, "the writers never showed up");
                    i = i.wrapping_add(7);
                    let key = i % (WRITERS * 16);
                    if let Some((pid, (a, b))) = reg.lookup(&key) {
                        assert_eq!(a, b, "a look-up saw an update half done");
                        assert_eq!(Some(pid), owners[(key / 16) as usize], "wrong owner");
                        hits += 1;
                    }
                }
                satisfied.fetch_add(1, Ordering::AcqRel);
            });
        }
    });
    assert_eq!(reg.count(), 0);
}

#[test]
fn lookups_from_other_processes_see_the_holder() {
    let reg: Registry<String, Sender<u32>> = Registry::new();
    let (tx, rx) = unbounded();
    let r = reg.clone();
    let sup = Supervisor::builder()
        .child(
            ChildSpec::worker("server", move |ctx| {
                let (me, inbox) = unbounded();
                r.register("server".into(), me)?;
                ctx.ready();
                loop {
                    let n: u32 = ctx.recv(&inbox)?;
                    tx.send(n * 2).unwrap();
                }
            })
            .ready_timeout(DEADLINE),
        )
        .start()
        .unwrap();
    let (_, server) = reg.lookup("server").unwrap();
    server.send(21).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 42);
    sup.shutdown().unwrap();
}

/// `register_for` racing its owner's exit: once the owner's exit has been observed (its
/// monitor fired), no look-up returns it, however the registration interleaved with the
/// exit. A registrar loops registering and unregistering on the owner's behalf while the
/// owner exits.
#[test]
fn register_for_racing_the_owners_exit_leaves_no_stale_name() {
    let reg: Registry<u32, u32> = Registry::new();
    let pool = steadfast::DynamicSupervisor::builder().start().unwrap();
    for round in 0..2_000 {
        let (go_tx, go) = crossbeam_channel::bounded::<()>(1);
        let owner = ChildSpec::worker("owner", move |_| {
            let _ = go.recv_timeout(DEADLINE);
            Ok(())
        })
        .restart(Restart::Temporary);
        let owner = pool.start_child(owner).unwrap();
        let exited = monitor(owner);
        let r = reg.clone();
        let registrar = std::thread::spawn(move || loop {
            match r.register_for(owner, 1, round) {
                Err(RegistryError::NotAlive(_)) => break,
                Ok(()) => {
                    r.unregister_for(owner, &1);
                }
                Err(RegistryError::AlreadyRegistered(_)) => {}
                Err(e) => panic!("{e}"),
            }
        });
        go_tx.send(()).unwrap();
        exited.recv_timeout(DEADLINE).unwrap();
        for _ in 0..20 {
            if let Some((holder, _)) = reg.lookup(&1) {
                panic!("round {round}: {holder} returned after its exit was observed");
            }
        }
        registrar.join().unwrap();
        assert!(reg.lookup(&1).is_none());
        assert_eq!(reg.count(), 0);
    }
    pool.shutdown().unwrap();
}
