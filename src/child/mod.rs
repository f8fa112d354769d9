//! What a child is ([`spec`]), what it sees ([`context`]) and the one place that runs it
//! ([`runner`]).

pub(crate) mod context;
pub(crate) mod runner;
pub(crate) mod spec;
