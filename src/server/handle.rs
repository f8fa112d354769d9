//! [`ServerRef`]: the handle that calls and casts to a server, valid across its restarts.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError};
use once_cell::sync::Lazy;

use crate::pid::Pid;
use crate::registry::{registry, AnyValue, Registry};
use crate::server::callbacks::Server;
use crate::server::error::{CallError, TryCastError};
use crate::server::mailbox::{Envelope, Mailbox, Room, SERVING_HERE};

/// How long a call waits for its reply by default (OTP's `gen_server:call` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on a server: call it, cast to it. Cheap to clone; valid across restarts
/// (requests queue while it restarts after a crash).
pub struct ServerRef<S: Server> {
    pub(super) mailbox: Arc<Mailbox<S>>,
}

impl<S: Server> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef {
            mailbox: self.mailbox.clone(),
        }
    }
}

impl<S: Server> fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRef")
            .field("name", &self.mailbox.name)
            .field("serving", &self.pid())
            .field("queued", &self.mailbox.rx.len())
            .finish()
    }
}

/// Servers by the pid of their running incarnation, so that a pid (from
/// `which_children`, a session) leads to the handle.
pub(super) static BY_PID: Lazy<Registry<Pid, AnyValue>> = Lazy::new(Registry::new);

impl<S: Server> ServerRef<S> {
    /// Sends `request` and waits for the reply, up to 5 s ([`DEFAULT_CALL_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`], [`CallError::Exited`] (it crashed handling this call),
    /// [`CallError::Stopped`], [`CallError::WouldDeadlock`] (called from the server).
    pub fn call(&self, request: S::Call) -> Result<S::Reply, CallError> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT)
    }

    /// [`call`](ServerRef::call) with a timeout of its own (`Duration::MAX`: no limit).
    ///
    /// # Errors
    ///
    /// As [`call`](ServerRef::call).
    pub fn call_timeout(&self, request: S::Call, timeout: Duration) -> Result<S::Reply, CallError> {
        if SERVING_HERE.with(Cell::get) == self.mailbox.address() {
            return Err(CallError::WouldDeadlock);
        }
        let (reply_tx, reply) = bounded(1);
        // One deadline for the whole call: waiting for room, then for the reply.
        let deadline = Instant::now().checked_add(timeout);
        let envelope = Envelope::Call(request, reply_tx);
        match deadline {
            Some(at) => {
                let room = Room::Until(at, timeout);
                self.mailbox
                    .post_within(envelope, room)
                    .map_err(|(_, why)| why)?;
            }
            None => self.mailbox.post(envelope)?,
        }
        let answer = match deadline {
            Some(at) => reply.recv_deadline(at),
            None => reply.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match answer {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => Err(CallError::Timeout(timeout)),
            // Dropped unanswered: the mailbox went away with its server.
            Err(RecvTimeoutError::Disconnected) => Err(CallError::Stopped),
        }
    }

    /// Queues `message` for the server and returns: at once, or, when a bounded mailbox
    /// ([`ServerSpec::capacity`](crate::server::ServerSpec::capacity)) is full, once there is room.
    ///
    /// # Errors
    ///
    /// [`CallError::Stopped`] if the server is stopped.
    pub fn cast(&self, message: S::Cast) -> Result<(), CallError> {
        self.mailbox.post(Envelope::Cast(message))
    }

    /// Queues `message` if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryCastError::Full`] when a bounded mailbox is full, [`TryCastError::Stopped`]
    /// when the server is stopped; either gives the message back.
    pub fn try_cast(&self, message: S::Cast) -> Result<(), TryCastError<S::Cast>> {
        match self.mailbox.post_within(Envelope::Cast(message), Room::Now) {
            Ok(()) => Ok(()),
            Err((Envelope::Cast(message), CallError::Full)) => Err(TryCastError::Full(message)),
            Err((Envelope::Cast(message), _)) => Err(TryCastError::Stopped(message)),
            Err(_) => unreachable!("a cast comes back as a cast"),
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
        let (_, any) = BY_PID.lookup(&pid)?;
        any.downcast_ref::<ServerRef<S>>().cloned()
    }
}
