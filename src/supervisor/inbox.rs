//! A supervisor's inbox: the one path by which it learns of anything.
//!
//! | written by                                | message       | rings the bell                   |
//! |-------------------------------------------|---------------|----------------------------------|
//! | a child's thread, as its last act         | `Exit`        | always                           |
//! | a child's thread, restarting itself       | `Restarted`   | if watched, or the queue is long |
//! | a caller handing a dynamic child over     | `HandOver`    | if watched, or the queue is long |
//! | a handle (admin call, question)           | `Call`        | always                           |
//! | the supervisor itself (a failed restart)  | `RetryRestart`| always                           |
//!
//! **The ordering rule.** Messages stay in the order they were written. The supervisor's
//! loop takes the oldest. A wait inside the loop (for a child to stop, or to report
//! readiness) takes out only what it waits for — that child's own notices — and the calls
//! it must answer to avoid a deadlock; everything else stays where it is, in place, for the
//! loop. Nothing is ever set aside anywhere else, so no later transition (a stop, a
//! readiness wait, a subscriber leaving) can drop or reorder it.
//!
//! "Watched" (someone subscribes to the events) decides only whether a notice wakes the
//! supervisor at once, so that its events go out at once; unwatched, a same-thread restart
//! or a hand-over costs no wake-up. Either way the notice is in the same queue: past
//! [`WAKE_AT`] queued messages the bell rings anyway, so an idle supervisor never sits on
//! an unbounded pile, and a child restarting itself faster than its supervisor reads (or
//! while its supervisor waits for another child) is held back past [`HOLD_AT`] unread
//! restarts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::child::launch::Notify;
use crate::child::spawned::Spawned;
use crate::child::spec::ChildSpec;
use crate::error::SupervisorError;
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::event::{ChildCounts, ChildInfo, Event};

/// Queued messages past which even a quiet notice rings the bell.
pub(crate) const WAKE_AT: usize = 64;
/// Unread same-thread restarts past which a restarting child waits for its supervisor.
pub(crate) const HOLD_AT: usize = 256;

/// Everything a supervisor learns, in one type.
pub(crate) enum Msg {
    /// A child's thread has exited (sent last, after its names were released).
    Exit { pid: Pid, reason: ExitReason },
    /// A child crashed and restarted itself on its own thread, with its supervisor's
    /// permit (already counted in the intensity window).
    Restarted {
        old: Pid,
        new: Pid,
        reason: ExitReason,
        /// When `new` started (the supervisor may read this much later).
        at: Instant,
    },
    /// A request from a handle, with its own reply channel, and the calling process (if
    /// the caller is one).
    Call(Request, Option<Pid>),
    /// A restart failed earlier: try again (after the requests that came meanwhile).
    RetryRestart { seq: u64 },
    /// A dynamic child a caller started on this supervisor's behalf; its thread sends
    /// nothing before this message is queued.
    HandOver { spec: ChildSpec, run: Spawned },
}

pub(crate) type Reply<T> = Sender<Result<T, SupervisorError>>;

/// How a handle names a child: static supervisors by id, dynamic ones by pid.
pub(crate) enum ChildRef {
    Id(String),
    Pid(Pid),
}

/// What a handle asks of its supervisor.
pub(crate) enum Request {
    StartChild(ChildSpec, Reply<Pid>),
    TerminateChild(ChildRef, Reply<()>),
    RestartChild(String, Reply<Pid>),
    DeleteChild(String, Reply<()>),
    WhichChildren(Sender<Vec<ChildInfo>>),
    CountChildren(Sender<ChildCounts>),
    ChildSpec(ChildRef, Reply<ChildSpec>),
    Subscribe(Sender<Event>, Sender<()>),
}

impl Request {
    /// Answers a request with `error` without serving it.
    pub(crate) fn refuse(self, error: SupervisorError) {
        match self {
            Request::StartChild(_, r) | Request::RestartChild(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::TerminateChild(_, r) | Request::DeleteChild(_, r) => {
                let _ = r.send(Err(error));
            }
            Request::ChildSpec(_, r) => {
                let _ = r.send(Err(error));
            }
            // Questions are always answered; dropping the reply is the fallback.
            Request::WhichChildren(_) | Request::CountChildren(_) | Request::Subscribe(..) => {}
        }
    }
}

/// The queue and the bell; see the module docs for who writes what.
pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    bell_tx: Sender<()>,
    bell_rx: Receiver<()>,
    watched: AtomicBool,
}

