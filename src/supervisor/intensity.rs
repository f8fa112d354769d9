//! The restart-intensity window (OTP's `add_restart`): at most `max` restarts within any
//! `period`, over all children of one supervisor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Window entries past which restarts close in time share one entry (see `record`).
pub(crate) const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
pub(crate) struct Intensity {
    max: u32,
    period: Duration,
    /// The restarts within the last `period`, oldest first: when the first restart of
    /// each entry happened, and how many the entry counts. One restart per entry while
    /// there are fewer than `MAX_ENTRIES` entries — always, when `max` is below that (the
    /// window never holds more than `max` + 1). Past that, a restart within one slice
    /// (`period / MAX_ENTRIES`) of the newest entry's first restart is counted in it, so
    /// that a window that never gives up (a huge `max`, a long `period`) stays bounded:
    /// at most `MAX_ENTRIES` more entries, at least a slice apart. An entry ages out with
    /// its first restart: at that scale the count is exact to within one slice.
    restarts: VecDeque<(Instant, u64)>,
    /// The restarts in the window: the sum of the entries' counts.
    count: u64,
}

impl Intensity {
    pub(crate) fn new(max: u32, period: Duration) -> Intensity {
        Intensity {
            max,
            period,
            restarts: VecDeque::new(),
            count: 0,
        }
    }

    /// Records a restart at `now`; `false` if that makes more than `max` restarts within
    /// the last `period` (the supervisor must give up).
    ///
    /// Restarts older than `period` before `now` are forgotten: the window slides with exact
    /// `Instant`s rather than OTP's whole seconds.
    pub(crate) fn add_restart(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        self.record(now);
        self.count <= u64::from(self.max)
    }

    /// Records a restart at `now` only if it stays within the intensity; `false` (and
    /// nothing recorded) if it would not. The same-thread fast path asks this, and leaves
    /// a restart that would exceed the intensity to the supervisor.
    pub(crate) fn try_add_restart(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        if self.count < u64::from(self.max) {
            self.record(now);
            true
        } else {
            false
        }
    }

    fn record(&mut self, now: Instant) {
        self.count += 1;
        if self.restarts.len() >= MAX_ENTRIES {
            let slice = self.period / MAX_ENTRIES as u32;
            if let Some((first, n)) = self.restarts.back_mut() {
                if now.saturating_duration_since(*first) <= slice {
                    *n += 1;
                    return;
                }
            }
        }
        self.restarts.push_back((now, 1));
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(oldest, n)) = self.restarts.front() {
            if now.saturating_duration_since(oldest) > self.period {
                self.restarts.pop_front();
                self.count -= n;
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

    /// "Never give up" (`u32::MAX` restarts in `Duration::MAX`) under a crash loop: the
    /// window must not keep one entry per restart for ever.
    #[test]
    fn a_window_that_never_gives_up_stays_bounded() {
        let t = Instant::now();
        let mut i = Intensity::new(u32::MAX, Duration::MAX);
        for n in 0..100_000u32 {
            let at = t + Duration::from_micros(u64::from(n));
            assert!(i.try_add_restart(at));
            assert!(i.add_restart(at));
        }
        assert!(
            i.restarts.len() <= MAX_ENTRIES + 1,
            "{} entries",
            i.restarts.len()
        );
        assert_eq!(i.count, 200_000);
    }

    /// Past `MAX_ENTRIES` restarts in one window, the count stays exact to within one
    /// slice of `period / MAX_ENTRIES`, and old restarts still age out.
    #[test]
    fn a_crowded_window_still_counts_and_forgets() {
        let t = Instant::now();
        let period = Duration::from_secs(1);
        let max = 3 * MAX_ENTRIES as u32;
        let mut i = Intensity::new(max, period);
        // Two restarts per slice for half a period: 2 × 2,048 = MAX_ENTRIES restarts.
        let slice = period / MAX_ENTRIES as u32;
        let mut at = t;
        for _ in 0..MAX_ENTRIES / 2 {
            assert!(i.add_restart(at));
            assert!(i.add_restart(at + slice / 4));
            at += slice;
        }
        // The next ones share slices: still counted, in fewer entries.
        for _ in 0..MAX_ENTRIES / 2 {
            assert!(i.add_restart(at));
            assert!(i.add_restart(at + slice / 4));
            at += slice;
        }
        assert_eq!(i.count, 2 * MAX_ENTRIES as u64);
        assert!(i.restarts.len() < 2 * MAX_ENTRIES);
        // A period later, all of them have aged out.
        assert!(i.add_restart(at + period));
        assert_eq!(i.count, 1);
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

    /// A small seeded generator (splitmix64), so that the model check below is random
    /// yet reproducible without a property-testing crate in the library's dev-dependencies
    /// (examples build them; the public model test lives in `model-tests/`).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Against OTP's `add_restart`: a restart at `now` is within the intensity when at
    /// most `max` restarts (itself included) happened at times `t` with
    /// `now - t <= period`. Times are synthetic offsets from one `Instant`; 2,000 random
    /// cases, each named by its seed when it fails.
    #[test]
    fn add_restart_matches_otp() {
        for seed in 0..2_000u64 {
            let mut rng = Rng(seed);
            let max = rng.below(5) as u32;
            let period_ms = 1 + rng.below(49);
            let steps = 1 + rng.below(39);
            let origin = Instant::now();
            let mut window = Intensity::new(max, Duration::from_millis(period_ms));
            let mut recorded: Vec<u64> = Vec::new();
            let mut at = 0u64;
            for step in 0..steps {
                at += rng.below(30);
                let now = origin + Duration::from_millis(at);
                let recent = recorded.iter().filter(|&&t| at - t <= period_ms).count();
                let case = format!("seed {seed}, step {step}: max {max}, period {period_ms} ms");
                if rng.below(2) == 0 {
                    // The fast path: record only if it stays within.
                    let fits = recent < max as usize;
                    assert_eq!(window.try_add_restart(now), fits, "{case}");
                    if fits {
                        recorded.push(at);
                    }
                } else {
                    assert_eq!(window.add_restart(now), recent < max as usize, "{case}");
                    recorded.push(at);
                }
            }
        }
    }
}
