//! How a process ended.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Why a process ended: the outcome of its function, as its supervisor sees it.
///
/// | variant     | when                                                            | abnormal |
/// |-------------|-----------------------------------------------------------------|----------|
/// | `Normal`    | the function returned `Ok(())` without being asked to stop      | no       |
/// | `Shutdown`  | the function returned after its stop signal was raised          | no       |
/// | `ShutdownWith` | the function returned `Err(ExitReason::ShutdownWith(..))`    | no       |
/// | `Failed`    | the function returned `Err(..)` (not because it was stopped)    | yes      |
/// | `Panicked`  | the function panicked; the message is the panic payload         | yes      |
/// | `Killed`    | the process was abandoned: it did not stop within its shutdown  | yes      |
/// | `NoProcess` | a monitor was set on a process that had already exited          | yes      |
///
/// The messages are shared (`Arc<str>`), so an `ExitReason` is cheap to clone and send to
/// every monitor and event subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// The function returned `Ok(())` without having been asked to stop.
    Normal,
    /// The function returned after its stop signal was raised (or a supervisor gave up
    /// after exceeding its restart intensity, as OTP's `shutdown`).
    Shutdown,
    /// A shutdown with a detail (OTP's `{shutdown, Term}`): not a crash. A child ends
    /// with it (or with any reason of its choosing) by returning
    /// `Err(ExitReason::ShutdownWith(..).into())`; a server by
    /// [`ServerContext::stop`](crate::server::ServerContext::stop).
    ShutdownWith(Arc<str>),
    /// The function returned an error; the message is the error's `Display` text.
    Failed(Arc<str>),
    /// The function panicked; the message is the panic payload for `&str` and `String`
    /// payloads, and a placeholder otherwise.
    Panicked(Arc<str>),
    /// The process did not stop within its shutdown timeout and was abandoned: its thread
    /// was detached (threads cannot be killed) and its names were released.
    Killed,
    /// Reported by [`monitor`](crate::monitor) for a process that was already gone: its
    /// real exit reason is no longer known.
    NoProcess,
}

impl ExitReason {
    /// Whether this exit counts as a crash: `Failed`, `Panicked`, `Killed` or `NoProcess`.
    ///
    /// A transient child is restarted only after an abnormal exit.
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::ExitReason;
    /// assert!(!ExitReason::Normal.is_abnormal());
    /// assert!(!ExitReason::Shutdown.is_abnormal());
    /// assert!(ExitReason::Killed.is_abnormal());
    /// ```
    pub fn is_abnormal(&self) -> bool {
        !matches!(
            self,
            ExitReason::Normal | ExitReason::Shutdown | ExitReason::ShutdownWith(_)
        )
    }

    /// A shutdown with `detail` ([`ExitReason::ShutdownWith`]).
    pub fn shutdown_with(detail: impl fmt::Display) -> ExitReason {
        ExitReason::ShutdownWith(detail.to_string().into())
    }

    pub(crate) fn failed(msg: impl fmt::Display) -> ExitReason {
        ExitReason::Failed(msg.to_string().into())
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::ShutdownWith(detail) => write!(f, "shutdown: {detail}"),
            ExitReason::Failed(m) => write!(f, "failed: {m}"),
            ExitReason::Panicked(m) => write!(f, "panicked: {m}"),
            ExitReason::Killed => f.write_str("killed (abandoned after its shutdown timeout)"),
            ExitReason::NoProcess => f.write_str("no such process"),
        }
    }
}

/// A child (or a server) returning an `ExitReason` as its error exits with that reason,
/// as OTP's `exit(Reason)`: `Err(ExitReason::shutdown_with("moved").into())`.
impl std::error::Error for ExitReason {}

/// The text of a panic payload: `&str` and `String` payloads as they are, anything else as
/// a placeholder (its type cannot be named at run time). One allocation, straight from the
/// payload: this is on the path of every panicking restart.
pub(crate) fn panic_reason(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("<non-string panic payload>")
    }
}

/// [`panic_reason`] as a `String`.
#[cfg(feature = "sessions")]
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    panic_reason(payload).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "sessions")]
    fn panic_message_reads_str_string_and_other() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42u32), "<non-string panic payload>");
        assert_eq!(&*panic_reason(&"boom"), "boom");
        assert_eq!(&*panic_reason(&String::from("bang")), "bang");
        assert_eq!(&*panic_reason(&42u32), "<non-string panic payload>");
    }

    #[test]
    fn abnormal_table() {
        assert!(!ExitReason::Normal.is_abnormal());
        assert!(!ExitReason::Shutdown.is_abnormal());
        assert!(ExitReason::failed("x").is_abnormal());
        assert!(ExitReason::Panicked("x".into()).is_abnormal());
        assert!(ExitReason::Killed.is_abnormal());
        assert!(ExitReason::NoProcess.is_abnormal());
    }
}
