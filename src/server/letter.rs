//! What a mailbox carries: each message with what its server does with it (`Letter`),
//! so that one mailbox takes calls, casts and infos of any number of message types
//! (packed into its envelope by `packed`).

use std::any::Any;

use crate::server::callbacks::{HandleCast, HandleInfo, HandleLater, Serve};
use crate::server::context::ServerContext;
use crate::server::error::CallError;
use crate::server::reply::ReplyTo;

/// What kind of message a letter is (statistics count them; a suspended server serves
/// only `System` ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Call,
    Cast,
    Info,
    System,
}

/// One message for a server of type `S`, with what the server does with it.
pub(super) trait Letter<S: Serve>: Send + Sized + 'static {
    const KIND: Kind;
    /// Serves it.
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>);
    /// Not served (a stop): its caller, if it has one, is told `why`.
    fn refuse(self, why: CallError);
    /// For giving a cast back to its sender (`try_cast`).
    fn into_any(self) -> Box<dyn Any> {
        Box::new(self)
    }
}

/// A call: the message and its caller's token.
pub(super) struct CallLetter<M, R: Send + 'static> {
    pub(super) message: M,
    pub(super) reply: ReplyTo<R>,
}

impl<S, M, R> Letter<S> for CallLetter<M, R>
where
    S: HandleLater<M, Reply = R>,
    M: Send + 'static,
    R: Send + 'static,
{
    const KIND: Kind = Kind::Call;
    #[inline]
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        state.handle_later(self.message, self.reply, ctx);
    }
    fn refuse(self, why: CallError) {
        self.reply.fail(why);
    }
}

/// A cast.
pub(super) struct CastLetter<M>(pub(super) M);

impl<S: HandleCast<M>, M: Send + 'static> Letter<S> for CastLetter<M> {
    const KIND: Kind = Kind::Cast;
    #[inline]
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        state.handle_cast(self.0, ctx);
    }
    fn refuse(self, _: CallError) {}
}

/// An info: sent from outside the API, a timer's message, a watched channel's message.
pub(super) struct InfoLetter<M>(pub(super) M);

impl<S: HandleInfo<M>, M: Send + 'static> Letter<S> for InfoLetter<M> {
    const KIND: Kind = Kind::Info;
    #[inline]
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        state.handle_info(self.0, ctx);
    }
    fn refuse(self, _: CallError) {}
}

/// A system request (state, statistics, suspend and resume): a function of the state
/// and the loop, answered through its token, served even while suspended.
pub(super) struct SystemLetter<F, T: Send + 'static> {
    pub(super) f: F,
    pub(super) reply: ReplyTo<T>,
}

impl<S, F, T> Letter<S> for SystemLetter<F, T>
where
    S: Serve,
    F: FnOnce(&mut S, &mut ServerContext<'_, S>) -> T + Send + 'static,
    T: Send + 'static,
{
    const KIND: Kind = Kind::System;
    fn open(self, state: &mut S, ctx: &mut ServerContext<'_, S>) {
        self.reply.send((self.f)(state, ctx));
    }
    fn refuse(self, why: CallError) {
        self.reply.fail(why);
    }
}
