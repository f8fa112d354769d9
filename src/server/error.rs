//! Why a call, a cast or a try-cast did not get through.

use std::fmt;
use std::time::Duration;

use crate::exit::ExitReason;

/// Why a call (or a cast) did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply within the timeout. The request may still be served later.
    #[error("the server did not reply within {0:?}")]
    Timeout(Duration),
    /// The server crashed while handling this very request.
    #[error("the server exited while handling the call: {0}")]
    Exited(ExitReason),
    /// The server was stopped (or is stopping): the request was not served.
    #[error("the server is stopped")]
    Stopped,
    /// A server called itself, which could only deadlock.
    #[error("a server cannot call itself")]
    WouldDeadlock,
    /// No server is registered under that name (or with that request type).
    #[error("no server named {0:?}")]
    NoServer(String),
    /// The server dropped the call's reply token without answering (see
    /// [`HandleLater`](crate::server::HandleLater)).
    #[error("the server dropped the call without replying")]
    NoReply,
    /// The server's bounded mailbox is full (see [`ServerSpec::capacity`](crate::server::ServerSpec::capacity)).
    #[error("the server's mailbox is full")]
    Full,
}

/// Why [`ServerRef::try_cast`](crate::server::ServerRef::try_cast) did not queue its message; the message comes back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TryCastError<M> {
    /// The server's bounded mailbox is full.
    #[error("the server's mailbox is full")]
    Full(M),
    /// The server is stopped.
    #[error("the server is stopped")]
    Stopped(M),
}

impl<M> fmt::Debug for TryCastError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryCastError::Full(_) => f.write_str("Full(..)"),
            TryCastError::Stopped(_) => f.write_str("Stopped(..)"),
        }
    }
}

impl<M> TryCastError<M> {
    /// The message that was not queued.
    pub fn into_message(self) -> M {
        match self {
            TryCastError::Full(m) | TryCastError::Stopped(m) => m,
        }
    }
}
