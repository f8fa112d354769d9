//! What `benches/servers.rs` and `bench_table` share: the counter server measured, and
//! the hand-written server it is measured against (a thread, a request channel, a reply
//! channel per call — what users wrote by hand before `steadfast::server`); the spinning
//! round trip that back-to-back calls are measured against; the timer server and its
//! bare `recv_timeout` floor.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};
use steadfast::server::{HandleInfo, HandleLater, ReplyTo, Serve, Server, ServerContext};
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
            serve_bare(&mut state, msg);
        }
    });
    (tx, handle)
}

/// What the hand-written server does with a request (both floors share it).
fn serve_bare(state: &mut u64, msg: Bare) {
    match msg {
        Bare::Call(n, reply) => {
            *state += n;
            let _ = reply.send(*state);
        }
        Bare::Cast(n) => *state += n,
    }
}

/// A call to the hand-written server, with a timeout as `ServerRef::call` has.
pub fn bare_call(tx: &Sender<Bare>, n: u64) -> u64 {
    let (reply_tx, reply) = bounded(1);
    tx.send(Bare::Call(n, reply_tx)).unwrap();
    reply.recv_timeout(Duration::from_secs(5)).unwrap()
}

/// How long the spinning floor's server spins before it blocks (as a steadfast server
/// does after its last message), so that it idles between samples like ours.
const FLOOR_SPIN: Duration = Duration::from_micros(20);

/// The floor of back-to-back calls: the hand-written server of `bare_server` (a request
/// channel, a reply channel per call), with both threads spinning instead of parking —
/// the caller on its reply, the server on its requests (for 20 µs, then it blocks, as a
/// steadfast server does, so that it idles between samples like ours).
pub fn spinning_server() -> (Sender<Bare>, thread::JoinHandle<()>) {
    let (tx, rx) = unbounded::<Bare>();
    let handle = thread::spawn(move || {
        let mut state = 0u64;
        while let Some(msg) = spin_then_block(&rx) {
            serve_bare(&mut state, msg);
        }
    });
    (tx, handle)
}

/// A call to the spinning floor: send, then spin on the reply.
pub fn spinning_call(tx: &Sender<Bare>, n: u64) -> u64 {
    let (reply_tx, reply) = bounded(1);
    tx.send(Bare::Call(n, reply_tx)).unwrap();
    spin_recv(&reply)
}

/// The leanest round trip there is, for context: one persistent channel each way, a
/// bare `u64`, both threads spinning (the server for 20 µs before it blocks).
pub fn lean_server() -> (Sender<u64>, Receiver<u64>, thread::JoinHandle<()>) {
    let (req_tx, req) = unbounded::<u64>();
    let (rep_tx, rep) = unbounded::<u64>();
    let handle = thread::spawn(move || {
        let mut state = 0u64;
        while let Some(n) = spin_then_block(&req) {
            state += n;
            let _ = rep_tx.send(state);
        }
    });
    (req_tx, rep, handle)
}

/// A call to the lean floor.
pub fn lean_call(req: &Sender<u64>, rep: &Receiver<u64>, n: u64) -> u64 {
    req.send(n).unwrap();
    spin_recv(rep)
}

fn spin_recv<T>(rx: &Receiver<T>) -> T {
    loop {
        if let Ok(v) = rx.try_recv() {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn spin_then_block<T>(rx: &Receiver<T>) -> Option<T> {
    let until = Instant::now() + FLOOR_SPIN;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() >= until => return rx.recv().ok(),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
}

/// Fires `TICKS` timers of `TICK` one after the other, then answers the call that
/// asked: a steadfast server's `send_after`.
pub struct Ticker {
    left: u32,
    done: Option<ReplyTo<()>>,
}

/// Timers chained in a `server_timer` sample.
pub const TICKS: u32 = 20;
/// The delay of each.
pub const TICK: Duration = Duration::from_micros(50);

/// Asks a [`Ticker`] to run its chain.
pub struct Chain;
#[derive(Clone)]
struct Tick;

impl Ticker {
    pub fn new() -> Ticker {
        Ticker {
            left: 0,
            done: None,
        }
    }
}

impl Serve for Ticker {}

impl HandleLater<Chain> for Ticker {
    type Reply = ();
    fn handle_later(&mut self, _: Chain, reply: ReplyTo<()>, ctx: &mut ServerContext<'_, Self>) {
        self.left = TICKS;
        self.done = Some(reply);
        ctx.send_after(TICK, Tick);
    }
}

impl HandleInfo<Tick> for Ticker {
    fn handle_info(&mut self, _: Tick, ctx: &mut ServerContext<'_, Self>) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                done.send(());
            }
        } else {
            ctx.send_after(TICK, Tick);
        }
    }
}

/// The floor of `server_timer`: a thread that, asked, waits out `TICKS` bare
/// `recv_timeout`s of `TICK` one after the other, then answers.
pub fn bare_ticker() -> (Sender<Sender<()>>, thread::JoinHandle<()>) {
    let (tx, rx) = unbounded::<Sender<()>>();
    let handle = thread::spawn(move || {
        let (_never_tx, never) = bounded::<()>(0);
        for done in rx {
            for _ in 0..TICKS {
                let _ = never.recv_timeout(TICK);
            }
            let _ = done.send(());
        }
    });
    (tx, handle)
}
