//! [`ServerContext`]: what a server's callbacks can ask of its loop — timers, other
//! sources, monitors, an idle timeout, work to continue with, and a stop with a reason.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::child::context::Context;
use crate::clock;
use crate::exit::ExitReason;
use crate::pid::{self, Pid};
use crate::server::callbacks::{HandleInfo, Serve};
use crate::server::handle::ServerRef;
use crate::server::letter::InfoLetter;
use crate::server::packed::Packed;
use crate::server::sources::{Channel, Down, MonitorRef, Source, WatchRef};
use crate::server::timers::{Fire, TimerRef, Timers};

/// Work a callback asked to continue with.
pub(super) type Continue<S> = Box<dyn FnOnce(&mut S, &mut ServerContext<'_, S>)>;

/// The loop's own state, which callbacks change through [`ServerContext`].
pub(super) struct Run<S: Serve> {
    pub(super) me: ServerRef<S>,
    pub(super) timers: Timers<S>,
    pub(super) sources: Vec<Box<dyn Source<S>>>,
    pub(super) next_source: u64,
    pub(super) continues: VecDeque<Continue<S>>,
    /// The idle timeout, and whether it is armed (a message re-arms it; it fires once
    /// per quiet spell).
    pub(super) idle: Option<Duration>,
    pub(super) idle_armed: bool,
    pub(super) last_activity: Instant,
    /// Set by [`ServerContext::stop`]: the loop ends after this callback.
    pub(super) stop: Option<ExitReason>,
    pub(super) suspended: bool,
    /// Requests taken while suspended, served in order once resumed.
    pub(super) held: VecDeque<Packed<S>>,
    pub(super) stats: Counts,
    /// The mailbox-depth gauge, set after each message.
    #[cfg(feature = "metrics")]
    pub(super) depth: metrics::Gauge,
}

/// What the loop counts for [`ServerRef::statistics`].
#[derive(Clone, Debug, Default)]
pub(super) struct Counts {
    pub(super) calls: u64,
    pub(super) casts: u64,
    pub(super) infos: u64,
    pub(super) timing: bool,
    pub(super) busy: Duration,
    pub(super) last_message: Option<Instant>,
}

impl<S: Serve> Run<S> {
    pub(super) fn new(me: ServerRef<S>) -> Self {
        Run {
            timers: Timers::new(),
            sources: Vec::new(),
            next_source: 0,
            continues: VecDeque::new(),
            idle: None,
            idle_armed: false,
            last_activity: clock::now(),
            stop: None,
            suspended: false,
            held: VecDeque::new(),
            stats: Counts::default(),
            #[cfg(feature = "metrics")]
            depth: crate::telemetry::metric::mailbox_depth(&me.mailbox.label),
            me,
        }
    }

    /// Whether the loop has nothing but the mailbox to wait on (its fast path).
    pub(super) fn mailbox_only(&self) -> bool {
        self.timers.len() == 0 && self.sources.is_empty() && !self.idle_armed
    }

    /// When the idle timeout fires, if armed.
    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        match (self.idle, self.idle_armed) {
            (Some(idle), true) => self.last_activity.checked_add(idle),
            _ => None,
        }
    }
}

/// What a server's callbacks get: the child's [`Context`] (through `Deref`: pid, id,
/// stop signal) and the loop's services.
///
/// Everything here is kept by the server's own loop — a timer is a deadline the loop
/// waits for, a watched channel is read between messages — so a server needs no thread,
/// channel or timer of its own, and a stop during any wait is immediate.
pub struct ServerContext<'a, S: Serve> {
    pub(super) ctx: &'a Context,
    pub(super) run: &'a mut Run<S>,
}

impl<S: Serve> fmt::Debug for ServerContext<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("pid", &self.ctx.pid())
            .field("id", &self.ctx.id())
            .field("timers", &self.run.timers.len())
            .field("sources", &self.run.sources.len())
            .finish_non_exhaustive()
    }
}

