//! Servers beyond call and cast: a reply type per message, infos from other sources and
//! monitors, timers, replies later, continue after init, stops from inside, the `sys`
//! tools — and what happens to each kind of message on a crash, a stop, a restart and a
//! give-up (the table in `steadfast::server`'s docs, cell by cell).

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{briefs_until, DEADLINE};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use steadfast::server::{
    CallError, Down, Handle, HandleCast, HandleInfo, HandleLater, ReplyTo, Serve, ServerContext,
    ServerRef, ServerSpec, TimerRef,
};
use steadfast::{wait, ChildSpec, Event, ExitReason, Restart, Supervisor, SupervisorError};

/// What a probe did, in order, for the test to read: `"1: cast 5"` (incarnation 1).
type Log = Arc<Mutex<Vec<String>>>;

/// A server that does what its messages say and logs what it serves.
struct Probe {
    incarnation: u64,
    log: Log,
    held: Vec<ReplyTo<u32>>,
    timers: Vec<TimerRef>,
    /// Told when a `Hold` token is kept (so a test knows it is held).
    held_tx: Sender<()>,
}

impl Probe {
    fn note(&self, what: String) {
        self.log
            .lock()
            .push(format!("{}: {what}", self.incarnation));
    }
}

/// Calls.
struct Echo(u32);
struct Hold;
struct Release(u32);
struct Block(Receiver<Gate>, Sender<()>);
struct Arm(Duration, u32);
struct Every(Duration, u32);
struct Cancel;
struct StopWith(ExitReason);
struct Incarnation;
struct WatchTicks(Receiver<Tick>);
/// Casts.
struct Note(u32);
struct Crash;
/// Infos.
#[derive(Clone)]
struct Tick(u32);

/// What a blocked handler does once its gate opens.
enum Gate {
    Return,
    Panic,
}

impl Serve for Probe {
    fn terminate(&mut self, reason: &ExitReason, _: &mut ServerContext<'_, Self>) {
        self.note(format!("terminate {reason}"));
    }
}

impl Handle<Echo> for Probe {
    type Reply = u32;
    fn handle(&mut self, Echo(n): Echo, _: &mut ServerContext<'_, Self>) -> u32 {
        n
    }
}

impl Handle<Incarnation> for Probe {
    type Reply = u64;
    fn handle(&mut self, _: Incarnation, _: &mut ServerContext<'_, Self>) -> u64 {
        self.incarnation
    }
}

impl Handle<WatchTicks> for Probe {
    type Reply = ();
    fn handle(&mut self, WatchTicks(rx): WatchTicks, ctx: &mut ServerContext<'_, Self>) {
        ctx.watch(rx);
    }
}

impl HandleLater<Hold> for Probe {
    type Reply = u32;
    fn handle_later(&mut self, _: Hold, reply: ReplyTo<u32>, _: &mut ServerContext<'_, Self>) {
        self.held.push(reply);
        let _ = self.held_tx.send(());
    }
}

impl Handle<Release> for Probe {
    type Reply = usize;
    fn handle(&mut self, Release(n): Release, _: &mut ServerContext<'_, Self>) -> usize {
        let held = self.held.len();
        for token in self.held.drain(..) {
            token.send(n);
        }
        held
    }
}

impl Handle<Block> for Probe {
    type Reply = &'static str;
    fn handle(
        &mut self,
        Block(gate, inside): Block,
        _: &mut ServerContext<'_, Self>,
    ) -> &'static str {
        let _ = inside.send(());
        match gate
            .recv_timeout(DEADLINE)
            .expect("the test opens the gate")
        {
            Gate::Return => "unblocked",
            Gate::Panic => panic!("told to crash while blocked"),
        }
    }
}

impl Handle<Arm> for Probe {
    type Reply = ();
    fn handle(&mut self, Arm(after, n): Arm, ctx: &mut ServerContext<'_, Self>) {
        self.timers.push(ctx.send_after(after, Tick(n)));
    }
}

impl Handle<Every> for Probe {
    type Reply = ();
    fn handle(&mut self, Every(period, n): Every, ctx: &mut ServerContext<'_, Self>) {
        self.timers.push(ctx.send_interval(period, Tick(n)));
    }
}

impl Handle<Cancel> for Probe {
    type Reply = Vec<bool>;
    fn handle(&mut self, _: Cancel, ctx: &mut ServerContext<'_, Self>) -> Vec<bool> {
        self.timers.drain(..).map(|t| ctx.cancel_timer(t)).collect()
    }
}

impl Handle<StopWith> for Probe {
    type Reply = &'static str;
    fn handle(
        &mut self,
        StopWith(reason): StopWith,
        ctx: &mut ServerContext<'_, Self>,
    ) -> &'static str {
        ctx.stop(reason);
        "stopping"
    }
}

