//! What a running child sees.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

use crate::child::briefly::look_briefly;
use crate::clock;
use crate::error::{RecvError, RecvTimeoutError, StartError, Stopped};
use crate::exit::{panic_reason, ExitReason};
use crate::pid::Pid;

/// What a starting child tells whoever waits for it to be started.
pub(crate) enum ReadyMsg {
    Ready,
    /// It exited before it was ready.
    Exited(ExitReason),
    /// A nested supervisor could not start its children.
    Failed(StartError),
    /// It declines to run ([`Context::ignore`]).
    Ignored,
}

/// The stopping side of a process's stop signal, held by its supervisor.
///
/// Dropping it disconnects the signal's channel too (waking any wait on it), but only
/// [`raise`](StopHandle::raise) sets the flag and runs the stop hooks.
pub(crate) struct StopHandle(Arc<StopState>);

/// What both sides of a stop signal share (one allocation per signal).
struct StopState {
    flag: AtomicBool,
    /// The sending side of the channel that disconnects when the signal is raised or its
    /// handle dropped; `None` once either has happened.
    tx: Mutex<Option<Sender<()>>>,
    hooks: StopHooks,
}

impl StopState {
    /// The hooks are taken (and the hook list marked raised) before the flag is set, so
    /// a child that sees the flag and adds a hook finds the list raised and runs it
    /// itself; they run after the signal, so a child woken by one sees the flag. Only the
    /// first raise does anything, and none after the handle is dropped.
    fn raise(&self) {
        let Some(tx) = self.tx.lock().take() else {
            return;
        };
        let hooks = self.hooks.take_raised();
        self.flag.store(true, Ordering::Release);
        drop(tx);
        for hook in hooks {
            self.hooks.run(hook);
        }
    }
}

impl Drop for StopHandle {
    fn drop(&mut self) {
        let tx = self.0.tx.lock().take();
        drop(tx);
    }
}

/// The child's side of its stop signal: the flag, the channel that disconnects, and the
/// hooks run when it is raised. Shared by the incarnations a thread runs in a row until
/// it is stopped (same-thread restarts); a resumed thread gets a new one.
#[derive(Clone)]
pub(crate) struct StopSignal {
    state: Arc<StopState>,
    pub(crate) rx: Receiver<()>,
}

impl StopSignal {
    /// The flag, set once the signal is raised.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.state.flag
    }
}

/// The closures a child registered with [`Context::on_stop`].
///
/// The protocol: `raised` and the list live under one lock. Raising marks it raised and
/// takes the list, sets the stop flag, then runs each hook outside the lock, on the
/// raising thread. A hook
/// registered after that finds it raised and runs at once, on the registering thread.
/// So every hook runs exactly once, unless its incarnation ends first: the context's
/// drop empties the list.
struct StopHooks {
    id: Arc<str>,
    state: Mutex<HookState>,
}

#[derive(Default)]
struct HookState {
    raised: bool,
    list: Vec<StopHook>,
}

type StopHook = Box<dyn FnOnce() + Send>;

impl StopHooks {
    /// Marks the list raised and takes the hooks to run.
    fn take_raised(&self) -> Vec<StopHook> {
        let mut state = self.state.lock();
        state.raised = true;
        std::mem::take(&mut state.list)
    }

    fn add(&self, hook: StopHook) {
        let mut state = self.state.lock();
        if state.raised {
            drop(state);
            self.run(hook);
        } else {
            state.list.push(hook);
        }
    }

    /// Drops the hooks of an incarnation that has ended (outside the lock: a hook's
    /// captures may take a while to drop).
    fn clear(&self) {
        let list = std::mem::take(&mut self.state.lock().list);
        drop(list);
    }

    /// Runs one hook; a panic in it is contained and logged, and the stop goes on.
    fn run(&self, hook: StopHook) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(hook)) {
            let msg = panic_reason(&*payload);
            log::error!("child {:?}: a stop hook panicked: {msg}", self.id);
            if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(inner);
            }
        }
    }
}

impl StopHandle {
    /// A new, unraised stop signal for child `id`: the supervisor's side and the child's.
    pub(crate) fn new(id: Arc<str>) -> (StopHandle, StopSignal) {
        let (tx, rx) = crossbeam_channel::bounded(0);
        let state = Arc::new(StopState {
            flag: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            hooks: StopHooks {
                id,
                state: Mutex::new(HookState::default()),
            },
        });
        let signal = StopSignal {
            state: state.clone(),
            rx,
        };
        (StopHandle(state), signal)
    }

    /// Raises the signal: sets the flag, disconnects the channel so that every wait on
    /// it wakes, then runs the stop hooks on this thread. Idempotent.
    pub(crate) fn raise(&self) {
        self.0.raise();
    }

