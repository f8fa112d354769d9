//! What a running child sees.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

use crate::error::{RecvError, RecvTimeoutError, StartError, Stopped};
use crate::exit::ExitReason;
use crate::pid::Pid;

/// What a starting child tells whoever waits for it to be started.
pub(crate) enum ReadyMsg {
    Ready,
    /// It exited before it was ready.
    Exited(ExitReason),
    /// A nested supervisor could not start its children.
    Failed(StartError),
}

/// The stopping side of a process's stop signal, held by its supervisor.
///
/// Dropping it disconnects the signal's channel too (waking any wait on it), but only
/// [`raise`](StopHandle::raise) sets the flag.
pub(crate) struct StopHandle(Arc<StopInner>);

struct StopInner {
    flag: Arc<AtomicBool>,
    tx: Mutex<Option<Sender<()>>>,
}

impl StopInner {
    fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        let tx = self.tx.lock().take();
        drop(tx);
    }
}

impl StopHandle {
    pub(crate) fn new() -> (StopHandle, Arc<AtomicBool>, Receiver<()>) {
        let (tx, rx) = crossbeam_channel::bounded(0);
        let flag = Arc::new(AtomicBool::new(false));
        let inner = StopInner {
            flag: flag.clone(),
            tx: Mutex::new(Some(tx)),
        };
        (StopHandle(Arc::new(inner)), flag, rx)
    }

    /// Raises the signal: sets the flag, then disconnects the channel so that every wait
    /// on it wakes. Idempotent.
    pub(crate) fn raise(&self) {
        self.0.raise();
    }

    /// A way for another thread to raise this signal later, which keeps nothing alive:
    /// once this handle is dropped, raising it does nothing.
    pub(crate) fn weak(&self) -> NextStop {
        NextStop(Arc::downgrade(&self.0))
    }
}

/// A weak [`StopHandle`], passed to the process that must exit before this signal is
/// raised (see `Spawned::stop_next_on_exit`).
pub(crate) struct NextStop(Weak<StopInner>);

impl NextStop {
    pub(crate) fn raise(self) {
        if let Some(inner) = self.0.upgrade() {
            inner.raise();
        }
    }
}

