//! What `benches/servers.rs` and `bench_table` share: the counter server measured, and
//! the hand-written server it is measured against (a thread, a request channel, a reply
//! channel per call — what users wrote by hand before `steadfast::server`).

use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Sender};
use steadfast::server::Server;
use steadfast::Context;

/// The server under test: adds what it is told.
pub struct Counter(pub u64);

impl Server for Counter {
    type Call = u64;
    type Reply = u64;
    type Cast = u64;
    fn handle_call(&mut self, n: u64, _: &Context) -> u64 {
        self.0 += n;
        self.0
    }
    fn handle_cast(&mut self, n: u64, _: &Context) {
        self.0 += n;
    }
}

/// A request to the hand-written server.
pub enum Bare {
    Call(u64, Sender<u64>),
    Cast(u64),
}

/// Starts the hand-written server; it ends when the sender is dropped.
pub fn bare_server() -> (Sender<Bare>, thread::JoinHandle<()>) {
    let (tx, rx) = unbounded::<Bare>();
    let handle = thread::spawn(move || {
        let mut state = 0u64;
        for msg in rx {
            match msg {
                Bare::Call(n, reply) => {
                    state += n;
                    let _ = reply.send(state);
                }
                Bare::Cast(n) => state += n,
            }
        }
    });
    (tx, handle)
}

/// A call to the hand-written server, with a timeout as `ServerRef::call` has.
pub fn bare_call(tx: &Sender<Bare>, n: u64) -> u64 {
    let (reply_tx, reply) = bounded(1);
    tx.send(Bare::Call(n, reply_tx)).unwrap();
    reply.recv_timeout(Duration::from_secs(5)).unwrap()
}
