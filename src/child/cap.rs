//! The cap on live process threads: a start beyond it is an error value, well before the
//! system's own limit (see [`set_max_threads`]). Under an address-space limit, the stacks
//! the live threads reserve are capped too, by their sizes (see `LiveThread::acquire`).

use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::Lazy;

use crate::error::SpawnError;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static MAX: Lazy<AtomicUsize> = Lazy::new(|| AtomicUsize::new(default_max_threads()));
/// Bytes of stack the live threads reserve, counted only under an address-space limit.
static STACKS: AtomicUsize = AtomicUsize::new(0);
static STACK_BUDGET: Lazy<Option<usize>> =
    Lazy::new(|| stack_budget(&std::fs::read_to_string("/proc/self/limits").unwrap_or_default()));
/// The stack of a thread spawned without a size: the standard library's default.
static DEFAULT_STACK: Lazy<usize> = Lazy::new(|| {
    std::env::var("RUST_MIN_STACK")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2 << 20)
});

/// One live process thread, counted against the cap until dropped: when the thread reports
/// its exit, or ends without a report.
pub(crate) struct LiveThread {
    /// The bytes counted in `STACKS` (0 with no address-space limit).
    stack: usize,
}

impl LiveThread {
    /// Counts a thread whose stack is `stack` bytes (`None`: the default size) against
    /// the cap, and — only under an address-space limit — its stack against half of
    /// that limit, so that small stacks allow more threads and large ones fewer.
    pub(crate) fn acquire(stack: Option<usize>) -> Result<LiveThread, SpawnError> {
        let limit = MAX.load(Ordering::Relaxed);
        let prev = LIVE.fetch_add(1, Ordering::AcqRel);
        if prev >= limit {
            LIVE.fetch_sub(1, Ordering::AcqRel);
            return Err(SpawnError::ThreadLimit { limit });
        }
        let Some(budget) = *STACK_BUDGET else {
            return Ok(LiveThread { stack: 0 });
        };
        let stack = stack.unwrap_or(*DEFAULT_STACK);
        // Added only if it fits, so that no other start ever sees a sum that overflowed.
        let fits = |reserved: usize| reserved.checked_add(stack).filter(|&sum| sum <= budget);
        match STACKS.fetch_update(Ordering::AcqRel, Ordering::Acquire, fits) {
            Ok(_) => Ok(LiveThread { stack }),
            Err(reserved) => {
                LIVE.fetch_sub(1, Ordering::AcqRel);
                Err(SpawnError::AddressSpace {
                    stack,
                    reserved,
                    budget,
                })
            }
        }
    }
}

impl Drop for LiveThread {
    fn drop(&mut self) {
        if self.stack > 0 {
            STACKS.fetch_sub(self.stack, Ordering::AcqRel);
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The default cap: the lowest of an eighth of `vm.max_map_count` (each thread costs a few
/// memory mappings; about 16,000 threads exhaust the stock 65,530), half of
/// `kernel.threads-max` and half of this process's `RLIMIT_NPROC` (threads count against
/// it); never below 64; 10,000 where none can be read. (An address-space limit caps the
/// threads' stacks instead, by their sizes: `stack_budget`.)
fn default_max_threads() -> usize {
    let read =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    cap_from(
        read("/proc/sys/vm/max_map_count"),
        read("/proc/sys/kernel/threads-max"),
        &std::fs::read_to_string("/proc/self/limits").unwrap_or_default(),
    )
}

/// The default cap from the system's figures (`limits`: the text of `/proc/self/limits`).
fn cap_from(max_map_count: Option<usize>, threads_max: Option<usize>, limits: &str) -> usize {
    let soft_limit = |name: &str| soft_limit(limits, name);
    [
        max_map_count.map(|n| n / 8),
        threads_max.map(|n| n / 2),
        soft_limit("Max processes").map(|n| n / 2),
    ]
    .into_iter()
    .flatten()
    .min()
    .map_or(10_000, |n| n.max(64))
}

/// The bytes of stack the live threads may reserve: half of this process's address-space
/// limit (`ulimit -v`), if it has one (`limits`: the text of `/proc/self/limits`).
fn stack_budget(limits: &str) -> Option<usize> {
    soft_limit(limits, "Max address space").map(|bytes| bytes / 2)
}

/// A soft limit from the text of `/proc/self/limits` (`None` when unlimited or unread).
fn soft_limit(limits: &str, name: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Sets the most process threads steadfast will have alive at once, across every
/// supervisor in the program.
///
/// A start beyond the cap fails with [`SpawnError::ThreadLimit`] (inside
/// [`StartError::Spawn`](crate::StartError::Spawn)) instead of spawning. The cap exists
/// to stop short of the system's own limit (on Linux usually `vm.max_map_count`: a
/// stock system runs out at about 16,000 threads). At that edge steadfast would still get
/// an OS error, but the rest of the program is stranded with it: it cannot create a thread
/// of its own (`std::thread::spawn` panics then), and where the standard library cannot
/// report the failure — a new thread's stack-guard set-up, an allocation — the process
/// aborts. `tests/thread_cap.rs` shows both sides in subprocesses.
/// The default is derived from the system: an eighth of `vm.max_map_count`, half of
/// `kernel.threads-max`, and half of the process's limit on processes (`ulimit -u`),
/// whichever is lowest (about 8,000 on a stock Linux).
/// Abandoned threads count until they really end.
///
/// Under an address-space limit (`ulimit -v`) the stacks are capped as well: a start
/// fails with [`SpawnError::AddressSpace`] when its thread's stack would take the stacks
/// of the live threads past half of that limit. Each stack counts at its size (a
/// child's [`stack_size`](crate::ChildSpec::stack_size), its supervisor's default, else
/// the standard library's 2 MiB or `RUST_MIN_STACK`), so small stacks allow more threads
/// there and large ones fewer; without such a limit a stack is only reserved, and the
/// size does not matter.
pub fn set_max_threads(n: usize) {
    MAX.store(n, Ordering::Relaxed);
}

/// The cap on live process threads (see [`set_max_threads`]).
pub fn max_threads() -> usize {
    MAX.load(Ordering::Relaxed)
}

/// How many process threads steadfast has alive now (abandoned ones included).
pub fn live_threads() -> usize {
    LIVE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::{cap_from, stack_budget};

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             96365                96365                processes
Max address space         unlimited            unlimited            bytes
";

    #[test]
    fn the_default_cap_is_the_lowest_of_the_system_limits() {
        // Stock Linux: the memory-map budget decides.
        assert_eq!(cap_from(Some(65_530), Some(192_730), LIMITS), 8_191);
        // A low `ulimit -u` decides, and so does an address-space limit (2 MiB stacks).
        let low_nproc = LIMITS.replace("96365                96365", "4096 4096");
        assert_eq!(cap_from(Some(65_530), Some(192_730), &low_nproc), 2_048);
        // Never below 64; a fixed default when nothing can be read.
        assert_eq!(cap_from(Some(80), None, ""), 64);
        assert_eq!(cap_from(None, None, ""), 10_000);
    }

    #[test]
    fn an_address_space_limit_budgets_stacks_not_threads() {
        assert_eq!(stack_budget(LIMITS), None, "unlimited");
        assert_eq!(stack_budget(""), None, "unread");
        let low_as = LIMITS.replace(
            "Max address space         unlimited",
            "Max address space         4294967296",
        );
        assert_eq!(stack_budget(&low_as), Some(2 << 30));
        // The thread count no longer assumes 2 MiB stacks under it.
        assert_eq!(cap_from(Some(65_530), Some(192_730), &low_as), 8_191);
    }
}
