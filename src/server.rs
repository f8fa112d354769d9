//! Servers: a child that owns a state value and serves typed requests — OTP's
//! `gen_server` on a thread.
//!
//! A [`Server`] is built by a set-up function (`init`) for each incarnation, then answers
//! [`call`](ServerRef::call)s (a request and its reply) and takes
//! [`cast`](ServerRef::cast)s (a message, no reply), one at a time, in arrival order.
//! Callers hold a [`ServerRef`], which points at the server's **mailbox**, not at one
//! incarnation: it stays valid across restarts, clones freely, and can be found by name.
//!
//! ```
//! use steadfast::server::{Server, ServerSpec};
//! use steadfast::{Context, Supervisor};
//!
//! struct Counter(u64);
//!
//! impl Server for Counter {
//!     type Call = ();    // "what is the count?"
//!     type Reply = u64;
//!     type Cast = u64;   // "add this"
//!     fn handle_call(&mut self, _: (), _ctx: &Context) -> u64 {
//!         self.0
//!     }
//!     fn handle_cast(&mut self, n: u64, _ctx: &Context) {
//!         self.0 += n;
//!     }
//! }
//!
//! let (spec, counter) = ServerSpec::new("counter", |_ctx| Ok(Counter(0))).build();
//! let sup = Supervisor::builder().child(spec).start()?;
//! counter.cast(2)?;
//! counter.cast(3)?;
//! assert_eq!(counter.call(())?, 5); // served after the casts: one mailbox, in order
//! # drop(sup);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What survives what
//!
//! | event                          | the mailbox                     | the call being handled            |
//! |--------------------------------|---------------------------------|-----------------------------------|
//! | a crash (panic in a callback)  | kept: the next incarnation serves it | fails at once: [`CallError::Exited`] with the panic |
//! | a stop (terminate, shutdown, group restart), however the incarnation then ends (returns, panics, is abandoned), also while a restart waits out a backoff | queued and later calls fail [`CallError::Stopped`] until an incarnation starts again | finishes first (stops are cooperative) |
//! | its spec is gone (its supervisor gave up or exited; a dynamic one let it go) | shut for good: queued and later calls fail [`CallError::Stopped`] | — |
//! | the server calls itself (from `init`, a callback or `terminate`) | —  | [`CallError::WouldDeadlock`], at once |
//! | a bounded mailbox ([`ServerSpec::capacity`]) is full | `cast` waits for room, `try_cast` returns `Full`, a call waits within its timeout; a stop releases every waiting sender (`Stopped`) | — |
//!
//! Each incarnation starts from `init` — state is not carried over a restart, only the
//! mailbox is. `init` runs before the server counts as started (its spec waits for it,
//! within [`init_timeout`](ServerSpec::init_timeout)), so an `Err` from it fails the start
//! with the cause. A call waits at most its timeout (5 s by default, OTP's), and never
//! longer than the server takes to crash.

use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, RecvTimeoutError, Sender};
use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::child::context::{Context, ReadyMsg};
use crate::child::spec::ChildSpec;
use crate::error::{ChildError, RegistryError, StartError};
use crate::exit::{panic_reason, ExitReason};
use crate::pid::Pid;
use crate::registry::{registry, AnyValue, Registry};

/// How long a call waits for its reply by default (OTP's `gen_server:call` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server's `init` may take by default before its start fails.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The callbacks of a server: what it does with each request. `self` is its state.
///
/// Callbacks run on the server's own thread, one at a time. A panic in one crashes the
/// server (its supervisor decides about a restart); the caller of the call being handled
/// gets [`CallError::Exited`] with the panic at once.
pub trait Server: Send + 'static {
    /// A request that expects a reply.
    type Call: Send + 'static;
    /// The reply to a [`Call`](Server::Call). Use a `Result` for answers that can fail.
    type Reply: Send + 'static;
    /// A message that expects no reply. Use `()` (or an empty enum) for none.
    type Cast: Send + 'static;

    /// Answers a call.
    fn handle_call(&mut self, request: Self::Call, ctx: &Context) -> Self::Reply;

    /// Takes a cast. The default ignores it.
    fn handle_cast(&mut self, message: Self::Cast, ctx: &Context) {
        let _ = (message, ctx);
    }

    /// Runs once when the server is stopped (not after a crash: the state may be half
    /// updated then). The default does nothing.
    fn terminate(&mut self, ctx: &Context) {
        let _ = ctx;
    }
}