impl HandleCast<Note> for Probe {
    fn handle_cast(&mut self, Note(n): Note, _: &mut ServerContext<'_, Self>) {
        self.note(format!("cast {n}"));
    }
}

impl HandleCast<Crash> for Probe {
    fn handle_cast(&mut self, _: Crash, _: &mut ServerContext<'_, Self>) {
        panic!("told to crash");
    }
}

impl HandleInfo<Tick> for Probe {
    fn handle_info(&mut self, Tick(n): Tick, _: &mut ServerContext<'_, Self>) {
        self.note(format!("info {n}"));
    }
}

struct Started {
    sup: Supervisor,
    probe: ServerRef<Probe>,
    log: Log,
    held: Receiver<()>,
    events: Receiver<Event>,
}

fn probe_spec(restart: Restart) -> (ChildSpec, ServerRef<Probe>, Log, Receiver<()>) {
    let log: Log = Arc::default();
    let (held_tx, held) = unbounded();
    let in_init = log.clone();
    let (spec, probe) = ServerSpec::new("probe", move |ctx| {
        Ok(Probe {
            incarnation: ctx.incarnation(),
            log: in_init.clone(),
            held: Vec::new(),
            timers: Vec::new(),
            held_tx: held_tx.clone(),
        })
    })
    .build();
    (spec.restart(restart), probe, log, held)
}

fn start_probe(restart: Restart, intensity: u32) -> Started {
    let (spec, probe, log, held) = probe_spec(restart);
    let sup = Supervisor::builder()
        .intensity(intensity, Duration::from_secs(60))
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    sup.start_child(spec).unwrap();
    Started {
        sup,
        probe,
        log,
        held,
        events,
    }
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().clone()
}

// ---------------------------------------------------------------------------------------
// 1. A reply type per message.

#[test]
fn each_message_type_has_its_own_reply_type() {
    let s = start_probe(Restart::Permanent, 3);
    let n: u32 = s.probe.call(Echo(7)).unwrap();
    let inc: u64 = s.probe.call(Incarnation).unwrap();
    let cancelled: Vec<bool> = s.probe.call(Cancel).unwrap();
    assert_eq!((n, inc, cancelled), (7, 0, vec![]));
    drop(s.sup);
}

// ---------------------------------------------------------------------------------------
// 2. Other sources: watched channels, infos, monitors.

struct Watcher {
    seen: Sender<String>,
}

struct WatchThis(Receiver<u32>);
struct WatchText(Receiver<String>);
struct MonitorPid(steadfast::Pid);

impl Serve for Watcher {}

impl Handle<WatchThis> for Watcher {
    type Reply = ();
    fn handle(&mut self, WatchThis(rx): WatchThis, ctx: &mut ServerContext<'_, Self>) {
        ctx.watch(rx);
    }
}

impl Handle<WatchText> for Watcher {
    type Reply = ();
    fn handle(&mut self, WatchText(rx): WatchText, ctx: &mut ServerContext<'_, Self>) {
        ctx.watch(rx);
    }
}

impl Handle<MonitorPid> for Watcher {
    type Reply = ();
    fn handle(&mut self, MonitorPid(pid): MonitorPid, ctx: &mut ServerContext<'_, Self>) {
        ctx.monitor(pid);
    }
}

impl Handle<u32> for Watcher {
    type Reply = u32;
    fn handle(&mut self, n: u32, _: &mut ServerContext<'_, Self>) -> u32 {
        let _ = self.seen.send(format!("call {n}"));
        n
    }
}

impl HandleInfo<u32> for Watcher {
    fn handle_info(&mut self, n: u32, _: &mut ServerContext<'_, Self>) {
        let _ = self.seen.send(format!("number {n}"));
    }
}

impl HandleInfo<String> for Watcher {
    fn handle_info(&mut self, text: String, _: &mut ServerContext<'_, Self>) {
        let _ = self.seen.send(format!("text {text}"));
    }
}

impl HandleInfo<Down> for Watcher {
    fn handle_info(&mut self, down: Down, _: &mut ServerContext<'_, Self>) {
        let _ = self.seen.send(format!("down {}", down.reason));
    }
}

fn watcher() -> (Supervisor, ServerRef<Watcher>, Receiver<String>) {
    let (seen_tx, seen) = unbounded();
    let (spec, server) = ServerSpec::new("watcher", move |_| {
        Ok(Watcher {
            seen: seen_tx.clone(),
        })
    })
    .build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    (sup, server, seen)
}

fn next_seen(seen: &Receiver<String>) -> String {
    seen.recv_timeout(DEADLINE)
        .expect("the server reports what it took")
}