impl<S: Serve> Deref for ServerContext<'_, S> {
    type Target = Context;
    fn deref(&self) -> &Context {
        self.ctx
    }
}

impl<'a, S: Serve> ServerContext<'a, S> {
    /// This server's own handle (to give to another thread, to reply or send from there).
    pub fn handle(&self) -> ServerRef<S> {
        self.run.me.clone()
    }

    /// Stops the server with `reason` once this callback returns (a call's reply is sent
    /// first): `terminate` runs with the reason, then the supervisor sees it and applies
    /// the restart type. [`ExitReason::Normal`], [`ExitReason::Shutdown`] and
    /// [`ExitReason::ShutdownWith`] are not abnormal (a transient server is not
    /// restarted); any other reason is.
    ///
    /// ```
    /// use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
    /// use steadfast::{ExitReason, Restart, Supervisor};
    ///
    /// struct Job;
    /// struct Finish;
    /// impl Serve for Job {}
    /// impl Handle<Finish> for Job {
    ///     type Reply = &'static str;
    ///     fn handle(&mut self, _: Finish, ctx: &mut ServerContext<'_, Self>) -> &'static str {
    ///         ctx.stop(ExitReason::shutdown_with("finished"));
    ///         "bye" // sent before the server stops
    ///     }
    /// }
    ///
    /// let (spec, job) = ServerSpec::new("job", |_| Ok(Job)).build();
    /// let sup = Supervisor::builder().start()?;
    /// let events = sup.events()?;
    /// sup.start_child(spec.restart(Restart::Transient))?;
    /// assert_eq!(job.call(Finish)?, "bye");
    /// let exit = events.iter().find_map(|e| match e {
    ///     steadfast::Event::ChildExited { reason, .. } => Some(reason),
    ///     _ => None,
    /// });
    /// assert_eq!(exit, Some(ExitReason::ShutdownWith("finished".into())));
    /// assert!(job.call(Finish).is_err()); // not restarted: a shutdown is not a crash
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop(&mut self, reason: ExitReason) {
        self.run.stop = Some(reason);
    }

    /// Runs `work` before the next message (OTP's `{continue, ..}`); several run in the
    /// order asked.
    pub fn continue_with(
        &mut self,
        work: impl FnOnce(&mut S, &mut ServerContext<'_, S>) + 'static,
    ) {
        self.run.continues.push_back(Box::new(work));
    }

    /// Sends `message` to this server's [`HandleInfo`] after `delay`. A delay too long to
    /// represent (`Duration::MAX`) never fires.
    pub fn send_after<M>(&mut self, delay: Duration, message: M) -> TimerRef
    where
        S: HandleInfo<M>,
        M: Send + 'static,
    {
        let letter = Packed::pack(InfoLetter(message));
        self.run.timers.start(delay, Fire::Once(letter))
    }

    /// Sends a clone of `message` every `period` (at least a microsecond), the first
    /// after one period, until cancelled. A loop that falls behind skips the missed
    /// ticks rather than firing them in a burst.
    pub fn send_interval<M>(&mut self, period: Duration, message: M) -> TimerRef
    where
        S: HandleInfo<M>,
        M: Clone + Send + 'static,
    {
        let period = period.max(Duration::from_micros(1));
        let make = move || Packed::pack(InfoLetter(message.clone()));
        self.run
            .timers
            .start(period, Fire::Every(period, Box::new(make)))
    }

    /// Cancels a timer; whether it was still pending (a fired one-shot is not).
    pub fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        self.run.timers.cancel(timer)
    }

