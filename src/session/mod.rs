//! The session layer: many concurrent work-sessions, each a small supervision tree.
//!
//! A [`SessionManager`] runs a dynamic *session supervisor* whose children are
//! *per-session supervisors* (one_for_all, temporary), each running the children a factory
//! gives it and registered under its [`SessionId`]. The manager keeps each session's
//! metadata and status, enforces its limits (how many sessions, unique ids, one session per
//! project), and cleans up on stop and on crash: a session whose tree dies is removed from
//! every table — metadata, registry, child count — in the dying thread, before its exit can
//! be observed.
//!
//! ```text
//! session supervisor (dynamic, one_for_one)
//! ├── session 3f2a… (one_for_all, temporary)  ← registered under its SessionId
//! │   ├── agent
//! │   └── state
//! └── session 9c41… (one_for_all, temporary)
//!     ├── agent
//!     └── state
//! ```
//!
//! # Examples
//!
//! ```
//! use steadfast::session::{NewSession, SessionManager, SessionStatus};
//! use steadfast::ChildSpec;
//!
//! let manager = SessionManager::builder()
//!     .max_sessions(10)
//!     .children(|info| {
//!         let name = info.name.clone();
//!         vec![ChildSpec::worker("agent", move |ctx| {
//!             // ... serve the session called `name` until asked to stop
//!             let _ = (&name, ctx.stop_signal().recv());
//!             Ok(())
//!         })]
//!     })
//!     .start()?;
//! let id = manager.create_session(NewSession::new("refactor", "/work/project-a"))?;
//! assert_eq!(manager.session_info(id)?.status, SessionStatus::Active);
//! let agent = manager.session_child(id, "agent")?;
//! assert!(agent.is_alive());
//! manager.terminate_session(id)?;
//! assert!(!manager.session_running(id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod info;
mod manager;
mod table;

pub use builder::SessionManagerBuilder;
pub use info::{NewSession, SessionError, SessionId, SessionInfo, SessionStatus};
pub use manager::SessionManager;
