//! How a child may restart: on its own thread with a permit (one_for_one plain workers),
//! on a thread a group restart reuses (plain workers under one_for_all and rest_for_one),
//! or by its supervisor; and when, for a delay too long to represent. The restart
//! decision itself is `strategy::should_restart`, the window `intensity`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::child::launch::{RestartPermit, RestartWindow};
use crate::child::spec::{ChildKind, ChildSpec, Readiness, Restart};
use crate::clock;
use crate::exit::ExitReason;
use crate::supervisor::intensity::Intensity;
use crate::supervisor::strategy::{should_restart, Strategy};

/// The leave for a plain worker (no readiness wait, no fresh thread, no backoff) under
/// one_for_one to restart itself on its own thread: its restart type says so and the
/// restart fits the intensity window. A restart that would exceed the window is left to
/// the supervisor.
pub(crate) fn permit(
    strategy: Strategy,
    spec: &ChildSpec,
    intensity: &Arc<Mutex<Intensity>>,
) -> Option<RestartPermit> {
    let eligible = strategy == Strategy::OneForOne
        && spec.kind == ChildKind::Worker
        && spec.readiness == Readiness::Spawned
        && !spec.fresh_thread
        && spec.backoff.is_none();
    eligible.then(|| RestartPermit {
        restart: spec.restart,
        window: intensity.clone(),
    })
}

/// Whether `spec`'s thread may be reused by group restarts: plain workers under
/// one_for_all or rest_for_one (one_for_one restarts on the child's own thread
/// already), with no readiness wait and no request for a fresh thread.
pub(super) fn resumable(strategy: Strategy, spec: &ChildSpec) -> bool {
    strategy != Strategy::OneForOne
        && spec.kind == ChildKind::Worker
        && spec.readiness == Readiness::Spawned
        && !spec.fresh_thread
}

impl RestartWindow for Mutex<Intensity> {
    fn permits(&self, restart: Restart, reason: &ExitReason) -> bool {
        should_restart(restart, reason) && self.lock().try_add_restart(clock::now())
    }
}

/// When a restart `delay` from now is due; a delay too long to represent is as good as
/// never (about a century: until a stop or a request).
pub(super) fn due_after(delay: Duration) -> Instant {
    let now = clock::now();
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(delay)
        .or_else(|| now.checked_add(century))
        .unwrap_or(now)
}