    /// A way for another thread to raise this signal later, which keeps nothing alive:
    /// once this handle is dropped, raising it does nothing.
    pub(crate) fn weak(&self) -> NextStop {
        NextStop(Arc::downgrade(&self.0))
    }
}

/// Which incarnation a child is: how many ran before it, and how the last one ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    pub(crate) incarnation: u64,
    pub(crate) previous_exit: Option<ExitReason>,
}

/// A weak [`StopHandle`], passed to the process that must exit before this signal is
/// raised (see `Spawned::stop_next_on_exit`).
pub(crate) struct NextStop(Weak<StopState>);

impl NextStop {
    pub(crate) fn raise(self) {
        if let Some(inner) = self.0.upgrade() {
            inner.raise();
        }
    }
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
    stop: Arc<StopState>,
    stop_rx: Receiver<()>,
    history: History,
    ready_tx: Mutex<Option<Sender<ReadyMsg>>>,
}

impl Context {
    pub(crate) fn new(
        pid: Pid,
        id: Arc<str>,
        signal: &StopSignal,
        history: History,
        ready_tx: Option<Sender<ReadyMsg>>,
    ) -> Context {
        Context {
            pid,
            id,
            stop: signal.state.clone(),
            stop_rx: signal.rx.clone(),
            history,
            ready_tx: Mutex::new(ready_tx),
        }
    }

