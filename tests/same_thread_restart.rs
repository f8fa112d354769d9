//! The restart fast path: a one_for_one (or dynamic) worker that crashes re-enters its
//! function on its own thread, with every guarantee of a restart kept — a new pid, names
//! released first, events in order, intensity counted, stop requests honoured — unless it
//! asked for a fresh thread.

mod common;

use std::cell::Cell;
use std::thread::{self, ThreadId};
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{
    monitor, ChildSpec, DynamicSupervisor, ExitReason, Pid, Registry, Strategy, Supervisor,
    SupervisorError,
};

thread_local! {
    static INCARNATIONS_HERE: Cell<u32> = const { Cell::new(0) };
}

/// What one incarnation reports when it starts.
#[derive(Debug)]
struct Start {
    thread: ThreadId,
    pid: Pid,
    /// How many incarnations this thread has run, this one included.
    on_this_thread: u32,
    /// Whether registering the child's name succeeded.
    registered: bool,
}

/// A worker that registers "name" in `reg`, reports its start, then crashes on command.
fn reporting(reg: &Registry<&'static str, ()>) -> (ChildSpec, Sender<Cmd>, Receiver<Start>) {
    let (cmd_tx, cmd) = unbounded::<Cmd>();
    let (start_tx, starts) = unbounded();
    let reg = reg.clone();
    let spec = ChildSpec::worker("w", move |ctx| {
        let n = INCARNATIONS_HERE.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        start_tx
            .send(Start {
                thread: thread::current().id(),
                pid: ctx.pid(),
                on_this_thread: n,
                registered: reg.register("name", ()).is_ok(),
            })
            .unwrap();
        match ctx.recv(&cmd)? {
            Cmd::Panic(m) => panic!("{m}"),
            Cmd::Fail(m) => Err(m.into()),
            _ => Ok(()),
        }
    });
    (spec, cmd_tx, starts)
}

fn recv(starts: &Receiver<Start>) -> Start {
    starts
        .recv_timeout(DEADLINE)
        .expect("an incarnation started")
}

#[test]
fn a_crashed_worker_restarts_on_its_own_thread_with_a_new_pid() {
    let reg = Registry::new();
    let (spec, cmd, starts) = reporting(&reg);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(10, DEADLINE)
        .event_sink(sink)
        .child(spec)
        .start()
        .unwrap();
    let first = recv(&starts);
    let exit = monitor(first.pid);
    cmd.send(Cmd::Panic("one")).unwrap();
    let second = recv(&starts);
    cmd.send(Cmd::Fail("two")).unwrap();
    let third = recv(&starts);
    assert_eq!(first.thread, second.thread);
    assert_eq!(second.thread, third.thread);
    assert_eq!(
        [
            first.on_this_thread,
            second.on_this_thread,
            third.on_this_thread
        ],
        [1, 2, 3],
        "thread-locals carry over between incarnations"
    );
    // Each incarnation has its own pid, and the old one's name was free before it ran.
    assert!(first.pid != second.pid && second.pid != third.pid);
    assert!(first.registered && second.registered && third.registered);
    assert_eq!(exit.try_recv(), Ok(ExitReason::Panicked("one".into())));
    assert!(!second.pid.is_alive());
    assert_eq!(
        briefs_through(&events, "exited w failed"),
        [
            "started w",
            "exited w panicked",
            "restarted w",
            "exited w failed"
        ]
    );
    assert_eq!(brief(&next(&events)), "restarted w");
    assert_eq!(
        pid_of(&sup.which_children().unwrap(), "w"),
        Some(third.pid),
        "the supervisor knows the current incarnation"
    );
    assert_eq!(reg.lookup("name").map(|(p, _)| p), Some(third.pid));
    sup.shutdown().unwrap();
    assert_eq!(reg.count(), 0);
}

#[test]
fn fresh_thread_gives_every_incarnation_a_new_thread_under_every_strategy() {
    for strategy in [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ] {
        let reg = Registry::new();
        let (spec, cmd, starts) = reporting(&reg);
        let sup = Supervisor::builder()
            .strategy(strategy)
            .child(spec.fresh_thread())
            .start()
            .unwrap();
        let first = recv(&starts);
        cmd.send(Cmd::Panic("x")).unwrap();
        let second = recv(&starts);
        assert_ne!(first.thread, second.thread, "{strategy:?}");
        assert_eq!(second.on_this_thread, 1, "{strategy:?}");
        assert!(second.registered, "{strategy:?}");
        sup.shutdown().unwrap();
    }
}

