//! The tree as data: a snapshot serialized to JSON (feature `serde`), with servers'
//! mailbox depths and pools' counts, and rendered to Graphviz DOT.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::Value;
use steadfast::pool::Pool;
use steadfast::server::{Handle, Serve, ServerContext, ServerSpec};
use steadfast::{ChildSpec, Supervisor};

const DEADLINE: Duration = Duration::from_secs(10);

/// A server that blocks in each call until told (saying when it is inside one), so
/// that what follows queues.
struct Slow(Receiver<()>, Sender<()>);
impl Serve for Slow {}
impl Handle<u32> for Slow {
    type Reply = ();
    fn handle(&mut self, _: u32, _: &mut ServerContext<'_, Self>) {
        let _ = self.1.try_send(());
        let _ = self.0.recv_timeout(DEADLINE);
    }
}

fn child<'a>(node: &'a Value, id: &str) -> &'a Value {
    node["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no child {id} in {node}"))
}

#[test]
fn a_snapshot_serializes_with_mailbox_depth_and_pool_counts() {
    let (go_tx, go) = bounded(0);
    let (inside_tx, inside) = bounded(1);
    let (spec, slow) =
        ServerSpec::new("slow", move |_| Ok(Slow(go.clone(), inside_tx.clone()))).build();
    let pool = Pool::builder(1, |_: &u32, _| Ok(()));
    let (pool_spec, pool) = pool.child_spec("jobs").unwrap();
    let app = Supervisor::builder()
        .name("data-app")
        .child(spec)
        .child(pool_spec)
        .child(ChildSpec::worker("idle", |ctx| {
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .start()
        .unwrap();
    for job in 0..3 {
        pool.submit(job).unwrap();
    }
    pool.drain(DEADLINE).unwrap();
    // One call blocks the server; three more queue behind it.
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let slow = slow.clone();
            std::thread::spawn(move || slow.call(i))
        })
        .collect();
    // Inside the first call first: three queued before it took one would be two after.
    inside.recv_timeout(DEADLINE).unwrap();
    steadfast::wait::until(DEADLINE, || slow.queued() == 3).unwrap();

    let json = serde_json::to_value(app.snapshot().unwrap()).unwrap();
    let root = &json["root"];
    assert_eq!(root["id"], "data-app");
    assert_eq!(root["kind"], "supervisor");
    assert_eq!(root["status"], "running");
    let server = child(root, "slow");
    assert_eq!(server["mailbox"], 3);
    assert_eq!(server["kind"], "worker");
    assert!(server["pid"].as_str().unwrap().starts_with("<0."));
    assert!(server["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(server["last_exit"], Value::Null);
    let jobs = child(root, "jobs");
    assert_eq!(jobs["kind"], "supervisor");
    assert_eq!(jobs["pool"]["done"], 3);
    assert_eq!(jobs["pool"]["queued"], 0);
    assert_eq!(child(jobs, "worker-0")["status"], "running");
    assert_eq!(child(root, "idle")["mailbox"], Value::Null);

    for _ in 0..4 {
        go_tx.send(()).unwrap();
    }
    for caller in callers {
        caller.join().unwrap().unwrap();
    }
}

#[test]
fn a_snapshot_renders_to_dot_with_an_edge_per_child() {
    let app = Supervisor::builder()
        .name("dot-app")
        .child(ChildSpec::worker("a \"quoted\" id", |ctx| {
            let _ = ctx.stop_signal().recv();
            Ok(())
        }))
        .child(ChildSpec::supervisor(
            "inner",
            Supervisor::builder().child(ChildSpec::worker("leaf", |ctx| {
                let _ = ctx.stop_signal().recv();
                Ok(())
            })),
        ))
        .start()
        .unwrap();
    let dot = app.snapshot().unwrap().to_dot();
    assert!(dot.starts_with("digraph steadfast {"), "{dot}");
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    assert!(
        dot.contains(r#""dot-app" -> "dot-app/a \"quoted\" id";"#),
        "{dot}"
    );
    assert!(dot.contains(r#""dot-app" -> "dot-app/inner";"#), "{dot}");
    assert!(
        dot.contains(r#""dot-app/inner" -> "dot-app/inner/leaf";"#),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count(), 3, "{dot}");
    assert!(dot.contains("penwidth=2"), "supervisors are bold: {dot}");
}
