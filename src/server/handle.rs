//! [`ServerRef`]: the handle that calls and casts to a server, valid across its restarts.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pid::Pid;
use crate::registry::registry;
use crate::server::callbacks::{HandleCast, HandleInfo, HandleLater, Serve};
use crate::server::error::{CallError, TryCastError};
use crate::server::letter::{CallLetter, CastLetter, InfoLetter};
use crate::server::mailbox::{Envelope, Mailbox, Room};
use crate::server::packed::Packed;
use crate::server::reply::{reply_slot, Limit, Waiter, SERVING_HERE};
use crate::tree::{self, Load, Shown};

/// How long a call waits for its reply by default (OTP's `gen_server:call` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on a server: call it, cast to it. Cheap to clone; valid across restarts
/// (requests queue while it restarts after a crash).
pub struct ServerRef<S: Serve> {
    pub(super) mailbox: Arc<Mailbox<S>>,
}

impl<S: Serve> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef {
            mailbox: self.mailbox.clone(),
        }
    }
}

impl<S: Serve> fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRef")
            .field("name", &self.mailbox.name)
            .field("serving", &self.pid())
            .field("queued", &self.mailbox.rx.len())
            .finish()
    }
}

impl<S: Serve> ServerRef<S> {
    /// Sends `message` and waits for the reply, up to 5 s ([`DEFAULT_CALL_TIMEOUT`]).
    /// The reply's type is the one the server's [`Handle<M>`](crate::server::Handle)
    /// (or [`HandleLater<M>`]) gives.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`], [`CallError::Exited`] (it crashed handling this call, or
    /// holding its reply token), [`CallError::Stopped`], [`CallError::NoReply`] (its
    /// token was dropped unanswered), [`CallError::WouldDeadlock`] (called from the
    /// server).
    pub fn call<M>(&self, message: M) -> Result<<S as HandleLater<M>>::Reply, CallError>
    where
        S: HandleLater<M>,
        M: Send + 'static,
    {
        self.call_timeout(message, DEFAULT_CALL_TIMEOUT)
    }

    /// [`call`](ServerRef::call) with a timeout of its own (`Duration::MAX`: no limit).
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn call_timeout<M>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<<S as HandleLater<M>>::Reply, CallError>
    where
        S: HandleLater<M>,
        M: Send + 'static,
    {
        let (reply, waiter) = reply_slot();
        self.request(Packed::pack(CallLetter { message, reply }), waiter, timeout)
    }

    /// Posts a letter that expects an answer, and waits for it within `timeout`.
    pub(super) fn request<T>(
        &self,
        letter: Packed<S>,
        waiter: Waiter<T>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        if SERVING_HERE.with(Cell::get) == self.mailbox.address() {
            return Err(CallError::WouldDeadlock);
        }
        #[cfg(feature = "metrics")]
        let began = Instant::now();
        let answer = self.post_and_wait(letter, waiter, timeout);
        #[cfg(feature = "metrics")]
        crate::telemetry::metric::server_call(&self.mailbox.label, began.elapsed());
        answer
    }

    fn post_and_wait<T>(
        &self,
        letter: Packed<S>,
        waiter: Waiter<T>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let envelope = Envelope::Letter(letter);
        if !self.mailbox.bounded {
            // Posted at once: the timeout is all the reply's (the waiter reads the clock
            // only once it has spun a while, so a prompt reply costs no clock read).
            self.mailbox.post(envelope)?;
            return waiter.wait(Limit::Timeout(timeout));
        }
        // One deadline for the whole call: waiting for room, then for the reply.
        let deadline = Instant::now().checked_add(timeout);
        let posted = match deadline {
            Some(at) => self
                .mailbox
                .post_within(envelope, Room::Until(at, timeout))
                .map_err(|(envelope, why)| refused(envelope, why)),
            None => self.mailbox.post(envelope),
        };
        posted?;
        waiter.wait(Limit::Deadline(deadline, timeout))
    }

