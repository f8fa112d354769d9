//! The session manager: reservations, the per-session supervisors, and clean-up in the
//! dying thread.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

// The session layer is built on the public API, plus two crate-internal parts: a handle
// on no supervisor (`Address::detached`, what a child-mode manager holds before its first
// start), and the process
// table (`pid`). Its exit hooks empty a session's tables in its supervisor's own thread as
// it exits, before the exit can be observed; they are not public because a hook runs
// inside a process's exit sequence, before its monitors fire and its supervisor hears of
// it, where code that blocked or panicked would hold up or break that exit. `shutdown`
// also asks the table whether its caller runs inside the tree (`pid::is_within`).
use crate::exit::panic_message;
use crate::pid::{self, ExitHook, Pid};
use crate::server::{Serve, ServerRef};
use crate::session::builder::SessionManagerBuilder;
use crate::session::info::{
    normalize_project, NewSession, SessionError, SessionId, SessionInfo, SessionStatus,
};
use crate::session::table::{Record, State, Table};
use crate::supervisor::Address;
use crate::{
    registry, ChildSpec, DynamicSupervisor, DynamicSupervisorBuilder, DynamicSupervisorRef, Event,
    Registry, Restart, Shutdown, StartError, Strategy, Supervisor, SupervisorError, SupervisorRef,
};

