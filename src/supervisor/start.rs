//! Starting a child on the supervisor's own thread: spawn it, then wait for it as its
//! readiness says (a plain worker counts as started once spawned), stopping it again if
//! it declines or misses its deadline. And the errors a start that failed becomes.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::child::context::{History, ReadyMsg};
use crate::child::launch::{Launch, SpawnArgs};
use crate::child::runner;
use crate::child::spawned::Spawned;
use crate::child::spec::{ChildSpec, Readiness};
use crate::clock;
use crate::error::StartError;
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::intensity::Intensity;
use crate::supervisor::restart::{permit, resumable};
use crate::supervisor::stop::{self, Around, Joins, Readied, Until, Waiting};
use crate::supervisor::strategy::Strategy;

/// How a start went, when it did not fail.
pub(super) enum Started {
    /// It runs.
    Running(Spawned),
    /// It declined (`Context::ignore`, OTP's `ignore`) and has been stopped.
    Declined,
}

/// Starts `spec` for the supervisor around `at` (its strategy and intensity window decide
/// whether the child may restart itself on its thread), waiting for it as its readiness
/// says: a restart waits too, as OTP's restart waits for `init`. The thread of a start
/// that declined or timed out, once stopped, goes to `joins`.
pub(super) fn start_child(
    at: &Around,
    strategy: Strategy,
    intensity: &Arc<Mutex<Intensity>>,
    spec: &ChildSpec,
    history: History,
    joins: &mut Joins,
) -> Result<Started, StartError> {
    let launch = Launch::BySupervisor {
        notify: at.inbox.clone(),
        permit: permit(strategy, spec, intensity),
        resumable: resumable(strategy, spec),
    };
    let mut run = runner::spawn(
        SpawnArgs::for_child(spec, at.label, history, launch)
            .default_stack(at.stack_size)
            .reusing(at.threads.cloned()),
    )
    .map_err(|source| StartError::Spawn {
        id: spec.id.to_string(),
        source,
    })?;
    let Some(ready) = run.ready.take() else {
        return Ok(Started::Running(run));
    };
    let until = match spec.readiness {
        Readiness::Within(d) => Until::after(clock::now(), d),
        _ => Until::Forever,
    };
    let mut waiting = Waiting::new(spec.id.clone(), run, until);
    // Its exit, if any, stays queued for the stops below to take.
    match stop::await_ready(at, &mut waiting, &ready) {
        Readied::Report(ReadyMsg::Ready) => Ok(Started::Running(waiting.run)),
        Readied::Report(ReadyMsg::Ignored) => {
            joins.settled(stop::stop_one(at, waiting, spec.shutdown, false).thread);
            Ok(Started::Declined)
        }
        Readied::TimedOut => {
            let pid = waiting.run.pid;
            joins.settled(stop::stop_one(at, waiting, spec.shutdown, false).thread);
            Err(not_ready(at.label, spec, pid))
        }
        Readied::Report(report) => {
            waiting.run.finish();
            Err(not_started(spec.id.to_string(), Some(report)))
        }
        Readied::Silent => {
            waiting.run.finish();
            Err(not_started(spec.id.to_string(), None))
        }
    }
}

/// Why a child that reports readiness did not start, from its report (`None`: none came;
/// the runner always reports before it drops the channel, so this is only for safety).
pub(crate) fn not_started(id: String, report: Option<ReadyMsg>) -> StartError {
    match report {
        Some(ReadyMsg::Exited(reason)) => StartError::ChildExited { id, reason },
        // A server whose name is taken says so itself.
        Some(ReadyMsg::Failed(already @ StartError::AlreadyStarted { .. })) => already,
        Some(ReadyMsg::Failed(source)) => StartError::Nested {
            id,
            source: Box::new(source),
        },
        // Ready and Ignored are handled by the callers; no report: see above.
        Some(ReadyMsg::Ready | ReadyMsg::Ignored) | None => StartError::ChildExited {
            id,
            reason: ExitReason::Killed,
        },
    }
}

/// Why a child that missed its readiness deadline did not start (it has been stopped,
/// or abandoned, already), with the one log line for it.
pub(crate) fn not_ready(label: &str, spec: &ChildSpec, pid: Pid) -> StartError {
    let timeout = match spec.readiness {
        Readiness::Within(d) => d,
        _ => Duration::MAX,
    };
    let id = spec.id.to_string();
    log::warn!("{label}: child {id:?} ({pid}) not ready in {timeout:?}");
    StartError::ReadyTimeout { id, timeout }
}
