//! What a server is: its callbacks ([`Server`]), and how its `init` declines ([`Ignore`]).

use crate::child::context::Context;

/// The callbacks of a server: what it does with each request. `self` is its state.
///
/// Callbacks run on the server's own thread, one at a time. A panic in one crashes the
/// server (its supervisor decides about a restart); the caller of the call being handled
/// gets [`CallError::Exited`](crate::server::CallError::Exited) with the panic at once.
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
