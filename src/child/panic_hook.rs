//! Where supervised panics are printed: always logged once by the runner; optionally kept
//! off stderr ([`route_panics_to_log`]).

use std::cell::{Cell, RefCell};
use std::panic;
use std::sync::Once;

thread_local! {
    /// Whether this thread is a steadfast process thread.
    pub(crate) static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened, for its log line (set only once
    /// [`route_panics_to_log`] installed its hook).
    pub(crate) static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Routes panics of supervised threads to `log` only, keeping them off stderr.
///
/// steadfast always logs each supervised panic once, at `error` level, with the child id
/// and message. By default the standard panic hook *also* prints it to stderr (and, with
/// `RUST_BACKTRACE=1`, captures a backtrace). After this call, panics on steadfast's
/// process threads skip the previous hook — the log line gains the panic's source
/// location instead — while panics on every other thread go to the previous hook as before.
///
/// It is off by default because the panic hook is process-global: a library should not
/// silence a program's panics unless the program asks. Calling it more than once installs
/// the hook once.
///
/// # Examples
///
/// ```
/// steadfast::route_panics_to_log();
/// ```
pub fn route_panics_to_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if SUPERVISED.with(|s| s.get()) {
                // The location is only for the log line: no formatting when nobody logs.
                if !log::log_enabled!(log::Level::Error) {
                    return;
                }
                if let Some(loc) = info.location() {
                    let at = format!("{}:{}:{}", loc.file(), loc.line(), loc.column());
                    PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(at));
                }
            } else {
                previous(info);
            }
        }));
    });
}
