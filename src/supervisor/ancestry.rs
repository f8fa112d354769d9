//! A process's supervisor and the root of its tree, from the process itself (OTP's
//! `$ancestors`): [`Context::supervisor`] and [`Context::root`], and the handle they
//! return for a supervisor of either kind, [`AnySupervisorRef`].

use crossbeam_channel::Receiver;

use crate::child::context::Context;
use crate::error::SupervisorError;
use crate::pid::{self, Pid};
use crate::supervisor::address::{Address, SUPERVISORS};
use crate::supervisor::dynamic::DynamicSupervisorRef;
use crate::supervisor::event::{ChildCounts, ChildInfo, Event};
use crate::supervisor::handle::SupervisorRef;

/// A handle on a running supervisor of either kind: what [`Context::supervisor`] and
/// [`Context::root`] return. The questions every supervisor answers are here; match (or
/// [`as_static`](AnySupervisorRef::as_static) / [`as_dynamic`](AnySupervisorRef::as_dynamic))
/// for the requests of one kind.
#[derive(Clone, Debug)]
pub enum AnySupervisorRef {
    /// A static supervisor (children by id).
    Static(SupervisorRef),
    /// A dynamic supervisor (children by pid).
    Dynamic(DynamicSupervisorRef),
}

impl AnySupervisorRef {
    /// The live supervisor running as `pid`, of whichever kind, if any.
    pub fn from_pid(pid: Pid) -> Option<AnySupervisorRef> {
        SUPERVISORS
            .lookup(&pid)
            .map(|(_, address)| Self::of(address))
    }

    fn of(address: Address) -> AnySupervisorRef {
        if address.dynamic {
            AnySupervisorRef::Dynamic(DynamicSupervisorRef(address))
        } else {
            AnySupervisorRef::Static(SupervisorRef(address))
        }
    }

    fn address(&self) -> &Address {
        match self {
            AnySupervisorRef::Static(s) => &s.0,
            AnySupervisorRef::Dynamic(d) => &d.0,
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.address().pid
    }

    /// The static supervisor's handle, if it is one.
    pub fn as_static(&self) -> Option<&SupervisorRef> {
        match self {
            AnySupervisorRef::Static(s) => Some(s),
            AnySupervisorRef::Dynamic(_) => None,
        }
    }

    /// The dynamic supervisor's handle, if it is one.
    pub fn as_dynamic(&self) -> Option<&DynamicSupervisorRef> {
        match self {
            AnySupervisorRef::Dynamic(d) => Some(d),
            AnySupervisorRef::Static(_) => None,
        }
    }

    /// Every child, in start order (see [`SupervisorRef::which_children`]).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.address().which_children()
    }

    /// Counts of specs, running children, supervisors and workers.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.address().count_children()
    }

    /// A stream of everything the supervisor does from now on (see
    /// [`SupervisorRef::events`]).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn events(&self) -> Result<Receiver<Event>, SupervisorError> {
        self.address().events()
    }

    /// A snapshot of the tree under this supervisor (see [`SupervisorRef::snapshot`]).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`].
    pub fn snapshot(&self) -> Result<crate::tree::TreeSnapshot, SupervisorError> {
        crate::tree::snapshot(self.address())
    }
}

/// A process's supervisor and its tree's root. Defined beside the supervisors (not with
/// the rest of `Context`, in `child/`, which must not know them): a process reaches them
/// through the process table's parent links.
impl Context {
    /// This process's supervisor, while it runs (OTP's parent in `$ancestors`): for
    /// asking about siblings, starting more of them, or reaching a dynamic pool the
    /// process belongs to — found from the process table, no name needed.
    ///
    /// Its questions are answered even while it waits for this process (see the crate
    /// docs, "Calling your own supervisor").
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{ChildSpec, Supervisor};
    ///
    /// let (tx, rx) = steadfast::channel::bounded(1);
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::worker("asks", move |ctx| {
    ///         let mine = ctx.supervisor().expect("my supervisor runs");
    ///         let _ = tx.send(mine.count_children().map(|c| c.specs));
    ///         let _ = ctx.stop_signal().recv();
    ///         Ok(())
    ///     }))
    ///     .start()?;
    /// assert_eq!(rx.recv()??, 1);
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn supervisor(&self) -> Option<AnySupervisorRef> {
        AnySupervisorRef::from_pid(pid::parent_of(self.pid())?)
    }

    /// The root of this process's tree: the topmost supervisor above it, while it runs
    /// (the one a program started, or the tree's `Service` runs).
    pub fn root(&self) -> Option<AnySupervisorRef> {
        let mut root = None;
        let mut at = pid::parent_of(self.pid());
        // Parent links form a tree; the bound only guards against a bug looping forever.
        for _ in 0..10_000 {
            let Some(found) = at.and_then(AnySupervisorRef::from_pid) else {
                break;
            };
            at = pid::parent_of(found.pid());
            root = Some(found);
        }
        root
    }
}
