//! A supervisor's child table: its children in start order, and the index by pid. Only the
//! supervisor's own thread touches it, and only through the methods here.

use std::sync::Arc;
use std::time::Instant;

use crate::child::context::History;
use crate::child::runner::Spawned;
use crate::child::spec::{ChildKind, ChildSpec, Shutdown};
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::event::{ChildCounts, ChildInfo, ChildStatus};
use crate::supervisor::server::Server;

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) run: Option<Spawned>,
    pub(super) status: ChildStatus,
    /// The pid the child is known by while it is not running (dynamic children keep
    /// their last pid while `Restarting`).
    pub(super) last_pid: Option<Pid>,
    /// How many incarnations have started, and how the latest one ended: what the
    /// next incarnation's context tells it (see [`Context::incarnation`](crate::Context::incarnation)).
    pub(super) started: u64,
    pub(super) last_exit: Option<ExitReason>,
    /// When the latest incarnation started (shown while it runs; a backoff takes it to
    /// see how long the incarnation ran).
    pub(super) started_at: Option<Instant>,
    /// Backoff: restarts in a row so far, and the restart waited for (its time, and
    /// whether it still counts toward intensity).
    pub(super) attempts: u32,
    pub(super) due: Option<Due>,
}

/// A restart waiting out a backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) at: Instant,
    /// A retry of a failed restart counts toward intensity when it runs; a restart
    /// after an exit was counted at the exit.
    pub(super) counts: bool,
}

impl Child {
    /// Tells the spec's `OnStopped`, if any, that its child is being stopped.
    fn tell_stopped(&self) {
        if let Some(told) = &self.spec.on_stopped {
            told();
        }
    }

    /// The history the next incarnation starts with.
    pub(super) fn next_history(&self) -> History {
        History {
            incarnation: self.started,
            previous_exit: self.last_exit.clone(),
        }
    }
}

/// A running incarnation taken out of the table to be stopped, with its child's id and
/// shutdown setting.
pub(super) type Stopping = (Spawned, Arc<str>, Shutdown);

impl Server {
    /// Takes the running incarnation of the child whose incarnation `pid` just exited
    /// with `reason` (`None`: a stale notice, from one no longer tracked); the child is
    /// `Stopped`.
    pub(super) fn take_exited(&mut self, pid: Pid, reason: &ExitReason) -> Option<(u64, Spawned)> {
        let seq = *self.by_pid.get(&pid)?;
        let child = self.children.get_mut(&seq)?;
        if child.run.as_ref().map(|r| r.pid) != Some(pid) {
            return None;
        }
        self.by_pid.remove(&pid);
        child.status = ChildStatus::Stopped;
        child.last_pid = Some(pid);
        child.last_exit = Some(reason.clone());
        Some((seq, child.run.take()?))
    }

    /// Takes child `seq`'s running incarnation, to stop it; the child is `Stopped`
    /// (told so, running or not: see `OnStopped`).
    pub(super) fn take_running(&mut self, seq: u64) -> Option<Stopping> {
        let child = self.children.get_mut(&seq)?;
        child.tell_stopped();
        child.status = ChildStatus::Stopped;
        child.due = None;
        let run = child.run.take()?;
        child.last_pid = Some(run.pid);
        self.by_pid.remove(&run.pid);
        Some((run, child.spec.id.clone(), child.spec.shutdown))
    }

    /// Takes every running incarnation, in start order, to stop them all.
    pub(super) fn take_all_running(&mut self) -> Vec<Stopping> {
        self.by_pid.clear();
        let children = self.children.values_mut();
        children
            .filter_map(|child| {
                child.tell_stopped();
                child.status = ChildStatus::Stopped;
                let run = child.run.take()?;
                child.last_pid = Some(run.pid);
                Some((run, child.spec.id.clone(), child.spec.shutdown))
            })
            .collect()
    }

    /// Records that the child running as `old` ended with `reason` and restarted itself
    /// as `new` at `at`; returns its id (`None`: stale, the child was stopped, removed or
    /// abandoned meanwhile).
    pub(super) fn record_local_restart(
        &mut self,
        old: Pid,
        new: Pid,
        reason: &ExitReason,
        at: Instant,
    ) -> Option<Arc<str>> {
        let seq = *self.by_pid.get(&old)?;
        let child = self.children.get_mut(&seq)?;
        let run = child.run.as_mut().filter(|r| r.pid == old)?;
        run.pid = new;
        child.last_pid = Some(new);
        child.started = child.started.saturating_add(1);
        child.last_exit = Some(reason.clone());
        child.started_at = Some(at);
        self.by_pid.remove(&old);
        self.by_pid.insert(new, seq);
        Some(child.spec.id.clone())
    }

