//! Supervisors: the handles ([`Supervisor`], [`SupervisorRef`]), their settings
//! ([`SupervisorBuilder`]), and the private engine that runs them. This file only names
//! the modules and what they export; `ARCHITECTURE.md` has the table of what each one
//! owns and may call.

mod address;
mod ancestry;
mod answers;
mod builder;
pub(crate) mod config;
mod dynamic;
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
mod tracked;

pub(crate) use address::{Address, SUPERVISORS};
pub use ancestry::AnySupervisorRef;
pub use builder::{Supervisor, SupervisorBuilder};
pub use dynamic::{DynamicSupervisor, DynamicSupervisorBuilder, DynamicSupervisorRef};
pub use handle::SupervisorRef;
pub use launch::SupervisorSpec;
pub use strategy::{AutoShutdown, Strategy};
pub use tracked::Tracked;