#[test]
fn group_restarts_reuse_each_members_thread_with_a_new_pid() {
    let reg = Registry::new();
    let (spec, cmd, starts) = reporting(&reg);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(idle("first"))
        .child(spec)
        .start()
        .unwrap();
    let first_pid = pid_of(&sup.which_children().unwrap(), "first").unwrap();
    let before = recv(&starts);
    cmd.send(Cmd::Panic("x")).unwrap();
    let after = recv(&starts);
    // Same thread, next incarnation: a new pid, its name free again, thread-locals kept.
    assert_eq!(after.thread, before.thread);
    assert_ne!(after.pid, before.pid);
    assert!(!before.pid.is_alive());
    assert!(after.registered);
    assert_eq!(after.on_this_thread, 2);
    assert_eq!(
        briefs_through(&events, "restarted w"),
        [
            "started first",
            "started w",
            "exited w panicked",
            "exited first shutdown",
            "restarted first",
            "restarted w"
        ]
    );
    // The bystander was stopped and resumed too: a new pid, the old one gone.
    let first_now = pid_of(&sup.which_children().unwrap(), "first").unwrap();
    assert_ne!(first_now, first_pid);
    assert!(!first_pid.is_alive());
    sup.shutdown().unwrap();
}

#[test]
fn intensity_still_counts_every_fast_restart() {
    let reg = Registry::new();
    let (spec, cmd, starts) = reporting(&reg);
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .intensity(2, Duration::from_secs(60))
        .event_sink(sink)
        .child(spec)
        .child(idle("other"))
        .start()
        .unwrap();
    for i in 0..3 {
        recv(&starts);
        cmd.send(Cmd::Panic("again")).unwrap();
        let _ = i;
    }
    assert_eq!(
        briefs_through(&events, "supervisor-stopped"),
        [
            "started w",
            "started other",
            "exited w panicked",
            "restarted w",
            "exited w panicked",
            "restarted w",
            "exited w panicked",
            "intensity-exceeded",
            "exited other shutdown",
            "supervisor-stopped"
        ]
    );
    assert!(matches!(
        sup.join(),
        Err(SupervisorError::IntensityExceeded { restarts: 2, .. })
    ));
    assert_eq!(reg.count(), 0);
}

/// A worker that crashes as soon as it starts, forever.
fn crash_loop() -> ChildSpec {
    ChildSpec::worker("loop", |ctx| {
        if ctx.is_stopping() {
            return Ok(());
        }
        Err("always".into())
    })
}

#[test]
fn terminate_child_stops_a_child_in_a_same_thread_crash_loop() {
    let sup = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(crash_loop())
        .child(idle("other"))
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    briefs_through(&events, "restarted loop");
    sup.terminate_child("loop").unwrap();
    // Its last exit is the one terminate_child waited for (with whatever reason the
    // incarnation that was running then ended); everything before it is already in.
    let before: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(
        before.last().unwrap().starts_with("exited loop"),
        "{before:?}"
    );
    let children = sup.which_children().unwrap();
    assert_eq!(children[0].status, steadfast::ChildStatus::Stopped);
    assert_eq!(children[0].pid, None);
    // Nothing restarts it afterwards.
    sup.which_children().unwrap();
    let later: Vec<String> = events.try_iter().map(|e| brief(&e)).collect();
    assert!(later.is_empty(), "{later:?}");
    sup.shutdown().unwrap();
}

#[test]
fn shutdown_stops_a_same_thread_crash_loop() {
    let sup = Supervisor::builder()
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(crash_loop())
        .start()
        .unwrap();
    let events = sup.events().unwrap();
    briefs_through(&events, "restarted loop");
    sup.shutdown().unwrap();
    briefs_through(&events, "supervisor-stopped");
}

#[test]
fn dynamic_children_restart_on_their_own_thread_too() {
    let reg = Registry::new();
    let (spec, cmd, starts) = reporting(&reg);
    let sup = DynamicSupervisor::builder().start().unwrap();
    let events = sup.events().unwrap();
    let pid = sup.start_child(spec).unwrap();
    let first = recv(&starts);
    assert_eq!(first.pid, pid);
    // A child that crashes before its supervisor has taken it in (the caller spawned it
    // and handed it over) is restarted by the supervisor, on a fresh thread; any request
    // is served after the hand-over.
    assert_eq!(sup.count_children().unwrap().active, 1);
    cmd.send(Cmd::Panic("x")).unwrap();
    let second = recv(&starts);
    assert_eq!(first.thread, second.thread);
    briefs_through(&events, "restarted w");
    // The old pid is no longer a handle on the child; the new one is.
    assert!(matches!(
        sup.terminate_child(pid),
        Err(SupervisorError::NotFound)
    ));
    sup.terminate_child(second.pid).unwrap();
    sup.shutdown().unwrap();
}

