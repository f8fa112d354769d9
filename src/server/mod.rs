//! Servers: a child that owns a state value and serves typed requests — OTP's
//! `gen_server` on a thread.
//!
//! A [`Server`] is built by a set-up function (`init`) for each incarnation, then answers
//! [`call`](ServerRef::call)s (a request and its reply) and takes
//! [`cast`](ServerRef::cast)s (a message, no reply), one at a time, in arrival order.
//! Callers hold a [`ServerRef`], which points at the server's **mailbox**, not at one
//! incarnation: it stays valid across restarts, clones freely, and can be found by name.
//!
//! ```
//! use steadfast::server::{Server, ServerSpec};
//! use steadfast::{Context, Supervisor};
//!
//! struct Counter(u64);
//!
//! impl Server for Counter {
//!     type Call = ();    // "what is the count?"
//!     type Reply = u64;
//!     type Cast = u64;   // "add this"
//!     fn handle_call(&mut self, _: (), _ctx: &Context) -> u64 {
//!         self.0
//!     }
//!     fn handle_cast(&mut self, n: u64, _ctx: &Context) {
//!         self.0 += n;
//!     }
//! }
//!
//! let (spec, counter) = ServerSpec::new("counter", |_ctx| Ok(Counter(0))).build();
//! let sup = Supervisor::builder().child(spec).start()?;
//! counter.cast(2)?;
//! counter.cast(3)?;
//! assert_eq!(counter.call(())?, 5); // served after the casts: one mailbox, in order
//! # drop(sup);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What survives what
//!
//! | event                          | the mailbox                     | the call being handled            |
//! |--------------------------------|---------------------------------|-----------------------------------|
//! | a crash (panic in a callback)  | kept: the next incarnation serves it | fails at once: [`CallError::Exited`] with the panic |
//! | a stop (terminate, shutdown, group restart), however the incarnation then ends (returns, panics, is abandoned), also while a restart waits out a backoff | queued and later calls fail [`CallError::Stopped`] until an incarnation starts again | finishes first (stops are cooperative) |
//! | its spec is gone (its supervisor gave up or exited; a dynamic one let it go) | shut for good: queued and later calls fail [`CallError::Stopped`] | — |
//! | the server calls itself (from `init`, a callback or `terminate`) | —  | [`CallError::WouldDeadlock`], at once |
//! | a bounded mailbox ([`ServerSpec::capacity`]) is full | `cast` waits for room, `try_cast` returns `Full`, a call waits within its timeout; a stop releases every waiting sender (`Stopped`) | — |
//!
//! Each incarnation starts from `init` — state is not carried over a restart, only the
//! mailbox is. `init` runs before the server counts as started (its spec waits for it,
//! within [`init_timeout`](ServerSpec::init_timeout)), so an `Err` from it fails the start
//! with the cause. A call waits at most its timeout (5 s by default, OTP's), and never
//! longer than the server takes to crash.

mod callbacks;
mod context;
mod error;
mod handle;
mod letter;
mod mailbox;
mod reply;
mod serve;
mod sources;
mod spec;
mod sys;
mod timers;

pub use callbacks::{Handle, HandleCast, HandleInfo, HandleLater, Ignore, Serve, Server};
pub use context::ServerContext;
pub use error::{CallError, TryCastError};
pub use handle::{ServerRef, DEFAULT_CALL_TIMEOUT};
pub use reply::ReplyTo;
pub use sources::{Down, MonitorRef, WatchRef};
pub use spec::{ServerSpec, DEFAULT_INIT_TIMEOUT};
pub use sys::Statistics;
pub use timers::TimerRef;