    /// Queues `message` for the server's [`HandleCast<M>`] and returns: at once, or,
    /// when a bounded mailbox ([`ServerSpec::capacity`](crate::server::ServerSpec::capacity))
    /// is full, once there is room.
    ///
    /// # Errors
    ///
    /// [`CallError::Stopped`] if the server is stopped.
    #[inline]
    pub fn cast<M>(&self, message: M) -> Result<(), CallError>
    where
        S: HandleCast<M>,
        M: Send + 'static,
    {
        self.mailbox
            .post(Envelope::Letter(Packed::pack(CastLetter(message))))
    }

    /// Queues `message` for the server's [`HandleInfo<M>`]: a message from outside its
    /// API (OTP's plain `!`), queued with its calls and casts, in order.
    ///
    /// # Errors
    ///
    /// [`CallError::Stopped`] if the server is stopped.
    pub fn send<M>(&self, message: M) -> Result<(), CallError>
    where
        S: HandleInfo<M>,
        M: Send + 'static,
    {
        self.mailbox
            .post(Envelope::Letter(Packed::pack(InfoLetter(message))))
    }

    /// Queues `message` for the server's [`HandleCast<M>`] if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryCastError::Full`] when a bounded mailbox is full, [`TryCastError::Stopped`]
    /// when the server is stopped; either gives the message back.
    pub fn try_cast<M>(&self, message: M) -> Result<(), TryCastError<M>>
    where
        S: HandleCast<M>,
        M: Send + 'static,
    {
        let letter = Packed::pack(CastLetter(message));
        match self
            .mailbox
            .post_within(Envelope::Letter(letter), Room::Now)
        {
            Ok(()) => Ok(()),
            Err((Envelope::Letter(letter), why)) => {
                let message = match letter.into_any().downcast::<CastLetter<M>>() {
                    Ok(cast) => cast.0,
                    Err(_) => unreachable!("a cast comes back as the cast it was"),
                };
                Err(match why {
                    CallError::Full => TryCastError::Full(message),
                    _ => TryCastError::Stopped(message),
                })
            }
            Err((Envelope::Stop, _)) => unreachable!("a cast comes back as a cast"),
        }
    }

    /// The pid of the incarnation serving now, if one is.
    pub fn pid(&self) -> Option<Pid> {
        Pid::from_raw(self.mailbox.serving.load(Ordering::Acquire))
    }

    /// Requests waiting in the mailbox.
    pub fn queued(&self) -> usize {
        self.mailbox.rx.len()
    }

    /// The server registered under `name` with these types, if any (a server is
    /// registered while an incarnation runs; during a restart, it is not).
    pub fn whereis(name: &str) -> Option<ServerRef<S>> {
        registry().lookup_as::<ServerRef<S>>(name).map(|(_, s)| s)
    }

    /// Waits up to `timeout` for a server of these types to be registered under `name`.
    ///
    /// # Errors
    ///
    /// [`CallError::NoServer`] if none is within the time.
    pub fn wait_for(name: &str, timeout: Duration) -> Result<ServerRef<S>, CallError> {
        registry()
            .wait_for_registration_as::<ServerRef<S>>(name, timeout)
            .map(|(_, s)| s)
            .map_err(|_| CallError::NoServer(name.to_owned()))
    }

    /// The server of these types whose incarnation runs as `pid`, if any.
    pub fn from_pid(pid: Pid) -> Option<ServerRef<S>> {
        let (_, shown) = tree::SHOWN.lookup(&pid)?;
        shown.as_any().downcast_ref::<ServerRef<S>>().cloned()
    }
}

/// A running server, as a tree snapshot shows it (and as `from_pid` finds it).
impl<S: Serve> Shown for ServerRef<S> {
    fn load(&self) -> Load {
        Load::Server(self.queued())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A request that was not posted: its token is dropped here, not by a server, and its
/// caller is told `why`.
fn refused<S: Serve>(envelope: Envelope<S>, why: CallError) -> CallError {
    if let Envelope::Letter(letter) = envelope {
        letter.refuse(why.clone());
    }
    why
}
