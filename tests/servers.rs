//! Servers (`gen_server` on a thread): ordering, set-up, a mailbox that survives a crash,
//! a call that fails at once when its server crashes, timeouts, stops, self-calls, names.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use once_cell::sync::OnceCell;
use steadfast::channel::{unbounded, Receiver, Sender};
use steadfast::server::{CallError, Server, ServerRef, ServerSpec};
use steadfast::{Context, ExitReason, StartError, Supervisor};

/// A list that records what it is told, with knobs for crashing and blocking.
struct Log {
    items: Vec<u32>,
    incarnation: u64,
    me: Arc<OnceCell<ServerRef<Log>>>,
}

enum Req {
    Get,
    Incarnation,
    Panic(&'static str),
    /// Blocks until the gate sends (or the stop is raised).
    Block(Receiver<()>),
    CallMyself,
}

enum Msg {
    Push(u32),
    Crash,
    Block(Receiver<()>),
}

#[derive(Debug, PartialEq)]
enum Answer {
    Items(Vec<u32>),
    Incarnation(u64),
    Unblocked,
    Myself(Result<(), CallError>),
}

impl Server for Log {
    type Call = Req;
    type Reply = Answer;
    type Cast = Msg;

    fn handle_call(&mut self, request: Req, ctx: &Context) -> Answer {
        match request {
            Req::Get => Answer::Items(self.items.clone()),
            Req::Incarnation => Answer::Incarnation(self.incarnation),
            Req::Panic(msg) => panic!("{msg}"),
            Req::Block(gate) => {
                let _ = ctx.recv(&gate);
                Answer::Unblocked
            }
            Req::CallMyself => {
                let me = self.me.get().unwrap();
                Answer::Myself(me.call(Req::Get).map(drop))
            }
        }
    }

