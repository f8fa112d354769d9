//! A supervisor's child table: its children in start order, the index by pid, and the
//! restarts waiting out a backoff. Only the supervisor's own thread holds it, and every
//! change goes through the methods here, which keep its invariants:
//!
//! - a child is `Running` exactly when it has an incarnation (`run`), and the pid index
//!   maps that incarnation's pid to it (a dynamic child waiting to restart stays known
//!   by its last pid, so that its handle still finds it);
//! - a restart due at time `t` has a timer `(t, seq)`; a timer whose child no longer
//!   waits for exactly that time is stale and skipped;
//! - who leaves the table is decided in one place, [`ChildTable::forget_if_done`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::context::History;
use crate::child::spawned::Spawned;
use crate::child::spec::{ChildKind, ChildSpec, Restart, Shutdown};
use crate::clock;
use crate::exit::ExitReason;
use crate::hash::BuildU64;
use crate::pid::Pid;
use crate::supervisor::event::{ChildCounts, ChildInfo, ChildStatus};
use crate::supervisor::handover::HandOver;
use crate::supervisor::inbox::ChildRef;
use crate::supervisor::strategy::{affected, Strategy};

/// One child. Read through [`ChildTable::get`]; changed only by the table.
pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) run: Option<Spawned>,
    pub(super) status: ChildStatus,
    /// The pid the child is known by while it is not running (dynamic children keep
    /// their last pid while `Restarting`).
    last_pid: Option<Pid>,
    /// How many incarnations have started, and how the latest one ended: what the
    /// next incarnation's context tells it (see [`Context::incarnation`](crate::Context::incarnation)).
    started: u64,
    pub(super) last_exit: Option<ExitReason>,
    /// When the latest incarnation started (shown while it runs; a backoff takes it to
    /// see how long the incarnation ran).
    started_at: Option<Instant>,
    /// Backoff: restarts in a row so far, and the restart waited for.
    attempts: u32,
    due: Option<Due>,
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
    /// The history the next incarnation starts with.
    pub(super) fn next_history(&self) -> History {
        History {
            incarnation: self.started,
            previous_exit: self.last_exit.clone(),
        }
    }

    /// Whether its restart waits out a backoff (the loop's timer runs it, not a retry).
    pub(super) fn waits_out_backoff(&self) -> bool {
        self.due.is_some()
    }

    /// Tells the spec's `OnStopped`, if any, that its child is being stopped.
    fn tell_stopped(&self) {
        if let Some(told) = &self.spec.on_stopped {
            told();
        }
    }
}

/// A running incarnation taken out of the table to be stopped, with its child's id and
/// shutdown setting.
pub(super) type Stopping = (Spawned, Arc<str>, Shutdown);

/// The children of one supervisor; see the module docs.
pub(super) struct ChildTable {
    /// Children in start order (the key is a start sequence number).
    children: BTreeMap<u64, Box<Child>>,
    by_pid: HashMap<Pid, u64, BuildU64>,
    next_seq: u64,
    /// Restarts waiting out a backoff, by due time.
    timers: BTreeSet<(Instant, u64)>,
    strategy: Strategy,
    /// Dynamic supervisors: the places callers reserve against `max_children`, given
    /// back when a child leaves. A dynamic supervisor keeps only live children.
    places: Option<Arc<HandOver>>,
}

impl ChildTable {
    pub(super) fn new(strategy: Strategy, places: Option<Arc<HandOver>>) -> ChildTable {
        ChildTable {
            children: BTreeMap::new(),
            by_pid: HashMap::default(),
            next_seq: 0,
            timers: BTreeSet::new(),
            strategy,
            places,
        }
    }

