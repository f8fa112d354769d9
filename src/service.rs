//! The process boundary: running a tree as a service under systemd, Kubernetes or a
//! container runtime — signals in, exit status and health out.
//!
//! A steadfast tree lives inside one process, and that process is supervised in turn.
//! [`Service::run`] is where the two meet, as OTP meets `heart` and its release tools:
//!
//! - **signals in**: SIGTERM or SIGINT starts an orderly shutdown of the tree (each child
//!   stopped within its shutdown timeout, in order); a second signal during that stop ends
//!   the process at once, with status 128 + the signal (feature `signals`, on by default);
//! - **status out**: the [`Outcome`] says how the tree ended and is `main`'s return value:
//!   success after an asked-for shutdown, failure when the root gave up — so systemd's
//!   `Restart=on-failure` or a Kubernetes restart policy takes over from there: escalation
//!   past the process boundary;
//! - **systemd** (feature `systemd`, on by default; active only when `NOTIFY_SOCKET` is
//!   set): `READY=1` once the tree has started and the signal handlers are in place,
//!   `WATCHDOG=1` every half `WATCHDOG_USEC` only while the root supervisor answers,
//!   `STOPPING=1` when the shutdown begins;
//! - **health** for probes: [`health`] answers liveness (the root supervisor answers) and
//!   readiness (every child of the root runs).
//!
//! ```no_run
//! use steadfast::service::{Outcome, Service};
//! use steadfast::{ChildSpec, Supervisor};
//!
//! fn main() -> Outcome {
//!     let app = Supervisor::builder()
//!         .child(ChildSpec::worker("worker", |ctx| {
//!             let _ = ctx.stop_signal().recv();
//!             Ok(())
//!         }))
//!         .start()
//!         .expect("the tree starts");
//!     Service::new(app).run() // until SIGTERM; the outcome is the exit status
//! }
//! ```

use std::fmt;
use std::process::{ExitCode, Termination};
use std::time::Duration;

use crossbeam_channel::{bounded, select};

use crate::error::{StartError, SupervisorError};
use crate::pid::monitor;
use crate::supervisor::event::ChildStatus;
use crate::supervisor::{Supervisor, SupervisorRef};

/// How a service's tree ended: what `main` returns (it implements [`Termination`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// A signal asked for the shutdown, and the tree stopped in order: success.
    Stopped,
    /// The root supervisor exited on its own, normally (its significant children were
    /// done: see [`AutoShutdown`](crate::AutoShutdown)): success.
    Ended,
    /// The root supervisor gave up (its restart intensity was exceeded), or its own
    /// thread failed: failure, for the outer supervisor to act on.
    Failed(SupervisorError),
    /// The tree could not be started: failure.
    StartFailed(StartError),
}

impl From<StartError> for Outcome {
    fn from(e: StartError) -> Outcome {
        Outcome::StartFailed(e)
    }
}

impl Outcome {
    /// The process exit status: success for `Stopped` and `Ended`, failure (1)
    /// otherwise.
    pub fn exit_code(&self) -> ExitCode {
        if self.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Whether the tree ended as asked or as designed.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Stopped | Outcome::Ended)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Stopped => f.write_str("stopped on a signal"),
            Outcome::Ended => f.write_str("the tree ended on its own"),
            Outcome::Failed(e) => write!(f, "the tree failed: {e}"),
            Outcome::StartFailed(e) => write!(f, "the tree did not start: {e}"),
        }
    }
}

impl Termination for Outcome {
    /// Logs a failure, then gives the exit status.
    fn report(self) -> ExitCode {
        if !self.is_success() {
            log::error!("service: {self}");
            eprintln!("service: {self}");
        }
        self.exit_code()
    }
}

/// A tree run as a service: see the [module docs](self).
#[must_use = "a service does nothing until `run` is called"]
pub struct Service {
    sup: Supervisor,
    signals: bool,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("sup", &self.sup)
            .field("signals", &self.signals)
            .finish()
    }
}

impl Service {
    /// A service around a started tree.
    pub fn new(sup: Supervisor) -> Service {
        Service { sup, signals: true }
    }

    /// Whether SIGTERM and SIGINT stop the tree (default: yes, with the `signals`
    /// feature; without it there is no signal handling).
    pub fn handle_signals(mut self, on: bool) -> Service {
        self.signals = on;
        self
    }