    /// Child `seq` failed to restart: `Restarting` (retried through the inbox), and the
    /// members of its group after it `Stopped` until it is back.
    pub(super) fn mark_restarting(&mut self, seq: u64, later: &[u64]) {
        let child = self.children.get_mut(&seq).expect("child exists");
        child.status = ChildStatus::Restarting;
        if let Some(old) = child.last_pid {
            // Dynamic children stay known by their old pid while restarting.
            self.by_pid.insert(old, seq);
        }
        for k in later {
            self.children.get_mut(k).expect("child exists").status = ChildStatus::Stopped;
        }
    }

    pub(super) fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .values()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.run.as_ref().map(|r| r.pid),
                status: c.status,
                kind: c.spec.kind,
                restart: c.spec.restart,
                restart_at: c.due.map(|due| due.at),
                restarts: c.started.saturating_sub(1),
                last_exit: c.last_exit.clone(),
                started_at: c.run.as_ref().and(c.started_at),
            })
            .collect()
    }

    pub(super) fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts {
            specs: self.children.len(),
            ..ChildCounts::default()
        };
        for c in self.children.values() {
            counts.active += usize::from(c.run.is_some());
            match c.spec.kind {
                ChildKind::Worker => counts.workers += 1,
                ChildKind::Supervisor => counts.supervisors += 1,
            }
        }
        counts
    }

    pub(super) fn find_id(&self, id: &str) -> Option<u64> {
        self.children
            .iter()
            .find(|(_, c)| &*c.spec.id == id)
            .map(|(&seq, _)| seq)
    }

    /// Records how child `seq`'s latest incarnation ended.
    pub(super) fn record_exit(&mut self, seq: u64, reason: &ExitReason) {
        if let Some(child) = self.children.get_mut(&seq) {
            child.last_exit = Some(reason.clone());
        }
    }

    /// Adds a child at the end of the start order: running, or (`None`: it declined
    /// to start) `Stopped`.
    pub(super) fn insert(&mut self, spec: ChildSpec, run: Option<Spawned>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pid = run.as_ref().map(|run| run.pid);
        if let Some(pid) = pid {
            self.by_pid.insert(pid, seq);
        }
        // When its thread started it: a child a caller handed over may be read later.
        let started_at = run.as_ref().map(|run| run.started_at);
        // Boxed: a row is a few hundred bytes, and the map's nodes stay about half full
        // under appends, which inline rows would pay for twice.
        self.children.insert(
            seq,
            Box::new(Child {
                spec,
                last_pid: pid,
                status: match run {
                    Some(_) => ChildStatus::Running,
                    None => ChildStatus::Stopped,
                },
                run,
                started: 1,
                last_exit: None,
                attempts: 0,
                started_at,
                due: None,
            }),
        );
    }

    /// Child `seq` waits out a backoff until `due`: `Restarting`, known by its last pid
    /// (a dynamic child's handle), and the members of its group after it `Stopped`.
    pub(super) fn mark_due(&mut self, seq: u64, due: Due, later: &[u64]) {
        self.mark_restarting(seq, later);
        let child = self.children.get_mut(&seq).expect("child exists");
        child.due = Some(due);
    }

    /// The restart child `seq` waits for, if it is due by `now` (taken: it runs now).
    pub(super) fn take_due(&mut self, seq: u64, at: Instant) -> Option<Due> {
        let child = self.children.get_mut(&seq)?;
        match child.due {
            Some(due) if due.at == at && child.status == ChildStatus::Restarting => {
                child.due = None;
                Some(due)
            }
            _ => None,
        }
    }

    pub(super) fn set_running(&mut self, seq: u64, run: Spawned) {
        let child = self.children.get_mut(&seq).expect("child exists");
        if let Some(old) = child.last_pid.replace(run.pid) {
            self.by_pid.remove(&old);
        }
        self.by_pid.insert(run.pid, seq);
        child.run = Some(run);
        child.status = ChildStatus::Running;
        child.started = child.started.saturating_add(1);
        child.due = None;
        child.started_at = Some(Instant::now());
    }

    pub(super) fn remove(&mut self, seq: u64) {
        if let Some(child) = self.children.remove(&seq) {
            if let Some(handover) = &self.handover {
                handover.release();
            }
            if let Some(pid) = child.last_pid {
                if self.by_pid.get(&pid) == Some(&seq) {
                    self.by_pid.remove(&pid);
                }
            }
        }
    }
}
