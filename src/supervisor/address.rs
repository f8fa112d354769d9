//! A supervisor's address: the sending side of its inbox, which every handle (static,
//! dynamic, the tree snapshot, the session layer) calls through, and the table of live
//! supervisors by pid.

use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use once_cell::sync::Lazy;

use crate::error::SupervisorError;
use crate::pid::Pid;
use crate::registry::Registry;
use crate::supervisor::answers;
use crate::supervisor::event::{ChildCounts, ChildInfo, Event};
use crate::supervisor::handover::HandOver;
use crate::supervisor::inbox::{Inbox, Msg, Request};

/// Every live supervisor, by pid (so a pid from `which_children` leads to a handle).
pub(crate) static SUPERVISORS: Lazy<Registry<Pid, Address>> = Lazy::new(Registry::new);

/// The sending side of a supervisor's inbox, shared by its static and dynamic handles.
#[derive(Clone)]
pub(crate) struct Address {
    pub(crate) pid: Pid,
    /// Its name, or its id in its parent (what a tree snapshot calls it).
    pub(crate) label: Arc<str>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) dynamic: bool,
    /// Dynamic supervisors: lets a caller start a child on its own thread.
    pub(crate) handover: Option<Arc<HandOver>>,
}

impl Address {
    /// Sends a request and waits for its reply.
    pub(crate) fn call<T>(
        &self,
        request: impl FnOnce(Sender<T>) -> Request,
    ) -> Result<T, SupervisorError> {
        let (tx, rx) = bounded(1);
        let caller = Pid::current_if_any();
        if caller == Some(self.pid) {
            // From user code the supervisor runs on its own thread: its loop, which
            // would serve this, is the caller.
            answers::answer_here(&self.inbox, request(tx));
            return rx.recv().map_err(|_| SupervisorError::WouldDeadlock);
        }
        self.inbox
            .send(Msg::Call(request(tx), caller))
            .map_err(|_| SupervisorError::NoSupervisor)?;
        rx.recv().map_err(|_| SupervisorError::NoSupervisor)
    }

    pub(crate) fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.call(Request::WhichChildren)
    }

    /// `which_children`, waiting at most `timeout` for the answer (`None`: no answer in
    /// time, or no supervisor). A late answer is dropped with its channel.
    pub(crate) fn which_children_within(
        &self,
        timeout: std::time::Duration,
    ) -> Option<Vec<ChildInfo>> {
        let (tx, rx) = bounded(1);
        let caller = Pid::current_if_any();
        if caller == Some(self.pid) {
            answers::answer_here(&self.inbox, Request::WhichChildren(tx));
            return rx.try_recv().ok();
        }
        self.inbox
            .send(Msg::Call(Request::WhichChildren(tx), caller))
            .ok()?;
        rx.recv_timeout(timeout).ok()
    }

    pub(crate) fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.call(Request::CountChildren)
    }

    pub(crate) fn events(&self) -> Result<Receiver<Event>, SupervisorError> {
        // Wait for the reply, so that every event after this call reaches the stream.
        let (tx, rx) = unbounded();
        self.call(|reply| Request::Subscribe(tx, reply))?;
        Ok(rx)
    }

    /// A handle on no supervisor: every request returns `NoSupervisor` (a placeholder
    /// until a supervisor that is a child of someone else's tree has started).
    #[cfg(feature = "sessions")]
    pub(crate) fn detached(dynamic: bool) -> Address {
        let pid = Pid::spawn(None);
        crate::pid::exit(pid, &crate::exit::ExitReason::NoProcess);
        let inbox = Arc::new(Inbox::new());
        drop(inbox.close());
        Address {
            pid,
            label: Arc::from("(not started)"),
            inbox,
            dynamic,
            handover: None,
        }
    }

    pub(crate) fn lookup(pid: Pid, dynamic: bool) -> Option<Address> {
        SUPERVISORS
            .lookup(&pid)
            .map(|(_, h)| h)
            .filter(|h| h.dynamic == dynamic)
    }
}