    /// Runs until a signal asks for a shutdown or the root supervisor exits on its own;
    /// returns how it ended.
    pub fn run(self) -> Outcome {
        let Service { sup, signals } = self;
        let ended = monitor(sup.pid());
        let asked = if signals { signal::watch() } else { None };
        let notify = sd::Notifier::from_env();
        notify.send("READY=1");
        let watchdog = notify.watchdog(sup.handle());
        let never = bounded::<i32>(0).1;
        let signal_rx = asked.as_ref().map_or(&never, |w| &w.rx);
        let outcome = select! {
            recv(signal_rx) -> sig => {
                log::info!("service: signal {} received; stopping the tree", sig.unwrap_or(0));
                notify.send("STOPPING=1");
                match sup.shutdown() {
                    Ok(()) => Outcome::Stopped,
                    Err(e) => Outcome::Failed(e),
                }
            }
            recv(ended) -> _ => {
                notify.send("STOPPING=1");
                match sup.join() {
                    Ok(()) => Outcome::Ended,
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        drop(watchdog);
        drop(asked);
        outcome
    }
}

/// A tree's health, as probes want it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The root supervisor answered within the timeout (its loop is alive and serving).
    pub live: bool,
    /// It answered, and every child of the root is running (none restarting or
    /// stopped).
    pub ready: bool,
}

/// Asks the root supervisor how the tree is, waiting at most `timeout` for its answer.
///
/// A supervisor serves one request at a time: while it waits for a child to stop (up to
/// that child's shutdown timeout) it does not answer, and the tree reads as not live.
/// Give a liveness probe a failure threshold longer than your longest shutdown timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::{service, ChildSpec, Supervisor};
///
/// let app = Supervisor::builder()
///     .child(ChildSpec::worker("w", |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) }))
///     .start()?;
/// let health = service::health(&app.handle(), Duration::from_secs(1));
/// assert!(health.live && health.ready);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn health(root: &SupervisorRef, timeout: Duration) -> Health {
    match root.0.which_children_within(timeout) {
        Some(children) => Health {
            live: true,
            ready: children.iter().all(|c| c.status == ChildStatus::Running),
        },
        None => Health {
            live: false,
            ready: false,
        },
    }
}

/// Signals in: a thread that reports the first SIGTERM or SIGINT and ends the process on
/// the second.
#[cfg(feature = "signals")]
mod signal {
    use crossbeam_channel::{bounded, Receiver};
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    /// The watch; dropping it stops the thread.
    pub(super) struct Watch {
        pub(super) rx: Receiver<i32>,
        handle: Handle,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    /// Starts watching; `None` if the handlers cannot be installed, which is logged.
    pub(super) fn watch() -> Option<Watch> {
        let mut signals = match Signals::new([SIGTERM, SIGINT]) {
            Ok(signals) => signals,
            Err(e) => {
                log::error!("service: cannot install signal handlers: {e}");
                return None;
            }
        };
        let handle = signals.handle();
        let (tx, rx) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("steadfast-signals".into())
            .spawn(move || {
                let mut seen = 0;
                for sig in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        let _ = tx.send(sig);
                    } else {
                        // A second signal while the tree stops: end now, as asked.
                        log::warn!("service: second signal ({sig}); exiting at once");
                        std::process::exit(128 + sig);
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Watch {
                rx,
                handle,
                thread: Some(thread),
            }),
            Err(e) => {
                log::error!("service: cannot start the signal thread: {e}");
                handle.close();
                None
            }
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            self.handle.close();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(not(feature = "signals"))]
mod signal {
    use crossbeam_channel::Receiver;

    pub(super) struct Watch {
        pub(super) rx: Receiver<i32>,
    }

    /// Without the `signals` feature there is nothing to watch.
    pub(super) fn watch() -> Option<Watch> {
        None
    }
}

/// systemd's notify protocol: datagrams to `$NOTIFY_SOCKET`.
#[cfg(all(feature = "systemd", unix))]
mod sd {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::time::Duration;

    use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

    use crate::supervisor::SupervisorRef;

    /// Where notifications go (nowhere unless run under systemd).
    pub(super) struct Notifier {
        socket: Option<(UnixDatagram, SocketAddr)>,
        watchdog: Option<Duration>,
    }

    impl Notifier {
        pub(super) fn from_env() -> Notifier {
            Notifier {
                socket: std::env::var_os("NOTIFY_SOCKET").and_then(|path| open(&path)),
                watchdog: watchdog_interval(),
            }
        }

        /// Sends one notification; a failure is logged, never fatal.
        pub(super) fn send(&self, msg: &str) {
            if let Some((socket, addr)) = &self.socket {
                if let Err(e) = socket.send_to_addr(msg.as_bytes(), addr) {
                    log::warn!("service: systemd notify {msg:?} failed: {e}");
                }
            }
        }

        /// Pings `WATCHDOG=1` every half watchdog interval while `root` answers; stops
        /// (and is joined) when the returned guard is dropped.
        pub(super) fn watchdog(&self, root: SupervisorRef) -> Option<Watchdog> {
            let every = self.watchdog? / 2;
            let (socket, addr) = self.socket.as_ref()?;
            let (socket, addr) = (socket.try_clone().ok()?, addr.clone());
            let (stop_tx, stop) = bounded::<()>(0);
            let spawned = std::thread::Builder::new()
                .name("steadfast-watchdog".into())
                .spawn(move || loop {
                    // Only while the root's loop serves: a stuck root stops the pings,
                    // and systemd then restarts the service.
                    if root.count_children().is_ok() {
                        let _ = socket.send_to_addr(b"WATCHDOG=1", &addr);
                    }
                    if !matches!(stop.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
                        return;
                    }
                });
            spawned.ok().map(|thread| Watchdog {
                stop: Some(stop_tx),
                thread: Some(thread),
            })
        }
    }

    /// The watchdog thread: dropping it stops and joins the thread (at most one ping
    /// later, if the root is slow to answer).
    pub(super) struct Watchdog {
        stop: Option<Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Watchdog {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID` unset or ours).
    fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }

    /// A socket to send to `path` (a file path, or `@name` for the abstract namespace).
    fn open(path: &OsStr) -> Option<(UnixDatagram, SocketAddr)> {
        let addr = match path.as_bytes().split_first() {
            #[cfg(target_os = "linux")]
            Some((b'@', name)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            }
            Some(_) => SocketAddr::from_pathname(path).ok()?,
            None => return None,
        };
        Some((UnixDatagram::unbound().ok()?, addr))
    }
}

/// Without the `systemd` feature (or off unix), notifications go nowhere.
#[cfg(not(all(feature = "systemd", unix)))]
mod sd {
    use crate::supervisor::SupervisorRef;

    pub(super) struct Notifier;

    pub(super) struct Watchdog;

    impl Notifier {
        pub(super) fn from_env() -> Notifier {
            Notifier
        }

        pub(super) fn send(&self, _msg: &str) {}

        pub(super) fn watchdog(&self, _root: SupervisorRef) -> Option<Watchdog> {
            None
        }
    }
}
