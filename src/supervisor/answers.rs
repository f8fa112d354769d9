//! What a supervisor tells and answers without acting: its events (to `on_event` and to
//! subscribers) and its answers to questions (`which_children`, `count_children`,
//! `child_spec`, `events`).
//!
//! Questions need only a look at the table, so they are answered wherever the
//! supervisor is: from its loop, from inside a wait (a child being stopped may ask), and
//! from user code the supervisor runs on its own thread — a stop hook it raised,
//! `on_event` — where its loop can never serve a call: while it runs such code it lends
//! its table and events ([`lending`]), and a call from that code is served from them
//! ([`answer_here`]); anything but a question is refused with `WouldDeadlock`.

use std::cell::RefCell;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::error::SupervisorError;
use crate::supervisor::event::Event;
use crate::supervisor::inbox::{Inbox, Request};
use crate::supervisor::table::ChildTable;
use crate::telemetry;

/// A watcher of a supervisor's events, called on the supervisor's thread.
pub(crate) type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where a supervisor's events go: its `on_event`, then each subscriber in turn.
pub(super) struct Events {
    /// The supervisor's label, for telemetry.
    label: Arc<str>,
    /// When each child last exited, to time its restart (telemetry's histogram).
    #[cfg(feature = "metrics")]
    exited_at: RefCell<std::collections::HashMap<Arc<str>, std::time::Instant>>,
    observer: Option<Observer>,
    /// In a `RefCell` so that a subscription can be taken while the events are lent.
    subscribers: RefCell<Vec<Sender<Event>>>,
    /// Told whether anyone watches (a quiet notice then rings the bell at once).
    inbox: Arc<Inbox>,
}

impl Events {
    pub(super) fn new(
        label: Arc<str>,
        observer: Option<Observer>,
        sinks: Vec<Sender<Event>>,
        inbox: Arc<Inbox>,
    ) -> Events {
        let events = Events {
            label,
            #[cfg(feature = "metrics")]
            exited_at: RefCell::default(),
            observer,
            subscribers: RefCell::new(sinks),
            inbox,
        };
        events.update_watched();
        events
    }

    /// Emits the event `make` builds, building it only if someone observes events.
    /// `on_event` runs with `table` lent (see the module docs).
    pub(super) fn emit_with(&self, table: &ChildTable, make: impl FnOnce() -> Event) {
        self.emit_and_report(table, make, telemetry::EVERY_EVENT);
    }

    /// As `emit_with`, for an event telemetry has had already (a restart a child made on
    /// its own thread reports itself there and then: its notice may wait here a while).
    pub(super) fn emit_reported(&self, table: &ChildTable, make: impl FnOnce() -> Event) {
        self.emit_and_report(table, make, false);
    }

    fn emit_and_report(&self, table: &ChildTable, make: impl FnOnce() -> Event, report: bool) {
        let watched = self.observer.is_some() || !self.subscribers.borrow().is_empty();
        if !watched && !report {
            return;
        }
        let event = make();
        if report {
            self.report(table, &event);
            if !watched {
                return;
            }
        }
        if let Some(observe) = &self.observer {
            lending(table, self, || observe(&event));
        }
        let mut subscribers = self.subscribers.borrow_mut();
        let before = subscribers.len();
        subscribers.retain(|s| s.send(event.clone()).is_ok());
        if subscribers.len() != before {
            drop(subscribers);
            self.update_watched();
        }
    }

    /// Hands `event` to telemetry, with what the table adds to it.
    fn report(&self, table: &ChildTable, event: &Event) {
        let mut about = telemetry::About::default();
        if let Event::ChildRestarted { id, .. } = event {
            let child = table.find_id(id).and_then(|seq| table.get(seq));
            about.previous_exit = child.and_then(|c| c.last_exit.as_ref());
        }
        #[cfg(feature = "metrics")]
        {
            about.states = Some(table.states());
            match event {
                Event::ChildExited { id, .. } => {
                    let now = std::time::Instant::now();
                    self.exited_at.borrow_mut().insert(id.clone(), now);
                }
                Event::ChildRestarted { id, .. } => {
                    let exited = self.exited_at.borrow_mut().remove(id);
                    about.restart_took = exited.map(|at| at.elapsed());
                }
                _ => {}
            }
        }
        telemetry::event(&self.label, event, about);
    }

    pub(super) fn emit(&self, table: &ChildTable, event: Event) {
        self.emit_with(table, || event);
    }

    fn subscribe(&self, tx: Sender<Event>) {
        self.subscribers.borrow_mut().push(tx);
        self.update_watched();
    }

    fn update_watched(&self) {
        let watched = !self.subscribers.borrow().is_empty() || self.observer.is_some();
        self.inbox.set_watched(watched);
    }
}

/// Answers a question from `table` and `events`; refuses anything else with
/// `WouldDeadlock` (it could only be served by a loop that is busy or is the caller).
pub(super) fn answer(req: Request, table: &ChildTable, events: &Events) {
    match req {
        Request::WhichChildren(reply) => {
            let _ = reply.send(table.which_children());
        }
        Request::CountChildren(reply) => {
            let _ = reply.send(table.count_children());
        }
        Request::ChildSpec(which, reply) => {
            let spec = table.find(&which).and_then(|seq| table.get(seq));
            let spec = spec.map(|child| child.spec.clone());
            let _ = reply.send(spec.ok_or(SupervisorError::NotFound));
        }
        Request::Subscribe(tx, reply) => {
            events.subscribe(tx);
            let _ = reply.send(());
        }
        other => other.refuse(SupervisorError::WouldDeadlock),
    }
}

scoped_tls::scoped_thread_local! {
    /// The table a supervisor lent to user code running on this thread.
    static LENT_TABLE: ChildTable
}

scoped_tls::scoped_thread_local! {
    /// The events a supervisor lent with its table.
    static LENT_EVENTS: Events
}

/// Runs `f`, user code on a supervisor's own thread (a stop hook this thread raises,
/// `on_event`), with the supervisor's table and events lent to it, so that a question
/// `f` asks that supervisor is answered ([`answer_here`]).
pub(super) fn lending<R>(table: &ChildTable, events: &Events, f: impl FnOnce() -> R) -> R {
    LENT_TABLE.set(table, || LENT_EVENTS.set(events, f))
}

/// Serves `req`, a call that the supervisor of `inbox` received from its own thread
/// (user code it runs: a stop hook it raised, `on_event`, `on_start`), where its loop
/// cannot serve it: a question is answered from what it lent (if it did), anything
/// else — and a question with nothing lent — is refused with `WouldDeadlock`.
pub(crate) fn answer_here(inbox: &Arc<Inbox>, req: Request) {
    if !LENT_TABLE.is_set() || !LENT_EVENTS.is_set() {
        return req.refuse(SupervisorError::WouldDeadlock);
    }
    LENT_TABLE.with(|table| {
        LENT_EVENTS.with(|events| {
            if Arc::ptr_eq(&events.inbox, inbox) {
                answer(req, table, events);
            } else {
                req.refuse(SupervisorError::WouldDeadlock);
            }
        })
    });
}
