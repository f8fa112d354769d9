//! A tour of steadfast: build a small supervision tree, crash things in different ways,
//! and print what the supervisors did about it.
//!
//! Run with `cargo run --example tour`.

use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use steadfast::{
    registry, ChildSpec, DynamicSupervisor, Event, Restart, Shutdown, Strategy, Supervisor,
};

/// What a worker of the tour does next.
enum Order {
    Panic(&'static str),
    Fail(&'static str),
}

/// A worker that waits for orders (or its stop signal); every incarnation reads `rx`.
fn worker(id: &str, rx: Receiver<Order>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| match ctx.recv(&rx)? {
        Order::Panic(msg) => panic!("{msg}"),
        Order::Fail(msg) => Err(msg.into()),
    })
}

fn orders() -> (Sender<Order>, Receiver<Order>) {
    unbounded()
}

/// Prints events from `rx` until one matches `last`.
fn show(who: &str, rx: &Receiver<Event>, last: impl Fn(&Event) -> bool) {
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the supervisor acts within seconds");
        println!("    [{who}] {}", describe(&e));
        if last(&e) {
            return;
        }
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::ChildStarted { id, pid } => format!("started {id} as {pid}"),
        Event::ChildExited { id, pid, reason } => format!("{id} ({pid}) exited: {reason}"),
        Event::ChildRestarted { id, pid } => format!("restarted {id} as {pid}"),
        Event::ChildAbandoned { id, pid } => format!("abandoned {id} ({pid})"),
        Event::RestartFailed { id, error } => format!("restart of {id} failed: {error}"),
        Event::IntensityExceeded { restarts, period } => {
            format!("gave up: more than {restarts} restarts in {period:?}")
        }
        Event::SupervisorStopped { reason } => format!("supervisor stopped ({reason})"),
        other => format!("{other:?}"),
    }
}

fn is(kind: &'static str, id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| {
        e.child_id() == Some(id)
            && matches!(
                (kind, e),
                ("started", Event::ChildStarted { .. })
                    | ("restarted", Event::ChildRestarted { .. })
                    | ("exited", Event::ChildExited { .. })
            )
    }
}

fn main() {
    // Each crash is printed from the event stream below: keep supervised panics off
    // stderr (they still go to a logger, if there were one).
    steadfast::route_panics_to_log();

    let (reader_tx, reader_rx) = orders();
    let (parser_tx, parser_rx) = orders();
    let (writer_tx, writer_rx) = orders();
    let (flaky_tx, flaky_rx) = orders();
    let (release_tx, release_rx) = unbounded::<()>();
    let (top_sink, top) = unbounded();
    let (pipe_sink, pipe) = unbounded();

    println!("== Building the tree");
    println!("   app (one_for_one)");
    println!("   ├── pipeline (rest_for_one): reader, parser, writer");
    println!("   ├── jobs (dynamic, at most 3 children)");
    println!("   ├── flaky (nested supervisor, transient, intensity 1 in 10 s): unstable");
    println!("   └── deaf (ignores its stop signal; shutdown timeout 200 ms)");
    let pipeline = Supervisor::builder()
        .name("pipeline")
        .strategy(Strategy::RestForOne)
        .event_sink(pipe_sink)
        .child(worker("reader", reader_rx))
        .child(worker("parser", parser_rx))
        .child(worker("writer", writer_rx));
    let flaky = Supervisor::builder()
        .name("flaky")
        .intensity(1, Duration::from_secs(10))
        .child(worker("unstable", flaky_rx));
    // The jobs supervisor's spec comes with a handle that follows it across restarts.
    let (jobs_spec, jobs) = DynamicSupervisor::builder()
        .name("jobs")
        .max_children(3)
        .build("jobs");
    let app = Supervisor::builder()
        .name("app")
        .intensity(10, Duration::from_secs(10))
        .event_sink(top_sink)
        .child(ChildSpec::supervisor("pipeline", pipeline))
        .child(jobs_spec)
        .child(ChildSpec::supervisor("flaky", flaky).restart(Restart::Transient))
        .child(
            ChildSpec::worker("deaf", move |_ctx| {
                let _ = release_rx.recv(); // not listening to its stop signal
                Ok(())
            })
            .restart(Restart::Temporary)
            .shutdown(Shutdown::Timeout(Duration::from_millis(200))),
        )
        .start()
        .expect("the tree starts");
    show("app", &top, is("started", "deaf"));
    show("pipeline", &pipe, is("started", "writer"));

    println!("\n== parser panics: rest_for_one restarts parser and writer, reader is untouched");
    parser_tx.send(Order::Panic("malformed record")).unwrap();
    show("pipeline", &pipe, is("restarted", "writer"));

    println!("\n== reader returns an error: it and everything after it restart");
    reader_tx.send(Order::Fail("source went away")).unwrap();
    show("pipeline", &pipe, is("restarted", "writer"));

    println!("\n== writer fails; nobody after it, so it restarts alone");
    writer_tx.send(Order::Fail("disk full")).unwrap();
    show("pipeline", &pipe, is("restarted", "writer"));

    println!("\n== jobs: start children at run time, up to the limit");
    let jobs = jobs.get().expect("the dynamic supervisor runs");
    let job = |n: u32| {
        ChildSpec::worker(format!("job-{n}"), |ctx| {
            let _ = ctx.stop_signal().recv();
            Ok(())
        })
        .restart(Restart::Transient)
    };
    let pids: Vec<_> = (1..=3).map(|n| jobs.start_child(job(n)).unwrap()).collect();
    println!("    started jobs {pids:?}");
    println!("    a fourth: {}", jobs.start_child(job(4)).unwrap_err());
    jobs.terminate_child(pids[0]).unwrap();
    println!(
        "    after terminating {}: {} running",
        pids[0],
        jobs.count_children().unwrap().active
    );

    println!("\n== unstable crashes twice: flaky exceeds its intensity and gives up;");
    println!("   it is transient and exited like OTP's `shutdown`, so app leaves it down");
    flaky_tx.send(Order::Panic("first")).unwrap();
    flaky_tx.send(Order::Panic("second")).unwrap();
    show("app", &top, is("exited", "flaky"));

    println!("\n== flaky's name was released before its exit could be observed");
    println!(
        "    'flaky' registered: {}; 'pipeline' registered: {}",
        registry().lookup("flaky").is_some(),
        registry().lookup("pipeline").is_some()
    );

    println!("\n== Shutdown: reverse start order; deaf is abandoned after 200 ms");
    let t = std::time::Instant::now();
    app.shutdown().unwrap();
    for e in top.try_iter() {
        println!("    [app] {}", describe(&e));
    }
    println!("    shutdown took {:?}", t.elapsed());
    println!(
        "    'app' registered after shutdown: {}",
        registry().lookup("app").is_some()
    );
    println!(
        "    live steadfast threads: {} (the abandoned one is still blocked)",
        steadfast::live_threads()
    );
    release_tx.send(()).unwrap();
    steadfast::wait::until(Duration::from_secs(10), || steadfast::live_threads() == 0)
        .expect("the abandoned thread ends once released");
    println!("    released it: live steadfast threads: 0");
}
