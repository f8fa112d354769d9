//! [`ServerSpec`]: a server's child spec and its handle, built together; and what one
//! incarnation runs (set up, register, serve until stopped).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, select, unbounded};
use parking_lot::Mutex;

use crate::child::context::{Context, ReadyMsg};
use crate::child::spec::ChildSpec;
use crate::error::{ChildError, RegistryError, StartError};
use crate::exit::{panic_reason, ExitReason};
use crate::pid::Pid;
use crate::registry::registry;
use crate::server::callbacks::{Ignore, Server};
use crate::server::error::CallError;
use crate::server::handle::{ServerRef, BY_PID};
use crate::server::mailbox::{Door, Envelope, Mailbox, ServingHere};

/// How long a server's `init` may take by default before its start fails.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a server's child spec and its handle.
#[must_use = "a server spec does nothing until `build` and a supervisor start it"]
pub struct ServerSpec<S: Server> {
    id: String,
    init: Arc<Init<S>>,
    name: Option<String>,
    init_timeout: Duration,
    capacity: Option<usize>,
}

type Init<S> = dyn Fn(&Context) -> Result<S, ChildError> + Send + Sync;

impl<S: Server> fmt::Debug for ServerSpec<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("init_timeout", &self.init_timeout)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<S: Server> ServerSpec<S> {
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
struct HeldBySpec<S: Server>(ServerRef<S>);

impl<S: Server> Drop for HeldBySpec<S> {
    fn drop(&mut self) {
        self.0.mailbox.shut();
    }
}

/// One incarnation: set up, register, serve until stopped.
/// Clears the mailbox's serving pid when its incarnation ends (unless a later one has
/// taken over), so that `ServerRef::pid` is `None` while a crashed server restarts.
struct Serving<'a> {
    serving: &'a AtomicU64,
    pid: Pid,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let me = self.pid.as_u64();
        let _ = self
            .serving
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

fn serve<S: Server>(
    ctx: &Context,
    init: &Init<S>,
    name: Option<&str>,
    handle: &ServerRef<S>,
) -> Result<(), ChildError> {
    let mailbox = &handle.mailbox;
    let _here = ServingHere::enter(mailbox.address());
    let mut state = match init(ctx) {
        Ok(state) => state,
        // Declined (OTP's `ignore`): nothing serves this mailbox until a start succeeds.
        Err(e) if e.downcast_ref::<Ignore>().is_some() => {
            mailbox.shut();
            ctx.ignore();
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // Serving before it can be found: whoever finds the name (or the pid) finds this
    // incarnation's pid; however it ends, a crash included, it leaves no stale pid.
    mailbox.open(ctx.pid());
    let _serving = Serving {
        serving: &mailbox.serving,
        pid: ctx.pid(),
    };
    if let Some(name) = name {
        if let Err(RegistryError::AlreadyRegistered(holder)) =
            registry().register_value(name, handle.clone())
        {
            mailbox.shut();
            ctx.send_ready(ReadyMsg::Failed(StartError::AlreadyStarted {
                id: ctx.id().to_owned(),
                name: name.to_owned(),
                holder,
            }));
            return Err(RegistryError::AlreadyRegistered(holder).into());
        }
    }
    let _ = BY_PID.register(ctx.pid(), Arc::new(handle.clone()));
    // Wakes the loop below, which blocks on the mailbox alone (a plain `recv`, as cheap
    // as a hand-written server's), when the stop is raised. A bounded mailbox's loop
    // waits on the stop signal as well instead: an envelope would take a place.
    if !mailbox.bounded {
        let wake = mailbox.tx.clone();
        ctx.on_stop(move || {
            let _ = wake.send(Envelope::Stop);
        });
    }
    ctx.ready();
    if mailbox.bounded {
        while !ctx.is_stopping() {
            select! {
                recv(mailbox.rx) -> next => match next {
                    Ok(envelope) => dispatch(&mut state, envelope, ctx),
                    Err(_) => break,
                },
                // Raised: the loop condition sees the flag.
                recv(ctx.stop_signal()) -> _ => {}
            }
        }
    } else {
        while !ctx.is_stopping() {
            match mailbox.rx.recv() {
                Ok(envelope) => dispatch(&mut state, envelope, ctx),
                // The mailbox holds a sender itself: it never disconnects.
                Err(_) => break,
            }
        }
    }
    // Shut already by its supervisor when it decided the stop (`on_stopped`, the one
    // place that covers every way a stopped incarnation ends); again here in case an
    // ordered stop's relay raised this stop a moment before the supervisor got to it.
    mailbox.shut();
    state.terminate(ctx);
    Ok(())
}

/// Serves one envelope: a call (answered, or failed with the panic that crashes the
/// server), a cast, or a wake-up (ours: the loop condition sees the flag; or a stale one).
#[inline]
fn dispatch<S: Server>(state: &mut S, envelope: Envelope<S>, ctx: &Context) {
    match envelope {
        Envelope::Call(request, reply) => {
            let answer = panic::catch_unwind(AssertUnwindSafe(|| state.handle_call(request, ctx)));
            match answer {
                Ok(answer) => {
                    let _ = reply.send(Ok(answer));
                }
                Err(payload) => {
                    // The caller learns why at once; then the crash goes on as usual.
                    let reason = ExitReason::Panicked(panic_reason(&*payload));
                    let _ = reply.send(Err(CallError::Exited(reason)));
                    panic::resume_unwind(payload);
                }
            }
        }
        Envelope::Cast(message) => state.handle_cast(message, ctx),
        Envelope::Stop => {}
    }
}
