//! Faults a test injects into a child of its tree, without the child's code knowing (the
//! table and its hooks are in `faults`).

use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::event::ChildStatus;
use crate::testing::faults::{self, StartFault};
use crate::testing::TestTree;

impl TestTree {
    /// Makes child `id` (running now) exit with `reason` at its next [`Context`] call
    /// (`recv`, `recv_timeout`, `sleep`, `is_stopping`) — as if its code had returned
    /// that reason or panicked with it. A call it is blocked in now is not interrupted.
    ///
    /// [`Context`]: crate::Context
    ///
    /// # Panics
    ///
    /// `id` is not a running child of the root.
    #[track_caller]
    pub fn crash(&self, id: &str, reason: ExitReason) {
        faults::crash_at_next_call(self.running(id), reason);
    }

    /// Makes the next start of child `id` (its restart, or a `restart_child`) fail with
    /// `why`, without running its code: a child that reports readiness fails its start;
    /// any other exits at once with `Failed(why)`.
    pub fn fail_next_start(&self, id: &str, why: &str) {
        faults::at_next_start(
            self.sup().pid(),
            id,
            StartFault::Fail(why.to_owned()),
            self.current(id),
        );
    }

    /// Makes the next start of child `id` by its supervisor (`restart_child`, or a
    /// restart the supervisor performs) decline (OTP's `ignore`), without running its
    /// code. Declining is part of the readiness handshake, so it shows for a child with a
    /// [`ready_timeout`](crate::ChildSpec::ready_timeout); any other child exits
    /// `Normal` instead.
    pub fn decline_next_start(&self, id: &str) {
        faults::at_next_start(self.sup().pid(), id, StartFault::Decline, self.current(id));
    }

    /// Makes child `id` deaf to its stop from its next start (a restart, or
    /// `restart_child`) until the tree ends: its [`Context`] says it is not stopping and
    /// its waits do not wake for the stop, so a stop abandons it after its shutdown
    /// timeout. That abandonment is expected: it does not fail the test, and its thread
    /// is released when the tree ends. (From its next start, not now: a wait it may be
    /// in at this moment listens to its stop already.)
    ///
    /// [`Context`]: crate::Context
    pub fn deafen_next_start(&self, id: &str) {
        faults::at_next_start(self.sup().pid(), id, StartFault::Deaf, self.current(id));
        self.deaf.borrow_mut().push(id.to_owned());
    }

    /// Child `id`'s incarnation now, if it has one.
    fn current(&self, id: &str) -> Option<Pid> {
        let children = self.handle().which_children().unwrap_or_default();
        children
            .into_iter()
            .find(|c| &*c.id == id)
            .and_then(|c| c.pid)
    }

    #[track_caller]
    fn running(&self, id: &str) -> Pid {
        let children = self.handle().which_children().unwrap_or_default();
        let child = children.iter().find(|c| &*c.id == id);
        match child {
            Some(c) if c.status == ChildStatus::Running => {
                c.pid.expect("a running child has a pid")
            }
            Some(c) => panic!("child {id:?} is not running ({:?})", c.status),
            None => panic!("no child {id:?} in the test tree"),
        }
    }
}
