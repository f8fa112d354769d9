//! # steadfast
//!
//! Erlang/OTP-style supervision trees on plain OS threads, with no async runtime.
//!
//! Every supervisor and every child is an OS thread. A child that panics or returns an
//! error is restarted by its supervisor under a clear policy; crashes stay contained;
//! names can be looked up; shutdown is orderly.
//!
//! ## A first supervisor
//!
//! ```
//! use std::time::Duration;
//! use steadfast::{ChildSpec, Supervisor};
//!
//! let sup = Supervisor::builder()
//!     .child(ChildSpec::worker("heartbeat", |ctx| {
//!         // `sleep` wakes early when the supervisor asks the child to stop.
//!         while ctx.sleep(Duration::from_millis(10)).is_ok() {}
//!         Ok(())
//!     }))
//!     .start()?;
//! assert_eq!(sup.count_children()?.active, 1);
//! sup.shutdown()?; // also what dropping `sup` does
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Children and what they see
//!
//! A child runs `Fn(&Context) -> Result<(), ChildError>` on its own thread, once per
//! incarnation. `ChildError` is any boxed error, so `?` works. Its [`Context`] gives its
//! [`Pid`], its stop signal (as a flag, as a channel for `select!`, and through
//! [`Context::sleep`], [`Context::recv`] and [`Context::recv_timeout`], which wake on it),
//! [`Context::ready`] for children whose start must wait for their set-up (or
//! [`Context::ignore`] to decline), and which incarnation it is
//! ([`Context::incarnation`], [`Context::previous_exit`]). The channels are
//! crossbeam-channel's, re-exported as [`channel`].
//!
//! How it ends becomes an [`ExitReason`]: `Normal` (returned `Ok` unasked), `Shutdown`
//! (returned after being asked to stop), `Failed` (returned `Err`), `Panicked`, or
//! `Killed` (abandoned, see below).
//!
//! ### Worker or task?
//!
//! - A **worker** ([`ChildSpec::worker`]) is a service that can start over from scratch:
//!   its function is `Fn`, and it is restarted when it dies (permanent by default). A
//!   database connection, a listener, a cache. If it holds work that must survive a
//!   crash, it keeps it in a slot captured by its function and looks at
//!   [`Context::previous_exit`] when it starts again (`examples/job_pool.rs`).
//! - A **task** ([`ChildSpec::task`]) is one piece of work that owns what it needs — an
//!   accepted `TcpStream`, a job — and makes no sense to run twice: its function is
//!   `FnOnce`, it is never restarted, and a crash ends only it. Usually under a
//!   [`DynamicSupervisor`] (`examples/echo_server.rs`).
//!
//! ### Blocked in I/O, and still stopping
//!
//! A thread blocked in `accept` or `read` does not see its stop signal. It registers a
//! stop hook ([`Context::on_stop`]) that unblocks the call — shut the socket down,
//! connect to the listener — and the stop is as prompt as for any other child.
//!
//! ### Backing off, and ending the supervisor
//!
//! A child that fails while something it needs is down can wait before each restart
//! ([`ChildSpec::backoff`] with a [`Backoff`]): the supervisor keeps serving meanwhile.
//! A transient or temporary child marked [`significant`](ChildSpec::significant) ends its
//! supervisor when it is done, as the supervisor's [`AutoShutdown`] says — a job runner
//! that lives as long as its job.
//!
//! ## Restart types and strategies
//!
//! Whether a dead child is restarted depends on its [`Restart`] type and its exit reason
//! (OTP's table, documented on [`Restart`]); *what else* is restarted with it depends on the
//! supervisor's [`Strategy`]:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::{ChildSpec, Restart, Strategy, Supervisor};
//!
//! let idle = |id: &str| ChildSpec::worker(id, |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) });
//! let sup = Supervisor::builder()
//!     .strategy(Strategy::RestForOne) // a crash restarts the child and those after it
//!     .intensity(5, Duration::from_secs(10)) // more than 5 restarts in 10 s: give up
//!     .child(idle("reader"))
//!     .child(idle("parser").restart(Restart::Transient)) // restarted only after a crash
//!     .child(idle("writer"))
//!     .start()?;
//! # drop(sup);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A worker whose restart touches only itself (one_for_one, dynamic) is restarted **on its
//! own thread**, with a new [`Pid`] — no thread spawn per crash. A group restart
//! (one_for_all, rest_for_one) stops its members as usual, then resumes each worker on the
//! thread it already had. Thread-locals carry over between incarnations;
//! [`ChildSpec::fresh_thread`] opts out.
//!
//! A supervisor that exceeds its intensity stops its children and exits; a parent
//! supervisor sees that exit like OTP's `shutdown` (see [`ChildSpec::supervisor`]), and the
//! owner of a top-level tree learns it from [`Supervisor::join`].
//!
//! ## Shutdown
//!
//! Threads cannot be killed, so stopping is cooperative: the supervisor raises the child's
//! stop signal and waits up to its [`Shutdown`] timeout (5 s for workers by default). A child
//! still running then is **abandoned**: its thread is detached, its exit is reported as
//! [`ExitReason::Killed`], its names are released at once and the tree carries on. Static
//! supervisors stop children one at a time in reverse start order — a child's signal is
//! raised only once every child after it has exited (names released, monitors fired); the
//! exiting child's own thread raises it, so each step costs one hand-off between threads.
//! Dynamic supervisors signal all at once. Dropping a [`Supervisor`] shuts its tree down
//! and joins every thread.
//!
//! ## Dynamic supervisors
//!
//! A [`DynamicSupervisor`] starts children at run time, up to `max_children`:
//!
//! ```
//! use steadfast::{ChildSpec, DynamicSupervisor};
//!
//! let pool = DynamicSupervisor::builder().max_children(100).start()?;
//! let pid = pool.start_child(ChildSpec::worker("conn", |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) }))?;
//! pool.terminate_child(pid)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Nested in a tree, a supervisor's spec can come with a handle that follows it across
//! its restarts ([`SupervisorBuilder::build`], [`DynamicSupervisorBuilder::build`]:
//! [`Tracked`]), and a child reaches its own supervisor and its tree's root from its
//! context ([`Context::supervisor`], [`Context::root`]).
//!
//! ## Names: the registry
//!
//! A [`Registry`] maps unique keys to live processes. An entry goes when its owner exits,
//! *before* the exit is reported to anyone, so code that waited for an exit (a [`monitor`],
//! a join, the event stream) never polls. [`registry()`] is the global instance, where
//! named supervisors and servers live (to find a nested supervisor from its siblings,
//! no name is needed: [`SupervisorBuilder::build`] makes its spec with a [`Tracked`]
//! handle, and a child finds its own supervisor with [`Context::supervisor`]):
//!
//! ```
//! use steadfast::{registry, Supervisor, SupervisorRef};
//!
//! let sup = Supervisor::builder().name("lib-doc-app").start()?;
//! let app = SupervisorRef::whereis("lib-doc-app").unwrap();
//! assert!(app.which_children()?.is_empty());
//! drop(sup);
//! assert!(registry().lookup("lib-doc-app").is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The owner of an entry may change its value in place ([`Registry::update_value`]);
//! [`Registry::select`] and [`Registry::count_matching`] query by predicate, and
//! [`Registry::listen`] reports every registration and unregistration, exits included.
//!
//! **Groups** put many processes under one key (topics, process groups: Elixir's
//! duplicate registries, OTP's `pg`), with the same guarantee — a member's entries are
//! gone before its exit is observable — and dispatch to all of them, on the caller's
//! thread, with no lock held:
//!
//! ```
//! use steadfast::channel::{unbounded, Sender};
//! use steadfast::Groups;
//!
//! let chat: Groups<String, Sender<String>> = Groups::new();
//! let (alice, inbox) = unbounded();
//! chat.join("room-1".to_string(), alice);
//! assert_eq!(chat.dispatch_send("room-1", "hello".to_string()), 1);
//! assert_eq!(inbox.recv()?, "hello");
//! chat.dispatch("room-1", |pid, _sender| println!("member {pid}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`groups()`] is the global instance, with typed values.
//!
//! The [`wait`] module has blocking helpers with deadlines for code that did not wait on
//! anything.
//!
//! ## Servers, pools and tasks
//!
//! [`server`] is OTP's `gen_server` on a thread: a child that owns a state value and
//! serves typed calls and casts, through a handle that outlives its incarnations (a
//! crash keeps the queue; the call being handled fails at once with the reason).
//! [`pool`] runs supervised workers over one bounded job queue and loses nothing: jobs
//! that fail or panic are retried, then dead-lettered; a shutdown hands back the rest; a
//! pool can live in your own tree ([`pool::PoolBuilder::child_spec`]). [`task`] runs
//! supervised tasks you wait for, one ([`task::spawn`]) or a bounded parallel map over
//! many items ([`task::map`], Elixir's `Task.async_stream`). Each module's docs start
//! with an example.
//!
//! ## The tree at a glance, and the process boundary
//!
//! [`SupervisorRef::snapshot`] returns the whole tree — nested supervisors included, each
//! child with its pid, status, restarts, last exit and uptime — and prints it like
//! `pstree`. [`service`] runs a tree as a service: SIGTERM/SIGINT into an orderly stop,
//! the outcome as the process exit status, systemd's notify protocol, and health for
//! Kubernetes probes.
//!
//! ## Sessions
//!
//! The `session` module is the first real user of all of the above: a
//! `SessionManager` runs many concurrent work-sessions, each a
//! small one_for_all tree under a dynamic supervisor, with limits, metadata, and clean-up
//! on stop and on crash. It is behind the `sessions` cargo feature (on by default; turn
//! default features off to build the core alone, without `uuid`).
//!
//! ## Observing: events
//!
//! Every supervisor reports what it does, in order, as [`Event`]s
//! ([`SupervisorRef::events`], or `event_sink` on the builder from the first start) — the
//! basis of order-sensitive tests. For counters and metrics,
//! [`SupervisorBuilder::on_event`](supervisor::SupervisorBuilder::on_event) calls a function
//! with each event on the supervisor's own thread, and
//! [`on_start`](supervisor::SupervisorBuilder::on_start) runs one before its first child
//! starts (the session layer ties its tables to each session's supervisor there).
//!
//! ## Panics
//!
//! A panic in a child is caught on the child's thread (`catch_unwind`) and becomes
//! [`ExitReason::Panicked`]; it never reaches the supervisor. Each supervised panic is
//! reported **once**: as one `log` record (child id, message, location) when a logger
//! takes `error` records for the target `steadfast::panic` — the standard panic hook then
//! stays quiet for it — and by the standard hook (stderr) otherwise;
//! [`route_panics_to_log`] keeps them off stderr in both cases. Panics on other threads
//! are left to the standard hook. Every restart makes one `info` record with the
//! previous exit's reason.
//!
//! Odd payloads are fine: a non-string payload is reported as
//! `"<non-string panic payload>"`, and a payload whose own `Drop` panics is contained too.
//! But `catch_unwind` cannot catch an abort: with `panic = "abort"`, on a stack overflow, or
//! when a `Drop` panics *during* unwinding (a second panic while the first unwinds), the
//! whole process aborts and steadfast cannot supervise that (`tests/hostile.rs` shows it
//! in a subprocess).
//!
//! ## Calling your own supervisor
//!
//! A child may use its supervisor's handle: start siblings, terminate itself, even shut
//! the whole tree down. A supervisor serves one request at a time, so a request it could
//! serve only by waiting for the caller would deadlock; steadfast answers those at once
//! instead (the caller is recognised by its [`Pid`], through nested supervisors too):
//!
//! - `terminate_child` on the caller itself returns `Ok(())` as soon as the stop is raised;
//!   the caller then returns and exits with [`ExitReason::Shutdown`].
//! - `shutdown()` (or dropping the owning handle) from a process of that tree raises the
//!   stop and returns; the tree then stops the caller like any other child.
//! - Code the supervisor runs on its own thread — a stop hook it raised
//!   ([`Context::on_stop`]), `on_event`, `on_start` — can only be answered there and
//!   then: questions are answered from the supervisor's table (from `on_start`, before
//!   the supervisor runs, they fail too), anything else fails with `WouldDeadlock`.
//! - A request from a child the supervisor is waiting for — one not yet ready, or being
//!   stopped — fails with [`SupervisorError::WouldDeadlock`]; so does `join()` from inside
//!   the tree. Its questions (`which_children`, `count_children`, `events`) are answered
//!   even then. A dynamic supervisor does not wait for a child it is *asked* to start
//!   (the caller of `start_child` does, so that child is served like anyone else while
//!   it gets ready); it does wait when it *restarts* a child that reports readiness, as
//!   OTP's supervisors wait for a restarted child's `init`, and that child's requests
//!   other than questions fail with `WouldDeadlock` until it is ready.
//!
//! ## Nothing lost
//!
//! Everything a supervisor learns — exits, restarts a child made on its own thread,
//! dynamic children handed over, requests — reaches it through one queue, in the order it
//! happened. While it waits for one child (to stop, or to be ready) it takes out only that
//! child's notices; everything else waits its turn, so a stop, a readiness wait or an
//! event subscriber leaving can never drop or reorder a notice. A child that crash-loops
//! is held back once its supervisor is a few hundred notices behind, so memory stays
//! bounded and the supervisor keeps answering. Timeouts too large for an
//! [`Instant`](std::time::Instant) mean "no deadline". `ARCHITECTURE.md` in the repository
//! walks through each message flow.
//!
//! ## Threads and their limit
//!
//! Each child costs one OS thread. steadfast keeps a global cap ([`set_max_threads`]) so
//! that running out of threads is an error value ([`SpawnError::ThreadLimit`]) well before
//! the system's limit, where the rest of the program could no longer make a thread and
//! the standard library may abort.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