impl SessionManagerBuilder {
    /// Starts the session supervisor, owned by the returned manager.
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidSpec`] for a limit of zero, a zero period or an empty name;
    /// [`StartError::NameTaken`]; [`StartError::Spawn`].
    pub fn start(self) -> Result<SessionManager, StartError> {
        let inner = self.inner(false)?;
        let sessions = inner.cfg.supervisor(&inner).start()?;
        *inner.sessions.lock() = Some(sessions);
        Ok(SessionManager { inner })
    }

    /// The session supervisor as a child of your own tree (the original system's "add
    /// it to the application supervision tree"), and the manager to use it by.
    ///
    /// The parent restarts it like any supervisor child; the manager (and
    /// [`SessionManager::whereis`], by the name) then reaches the new one. Sessions do
    /// not survive that restart: they stop with the supervisor, and the tables forget
    /// them as they exit.
    ///
    /// # Errors
    ///
    /// [`StartError::InvalidSpec`] as for [`start`](SessionManagerBuilder::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::session::{NewSession, SessionManager};
    /// use steadfast::Supervisor;
    ///
    /// let (spec, sessions) = SessionManager::builder()
    ///     .name("doc-app.sessions")
    ///     .child_spec("sessions")?;
    /// let app = Supervisor::builder().child(spec).start()?;
    /// let id = sessions.create_session(NewSession::new("docs", "/src/docs"))?;
    /// assert!(SessionManager::whereis("doc-app.sessions").unwrap().session_running(id));
    /// # drop(app);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn child_spec(
        self,
        id: impl Into<String>,
    ) -> Result<(ChildSpec, SessionManager), StartError> {
        let inner = self.inner(true)?;
        // The spec keeps the manager alive as long as the parent keeps the spec.
        let builder = inner.cfg.supervisor(&inner);
        let keep = inner.clone();
        let spec = ChildSpec::supervisor(id, builder.on_start(move |sup| keep.attach(sup)));
        Ok((spec, SessionManager { inner }))
    }

    pub(super) fn inner(self, child: bool) -> Result<Arc<Inner>, StartError> {
        if self.max_sessions == 0 {
            return Err(StartError::InvalidSpec(
                "max_sessions must be at least 1".into(),
            ));
        }
        if self.period.is_zero() {
            return Err(StartError::InvalidSpec("period must not be zero".into()));
        }
        let table = Arc::new(Table {
            state: Mutex::new(State::default()),
            registry: Registry::new(),
        });
        let hook: Weak<dyn ExitHook> = Arc::downgrade(&table) as Weak<Table>;
        Ok(Arc::new_cyclic(|me| Inner {
            handle: RwLock::new(DynamicSupervisorRef(Address::detached(true))),
            sessions: Mutex::new(None),
            me: me.clone(),
            child,
            table,
            hook,
            cfg: self,
        }))
    }

    /// The session supervisor's settings; each start attaches it to `inner`.
    ///
    /// The limit is the session table's, checked with the id and the project under one
    /// lock. Not also `max_children`: a session leaves the table as its process exits, a
    /// moment before the supervisor reads that exit, and a create in that moment must not
    /// be refused.
    pub(super) fn supervisor(&self, inner: &Arc<Inner>) -> DynamicSupervisorBuilder {
        let mut dynamic = DynamicSupervisor::builder();
        if let Some(name) = &self.name {
            dynamic = dynamic.name(format!("{name}.sessions"));
        }
        let weak = Arc::downgrade(inner);
        dynamic.on_start(move |sup| match weak.upgrade() {
            Some(inner) => inner.attach(sup),
            None => Ok(()),
        })
    }
}

impl Inner {
    /// A (re)started session supervisor: the manager's calls go to it from now on, and
    /// the manager's name points at it (registered for its pid: gone with it).
    pub(super) fn attach(&self, sup: &DynamicSupervisorRef) -> Result<(), StartError> {
        *self.handle.write() = sup.clone();
        let Some(name) = &self.cfg.name else {
            return Ok(());
        };
        let weak = WeakManager(self.me.clone());
        match registry().register_value_for(sup.pid(), name.clone(), weak) {
            Ok(()) => Ok(()),
            Err(
                crate::RegistryError::AlreadyRegistered(holder)
                | crate::RegistryError::NotAlive(holder),
            ) => Err(StartError::NameTaken {
                name: name.clone(),
                holder,
            }),
            // A registration returns no other error.
            Err(e) => Err(StartError::InvalidSpec(e.to_string())),
        }
    }

    /// The session supervisor running now.
    fn sup(&self) -> DynamicSupervisorRef {
        self.handle.read().clone()
    }
}

/// Runs many concurrent work-sessions, each a small supervision tree; see the
/// [module docs](crate::session).
///
/// `SessionManager` is `Send + Sync` and cheap to clone: clones share one manager. Every
/// method is safe to call from many threads at once. When the last clone is dropped the
/// manager shuts down every session (as [`shutdown`](SessionManager::shutdown) does).
#[derive(Clone)]
pub struct SessionManager {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// The session supervisor running now (a handle on none before the first start).
    pub(super) handle: RwLock<DynamicSupervisorRef>,
    /// The owned session supervisor, taken by `shutdown` (`None` when it is a child of
    /// the user's tree: see `child_spec`).
    pub(super) sessions: Mutex<Option<DynamicSupervisor>>,
    pub(super) me: Weak<Inner>,
    /// Whether the session supervisor is a child of the user's tree.
    pub(super) child: bool,
    pub(super) table: Arc<Table>,
    pub(super) hook: Weak<dyn ExitHook>,
    pub(super) cfg: SessionManagerBuilder,
}

/// The global registry's value for a named manager.
#[derive(Clone)]
struct WeakManager(Weak<Inner>);

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.inner.table.state.lock().sessions.len())
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// Settings for a new manager.
    pub fn builder() -> SessionManagerBuilder {
        SessionManagerBuilder::default()
    }

    /// The live manager registered under `name`, if any.
    pub fn whereis(name: &str) -> Option<SessionManager> {
        let (_, weak) = registry().lookup_as::<WeakManager>(name)?;
        weak.0.upgrade().map(|inner| SessionManager { inner })
    }

    /// Creates a session and starts its tree; returns its id once every child started.
    ///
    /// Checks, in this order: the session limit, a duplicate id, the project already open.
    /// Then the per-session supervisor (one_for_all, temporary) starts under the session
    /// supervisor, registers under the session id, and the status goes from `Initializing`
    /// to `Active`. A session that crashes right after starting is removed as any other;
    /// its id may then be unknown by the time this returns.
    ///
    /// # Errors
    ///
    /// [`SessionError::Invalid`] (empty name or project path),
    /// [`SessionError::SessionLimitReached`], [`SessionError::SessionExists`],
    /// [`SessionError::ProjectAlreadyOpen`], [`SessionError::FactoryPanicked`],
    /// [`SessionError::InvalidChildren`], [`SessionError::Start`] (a child failed to
    /// start), [`SessionError::Supervisor`] (the manager was shut down). On any error
    /// nothing is left behind: no metadata, no registry entry, no thread.
    pub fn create_session(&self, new: NewSession) -> Result<SessionId, SessionError> {
        if new.name.trim().is_empty() {
            return Err(SessionError::Invalid("name must not be empty".into()));
        }
        if new.project_path.as_os_str().is_empty() {
            return Err(SessionError::Invalid(
                "project path must not be empty".into(),
            ));
        }
        let id = new.id.unwrap_or_else(SessionId::new_v4);
        let project = normalize_project(&new.project_path);
        let (info, restarts, seq) = self.reserve(id, new, project)?;
        match self.start_tree(&info, seq, restarts) {
            Ok(pid) => {
                let mut state = self.inner.table.state.lock();
                if let Some(rec) = state.sessions.get_mut(&id) {
                    if rec.info.pid == Some(pid) {
                        rec.info.status = SessionStatus::Active;
                    }
                }
                Ok(id)
            }
            Err(e) => {
                self.inner.table.state.lock().remove_own(id, seq);
                Err(e)
            }
        }
    }

    /// Takes a slot, the id and the project, atomically; returns the session's first info
    /// and the reservation's sequence number (what tells this record from a later one
    /// under the same id).
    fn reserve(
        &self,
        id: SessionId,
        new: NewSession,
        project: PathBuf,
    ) -> Result<(SessionInfo, Arc<AtomicU32>, u64), SessionError> {
        let mut state = self.inner.table.state.lock();
        let limit = self.inner.cfg.max_sessions;
        if state.sessions.len() >= limit {
            return Err(SessionError::SessionLimitReached { limit });
        }
        if state.sessions.contains_key(&id) {
            return Err(SessionError::SessionExists(id));
        }
        if state.projects.contains_key(&project) {
            return Err(SessionError::ProjectAlreadyOpen(project));
        }
        let info = SessionInfo {
            id,
            name: new.name,
            project_path: project.clone(),
            status: SessionStatus::Initializing,
            created_at: SystemTime::now(),
            pid: None,
            restart_count: 0,
            metadata: new.metadata,
        };
        let restarts = Arc::new(AtomicU32::new(0));
        let seq = state.next_seq;
        state.next_seq += 1;
        state.projects.insert(project, id);
        state.sessions.insert(
            id,
            Record {
                info: info.clone(),
                seq,
                restarts: restarts.clone(),
            },
        );
        Ok((info, restarts, seq))
    }

    /// Builds and starts the per-session supervisor; returns its pid.
    fn start_tree(
        &self,
        info: &SessionInfo,
        seq: u64,
        restarts: Arc<AtomicU32>,
    ) -> Result<Pid, SessionError> {
        let factory = &self.inner.cfg.factory;
        let children = panic::catch_unwind(AssertUnwindSafe(|| factory(info))).map_err(|p| {
            let msg = panic_message(&*p);
            log::error!("session {}: children factory panicked: {msg}", info.id);
            SessionError::FactoryPanicked(msg)
        })?;
        let (id, table, hook) = (info.id, self.inner.table.clone(), self.inner.hook.clone());
        let after_exit = AtomicBool::new(false);
        let builder = Supervisor::builder()
            .strategy(Strategy::OneForAll)
            .intensity(self.inner.cfg.intensity, self.inner.cfg.period)
            .children(children)
            .on_event(move |e| count_restarts(e, &restarts, &after_exit))
            // Tie the session's tables to this process before any child starts, so that
            // however it ends, its exit cleans them.
            .on_start(move |me| table.attach(id, seq, me.pid(), me.clone(), &hook));
        let label = format!("session-{}", &info.id.to_string()[..8]);
        let spec = ChildSpec::supervisor(label, builder)
            .restart(Restart::Temporary)
            .shutdown(Shutdown::Timeout(self.inner.cfg.shutdown));
        self.inner.sup().start_child(spec).map_err(|e| match e {
            SupervisorError::InvalidSpec(m) => SessionError::InvalidChildren(m),
            SupervisorError::StartFailed(StartError::Nested { source, .. }) => match *source {
                StartError::InvalidSpec(m) => SessionError::InvalidChildren(m),
                source => SessionError::Start(source),
            },
            SupervisorError::StartFailed(other) => SessionError::Start(other),
            other => SessionError::Supervisor(other),
        })
    }

    /// Stops a session's tree gracefully (its shutdown timeout, then abandonment) and
    /// removes every trace of it: metadata, registry entry, child count.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] for an unknown or already terminated id (or one whose
    /// tree has not started running yet); [`SessionError::Supervisor`] if the manager was
    /// shut down.
    pub fn terminate_session(&self, id: SessionId) -> Result<(), SessionError> {
        let pid = self.session_pid(id)?;
        match self.inner.sup().terminate_child(pid) {
            Ok(()) => Ok(()),
            Err(SupervisorError::NotFound) => Err(SessionError::NotFound(id)),
            Err(e) => Err(SessionError::Supervisor(e)),
        }
    }

    /// Every session, oldest first.
    pub fn list_sessions(&self) -> Vec<SessionInfo> {
        let state = self.inner.table.state.lock();
        let mut recs: Vec<&Record> = state.sessions.values().collect();
        recs.sort_by_key(|r| r.seq);
        recs.into_iter().map(Record::snapshot).collect()
    }

    /// What the manager knows of one session.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`].
    pub fn session_info(&self, id: SessionId) -> Result<SessionInfo, SessionError> {
        let state = self.inner.table.state.lock();
        state
            .sessions
            .get(&id)
            .map(Record::snapshot)
            .ok_or(SessionError::NotFound(id))
    }

    /// The pid of a session's supervisor.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] (also while its tree has not started running).
    pub fn session_pid(&self, id: SessionId) -> Result<Pid, SessionError> {
        let state = self.inner.table.state.lock();
        state
            .sessions
            .get(&id)
            .and_then(|r| r.info.pid)
            .ok_or(SessionError::NotFound(id))
    }

    /// The design contract's name for [`session_info`](SessionManager::session_info).
    ///
    /// # Errors
    ///
    /// As `session_info`.
    #[deprecated(
        since = "0.1.0",
        note = "use `session_info`, named as the other session_* accessors"
    )]
    pub fn get_session_info(&self, id: SessionId) -> Result<SessionInfo, SessionError> {
        self.session_info(id)
    }

    /// The design contract's name for [`session_pid`](SessionManager::session_pid).
    ///
    /// # Errors
    ///
    /// As `session_pid`.
    #[deprecated(
        since = "0.1.0",
        note = "use `session_pid`, named as the other session_* accessors"
    )]
    pub fn get_session_pid(&self, id: SessionId) -> Result<Pid, SessionError> {
        self.session_pid(id)
    }

    /// Whether the session's tree is running.
    pub fn session_running(&self, id: SessionId) -> bool {
        self.inner.table.registry.lookup(&id).is_some()
    }

    /// The session's supervisor, for its admin API.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`].
    pub fn session_supervisor(&self, id: SessionId) -> Result<SupervisorRef, SessionError> {
        self.inner
            .table
            .registry
            .lookup(&id)
            .map(|(_, sup)| sup)
            .ok_or(SessionError::NotFound(id))
    }

    /// The pid of one of the session's children (its agent, say).
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] for an unknown session; [`SessionError::ChildNotFound`]
    /// while the child does not run (it may be restarting).
    pub fn session_child(&self, id: SessionId, child_id: &str) -> Result<Pid, SessionError> {
        let sup = self.session_supervisor(id)?;
        let children = sup
            .which_children()
            .map_err(|_| SessionError::NotFound(id))?;
        children
            .iter()
            .find(|c| &*c.id == child_id)
            .and_then(|c| c.pid)
            .ok_or_else(|| SessionError::ChildNotFound {
                session: id,
                child: child_id.to_owned(),
            })
    }

    /// How many sessions are alive (or starting).
    pub fn count(&self) -> usize {
        self.inner.table.state.lock().sessions.len()
    }

    /// The session supervisor's handle (its children are the per-session supervisors).
    /// For a manager made by [`child_spec`](SessionManagerBuilder::child_spec), the one
    /// running now (its requests fail with `NoSupervisor` before the first start).
    pub fn supervisor(&self) -> DynamicSupervisorRef {
        self.inner.sup()
    }

    /// A server among a session's children, by its child id: the session's manager, its
    /// state, its agent — whatever the children factory made with
    /// [`ServerSpec`](crate::server::ServerSpec).
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`], [`SessionError::ChildNotFound`] (no such child, it is
    /// restarting, or it is not a server of type `S`).
    pub fn server<S: Serve>(
        &self,
        id: SessionId,
        child_id: &str,
    ) -> Result<ServerRef<S>, SessionError> {
        let pid = self.session_child(id, child_id)?;
        ServerRef::from_pid(pid).ok_or_else(|| SessionError::ChildNotFound {
            session: id,
            child: child_id.to_owned(),
        })
    }

    /// Stops every session (all at once, each within the shutdown timeout) and the
    /// session supervisor, and returns once they have stopped. Afterwards
    /// `create_session` fails with [`SessionError::Supervisor`].
    ///
    /// Calls made while another is under way wait for the same end; later calls return
    /// at once. Called from inside a session (where waiting for the end would wait for
    /// the caller itself), it raises the stop and returns.
    pub fn shutdown(&self) {
        if self.inner.child {
            // The parent owns the session supervisor: end the sessions, leave it be.
            for info in self.list_sessions() {
                let _ = self.terminate_session(info.id);
            }
            return;
        }
        let sessions = self.inner.sessions.lock().take();
        match sessions {
            Some(sessions) => {
                let _ = sessions.shutdown();
            }
            None => {
                let sup = self.inner.sup().pid();
                let inside = Pid::current_if_any().is_some_and(|me| pid::is_within(me, sup));
                if !inside {
                    // The session supervisor's exit comes once every session has stopped.
                    let _ = pid::monitor(sup).recv();
                }
            }
        }
    }
}

/// Counts the session's restarts: one per exit its supervisor answered with a restart,
/// however many children that group restart took along (one_for_all stops and restarts
/// them all). The first `ChildRestarted` after exits is the restart they caused; an exit
/// that ends in giving up is followed by none.
fn count_restarts(event: &Event, restarts: &AtomicU32, after_exit: &AtomicBool) {
    match event {
        Event::ChildExited { .. } => after_exit.store(true, Ordering::Relaxed),
        Event::ChildRestarted { .. } if after_exit.swap(false, Ordering::Relaxed) => {
            restarts.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}
