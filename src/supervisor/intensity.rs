//! The restart-intensity window (OTP's `add_restart`): at most `max` restarts within any
//! `period`, over all children of one supervisor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Intensity {
    max: u32,
    period: Duration,
    restarts: VecDeque<Instant>,
}

impl Intensity {
    pub(crate) fn new(max: u32, period: Duration) -> Intensity {
        Intensity {
            max,
            period,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; `false` if that makes more than `max` restarts within
    /// the last `period` (the supervisor must give up).
    ///
    /// Restarts older than `period` before `now` are forgotten: the window slides with exact
    /// `Instant`s rather than OTP's whole seconds.
    pub(crate) fn add_restart(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        self.restarts.push_back(now);
        self.restarts.len() <= self.max as usize
    }

    /// Records a restart at `now` only if it stays within the intensity; `false` (and
    /// nothing recorded) if it would not. The same-thread fast path asks this, and leaves
    /// a restart that would exceed the intensity to the supervisor.
    pub(crate) fn try_add_restart(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        if self.restarts.len() < self.max as usize {
            self.restarts.push_back(now);
            true
        } else {
            false
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) > self.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn intensity_zero_gives_up_on_first_restart() {
        let mut i = Intensity::new(0, S);
        assert!(!i.add_restart(Instant::now()));
    }

    #[test]
    fn allows_max_restarts_then_gives_up() {
        let t = Instant::now();
        let mut i = Intensity::new(3, 5 * S);
        assert!(i.add_restart(t));
        assert!(i.add_restart(t + S));
        assert!(i.add_restart(t + 2 * S));
        assert!(!i.add_restart(t + 3 * S));
    }

    #[test]
    fn old_restarts_age_out_of_the_window() {
        let t = Instant::now();
        let mut i = Intensity::new(2, 5 * S);
        assert!(i.add_restart(t));
        assert!(i.add_restart(t + S));
        // Both earlier restarts are more than 5 s before this one.
        assert!(i.add_restart(t + 7 * S));
        assert!(i.add_restart(t + 8 * S));
        // t+7 and t+8 and now t+9: three within 5 s.
        assert!(!i.add_restart(t + 9 * S));
    }

    #[test]
    fn try_add_records_only_within_the_intensity() {
        let t = Instant::now();
        let mut i = Intensity::new(2, 5 * S);
        assert!(i.try_add_restart(t));
        assert!(i.try_add_restart(t + S));
        assert!(!i.try_add_restart(t + 2 * S), "a third would exceed");
        // Nothing was recorded for the refused one: the supervisor's own count gives up.
        assert!(!i.add_restart(t + 2 * S));
        // Once the window has moved on, the fast path may restart again.
        let mut j = Intensity::new(1, 5 * S);
        assert!(j.try_add_restart(t));
        assert!(j.try_add_restart(t + 6 * S));
    }

    #[test]
    fn intensity_zero_never_restarts_on_the_fast_path() {
        assert!(!Intensity::new(0, S).try_add_restart(Instant::now()));
    }

    #[test]
    fn restart_exactly_one_period_later_still_counts() {
        let t = Instant::now();
        let mut i = Intensity::new(1, 5 * S);
        assert!(i.add_restart(t));
        assert!(!i.add_restart(t + 5 * S));
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Against OTP's `add_restart`: a restart at `now` is within the intensity when
            /// at most `max` restarts (itself included) happened at times `t` with
            /// `now - t <= period`. Times are synthetic offsets from one `Instant`.
            #[test]
            fn add_restart_matches_otp(
                max in 0u32..5,
                period_ms in 1u64..50,
                gaps in prop::collection::vec(0u64..30, 1..40),
                tries in prop::collection::vec(any::<bool>(), 40),
            ) {
                let origin = Instant::now();
                let period = Duration::from_millis(period_ms);
                let mut window = Intensity::new(max, period);
                let mut recorded: Vec<u64> = Vec::new();
                let mut at = 0u64;
                for (gap, try_first) in gaps.into_iter().zip(tries) {
                    at += gap;
                    let now = origin + Duration::from_millis(at);
                    let recent = recorded.iter().filter(|&&t| at - t <= period_ms).count();
                    if try_first {
                        // The fast path: record only if it stays within.
                        let fits = recent < max as usize;
                        prop_assert_eq!(window.try_add_restart(now), fits);
                        if fits {
                            recorded.push(at);
                        }
                    } else {
                        prop_assert_eq!(window.add_restart(now), recent < max as usize);
                        recorded.push(at);
                    }
                }
            }
        }
    }
}
