//! A server's other sources: channels it watches and monitors it holds, read by its own
//! loop beside the mailbox (each source's messages in their order).

use crossbeam_channel::{Receiver, Select, TryRecvError};

use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::server::callbacks::Serve;
use crate::server::packed::Packed;

/// A channel watched with [`ServerContext::watch`](crate::server::ServerContext::watch),
/// to stop watching it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchRef(pub(super) u64);

/// A monitor taken with [`ServerContext::monitor`](crate::server::ServerContext::monitor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MonitorRef(pub(super) u64);

/// A monitored process has exited (OTP's `{'DOWN', Ref, process, Pid, Reason}`):
/// taken by [`HandleInfo<Down>`](crate::server::HandleInfo).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Down {
    /// The monitor that fired.
    pub monitor: MonitorRef,
    /// The process that exited.
    pub pid: Pid,
    /// Why ([`ExitReason::NoProcess`] if it was gone when the monitor was taken).
    pub reason: ExitReason,
}

pub(super) enum Taken<S: Serve> {
    Letter(Packed<S>),
    Empty,
    /// Disconnected, or a monitor that has delivered its one message: forget the source.
    Done(Option<Packed<S>>),
}

/// One source, whatever its message type.
pub(super) trait Source<S: Serve> {
    fn id(&self) -> u64;
    fn add_to<'a>(&'a self, select: &mut Select<'a>) -> usize;
    fn try_take(&mut self) -> Taken<S>;
}

pub(super) struct Channel<T, S: Serve> {
    pub(super) id: u64,
    pub(super) rx: Receiver<T>,
    pub(super) wrap: Box<dyn Fn(T) -> Packed<S>>,
    /// A monitor: one message, then done.
    pub(super) once: bool,
}

impl<T: 'static, S: Serve> Source<S> for Channel<T, S> {
    fn id(&self) -> u64 {
        self.id
    }

    fn add_to<'a>(&'a self, select: &mut Select<'a>) -> usize {
        select.recv(&self.rx)
    }

    fn try_take(&mut self) -> Taken<S> {
        match self.rx.try_recv() {
            Ok(message) if self.once => Taken::Done(Some((self.wrap)(message))),
            Ok(message) => Taken::Letter((self.wrap)(message)),
            Err(TryRecvError::Empty) => Taken::Empty,
            Err(TryRecvError::Disconnected) => Taken::Done(None),
        }
    }
}