/// What `init` returns to decline the start (OTP's `ignore`): the supervisor's start
/// goes on without this server (`start_child` answers
/// [`SupervisorError::Ignored`](crate::SupervisorError::Ignored)), a static supervisor
/// keeps its spec for a later `restart_child`, and calls fail `Stopped` meanwhile.
///
/// # Examples
///
/// ```
/// use steadfast::server::{Ignore, Server, ServerSpec};
/// use steadfast::{Context, Supervisor, SupervisorError};
///
/// struct Cache;
/// impl Server for Cache {
///     type Call = ();
///     type Reply = ();
///     type Cast = ();
///     fn handle_call(&mut self, _: (), _: &Context) {}
/// }
///
/// let enabled = false; // from the configuration, say
/// let (spec, cache) = ServerSpec::new("cache", move |_ctx| {
///     if !enabled {
///         return Err(Ignore.into());
///     }
///     Ok(Cache)
/// })
/// .build();
/// let sup = Supervisor::builder().start()?;
/// assert!(matches!(sup.start_child(spec), Err(SupervisorError::Ignored)));
/// assert!(cache.call(()).is_err()); // nothing serves it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server declined to start")]
pub struct Ignore;

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
    /// The server's bounded mailbox is full (see [`ServerSpec::capacity`]).
    #[error("the server's mailbox is full")]
    Full,
}

/// Why [`ServerRef::try_cast`] did not queue its message; the message comes back.
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

/// What reaches a server's mailbox.
enum Envelope<S: Server> {
    Call(S::Call, Sender<Result<S::Reply, CallError>>),
    Cast(S::Cast),
    /// Posted by the stop hook of an incarnation, so that its loop can block on the
    /// mailbox alone. One left over from an earlier incarnation is ignored.
    Stop,
}

/// Whether a mailbox takes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Door {
    /// Served now, or by the next incarnation (before the first start, after a crash).
    Open,
    /// Stopped: requests fail with `Stopped` until an incarnation opens it again.
    Stopped,
}

/// A server's mailbox, shared by its spec (every incarnation reads it) and its handles.
///
/// The door protocol, so that nothing is queued behind a stop and left unanswered: a
/// poster that finds the door open sends, then — after a `SeqCst` fence — looks at the
/// door again; a stop shuts the door, then — after a fence — fails whatever is queued.
/// The two fences order the two sides: either the stop's drain finds the request, or the
/// poster's second look finds the door shut, and then the poster fails what is queued
/// itself, unless an incarnation has opened the door again meanwhile (which then serves
/// it). Opening the door, and that drain, hold `reopen`: a drain never takes what an
/// incarnation serves. A post costs one fence; the drains happen only around a stop.
struct Mailbox<S: Server> {
    tx: Sender<Envelope<S>>,
    rx: Receiver<Envelope<S>>,
    /// Open or stopped (see `Door`).
    door: AtomicU8,
    /// Held to open the door, and by a poster that found it shut after sending.
    reopen: Mutex<()>,
    /// The incarnation serving now (0: none), to refuse a server's call to itself.
    serving: AtomicU64,
    name: Option<Arc<str>>,
    /// Bounded ([`ServerSpec::capacity`]): its loop waits on the stop signal too, and no
    /// `Stop` envelope is ever posted (it would take a place a sender waits for).
    bounded: bool,
}

