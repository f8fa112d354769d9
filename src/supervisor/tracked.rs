//! [`Tracked`]: the handle of a nested supervisor that follows it across its restarts,
//! built together with its child spec (`SupervisorBuilder::build`,
//! `DynamicSupervisorBuilder::build`), as a server's handle is.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::error::SupervisorError;
use crate::pid::Pid;
use crate::supervisor::config::OnStart;
use crate::supervisor::handle::SupervisorRef;

/// A handle on a nested supervisor that follows it across its restarts: each
/// incarnation, as it starts (before its first child), becomes the one
/// [`get`](Tracked::get) returns, typed — a [`SupervisorRef`] or a
/// [`DynamicSupervisorRef`](crate::DynamicSupervisorRef). Cheap to clone; hand it to the
/// children that need the supervisor, instead of looking it up by name.
///
/// # Examples
///
/// ```
/// use steadfast::{ChildSpec, DynamicSupervisor, Supervisor};
///
/// let (conns_spec, conns) = DynamicSupervisor::builder().max_children(100).build("conns");
/// let app = Supervisor::builder().child(conns_spec).start()?;
/// // Valid across the connections supervisor's restarts; no name to look up.
/// conns.get()?.start_child(ChildSpec::task("conn-1", |_ctx| Ok(())))?;
/// # drop(app);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Tracked<H> {
    latest: Arc<RwLock<Option<(Pid, H)>>>,
    id: Arc<str>,
}

impl<H> Clone for Tracked<H> {
    fn clone(&self) -> Self {
        Tracked {
            latest: self.latest.clone(),
            id: self.id.clone(),
        }
    }
}

impl<H> fmt::Debug for Tracked<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pid = self.latest.read().as_ref().map(|(pid, _)| *pid);
        f.debug_struct("Tracked")
            .field("id", &self.id)
            .field("latest", &pid)
            .finish()
    }
}

impl<H: Clone + Send + Sync + 'static> Tracked<H> {
    /// A handle with no incarnation yet, and the `on_start` that records each one
    /// (`wrap` turns the static handle an `on_start` gets into `H`); `then` is the
    /// user's own `on_start`, run after.
    pub(crate) fn new(
        id: &str,
        wrap: fn(&SupervisorRef) -> H,
        then: Option<OnStart>,
    ) -> (Tracked<H>, OnStart) {
        let tracked = Tracked {
            latest: Arc::new(RwLock::new(None)),
            id: Arc::from(id),
        };
        let latest = tracked.latest.clone();
        let on_start: OnStart = Arc::new(move |me: &SupervisorRef| {
            *latest.write() = Some((me.pid(), wrap(me)));
            then.as_ref().map_or(Ok(()), |then| then(me))
        });
        (tracked, on_start)
    }

    /// The handle of the incarnation running now.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`] when none runs: not started yet, restarting
    /// (see [`wait`](Tracked::wait)), or gone for good.
    pub fn get(&self) -> Result<H, SupervisorError> {
        match &*self.latest.read() {
            Some((pid, handle)) if pid.is_alive() => Ok(handle.clone()),
            _ => Err(SupervisorError::NoSupervisor),
        }
    }

    /// The handle of the incarnation running now, waiting up to `timeout` for one (while
    /// the supervisor restarts, say).
    ///
    /// # Errors
    ///
    /// [`SupervisorError::NoSupervisor`] if none runs within the time.
    pub fn wait(&self, timeout: Duration) -> Result<H, SupervisorError> {
        let what = format!("supervisor {:?} to run", self.id);
        crate::wait::until_some(timeout, &what, || self.get().ok())
            .map_err(|_| SupervisorError::NoSupervisor)
    }

    /// The child id it was built with.
    pub fn id(&self) -> &str {
        &self.id
    }
}
