//! # steadfast
//!
//! Erlang/OTP-style supervision trees on plain OS threads, with no async runtime.
//!
//! TUTORIAL-PLACEHOLDER
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod child;
mod dynamic;
mod error;
mod exit;
mod pid;
mod registry;
pub mod supervisor;
pub mod wait;

pub use child::context::Context;
pub use child::runner::{live_threads, max_threads, route_panics_to_log, set_max_threads};
pub use child::spec::{ChildKind, ChildSpec, Restart, Shutdown};
pub use dynamic::{DynamicSupervisor, DynamicSupervisorBuilder, DynamicSupervisorRef};
pub use error::{
    ChildError, RecvError, RecvTimeoutError, RegistryError, SpawnError, StartError, Stopped,
    SupervisorError,
};
pub use exit::ExitReason;
pub use pid::{monitor, Pid};
pub use registry::{registry, AnyValue, Registry};
pub use supervisor::event::{ChildCounts, ChildInfo, ChildStatus, Event};
pub use supervisor::{Strategy, Supervisor, SupervisorRef};