thread_local! {
    /// The mailbox this thread serves (its address; 0: none), from the start of `init`
    /// to the end of `terminate`: a call to it from here could only deadlock.
    static SERVING_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving a mailbox until dropped.
struct ServingHere(usize);

impl ServingHere {
    fn enter(address: usize) -> ServingHere {
        ServingHere(SERVING_HERE.with(|s| s.replace(address)))
    }
}

impl Drop for ServingHere {
    fn drop(&mut self) {
        SERVING_HERE.with(|s| s.set(self.0));
    }
}

impl<S: Server> Mailbox<S> {
    /// What identifies this mailbox to `SERVING_HERE`.
    fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// Posts `envelope`, waiting for room in a bounded mailbox as long as it takes: the
    /// path of every cast, kept as lean as a bare send (a cast costs tens of
    /// nanoseconds).
    #[inline]
    fn post(&self, envelope: Envelope<S>) -> Result<(), CallError> {
        if !self.is_open(Ordering::Acquire) {
            return Err(CallError::Stopped);
        }
        // The mailbox holds its own receiver: the send cannot fail (it waits for room).
        let _ = self.tx.send(envelope);
        self.look_again();
        Ok(())
    }

    /// Posts `envelope`, waiting for room in a bounded mailbox until `room` says;
    /// `Err` gives it back when there was none in time (or the door was shut).
    fn post_within(
        &self,
        envelope: Envelope<S>,
        room: Room,
    ) -> Result<(), (Envelope<S>, CallError)> {
        if !self.is_open(Ordering::Acquire) {
            return Err((envelope, CallError::Stopped));
        }
        // The mailbox holds its own receiver: a send fails only for want of room. A
        // sender waiting for room is never stranded by a stop: the stop's drain makes
        // room, and its second look then finds the door shut.
        let sent = match room {
            Room::Until(at, timeout) => self
                .tx
                .send_deadline(envelope, at)
                .map_err(|e| (e.into_inner(), Some(timeout))),
            Room::Now => self
                .tx
                .try_send(envelope)
                .map_err(|e| (e.into_inner(), None)),
        };
        if let Err((envelope, timeout)) = sent {
            let why = timeout.map_or(CallError::Full, CallError::Timeout);
            return Err((envelope, why));
        }
        self.look_again();
        Ok(())
    }

    /// A poster's second look at the door, after its send: if a stop has shut it
    /// meanwhile (and no incarnation has opened it again), what is queued is failed here.
    fn look_again(&self) {
        fence(Ordering::SeqCst);
        if !self.is_open(Ordering::Relaxed) {
            let _reopen = self.reopen.lock();
            if !self.is_open(Ordering::SeqCst) {
                self.fail_queued();
            }
        }
    }

    /// A stop: shut the door, then fail what is queued.
    fn shut(&self) {
        self.door.store(Door::Stopped as u8, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.serving.store(0, Ordering::Release);
        self.fail_queued();
    }

    fn open(&self, pid: Pid) {
        let _reopen = self.reopen.lock();
        self.serving.store(pid.as_u64(), Ordering::Release);
        self.door.store(Door::Open as u8, Ordering::SeqCst);
    }

    fn is_open(&self, order: Ordering) -> bool {
        self.door.load(order) == Door::Open as u8
    }

    /// Fails the queued calls with `Stopped` (queued casts are dropped).
    ///
    /// A `Stop` envelope drained here is put back: it may be the only wake-up of a loop
    /// whose stop was raised before this drain (an ordered stop's relay raises it first).
    fn fail_queued(&self) {
        let mut woke = false;
        for envelope in self.rx.try_iter() {
            match envelope {
                Envelope::Call(_, reply) => {
                    let _ = reply.send(Err(CallError::Stopped));
                }
                Envelope::Stop => woke = true,
                Envelope::Cast(_) => {}
            }
        }
        if woke {
            let _ = self.tx.try_send(Envelope::Stop);
        }
    }
}

/// How long a post may wait for room in a bounded mailbox (see also `Mailbox::post`,
/// which waits as long as it takes).
#[derive(Clone, Copy)]
enum Room {
    /// Until this instant (a call's deadline, of this timeout).
    Until(Instant, Duration),
    /// Not at all.
    Now,
}

/// A handle on a server: call it, cast to it. Cheap to clone; valid across restarts
/// (requests queue while it restarts after a crash).
pub struct ServerRef<S: Server> {
    mailbox: Arc<Mailbox<S>>,
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
static BY_PID: Lazy<Registry<Pid, AnyValue>> = Lazy::new(Registry::new);

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
    /// ([`ServerSpec::capacity`]) is full, once there is room.
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Server for Echo {
        type Call = u32;
        type Reply = u32;
        type Cast = ();
        fn handle_call(&mut self, n: u32, _: &Context) -> u32 {
            n
        }
    }

    fn mailbox() -> Mailbox<Echo> {
        let (tx, rx) = unbounded();
        Mailbox {
            tx,
            rx,
            door: AtomicU8::new(Door::Open as u8),
            reopen: Mutex::new(()),
            serving: AtomicU64::new(0),
            name: None,
            bounded: false,
        }
    }

    /// The door protocol's window, step by step: a poster found the door open, a stop
    /// shut it and drained the queue, and only then did the poster's request land.
    /// Its second look fails the request at once.
    #[test]
    fn a_request_landing_after_a_stop_drained_is_failed_by_its_poster() {
        let mb = mailbox();
        mb.open(Pid::current());
        assert!(mb.is_open(Ordering::Acquire), "the poster's first look");
        mb.shut();
        let (reply_tx, reply) = bounded(1);
        let _ = mb.tx.send(Envelope::Call(7, reply_tx));
        mb.look_again();
        assert_eq!(reply.try_recv(), Ok(Err(CallError::Stopped)));
        assert!(mb.rx.is_empty());
    }

    /// The same window, with an incarnation opening the door again before the poster's
    /// second look: the request stays queued for it.
    #[test]
    fn a_request_landing_after_a_reopen_is_left_for_the_new_incarnation() {
        let mb = mailbox();
        mb.open(Pid::current());
        assert!(mb.is_open(Ordering::Acquire));
        mb.shut();
        mb.open(Pid::current());
        let (reply_tx, reply) = bounded(1);
        let _ = mb.tx.send(Envelope::Call(7, reply_tx));
        mb.look_again();
        assert!(reply.try_recv().is_err(), "not failed");
        assert_eq!(mb.rx.len(), 1, "queued for the incarnation now serving");
    }

    /// A drain (a stop failing what is queued) must not eat the envelope that wakes the
    /// loop: when an ordered stop's relay raised the stop first, that envelope is the
    /// loop's only wake-up, and without it the loop sleeps until it is abandoned.
    #[test]
    fn a_drain_leaves_the_loop_its_wake_up() {
        let mb = mailbox();
        mb.open(Pid::current());
        let (reply_tx, reply) = bounded(1);
        let _ = mb.tx.send(Envelope::Call(7, reply_tx));
        let _ = mb.tx.send(Envelope::Stop);
        mb.shut();
        assert_eq!(reply.try_recv(), Ok(Err(CallError::Stopped)));
        assert!(
            matches!(mb.rx.try_recv(), Ok(Envelope::Stop)),
            "the wake-up is still there for the loop"
        );
    }
}