#[test]
fn watched_channels_arrive_in_the_loop_each_in_its_order_beside_calls() {
    let (sup, server, seen) = watcher();
    let (numbers_tx, numbers) = unbounded::<u32>();
    let (texts_tx, texts) = unbounded::<String>();
    server.call(WatchThis(numbers)).unwrap();
    server.call(WatchText(texts)).unwrap();
    for i in 0..100 {
        numbers_tx.send(i).unwrap();
        texts_tx.send(format!("t{i}")).unwrap();
    }
    let (mut n, mut t) = (0, 0);
    while n < 100 || t < 100 {
        let got = next_seen(&seen);
        if let Some(v) = got.strip_prefix("number ") {
            assert_eq!(v, n.to_string(), "each channel's messages in their order");
            n += 1;
        } else {
            assert_eq!(got, format!("text t{t}"));
            t += 1;
        }
    }
    // Calls are served meanwhile, and the server is idle again once all is taken.
    assert_eq!(server.call(5u32).unwrap(), 5);
    assert_eq!(next_seen(&seen), "call 5");
    // A channel whose senders are gone is forgotten once drained.
    drop(numbers_tx);
    wait::until(DEADLINE, || server.statistics().unwrap().sources == 1).unwrap();
    drop(sup);
}

#[test]
fn an_info_sent_to_a_server_is_queued_with_its_calls_in_order() {
    let (sup, server, seen) = watcher();
    server.send(1u32).unwrap();
    server.send(String::from("two")).unwrap();
    server.call(3u32).unwrap();
    let got: Vec<String> = (0..3).map(|_| next_seen(&seen)).collect();
    assert_eq!(got, ["number 1", "text two", "call 3"]);
    assert_eq!(server.statistics().unwrap().infos, 2);
    drop(sup);
}

#[test]
fn a_monitor_delivers_the_exit_reason_as_a_down_message() {
    let (sup, server, seen) = watcher();
    let (go_tx, go) = bounded::<()>(0);
    let watched = Supervisor::builder()
        .child(
            ChildSpec::worker("doomed", move |_| {
                let _ = go.recv();
                Err("the disk is full".into())
            })
            .restart(Restart::Temporary),
        )
        .start()
        .unwrap();
    let pid = watched.which_children().unwrap()[0].pid.unwrap();
    server.call(MonitorPid(pid)).unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(next_seen(&seen), "down failed: the disk is full");
    // A process already gone: at once, with `NoProcess`.
    server.call(MonitorPid(pid)).unwrap();
    assert_eq!(next_seen(&seen), "down no such process");
    assert_eq!(
        server.statistics().unwrap().sources,
        0,
        "a monitor fires once"
    );
    drop((sup, watched));
}

// ---------------------------------------------------------------------------------------
// 3. Timers and the idle timeout.

#[test]
fn a_timer_fires_once_and_intervals_fire_until_cancelled() {
    let s = start_probe(Restart::Permanent, 3);
    s.probe.call(Arm(Duration::from_millis(1), 1)).unwrap();
    wait::until(DEADLINE, || logged(&s.log).contains(&"0: info 1".into())).unwrap();
    s.probe.call(Cancel).unwrap();
    s.probe.call(Every(Duration::from_millis(1), 2)).unwrap();
    let ticks = || logged(&s.log).iter().filter(|l| *l == "0: info 2").count();
    wait::until(DEADLINE, || ticks() >= 3).unwrap();
    assert_eq!(
        s.probe.call(Cancel).unwrap(),
        vec![true],
        "an interval stays pending"
    );
    let after = ticks();
    // Served in order: any tick queued before the cancel is already logged.
    s.probe.call(Echo(0)).unwrap();
    assert_eq!(ticks(), after);
    assert_eq!(s.probe.statistics().unwrap().timers, 0);
    drop(s.sup);
}

#[test]
fn extreme_timers_neither_panic_nor_starve_the_mailbox() {
    let s = start_probe(Restart::Permanent, 3);
    // Never fires, cancels fine.
    s.probe.call(Arm(Duration::MAX, 1)).unwrap();
    assert_eq!(s.probe.call(Cancel).unwrap(), vec![false]);
    // A zero period fires as fast as the loop turns, yet calls are still served.
    s.probe.call(Every(Duration::ZERO, 2)).unwrap();
    for i in 0..100 {
        assert_eq!(s.probe.call(Echo(i)).unwrap(), i);
    }
    assert_eq!(s.probe.call(Cancel).unwrap(), vec![true]);
    // A timer that would fire far in the future does not delay a stop.
    s.probe.call(Arm(Duration::from_secs(3600), 3)).unwrap();
    s.sup.terminate_child("probe").unwrap();
    let seen = briefs_until(&s.events, |e| matches!(e, Event::ChildExited { .. }));
    assert_eq!(
        seen.last().unwrap(),
        "exited probe shutdown",
        "not abandoned"
    );
    assert!(logged(&s.log).contains(&"0: terminate shutdown".into()));
    drop(s.sup);
}

