//! What a child is ([`spec`], with its restart [`backoff`]), what it sees ([`context`]), the one place that runs it
//! ([`runner`]), a start run ahead of its thread ([`start_here`]), the cap on live threads
//! ([`cap`]) and where panics are printed ([`panic_hook`]).

pub(crate) mod backoff;
pub(crate) mod briefly;
pub(crate) mod cap;
pub(crate) mod context;
pub(crate) mod launch;
pub(crate) mod panic_hook;
pub(crate) mod reuse;
pub(crate) mod runner;
pub(crate) mod spawned;
pub(crate) mod spec;
pub(crate) mod start_here;
