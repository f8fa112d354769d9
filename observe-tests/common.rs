//! What the telemetry tests share.

use crossbeam_channel::{unbounded, Sender};
use steadfast::ChildSpec;

/// A worker `flaky` that panics with `message` each time it is told to (and is
/// restarted, as a permanent worker).
pub fn flaky(message: &'static str) -> (ChildSpec, Sender<()>) {
    let (crash_tx, crash) = unbounded::<()>();
    let spec = ChildSpec::worker("flaky", move |ctx| {
        if ctx.recv(&crash).is_ok() {
            panic!("{message}");
        }
        Ok(())
    });
    (spec, crash_tx)
}
