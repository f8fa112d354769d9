//! The tree live in a browser (feature `observer`): Erlang's observer view of a running
//! supervision tree, for threads.
//!
//! [`serve`] starts a small HTTP server (on `tiny_http`, one thread) that answers:
//!
//! | path         | what                                                              |
//! |--------------|-------------------------------------------------------------------|
//! | `/`          | the page: the tree, each process coloured by state, with restarts, uptime, last exit, mailbox depth and pool counts, and the latest events beside it; it refreshes itself twice a second |
//! | `/tree.json` | the data the page shows: `{"tree": <snapshot>, "events": [..]}` (the snapshot as in [`TreeSnapshot`](crate::tree::TreeSnapshot)'s `Serialize`) |
//! | `/tree.dot`  | the tree in Graphviz DOT ([`TreeSnapshot::to_dot`](crate::tree::TreeSnapshot::to_dot)) |
//!
//! The page is one self-contained HTML file compiled into the crate: no CDN, no build
//! step. Bind it to loopback (`127.0.0.1:...`) unless you mean to show your tree to the
//! network: it has no authentication.
//!
//! ```no_run
//! use steadfast::{observer, ChildSpec, Supervisor};
//!
//! let app = Supervisor::builder()
//!     .name("app")
//!     .child(ChildSpec::worker("db", |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) }))
//!     .start()?;
//! let page = observer::serve("127.0.0.1:9000", app.handle())?;
//! println!("the tree: http://{}/", page.addr());
//! // ... until `page` is dropped (or `page.stop()`).
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod feed;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tiny_http::{Header, Response, Server};

use crate::supervisor::AnySupervisorRef;

use feed::Feed;

/// The page, compiled in.
const PAGE: &str = include_str!("page.html");

/// A running observer; stops (and joins its thread) when dropped.
pub struct Observer {
    addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

/// Serves the live view of the tree under `root` on `addr` (port 0: any free port; see
/// [`Observer::addr`]).
///
/// # Errors
///
/// The address could not be bound.
pub fn serve(addr: impl ToSocketAddrs, root: impl Into<AnySupervisorRef>) -> io::Result<Observer> {
    let root = root.into();
    let server = Server::http(addr).map_err(|e| io::Error::new(io::ErrorKind::AddrInUse, e))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?;
    let server = Arc::new(server);
    let serving = server.clone();
    let thread = thread::Builder::new()
        .name("steadfast-observer".into())
        .spawn(move || answer_all(&serving, &root))?;
    Ok(Observer {
        addr,
        server,
        thread: Some(thread),
    })
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for its thread.
    pub fn stop(self) {}
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers requests one at a time until unblocked.
fn answer_all(server: &Server, root: &AnySupervisorRef) {
    let started = Instant::now();
    let mut feed = Feed::new(started);
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("/").to_owned();
        let response = match path.as_str() {
            "/" | "/index.html" => {
                with_type(Response::from_string(PAGE), "text/html; charset=utf-8")
            }
            "/tree.json" => match root.snapshot() {
                Ok(tree) => {
                    feed.follow(&tree);
                    let body = serde_json::json!({
                        "tree": tree,
                        "events": feed.latest(),
                        "at_seconds": started.elapsed().as_secs_f64(),
                    });
                    with_type(Response::from_string(body.to_string()), "application/json")
                }
                Err(e) => unavailable(e),
            },
            "/tree.dot" => match root.snapshot() {
                Ok(tree) => with_type(Response::from_string(tree.to_dot()), "text/vnd.graphviz"),
                Err(e) => unavailable(e),
            },
            _ => Response::from_string("not found: try /, /tree.json or /tree.dot\n")
                .with_status_code(404),
        };
        let _ = request.respond(response);
    }
}

fn with_type(response: Response<io::Cursor<Vec<u8>>>, kind: &str) -> Response<io::Cursor<Vec<u8>>> {
    let header = Header::from_bytes("Content-Type", kind).expect("a valid header");
    let no_store = Header::from_bytes("Cache-Control", "no-store").expect("a valid header");
    response.with_header(header).with_header(no_store)
}

fn unavailable(e: impl std::fmt::Display) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(format!("the tree is not answering: {e}\n")).with_status_code(503)
}

impl From<crate::SupervisorRef> for AnySupervisorRef {
    fn from(s: crate::SupervisorRef) -> Self {
        AnySupervisorRef::Static(s)
    }
}

impl From<crate::DynamicSupervisorRef> for AnySupervisorRef {
    fn from(d: crate::DynamicSupervisorRef) -> Self {
        AnySupervisorRef::Dynamic(d)
    }
}