    fn handle_cast(&mut self, message: Msg, ctx: &Context) {
        match message {
            Msg::Push(n) => self.items.push(n),
            Msg::Crash => panic!("told to crash"),
            Msg::Block(gate) => {
                let _ = ctx.recv(&gate);
            }
        }
    }
}

/// The log server's spec, to refine before `build`, and the slot its handle goes in
/// (`Req::CallMyself` reads it).
fn log_spec(id: &str) -> (ServerSpec<Log>, Arc<OnceCell<ServerRef<Log>>>) {
    let me = Arc::new(OnceCell::new());
    let slot = me.clone();
    let spec = ServerSpec::new(id, move |ctx: &Context| {
        Ok(Log {
            items: Vec::new(),
            incarnation: ctx.incarnation(),
            me: slot.clone(),
        })
    });
    (spec, me)
}

/// Builds a refined log server spec, and hands the server its own handle.
fn built(
    (spec, me): (ServerSpec<Log>, Arc<OnceCell<ServerRef<Log>>>),
) -> (steadfast::ChildSpec, ServerRef<Log>) {
    let (spec, handle) = spec.build();
    me.set(handle.clone()).unwrap();
    (spec, handle)
}

fn log_server(id: &str) -> (steadfast::ChildSpec, ServerRef<Log>) {
    built(log_spec(id))
}

fn gate() -> (Sender<()>, Receiver<()>) {
    unbounded()
}

#[test]
fn casts_and_calls_are_served_in_arrival_order() {
    let (spec, log) = log_server("log");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    for n in 0..100 {
        log.cast(Msg::Push(n)).unwrap();
    }
    assert_eq!(
        log.call(Req::Get).unwrap(),
        Answer::Items((0..100).collect())
    );
    drop(sup);
}

#[test]
fn requests_sent_before_the_start_are_served_once_it_runs() {
    let (spec, log) = log_server("early");
    log.cast(Msg::Push(7)).unwrap();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    assert_eq!(log.call(Req::Get).unwrap(), Answer::Items(vec![7]));
    drop(sup);
}

#[test]
fn a_failing_set_up_fails_the_start_with_its_cause() {
    let (spec, _handle) =
        ServerSpec::<Log>::new("db", |_ctx| Err("cannot open the database".into())).build();
    let err = Supervisor::builder().child(spec).start().unwrap_err();
    assert!(matches!(err, StartError::ChildExited { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
}

#[test]
fn a_restart_starts_from_set_up_and_the_queue_survives_the_crash() {
    let (spec, log) = log_server("survivor");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    log.cast(Msg::Push(1)).unwrap();
    let (open, shut) = gate();
    log.cast(Msg::Block(shut)).unwrap();
    // Queued behind the block: the crash, then work for whoever serves next.
    log.cast(Msg::Crash).unwrap();
    log.cast(Msg::Push(2)).unwrap();
    log.cast(Msg::Push(3)).unwrap();
    open.send(()).unwrap();
    // The new incarnation started from set-up (the 1 is gone) and served the queue.
    assert_eq!(log.call(Req::Get).unwrap(), Answer::Items(vec![2, 3]));
    assert_eq!(log.call(Req::Incarnation).unwrap(), Answer::Incarnation(1));
    drop(sup);
}

#[test]
fn a_crash_mid_call_fails_that_call_at_once_with_the_reason() {
    let (spec, log) = log_server("crashy");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    // A long timeout: waiting it out would be a failure of its own.
    let got = log.call_timeout(Req::Panic("bad request"), Duration::from_secs(60));
    assert_eq!(
        got,
        Err(CallError::Exited(ExitReason::Panicked(
            "bad request".into()
        )))
    );
    // And it is back.
    assert_eq!(log.call(Req::Get).unwrap(), Answer::Items(vec![]));
    drop(sup);
}

#[test]
fn a_call_that_takes_too_long_times_out() {
    let (spec, log) = log_server("slow");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (open, shut) = gate();
    let got = log.call_timeout(Req::Block(shut), Duration::from_millis(30));
    assert_eq!(got, Err(CallError::Timeout(Duration::from_millis(30))));
    open.send(()).unwrap();
    assert_eq!(log.call(Req::Get).unwrap(), Answer::Items(vec![]));
    drop(sup);
}

#[test]
fn calls_queued_behind_a_stop_and_calls_after_it_fail_with_stopped() {
    let (spec, log) = log_server("stopping");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let (_open, shut) = gate();
    log.cast(Msg::Block(shut)).unwrap();
    let queued = {
        let log = log.clone();
        std::thread::spawn(move || log.call_timeout(Req::Get, Duration::from_secs(60)))
    };
    steadfast::wait::until(DEADLINE, || log.queued() == 1).unwrap();
    // The block wakes on the stop; the queued call is failed, not left to time out.
    sup.terminate_child("stopping").unwrap();
    assert_eq!(queued.join().unwrap(), Err(CallError::Stopped));
    assert_eq!(log.call(Req::Get), Err(CallError::Stopped));
    assert_eq!(log.cast(Msg::Push(1)), Err(CallError::Stopped));
    // Restarted by hand: it serves again, through the same handle.
    sup.restart_child("stopping").unwrap();
    assert_eq!(log.call(Req::Get).unwrap(), Answer::Items(vec![]));
}

#[test]
fn a_server_calling_itself_gets_an_error_not_a_deadlock() {
    let (spec, log) = log_server("narcissus");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let got = log.call_timeout(Req::CallMyself, Duration::from_secs(60));
    assert_eq!(got, Ok(Answer::Myself(Err(CallError::WouldDeadlock))));
    drop(sup);
}

#[test]
fn a_named_server_is_found_again_after_a_restart_and_old_handles_keep_working() {
    let (spec, me) = log_spec("named");
    let (spec, handle) = built((spec.name("tests::servers::named"), me));
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let found = ServerRef::<Log>::whereis("tests::servers::named").unwrap();
    let first = found.pid().unwrap();
    assert_eq!(
        ServerRef::<Log>::from_pid(first).unwrap().pid(),
        Some(first)
    );
    let gone = steadfast::monitor(first);
    let _ = found.call(Req::Panic("restart me"));
    // Its name went with the old incarnation, before its exit was observable; so did its
    // pid as the handles' `pid()`.
    gone.recv_timeout(DEADLINE).unwrap();
    assert_ne!(
        found.pid(),
        Some(first),
        "a crashed incarnation's pid outlived it"
    );
    let again = ServerRef::<Log>::wait_for("tests::servers::named", DEADLINE).unwrap();
    assert_ne!(again.pid(), Some(first));
    // Every handle reaches the new incarnation: the one from build, the first look-up.
    assert_eq!(
        handle.call(Req::Incarnation).unwrap(),
        Answer::Incarnation(1)
    );
    assert_eq!(
        found.call(Req::Incarnation).unwrap(),
        Answer::Incarnation(1)
    );
    // A look-up with other types finds nothing.
    struct Other;
    impl Server for Other {
        type Call = ();
        type Reply = ();
        type Cast = ();
        fn handle_call(&mut self, _: (), _: &Context) {}
    }
    assert!(ServerRef::<Other>::whereis("tests::servers::named").is_none());
    drop(sup);
    assert!(ServerRef::<Log>::whereis("tests::servers::named").is_none());
}

#[test]
fn many_callers_racing_crashes_each_get_an_answer_or_a_reason() {
    let (spec, log) = log_server("busy");
    let sup = Supervisor::builder()
        .intensity(1_000, Duration::from_secs(10))
        .child(spec)
        .start()
        .unwrap();
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let (mut ok, mut crashed) = (0, 0);
                for i in 0..300 {
                    let req = if (i + t) % 29 == 0 {
                        Req::Panic("storm")
                    } else {
                        Req::Get
                    };
                    match log.call_timeout(req, Duration::from_secs(30)) {
                        Ok(_) => ok += 1,
                        Err(CallError::Exited(_)) => crashed += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                (ok, crashed)
            })
        })
        .collect();
    let (mut ok, mut crashed) = (0, 0);
    for c in callers {
        let (o, cr) = c.join().unwrap();
        ok += o;
        crashed += cr;
    }
    assert_eq!(ok + crashed, 1200);
    assert!(crashed > 0);
    drop(sup);
}

/// Calls and casts raced against stops and restarts of their server: every call is
/// answered — served, or failed `Stopped` at once — and none is left queued behind a
/// stop to time out.
#[test]
fn calls_racing_stops_and_restarts_are_answered_never_left_behind() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (spec, log) = log_server("door");
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stopped_calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (log, done, stopped_calls) = (log.clone(), done.clone(), stopped_calls.clone());
            std::thread::spawn(move || {
                let (mut served, mut stopped) = (0u64, 0u64);
                let mut i = 0;
                while !done.load(Ordering::Acquire) {
                    i += 1;
                    let _ = log.cast(Msg::Push(i));
                    match log.call_timeout(Req::Get, Duration::from_secs(10)) {
                        Ok(_) => served += 1,
                        Err(CallError::Stopped) => {
                            stopped += 1;
                            stopped_calls.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(e) => panic!("call {i}: {e}"),
                    }
                }
                (served, stopped)
            })
        })
        .collect();
    for _ in 0..200 {
        sup.terminate_child("door").unwrap();
        sup.restart_child("door").unwrap();
    }
    // Then a stop for good, with the callers still at it: a call left queued behind it
    // would wait out its timeout.
    sup.terminate_child("door").unwrap();
    let before = stopped_calls.load(Ordering::Acquire);
    steadfast::wait::until(DEADLINE, || {
        stopped_calls.load(Ordering::Acquire) > before + 1_000
    })
    .unwrap();
    done.store(true, Ordering::Release);
    let (mut served, mut stopped) = (0, 0);
    for c in callers {
        let (s, st) = c.join().unwrap();
        served += s;
        stopped += st;
    }
    // Both outcomes happened: the race was run, not avoided.
    assert!(
        served > 0 && stopped > 0,
        "served {served}, stopped {stopped}"
    );
    sup.restart_child("door").unwrap();
    assert!(log.call(Req::Get).is_ok(), "it serves again once restarted");
    drop(sup);
}

