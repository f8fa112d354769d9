//! A group restart (one_for_all, rest_for_one): the members other than the one that
//! exited stop in reverse start order, each handing its stop on to the next (the
//! ordered-stop relay, `stop::relay`); then what is left of the group starts again in
//! start order, resuming the threads kept for it.

use std::collections::HashMap;

use crate::child::spawned::Spawned;
use crate::child::spec::Restart;
use crate::supervisor::event::Event;
use crate::supervisor::inbox::Msg;
use crate::supervisor::start::Started;
use crate::supervisor::stop;
use crate::telemetry::note;

use super::Engine;

impl Engine {
    /// Stops the members of `group` other than `failed`, in reverse start order (a
    /// temporary bystander leaves). Returns the threads that wait to be resumed.
    pub(super) fn stop_group(&mut self, failed: u64, group: &[u64]) -> HashMap<u64, Spawned> {
        let mut parked = HashMap::new();
        let stops: Vec<u64> = group
            .iter()
            .rev()
            .copied()
            .filter(|&k| k != failed)
            .collect();
        for (i, &k) in stops.iter().enumerate() {
            stop::relay(&self.table, k, stops.get(i + 1).copied());
            // A temporary bystander leaves: its thread is not kept for a restart.
            let keep = self
                .table
                .get(k)
                .is_some_and(|c| c.spec.restart != Restart::Temporary);
            if let Some(run) = self.stop_child(k, keep) {
                parked.insert(k, run);
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
            .filter(|&k| self.table.get(k).is_some())
            .collect();
        for (i, &k) in group.iter().enumerate() {
            let child = self.table.get(k).expect("filtered above");
            let (spec, history) = (child.spec.clone(), child.next_history());
            let started = match parked.remove(&k) {
                Some(mut run) => {
                    run.resume(spec.id.clone(), history);
                    Ok(Started::Running(run))
                }
                None => self.spawn(&spec, history),
            };
            match started {
                Ok(Started::Running(run)) => {
                    let pid = run.pid;
                    self.table.set_running(k, run);
                    let label = &self.cfg.label;
                    match &self.table.get(k).expect("running").last_exit {
                        Some(why) => {
                            note!(
                                info,
                                "{label}: child {:?} restarted as {pid} (exited: {why})",
                                spec.id
                            )
                        }
                        None => note!(info, "{label}: child {:?} restarted as {pid}", spec.id),
                    }
                    self.emit(Event::ChildRestarted { id: spec.id, pid });
                }
                // It declined (OTP's `ignore`): left `Stopped` (a dynamic supervisor keeps
                // nothing of it: no pid to terminate it by, a place held for good); the
                // group goes on.
                Ok(Started::Declined) => {
                    log::info!(
                        "{}: child {:?} declined to restart",
                        self.cfg.label,
                        spec.id
                    );
                    self.table.forget_if_done(k);
                }
                Err(e) => {
                    note!(
                        warn,
                        "{}: restart of {:?} failed: {e}",
                        self.cfg.label,
                        spec.id
                    );
                    self.emit(Event::RestartFailed {
                        id: spec.id.clone(),
                        error: e.to_string(),
                    });
                    match self.table.backoff_delay(k) {
                        // Tried again after its backoff (counted then).
                        Some(delay) => self.schedule_restart(k, delay, true),
                        None => {
                            self.table.mark_restarting(k, &group[i + 1..]);
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
}
