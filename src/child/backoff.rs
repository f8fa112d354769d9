//! Restart backoff: how long a supervisor waits before restarting a child (see
//! [`ChildSpec::backoff`](crate::ChildSpec::backoff)). The waiting itself is the
//! supervisor's (a deadline in its loop); this is only the arithmetic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The delay before each restart of a child: fixed, or doubling from an initial delay up
/// to a cap, with optional jitter, starting over once the child has run long enough.
///
/// The `n`th restart in a row (counting from 0) waits `initial × 2ⁿ`, at most `max`
/// (a fixed backoff waits the same each time). A child whose incarnation ran for at
/// least [`reset_after`](Backoff::reset_after) (default: the cap) before it exited is
/// back at the initial delay. [`jitter`](Backoff::jitter) takes up to that fraction off
/// each delay at random, so that children that failed together do not all come back at
/// the same instant; it never makes a delay longer.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use steadfast::Backoff;
///
/// let ms = Duration::from_millis;
/// let b = Backoff::exponential(ms(100), ms(1000));
/// assert_eq!(b.delay(0), ms(100));
/// assert_eq!(b.delay(3), ms(800));
/// assert_eq!(b.delay(4), ms(1000)); // capped
/// assert_eq!(Backoff::fixed(ms(250)).delay(7), ms(250));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use = "a backoff does nothing until given to `ChildSpec::backoff`"]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    reset_after: Option<Duration>,
}

impl Backoff {
    /// The same delay before every restart.
    pub fn fixed(delay: Duration) -> Backoff {
        Backoff {
            initial: delay,
            max: delay,
            jitter: 0.0,
            reset_after: None,
        }
    }

    /// `initial` before the first restart in a row, doubling each time up to `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            jitter: 0.0,
            reset_after: None,
        }
    }

    /// Takes up to `fraction` (0 to 1) off each delay, at random.
    pub fn jitter(mut self, fraction: f64) -> Backoff {
        self.jitter = fraction;
        self
    }

    /// How long an incarnation must have run for the next restart to start over at the
    /// initial delay (default: the cap).
    pub fn reset_after(mut self, ran_for: Duration) -> Backoff {
        self.reset_after = Some(ran_for);
        self
    }

    /// The delay before restart `attempt` in a row (from 0), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before restart `attempt`, with jitter.
    pub(crate) fn jittered(&self, attempt: u32) -> Duration {
        let delay = self.delay(attempt);
        if self.jitter == 0.0 {
            return delay;
        }
        delay.mul_f64(1.0 - self.jitter * unit_random())
    }

    /// Whether an incarnation that ran for `ran` starts the count over.
    pub(crate) fn resets(&self, ran: Duration) -> bool {
        ran >= self.reset_after.unwrap_or(self.max)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err(
                "a backoff delay must not be zero (leave the backoff out to \
                        restart at once)"
                    .into(),
            );
        }
        if self.initial > self.max {
            return Err(format!(
                "backoff is inverted: initial delay {:?} is longer than its cap {:?}",
                self.initial, self.max
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "backoff jitter must be a fraction from 0 to 1, not {}",
                self.jitter
            ));
        }
        if self.reset_after.is_some_and(|d| d.is_zero()) {
            return Err("backoff reset_after must not be zero".into());
        }
        Ok(())
    }
}

/// A number in [0, 1): splitmix64 over a counter seeded from the clock. Jitter needs
/// spread, not cryptographic quality, and this spares a dependency.
fn unit_random() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seed = now | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_doubles_up_to_the_cap_and_never_overflows() {
        let b = Backoff::exponential(MS(10), MS(100));
        let got: Vec<Duration> = (0..6).map(|n| b.delay(n)).collect();
        assert_eq!(got, [MS(10), MS(20), MS(40), MS(80), MS(100), MS(100)]);
        assert_eq!(b.delay(u32::MAX), MS(100));
        let huge = Backoff::exponential(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(5), Duration::MAX);
    }

    #[test]
    fn jitter_only_shortens() {
        let b = Backoff::exponential(MS(100), MS(100)).jitter(0.5);
        for _ in 0..1000 {
            let d = b.jittered(0);
            assert!(d <= MS(100) && d >= MS(50), "{d:?}");
        }
    }

    #[test]
    fn bad_backoffs_are_refused() {
        assert!(Backoff::fixed(Duration::ZERO).validate().is_err());
        assert!(Backoff::exponential(MS(0), MS(5)).validate().is_err());
        assert!(Backoff::exponential(MS(50), MS(5)).validate().is_err());
        assert!(Backoff::fixed(MS(5)).jitter(1.5).validate().is_err());
        assert!(Backoff::fixed(MS(5)).jitter(f64::NAN).validate().is_err());
        assert!(Backoff::fixed(MS(5)).reset_after(MS(0)).validate().is_err());
        assert!(Backoff::exponential(MS(5), MS(50))
            .jitter(1.0)
            .validate()
            .is_ok());
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let b = Backoff::exponential(MS(10), MS(100));
        assert!(!b.resets(MS(99)));
        assert!(b.resets(MS(100)));
        assert!(b.clone().reset_after(MS(5)).resets(MS(5)));
    }
}