/// A server that will never run again fails calls at once with `Stopped` — queued ones
/// and later ones — instead of keeping them for an incarnation that will not come: its
/// supervisor gave up after it crashed, or (temporary, under a dynamic supervisor) it
/// crashed and was let go.
#[test]
fn calls_to_a_server_that_will_never_run_again_fail_at_once() {
    // Its supervisor gives up at the first crash.
    let (spec, log) = log_server("doomed");
    let sup = Supervisor::builder()
        .intensity(0, Duration::from_secs(60))
        .child(spec)
        .start()
        .unwrap();
    let down = steadfast::monitor(sup.pid());
    let _ = log.call(Req::Panic("give up"));
    down.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        log.call_timeout(Req::Get, DEADLINE),
        Err(CallError::Stopped)
    );
    assert_eq!(log.cast(Msg::Push(1)), Err(CallError::Stopped));
    drop(sup);

    // Temporary, under a dynamic supervisor: not restarted, let go.
    let (spec, log) = log_server("once");
    let pool = steadfast::DynamicSupervisor::builder().start().unwrap();
    let pid = pool
        .start_child(spec.restart(steadfast::Restart::Temporary))
        .unwrap();
    let gone = steadfast::monitor(pid);
    let _ = log.call(Req::Panic("once is enough"));
    gone.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        log.call_timeout(Req::Get, DEADLINE),
        Err(CallError::Stopped)
    );
    pool.shutdown().unwrap();
}

