//! Exits and restarts: applying the restart decision (`strategy`), the intensity window
//! (`intensity`), backoff delays, auto-shutdown, group restarts, and starting a child.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::child::context::{History, ReadyMsg};
use crate::child::runner::{self, Launch, RestartPermit, RestartWindow, SpawnArgs, Spawned};
use crate::child::spec::{ChildKind, ChildSpec, Readiness, Restart};
use crate::error::{StartError, SupervisorError};
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::event::ChildStatus;
use crate::supervisor::event::Event;
use crate::supervisor::handover::{not_ready, not_started};
use crate::supervisor::inbox::Msg;
use crate::supervisor::intensity::Intensity;
use crate::supervisor::server::{Flow, Server};
use crate::supervisor::stop::{Until, Waiting};
use crate::supervisor::strategy::{affected, auto_shutdown, should_restart, Strategy};
use crate::supervisor::table::{Child, Due};

impl Server {
    pub(super) fn on_exit(&mut self, pid: Pid, reason: ExitReason) -> Flow {
        // A notice from an incarnation we no longer track (stopped, replaced, abandoned,
        // or one that failed to start) is stale: it changes nothing.
        let Some((seq, run)) = self.take_exited(pid, &reason) else {
            return Flow::Continue;
        };
        let spec = &self.children[&seq].spec;
        let restart = should_restart(spec.restart, &reason);
        let id = spec.id.clone();
        let temporary = spec.restart == Restart::Temporary;
        let significant = spec.significant;
        // A thread a group restart can reuse waits for that; any other has sent this
        // notice as its last act and is let go of.
        let reuse = if restart && run.resumable {
            Some(run)
        } else {
            self.let_go(run);
            None
        };
        if !matches!(reason, ExitReason::Panicked(_) | ExitReason::Failed(_)) {
            // Crashes were reported once already, by the child's own thread.
            log::debug!("{}: child {id:?} ({pid}) exited: {reason}", self.cfg.label);
        }
        if !restart && (temporary || self.is_dynamic()) {
            // Gone before it is reported: whoever sees the exit finds its place free.
            self.remove(seq);
        }
        // Only a significant child's id is needed after the event (for its log line).
        let significant = significant.then(|| id.clone());
        self.emit(Event::ChildExited { id, pid, reason });
        if restart {
            return self.restart(seq, reuse);
        }
        match significant {
            Some(id) if auto_shutdown(self.cfg.auto_shutdown, self.significant_alive()) => {
                log::info!(
                    "{}: significant child {id:?} exited; shutting down ({:?})",
                    self.cfg.label,
                    self.cfg.auto_shutdown
                );
                Flow::Exit
            }
            _ => Flow::Continue,
        }
    }

    /// Whether a significant child still runs, or waits to be restarted.
    fn significant_alive(&self) -> bool {
        let alive = |c: &Child| c.run.is_some() || c.status == ChildStatus::Restarting;
        self.children
            .values()
            .any(|c| c.spec.significant && alive(c))
    }

    /// A child restarted itself on its own thread: record the new pid, report both steps.
    pub(super) fn on_local_restart(&mut self, old: Pid, new: Pid, reason: ExitReason, at: Instant) {
        // Stale if the child was stopped, removed or abandoned meanwhile: its thread
        // reports its final exit on its own.
        if let Some(id) = self.record_local_restart(old, new, &reason, at) {
            self.emit_restart(id, old, new, reason);
        }
    }

    pub(super) fn emit_restart(&mut self, id: Arc<str>, old: Pid, new: Pid, reason: ExitReason) {
        log::info!(
            "{}: child {id:?} restarted as {new} on its own thread ({old} exited: {reason})",
            self.cfg.label
        );
        self.emit_with(|| Event::ChildExited {
            id: id.clone(),
            pid: old,
            reason,
        });
        self.emit_with(|| Event::ChildRestarted { id, pid: new });
    }