struct Sleepy {
    idle: Sender<u32>,
    count: u32,
}
struct SetIdle(Option<Duration>);

impl Serve for Sleepy {
    fn handle_idle(&mut self, _: &mut ServerContext<'_, Self>) {
        self.count += 1;
        let _ = self.idle.send(self.count);
    }
}

impl Handle<SetIdle> for Sleepy {
    type Reply = ();
    fn handle(&mut self, SetIdle(t): SetIdle, ctx: &mut ServerContext<'_, Self>) {
        ctx.set_idle_timeout(t);
    }
}

#[test]
fn the_idle_timeout_fires_once_per_quiet_spell() {
    let (idle_tx, idle) = unbounded();
    let (spec, server) = ServerSpec::new("sleepy", move |_| {
        Ok(Sleepy {
            idle: idle_tx.clone(),
            count: 0,
        })
    })
    .build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    server
        .call(SetIdle(Some(Duration::from_millis(5))))
        .unwrap();
    assert_eq!(idle.recv_timeout(DEADLINE), Ok(1));
    // Quiet again: it does not fire again until a message re-arms it.
    assert!(server.get_state(|s| s.count).unwrap() >= 1);
    assert_eq!(
        idle.recv_timeout(DEADLINE),
        Ok(2),
        "the get_state re-armed it"
    );
    server.call(SetIdle(None)).unwrap();
    assert_eq!(server.get_state(|s| s.count).unwrap(), 2);
    drop(sup);
    assert!(idle.try_recv().is_err());
}

// ---------------------------------------------------------------------------------------
// 4. Replies later.

#[test]
fn a_held_token_is_answered_from_a_later_message() {
    let s = start_probe(Restart::Permanent, 3);
    let probe = s.probe.clone();
    let caller = thread::spawn(move || probe.call(Hold));
    s.held.recv_timeout(DEADLINE).unwrap();
    assert_eq!(s.probe.call(Release(42)).unwrap(), 1);
    assert_eq!(caller.join().unwrap(), Ok(42));
    drop(s.sup);
}

struct Lender;
struct Lend;
impl Serve for Lender {}
impl HandleLater<Lend> for Lender {
    type Reply = String;
    fn handle_later(&mut self, _: Lend, reply: ReplyTo<String>, _: &mut ServerContext<'_, Self>) {
        // Answered from another thread while the server goes on.
        thread::spawn(move || reply.send("from elsewhere".into()));
    }
}
struct Forget;
impl HandleLater<Forget> for Lender {
    type Reply = ();
    fn handle_later(&mut self, _: Forget, reply: ReplyTo<()>, _: &mut ServerContext<'_, Self>) {
        drop(reply);
    }
}

#[test]
fn a_token_answers_from_another_thread_and_a_dropped_one_fails_at_once() {
    let (spec, lender) = ServerSpec::new("lender", |_| Ok(Lender)).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    assert_eq!(lender.call(Lend).unwrap(), "from elsewhere");
    // A timeout of an hour: only the dropped token can end this call.
    assert_eq!(
        lender.call_timeout(Forget, Duration::from_secs(3600)),
        Err(CallError::NoReply)
    );
    drop(sup);
}

#[test]
fn held_tokens_fail_with_the_crash_or_the_stop_never_by_timeout() {
    for crash in [true, false] {
        let s = start_probe(Restart::Permanent, 3);
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let probe = s.probe.clone();
                thread::spawn(move || probe.call_timeout(Hold, Duration::from_secs(3600)))
            })
            .collect();
        for _ in 0..4 {
            s.held.recv_timeout(DEADLINE).unwrap();
        }
        if crash {
            s.probe.cast(Crash).unwrap();
        } else {
            s.sup.terminate_child("probe").unwrap();
        }
        for caller in callers {
            let answer = caller.join().unwrap();
            if crash {
                assert_eq!(
                    answer,
                    Err(CallError::Exited(ExitReason::Panicked(
                        "told to crash".into()
                    )))
                );
            } else {
                assert_eq!(answer, Err(CallError::Stopped));
            }
        }
        drop(s.sup);
    }
}

