//! The session manager's tables (sessions, projects, pids), and the exit hook that empties
//! a session's rows in its supervisor's own thread, before anyone can observe its exit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::pid::{self, ExitHook};
use crate::session::info::{SessionId, SessionInfo};
use crate::{Pid, Registry, StartError, SupervisorRef};

/// The tables a session's exit must clean, shared with the exit hook.
pub(super) struct Table {
    pub(super) state: Mutex<State>,
    /// Session id to its per-session supervisor (the entry goes with that process).
    pub(super) registry: Registry<SessionId, SupervisorRef>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) sessions: HashMap<SessionId, Record>,
    pub(super) projects: HashMap<PathBuf, SessionId>,
    pub(super) by_pid: HashMap<Pid, SessionId>,
    pub(super) next_seq: u64,
}

pub(super) struct Record {
    pub(super) info: SessionInfo,
    pub(super) seq: u64,
    pub(super) restarts: Arc<AtomicU32>,
}

impl Record {
    pub(super) fn snapshot(&self) -> SessionInfo {
        SessionInfo {
            restart_count: self.restarts.load(Ordering::Relaxed),
            ..self.info.clone()
        }
    }
}

impl State {
    /// Removes session `id`'s record if it is still the one reserved as `seq`: a failed
    /// start must not remove a live session that took the same id since.
    pub(super) fn remove_own(&mut self, id: SessionId, seq: u64) {
        if self.sessions.get(&id).is_some_and(|rec| rec.seq == seq) {
            self.remove(id);
        }
    }

    pub(super) fn remove(&mut self, id: SessionId) {
        if let Some(rec) = self.sessions.remove(&id) {
            if self.projects.get(&rec.info.project_path) == Some(&id) {
                self.projects.remove(&rec.info.project_path);
            }
            if let Some(pid) = rec.info.pid {
                self.by_pid.remove(&pid);
            }
        }
    }
}

impl ExitHook for Table {
    /// Runs in the per-session supervisor's thread as it exits, before anyone can observe
    /// the exit: the session disappears from every table at once.
    fn on_exit(&self, pid: Pid, _tokens: Vec<u64>) {
        let mut state = self.state.lock();
        if let Some(id) = state.by_pid.remove(&pid) {
            state.remove(id);
        }
    }
}

impl Table {
    /// Records that session `id` runs as `pid`: the exit hook, the pid index, the registry.
    pub(super) fn attach(
        &self,
        id: SessionId,
        seq: u64,
        pid: Pid,
        sup: SupervisorRef,
        hook: &Weak<dyn ExitHook>,
    ) -> Result<(), StartError> {
        {
            let mut state = self.state.lock();
            let Some(rec) = state.sessions.get_mut(&id).filter(|rec| rec.seq == seq) else {
                return Err(StartError::InvalidSpec(format!(
                    "session {id} is no longer reserved"
                )));
            };
            rec.info.pid = Some(pid);
            state.by_pid.insert(pid, id);
        }
        let key = pid::hook_key_of(hook);
        if !pid::add_exit_token(pid, key, hook, 0) {
            return Err(StartError::InvalidSpec(
                "session process already exited".into(),
            ));
        }
        self.registry
            .register_for(pid, id, sup)
            .map_err(|e| StartError::InvalidSpec(format!("session {id}: {e}")))
    }
}
