//! What a server is: its life ([`Serve`]), the messages it takes ([`Handle`],
//! [`HandleLater`], [`HandleCast`], [`HandleInfo`]), the one-enum shorthand ([`Server`]),
//! and how its `init` declines ([`Ignore`]).
//!
//! A server type implements [`Serve`] once, then one trait per message type it takes.
//! [`ServerRef::call`](crate::server::ServerRef::call) is generic over the message, so
//! each message has its own reply type, checked at compile time. The classic shape — one
//! request enum, one reply, one cast type — is [`Server`], which gives all of these.

use crate::child::context::Context;
use crate::exit::ExitReason;
use crate::server::context::ServerContext;
use crate::server::reply::ReplyTo;

/// A server's life: what runs around its messages. Every method has a default, so a
/// server with nothing to add writes `impl Serve for MyServer {}`.
///
/// Callbacks run on the server's own thread, one at a time. A panic in one crashes the
/// server (its supervisor decides about a restart).
pub trait Serve: Send + Sized + 'static {
    /// Runs once the start has been acknowledged, before the first message (OTP's
    /// `handle_continue` after `init`): set-up that should not hold up the supervisor's
    /// start. More such work can be asked for from any callback with
    /// [`ServerContext::continue_with`]. The default does nothing.
    fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
        let _ = ctx;
    }

    /// No message has arrived for the idle timeout set with
    /// [`ServerContext::set_idle_timeout`] (OTP's `{timeout, T}`). The default does
    /// nothing.
    fn handle_idle(&mut self, ctx: &mut ServerContext<'_, Self>) {
        let _ = ctx;
    }

    /// Runs once when the server stops: asked by its supervisor (`reason` is
    /// [`ExitReason::Shutdown`]) or by itself ([`ServerContext::stop`], with its reason).
    /// Not after a crash: the state may be half updated then. The default does nothing.
    fn terminate(&mut self, reason: &ExitReason, ctx: &mut ServerContext<'_, Self>) {
        let _ = (reason, ctx);
    }
}

/// A call the server answers: message `M`, reply [`Reply`](Handle::Reply).
///
/// ```
/// use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
/// use steadfast::Supervisor;
/// use std::collections::HashMap;
///
/// #[derive(Default)]
/// struct Kv(HashMap<String, u32>);
/// struct Get(&'static str);
/// struct Put(&'static str, u32);
///
/// impl Serve for Kv {}
/// impl Handle<Get> for Kv {
///     type Reply = Option<u32>;
///     fn handle(&mut self, Get(k): Get, _: &mut ServerContext<'_, Self>) -> Option<u32> {
///         self.0.get(k).copied()
///     }
/// }
/// impl Handle<Put> for Kv {
///     type Reply = ();
///     fn handle(&mut self, Put(k, v): Put, _: &mut ServerContext<'_, Self>) {
///         self.0.insert(k.to_owned(), v);
///     }
/// }
///
/// let (spec, kv) = ServerSpec::new("kv", |_| Ok(Kv::default())).build();
/// let sup = Supervisor::builder().child(spec).start()?;
/// kv.call(Put("a", 1))?;                     // -> ()
/// assert_eq!(kv.call(Get("a"))?, Some(1));   // -> Option<u32>
/// # drop(sup);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Handle<M>: Serve {
    /// What the caller gets back.
    type Reply: Send + 'static;

    /// Answers `message`.
    fn handle(&mut self, message: M, ctx: &mut ServerContext<'_, Self>) -> Self::Reply;
}

/// A call the server may answer later (OTP's `noreply` and `gen_server:reply`): the
/// handler gets the caller's [`ReplyTo`] token and answers through it now, from a later
/// message or timer, or from another thread. A token dropped unanswered fails its caller
/// at once ([`CallError::NoReply`](crate::server::CallError::NoReply); after a crash,
/// [`Exited`](crate::server::CallError::Exited)), never by a timeout.
///
/// A message type has either a [`Handle`] or a `HandleLater`, not both.
///
/// ```
/// use std::thread;
/// use steadfast::server::{Handle, HandleLater, ReplyTo, Serve, ServerContext, ServerSpec};
/// use steadfast::Supervisor;
///
/// /// Callers wait at the gate until it opens.
/// #[derive(Default)]
/// struct Gate { open: bool, waiting: Vec<ReplyTo<&'static str>> }
/// struct Pass;
/// struct Open;
///
/// impl Serve for Gate {}
/// impl HandleLater<Pass> for Gate {
///     type Reply = &'static str;
///     fn handle_later(&mut self, _: Pass, reply: ReplyTo<&'static str>, _: &mut ServerContext<'_, Self>) {
///         if self.open {
///             reply.send("through at once");
///         } else {
///             self.waiting.push(reply); // answered by `Open`, later
///         }
///     }
/// }
/// impl Handle<Open> for Gate {
///     type Reply = ();
///     fn handle(&mut self, _: Open, _: &mut ServerContext<'_, Self>) {
///         self.open = true;
///         for reply in self.waiting.drain(..) {
///             reply.send("through after waiting");
///         }
///     }
/// }
///
/// let (spec, gate) = ServerSpec::new("gate", |_| Ok(Gate::default())).build();
/// let sup = Supervisor::builder().child(spec).start()?;
/// let waiter = { let gate = gate.clone(); thread::spawn(move || gate.call(Pass)) };
/// steadfast::wait::until(std::time::Duration::from_secs(10), || {
///     gate.get_state(|g| g.waiting.len() == 1).unwrap_or(false)
/// })?;
/// gate.call(Open)?;
/// assert_eq!(waiter.join().unwrap()?, "through after waiting");
/// assert_eq!(gate.call(Pass)?, "through at once");
/// # drop(sup);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HandleLater<M>: Serve {
    /// What the caller gets back.
    type Reply: Send + 'static;

    /// Takes `message`; answers through `reply`, now or later.
    fn handle_later(
        &mut self,
        message: M,
        reply: ReplyTo<Self::Reply>,
        ctx: &mut ServerContext<'_, Self>,
    );
}