    /// Child `seq` exited and is to be restarted (with, for group strategies, its
    /// group): counts once toward intensity — on exceeding it, tells the loop to stop
    /// everything and exit — then restarts now, or after its backoff.
    ///
    /// `reuse` is the dead child's thread if it waits to be reused.
    pub(super) fn restart(&mut self, seq: u64, reuse: Option<Spawned>) -> Flow {
        if !self.count_restart() {
            if let Some(run) = reuse {
                run.finish();
            }
            return Flow::Exit;
        }
        match self.backoff_delay(seq) {
            Some(delay) => {
                if let Some(run) = reuse {
                    self.let_go(run);
                }
                self.schedule_restart(seq, delay, false);
            }
            None => self.restart_now(seq, reuse),
        }
        Flow::Continue
    }

    /// Another try at a restart that failed: counts toward intensity like the first.
    pub(super) fn retry_restart(&mut self, seq: u64) -> Flow {
        if !self.count_restart() {
            return Flow::Exit;
        }
        self.restart_now(seq, None);
        Flow::Continue
    }

    /// Adds a restart to the intensity window; `false` (having said so) when that
    /// exceeds it.
    fn count_restart(&mut self) -> bool {
        let within = self.intensity.lock().add_restart(Instant::now());
        if !within {
            self.give_up();
        }
        within
    }

    /// How long child `seq`'s restart waits, by its backoff (`None`: no backoff, now).
    /// A child that ran long enough starts over at the initial delay.
    fn backoff_delay(&mut self, seq: u64) -> Option<Duration> {
        let child = self.children.get_mut(&seq)?;
        let backoff = child.spec.backoff.as_ref()?;
        // Taken, so that only a start that ran can reset the count (a failed restart
        // leaves none behind).
        let ran = child
            .started_at
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        if backoff.resets(ran) {
            child.attempts = 0;
        }
        let delay = backoff.jittered(child.attempts);
        child.attempts = child.attempts.saturating_add(1);
        Some(delay)
    }

    /// Stops child `seq`'s group now and has the loop restart it after `delay` (see
    /// `run_due_restarts`); `counts`: the restart counts toward intensity when it runs.
    fn schedule_restart(&mut self, seq: u64, delay: Duration, counts: bool) {
        let group = self.group_of(seq);
        for (_, run) in self.stop_group(seq, &group) {
            self.let_go(run);
        }
        // A delay too long to represent: as good as never (until a stop or a request).
        let at = Instant::now().checked_add(delay).unwrap_or_else(far_future);
        let pos = group.iter().position(|&k| k == seq).unwrap_or(0);
        self.mark_due(seq, Due { at, counts }, &group[pos + 1..]);
        self.timers.insert((at, seq));
        let id = self.children[&seq].spec.id.clone();
        log::info!(
            "{}: child {id:?} restarts in {delay:?} (backoff)",
            self.cfg.label
        );
        self.emit(Event::RestartScheduled { id, delay });
    }