thread_local! {
    /// Dropped when the thread that set it has ended completely (after its exit notice).
    static ON_THREAD_END: std::cell::RefCell<Option<Sender<()>>> = const { std::cell::RefCell::new(None) };
}

/// Regression: a child that restarted itself and then ignored its stop signal was
/// abandoned under the pid the supervisor knew (its previous, already exited incarnation);
/// the supervisor then waited forever for a thread that was still running.
/// Keeps `sup` busy: starts (from another thread) a child "slow" that reports ready only
/// once `go` gets a message; returns once the supervisor waits for it.
fn keep_busy(sup: &Supervisor) -> (thread::JoinHandle<Result<Pid, SupervisorError>>, Sender<()>) {
    let (started_tx, started) = unbounded::<()>();
    let (go_tx, go) = unbounded::<()>();
    let slow = ChildSpec::worker("slow", move |ctx| {
        started_tx.send(()).unwrap();
        ctx.recv(&go)?;
        ctx.ready();
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
    .ready_timeout(DEADLINE);
    let handle = sup.handle();
    let starter = thread::spawn(move || handle.start_child(slow));
    started.recv_timeout(DEADLINE).unwrap();
    (starter, go_tx)
}

#[test]
fn abandoning_a_child_that_restarted_itself_unseen_ends_the_running_incarnation() {
    // x: crashes on command, on a fresh thread, and tells when its thread has ended.
    let (x_cmd, x_rx) = unbounded::<Cmd>();
    let (x_end_tx, x_end) = unbounded::<()>();
    let x_end_tx = parking_lot::Mutex::new(Some(x_end_tx));
    let x = ChildSpec::worker("x", move |ctx| {
        let tx = x_end_tx.lock().take();
        ON_THREAD_END.with(|e| *e.borrow_mut() = tx);
        ctx.recv(&x_rx)?;
        Err("x crashes".into())
    })
    .fresh_thread();
    // w: the first incarnation crashes on command; the next ones ignore their stop signal.
    let (w_cmd, w_rx) = unbounded::<Cmd>();
    let (w_started_tx, w_started) = unbounded::<Pid>();
    let (release_tx, release) = unbounded::<()>();
    let w = ChildSpec::worker("w", move |ctx| {
        w_started_tx.send(ctx.pid()).unwrap();
        if INCARNATIONS_HERE.with(|c| c.replace(c.get() + 1)) == 0 {
            ctx.recv(&w_rx)?;
            return Err("w crashes".into());
        }
        let _ = release.recv(); // deaf
        Ok(())
    })
    .shutdown(steadfast::Shutdown::Timeout(Duration::from_millis(50)));
    let sup = Supervisor::builder()
        .intensity(1, Duration::from_secs(60))
        .child(x)
        .child(w)
        .start()
        .unwrap();
    let first_w = w_started.recv_timeout(DEADLINE).unwrap();
    // Keep the supervisor busy starting a child that is ready only when told.
    let (starter, go_tx) = keep_busy(&sup);
    // While it is busy: x's exit notice is queued first, then w's restart notice.
    x_cmd.send(Cmd::Return).unwrap();
    assert_eq!(
        x_end.recv_timeout(DEADLINE),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
    w_cmd.send(Cmd::Return).unwrap();
    let second_w = w_started.recv_timeout(DEADLINE).unwrap();
    assert_ne!(first_w, second_w);
    let second_exit = monitor(second_w);
    // Now x's restart exceeds the intensity (w's restart took the one allowed), and the
    // supervisor stops w while it still believes w is `first_w`.
    go_tx.send(()).unwrap();
    let (joined_tx, joined) = unbounded();
    thread::spawn(move || joined_tx.send(sup.join()).unwrap());
    let result = joined
        .recv_timeout(DEADLINE)
        .expect("the supervisor must not wait forever for the abandoned child");
    assert!(matches!(
        result,
        Err(SupervisorError::IntensityExceeded { .. })
    ));
    assert_eq!(second_exit.try_recv(), Ok(ExitReason::Killed));
    assert!(!second_w.is_alive());
    let _ = starter.join();
    release_tx.send(()).unwrap();
}

/// Linux: the calling thread's id, and whether thread `tid` of this process is asleep.
fn gettid() -> String {
    std::fs::read_link("/proc/thread-self")
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn is_asleep(tid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('S')
        })
        .unwrap_or(false)
}

#[test]
fn a_crash_restarted_unseen_just_before_a_terminate_is_still_reported() {
    // Queue, behind a busy supervisor: first a terminate of `victim`, then the notice of
    // a crash `victim` restarted itself from. Serving the terminate must report the crash.
    let (incarnations_tx, incarnations) = unbounded::<Pid>();
    let (crash_tx, crash_rx) = unbounded::<()>();
    let victim = ChildSpec::worker("victim", move |ctx| {
        incarnations_tx.send(ctx.pid()).unwrap();
        ctx.recv(&crash_rx)?;
        panic!("unseen");
    });
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(victim)
        .start()
        .unwrap();
    let first = incarnations.recv_timeout(DEADLINE).unwrap();
    // Keep the supervisor busy: it waits for `slow` to report ready.
    let (starter, go_tx) = keep_busy(&sup);
    // The terminate request: queued once its caller sleeps waiting for the reply.
    let (tid_tx, tid) = unbounded();
    let handle = sup.handle();
    let terminator = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        handle.terminate_child("victim")
    });
    let tid = tid.recv_timeout(DEADLINE).unwrap();
    steadfast::wait::until(DEADLINE, || is_asleep(&tid)).unwrap();
    // Then the crash; its notice is queued before the next incarnation runs.
    crash_tx.send(()).unwrap();
    let second = incarnations.recv_timeout(DEADLINE).unwrap();
    assert_ne!(first, second);
    go_tx.send(()).unwrap();
    starter.join().unwrap().unwrap();
    terminator.join().unwrap().unwrap();
    assert_eq!(
        briefs_through(&events, "exited victim shutdown"),
        [
            "started victim",
            "started slow",
            "exited victim panicked",
            "restarted victim",
            "exited victim shutdown"
        ]
    );
    sup.shutdown().unwrap();
}