impl<S: Handle<M>, M> HandleLater<M> for S {
    type Reply = <S as Handle<M>>::Reply;

    #[inline]
    fn handle_later(
        &mut self,
        message: M,
        reply: ReplyTo<Self::Reply>,
        ctx: &mut ServerContext<'_, Self>,
    ) {
        reply.send(self.handle(message, ctx));
    }
}

/// A cast the server takes: message `M`, no reply.
pub trait HandleCast<M>: Serve {
    /// Takes `message`.
    fn handle_cast(&mut self, message: M, ctx: &mut ServerContext<'_, Self>);
}

/// A message from outside the server's API (OTP's `handle_info`): sent with
/// [`ServerRef::send`](crate::server::ServerRef::send), fired by a timer
/// ([`ServerContext::send_after`]), taken from a watched channel
/// ([`ServerContext::watch`]), or a [`Down`](crate::server::Down) from a monitor.
pub trait HandleInfo<M>: Serve {
    /// Takes `message`.
    fn handle_info(&mut self, message: M, ctx: &mut ServerContext<'_, Self>);
}

/// The one-enum shorthand: a server with one request type, one reply type and one cast
/// type. Implementing it implements [`Serve`], [`Handle<Call>`](Handle) and
/// [`HandleCast<Cast>`](HandleCast) (so it can take other messages too, through their
/// own traits, but not override `Serve`'s callbacks).
///
/// ```
/// use steadfast::server::{Server, ServerSpec};
/// use steadfast::{Context, Supervisor};
///
/// struct Counter(u64);
///
/// impl Server for Counter {
///     type Call = ();    // "what is the count?"
///     type Reply = u64;
///     type Cast = u64;   // "add this"
///     fn handle_call(&mut self, _: (), _ctx: &Context) -> u64 {
///         self.0
///     }
///     fn handle_cast(&mut self, n: u64, _ctx: &Context) {
///         self.0 += n;
///     }
/// }
///
/// let (spec, counter) = ServerSpec::new("counter", |_ctx| Ok(Counter(0))).build();
/// let sup = Supervisor::builder().child(spec).start()?;
/// counter.cast(2)?;
/// counter.cast(3)?;
/// assert_eq!(counter.call(())?, 5); // served after the casts: one mailbox, in order
/// # drop(sup);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Server: Send + 'static {
    /// A request that expects a reply.
    type Call: Send + 'static;
    /// The reply to a [`Call`](Server::Call). Use a `Result` for answers that can fail.
    type Reply: Send + 'static;
    /// A message that expects no reply. Use `()` (or an empty enum) for none.
    type Cast: Send + 'static;

    /// Answers a call.
    fn handle_call(&mut self, request: Self::Call, ctx: &Context) -> Self::Reply;

    /// Takes a cast. The default ignores it.
    fn handle_cast(&mut self, message: Self::Cast, ctx: &Context) {
        let _ = (message, ctx);
    }

    /// Runs once when the server is stopped (not after a crash: the state may be half
    /// updated then). The default does nothing.
    fn terminate(&mut self, ctx: &Context) {
        let _ = ctx;
    }
}

impl<S: Server> Serve for S {
    fn terminate(&mut self, _: &ExitReason, ctx: &mut ServerContext<'_, Self>) {
        Server::terminate(self, ctx);
    }
}

impl<S: Server> Handle<S::Call> for S {
    type Reply = S::Reply;

    #[inline]
    fn handle(&mut self, request: S::Call, ctx: &mut ServerContext<'_, Self>) -> S::Reply {
        self.handle_call(request, ctx)
    }
}

impl<S: Server> HandleCast<S::Cast> for S {
    #[inline]
    fn handle_cast(&mut self, message: S::Cast, ctx: &mut ServerContext<'_, Self>) {
        Server::handle_cast(self, message, ctx);
    }
}

/// What `init` returns to decline the start (OTP's `ignore`): the supervisor's start
/// goes on without this server (`start_child` answers
/// [`SupervisorError::Ignored`](crate::SupervisorError::Ignored)), a static supervisor
/// keeps its spec for a later `restart_child`, and calls fail `Stopped` meanwhile.
///
/// # Examples
///
/// ```
/// use steadfast::server::{Ignore, Server, ServerSpec};
/// use steadfast::{Context, Supervisor, SupervisorError};
///
/// struct Cache;
/// impl Server for Cache {
///     type Call = ();
///     type Reply = ();
///     type Cast = ();
///     fn handle_call(&mut self, _: (), _: &Context) {}
/// }
///
/// let enabled = false; // from the configuration, say
/// let (spec, cache) = ServerSpec::new("cache", move |_ctx| {
///     if !enabled {
///         return Err(Ignore.into());
///     }
///     Ok(Cache)
/// })
/// .build();
/// let sup = Supervisor::builder().start()?;
/// assert!(matches!(sup.start_child(spec), Err(SupervisorError::Ignored)));
/// assert!(cache.call(()).is_err()); // nothing serves it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server declined to start")]
pub struct Ignore;
