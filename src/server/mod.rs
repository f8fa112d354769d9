//! Servers: a child that owns a state value and serves typed messages — OTP's
//! `gen_server` on a thread.
//!
//! A server type implements [`Serve`] (its life: [`handle_continue`](Serve::handle_continue),
//! [`handle_idle`](Serve::handle_idle), [`terminate`](Serve::terminate)) and one trait per
//! message type it takes: [`Handle<M>`] for a call with its own reply type,
//! [`HandleLater<M>`] for a call it may answer later, [`HandleCast<M>`] and
//! [`HandleInfo<M>`]. Each incarnation is built by a set-up function (`init`), then takes
//! its messages one at a time, in arrival order. Callers hold a [`ServerRef`], which
//! points at the server's **mailbox**, not at one incarnation: it stays valid across
//! restarts, clones freely, and can be found by name. The one-enum shape — one request,
//! one reply, one cast type — is the [`Server`] trait, which gives all of the above.
//!
//! A server's timers ([`send_after`](ServerContext::send_after),
//! [`send_interval`](ServerContext::send_interval)), idle timeout, watched channels
//! ([`watch`](ServerContext::watch)) and monitors ([`monitor`](ServerContext::monitor))
//! are kept by its own loop, as deadlines and sources beside its mailbox: it needs no
//! thread, channel or timer of its own, and a stop during any wait is immediate.
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use crossbeam_channel::Receiver;
//! use steadfast::server::{Handle, HandleInfo, Serve, ServerContext, ServerSpec};
//! use steadfast::Supervisor;
//!
//! struct Kv { map: HashMap<String, String>, feed: Receiver<(String, String)> }
//! struct Get(&'static str);                    // -> Option<String>
//! struct Put(&'static str, &'static str);      // -> (), and expires in a minute
//! struct Expire(String);                       // a timer's message
//!
//! impl Serve for Kv {
//!     // After the start is acknowledged: read the replication feed in this loop too.
//!     fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
//!         ctx.watch(self.feed.clone());
//!     }
//! }
//! impl Handle<Get> for Kv {
//!     type Reply = Option<String>;
//!     fn handle(&mut self, Get(k): Get, _: &mut ServerContext<'_, Self>) -> Option<String> {
//!         self.map.get(k).cloned()
//!     }
//! }
//! impl Handle<Put> for Kv {
//!     type Reply = ();
//!     fn handle(&mut self, Put(k, v): Put, ctx: &mut ServerContext<'_, Self>) {
//!         self.map.insert(k.into(), v.into());
//!         ctx.send_after(Duration::from_secs(60), Expire(k.into()));
//!     }
//! }
//! impl HandleInfo<Expire> for Kv {
//!     fn handle_info(&mut self, Expire(k): Expire, _: &mut ServerContext<'_, Self>) {
//!         self.map.remove(&k);
//!     }
//! }
//! impl HandleInfo<(String, String)> for Kv {     // from the feed
//!     fn handle_info(&mut self, (k, v): (String, String), _: &mut ServerContext<'_, Self>) {
//!         self.map.insert(k, v);
//!     }
//! }
//!
//! let (feed_tx, feed) = crossbeam_channel::unbounded();
//! let (spec, kv) = ServerSpec::new("kv", move |_ctx| {
//!     Ok(Kv { map: HashMap::new(), feed: feed.clone() })
//! })
//! .name("kv")
//! .build();
//! let app = Supervisor::builder().child(spec).start()?;
//! kv.call(Put("a", "1"))?;                      // -> ()
//! assert_eq!(kv.call(Get("a"))?, Some("1".into())); // -> Option<String>
//! feed_tx.send(("b".into(), "2".into()))?;
//! steadfast::wait::until(Duration::from_secs(10), || {
//!     kv.call(Get("b")).is_ok_and(|v| v.as_deref() == Some("2"))
//! })?;
//! # drop(app);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What happens to each kind of message
//!
//! | message | a crash (a panic in a callback) | a stop (terminate, shutdown, group restart) | the restart after it | a give-up (its supervisor gave up or exited; a dynamic one let it go) |
//! |---|---|---|---|---|
//! | the call being handled | fails at once: [`CallError::Exited`] with the panic | finishes first (stops are cooperative) | — | as a crash or a stop, then as below |
//! | a queued call | kept for the next incarnation | fails [`CallError::Stopped`] | served by the new incarnation | fails [`CallError::Stopped`], as does every later call |
//! | a queued cast or info | kept for the next incarnation | dropped | served by the new incarnation | dropped |
//! | a pending timer | cancelled with its incarnation | cancelled | none carried over: set them again in `init` or `handle_continue` | cancelled |
//! | a held reply token ([`HandleLater`]) | its caller fails at once: [`CallError::Exited`] | its caller fails at once: [`CallError::Stopped`] (unless `terminate` answers it) | — | as a crash or a stop |
//! | a watched channel, a monitor | forgotten with its incarnation | forgotten | none carried over | forgotten |
//!
//! Each cell is tested in `tests/server_messages.rs`. Also: a stop "however the
//! incarnation then ends" — returning, panicking, abandoned, or while its restart waits
//! out a backoff — fails what is queued and what comes later with `Stopped` until an
//! incarnation starts again; a server stopping itself ([`ServerContext::stop`]) with
//! `Normal`, `Shutdown` or `ShutdownWith` does the same (with another reason, its mailbox
//! is kept, as after a crash); a call from the server to itself (from `init`, a callback
//! or `terminate`) fails [`CallError::WouldDeadlock`] at once; a bounded mailbox
//! ([`ServerSpec::capacity`]) makes `cast` wait for room, `try_cast` return `Full`, a
//! call wait within its timeout, and a stop releases every waiting sender (`Stopped`).
//!
//! Each incarnation starts from `init` — state is not carried over a restart, only the
//! mailbox is. `init` runs before the server counts as started (its spec waits for it,
//! within [`init_timeout`](ServerSpec::init_timeout)), so an `Err` from it fails the start
//! with the cause; [`handle_continue`](Serve::handle_continue) runs after. A call waits at
//! most its timeout (5 s by default, OTP's), and never longer than the server takes to
//! crash or to drop its reply token.
//!
//! ## Cost
//!
//! A caller waits for its reply spinning for up to 20 µs before it parks, and an idle
//! server spins on its mailbox as long before it blocks: calls back to back never sleep
//! (about a third of a hand-written crossbeam server's round trip, a quarter of OTP's
//! `gen_server:call`, in `bench_table`). Each message is one allocation (a boxed letter,
//! so one mailbox takes any number of message types in order).

mod callbacks;
mod context;
mod error;
mod handle;
mod letter;
mod mailbox;
// The one module of the server with `unsafe`: letters stored in their envelope (why,
// and the invariants, at its top).
#[allow(unsafe_code)]
mod packed;
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
