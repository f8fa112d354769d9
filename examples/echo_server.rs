//! A thread-per-connection TCP echo server on loopback, supervised.
//!
//! ```text
//! echo (rest_for_one)
//! ├── handlers   DynamicSupervisor: one task per connection
//! └── acceptor   worker: accept, then start a handler task
//! ```
//!
//! - Each connection is a [`ChildSpec::task`]: an `FnOnce` that owns its `TcpStream` and is
//!   never restarted. A client that sends `boom` crashes only its own handler.
//! - Both the acceptor (blocked in `accept`) and the handlers (blocked in `read`) register
//!   a stop hook ([`Context::on_stop`]) that unblocks them, so shutdown is prompt: no
//!   thread sits out its shutdown timeout, none is abandoned.
//! - `rest_for_one`: if the handlers' supervisor goes down, the acceptor (started after
//!   it) is restarted too, and finds the new one by name.
//!
//! Run it with `cargo run --example echo_server`: it starts the server, runs three
//! clients (one of them sends `boom`), shuts down and says how long that took.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use steadfast::{
    ChildError, ChildSpec, Context, DynamicSupervisor, DynamicSupervisorRef, Strategy, Supervisor,
    Tracked,
};

/// A running echo server.
pub struct EchoServer {
    /// The tree: dropping or shutting it down stops everything.
    pub sup: Supervisor,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The supervisor of the connection handlers.
    pub handlers: DynamicSupervisorRef,
}

/// Starts an echo server on a free loopback port; `name` names its handlers'
/// supervisor (its threads, and in the global registry), unique per server.
pub fn start(name: &str) -> Result<EchoServer, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // The handlers' supervisor, with a handle that follows it across its restarts.
    let (handlers_spec, handlers) = DynamicSupervisor::builder().name(name).build("handlers");
    let to_handlers = handlers.clone();
    let acceptor = ChildSpec::worker("acceptor", move |ctx| {
        accept_loop(ctx, &listener, &to_handlers)
    });
    let sup = Supervisor::builder()
        .strategy(Strategy::RestForOne)
        .child(handlers_spec)
        .child(acceptor)
        .start()?;
    let handlers = handlers.get()?;
    Ok(EchoServer {
        sup,
        addr,
        handlers,
    })
}

/// The acceptor: each connection becomes a handler task. Its stop hook connects to the
/// listener, so that a blocked `accept` returns and the loop sees the stop.
fn accept_loop(
    ctx: &Context,
    listener: &TcpListener,
    handlers: &Tracked<DynamicSupervisorRef>,
) -> Result<(), ChildError> {
    let addr = listener.local_addr()?;
    ctx.on_stop(move || {
        let _ = TcpStream::connect(addr);
    });
    // Started after the handlers' supervisor (rest_for_one), so it runs; if it is
    // restarted, so is this acceptor, which then finds the new one.
    let handlers = handlers.get()?;
    loop {
        let (stream, _) = listener.accept()?;
        if ctx.is_stopping() {
            return Ok(());
        }
        handlers.start_child(ChildSpec::task("connection", move |ctx| echo(ctx, stream)))?;
    }
}

/// One connection: echo each line back; `boom` crashes this handler (and only it). Its
/// stop hook shuts the socket down, so a blocked `read` returns at once.
fn echo(ctx: &Context, stream: TcpStream) -> Result<(), ChildError> {
    let unblock = stream.try_clone()?;
    ctx.on_stop(move || {
        let _ = unblock.shutdown(Shutdown::Both);
    });
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()), // the client left, or the stop hook shut us down
            Ok(_) if line.trim_end() == "boom" => panic!("a client asked for it"),
            Ok(_) => writer.write_all(line.as_bytes())?,
            Err(_) if ctx.is_stopping() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A client: one connection, line by line.
pub struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let writer = TcpStream::connect(addr)?;
        writer.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Client { writer, reader })
    }

    /// Sends a line and returns what came back (empty: the server closed the connection).
    pub fn send(&mut self, line: &str) -> io::Result<String> {
        // One write per request: `writeln!` on a raw socket writes the line and its
        // newline separately, and a request/reply loop then waits on Nagle's algorithm
        // and the peer's delayed ACK (here: 130x slower) for every line.
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut back = String::new();
        self.reader.read_line(&mut back)?;
        Ok(back.trim_end().to_owned())
    }
}

#[allow(dead_code)] // the echo_server test includes this file for `start` and `Client`
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = start("echo_server::handlers")?;
    println!("listening on {}", server.addr);
    let mut clients = Vec::new();
    for name in ["ada", "bob", "cy"] {
        let mut client = Client::connect(server.addr)?;
        println!(
            "{name}: sent hello, got {:?}",
            client.send(&format!("hello from {name}"))?
        );
        clients.push(client);
    }
    // bob crashes his own handler; the others do not notice.
    println!(
        "bob: sent boom, got {:?} (connection closed)",
        clients[1].send("boom")?
    );
    println!("ada: still echoing: {:?}", clients[0].send("still there?")?);
    println!("cy: still echoing: {:?}", clients[2].send("me too")?);
    // Shut down with the acceptor blocked in accept and two handlers blocked in read.
    let started = Instant::now();
    server.sup.shutdown()?;
    println!(
        "shutdown took {:?} (worker shutdown timeout: 5s)",
        started.elapsed()
    );
    Ok(())
}
