//! Faults a test injects into a running tree, without the child's code knowing: a crash
//! at the child's next `Context` call, a next start that fails or declines, deafness to
//! its stop. `Context`, the panic catcher and the runner consult this table (with the
//! `testing` feature only; with no fault set, each check is one relaxed atomic load).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::exit::ExitReason;
use crate::pid::Pid;

/// What an injected crash unwinds with: the panic catcher reports its reason as is.
pub(crate) struct Injected(pub(crate) ExitReason);

/// How a child's next start goes wrong.
#[derive(Clone, Debug)]
pub(crate) enum StartFault {
    Fail(String),
    Decline,
    /// Runs, deaf to its stop from its first instruction on.
    Deaf,
}

#[derive(Default)]
struct Faults {
    /// By pid: crash at the next `Context` call with this reason.
    crash: HashMap<Pid, ExitReason>,
    /// By pid: deaf to its stop, with its supervisor; the sender is dropped to wake a
    /// deaf wait when the fault is cleared.
    deaf: HashMap<Pid, (Pid, Sender<()>, Receiver<()>)>,
    /// By (supervisor, child id): how the next start goes, and the incarnation running
    /// when it was set (which is not a next start, even if its code has not begun yet).
    start: HashMap<(Pid, Arc<str>), (StartFault, Option<Pid>)>,
}

static ANY: AtomicBool = AtomicBool::new(false);
static FAULTS: Lazy<Mutex<Faults>> = Lazy::new(Mutex::default);

fn any() -> bool {
    ANY.load(Ordering::Relaxed)
}

fn update(f: impl FnOnce(&mut Faults)) {
    let mut faults = FAULTS.lock();
    f(&mut faults);
    let set = !(faults.crash.is_empty() && faults.deaf.is_empty() && faults.start.is_empty());
    ANY.store(set, Ordering::Relaxed);
}

pub(crate) fn crash_at_next_call(pid: Pid, reason: ExitReason) {
    update(|f| {
        f.crash.insert(pid, reason);
    });
}

pub(crate) fn deafen(pid: Pid, supervisor: Pid) {
    update(|f| {
        let (tx, rx) = bounded(0);
        f.deaf.insert(pid, (supervisor, tx, rx));
    });
}

pub(crate) fn at_next_start(supervisor: Pid, id: &str, fault: StartFault, current: Option<Pid>) {
    update(|f| {
        f.start
            .insert((supervisor, Arc::from(id)), (fault, current));
    });
}

/// Forgets every fault set for these pids and for starts under these supervisors; a
/// wait a deaf one is in returns as if stopped (its channel's sender is dropped).
pub(crate) fn clear(pids: &[Pid]) {
    update(|f| {
        for pid in pids {
            f.crash.remove(pid);
        }
        f.deaf
            .retain(|pid, (sup, _, _)| !pids.contains(pid) && !pids.contains(sup));
        f.start.retain(|(sup, _), _| !pids.contains(sup));
    });
}

/// At a `Context` call of `pid`: unwinds with the crash set for it, if one is.
pub(crate) fn at_call(pid: Pid) {
    if !any() {
        return;
    }
    let mut crash = None;
    update(|f| crash = f.crash.remove(&pid));
    if let Some(reason) = crash {
        // `resume_unwind`, not `panic!`: no panic hook runs (it is not a bug to report).
        std::panic::resume_unwind(Box::new(Injected(reason)));
    }
}

/// The channel a deaf `pid` waits on instead of its stop signal, if it is deaf.
pub(crate) fn deaf(pid: Pid) -> Option<Receiver<()>> {
    if !any() {
        return None;
    }
    FAULTS.lock().deaf.get(&pid).map(|(_, _, rx)| rx.clone())
}

/// How the start of incarnation `pid` of child `id` under `supervisor` is to go wrong,
/// if it is (once).
pub(crate) fn at_start(supervisor: Option<Pid>, id: &str, pid: Pid) -> Option<StartFault> {
    if !any() {
        return None;
    }
    let key = (supervisor?, Arc::from(id));
    let mut fault = None;
    update(|f| {
        if f.start
            .get(&key)
            .is_some_and(|(_, current)| *current != Some(pid))
        {
            fault = f.start.remove(&key).map(|(fault, _)| fault);
        }
    });
    fault
}
