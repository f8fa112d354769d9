//! Listeners of a registry's changes: channels told of every registration and
//! unregistration, exits included.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::pid::Pid;

/// What happened to an entry. Sent to listeners while the entry's shard is locked, so
/// the events of one key arrive in the order the changes happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent<K, V> {
    /// `pid` registered (or joined) under `key` with `value`.
    Registered {
        /// The key.
        key: K,
        /// The owner.
        pid: Pid,
        /// Its value.
        value: V,
    },
    /// `pid`'s entry under `key` is gone: unregistered, left, or its owner exited.
    Unregistered {
        /// The key.
        key: K,
        /// The owner.
        pid: Pid,
        /// Whether the owner's exit removed it (rather than an unregister or leave).
        exited: bool,
    },
}

/// The listeners of one registry. Costs one atomic load per change while there are none.
pub(crate) struct Listeners<E> {
    any: AtomicBool,
    senders: Mutex<Vec<Sender<E>>>,
}

impl<E: Clone> Listeners<E> {
    pub(crate) fn new() -> Self {
        Listeners {
            any: AtomicBool::new(false),
            senders: Mutex::new(Vec::new()),
        }
    }

    /// A new listener.
    pub(crate) fn add(&self) -> Receiver<E> {
        let (tx, rx) = unbounded();
        self.senders.lock().push(tx);
        self.any.store(true, Ordering::Release);
        rx
    }

    /// Whether anyone listens (the caller then builds the event).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Tells every listener; one whose receiver is gone is dropped, and the registry
    /// carries on.
    pub(crate) fn tell(&self, event: impl FnOnce() -> E) {
        if !self.any() {
            return;
        }
        let event = event();
        let mut senders = self.senders.lock();
        senders.retain(|s| s.send(event.clone()).is_ok());
        if senders.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }
}