    fn is_dynamic(&self) -> bool {
        self.places.is_some()
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Child> {
        self.children.get(&seq).map(|c| &**c)
    }

    fn child_mut(&mut self, seq: u64) -> &mut Child {
        self.children
            .get_mut(&seq)
            .expect("the child is in the table")
    }

    /// The children's sequence numbers in start order (`rev`: in reverse).
    pub(super) fn order(&self, rev: bool) -> Vec<u64> {
        let keys = self.children.keys().copied();
        if rev {
            keys.rev().collect()
        } else {
            keys.collect()
        }
    }

    /// The child a handle names, if it is in the table.
    pub(super) fn find(&self, which: &ChildRef) -> Option<u64> {
        match which {
            ChildRef::Id(id) => self.find_id(id),
            ChildRef::Pid(pid) => self.by_pid.get(pid).copied(),
        }
    }

    /// How many children are running, restarting and stopped (telemetry's gauge).
    #[cfg(feature = "metrics")]
    pub(super) fn states(&self) -> [usize; 3] {
        let mut n = [0; 3];
        for c in self.children.values() {
            n[match c.status {
                ChildStatus::Running => 0,
                ChildStatus::Restarting => 1,
                ChildStatus::Stopped => 2,
            }] += 1;
        }
        n
    }

    pub(super) fn find_id(&self, id: &str) -> Option<u64> {
        self.children
            .iter()
            .find(|(_, c)| &*c.spec.id == id)
            .map(|(&seq, _)| seq)
    }

    /// The running incarnation of child `seq`, if it runs.
    pub(super) fn running(&self, seq: u64) -> Option<&Spawned> {
        self.get(seq).and_then(|c| c.run.as_ref())
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
    /// (told so, running or not: see `OnStopped`), and a restart it waited for is off.
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
                child.due = None;
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

    /// Records how child `seq`'s latest incarnation ended.
    pub(super) fn record_exit(&mut self, seq: u64, reason: &ExitReason) {
        if let Some(child) = self.children.get_mut(&seq) {
            child.last_exit = Some(reason.clone());
        }
    }

    /// Child `seq` runs `run` (a restart): `Running`, known by its new pid.
    pub(super) fn set_running(&mut self, seq: u64, run: Spawned) {
        let child = self
            .children
            .get_mut(&seq)
            .expect("the child is in the table");
        if let Some(old) = child.last_pid.replace(run.pid) {
            self.by_pid.remove(&old);
        }
        self.by_pid.insert(run.pid, seq);
        child.run = Some(run);
        child.status = ChildStatus::Running;
        child.started = child.started.saturating_add(1);
        child.due = None;
        child.started_at = Some(clock::now());
    }

    /// Child `seq` failed to restart: `Restarting` (retried through the inbox), and the
    /// members of its group after it `Stopped` until it is back.
    pub(super) fn mark_restarting(&mut self, seq: u64, later: &[u64]) {
        let child = self.child_mut(seq);
        child.status = ChildStatus::Restarting;
        if let Some(old) = child.last_pid {
            // Dynamic children stay known by their old pid while restarting.
            self.by_pid.insert(old, seq);
        }
        for &k in later {
            self.child_mut(k).status = ChildStatus::Stopped;
        }
    }

    /// Child `seq` waits out a backoff until `due`: `Restarting` (see `mark_restarting`),
    /// with a timer.
    pub(super) fn schedule(&mut self, seq: u64, due: Due, later: &[u64]) {
        self.mark_restarting(seq, later);
        self.child_mut(seq).due = Some(due);
        self.timers.insert((due.at, seq));
    }

    /// When the earliest waiting restart is due (stale timers included: waking for one
    /// only costs a look).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next restart due by `now`, taken (it runs now); stale timers are dropped.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(u64, Due)> {
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                return None;
            }
            self.timers.pop_first();
            let Some(child) = self.children.get_mut(&seq) else {
                continue;
            };
            match child.due {
                Some(due) if due.at == at && child.status == ChildStatus::Restarting => {
                    child.due = None;
                    return Some((seq, due));
                }
                _ => continue,
            }
        }
        None
    }

    /// How long child `seq`'s restart waits, by its backoff (`None`: no backoff, now).
    /// A child that ran long enough starts over at the initial delay.
    pub(super) fn backoff_delay(&mut self, seq: u64) -> Option<Duration> {
        let child = self.children.get_mut(&seq)?;
        let backoff = child.spec.backoff.as_ref()?;
        // Taken, so that only a start that ran can reset the count (a failed restart
        // leaves none behind).
        let ran = child.started_at.take().map_or(Duration::ZERO, |t| {
            clock::now().saturating_duration_since(t)
        });
        if backoff.resets(ran) {
            child.attempts = 0;
        }
        let delay = backoff.jittered(child.attempts);
        child.attempts = child.attempts.saturating_add(1);
        Some(delay)
    }

    /// The members of child `seq`'s restart group (itself, for one_for_one), in start
    /// order.
    pub(super) fn group_of(&self, seq: u64) -> Vec<u64> {
        let order = self.order(false);
        let pos = order
            .iter()
            .position(|&k| k == seq)
            .expect("the restarting child is in the table");
        order[affected(self.strategy, pos, order.len())].to_vec()
    }

    /// Whether a significant child still runs, or waits to be restarted.
    pub(super) fn significant_alive(&self) -> bool {
        let alive = |c: &Child| c.run.is_some() || c.status == ChildStatus::Restarting;
        self.children
            .values()
            .any(|c| c.spec.significant && alive(c))
    }

    /// Removes child `seq` if it has no further place in the table (OTP's `del_child`):
    /// it neither runs nor waits to be restarted, and it is temporary (it would never run
    /// again) or its supervisor is dynamic (which keeps only live children). A dynamic
    /// child's place against `max_children` is given back. Returns whether it left.
    ///
    /// Called after every exit, stop and declined start; the one place that decides.
    pub(super) fn forget_if_done(&mut self, seq: u64) -> bool {
        let done = self.get(seq).is_some_and(|c| {
            c.run.is_none()
                && c.status != ChildStatus::Restarting
                && (c.spec.restart == Restart::Temporary || self.is_dynamic())
        });
        done && self.remove(seq)
    }

    /// Removes a `Stopped` child's spec (`delete_child`).
    pub(super) fn delete(&mut self, seq: u64) -> Result<(), ChildStatus> {
        match self.get(seq).map(|c| c.status) {
            Some(ChildStatus::Stopped) => {
                self.remove(seq);
                Ok(())
            }
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    fn remove(&mut self, seq: u64) -> bool {
        let Some(child) = self.children.remove(&seq) else {
            return false;
        };
        if let Some(places) = &self.places {
            places.release();
        }
        if let Some(pid) = child.last_pid {
            if self.by_pid.get(&pid) == Some(&seq) {
                self.by_pid.remove(&pid);
            }
        }
        true
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
}