/// A server whose restart waits out a backoff, terminated meanwhile: no incarnation runs
/// to see the stop, yet later calls fail `Stopped` at once instead of waiting out their
/// timeout (a terminated child does not restart on its own).
#[test]
fn a_server_terminated_while_its_restart_waits_out_a_backoff_fails_calls_at_once() {
    let (spec, log) = log_server("slow-to-return");
    let spec = spec.backoff(steadfast::Backoff::fixed(Duration::from_secs(60)));
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let events = sup.events().unwrap();
    assert!(matches!(
        log.call(Req::Panic("crash")),
        Err(CallError::Exited(_))
    ));
    until(&events, |e| {
        matches!(e, steadfast::Event::RestartScheduled { .. })
    });
    // Queued while it waits for its restart: kept for the next incarnation...
    let (queued_tx, queued) = unbounded();
    let caller = {
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = queued_tx.send(log.call_timeout(Req::Get, DEADLINE));
        })
    };
    steadfast::wait::until(DEADLINE, || log.queued() == 1).unwrap();
    // ...until the child is terminated: then no incarnation will come.
    sup.terminate_child("slow-to-return").unwrap();
    assert_eq!(
        queued.recv_timeout(DEADLINE).unwrap(),
        Err(CallError::Stopped)
    );
    caller.join().unwrap();
    assert_eq!(
        log.call_timeout(Req::Get, DEADLINE),
        Err(CallError::Stopped)
    );
    assert_eq!(log.cast(Msg::Push(1)), Err(CallError::Stopped));
    // Restarted by hand, it serves again.
    sup.restart_child("slow-to-return").unwrap();
    assert_eq!(log.call(Req::Get), Ok(Answer::Items(vec![])));
    sup.shutdown().unwrap();
}

