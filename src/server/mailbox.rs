//! A server's mailbox: the queue every incarnation serves, the door that a stop shuts,
//! and the posts that wait for room in a bounded one (the protocol is explained on
//! `Mailbox`).

use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::pid::Pid;
use crate::server::callbacks::Serve;
use crate::server::error::CallError;
use crate::server::packed::Packed;

/// What reaches a server's mailbox.
pub(super) enum Envelope<S: Serve> {
    /// A call, cast, info or system request.
    Letter(Packed<S>),
    /// Posted by the stop hook of an incarnation, so that its loop can block on the
    /// mailbox alone. One left over from an earlier incarnation is ignored.
    Stop,
}

/// Whether a mailbox takes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Door {
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
pub(super) struct Mailbox<S: Serve> {
    pub(super) tx: Sender<Envelope<S>>,
    pub(super) rx: Receiver<Envelope<S>>,
    /// Open or stopped (see `Door`).
    pub(super) door: AtomicU8,
    /// Held to open the door, and by a poster that found it shut after sending.
    pub(super) reopen: Mutex<()>,
    /// The incarnation serving now (0: none), to refuse a server's call to itself.
    pub(super) serving: AtomicU64,
    pub(super) name: Option<Arc<str>>,
    /// Its name, else its child id: telemetry's label.
    #[cfg(feature = "metrics")]
    pub(super) label: Arc<str>,
    /// Bounded ([`ServerSpec::capacity`]): its loop waits on the stop signal too, and no
    /// `Stop` envelope is ever posted (it would take a place a sender waits for).
    pub(super) bounded: bool,
}

impl<S: Serve> Mailbox<S> {
    /// What identifies this mailbox to `SERVING_HERE`.
    pub(super) fn address(&self) -> usize {
        self as *const Self as usize
    }

    /// Posts `envelope`, waiting for room in a bounded mailbox as long as it takes: the
    /// path of every cast, kept as lean as a bare send (a cast costs tens of
    /// nanoseconds).
    #[inline]
    pub(super) fn post(&self, envelope: Envelope<S>) -> Result<(), CallError> {
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
    pub(super) fn post_within(
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
    pub(super) fn look_again(&self) {
        fence(Ordering::SeqCst);
        if !self.is_open(Ordering::Relaxed) {
            let _reopen = self.reopen.lock();
            if !self.is_open(Ordering::SeqCst) {
                self.fail_queued();
            }
        }
    }

    /// A stop: shut the door, then fail what is queued.
    pub(super) fn shut(&self) {
        self.door.store(Door::Stopped as u8, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.serving.store(0, Ordering::Release);
        self.fail_queued();
    }

    pub(super) fn open(&self, pid: Pid) {
        let _reopen = self.reopen.lock();
        self.serving.store(pid.as_u64(), Ordering::Release);
        self.door.store(Door::Open as u8, Ordering::SeqCst);
    }

    pub(super) fn is_open(&self, order: Ordering) -> bool {
        self.door.load(order) == Door::Open as u8
    }

    /// Fails the queued calls with `Stopped` (queued casts and infos are dropped).
    ///
    /// A `Stop` envelope drained here is put back: it may be the only wake-up of a loop
    /// whose stop was raised before this drain (an ordered stop's relay raises it first).
    pub(super) fn fail_queued(&self) {
        let mut woke = false;
        for envelope in self.rx.try_iter() {
            match envelope {
                Envelope::Letter(letter) => letter.refuse(CallError::Stopped),
                Envelope::Stop => woke = true,
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
pub(super) enum Room {
    /// Until this instant (a call's deadline, of this timeout).
    Until(Instant, Duration),
    /// Not at all.
    Now,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::letter::CallLetter;
    use crate::server::reply::{reply_slot, Limit, Waiter};
    use crate::server::{Handle, ServerContext};
    use crossbeam_channel::unbounded;

    struct Echo;
    impl Serve for Echo {}
    impl Handle<u32> for Echo {
        type Reply = u32;
        fn handle(&mut self, n: u32, _: &mut ServerContext<'_, Self>) -> u32 {
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
            #[cfg(feature = "metrics")]
            label: Arc::from("echo"),
            bounded: false,
        }
    }

    fn call(n: u32) -> (Envelope<Echo>, Waiter<u32>) {
        let (reply, waiter) = reply_slot();
        let letter = CallLetter { message: n, reply };
        (Envelope::Letter(Packed::pack(letter)), waiter)
    }

    fn answered_now(waiter: Waiter<u32>) -> Result<u32, CallError> {
        waiter.wait(Limit::Deadline(Some(Instant::now()), Duration::ZERO))
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
        let (envelope, waiter) = call(7);
        let _ = mb.tx.send(envelope);
        mb.look_again();
        assert_eq!(answered_now(waiter), Err(CallError::Stopped));
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
        let (envelope, waiter) = call(7);
        let _ = mb.tx.send(envelope);
        mb.look_again();
        assert_eq!(mb.rx.len(), 1, "queued for the incarnation now serving");
        assert!(
            matches!(answered_now(waiter), Err(CallError::Timeout(_))),
            "not failed"
        );
    }

    /// A drain (a stop failing what is queued) must not eat the envelope that wakes the
    /// loop: when an ordered stop's relay raised the stop first, that envelope is the
    /// loop's only wake-up, and without it the loop sleeps until it is abandoned.
    #[test]
    fn a_drain_leaves_the_loop_its_wake_up() {
        let mb = mailbox();
        mb.open(Pid::current());
        let (envelope, waiter) = call(7);
        let _ = mb.tx.send(envelope);
        let _ = mb.tx.send(Envelope::Stop);
        mb.shut();
        assert_eq!(answered_now(waiter), Err(CallError::Stopped));
        assert!(
            matches!(mb.rx.try_recv(), Ok(Envelope::Stop)),
            "the wake-up is still there for the loop"
        );
    }
}