struct Queue {
    msgs: VecDeque<Msg>,
    /// `Restarted` notices among `msgs`.
    restarts: usize,
    open: bool,
}

impl Inbox {
    pub(crate) fn new() -> Inbox {
        let (bell_tx, bell_rx) = bounded(1);
        Inbox {
            queue: Mutex::new(Queue {
                msgs: VecDeque::new(),
                restarts: 0,
                open: true,
            }),
            bell_tx,
            bell_rx,
            watched: AtomicBool::new(false),
        }
    }

    /// Queues `msg` and wakes the supervisor. `Err(msg)` once the supervisor has exited.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), Box<Msg>> {
        self.push(msg, true).map(drop)
    }

    /// Queues a notice that needs no answer; wakes the supervisor only if its events are
    /// watched or the queue is long.
    pub(crate) fn send_notice(&self, msg: Msg) -> Result<(), Box<Msg>> {
        self.push(msg, self.watched.load(Ordering::Acquire))
            .map(drop)
    }

    /// Queues `msg`; returns how many `Restarted` notices are queued now.
    fn push(&self, msg: Msg, ring: bool) -> Result<usize, Box<Msg>> {
        let mut q = self.queue.lock();
        if !q.open {
            return Err(Box::new(msg));
        }
        q.restarts += usize::from(matches!(msg, Msg::Restarted { .. }));
        q.msgs.push_back(msg);
        let ring = ring || q.msgs.len() > WAKE_AT;
        let restarts = q.restarts;
        drop(q);
        if ring {
            // Full: the bell has rung already and not been answered yet.
            let _ = self.bell_tx.try_send(());
        }
        Ok(restarts)
    }

    /// The bell: a message is waiting (or was, when it rang).
    pub(crate) fn bell(&self) -> &Receiver<()> {
        &self.bell_rx
    }

    /// Whether the supervisor's events are watched (see the module docs).
    pub(crate) fn set_watched(&self, watched: bool) {
        self.watched.store(watched, Ordering::Release);
    }

    /// The oldest message.
    pub(crate) fn pop(&self) -> Option<Msg> {
        let mut q = self.queue.lock();
        let msg = q.msgs.pop_front()?;
        q.restarts -= usize::from(matches!(msg, Msg::Restarted { .. }));
        Some(msg)
    }

    /// Takes out, in order, the messages `wanted` picks; the others stay in place. Called
    /// by every wait, usually on a short queue with nothing to take: no allocation then.
    pub(crate) fn take(&self, mut wanted: impl FnMut(&Msg) -> bool) -> Vec<Msg> {
        let mut q = self.queue.lock();
        let mut taken = Vec::new();
        let mut i = 0;
        while i < q.msgs.len() {
            if !wanted(&q.msgs[i]) {
                i += 1;
                continue;
            }
            let msg = q.msgs.remove(i).expect("index checked");
            q.restarts -= usize::from(matches!(msg, Msg::Restarted { .. }));
            taken.push(msg);
        }
        taken
    }

    /// Takes no more messages; returns those still queued (the caller drops them, which
    /// answers their callers with `NoSupervisor`).
    pub(crate) fn close(&self) -> VecDeque<Msg> {
        let mut q = self.queue.lock();
        q.open = false;
        q.restarts = 0;
        std::mem::take(&mut q.msgs)
    }

    /// Holds a child that restarts itself faster than its supervisor reads (see
    /// [`HOLD_AT`]) until the supervisor catches up, closes, or the child is told to stop.
    fn hold_back(&self, stopping: &AtomicBool) {
        let behind = || {
            let q = self.queue.lock();
            q.open && q.restarts > HOLD_AT
        };
        while behind() && !stopping.load(Ordering::Acquire) {
            let _ = self.bell_tx.try_send(());
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

impl Notify for Inbox {
    fn exited(&self, pid: Pid, reason: ExitReason) {
        // Err: the supervisor has exited already; nobody is left to tell.
        let _ = self.send(Msg::Exit { pid, reason });
    }

    fn restarted(
        &self,
        old: Pid,
        new: Pid,
        reason: ExitReason,
        at: Instant,
        stopping: &AtomicBool,
    ) {
        let watched = self.watched.load(Ordering::Acquire);
        let queued = self.push(
            Msg::Restarted {
                old,
                new,
                reason,
                at,
            },
            watched,
        );
        if queued.is_ok_and(|restarts| restarts > HOLD_AT) {
            self.hold_back(stopping);
        }
    }
}
