//! Where supervised panics are reported: once, by the log record [`catch`] writes when a
//! logger takes it, else by the standard panic hook (see [`route_panics_to_log`]).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::exit::{panic_reason, ExitReason};
use crate::pid::Pid;

thread_local! {
    /// Whether this thread is a steadfast process thread.
    pub(crate) static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened, for its log record (set by the hook
    /// when the record is what reports the panic).
    pub(crate) static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The `log` target of the record a supervised panic makes (and that the panic hook
/// asks about): a logger that takes `error` records for it gets each supervised panic
/// once, from steadfast; one that does not (or no logger) leaves it to the standard hook.
pub(crate) const PANIC_TARGET: &str = "steadfast::panic";

/// Routes panics of supervised threads to `log` only, keeping them off stderr even when
/// no logger takes them.
///
/// By default (without this call) each supervised panic is reported exactly once:
///
/// - **with a logger** that takes `error` records for the target `steadfast::panic`
///   (any usual set-up: `env_logger`, `simplelog`, ...), as one `log` record with the
///   child id, the message and the panic's location — and the standard panic hook stays
///   quiet for it, so nothing reaches stderr twice and no backtrace is captured;
/// - **without one**, by the standard panic hook, as for any thread (stderr, with a
///   backtrace under `RUST_BACKTRACE=1`).
///
/// After this call the standard hook stays quiet for supervised panics in both cases
/// (the record still goes to a logger, if any) — for programs that report crashes some
/// other way, such as the event stream. To get the standard hook's output (say, its
/// backtraces) with a logger, do not call it and filter the target `steadfast::panic`
/// out of the logger. Panics on threads that are not steadfast processes always go to the
/// previous hook, untouched. steadfast installs its hook, wrapping the one in place, when
/// it spawns its first process thread (or at this call); a hook the program sets
/// afterwards replaces it, and then decides alone.
///
/// # Examples
///
/// ```
/// steadfast::route_panics_to_log();
/// ```
pub fn route_panics_to_log() {
    LOG_ONLY.store(true, Ordering::Release);
    install();
}

/// Set by [`route_panics_to_log`]: supervised panics never reach the previous hook.
static LOG_ONLY: AtomicBool = AtomicBool::new(false);

/// Installs the panic hook described at [`route_panics_to_log`], once.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !SUPERVISED.with(|s| s.get()) {
                previous(info);
                return;
            }
            let logged = log::log_enabled!(target: PANIC_TARGET, log::Level::Error);
            if !logged && !LOG_ONLY.load(Ordering::Acquire) {
                previous(info);
                return;
            }
            if let (true, Some(loc)) = (logged, info.location()) {
                let at = format!("{}:{}:{}", loc.file(), loc.line(), loc.column());
                PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(at));
            }
        }));
    });
}

/// Runs `f` for process `id` (`pid`), turning a panic into `Panicked` and logging it once.
pub(crate) fn catch<T>(id: &str, pid: Pid, f: impl FnOnce() -> T) -> Result<T, ExitReason> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => {
            // A crash the test kit injected ends with the reason the test chose.
            #[cfg(feature = "testing")]
            if let Some(injected) = payload.downcast_ref::<crate::testing::faults::Injected>() {
                return Err(injected.0.clone());
            }
            let msg = panic_reason(&*payload);
            let location = PANIC_LOCATION.with(|l| l.borrow_mut().take());
            match location {
                Some(at) => {
                    log::error!(target: PANIC_TARGET, "child {id:?} ({pid}) panicked at {at}: {msg}")
                }
                None => log::error!(target: PANIC_TARGET, "child {id:?} ({pid}) panicked: {msg}"),
            }
            // A payload whose own Drop panics must not unwind out of the runner.
            if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(inner);
            }
            Err(ExitReason::Panicked(msg))
        }
    }
}
