//! Job pools: N workers over one job queue, under a supervisor, losing nothing.
//!
//! A [`Pool`] runs a job function over jobs submitted from any thread. Its promise, the
//! pool invariant: every job submitted is, in the end, exactly one of **done** (its
//! function returned `Ok` — and it is never run again after that), **dead-lettered**
//! (it failed `max_attempts` times, by returning `Err` or by crashing its worker; it is
//! handed to the dead-letter sink with the last reason), or **handed back** by
//! [`shutdown`](Pool::shutdown) (never started, or interrupted by the shutdown).
//!
//! ```
//! use std::time::Duration;
//! use steadfast::pool::Pool;
//!
//! let (results, done) = steadfast::channel::unbounded();
//! let pool = Pool::builder(4, move |n: &u64, _ctx| {
//!     results.send(n * n)?;
//!     Ok(())
//! })
//! .start()?;
//! for n in 0..100 {
//!     pool.submit(n)?;
//! }
//! pool.drain(Duration::from_secs(10))?;
//! assert_eq!(done.try_iter().count(), 100);
//! assert!(pool.shutdown().is_empty()); // nothing left to hand back
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How a job survives its worker
//!
//! Each worker owns an in-flight slot that outlives its incarnations. It moves a job
//! from the queue into the slot, runs the function on it by reference, and empties the
//! slot once the function returned `Ok`. A function that returns `Err` or panics counts
//! a failed attempt (the panic is caught on the worker's thread and reported once, as
//! any supervised panic): the job is run again, or dead-lettered once it has had
//! `max_attempts`. A crashing job is what a pool exists to contain, so it does not
//! crash its worker. If the worker itself crashes around a job (a job whose `Drop`
//! panics, say), its supervisor restarts it; the new incarnation finds the job in its
//! slot, counts the failed attempt (with the crash's reason, from
//! [`Context::previous_exit`](crate::Context::previous_exit)) and runs it again.
//!
//! Whether a job was interrupted by a stop is whether its worker's stop was raised,
//! never what its error looks like: a job that returns [`Stopped`](crate::Stopped)
//! unasked has failed an attempt like any other error.
//!
//! ## A pool in your tree
//!
//! [`PoolBuilder::start`] gives the pool a supervisor of its own, owned by the returned
//! [`Pool`]. [`PoolBuilder::child_spec`] makes the workers' supervisor a child of yours
//! instead: its giving up escalates to your supervisor, which restarts it as any nested
//! supervisor, and the `Pool` handle — the queue, the slots and the counts live outside
//! any incarnation — keeps working across those restarts, as a server's mailbox does.
//!
//! ## A pool that is down
//!
//! When no worker will run again — a pool of its own whose supervisor gave up (its
//! [intensity](PoolBuilder::intensity) is exceeded), or a pool in your tree whose spec is
//! gone (your tree gave up on it, or ended) — `submit` and `try_submit` fail at once with
//! [`SubmitError::Down`] and `drain` with [`DrainError::Down`], each saying why, and
//! [`Pool::is_alive`] is `false`. Nothing is lost: `shutdown` hands back what was queued
//! or in a worker's slot.

mod handle;
mod outcome;
mod work;

pub use handle::{Pool, PoolBuilder};
pub use outcome::{DeadLetter, DrainError, PoolDown, PoolStats, SubmitError};
pub use work::current_attempt;
