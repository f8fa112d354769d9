//! Stop hooks (`Context::on_stop`): run once, on the raising thread, right after the
//! signal; at once when registered after it; dropped with their incarnation; contained
//! when they panic. And the blocking I/O they exist for.

mod common;

use std::io::Read;
use std::net::{Shutdown as NetShutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use steadfast::channel::{bounded, unbounded};
use steadfast::{ChildSpec, DynamicSupervisor, ExitReason, Shutdown, Supervisor};

/// A child that registers `hooks` closures, each sending its index and the thread it ran
/// on, then says it is set up and waits for its stop.
fn hooked(
    hooks: usize,
) -> (
    ChildSpec,
    steadfast::channel::Receiver<(usize, thread::ThreadId)>,
    steadfast::channel::Receiver<()>,
) {
    let (ran_tx, ran) = unbounded();
    let (set_tx, set) = unbounded();
    let spec = ChildSpec::worker("hooked", move |ctx| {
        for i in 0..hooks {
            let ran_tx = ran_tx.clone();
            ctx.on_stop(move || {
                let _ = ran_tx.send((i, thread::current().id()));
            });
        }
        set_tx.send(()).unwrap();
        let _ = ctx.stop_signal().recv();
        Ok(())
    });
    (spec, ran, set)
}

#[test]
fn hooks_run_once_each_in_order_on_the_raising_thread() {
    let (spec, ran, set) = hooked(2);
    let pool = DynamicSupervisor::builder().start().unwrap();
    let pid = pool.start_child(spec).unwrap();
    set.recv_timeout(DEADLINE).unwrap();
    // terminate_child raises the stop on the supervisor's thread.
    pool.terminate_child(pid).unwrap();
    let got: Vec<(usize, thread::ThreadId)> = ran.try_iter().collect();
    assert_eq!(
        got.len(),
        2,
        "each hook once, and both before the stop returned"
    );
    assert_eq!((got[0].0, got[1].0), (0, 1), "in the order added");
    assert_eq!(got[0].1, got[1].1);
    assert_ne!(got[0].1, thread::current().id());
    drop(pool);
    assert!(ran.try_recv().is_err(), "no hook runs twice");
}

#[test]
fn a_hook_registered_after_the_stop_runs_at_once_on_the_registering_thread() {
    let (tx, rx) = bounded(1);
    let (stopped_tx, stopped) = bounded(1);
    let spec = ChildSpec::worker("late", move |ctx| {
        let _ = ctx.stop_signal().recv();
        let me = thread::current().id();
        let tx = tx.clone();
        ctx.on_stop(move || {
            let _ = tx.send(thread::current().id());
        });
        stopped_tx.send(me).unwrap();
        Ok(())
    });
    let sup = Supervisor::builder().child(spec).start().unwrap();
    sup.shutdown().unwrap();
    let child_thread = stopped.recv_timeout(DEADLINE).unwrap();
    assert_eq!(rx.try_recv().unwrap(), child_thread);
}

#[test]
fn hooks_of_an_ended_incarnation_are_dropped_unrun() {
    // The first incarnation registers a hook and crashes; the restart must not run it
    // when the second incarnation is stopped, and the hook's captures are released.
    let runs = Arc::new(AtomicUsize::new(0));
    let (up_tx, up) = unbounded();
    let (weak_tx, weak) = unbounded();
    let r = runs.clone();
    let spec = ChildSpec::worker("crashy", move |ctx| {
        if ctx.incarnation() == 0 {
            let (r, token) = (r.clone(), Arc::new(()));
            weak_tx.send(Arc::downgrade(&token)).unwrap();
            ctx.on_stop(move || {
                let _keep = &token;
                r.fetch_add(1, Ordering::SeqCst);
            });
            panic!("first incarnation crashes");
        }
        up_tx.send(()).unwrap();
        let _ = ctx.stop_signal().recv();
        Ok(())
    });
    let sup = Supervisor::builder().child(spec).start().unwrap();
    up.recv_timeout(DEADLINE).unwrap();
    let token = weak.recv_timeout(DEADLINE).unwrap();
    assert!(token.upgrade().is_none(), "the hook was dropped");
    sup.shutdown().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_hook_is_contained_and_the_stop_goes_on() {
    let (after_tx, after) = unbounded();
    let (set_tx, set) = unbounded();
    let spec = ChildSpec::worker("bad-hook", move |ctx| {
        ctx.on_stop(|| panic!("hook bug"));
        let after_tx = after_tx.clone();
        ctx.on_stop(move || after_tx.send(()).unwrap());
        set_tx.send(()).unwrap();
        let _ = ctx.stop_signal().recv();
        Ok(())
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    set.recv_timeout(DEADLINE).unwrap();
    sup.shutdown().unwrap();
    after
        .try_recv()
        .expect("the hook after the panicking one ran");
    let briefs: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(
        briefs.contains(&"exited bad-hook shutdown".to_string()),
        "{briefs:?}"
    );
}

#[test]
fn a_hook_unblocks_a_read_and_the_child_stops_with_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    let slot = Mutex::new(Some(server_side));
    let (reading_tx, reading) = unbounded();
    let spec = ChildSpec::worker("reader", move |ctx| {
        let Some(mut stream) = slot.lock().unwrap().take() else {
            return Ok(());
        };
        let unblock = stream.try_clone()?;
        ctx.on_stop(move || {
            let _ = unblock.shutdown(NetShutdown::Both);
        });
        reading_tx.send(()).unwrap();
        let mut buf = [0u8; 16];
        while stream.read(&mut buf)? > 0 {}
        Ok(())
    })
    // Long enough that sitting it out would be obvious.
    .shutdown(Shutdown::Timeout(Duration::from_secs(60)));
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    reading.recv_timeout(DEADLINE).unwrap();
    let started = Instant::now();
    sup.shutdown().unwrap();
    let took = started.elapsed();
    let exits: Vec<ExitReason> = events
        .try_iter()
        .filter_map(|e| match e {
            steadfast::Event::ChildExited { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [ExitReason::Shutdown]);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    drop(client);
}

#[test]
fn hooks_raced_against_the_stop_run_exactly_once() {
    // The child registers hooks while its stop is being raised: each hook runs exactly
    // once, either on the raising thread or at once on the child's.
    for _ in 0..200 {
        let count = Arc::new(AtomicUsize::new(0));
        let added = Arc::new(AtomicUsize::new(0));
        let (c, a) = (count.clone(), added.clone());
        let (go_tx, go) = bounded::<()>(1);
        let spec = ChildSpec::worker("racer", move |ctx| {
            go_tx.send(()).unwrap();
            while !ctx.is_stopping() {
                let c = c.clone();
                ctx.on_stop(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                });
                a.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        let sup = Supervisor::builder().child(spec).start().unwrap();
        go.recv_timeout(DEADLINE).unwrap();
        sup.shutdown().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), added.load(Ordering::SeqCst));
    }
}

/// A stop hook that calls its own supervisor: the hook runs on the supervisor's thread
/// (it raised the stop), whose loop can never serve the call. Questions are answered
/// there and then; anything else fails `WouldDeadlock` at once — neither
/// `terminate_child` nor the tree's shutdown hangs.
#[test]
fn a_stop_hook_calling_its_own_supervisor_is_answered_not_deadlocked() {
    let (said_tx, said) = unbounded();
    let (handle_tx, handle_rx) = unbounded::<steadfast::SupervisorRef>();
    let (hooked_tx, hooked) = unbounded::<()>();
    let spec = ChildSpec::worker("c", move |ctx| {
        // Its own supervisor's handle, from the test (a restart would wait again).
        let sup = ctx.recv(&handle_rx)?;
        let said_tx = said_tx.clone();
        ctx.on_stop(move || {
            let counted = sup.count_children().map(|c| c.specs);
            let listed = sup.which_children().map(|c| c.len());
            let spec = sup.child_spec("c").map(|s| s.id().to_owned());
            let events = sup.events().map(|_| ());
            let restarted = sup.restart_child("c").map(|_| ());
            let _ = said_tx.send((counted, listed, spec, events, restarted));
        });
        hooked_tx.send(())?;
        let _ = ctx.stop_signal().recv();
        Ok(())
    });
    for round in 0..2 {
        let sup = Supervisor::builder().child(spec.clone()).start().unwrap();
        handle_tx.send(sup.handle()).unwrap();
        hooked.recv_timeout(DEADLINE).unwrap();
        // terminate_child (round 0) and the owner's drop (round 1) both raise the stop
        // on the supervisor's thread, where the hook then runs.
        let (tx, rx) = bounded(1);
        let sup_ref = sup.handle();
        thread::spawn(move || {
            if round == 0 {
                let _ = tx.send(sup_ref.terminate_child("c"));
            } else {
                drop(sup);
                let _ = tx.send(Ok(()));
            }
        });
        assert!(rx.recv_timeout(DEADLINE).expect("no hang").is_ok());
        let (counted, listed, spec, events, restarted) = said.recv_timeout(DEADLINE).unwrap();
        assert_eq!(counted.unwrap(), 1, "round {round}");
        assert_eq!(listed.unwrap(), 1);
        assert_eq!(spec.unwrap(), "c");
        assert!(events.is_ok());
        assert!(
            matches!(restarted, Err(steadfast::SupervisorError::WouldDeadlock)),
            "round {round}: {restarted:?}"
        );
    }
}

/// `on_event` may ask its supervisor questions too (it runs on the supervisor's
/// thread); other requests fail `WouldDeadlock` at once.
#[test]
fn on_event_calling_its_own_supervisor_is_answered_not_deadlocked() {
    let (said_tx, said) = unbounded();
    let me: Arc<Mutex<Option<steadfast::SupervisorRef>>> = Arc::default();
    let mine = me.clone();
    let (spec, cmd) = controlled("w");
    let sup = Supervisor::builder()
        .on_event(move |e| {
            if let steadfast::Event::ChildRestarted { .. } = e {
                let sup = mine.lock().unwrap().clone().unwrap();
                let _ = said_tx.send((
                    sup.count_children().map(|c| c.active),
                    sup.terminate_child("w"),
                ));
            }
        })
        .child(spec)
        .start()
        .unwrap();
    *me.lock().unwrap() = Some(sup.handle());
    cmd.send(Cmd::Panic("again")).unwrap();
    let (active, terminated) = said.recv_timeout(DEADLINE).expect("no hang");
    assert_eq!(active.unwrap(), 1);
    assert!(
        matches!(terminated, Err(steadfast::SupervisorError::WouldDeadlock)),
        "{terminated:?}"
    );
    sup.shutdown().unwrap();
}
