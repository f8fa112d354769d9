//! Supervisors: the handles ([`Supervisor`], [`SupervisorRef`]), their settings
//! ([`SupervisorBuilder`]), and the private engine that runs them. This file only names
//! the modules and what they export; `ARCHITECTURE.md` has the table of what each one
//! owns and may call.

mod address;
mod answers;
mod builder;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod event;
mod handle;
pub(crate) mod handover;
pub(crate) mod inbox;
pub(crate) mod intensity;
mod launch;
mod restart;
mod start;
mod stop;
pub(crate) mod strategy;
mod table;

pub(crate) use address::{Address, SUPERVISORS};
pub use builder::{Supervisor, SupervisorBuilder};
pub(crate) use builder::{DEFAULT_INTENSITY, DEFAULT_PERIOD};
pub use handle::SupervisorRef;
pub use launch::SupervisorSpec;
pub(crate) use launch::{start_top, Owned};
pub use strategy::{AutoShutdown, Strategy};
