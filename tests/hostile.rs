//! Hostile children: code that ignores its stop signal, blocks where the stop cannot reach
//! it, panics in odd ways, or turns its own supervisor against itself. Each case ends with
//! no deadlock, within the shutdown timeouts, with the documented exit reasons.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use steadfast::{
    monitor, ChildSpec, ChildStatus, DynamicSupervisor, ExitReason, Restart, Shutdown, Strategy,
    Supervisor, SupervisorError, SupervisorRef,
};

/// Long enough that waiting it out would fail the test's own deadline: a case that only
/// "works" by sitting out a shutdown timeout shows up as a failure, not as a slow pass.
const NEVER: Duration = Duration::from_secs(60);

/// Disconnects once the thread that called it has ended completely.
fn thread_end_signal() -> Receiver<()> {
    thread_local! {
        static GUARD: std::cell::RefCell<Option<Sender<()>>> = const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = bounded::<()>(0);
    GUARD.with(|g| *g.borrow_mut() = Some(tx));
    rx
}

fn assert_ended(ended: &Receiver<()>) {
    assert_eq!(
        ended.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected),
        "the thread ended"
    );
}

#[test]
fn a_child_that_ignores_its_stop_signal_forever_is_abandoned_and_the_tree_stops() {
    let release = Arc::new(AtomicBool::new(false));
    let (ended_tx, ended_rx) = bounded(1);
    let flag = release.clone();
    let deaf = ChildSpec::worker("deaf", move |_ctx| {
        let _ = ended_tx.send(thread_end_signal());
        // Busy with its own loop, never looking at the stop signal.
        while !flag.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        Ok(())
    })
    .shutdown(Shutdown::Timeout(Duration::from_millis(100)));
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(idle("before"))
        .child(deaf)
        .start()
        .unwrap();
    let ended = ended_rx.recv_timeout(DEADLINE).unwrap();
    sup.shutdown().unwrap();
    // Reverse order: the deaf child is abandoned, then its elder sibling stops normally.
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "started before",
            "started deaf",
            "abandoned deaf",
            "exited deaf killed",
            "exited before shutdown",
            "supervisor-stopped"
        ]
    );
    // The abandoned thread runs on until it chooses to end (threads cannot be killed).
    release.store(true, Ordering::Release);
    assert_ended(&ended);
}

#[test]
fn a_child_blocked_in_a_plain_recv_is_abandoned_but_one_in_ctx_recv_stops() {
    let (never_tx, never_rx) = unbounded::<()>();
    let (ended_tx, ended_rx) = bounded(1);
    let plain = ChildSpec::worker("plain", move |_ctx| {
        let _ = ended_tx.send(thread_end_signal());
        let _ = never_rx.recv(); // the stop signal cannot reach it here
        Ok(())
    })
    .shutdown(Shutdown::Timeout(Duration::from_millis(100)));
    let (_keep, quiet_rx) = unbounded::<()>();
    let aware = ChildSpec::worker("aware", move |ctx| {
        ctx.recv(&quiet_rx)?; // wakes on stop with `Stopped`
        Ok(())
    })
    .shutdown(Shutdown::Timeout(NEVER));
    let sup = Supervisor::builder()
        .child(plain)
        .child(aware)
        .start()
        .unwrap();
    let children = sup.which_children().unwrap();
    let (plain_exit, aware_exit) = (
        monitor(pid_of(&children, "plain").unwrap()),
        monitor(pid_of(&children, "aware").unwrap()),
    );
    let ended = ended_rx.recv_timeout(DEADLINE).unwrap();
    sup.terminate_child("aware").unwrap();
    assert_eq!(aware_exit.recv().unwrap(), ExitReason::Shutdown);
    sup.terminate_child("plain").unwrap();
    assert_eq!(plain_exit.recv().unwrap(), ExitReason::Killed);
    sup.shutdown().unwrap();
    drop(never_tx); // now its recv returns, and the detached thread ends
    assert_ended(&ended);
}

