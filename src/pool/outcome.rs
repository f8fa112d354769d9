//! What a pool reports: its counts, a dead-lettered job, and why a job or a drain did not
//! get through.

use std::fmt;

use crate::exit::ExitReason;
use crate::wait::Timeout;

/// A job that failed `max_attempts` times, with why its last attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter<J> {
    /// The job.
    pub job: J,
    /// How many times it was tried.
    pub attempts: u32,
    /// How its last attempt ended: `Failed` (the function returned `Err`), `Panicked`
    /// (it panicked), or how its worker crashed around it.
    pub reason: ExitReason,
}

/// Counts of a pool's jobs. `submitted == done + dead_lettered + handed_back + queued +
/// in_flight` at every quiet moment (each count is read on its own, so while jobs move
/// the sum can be off by those moving).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Jobs accepted by `submit` / `try_submit`.
    pub submitted: u64,
    /// Jobs whose function returned `Ok`.
    pub done: u64,
    /// Jobs given up on after `max_attempts`.
    pub dead_lettered: u64,
    /// Jobs returned by `shutdown`.
    pub handed_back: u64,
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// Jobs taken by a worker and not yet settled (running, or waiting in a crashed
    /// worker's slot for its restart).
    pub in_flight: u64,
}

/// Why a pool can no longer run jobs: its workers' supervisor gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pool is down: {reason}")]
pub struct PoolDown {
    /// Why its workers' supervisor ended (for instance, its restart intensity was
    /// exceeded).
    pub reason: String,
}

/// Why [`Pool::drain`](crate::pool::Pool::drain) returned before every job settled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// Jobs were still pending when the time was up.
    #[error(transparent)]
    Timeout(#[from] Timeout),
    /// The pool is down: the pending jobs will not run (`shutdown` hands them back).
    #[error(transparent)]
    Down(#[from] PoolDown),
}

/// Why a job was not accepted; the job comes back with it.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<J> {
    /// The queue is full (`try_submit` only; `submit` waits).
    #[error("the pool's queue is full")]
    Full(J),
    /// The pool is shut down (or shutting down).
    #[error("the pool is shut down")]
    Closed(J),
    /// The pool is down: its workers will not run again (see [`PoolDown`]).
    #[error("{1}")]
    Down(J, PoolDown),
}

impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full(_) => f.write_str("Full(..)"),
            SubmitError::Closed(_) => f.write_str("Closed(..)"),
            SubmitError::Down(_, why) => write!(f, "Down(.., {why:?})"),
        }
    }
}

impl<J> SubmitError<J> {
    /// The job that was not accepted.
    pub fn into_job(self) -> J {
        match self {
            SubmitError::Full(job) | SubmitError::Closed(job) | SubmitError::Down(job, _) => job,
        }
    }
}
