//! Looking for something a few times before parking for it.

/// Asks `probe` a few times, spinning and then yielding in between, before the caller
/// parks — as crossbeam's own `recv` spins before it blocks: parking and waking a thread
/// costs microseconds (tens of them on a VM), a few spins and yields do not. Returns the
/// first answer, or `None` if there was none.
pub(crate) fn look_briefly<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    const SPINS: u32 = 6;
    const YIELDS: u32 = 10;
    for step in 0..SPINS + YIELDS {
        if let Some(answer) = probe() {
            return Some(answer);
        }
        if step < SPINS {
            for _ in 0..1u32 << step {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
    None
}