/// Asks `probe` a few times, spinning and then yielding in between, before the caller
/// parks — as crossbeam's own `recv` spins before it blocks: parking and waking a thread
/// costs microseconds (tens of them on a VM), a few spins and yields do not. Returns the
/// first answer, or `None` if there was none.
pub(crate) fn look_briefly<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    const SPINS: u32 = 6;
    const YIELDS: u32 = 10;
    for step in 0..SPINS + YIELDS {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        if step < SPINS {
            for _ in 0..1u32 << step {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
    None
}

/// What a child sees of itself: its identity, its stop signal and its readiness.
///
/// A `Context` is handed by reference to the child's function for one incarnation.
/// Stopping is cooperative: a long-running child should wait through the context
/// ([`sleep`](Context::sleep), [`recv`](Context::recv), [`recv_timeout`](Context::recv_timeout))
/// or check [`is_stopping`](Context::is_stopping), and return when asked.
///
/// # Examples
///
/// ```
/// use crossbeam_channel::unbounded;
/// use steadfast::{ChildSpec, Supervisor};
///
/// let (tx, rx) = unbounded::<u32>();
/// let sup = Supervisor::builder()
///     .child(ChildSpec::worker("echo", move |ctx| {
///         // Wakes on a message or on the stop signal; `?` turns the latter into Shutdown.
///         loop {
///             let n = ctx.recv(&rx)?;
///             println!("got {n}");
///         }
///     }))
///     .start()
///     .unwrap();
/// tx.send(1).unwrap();
/// sup.shutdown().unwrap();
/// ```
pub struct Context {
    pid: Pid,
    id: Arc<str>,
    stopping: Arc<AtomicBool>,
    stop_rx: Receiver<()>,
    ready_tx: Mutex<Option<Sender<ReadyMsg>>>,
}

impl Context {
    pub(crate) fn new(
        pid: Pid,
        id: Arc<str>,
        stopping: Arc<AtomicBool>,
        stop_rx: Receiver<()>,
        ready_tx: Option<Sender<ReadyMsg>>,
    ) -> Context {
        Context {
            pid,
            id,
            stopping,
            stop_rx,
            ready_tx: Mutex::new(ready_tx),
        }
    }

    /// This incarnation's pid (a restarted child has a new one).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The child's id in its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the supervisor has asked this child to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The stop signal as a channel, for `select!` alongside the child's own channels.
    ///
    /// No message is ever sent on it: it *disconnects* when the stop is raised, so a
    /// `recv` on it returns `Err` at that moment (and at once afterwards).
    ///
    /// # Examples
    ///
    /// ```
    /// use crossbeam_channel::{select, unbounded};
    /// use steadfast::{ChildSpec, Supervisor};
    ///
    /// let (tx, jobs) = unbounded::<String>();
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::worker("select", move |ctx| loop {
    ///         select! {
    ///             recv(jobs) -> job => println!("job {job:?}"),
    ///             recv(ctx.stop_signal()) -> _ => return Ok(()),
    ///         }
    ///     }))
    ///     .start()
    ///     .unwrap();
    /// tx.send("a".into()).unwrap();
    /// drop(sup); // raises the stop signal and joins
    /// ```
    pub fn stop_signal(&self) -> &Receiver<()> {
        &self.stop_rx
    }

    /// Sleeps for `d`, or until the stop signal, whichever comes first.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the stop signal was raised (before or during the sleep).
    pub fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        if self.is_stopping() {
            return Err(Stopped);
        }
        match self.stop_rx.recv_timeout(d) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(()),
            _ => Err(Stopped),
        }
    }

    /// Receives a message from `rx`, waking early if the stop signal is raised.
    ///
    /// # Errors
    ///
    /// [`RecvError::Stopped`] if the stop signal was raised, [`RecvError::Disconnected`]
    /// if `rx` is empty and disconnected.
    pub fn recv<T>(&self, rx: &Receiver<T>) -> Result<T, RecvError> {
        if let Some(done) = self.poll_briefly(rx) {
            return done;
        }
        select! {
            recv(rx) -> msg => msg.map_err(|_| RecvError::Disconnected),
            recv(self.stop_rx) -> _ => Err(RecvError::Stopped),
        }
    }

    /// Receives a message from `rx` within `timeout`, waking early on the stop signal.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Stopped`] if the stop signal was raised,
    /// [`RecvTimeoutError::Timeout`] if nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] if `rx` is empty and disconnected.
    pub fn recv_timeout<T>(
        &self,
        rx: &Receiver<T>,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        // A timeout too large to represent means no deadline.
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.recv(rx).map_err(RecvTimeoutError::from);
        };
        if let Some(done) = self.poll_briefly(rx) {
            return done.map_err(RecvTimeoutError::from);
        }
        select! {
            recv(rx) -> msg => msg.map_err(|_| RecvTimeoutError::Disconnected),
            recv(self.stop_rx) -> _ => Err(RecvTimeoutError::Stopped),
            default(deadline.saturating_duration_since(Instant::now())) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Polls `rx` (and the stop flag) for a short while before the caller parks in
    /// `select!`. `None` when nothing came.
    fn poll_briefly<T>(&self, rx: &Receiver<T>) -> Option<Result<T, RecvError>> {
        look_briefly(|| {
            if self.is_stopping() {
                return Some(Err(RecvError::Stopped));
            }
            match rx.try_recv() {
                Ok(msg) => Some(Ok(msg)),
                Err(TryRecvError::Disconnected) => Some(Err(RecvError::Disconnected)),
                Err(TryRecvError::Empty) => None,
            }
        })
    }

    /// Tells the supervisor that this child has finished starting.
    ///
    /// Only meaningful for a child whose spec has a
    /// [`ready_timeout`](crate::ChildSpec::ready_timeout): its supervisor does not start
    /// the next child (and `start()` does not return) until this is called. Calling it
    /// again, or for a child that does not wait for readiness, does nothing.
    pub fn ready(&self) {
        self.send_ready(ReadyMsg::Ready);
    }

    /// Tells a waiter still waiting for readiness that this incarnation exited first.
    /// Costs nothing (no clone) when nobody waits, as on every same-thread restart.
    pub(crate) fn report_early_exit(&self, reason: &ExitReason) {
        let tx = self.ready_tx.lock().take();
        if let Some(tx) = tx {
            let _ = tx.send(ReadyMsg::Exited(reason.clone()));
        }
    }

    /// Reports a start outcome once; later calls do nothing.
    pub(crate) fn send_ready(&self, msg: ReadyMsg) {
        // Take under the lock, send outside it.
        let tx = self.ready_tx.lock().take();
        if let Some(tx) = tx {
            let _ = tx.send(msg);
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("pid", &self.pid)
            .field("id", &self.id)
            .field("stopping", &self.is_stopping())
            .finish()
    }
}
