//! Helpers shared by the behaviour tests: children driven by commands, and event waits
//! with generous deadlines (never sleeps).
#![allow(dead_code)]

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{ChildInfo, ChildSpec, Event, ExitReason, Pid};

/// A deadline for anything a test waits on: generous, for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a [`controlled`] child does next.
#[derive(Debug, Clone)]
pub enum Cmd {
    Panic(&'static str),
    Fail(&'static str),
    Return,
    /// Returns `Err(Stopped)` unasked: an exit with reason `Shutdown`.
    Shutdown,
}

/// A worker that waits for commands (or its stop signal) and obeys them. Every incarnation
/// reads the same command channel.
pub fn controlled(id: &str) -> (ChildSpec, Sender<Cmd>) {
    let (tx, rx) = unbounded::<Cmd>();
    let spec = ChildSpec::worker(id, move |ctx| match ctx.recv(&rx)? {
        Cmd::Panic(msg) => panic!("{msg}"),
        Cmd::Fail(msg) => Err(msg.into()),
        Cmd::Return => Ok(()),
        Cmd::Shutdown => Err(steadfast::Stopped.into()),
    });
    (spec, tx)
}

/// A worker that does nothing until asked to stop.
pub fn idle(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |ctx| {
        let _ = ctx.stop_signal().recv();
        Ok(())
    })
}

/// The next event, or a panic naming what was awaited.
pub fn next(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(DEADLINE)
        .expect("no event arrived within the deadline")
}

/// Reads events until one matches `pred`; returns all read, the match last.
pub fn until(events: &Receiver<Event>, mut pred: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = next(events);
        let done = pred(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

/// A compact, comparable form of an event: `"started a"`, `"exited a shutdown"`, ...
pub fn brief(e: &Event) -> String {
    match e {
        Event::ChildStarted { id, .. } => format!("started {id}"),
        Event::ChildExited { id, reason, .. } => format!("exited {id} {}", reason_word(reason)),
        Event::ChildAbandoned { id, .. } => format!("abandoned {id}"),
        Event::ChildRestarted { id, .. } => format!("restarted {id}"),
        Event::RestartFailed { id, .. } => format!("restart-failed {id}"),
        Event::IntensityExceeded { .. } => "intensity-exceeded".to_string(),
        Event::SupervisorStopped { .. } => "supervisor-stopped".to_string(),
        other => format!("{other:?}"),
    }
}

pub fn reason_word(r: &ExitReason) -> &'static str {
    match r {
        ExitReason::Normal => "normal",
        ExitReason::Shutdown => "shutdown",
        ExitReason::Failed(_) => "failed",
        ExitReason::Panicked(_) => "panicked",
        ExitReason::Killed => "killed",
        _ => "other",
    }
}

/// Reads events until `pred` matches and returns their brief forms.
pub fn briefs_until(events: &Receiver<Event>, pred: impl FnMut(&Event) -> bool) -> Vec<String> {
    until(events, pred).iter().map(brief).collect()
}

/// Waits until the event `brief` form equals `last`, returning every brief read.
pub fn briefs_through(events: &Receiver<Event>, last: &str) -> Vec<String> {
    briefs_until(events, |e| brief(e) == last)
}

/// The pid of child `id` in a which_children listing.
pub fn pid_of(children: &[steadfast::ChildInfo], id: &str) -> Option<Pid> {
    children.iter().find(|c| &*c.id == id).and_then(|c| c.pid)
}

/// The number of threads of this process, from /proc (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The ids of `which_children`'s answer, in its order.
pub fn ids(children: Vec<ChildInfo>) -> Vec<String> {
    children.iter().map(|c| c.id.to_string()).collect()
}

/// The pids of `which_children`'s answer, in its order (every child must be running).
pub fn pids(children: Vec<ChildInfo>) -> Vec<Pid> {
    children
        .iter()
        .map(|c| c.pid.expect("a running child"))
        .collect()
}

/// Serializes the tests of one binary that share process-wide state (the global
/// registry, the thread cap, the process's memory): each holds the guard while it runs.
pub fn serial() -> parking_lot::MutexGuard<'static, ()> {
    static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    SERIAL.lock()
}

/// This test binary run again in a subprocess, to run only the ignored test `test` with
/// `var` set to `value`: for scenarios checked from outside (an abort, a signal, what
/// reaches stderr, the exit status). `RUST_BACKTRACE` is unset there.
pub fn scenario(test: &str, var: &str, value: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", test, "--nocapture"])
        .env(var, value)
        .env_remove("RUST_BACKTRACE");
    cmd
}