    /// Calls [`Serve::handle_idle`] when no message has arrived for `timeout` (OTP's
    /// `{timeout, T}`); `None` turns it off. It fires once per quiet spell: a message
    /// arms it again, as does setting it (from `handle_idle` too).
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.run.idle = timeout;
        self.run.idle_armed = timeout.is_some();
        self.run.last_activity = clock::now();
    }

    /// Takes the messages of `rx` in this server's loop, as [`HandleInfo<T>`] messages,
    /// between its calls and casts: each channel's messages in their order. Watching
    /// ends when every sender is gone (once what was sent is taken) or on
    /// [`unwatch`](ServerContext::unwatch).
    pub fn watch<T>(&mut self, rx: Receiver<T>) -> WatchRef
    where
        S: HandleInfo<T>,
        T: Send + 'static,
    {
        let id = self.next_source_id();
        self.run.sources.push(Box::new(Channel {
            id,
            rx,
            wrap: Box::new(|message| Packed::pack(InfoLetter(message))),
            once: false,
        }));
        WatchRef(id)
    }

    /// Stops watching a channel; whether it was watched.
    pub fn unwatch(&mut self, watch: WatchRef) -> bool {
        self.forget_source(watch.0)
    }

    /// Monitors `pid`: its exit arrives as a [`Down`] message, with the reason
    /// ([`ExitReason::NoProcess`] at once if it has already exited).
    ///
    /// ```
    /// use crossbeam_channel::{unbounded, Sender};
    /// use steadfast::server::{Down, Handle, HandleInfo, Serve, ServerContext, ServerSpec};
    /// use steadfast::{ChildSpec, Pid, Restart, Supervisor};
    ///
    /// struct Watchdog(Sender<String>);
    /// impl Serve for Watchdog {}
    /// impl Handle<Pid> for Watchdog {
    ///     type Reply = ();
    ///     fn handle(&mut self, pid: Pid, ctx: &mut ServerContext<'_, Self>) {
    ///         ctx.monitor(pid);
    ///     }
    /// }
    /// impl HandleInfo<Down> for Watchdog {
    ///     fn handle_info(&mut self, down: Down, _: &mut ServerContext<'_, Self>) {
    ///         let _ = self.0.send(format!("{} went down: {}", down.pid, down.reason));
    ///     }
    /// }
    ///
    /// let (tx, seen) = unbounded();
    /// let (spec, dog) = ServerSpec::new("watchdog", move |_| Ok(Watchdog(tx.clone()))).build();
    /// let sup = Supervisor::builder().child(spec).start()?;
    /// let (go, gate) = unbounded::<()>();
    /// let worker = ChildSpec::worker("brief", move |_| {
    ///     let _ = gate.recv();
    ///     Err("out of work".into())
    /// });
    /// let others = Supervisor::builder().child(worker.restart(Restart::Temporary)).start()?;
    /// let pid = others.which_children()?[0].pid.unwrap();
    /// dog.call(pid)?;
    /// go.send(())?;
    /// let heard = seen.recv_timeout(std::time::Duration::from_secs(10))?;
    /// assert_eq!(heard, format!("{pid} went down: failed: out of work"));
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn monitor(&mut self, pid: Pid) -> MonitorRef
    where
        S: HandleInfo<Down>,
    {
        let id = self.next_source_id();
        let monitor = MonitorRef(id);
        self.run.sources.push(Box::new(Channel {
            id,
            rx: pid::monitor(pid),
            wrap: Box::new(move |reason| {
                Packed::pack(InfoLetter(Down {
                    monitor,
                    pid,
                    reason,
                }))
            }),
            once: true,
        }));
        monitor
    }

    /// Drops a monitor: its `Down` will not arrive. Whether it was still pending.
    pub fn demonitor(&mut self, monitor: MonitorRef) -> bool {
        self.forget_source(monitor.0)
    }

    fn next_source_id(&mut self) -> u64 {
        self.run.next_source += 1;
        self.run.next_source
    }

    fn forget_source(&mut self, id: u64) -> bool {
        let before = self.run.sources.len();
        self.run.sources.retain(|s| s.id() != id);
        self.run.sources.len() != before
    }
}