/// Replies later raced against crashes and stops: every caller is answered or told why,
/// none waits out its (hour-long) timeout.
#[test]
fn replies_later_raced_against_crashes_and_stops_never_leave_a_caller_waiting() {
    let s = start_probe(Restart::Permanent, 1_000);
    for round in 0..30 {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let probe = s.probe.clone();
                thread::spawn(move || probe.call_timeout(Hold, Duration::from_secs(3600)))
            })
            .collect();
        let probe = s.probe.clone();
        let releaser =
            thread::spawn(move || probe.call_timeout(Release(round), Duration::from_secs(3600)));
        match round % 3 {
            0 => drop(s.probe.cast(Crash)),
            1 => {
                let _ = s.sup.terminate_child("probe");
                let _ = s.sup.restart_child("probe");
            }
            _ => {}
        }
        // Holds that landed after the release (or in the next incarnation) wait for
        // another: keep releasing until every caller has its answer.
        wait::until(DEADLINE, || {
            let _ = s.probe.call(Release(round));
            callers.iter().all(|c| c.is_finished())
        })
        .unwrap();
        for caller in callers {
            match caller.join().unwrap() {
                Ok(n) => assert_eq!(n, round),
                Err(CallError::Exited(_) | CallError::Stopped) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        let _ = releaser.join().unwrap();
        while s.held.try_recv().is_ok() {}
    }
    drop(s.sup);
}

// ---------------------------------------------------------------------------------------
// 5. Continue after init.

struct Slow {
    ready: bool,
}
struct IsReady;
struct Then(Sender<&'static str>);

impl Serve for Slow {
    fn handle_continue(&mut self, _: &mut ServerContext<'_, Self>) {
        let gate = SLOW.lock().take().expect("the test's gate");
        let _ = gate.recv_timeout(DEADLINE);
        self.ready = true;
    }
}

static SLOW: Mutex<Option<Receiver<()>>> = Mutex::new(None);

impl Handle<IsReady> for Slow {
    type Reply = bool;
    fn handle(&mut self, _: IsReady, _: &mut ServerContext<'_, Self>) -> bool {
        self.ready
    }
}

impl Handle<Then> for Slow {
    type Reply = ();
    fn handle(&mut self, Then(tx): Then, ctx: &mut ServerContext<'_, Self>) {
        let before = tx.clone();
        ctx.continue_with(move |_, _| {
            let _ = before.send("continued");
        });
        let _ = tx.send("handled");
    }
}

#[test]
fn a_slow_continue_does_not_hold_the_start_and_runs_before_the_first_message() {
    let (gate_tx, gate) = bounded(0);
    *SLOW.lock() = Some(gate);
    let (spec, slow) = ServerSpec::new("slow", |_| Ok(Slow { ready: false })).build();
    // The start returns while the continue waits on the gate.
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let caller = {
        let slow = slow.clone();
        thread::spawn(move || slow.call(IsReady))
    };
    gate_tx.send(()).unwrap();
    assert_eq!(
        caller.join().unwrap(),
        Ok(true),
        "served after the continue"
    );
    // Asked for from a callback: runs before the next message.
    let (tx, rx) = unbounded();
    slow.call(Then(tx.clone())).unwrap();
    slow.call(IsReady).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["handled", "continued"]);
    drop(sup);
}

// ---------------------------------------------------------------------------------------
// 6. Stops from inside.

#[test]
fn a_server_stops_itself_with_a_reason_its_supervisor_applies_the_restart_type() {
    let cases = [
        (ExitReason::Normal, Restart::Transient, false),
        (
            ExitReason::shutdown_with("moved"),
            Restart::Transient,
            false,
        ),
        (ExitReason::Shutdown, Restart::Transient, false),
        (
            ExitReason::Failed("broken".into()),
            Restart::Transient,
            true,
        ),
        (ExitReason::Normal, Restart::Permanent, true),
    ];
    for (reason, restart, restarted) in cases {
        let s = start_probe(restart, 3);
        // The reply is sent first.
        assert_eq!(s.probe.call(StopWith(reason.clone())).unwrap(), "stopping");
        let seen = briefs_until(&s.events, |e| matches!(e, Event::ChildExited { .. }));
        let exited = seen.last().unwrap();
        assert!(exited.starts_with("exited probe"), "{exited}");
        assert!(
            logged(&s.log).contains(&format!("0: terminate {reason}")),
            "{reason}"
        );
        if restarted {
            wait::until(DEADLINE, || s.probe.call(Incarnation) == Ok(1)).unwrap();
        } else {
            // Not restarted: calls fail at once instead of waiting for a server.
            assert_eq!(
                s.probe.call_timeout(Echo(1), Duration::from_secs(3600)),
                Err(CallError::Stopped),
                "{reason}"
            );
        }
        drop(s.sup);
    }
}

#[test]
fn a_stop_reason_reaches_the_events_as_given() {
    let s = start_probe(Restart::Transient, 3);
    s.probe
        .call(StopWith(ExitReason::shutdown_with("moved")))
        .unwrap();
    let exit = common::until(&s.events, |e| matches!(e, Event::ChildExited { .. }));
    match exit.last().unwrap() {
        Event::ChildExited { reason, .. } => {
            assert_eq!(reason, &ExitReason::ShutdownWith("moved".into()));
            assert!(!reason.is_abnormal());
        }
        other => panic!("{other:?}"),
    }
    drop(s.sup);
}