    /// Runs the restarts whose backoff is over (skipping stale timers: a child stopped,
    /// removed or restarted meanwhile).
    pub(super) fn run_due_restarts(&mut self) -> Flow {
        if self.timers.is_empty() {
            return Flow::Continue;
        }
        let now = Instant::now();
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(due) = self.take_due(seq, at) else {
                continue;
            };
            if due.counts {
                if let Flow::Exit = self.retry_restart(seq) {
                    return Flow::Exit;
                }
            } else {
                self.restart_now(seq, None);
            }
        }
        Flow::Continue
    }

    /// The members of child `seq`'s group (itself, for one_for_one), in start order.
    fn group_of(&self, seq: u64) -> Vec<u64> {
        let order: Vec<u64> = self.children.keys().copied().collect();
        let pos = order
            .iter()
            .position(|&k| k == seq)
            .expect("restarting child exists");
        order[affected(self.cfg.strategy(), pos, order.len())].to_vec()
    }

    /// Restarts child `seq` and its group now: stops the members still running, starts
    /// them all again.
    fn restart_now(&mut self, seq: u64, reuse: Option<Spawned>) {
        let group = self.group_of(seq);
        let mut parked = self.stop_group(seq, &group);
        if let Some(run) = reuse {
            parked.insert(seq, run);
        }
        self.start_group(&group, &mut parked);
        // Threads kept for members that were not started after all (a failed restart).
        for (_, run) in parked {
            run.finish();
        }
    }

    /// Intensity exceeded: say so; the loop then stops everything.
    pub(super) fn give_up(&mut self) {
        let (restarts, period) = (self.cfg.intensity, self.cfg.period);
        log::error!(
            "{}: restart intensity exceeded ({restarts} in {period:?}); stopping",
            self.cfg.label
        );
        self.emit(Event::IntensityExceeded { restarts, period });
        if let Some(end) = &self.end {
            *end.lock() = Some(SupervisorError::IntensityExceeded { restarts, period });
        }
    }

    /// Stops the members of `group` other than `failed`, in reverse start order; a
    /// temporary bystander is dropped. Returns the threads that wait to be resumed.
    pub(super) fn stop_group(&mut self, failed: u64, group: &[u64]) -> HashMap<u64, Spawned> {
        let mut parked = HashMap::new();
        let stops: Vec<u64> = group
            .iter()
            .rev()
            .copied()
            .filter(|&k| k != failed)
            .collect();
        for (i, &k) in stops.iter().enumerate() {
            self.hand_on(k, stops.get(i + 1).copied());
            let temporary = self.children[&k].spec.restart == Restart::Temporary;
            if let Some(run) = self.stop_child_keeping(k, !temporary) {
                parked.insert(k, run);
            }
            if temporary {
                self.remove(k);
            }
        }
        parked
    }

    /// Starts what is left of `group` in start order, resuming parked threads. A member
    /// that fails to start is left `Restarting` (retried through the inbox), and the rest
    /// of the group waits for it.
    pub(super) fn start_group(&mut self, group: &[u64], parked: &mut HashMap<u64, Spawned>) {
        let group: Vec<u64> = group
            .iter()
            .copied()
            .filter(|k| self.children.contains_key(k))
            .collect();
        for (i, &k) in group.iter().enumerate() {
            let spec = self.children[&k].spec.clone();
            let history = self.children[&k].next_history();
            let started = match parked.remove(&k) {
                Some(mut run) => {
                    run.resume(spec.id.clone(), history);
                    Ok(Some(run))
                }
                // A restart waits for readiness, as OTP's restart waits for `init`.
                None => self.spawn_child(&spec, history, true),
            };
            match started {
                Ok(Some(run)) => {
                    let pid = run.pid;
                    self.set_running(k, run);
                    let label = &self.cfg.label;
                    match &self.children[&k].last_exit {
                        Some(why) => {
                            log::info!(
                                "{label}: child {:?} restarted as {pid} (exited: {why})",
                                spec.id
                            )
                        }
                        None => log::info!("{label}: child {:?} restarted as {pid}", spec.id),
                    }
                    self.emit(Event::ChildRestarted { id: spec.id, pid });
                }
                // It declined (OTP's `ignore`): left `Stopped`, the group goes on; a
                // dynamic supervisor keeps nothing of it (it holds no pid, so nothing
                // could terminate it, and it would hold its place for good).
                Ok(None) => {
                    log::info!(
                        "{}: child {:?} declined to restart",
                        self.cfg.label,
                        spec.id
                    );
                    if self.is_dynamic() {
                        self.remove(k);
                    }
                }
                Err(e) => {
                    log::warn!("{}: restart of {:?} failed: {e}", self.cfg.label, spec.id);
                    self.emit(Event::RestartFailed {
                        id: spec.id.clone(),
                        error: e.to_string(),
                    });
                    match self.backoff_delay(k) {
                        // Tried again after its backoff (counted then).
                        Some(delay) => self.schedule_restart(k, delay, true),
                        None => {
                            self.mark_restarting(k, &group[i + 1..]);
                            // Back to the loop before trying again, so that requests
                            // are served.
                            let _ = self.inbox.send(Msg::RetryRestart { seq: k });
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Spawns a child; with `await_ready`, waits until it is started (as its readiness
    /// says), else counts it started once spawned. `Ok(None)`: it declined to start
    /// (`Context::ignore`) and has been stopped.
    pub(super) fn spawn_child(
        &mut self,
        spec: &ChildSpec,
        history: History,
        await_ready: bool,
    ) -> Result<Option<Spawned>, StartError> {
        let mut run = runner::spawn(SpawnArgs {
            id: spec.id.clone(),
            thread_name: spec.thread_name(&self.cfg.label),
            body: spec.body.clone(),
            stack_size: spec.stack_size,
            wants_ready: spec.readiness != Readiness::Spawned,
            history,
            deferred: false,
            launch: Launch::BySupervisor {
                notify: self.inbox.clone(),
                permit: self.permit(spec),
                resumable: self.resumable(spec),
            },
        })
        .map_err(|source| StartError::Spawn {
            id: spec.id.to_string(),
            source,
        })?;
        let ready = run.ready.take();
        let Some(ready) = ready.filter(|_| await_ready) else {
            return Ok(Some(run));
        };
        let until = match spec.readiness {
            Readiness::Within(d) => Until::after(Instant::now(), d),
            _ => Until::Forever,
        };
        let mut waiting = Waiting::new(spec.id.clone(), run, until);
        let report = self.await_ready(&mut waiting, &ready);
        match report {
            Some(Some(ReadyMsg::Ready)) => Ok(Some(waiting.run)),
            Some(Some(ReadyMsg::Ignored)) => {
                // Its exit, if any, stays queued: the stop below takes it.
                self.stop_waiting(waiting, spec.shutdown, false);
                Ok(None)
            }
            None => {
                let pid = waiting.run.pid;
                // Its exit, if any, stays queued: the stop below takes it.
                self.stop_waiting(waiting, spec.shutdown, false);
                Err(not_ready(&self.cfg.label, spec, pid))
            }
            Some(report) => {
                waiting.run.finish();
                Err(not_started(spec.id.to_string(), report))
            }
        }
    }

    /// Whether `spec`'s crashes may be restarted on the child's own thread, and with
    /// what leave.
    pub(super) fn permit(&self, spec: &ChildSpec) -> Option<RestartPermit> {
        if self.cfg.strategy() != Strategy::OneForOne {
            return None;
        }
        permit(spec, &self.intensity)
    }

    /// Whether `spec`'s thread may be reused by group restarts: plain workers under
    /// one_for_all or rest_for_one (one_for_one restarts on the child's own thread
    /// already), with no readiness wait and no request for a fresh thread.
    pub(super) fn resumable(&self, spec: &ChildSpec) -> bool {
        self.cfg.strategy() != Strategy::OneForOne
            && spec.kind == ChildKind::Worker
            && spec.readiness == Readiness::Spawned
            && !spec.fresh_thread
    }
}

/// The leave for a plain worker (no readiness wait, no fresh thread) to restart itself
/// on its own thread: its restart type says so and the restart fits the intensity window.
/// A restart that would exceed the window is left to the supervisor.
pub(super) fn permit(spec: &ChildSpec, intensity: &Arc<Mutex<Intensity>>) -> Option<RestartPermit> {
    let eligible = spec.kind == ChildKind::Worker
        && spec.readiness == Readiness::Spawned
        && !spec.fresh_thread
        && spec.backoff.is_none();
    eligible.then(|| RestartPermit {
        restart: spec.restart,
        window: intensity.clone(),
    })
}

impl RestartWindow for Mutex<Intensity> {
    fn permits(&self, restart: Restart, reason: &ExitReason) -> bool {
        should_restart(restart, reason) && self.lock().try_add_restart(Instant::now())
    }
}

/// An instant as far ahead as can be represented (about a century): for delays past it.
fn far_future() -> Instant {
    let now = Instant::now();
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(century).unwrap_or(now)
}
