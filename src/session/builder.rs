//! [`SessionManagerBuilder`]: a session manager's settings (its start, which makes the
//! manager, is in `manager`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::session::info::SessionInfo;
use crate::ChildSpec;

/// The session supervisors' defaults: 3 restarts in 5 s, as a supervisor's, and 5 s for
/// a session's tree to stop, as a worker's.
pub(super) const DEFAULT_INTENSITY: u32 = 3;
pub(super) const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
pub(super) const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Makes the children every session runs.
pub(super) type Factory = Arc<dyn Fn(&SessionInfo) -> Vec<ChildSpec> + Send + Sync>;

/// Settings for a [`SessionManager`](crate::session::SessionManager); from
/// [`SessionManager::builder`](crate::session::SessionManager::builder).
#[derive(Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SessionManagerBuilder {
    pub(super) max_sessions: usize,
    pub(super) factory: Factory,
    pub(super) intensity: u32,
    pub(super) period: Duration,
    pub(super) shutdown: Duration,
    pub(super) name: Option<String>,
}

impl fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("max_sessions", &self.max_sessions)
            .field("intensity", &self.intensity)
            .field("period", &self.period)
            .field("shutdown", &self.shutdown)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SessionManagerBuilder {
    /// The most sessions alive (or starting) at once (default 100; must be at least 1).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// The children every session runs, made from its [`SessionInfo`](crate::session::SessionInfo) (status
    /// `Initializing`, no pid yet). Default: none.
    ///
    /// # Panics
    ///
    /// A panic in `factory` is caught; `create_session` returns
    /// [`SessionError::FactoryPanicked`](crate::session::SessionError::FactoryPanicked) and
    /// nothing is left behind.
    pub fn children<F>(mut self, factory: F) -> Self
    where
        F: Fn(&SessionInfo) -> Vec<ChildSpec> + Send + Sync + 'static,
    {
        self.factory = Arc::new(factory);
        self
    }

    /// Each session's restart intensity (default 3 in 5 s). A session that exceeds it ends
    /// and is removed.
    pub fn intensity(mut self, restarts: u32, period: Duration) -> Self {
        self.intensity = restarts;
        self.period = period;
        self
    }

    /// How long terminating a session waits for its tree to stop before abandoning it
    /// (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown = timeout;
        self
    }

    /// Registers the manager under `name` in the global registry; find it again with
    /// [`SessionManager::whereis`](crate::session::SessionManager::whereis).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Default for SessionManagerBuilder {
    fn default() -> Self {
        SessionManagerBuilder {
            max_sessions: 100,
            factory: Arc::new(|_| Vec::new()),
            intensity: DEFAULT_INTENSITY,
            period: DEFAULT_PERIOD,
            shutdown: DEFAULT_SHUTDOWN,
            name: None,
        }
    }
}
