//! A server's timers: deadlines kept by its own loop (as the supervisor keeps backoffs),
//! never a thread or a sleep per timer. The loop waits for its next message or the
//! earliest deadline, whichever comes first, and fires what is due in deadline order.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::clock;
use crate::server::callbacks::Serve;
use crate::server::packed::Packed;

/// A timer started by [`ServerContext::send_after`](crate::server::ServerContext::send_after)
/// or [`send_interval`](crate::server::ServerContext::send_interval), to cancel it with.
/// It belongs to the incarnation that started it: a crash or a stop cancels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerRef(u64);

/// What a timer posts when it fires: a message, made once or at every period.
pub(super) enum Fire<S: Serve> {
    Once(Packed<S>),
    Every(Duration, Box<dyn FnMut() -> Packed<S>>),
}

pub(super) struct Timers<S: Serve> {
    /// By deadline; the id breaks ties in the order the timers were started.
    due: BTreeMap<(Instant, u64), Fire<S>>,
    /// Each live timer's deadline, by id (for `cancel`).
    at: HashMap<u64, Instant>,
    next_id: u64,
}

impl<S: Serve> Timers<S> {
    pub(super) fn new() -> Self {
        Timers {
            due: BTreeMap::new(),
            at: HashMap::new(),
            next_id: 0,
        }
    }

    /// Starts a timer firing `fire` after `delay` (a delay too long to represent never
    /// fires, and can still be cancelled).
    pub(super) fn start(&mut self, delay: Duration, fire: Fire<S>) -> TimerRef {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(at) = clock::now().checked_add(delay) {
            self.due.insert((at, id), fire);
            self.at.insert(id, at);
        }
        TimerRef(id)
    }

    /// Cancels `timer`; whether it was still pending.
    pub(super) fn cancel(&mut self, timer: TimerRef) -> bool {
        match self.at.remove(&timer.0) {
            Some(at) => self.due.remove(&(at, timer.0)).is_some(),
            None => false,
        }
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.due.first_key_value().map(|(&(at, _), _)| at)
    }

    /// The message of the earliest timer due by `now`, if any; an interval is started
    /// again for its next period (from its deadline, or from `now` if it fell behind by
    /// more than a period: no burst of catching up).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Packed<S>> {
        let entry = self.due.first_entry()?;
        let (at, id) = *entry.key();
        if at > now {
            return None;
        }
        match entry.remove() {
            Fire::Once(letter) => {
                self.at.remove(&id);
                Some(letter)
            }
            Fire::Every(period, mut make) => {
                let letter = make();
                let next =
                    at.checked_add(period)
                        .map(|next| if next <= now { now + period } else { next });
                match next {
                    Some(next) => {
                        self.due.insert((next, id), Fire::Every(period, make));
                        self.at.insert(id, next);
                    }
                    None => {
                        self.at.remove(&id);
                    }
                }
                Some(letter)
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}