    /// Which incarnation of its child this is: 0 for the first start, then one more for
    /// each restart (by the child's supervisor, on its own thread, or by
    /// `restart_child`). A dynamic supervisor's `start_child` always starts at 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::{channel, ChildSpec, Supervisor};
    ///
    /// let (tx, rx) = channel::unbounded();
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::worker("flaky", move |ctx| {
    ///         tx.send((ctx.incarnation(), ctx.previous_exit().cloned())).unwrap();
    ///         if ctx.incarnation() == 0 {
    ///             panic!("first run fails");
    ///         }
    ///         let _ = ctx.stop_signal().recv();
    ///         Ok(())
    ///     }))
    ///     .start()?;
    /// assert_eq!(rx.recv()?, (0, None));
    /// let (n, why) = rx.recv()?;
    /// assert_eq!(n, 1);
    /// assert_eq!(why.unwrap().to_string(), "panicked: first run fails");
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incarnation(&self) -> u64 {
        self.history.incarnation
    }

    /// How the previous incarnation of this child ended (`None` for the first), so a
    /// restarted child can tell a crash from a planned restart and pick up what the
    /// crashed one left (a job it held, a half-written file).
    pub fn previous_exit(&self) -> Option<&ExitReason> {
        self.history.previous_exit.as_ref()
    }

    /// Runs `hook` when this child's stop is raised: once, on the thread that raises it,
    /// right after the signal (or at once, here, if the stop is raised already).
    ///
    /// This is how a child blocked in a call that the stop signal cannot wake — `accept`,
    /// a socket `read`, a pipe — still stops promptly: the hook shuts the socket down (or
    /// connects to the listener), the blocking call returns, the child sees
    /// [`is_stopping`](Context::is_stopping) and returns. Keep a hook short: it runs on
    /// the supervisor's thread (or the thread of whoever stops the child), inside the
    /// stop sequence.
    ///
    /// Each call adds a hook; all run, in the order added. Hooks belong to this
    /// incarnation: those not run by the time it returns are dropped, unrun. A hook that
    /// panics is contained and logged, and the stop goes on.
    ///
    /// A hook often runs on the supervisor's own thread (it raised the stop). It may
    /// still call that supervisor: questions (`which_children`, `count_children`,
    /// `child_spec`, `events`) are answered there and then, anything else fails with
    /// [`SupervisorError::WouldDeadlock`](crate::SupervisorError::WouldDeadlock) at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{Shutdown, TcpListener, TcpStream};
    /// use steadfast::{ChildSpec, Supervisor};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let client = TcpStream::connect(addr)?; // kept open: the server's read blocks
    /// let (stream, _) = listener.accept()?;
    /// let stream = std::sync::Mutex::new(Some(stream));
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::worker("reader", move |ctx| {
    ///         let Some(mut stream) = stream.lock().unwrap().take() else { return Ok(()) };
    ///         let unblock = stream.try_clone()?;
    ///         ctx.on_stop(move || { let _ = unblock.shutdown(Shutdown::Both); });
    ///         let mut buf = [0; 64];
    ///         while stream.read(&mut buf)? > 0 {} // returns 0 once shut down
    ///         Ok(())
    ///     }))
    ///     .start()?;
    /// sup.shutdown()?; // prompt, although the reader was blocked in `read`
    /// # drop(client);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_stop(&self, hook: impl FnOnce() + Send + 'static) {
        self.stop.hooks.add(Box::new(hook));
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
        #[cfg(feature = "testing")]
        if self.injected_deafness() {
            return false;
        }
        self.stop.flag.load(Ordering::Acquire)
    }

    /// With the test kit: a crash injected for this process unwinds here; `true` if it
    /// has been made deaf to its stop.
    #[cfg(feature = "testing")]
    fn injected_deafness(&self) -> bool {
        crate::testing::faults::at_call(self.pid);
        crate::testing::faults::deaf(self.pid).is_some()
    }

    /// What a wait of the child's listens to for its stop: its stop signal (with the
    /// test kit, a channel only the test ends, if it has been made deaf).
    #[cfg(feature = "testing")]
    fn stop_for_wait(&self) -> std::borrow::Cow<'_, Receiver<()>> {
        crate::testing::faults::at_call(self.pid);
        match crate::testing::faults::deaf(self.pid) {
            Some(deaf) => std::borrow::Cow::Owned(deaf),
            None => std::borrow::Cow::Borrowed(&self.stop_rx),
        }
    }

    #[cfg(not(feature = "testing"))]
    #[inline]
    fn stop_for_wait(&self) -> std::borrow::Cow<'_, Receiver<()>> {
        std::borrow::Cow::Borrowed(&self.stop_rx)
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
        let stop = self.stop_for_wait();
        match clock::recv_timeout(&stop, d) {
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
        let stop = self.stop_for_wait();
        let stop: &Receiver<()> = &stop;
        select! {
            recv(rx) -> msg => msg.map_err(|_| RecvError::Disconnected),
            recv(stop) -> _ => Err(RecvError::Stopped),
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
        let Some(deadline) = clock::now().checked_add(timeout) else {
            return self.recv(rx).map_err(RecvTimeoutError::from);
        };
        if let Some(done) = self.poll_briefly(rx) {
            return done.map_err(RecvTimeoutError::from);
        }
        let stop = self.stop_for_wait();
        let stop: &Receiver<()> = &stop;
        let alarm = clock::alarm(deadline);
        select! {
            recv(rx) -> msg => msg.map_err(|_| RecvTimeoutError::Disconnected),
            recv(stop) -> _ => Err(RecvTimeoutError::Stopped),
            recv(alarm.rx) -> _ => rx.try_recv().map_err(|e| match e.is_disconnected() {
                true => RecvTimeoutError::Disconnected,
                false => RecvTimeoutError::Timeout,
            }),
            default(alarm.timeout) => Err(RecvTimeoutError::Timeout),
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

    /// Declines to run, instead of calling [`ready`](Context::ready): OTP's `ignore`.
    ///
    /// For a child whose spec has a [`ready_timeout`](crate::ChildSpec::ready_timeout):
    /// its start succeeds with no running child — at a supervisor's start the child's
    /// spec is kept as [`Stopped`](crate::ChildStatus::Stopped) (as OTP keeps it, so
    /// `restart_child` can try again later) and the next child starts; `start_child`
    /// and `restart_child` return [`SupervisorError::Ignored`](crate::SupervisorError::Ignored)
    /// (a static supervisor keeps the spec; a dynamic one keeps nothing). The child should
    /// return right after; it is stopped (its stop signal raised, its shutdown timeout
    /// applied) like any other. A child that does not wait for readiness has been
    /// counted as started already: for it this does nothing, and it should simply return.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::{ChildSpec, ChildStatus, Supervisor};
    ///
    /// let gpu_present = false;
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::worker("gpu", move |ctx| {
    ///         if !gpu_present {
    ///             ctx.ignore();
    ///             return Ok(());
    ///         }
    ///         ctx.ready();
    ///         // ... serve ...
    ///         Ok(())
    ///     }).ready_timeout(Duration::from_secs(5)))
    ///     .start()?;
    /// assert_eq!(sup.which_children()?[0].status, ChildStatus::Stopped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ignore(&self) {
        self.send_ready(ReadyMsg::Ignored);
    }

    /// Ends this incarnation: its stop hooks not run yet are dropped (as when the context
    /// is dropped).
    pub(crate) fn end_incarnation(&self) {
        self.stop.hooks.clear();
    }

    /// Makes this context the next incarnation's, on the same thread and stop signal: a
    /// same-thread restart reuses it rather than building another.
    pub(crate) fn begin_incarnation(&mut self, pid: Pid, history: History) {
        self.pid = pid;
        self.history = history;
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

impl Drop for Context {
    /// The incarnation is over: its stop hooks not run yet are dropped.
    fn drop(&mut self) {
        self.end_incarnation();
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("pid", &self.pid)
            .field("id", &self.id)
            .field("incarnation", &self.history.incarnation)
            .field("previous_exit", &self.history.previous_exit)
            .field("stopping", &self.is_stopping())
            .finish()
    }
}