#[test]
fn init_stopping_with_a_reason_fails_the_start_with_it() {
    let (spec, _probe) = ServerSpec::<Probe>::new("no", |_| {
        Err(ExitReason::shutdown_with("not configured").into())
    })
    .build();
    let sup = Supervisor::builder().start().unwrap();
    let err = sup.start_child(spec).unwrap_err();
    assert!(
        matches!(err, SupervisorError::StartFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not configured"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 8. sys-style tools.

#[test]
fn a_suspended_server_holds_requests_and_serves_them_in_order_on_resume() {
    let s = start_probe(Restart::Permanent, 3);
    s.probe.suspend().unwrap();
    s.probe.cast(Note(1)).unwrap();
    let caller = {
        let probe = s.probe.clone();
        thread::spawn(move || probe.call(Echo(2)))
    };
    s.probe.send(Tick(3)).unwrap();
    // System requests are served meanwhile.
    wait::until(DEADLINE, || s.probe.statistics().unwrap().queued == 3).unwrap();
    let stats = s.probe.statistics().unwrap();
    assert!(stats.suspended);
    assert_eq!((stats.calls, stats.casts, stats.infos), (0, 0, 0));
    assert_eq!(s.probe.get_state(|p| p.incarnation).unwrap(), 0);
    s.probe.resume().unwrap();
    assert_eq!(caller.join().unwrap(), Ok(2));
    s.probe.call(Echo(0)).unwrap();
    assert_eq!(logged(&s.log), ["0: cast 1", "0: info 3"]);
    let stats = s.probe.statistics().unwrap();
    assert_eq!((stats.calls, stats.casts, stats.infos), (2, 1, 1));
    drop(s.sup);
}

#[test]
fn a_stop_while_suspended_fails_what_waits() {
    let s = start_probe(Restart::Permanent, 3);
    s.probe.suspend().unwrap();
    let caller = {
        let probe = s.probe.clone();
        thread::spawn(move || probe.call_timeout(Echo(1), Duration::from_secs(3600)))
    };
    wait::until(DEADLINE, || s.probe.statistics().unwrap().queued == 1).unwrap();
    s.sup.terminate_child("probe").unwrap();
    assert_eq!(caller.join().unwrap(), Err(CallError::Stopped));
    drop(s.sup);
}

#[test]
fn state_can_be_read_and_replaced_and_handlers_timed() {
    let s = start_probe(Restart::Permanent, 3);
    assert_eq!(s.probe.statistics().unwrap().busy, None);
    s.probe.time_handlers(true).unwrap();
    s.probe.call(Echo(1)).unwrap();
    let stats = s.probe.statistics().unwrap();
    assert!(stats.busy.is_some() && stats.last_message.is_some());
    s.probe.replace_state(|p| p.incarnation = 99).unwrap();
    assert_eq!(s.probe.call(Incarnation).unwrap(), 99);
    drop(s.sup);
}

// ---------------------------------------------------------------------------------------
// The table: each kind of message on a crash, a stop, a restart and a give-up.

/// Blocks the probe in a call, queues a call, a cast and an info behind it, holds a
/// token and arms a timer; returns the blocked caller, the queued caller, the held
/// caller and the gate.
#[allow(clippy::type_complexity)]
fn loaded(
    s: &Started,
) -> (
    thread::JoinHandle<Result<&'static str, CallError>>,
    thread::JoinHandle<Result<u32, CallError>>,
    thread::JoinHandle<Result<u32, CallError>>,
    Sender<Gate>,
) {
    let hour = Duration::from_secs(3600);
    let probe = s.probe.clone();
    let held = thread::spawn(move || probe.call_timeout(Hold, hour));
    s.held.recv_timeout(DEADLINE).unwrap();
    s.probe.call(Arm(hour, 9)).unwrap();
    let (ticks_tx, ticks) = unbounded();
    s.probe.call(WatchTicks(ticks)).unwrap();
    std::mem::forget(ticks_tx); // the channel stays open: only the stop can end the watch
    let (gate_tx, gate) = bounded(1);
    let probe = s.probe.clone();
    let (inside_tx, inside) = bounded(1);
    let blocked = thread::spawn(move || probe.call_timeout(Block(gate, inside_tx), hour));
    inside.recv_timeout(DEADLINE).unwrap();
    let probe = s.probe.clone();
    let queued = thread::spawn(move || probe.call_timeout(Echo(5), hour));
    wait::until(DEADLINE, || s.probe.queued() == 1).unwrap();
    s.probe.cast(Note(6)).unwrap();
    s.probe.send(Tick(7)).unwrap();
    (blocked, queued, held, gate_tx)
}

#[test]
fn on_a_crash_queued_messages_wait_for_the_restart_and_the_rest_fail_with_the_crash() {
    let s = start_probe(Restart::Permanent, 3);
    let (blocked, queued, held, gate) = loaded(&s);
    gate.send(Gate::Panic).unwrap();
    let crash = CallError::Exited(ExitReason::Panicked("told to crash while blocked".into()));
    assert_eq!(
        blocked.join().unwrap(),
        Err(crash.clone()),
        "the call being handled"
    );
    assert_eq!(held.join().unwrap(), Err(crash), "the held token");
    // Restart: the queued call, cast and info are served by the next incarnation; the
    // timer was the crashed incarnation's.
    assert_eq!(queued.join().unwrap(), Ok(5));
    assert_eq!(s.probe.call(Incarnation).unwrap(), 1);
    assert_eq!(logged(&s.log), ["1: cast 6", "1: info 7"]);
    let stats = s.probe.statistics().unwrap();
    assert_eq!(
        (stats.timers, stats.sources),
        (0, 0),
        "timers and watches not carried"
    );
    drop(s.sup);
}

#[test]
fn on_a_stop_the_call_being_handled_finishes_and_the_rest_fail_stopped_or_are_dropped() {
    let s = start_probe(Restart::Permanent, 3);
    let (blocked, queued, held, gate) = loaded(&s);
    let sup = Arc::new(s.sup);
    let stopper = {
        let sup = sup.clone();
        thread::spawn(move || sup.terminate_child("probe"))
    };
    // The stop is decided (the door is shut) while the call is still being handled.
    wait::until(DEADLINE, || s.probe.cast(Note(0)).is_err()).unwrap();
    gate.send(Gate::Return).unwrap();
    assert_eq!(blocked.join().unwrap(), Ok("unblocked"), "finishes first");
    assert_eq!(queued.join().unwrap(), Err(CallError::Stopped));
    assert_eq!(held.join().unwrap(), Err(CallError::Stopped));
    stopper.join().unwrap().unwrap();
    assert_eq!(
        logged(&s.log),
        ["0: terminate shutdown"],
        "cast and info dropped"
    );
    // Restart: a fresh incarnation, nothing carried over.
    sup.restart_child("probe").unwrap();
    assert_eq!(s.probe.call(Incarnation).unwrap(), 1);
    let stats = s.probe.statistics().unwrap();
    assert_eq!(
        (stats.timers, stats.sources),
        (0, 0),
        "timers and watches not carried"
    );
    assert_eq!(logged(&s.log), ["0: terminate shutdown"]);
}

/// The same stop raced for real, round after round: casts keep coming from another
/// thread while the supervisor stops the server blocked in a call, and the gate opens as
/// soon as a cast is refused. Whatever the interleaving of the stop's steps with the
/// loop and the posters, no cast is served behind the stop.
#[test]
fn stops_raced_against_casts_never_serve_a_cast_behind_the_stop() {
    for round in 0..30 {
        let s = start_probe(Restart::Permanent, 3);
        let (gate_tx, gate) = bounded(1);
        let (inside_tx, inside) = bounded(1);
        let probe = s.probe.clone();
        let blocked = thread::spawn(move || probe.call(Block(gate, inside_tx)));
        inside.recv_timeout(DEADLINE).unwrap();
        let probe = s.probe.clone();
        let caster = thread::spawn(move || {
            let mut n = 1;
            while probe.cast(Note(n)).is_ok() {
                n += 1;
            }
        });
        let sup = Arc::new(s.sup);
        let stopper = {
            let sup = sup.clone();
            thread::spawn(move || sup.terminate_child("probe"))
        };
        wait::until(DEADLINE, || s.probe.cast(Note(0)).is_err()).unwrap();
        gate_tx.send(Gate::Return).unwrap();
        assert_eq!(blocked.join().unwrap(), Ok("unblocked"));
        caster.join().unwrap();
        stopper.join().unwrap().unwrap();
        assert_eq!(
            logged(&s.log),
            ["0: terminate shutdown"],
            "round {round}: served behind the stop"
        );
    }
}

#[test]
fn on_a_give_up_everything_still_waiting_fails_and_the_mailbox_shuts_for_good() {
    // An intensity of 0: the first crash gives up.
    let s = start_probe(Restart::Permanent, 0);
    let (blocked, queued, held, gate) = loaded(&s);
    gate.send(Gate::Panic).unwrap();
    let crash = CallError::Exited(ExitReason::Panicked("told to crash while blocked".into()));
    assert_eq!(blocked.join().unwrap(), Err(crash.clone()));
    assert_eq!(held.join().unwrap(), Err(crash));
    assert_eq!(queued.join().unwrap(), Err(CallError::Stopped));
    assert!(s.sup.join().is_err(), "the supervisor gave up");
    assert_eq!(
        s.probe.call_timeout(Echo(1), Duration::from_secs(3600)),
        Err(CallError::Stopped)
    );
    assert_eq!(
        logged(&s.log),
        Vec::<String>::new(),
        "cast and info dropped"
    );
}

struct Polite(Vec<ReplyTo<&'static str>>, Sender<()>);
struct Wait;
impl Serve for Polite {
    fn terminate(&mut self, _: &ExitReason, _: &mut ServerContext<'_, Self>) {
        for token in self.0.drain(..) {
            token.send("goodbye");
        }
    }
}
impl HandleLater<Wait> for Polite {
    type Reply = &'static str;
    fn handle_later(
        &mut self,
        _: Wait,
        reply: ReplyTo<&'static str>,
        _: &mut ServerContext<'_, Self>,
    ) {
        self.0.push(reply);
        let _ = self.1.send(());
    }
}

#[test]
fn terminate_can_answer_the_tokens_it_holds() {
    let (held_tx, held) = unbounded();
    let (spec, polite) =
        ServerSpec::new("polite", move |_| Ok(Polite(Vec::new(), held_tx.clone()))).build();
    let sup = Supervisor::builder().child(spec).start().unwrap();
    let caller = {
        let polite = polite.clone();
        thread::spawn(move || polite.call_timeout(Wait, Duration::from_secs(3600)))
    };
    held.recv_timeout(DEADLINE).unwrap();
    sup.terminate_child("polite").unwrap();
    assert_eq!(caller.join().unwrap(), Ok("goodbye"));
}

/// Ticks an interval of its own and records, for each tick, whether it came from a timer
/// of the incarnation taking it (a timer must never outlive its incarnation).
struct Metronome {
    incarnation: u64,
    wrong: Arc<Mutex<Vec<String>>>,
    ticks: Arc<std::sync::atomic::AtomicU64>,
}
#[derive(Clone)]
struct Beat(u64);
struct Ping;

impl Serve for Metronome {
    fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
        ctx.send_interval(Duration::from_micros(200), Beat(self.incarnation));
        ctx.send_after(Duration::from_micros(500), Beat(self.incarnation));
    }
}

impl HandleInfo<Beat> for Metronome {
    fn handle_info(&mut self, Beat(of): Beat, _: &mut ServerContext<'_, Self>) {
        if of != self.incarnation {
            self.wrong
                .lock()
                .push(format!("{of} ticked in {}", self.incarnation));
        }
        self.ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Handle<Ping> for Metronome {
    type Reply = u64;
    fn handle(&mut self, _: Ping, _: &mut ServerContext<'_, Self>) -> u64 {
        self.incarnation
    }
}

impl HandleCast<Crash> for Metronome {
    fn handle_cast(&mut self, _: Crash, _: &mut ServerContext<'_, Self>) {
        panic!("told to crash");
    }
}

/// Timers raced against crashes, stops and restarts while callers call: every call is
/// answered or told why, and no timer fires in an incarnation other than its own.
#[test]
fn timers_raced_against_crashes_stops_and_restarts_stay_with_their_incarnation() {
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (w, t) = (wrong.clone(), ticks.clone());
    let (spec, metronome) = ServerSpec::new("metronome", move |ctx| {
        Ok(Metronome {
            incarnation: ctx.incarnation(),
            wrong: w.clone(),
            ticks: t.clone(),
        })
    })
    .build();
    let sup = Arc::new(
        Supervisor::builder()
            .intensity(10_000, Duration::from_secs(60))
            .child(spec)
            .start()
            .unwrap(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (metronome, stop) = (metronome.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match metronome.call_timeout(Ping, Duration::from_secs(3600)) {
                        Ok(_) | Err(CallError::Stopped | CallError::Exited(_)) => {}
                        Err(other) => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for round in 0..60 {
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        match round % 3 {
            0 => {
                let _ = metronome.cast(Crash);
            }
            1 => {
                let _ = sup.terminate_child("metronome");
                let _ = sup.restart_child("metronome");
            }
            _ => {
                let _ = sup.restart_child("metronome");
            }
        }
        // The new incarnation ticks (its timers started in handle_continue).
        wait::until(DEADLINE, || {
            ticks.load(std::sync::atomic::Ordering::Relaxed) > before + 2
                || sup.restart_child("metronome").is_ok()
        })
        .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    assert_eq!(wrong.lock().clone(), Vec::<String>::new());
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 0);
}