/// However an incarnation that no restart follows ends — a handler that panics when
/// the stop interrupts it, or one deaf to its stop and abandoned — the mailbox is shut:
/// calls queued meanwhile and later fail `Stopped`, none waits out its timeout.
#[test]
fn a_server_stopped_by_a_panic_or_abandoned_shuts_its_mailbox() {
    struct Stubborn(Sender<()>);
    enum Req2 {
        Ping,
        /// Sleeps 60 s on its context and panics when a stop interrupts it.
        SleepOrPanic,
        /// Blocks on a channel its stop cannot reach.
        Deaf(Receiver<()>),
    }
    impl Server for Stubborn {
        type Call = Req2;
        type Reply = ();
        type Cast = ();
        fn handle_call(&mut self, req: Req2, ctx: &Context) {
            let _ = self.0.send(());
            match req {
                Req2::Ping => {}
                Req2::SleepOrPanic => ctx
                    .sleep(Duration::from_secs(60))
                    .expect("interrupted by the stop"),
                Req2::Deaf(gate) => {
                    let _ = gate.recv();
                }
            }
        }
    }
    for deaf in [false, true] {
        let (entered_tx, entered) = unbounded();
        let (spec, srv) =
            ServerSpec::new("stubborn", move |_| Ok(Stubborn(entered_tx.clone()))).build();
        let spec = spec.shutdown(steadfast::Shutdown::Timeout(Duration::from_millis(50)));
        let sup = Supervisor::builder().child(spec).start().unwrap();
        let (release, gate) = gate();
        let busy = {
            let srv = srv.clone();
            let req = if deaf {
                Req2::Deaf(gate)
            } else {
                Req2::SleepOrPanic
            };
            std::thread::spawn(move || srv.call_timeout(req, DEADLINE))
        };
        entered.recv_timeout(DEADLINE).unwrap();
        let queued = {
            let srv = srv.clone();
            std::thread::spawn(move || srv.call_timeout(Req2::Ping, DEADLINE))
        };
        steadfast::wait::until(DEADLINE, || srv.queued() == 1).unwrap();
        sup.terminate_child("stubborn").unwrap();
        assert_eq!(
            queued.join().unwrap(),
            Err(CallError::Stopped),
            "deaf: {deaf}"
        );
        assert_eq!(
            srv.call_timeout(Req2::Ping, DEADLINE),
            Err(CallError::Stopped),
            "deaf: {deaf}"
        );
        drop(release);
        let busy = busy.join().unwrap();
        assert!(busy.is_err() || deaf, "{busy:?}");
        sup.shutdown().unwrap();
    }
}

/// A server's `init` calling its own handle is refused at once, as a call from a
/// handler is: the server cannot answer before it has started.
#[test]
fn a_server_calling_itself_from_init_gets_would_deadlock() {
    let me: Arc<OnceCell<ServerRef<Log>>> = Arc::default();
    let (said_tx, said) = unbounded();
    let mine = me.clone();
    let (spec, log) = ServerSpec::new("selfish", move |_ctx| {
        let answer = mine.get().expect("set before the start").call(Req::Get);
        let _ = said_tx.send(answer.map(|_| ()));
        Ok(Log {
            items: Vec::new(),
            incarnation: 0,
            me: mine.clone(),
        })
    })
    .build();
    me.set(log.clone()).unwrap();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    assert_eq!(
        said.recv_timeout(DEADLINE).unwrap(),
        Err(CallError::WouldDeadlock)
    );
    assert_eq!(log.call(Req::Get), Ok(Answer::Items(vec![])));
    sup.shutdown().unwrap();
}