#[test]
fn a_group_member_abandoned_during_the_restart_gets_a_new_thread_and_its_old_one_ends() {
    // `deaf` ignores its stop until released; `w` crashes. one_for_all: `deaf` is
    // abandoned during the group stop, restarted on a fresh thread, and its old thread —
    // which would wait to be reused once it returns — is told to end instead.
    // Each incarnation reports its thread, a signal that disconnects when that thread has
    // ended, and its own release.
    type Report = (ThreadId, Receiver<()>, Sender<()>);
    let (reports_tx, reports) = unbounded::<Report>();
    let deaf = ChildSpec::worker("deaf", move |_ctx| {
        thread_local! {
            static GUARD: std::cell::RefCell<Option<Sender<()>>> = const { std::cell::RefCell::new(None) };
        }
        let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
        GUARD.with(|g| *g.borrow_mut() = Some(ended_tx));
        let (release_tx, release) = unbounded::<()>();
        reports_tx
            .send((thread::current().id(), ended, release_tx))
            .unwrap();
        let _ = release.recv(); // deaf to the stop signal
        Ok(())
    })
    .shutdown(steadfast::Shutdown::Timeout(Duration::from_millis(50)));
    let (w, cmds) = controlled("w");
    let (sink, events) = unbounded();
    let sup = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .event_sink(sink)
        .child(deaf)
        .child(w)
        .start()
        .unwrap();
    let (first_thread, first_ended, first_release) = reports.recv_timeout(DEADLINE).unwrap();
    cmds.send(Cmd::Panic("x")).unwrap();
    assert_eq!(
        briefs_through(&events, "restarted w"),
        [
            "started deaf",
            "started w",
            "exited w panicked",
            "abandoned deaf",
            "exited deaf killed",
            "restarted deaf",
            "restarted w"
        ]
    );
    let (second_thread, second_ended, second_release) = reports.recv_timeout(DEADLINE).unwrap();
    assert_ne!(second_thread, first_thread);
    // Released, the abandoned incarnation returns; its thread must end, not wait forever.
    first_release.send(()).unwrap();
    assert_eq!(
        first_ended.recv_timeout(DEADLINE),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
    // The second is deaf too: shutdown abandons it; released, its thread ends as well.
    sup.shutdown().unwrap();
    drop(second_release);
    assert_eq!(
        second_ended.recv_timeout(DEADLINE),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
}
