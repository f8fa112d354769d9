//! A process's start run on the thread that waits for it (a top-level supervisor's
//! `start`, a dynamic `start_child` of a nested supervisor), ahead of the process's own
//! thread.
//!
//! The protocol, with the runner's side (`SpawnArgs::deferred`): the process's thread is
//! spawned first and waits; meanwhile [`start_here`] runs the start as the process's pid;
//! then the thread is handed the rest of its first incarnation (`Spawned::begin`) — or,
//! if the start failed, told to end without running or reporting anything
//! (`Spawned::cancel`), the start having ended the pid itself. Dropping the handle of a
//! thread never begun ends it too. The thread's start-up latency thus runs alongside the
//! start instead of before it, and nobody waits for a readiness wake-up.

use crate::child::context::ReadyMsg;
use crate::child::panic_hook::{self, catch, SUPERVISED};
use crate::child::spawned;
use crate::child::spec::Serve;
use crate::exit::ExitReason;
use crate::pid::{self, Pid};

/// Runs a process's start on the calling thread, as process `pid`, for a caller that would
/// otherwise wait for the process's own thread to run it: returns what that thread runs
/// next. A failed start (a panic is `Exited(Panicked)`, logged once) ends as it would on
/// the process's thread: the pid ends, then the threads of the children it stopped are
/// joined, before this returns.
pub(crate) fn start_here(
    id: &str,
    pid: Pid,
    start: impl FnOnce() -> Result<Serve, ReadyMsg>,
) -> Result<Serve, ReadyMsg> {
    panic_hook::install();
    let caller = Pid::current_if_any();
    // As the process's thread: the current process, and joins held until its exit.
    let supervised = SUPERVISED.with(|s| s.replace(true));
    let held = spawned::held_joins();
    Pid::set_current(Some(pid));
    let started = catch(id, pid, start).unwrap_or_else(|e| Err(ReadyMsg::Exited(e)));
    Pid::set_current(caller);
    SUPERVISED.with(|s| s.set(supervised));
    if let Err(report) = &started {
        let reason = match report {
            ReadyMsg::Failed(e) => ExitReason::failed(e),
            ReadyMsg::Exited(reason) => reason.clone(),
            ReadyMsg::Ready | ReadyMsg::Ignored => ExitReason::Killed,
        };
        pid::exit(pid, &reason);
    }
    // Joined now, whatever the caller is: its own thread would have joined them before
    // ending, and the caller would have joined that thread.
    for run in spawned::take_joins_since(held) {
        run.finish();
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::context::Context;
    use crate::child::launch::SpawnArgs;
    use crate::child::runner::spawn;
    use crate::child::spawned::Spawned;
    use crossbeam_channel::bounded;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    fn deferred() -> Spawned {
        spawn(SpawnArgs::top_level(
            "deferred",
            Arc::new(|_: &Context| ExitReason::Normal),
        ))
        .unwrap()
    }

    /// Finishes `run` on another thread; `true` if that returned within the deadline.
    fn finishes(run: Spawned) -> bool {
        let (done_tx, done) = bounded(1);
        thread::spawn(move || {
            run.finish();
            let _ = done_tx.send(());
        });
        done.recv_timeout(Duration::from_secs(10)).is_ok()
    }

    /// A deferred thread whose start never got to `begin` or `cancel` (its starter
    /// unwound past them) ends when its handle goes: no thread left waiting for ever.
    #[test]
    fn a_deferred_thread_never_begun_ends_with_its_handle() {
        let run = deferred();
        let pid = run.pid;
        assert!(finishes(run), "the thread still waits");
        pid::exit(pid, &ExitReason::Killed);
    }

    /// Ending a deferred thread right after `begin` (a stop racing the hand-over) never
    /// takes its first incarnation back: it runs, and the handle's end waits for it.
    #[test]
    fn ending_right_after_begin_still_runs_the_first_incarnation() {
        for _ in 0..20 {
            let run = deferred();
            let (ran_tx, ran) = bounded(1);
            run.begin(Box::new(move |_: &Context| {
                let _ = ran_tx.send(());
                ExitReason::Normal
            }));
            run.end();
            assert!(finishes(run));
            assert!(ran.try_recv().is_ok(), "its first incarnation was dropped");
        }
    }
}