/// A bounded mailbox: a call waits for room within its own timeout (and times out when
/// none comes); senders waiting for room when the server is stopped are all answered —
/// `Stopped` or served — none waits out its timeout, none is left blocked.
#[test]
fn a_bounded_mailbox_makes_senders_wait_and_a_stop_releases_them_all() {
    // The log server, with a mailbox of one.
    let (spec, me) = log_spec("bounded");
    let (spec, log) = built((spec.capacity(1), me));
    let sup = Supervisor::builder().child(spec).start().unwrap();
    // The server blocks in a handler; one cast fills the mailbox.
    let (release, gate_rx) = gate();
    log.cast(Msg::Block(gate_rx)).unwrap();
    steadfast::wait::until(DEADLINE, || log.queued() == 0).unwrap();
    log.cast(Msg::Push(1)).unwrap();
    assert!(matches!(
        log.try_cast(Msg::Push(2)),
        Err(steadfast::server::TryCastError::Full(Msg::Push(2)))
    ));
    assert_eq!(
        log.call_timeout(Req::Get, Duration::from_millis(50)),
        Err(CallError::Timeout(Duration::from_millis(50))),
        "no room within the call's time"
    );
    // Four threads wait for room, calling and casting; then the server is stopped.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for n in 0..20 {
                    if (t + n) % 2 == 0 {
                        outcomes.push(log.call_timeout(Req::Get, DEADLINE).map(|_| ()));
                    } else {
                        outcomes.push(log.cast(Msg::Push(n)));
                    }
                }
                outcomes
            })
        })
        .collect();
    sup.terminate_child("bounded").unwrap();
    drop(release);
    for s in senders {
        for outcome in s.join().unwrap() {
            assert!(
                matches!(outcome, Ok(()) | Err(CallError::Stopped)),
                "{outcome:?}"
            );
        }
    }
    // Restarted by hand, it serves again.
    sup.restart_child("bounded").unwrap();
    assert_eq!(log.call(Req::Get), Ok(Answer::Items(vec![])));
    sup.shutdown().unwrap();
}

/// A server's start that says no: `init` declining (`Ignore`) lets the supervisor's
/// start go on, keeps the spec, and fails calls at once until a later start succeeds; a
/// second server taking a name already held fails its start with "already started" and
/// the holder's pid (OTP's `{already_started, Pid}`).
#[test]
fn starts_that_say_no_decline_or_name_the_holder() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use steadfast::server::Ignore;
    let enabled = Arc::new(AtomicBool::new(false));
    let on = enabled.clone();
    let me = Arc::new(OnceCell::new());
    let slot = me.clone();
    let (spec, optional) = ServerSpec::new("optional", move |ctx: &Context| {
        if !on.load(Ordering::SeqCst) {
            return Err(Ignore.into());
        }
        Ok(Log {
            items: Vec::new(),
            incarnation: ctx.incarnation(),
            me: slot.clone(),
        })
    })
    .build();
    me.set(optional.clone()).unwrap();
    let (first, holder) = log_server("first");
    let sup = Supervisor::builder()
        .child(spec)
        .child(first)
        .start()
        .unwrap();
    let listed = sup.which_children().unwrap();
    assert_eq!(
        listed[0].status,
        steadfast::ChildStatus::Stopped,
        "declined, kept"
    );
    assert_eq!(
        optional.call_timeout(Req::Get, DEADLINE),
        Err(CallError::Stopped),
        "at once, not after the timeout"
    );
    enabled.store(true, Ordering::SeqCst);
    sup.restart_child("optional").unwrap();
    assert_eq!(optional.call(Req::Get), Ok(Answer::Items(vec![])));

    // Two servers, one name.
    let name = "servers-test-dup";
    let (a_spec, a_me) = log_spec("a");
    let (a_spec, a_ref) = built((a_spec.name(name), a_me));
    let (b_spec, b_me) = log_spec("b");
    let (b_spec, _b_ref) = built((b_spec.name(name), b_me));
    sup.start_child(a_spec).unwrap();
    let holder_pid = a_ref.pid().expect("a serves");
    match sup.start_child(b_spec) {
        Err(steadfast::SupervisorError::StartFailed(StartError::AlreadyStarted {
            id,
            name: taken,
            holder,
        })) => {
            assert_eq!(
                (id.as_str(), taken.as_str(), holder),
                ("b", name, holder_pid)
            );
        }
        other => panic!("{other:?}"),
    }
    drop(holder);
    sup.shutdown().unwrap();
}
