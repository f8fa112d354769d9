//! [`ServerSpec`]: a server's child spec and its handle, built together.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use parking_lot::Mutex;

use crate::child::context::Context;
use crate::child::spec::ChildSpec;
use crate::error::ChildError;
use crate::server::callbacks::Serve;
use crate::server::handle::ServerRef;
use crate::server::mailbox::{Door, Mailbox};
use crate::server::serve::{serve, Init};

/// How long a server's `init` may take by default before its start fails.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a server's child spec and its handle.
#[must_use = "a server spec does nothing until `build` and a supervisor start it"]
pub struct ServerSpec<S: Serve> {
    id: String,
    init: Arc<Init<S>>,
    name: Option<String>,
    init_timeout: Duration,
    capacity: Option<usize>,
}

impl<S: Serve> fmt::Debug for ServerSpec<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("init_timeout", &self.init_timeout)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S: Serve> ServerSpec<S> {
    /// A server with child id `id`, whose every incarnation starts with `init`.
    pub fn new<F>(id: impl Into<String>, init: F) -> ServerSpec<S>
    where
        F: Fn(&Context) -> Result<S, ChildError> + Send + Sync + 'static,
    {
        ServerSpec {
            id: id.into(),
            init: Arc::new(init),
            name: None,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            capacity: None,
        }
    }

    /// Registers each incarnation under `name` in the global registry, so that
    /// [`ServerRef::whereis`] finds it. A name held by another live process fails the
    /// start.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Bounds the mailbox to `requests` calls and casts (at least 1; default: unbounded).
    /// When it is full, [`cast`](ServerRef::cast) waits for room,
    /// [`try_cast`](ServerRef::try_cast) returns `Full`, and a call waits for room within
    /// its timeout. A stop fails what is queued and what waits for room, as always.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::server::{Server, ServerSpec, TryCastError};
    /// use steadfast::{Context, Supervisor};
    ///
    /// struct Sink;
    /// impl Server for Sink {
    ///     type Call = ();
    ///     type Reply = ();
    ///     type Cast = u32;
    ///     fn handle_call(&mut self, _: (), _: &Context) {}
    /// }
    ///
    /// // Not started yet, so nothing takes from its mailbox of two.
    /// let (spec, sink) = ServerSpec::new("sink", |_| Ok(Sink)).capacity(2).build();
    /// sink.cast(1)?;
    /// sink.cast(2)?;
    /// assert!(matches!(sink.try_cast(3), Err(TryCastError::Full(3))));
    /// let sup = Supervisor::builder().child(spec).start()?;
    /// sink.call(())?; // served after the two casts
    /// sink.try_cast(3).map_err(|e| e.to_string())?;
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(mut self, requests: usize) -> Self {
        self.capacity = Some(requests.max(1));
        self
    }

    /// How long `init` may take before the start fails (default 5 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// The child spec to give a supervisor, and the handle to call it by.
    ///
    /// The spec is a permanent worker (change that with its own builder methods). One
    /// spec is one server: its clones share one mailbox, so start it once.
    pub fn build(self) -> (ChildSpec, ServerRef<S>) {
        let (tx, rx) = match self.capacity {
            Some(requests) => bounded(requests),
            None => unbounded(),
        };
        let mailbox = Arc::new(Mailbox {
            tx,
            rx,
            door: AtomicU8::new(Door::Open as u8),
            reopen: Mutex::new(()),
            serving: AtomicU64::new(0),
            name: self.name.as_deref().map(Arc::from),
            #[cfg(feature = "metrics")]
            label: Arc::from(self.name.as_deref().unwrap_or(&self.id)),
            bounded: self.capacity.is_some(),
        });
        let handle = ServerRef { mailbox };
        let served = HeldBySpec(handle.clone());
        let (init, name) = (self.init, self.name);
        let mut spec = ChildSpec::worker(self.id, move |ctx| {
            serve(ctx, &*init, name.as_deref(), &served.0)
        })
        .ready_timeout(self.init_timeout);
        // Its supervisor stops it: whatever is queued, and whatever comes until an
        // incarnation opens the mailbox again, fails `Stopped` — however the incarnation
        // running now ends (returning, panicking, abandoned), or if none runs (its restart
        // waits out a backoff).
        let stopped = handle.clone();
        spec.on_stopped = Some(Arc::new(move || stopped.mailbox.shut()));
        (spec, handle)
    }
}

/// The spec's hold on its mailbox. Once the last clone of the spec is gone (its
/// supervisor gave up or shut down, a dynamic one let it go), no incarnation can ever
/// serve the mailbox again: its door shuts for good, so that queued and later calls fail
/// `Stopped` at once instead of waiting out their timeouts for a server that will not
/// come.
struct HeldBySpec<S: Serve>(ServerRef<S>);

impl<S: Serve> Drop for HeldBySpec<S> {
    fn drop(&mut self) {
        self.0.mailbox.shut();
    }
}
