//! A tree run as a service: until SIGTERM (or Ctrl-C), with health probes and its tree
//! on a loopback HTTP port, and the exit status an outer supervisor acts on.
//!
//! ```text
//! service-app (one_for_one)
//! ├── heartbeat  worker: ticks (and panics when told to, by GET /crash)
//! ├── jobs       dynamic supervisor
//! └── http       worker: GET /livez, /readyz (Kubernetes probes), /tree (the tree)
//! ```
//!
//! With the `observer` feature, the tree is also shown live in a browser (the address
//! from `STEADFAST_OBSERVER_ADDR`, any free loopback port by default):
//!
//! ```sh
//! cargo run --example service --features observer   # prints the page's address
//! curl localhost:8080/crash                          # watch heartbeat restart there
//! ```
//!
//! The probes are answered from the tree's state ([`service::health`]): live while the
//! root supervisor answers, ready while every child of the root runs. std's
//! `TcpListener` is enough for that; no web framework. Try it:
//!
//! ```sh
//! STEADFAST_SERVICE_ADDR=127.0.0.1:8080 cargo run --example service &
//! curl localhost:8080/readyz; curl localhost:8080/tree
//! kill -TERM %1   # orderly stop, exit status 0
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use steadfast::channel::Sender;
use steadfast::service::{self, Outcome, Service};
use steadfast::{
    registry, ChildError, ChildSpec, Context, DynamicSupervisor, Event, Supervisor, SupervisorRef,
};

/// The root's name in the global registry (the http worker finds it there).
pub const APP: &str = "service-app";

/// Set by `GET /crash`: the heartbeat panics at its next tick (and is restarted).
static CRASH: AtomicBool = AtomicBool::new(false);

/// Builds and starts the tree; the http worker listens on `addr` (port 0: any).
pub fn start(
    addr: &str,
    events: Option<Sender<Event>>,
) -> Result<(Supervisor, SocketAddr), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let mut app = Supervisor::builder()
        .name(APP)
        .child(ChildSpec::worker("heartbeat", |ctx| {
            while ctx.sleep(Duration::from_millis(20)).is_ok() {
                if CRASH.swap(false, Ordering::AcqRel) {
                    panic!("told to crash by GET /crash");
                }
            }
            Ok(())
        }))
        .child(ChildSpec::supervisor("jobs", DynamicSupervisor::builder()))
        .child(ChildSpec::worker("http", move |ctx| serve(ctx, &listener)));
    if let Some(sink) = events {
        app = app.event_sink(sink);
    }
    Ok((app.start()?, bound))
}

/// The probes and the tree, one request per connection. The stop hook connects to the
/// listener so that a blocked `accept` returns.
fn serve(ctx: &Context, listener: &TcpListener) -> Result<(), ChildError> {
    let addr = listener.local_addr()?;
    ctx.on_stop(move || {
        let _ = TcpStream::connect(addr);
    });
    let (_, app) =
        registry().wait_for_registration_as::<SupervisorRef>(APP, Duration::from_secs(5))?;
    loop {
        let (stream, _) = listener.accept()?;
        if ctx.is_stopping() {
            return Ok(());
        }
        // A client that misbehaves affects only its own request.
        if let Err(e) = answer(&app, stream) {
            log::info!("http: {e}");
        }
    }
}

fn answer(app: &SupervisorRef, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let health = service::health(app, Duration::from_secs(1));
    let (status, body) = match path {
        "/livez" if health.live => ("200 OK", "live\n".to_owned()),
        "/livez" => ("503 Service Unavailable", "not live\n".to_owned()),
        "/readyz" if health.ready => ("200 OK", "ready\n".to_owned()),
        "/readyz" => ("503 Service Unavailable", "not ready\n".to_owned()),
        "/tree" => match app.snapshot() {
            Ok(tree) => ("200 OK", tree.to_string()),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        },
        "/crash" => {
            CRASH.store(true, Ordering::Release);
            (
                "200 OK",
                "heartbeat will crash at its next tick\n".to_owned(),
            )
        }
        _ => (
            "404 Not Found",
            "try /livez, /readyz, /tree or /crash\n".to_owned(),
        ),
    };
    // One write for the whole response: `write!` on a raw socket writes each piece of
    // the format separately, and a client then waits on Nagle's algorithm and delayed
    // ACKs between them.
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    stream.write_all(response.as_bytes())
}

#[allow(dead_code)] // tests/service.rs includes this file for `start`
fn main() -> Result<Outcome, Box<dyn std::error::Error>> {
    let addr = std::env::var("STEADFAST_SERVICE_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let (app, bound) = start(&addr, None)?;
    println!("probes on http://{bound}/livez and /readyz, the tree on /tree");
    #[cfg(feature = "observer")]
    let _page = {
        let at = std::env::var("STEADFAST_OBSERVER_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
        let page = steadfast::observer::serve(at, app.handle())?;
        println!("the tree, live: http://{}/", page.addr());
        page
    };
    println!("stop with SIGTERM or Ctrl-C (twice: at once)");
    let outcome = Service::new(app).run();
    println!("service: {outcome}");
    Ok(outcome) // its exit status: success when stopped as asked, failure if it gave up
}
