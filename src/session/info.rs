//! What a session is: its id, what a new one is made of, its status and what it
//! reports, and why a session operation failed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use uuid::Uuid;

use crate::{Pid, StartError, SupervisorError};

/// A session's identity: a UUID (v4 unless the caller chose one).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A fresh random (v4) id.
    pub fn new_v4() -> SessionId {
        SessionId(Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for SessionId {
    fn from(u: Uuid) -> Self {
        SessionId(u)
    }
}

impl FromStr for SessionId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// What to create: a session's name, its project and its metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSession {
    /// The id to use; a fresh UUID v4 when `None`.
    pub id: Option<SessionId>,
    /// A human-readable name; must not be empty or whitespace.
    pub name: String,
    /// The project the session works on. Two live sessions may not hold the same project;
    /// paths are compared after normalisation (`a/b/../c` is `a/c`), and need not exist.
    pub project_path: PathBuf,
    /// Free-form metadata, kept with the session.
    pub metadata: HashMap<String, String>,
}

impl NewSession {
    /// A session called `name` on `project_path`, with a fresh id and no metadata.
    pub fn new(name: impl Into<String>, project_path: impl Into<PathBuf>) -> NewSession {
        NewSession {
            id: None,
            name: name.into(),
            project_path: project_path.into(),
            metadata: HashMap::new(),
        }
    }

    /// Uses `id` instead of a fresh one.
    pub fn with_id(mut self, id: SessionId) -> NewSession {
        self.id = Some(id);
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> NewSession {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Its tree is being started.
    Initializing,
    /// Every child started; it is running.
    Active,
}

/// What the manager knows of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Its id.
    pub id: SessionId,
    /// Its name.
    pub name: String,
    /// Its project, normalised.
    pub project_path: PathBuf,
    /// Initializing or active.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: SystemTime,
    /// The per-session supervisor's pid, once it runs.
    pub pid: Option<Pid>,
    /// How many times the session's supervisor has restarted the session after a crash:
    /// one per crash it handled, however many children the restart took along.
    pub restart_count: u32,
    /// The metadata it was created with.
    pub metadata: HashMap<String, String>,
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// As many sessions as allowed are running (or starting).
    #[error("session limit of {limit} reached")]
    SessionLimitReached {
        /// The configured limit.
        limit: usize,
    },
    /// A session with this id exists.
    #[error("session {0} already exists")]
    SessionExists(SessionId),
    /// A live session already holds this project.
    #[error("project {} is already open in another session", .0.display())]
    ProjectAlreadyOpen(PathBuf),
    /// No session with this id exists (or it has ended).
    #[error("no session {0}")]
    NotFound(SessionId),
    /// The session exists but has no running child with this id.
    #[error("session {session} has no running child {child:?}")]
    ChildNotFound {
        /// The session.
        session: SessionId,
        /// The child id asked for.
        child: String,
    },
    /// The request was malformed: an empty name or project path.
    #[error("invalid session request: {0}")]
    Invalid(String),
    /// The factory's children are unusable (duplicate or empty ids).
    #[error("invalid session children: {0}")]
    InvalidChildren(String),
    /// The children factory panicked; nothing was started.
    #[error("the session children factory panicked: {0}")]
    FactoryPanicked(String),
    /// The session's children failed to start; nothing was left behind.
    #[error("session failed to start: {0}")]
    Start(StartError),
    /// The session supervisor refused or has exited (the manager was shut down).
    #[error("session supervisor: {0}")]
    Supervisor(SupervisorError),
}

/// Normalises a project path so that two spellings of one project compare equal: made
/// absolute against the current directory, `.` dropped, `..` applied lexically, and —
/// where the path exists — symbolic links resolved.
pub(crate) fn normalize_project(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_missing_project_normalise_alike() {
        let a = normalize_project(Path::new("/no/such/root/a/b/../c"));
        let b = normalize_project(Path::new("/no/such/root/a/./c"));
        assert_eq!(a, b);
        assert_eq!(a, PathBuf::from("/no/such/root/a/c"));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let p = normalize_project(Path::new("no-such-dir/x"));
        assert!(p.is_absolute());
        assert!(p.ends_with("no-such-dir/x"));
    }
}