mod child;
mod clock;
mod error;
mod exit;
mod groups;
mod hash;
mod listeners;
#[cfg(feature = "observer")]
pub mod observer;
mod pid;
pub mod pool;
mod registry;
pub mod server;
pub mod service;
#[cfg(feature = "sessions")]
pub mod session;
// One of the two modules with `unsafe` (the other: `server::packed`): a lock whose readers
// write no shared cache line (why, and the protocol that makes it sound, in its doc).
#[allow(unsafe_code)]
mod shards;
pub mod supervisor;
pub mod task;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;
pub mod wait;

/// The channels steadfast is built on (crossbeam-channel), re-exported so that the
/// `Receiver` that [`Context::recv`] takes and the `select!` that waits on
/// [`Context::stop_signal`] need no dependency of your own.
pub use crossbeam_channel as channel;

pub use child::backoff::Backoff;
pub use child::cap::{live_threads, max_threads, set_max_threads};
pub use child::context::Context;
pub use child::panic_hook::route_panics_to_log;
pub use child::spec::{ChildKind, ChildSpec, Restart, Shutdown};
pub use error::{
    ChildError, RecvError, RecvTimeoutError, RegistryError, SpawnError, StartError, Stopped,
    SupervisorError,
};
pub use exit::ExitReason;
pub use groups::{groups, Groups};
pub use listeners::RegistryEvent;
pub use pid::{monitor, Pid};
pub use registry::{registry, AnyValue, Registry};
pub use supervisor::event::{ChildCounts, ChildInfo, ChildStatus, Event};
pub use supervisor::{
    AnySupervisorRef, AutoShutdown, DynamicSupervisor, DynamicSupervisorBuilder,
    DynamicSupervisorRef, Strategy, Supervisor, SupervisorBuilder, SupervisorRef, Tracked,
};
