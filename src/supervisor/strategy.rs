//! Pure decision functions: whether a child is restarted, which children a strategy
//! touches, and whether a significant child's exit ends its supervisor. OTP's
//! `do_restart`, `restart/3` and `do_auto_shutdown`, without a thread in sight.

use std::ops::Range;

use crate::child::spec::Restart;
use crate::exit::ExitReason;

/// What a static supervisor does when a child is to be restarted.
///
/// | strategy     | restarted                            | stopped first (reverse order) |
/// |--------------|--------------------------------------|-------------------------------|
/// | `OneForOne`  | the dead child alone, in its place   | nothing                       |
/// | `OneForAll`  | every child, in start order          | every other child             |
/// | `RestForOne` | the dead child and those after it    | the children after it         |
///
/// Temporary children that are stopped as bystanders are dropped, not restarted; children
/// that had been stopped with `terminate_child` are brought back by a group restart, as in OTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Restart only the child that died (the default).
    #[default]
    OneForOne,
    /// Restart every child when one dies.
    OneForAll,
    /// Restart the child that died and every child started after it.
    RestForOne,
}

/// OTP's restart table: restart type × exit reason.
pub(crate) fn should_restart(restart: Restart, reason: &ExitReason) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => reason.is_abnormal(),
        Restart::Temporary => false,
    }
}

/// The positions (in start order) a strategy restarts when child `failed` of `len` dies.
pub(crate) fn affected(strategy: Strategy, failed: usize, len: usize) -> Range<usize> {
    debug_assert!(failed < len);
    match strategy {
        Strategy::OneForOne => failed..failed + 1,
        Strategy::OneForAll => 0..len,
        Strategy::RestForOne => failed..len,
    }
}

/// When a supervisor shuts itself down because significant children have exited
/// (OTP 24's `auto_shutdown`). See [`ChildSpec::significant`](crate::ChildSpec::significant).
///
/// Only an exit a significant child makes on its own, and that is not restarted,
/// counts: a transient child's normal exit, a temporary child's any exit. A child the
/// supervisor stops (`terminate_child`, a group restart, a shutdown) never triggers it.
/// The supervisor then stops its other children as in any shutdown and exits with
/// [`ExitReason::Shutdown`] — a normal exit: its parent does not restart it if it is
/// transient, and [`Supervisor::join`](crate::Supervisor::join) returns `Ok(())`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AutoShutdown {
    /// Significant children are not allowed (the default).
    #[default]
    Never,
    /// Shut down when any significant child exits.
    AnySignificant,
    /// Shut down when the last significant child still running exits.
    AllSignificant,
}

/// Whether the exit of a significant child ends its supervisor, given whether any other
/// significant child is still running (or waiting to be restarted).
pub(crate) fn auto_shutdown(setting: AutoShutdown, others_alive: bool) -> bool {
    match setting {
        AutoShutdown::Never => false,
        AutoShutdown::AnySignificant => true,
        AutoShutdown::AllSignificant => !others_alive,
    }
}

/// A significant child needs a supervisor that auto-shuts-down (OTP refuses the
/// combination too: such a child's exit would mean nothing).
pub(crate) fn check_significant(
    spec: &crate::child::spec::ChildSpec,
    setting: AutoShutdown,
) -> Result<(), String> {
    if spec.significant && setting == AutoShutdown::Never {
        return Err(format!(
            "child {:?} is significant, but the supervisor's auto_shutdown is Never",
            spec.id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons() -> [ExitReason; 5] {
        [
            ExitReason::Normal,
            ExitReason::Shutdown,
            ExitReason::failed("e"),
            ExitReason::Panicked("p".into()),
            ExitReason::Killed,
        ]
    }

    #[test]
    fn permanent_restarts_after_every_exit() {
        for r in reasons() {
            assert!(should_restart(Restart::Permanent, &r), "{r}");
        }
    }

    #[test]
    fn transient_restarts_only_after_abnormal_exit() {
        let got: Vec<bool> = reasons()
            .iter()
            .map(|r| should_restart(Restart::Transient, r))
            .collect();
        assert_eq!(got, [false, false, true, true, true]);
    }

    #[test]
    fn temporary_never_restarts() {
        for r in reasons() {
            assert!(!should_restart(Restart::Temporary, &r), "{r}");
        }
    }

    #[test]
    fn strategy_ranges() {
        assert_eq!(affected(Strategy::OneForOne, 2, 5), 2..3);
        assert_eq!(affected(Strategy::OneForAll, 2, 5), 0..5);
        assert_eq!(affected(Strategy::RestForOne, 2, 5), 2..5);
        assert_eq!(affected(Strategy::RestForOne, 4, 5), 4..5);
        assert_eq!(affected(Strategy::OneForAll, 0, 1), 0..1);
    }
}