#[test]
fn a_panic_with_a_non_string_payload_is_a_panicked_exit_and_a_restart() {
    let (spec, cmds) = controlled("numbers");
    let runs = Arc::new(Mutex::new(0u32));
    let count = runs.clone();
    let odd = ChildSpec::worker("odd", move |ctx| {
        *count.lock() += 1;
        if *count.lock() == 1 {
            std::panic::panic_any(42u32);
        }
        ctx.sleep(NEVER)?;
        Ok(())
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(spec)
        .child(odd)
        .start()
        .unwrap();
    let seen = until(&events, |e| brief(e) == "restarted odd");
    let reason = seen
        .iter()
        .find_map(|e| match e {
            steadfast::Event::ChildExited { id, reason, .. } if &**id == "odd" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reason,
        ExitReason::Panicked("<non-string panic payload>".into())
    );
    // The restarted incarnation runs (it may not have reached its first line yet).
    steadfast::wait::until(DEADLINE, || *runs.lock() == 2).unwrap();
    sup.shutdown().unwrap();
    // Only now: a controlled child whose commands disconnect fails at once and, being
    // permanent, crash-loops; before the shutdown that could exceed the intensity.
    drop(cmds);
}

/// A panic payload whose own destructor panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's destructor panicked");
    }
}

#[test]
fn a_panic_payload_whose_drop_panics_does_not_escape_the_runner() {
    let runs = Arc::new(Mutex::new(0u32));
    let count = runs.clone();
    let bomb = ChildSpec::worker("bomb", move |ctx| {
        *count.lock() += 1;
        if *count.lock() == 1 {
            std::panic::panic_any(Bomb);
        }
        ctx.sleep(NEVER)?;
        Ok(())
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(bomb)
        .start()
        .unwrap();
    assert_eq!(
        briefs_through(&events, "restarted bomb"),
        ["started bomb", "exited bomb panicked", "restarted bomb"]
    );
    // The restarted incarnation runs (it may not have reached its first line yet).
    steadfast::wait::until(DEADLINE, || *runs.lock() == 2).unwrap();
    assert_eq!(sup.count_children().unwrap().active, 1);
    sup.shutdown().unwrap();
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        ["exited bomb shutdown", "supervisor-stopped"]
    );
}

/// A worker that is handed its own supervisor's handle, then runs `act` with it.
fn with_handle<H: Send + 'static>(
    id: &str,
    act: impl Fn(&steadfast::Context, &H) -> Result<(), steadfast::ChildError> + Send + Sync + 'static,
) -> (ChildSpec, Sender<H>) {
    let (tx, rx) = unbounded::<H>();
    let spec = ChildSpec::worker(id, move |ctx| {
        let handle = ctx.recv(&rx)?;
        act(ctx, &handle)
    });
    (spec, tx)
}

#[test]
fn a_child_terminating_itself_gets_ok_at_once_and_exits_with_shutdown() {
    let (result_tx, result_rx) = unbounded();
    let (me, give) = with_handle("me", move |ctx, sup: &SupervisorRef| {
        let _ = result_tx.send(sup.terminate_child("me"));
        // The call returned although this child has not exited: its stop is raised.
        assert!(ctx.is_stopping());
        Err(steadfast::Stopped.into())
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(me.shutdown(Shutdown::Timeout(NEVER)))
        .start()
        .unwrap();
    give.send(sup.handle()).unwrap();
    result_rx.recv_timeout(DEADLINE).unwrap().unwrap();
    assert_eq!(
        briefs_through(&events, "exited me shutdown"),
        ["started me", "exited me shutdown"]
    );
    // Kept as a stopped permanent child, as any terminated one.
    let me = &sup.which_children().unwrap()[0];
    assert_eq!((me.status, me.pid), (ChildStatus::Stopped, None));
    sup.shutdown().unwrap();
}

#[test]
fn a_dynamic_child_terminating_itself_by_pid_exits_with_shutdown() {
    let pool = DynamicSupervisor::builder().start().unwrap();
    let (result_tx, result_rx) = unbounded();
    let (spec, give) = with_handle("me", move |ctx, pool: &steadfast::DynamicSupervisorRef| {
        let _ = result_tx.send(pool.terminate_child(ctx.pid()));
        Err(steadfast::Stopped.into())
    });
    let pid = pool
        .start_child(spec.shutdown(Shutdown::Timeout(NEVER)))
        .unwrap();
    let exit = monitor(pid);
    give.send(pool.handle()).unwrap();
    result_rx.recv_timeout(DEADLINE).unwrap().unwrap();
    assert_eq!(exit.recv_timeout(DEADLINE).unwrap(), ExitReason::Shutdown);
    assert_eq!(pool.count_children().unwrap().specs, 0);
    pool.shutdown().unwrap();
}

#[test]
fn a_child_starting_a_sibling_on_its_own_supervisor_succeeds() {
    let (result_tx, result_rx) = unbounded();
    let (spawner, give) = with_handle("spawner", move |ctx, sup: &SupervisorRef| {
        let _ = result_tx.send(sup.start_child(idle("sibling")));
        ctx.sleep(NEVER)?;
        Ok(())
    });
    let sup = Supervisor::builder().child(spawner).start().unwrap();
    give.send(sup.handle()).unwrap();
    let pid = result_rx.recv_timeout(DEADLINE).unwrap().unwrap();
    let children = sup.which_children().unwrap();
    assert_eq!(pid_of(&children, "sibling"), Some(pid));
    sup.shutdown().unwrap();
}

#[test]
fn a_child_calling_its_supervisor_before_it_is_ready_is_refused_not_deadlocked() {
    let (handle_tx, handle_rx) = unbounded::<SupervisorRef>();
    let (result_tx, result_rx) = unbounded();
    let eager = ChildSpec::worker("eager", move |ctx| {
        // The supervisor is waiting for this child's readiness: it cannot serve a start.
        let sup = ctx.recv(&handle_rx)?;
        let _ = result_tx.send(sup.start_child(idle("too-early")));
        ctx.ready();
        ctx.sleep(NEVER)?;
        Ok(())
    })
    .ready_timeout(NEVER);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(idle("first"))
        .start()
        .unwrap();
    // start_child waits for `eager` to be ready, so hand it the handle from another thread.
    let handle = sup.handle();
    let starter = std::thread::spawn(move || handle.start_child(eager));
    handle_tx.send(sup.handle()).unwrap();
    assert_would_deadlock(result_rx.recv_timeout(DEADLINE).unwrap());
    starter.join().unwrap().unwrap();
    // Questions are still answered meanwhile; the refused start left nothing behind.
    assert_eq!(ids(sup.which_children().unwrap()), ["first", "eager"]);
    sup.shutdown().unwrap();
    assert!(!briefs_through(&events, "supervisor-stopped")
        .iter()
        .any(|b| b.starts_with("abandoned")));
}

#[test]
fn a_child_calling_its_supervisor_while_being_stopped_is_refused_not_abandoned() {
    let (result_tx, result_rx) = unbounded();
    let (late, give) = with_handle("late", move |ctx, sup: &SupervisorRef| {
        let _ = ctx.stop_signal().recv();
        // Stopping: a start would be served only after this child's own stop completes.
        let _ = result_tx.send((
            sup.start_child(idle("never")),
            sup.which_children().map(|c| c.len()),
        ));
        Ok(())
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(late.shutdown(Shutdown::Timeout(NEVER)))
        .start()
        .unwrap();
    give.send(sup.handle()).unwrap();
    // Wait until the child holds the handle (it then parks on its stop signal).
    wait_until_received(&give);
    sup.shutdown().unwrap();
    let (start, which) = result_rx.recv_timeout(DEADLINE).unwrap();
    assert_would_deadlock(start);
    assert_eq!(which.unwrap(), 1, "questions are answered while it waits");
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        ["started late", "exited late shutdown", "supervisor-stopped"]
    );
}

fn assert_would_deadlock<T: std::fmt::Debug>(result: Result<T, SupervisorError>) {
    assert!(
        matches!(result, Err(SupervisorError::WouldDeadlock)),
        "{result:?}"
    );
}

/// Waits until the receiving side has taken everything sent on `tx`.
fn wait_until_received<T>(tx: &Sender<T>) {
    steadfast::wait::until(DEADLINE, || tx.is_empty()).expect("the child took its handle");
}

#[test]
fn a_process_inside_the_tree_can_shut_the_whole_tree_down() {
    // top → inner supervisor → worker that owns the top's `Supervisor` and shuts it down.
    let (result_tx, result_rx) = unbounded();
    let (owner, give) = with_handle(
        "owner",
        move |ctx, slot: &Arc<Mutex<Option<Supervisor>>>| {
            let top = slot.lock().take().expect("handed over once");
            let _ = result_tx.send(top.shutdown());
            // The call could not wait for this very thread: it returned, the stop is raised.
            assert!(ctx.is_stopping());
            Err(steadfast::Stopped.into())
        },
    );
    let inner = Supervisor::builder().child(owner.shutdown(Shutdown::Timeout(NEVER)));
    let (sink, events) = unbounded();
    let top = Supervisor::builder()
        .event_sink(sink)
        .child(idle("first"))
        .child(ChildSpec::supervisor("inner", inner))
        .start()
        .unwrap();
    let top_exit = monitor(top.pid());
    give.send(Arc::new(Mutex::new(Some(top)))).unwrap();
    result_rx.recv_timeout(DEADLINE).unwrap().unwrap();
    assert_eq!(
        top_exit.recv_timeout(DEADLINE).unwrap(),
        ExitReason::Shutdown
    );
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "started first",
            "started inner",
            "exited inner shutdown",
            "exited first shutdown",
            "supervisor-stopped"
        ]
    );
}

#[test]
fn joining_the_tree_from_inside_it_is_refused() {
    let (result_tx, result_rx) = unbounded();
    let (joiner, give) = with_handle(
        "joiner",
        move |_ctx, slot: &Arc<Mutex<Option<Supervisor>>>| {
            let top = slot.lock().take().expect("handed over once");
            // Refused; the owning handle is consumed, so (as on drop) the tree stops.
            let _ = result_tx.send(top.join());
            Ok(())
        },
    );
    let top = Supervisor::builder()
        .child(joiner.restart(Restart::Temporary))
        .start()
        .unwrap();
    let top_exit = monitor(top.pid());
    give.send(Arc::new(Mutex::new(Some(top)))).unwrap();
    assert_would_deadlock(result_rx.recv_timeout(DEADLINE).unwrap());
    assert_eq!(
        top_exit.recv_timeout(DEADLINE).unwrap(),
        ExitReason::Shutdown
    );
}

#[test]
fn a_group_restart_refuses_a_call_from_the_sibling_it_is_stopping() {
    // one_for_all: `b` crashes; `a` is being stopped and, when told, asks the supervisor
    // to start a child — which can only be served after `a` has stopped.
    let (result_tx, result_rx) = unbounded();
    let (a, give) = with_handle("a", move |ctx, sup: &SupervisorRef| {
        let _ = ctx.stop_signal().recv();
        let _ = result_tx.send(sup.start_child(idle("never")));
        Ok(())
    });
    let (b, b_cmds) = controlled("b");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(a.shutdown(Shutdown::Timeout(NEVER)))
        .child(b)
        .start()
        .unwrap();
    give.send(sup.handle()).unwrap();
    wait_until_received(&give);
    b_cmds.send(Cmd::Panic("b crashed")).unwrap();
    assert_would_deadlock(result_rx.recv_timeout(DEADLINE).unwrap());
    assert_eq!(
        briefs_through(&events, "restarted b"),
        [
            "started a",
            "started b",
            "exited b panicked",
            "exited a shutdown",
            "restarted a",
            "restarted b"
        ]
    );
    drop(b_cmds);
    sup.shutdown().unwrap();
}

// ---- a panic inside Drop while unwinding aborts the process ---------------------------

const ABORT_SCENARIO: &str = "STEADFAST_TEST_ABORT_SCENARIO";

/// Panics in its destructor: during the unwinding of another panic, that aborts.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a destructor panicked during unwinding");
    }
}

/// Runs only as the subprocess of the test below (it aborts the process it runs in).
#[test]
#[ignore = "run by a_panic_in_drop_during_unwinding_aborts_the_process, in a subprocess"]
fn abort_scenario() {
    if std::env::var_os(ABORT_SCENARIO).is_none() {
        return;
    }
    let sup = Supervisor::builder()
        .child(ChildSpec::worker("doomed", |_ctx| {
            let _guard = PanicsOnDrop;
            panic!("first panic");
        }))
        .start();
    // Not reached: the process aborts while the child unwinds.
    drop(sup);
    std::process::exit(0);
}

#[test]
fn a_panic_in_drop_during_unwinding_aborts_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let out = scenario("abort_scenario", ABORT_SCENARIO, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Rust cannot unwind through a second panic: the runtime aborts (SIGABRT), and no
    // `catch_unwind` — steadfast's included — can contain it. Documented on `ChildSpec`.
    assert_eq!(out.status.signal(), Some(6), "{:?}\n{stderr}", out.status);
    assert!(
        stderr.contains("a destructor panicked during unwinding"),
        "{stderr}"
    );
}
