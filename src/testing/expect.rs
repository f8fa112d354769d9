//! Expectations that wait: on a test tree's events (the first untaken match, waited for
//! within the tree's timeout), on its children's state, on names and mailboxes. Each
//! failure says what was expected and lists the events that did arrive.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::registry::registry;
use crate::server::{Serve, ServerRef};
use crate::supervisor::event::{ChildStatus, Event};
use crate::testing::TestTree;
use crate::wait;

impl TestTree {
    /// Waits for the first event not taken yet that `matches`, takes it and returns it.
    ///
    /// # Panics
    ///
    /// None within the timeout: the message names `what` and lists the tree's events.
    #[track_caller]
    pub fn expect(&self, what: &str, mut matches: impl FnMut(&Event) -> bool) -> Event {
        match self.find(&mut matches, self.timeout) {
            Some(event) => event,
            None => self.fail(&format!("expected {what} within {:?}", self.timeout)),
        }
    }

    /// Waits for child `id` to start; its pid.
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect).
    #[track_caller]
    pub fn expect_started(&self, id: &str) -> Pid {
        let what = format!("child {id:?} to start");
        match self.expect(
            &what,
            |e| matches!(e, Event::ChildStarted { id: i, .. } if &**i == id),
        ) {
            Event::ChildStarted { pid, .. } => pid,
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for process `pid` to exit with `reason`.
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect) (an exit of `pid` with another reason does not
    /// match).
    #[track_caller]
    pub fn expect_exit(&self, pid: Pid, reason: &ExitReason) {
        let what = format!("{pid} to exit with {reason}");
        self.expect(&what, |e| {
            matches!(e, Event::ChildExited { pid: p, reason: r, .. } if *p == pid && r == reason)
        });
    }

    /// Waits for child `id` to crash (any abnormal exit); its reason.
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect).
    #[track_caller]
    pub fn expect_crash(&self, id: &str) -> ExitReason {
        let what = format!("child {id:?} to crash");
        let event = self.expect(&what, |e| {
            matches!(e, Event::ChildExited { id: i, reason, .. } if &**i == id && reason.is_abnormal())
        });
        match event {
            Event::ChildExited { reason, .. } => reason,
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for child `id` to be restarted; the new incarnation's pid. The exits that
    /// led to it count as seen (a panic among them does not fail the test on drop).
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect).
    #[track_caller]
    pub fn expect_restart(&self, id: &str) -> Pid {
        let what = format!("child {id:?} to be restarted");
        let event = self.expect(
            &what,
            |e| matches!(e, Event::ChildRestarted { id: i, .. } if &**i == id),
        );
        let mut log = self.log.borrow_mut();
        for i in 0..log.events.len() {
            if matches!(&log.events[i], Event::ChildExited { id: x, .. } if &**x == id) {
                log.acknowledged[i] = true;
            }
        }
        match event {
            Event::ChildRestarted { pid, .. } => pid,
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for child `id`'s restart to be scheduled after a backoff; the delay. The
    /// restart's deadline is set by then: on a [`ManualClock`](super::ManualClock),
    /// advancing the clock by the delay runs it.
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect).
    #[track_caller]
    pub fn expect_backoff(&self, id: &str) -> Duration {
        let what = format!("child {id:?}'s restart to be scheduled");
        let event = self.expect(
            &what,
            |e| matches!(e, Event::RestartScheduled { id: i, .. } if &**i == id),
        );
        match event {
            Event::RestartScheduled { delay, .. } => delay,
            _ => unreachable!("matched above"),
        }
    }

    /// Waits for the root to give up (its restart intensity exceeded); the intensity it
    /// had. Every exit before it counts as seen.
    ///
    /// # Panics
    ///
    /// As [`expect`](TestTree::expect).
    #[track_caller]
    pub fn expect_gave_up(&self) -> (u32, Duration) {
        let event = self.expect("the supervisor to give up", |e| {
            matches!(e, Event::IntensityExceeded { .. })
        });
        let mut log = self.log.borrow_mut();
        log.acknowledged.iter_mut().for_each(|a| *a = true);
        match event {
            Event::IntensityExceeded { restarts, period } => (restarts, period),
            _ => unreachable!("matched above"),
        }
    }

    /// Fails unless nothing happens for `window` from now (no event arrives).
    ///
    /// # Panics
    ///
    /// An event arrives within the window: the message names it.
    #[track_caller]
    pub fn expect_quiet(&self, window: Duration) {
        self.receive_ready();
        // A window too long to represent is forever.
        let next = match Instant::now().checked_add(window) {
            Some(deadline) => self.events.recv_deadline(deadline),
            None => self.events.recv().map_err(RecvTimeoutError::from),
        };
        match next {
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
            Ok(event) => {
                let brief = brief(&event);
                self.log.borrow_mut().push(event);
                self.fail(&format!("expected nothing for {window:?}, got: {brief}"));
            }
        }
    }

    /// Waits until child `id` of the root is running; its pid.
    ///
    /// # Panics
    ///
    /// Not running within the timeout.
    #[track_caller]
    pub fn wait_running(&self, id: &str) -> Pid {
        let sup = self.handle();
        let found = wait::until_some(self.timeout, format!("child {id:?} running"), || {
            let children = sup.which_children().ok()?;
            let child = children.into_iter().find(|c| &*c.id == id)?;
            (child.status == ChildStatus::Running)
                .then_some(child.pid)
                .flatten()
        });
        match found {
            Ok(pid) => pid,
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Waits until some process holds `name` in the global registry; its pid.
    ///
    /// # Panics
    ///
    /// Not within the timeout.
    #[track_caller]
    pub fn wait_registered(&self, name: &str) -> Pid {
        match registry().wait_for_registration(name, self.timeout) {
            Ok((pid, _)) => pid,
            Err(e) => self.fail(&format!("expected {name:?} to be registered: {e}")),
        }
    }

    /// Waits until no process holds `name` in the global registry.
    ///
    /// # Panics
    ///
    /// Still held at the timeout.
    #[track_caller]
    pub fn wait_unregistered(&self, name: &str) {
        let gone = wait::until(self.timeout, || registry().lookup(name).is_none());
        if gone.is_err() {
            self.fail(&format!(
                "expected {name:?} to be unregistered within {:?}",
                self.timeout
            ));
        }
    }

    /// Waits until `server`'s mailbox is empty (everything sent to it has been taken).
    ///
    /// # Panics
    ///
    /// Not within the timeout.
    #[track_caller]
    pub fn wait_mailbox_empty<S: Serve>(&self, server: &ServerRef<S>) {
        if wait::until(self.timeout, || server.queued() == 0).is_err() {
            self.fail(&format!(
                "expected the server's mailbox to empty within {:?}; {} waiting",
                self.timeout,
                server.queued()
            ));
        }
    }

    /// The first untaken event that matches, waiting up to `timeout`.
    fn find(&self, matches: &mut impl FnMut(&Event) -> bool, timeout: Duration) -> Option<Event> {
        self.receive_ready();
        let deadline = Instant::now() + timeout;
        let mut from = 0;
        loop {
            {
                let mut log = self.log.borrow_mut();
                for i in from..log.events.len() {
                    if !log.taken[i] && matches(&log.events[i]) {
                        log.taken[i] = true;
                        log.acknowledged[i] = true;
                        return Some(log.events[i].clone());
                    }
                }
                from = log.events.len();
            }
            match self.events.recv_deadline(deadline) {
                Ok(event) => self.log.borrow_mut().push(event),
                Err(_) => return None,
            }
        }
    }

    /// Moves every event that has arrived into the log.
    pub(super) fn receive_ready(&self) {
        let mut log = self.log.borrow_mut();
        for event in self.events.try_iter() {
            log.push(event);
        }
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        self.receive_ready();
        panic!("{what}\n{}", self.log.borrow().describe())
    }
}

/// One event, one short line.
pub(super) fn brief(e: &Event) -> String {
    match e {
        Event::ChildStarted { id, pid } => format!("started {id:?} as {pid}"),
        Event::ChildExited { id, pid, reason } => format!("{id:?} ({pid}) exited: {reason}"),
        Event::ChildAbandoned { id, pid } => format!("{id:?} ({pid}) abandoned"),
        Event::ChildRestarted { id, pid } => format!("restarted {id:?} as {pid}"),
        Event::RestartScheduled { id, delay } => format!("{id:?} to restart in {delay:?}"),
        Event::RestartFailed { id, error } => format!("restart of {id:?} failed: {error}"),
        Event::IntensityExceeded { restarts, period } => {
            format!("gave up: more than {restarts} restarts in {period:?}")
        }
        Event::SupervisorStopped { reason } => format!("supervisor stopped: {reason}"),
    }
}
