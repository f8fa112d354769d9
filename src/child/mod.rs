//! What a child is ([`spec`]), what it sees ([`context`]), the one place that runs it
//! ([`runner`]) and the cap on live threads ([`cap`]).

pub(crate) mod cap;
pub(crate) mod context;
pub(crate) mod runner;
pub(crate) mod spec;
