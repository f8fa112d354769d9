//! A key-value server as a real one is written: each message type with its own reply,
//! keys that expire (timers in the server's own loop), a replication feed read from a
//! channel (another source, in the same loop), and callers that wait for a key that is
//! not there yet (replies later) — with no thread, channel or timer of its own. Then a
//! crash: waiting callers are told why at once, and the restarted server serves on.
//!
//! Run with `cargo run --example kv_server`.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use steadfast::server::{
    CallError, Handle, HandleCast, HandleInfo, HandleLater, ReplyTo, Serve, ServerContext,
    ServerSpec,
};
use steadfast::{Restart, Supervisor};

/// The store.
struct Kv {
    map: HashMap<String, String>,
    /// Callers waiting for a key to get a value.
    waiting: HashMap<String, Vec<ReplyTo<String>>>,
    /// The replication feed, watched from `handle_continue`.
    feed: Receiver<(String, String)>,
}

impl Kv {
    fn set(&mut self, key: String, value: String) {
        for waiter in self.waiting.remove(&key).unwrap_or_default() {
            waiter.send(value.clone());
        }
        self.map.insert(key, value);
    }
}

/// Reads a key: `-> Option<String>`.
struct Get(&'static str);
/// Writes a key, which expires after the given time: `-> ()`.
struct Put(&'static str, &'static str, Duration);
/// Waits until a key has a value: `-> String`, answered when it has one.
struct WaitFor(&'static str);
/// A cast: forget everything.
struct Clear;
/// A cast: crash (to show what callers see).
struct Crash;
/// A timer's message: a key's time is up.
struct Expire(String);

impl Serve for Kv {
    fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
        ctx.watch(self.feed.clone());
    }
}

impl Handle<Get> for Kv {
    type Reply = Option<String>;
    fn handle(&mut self, Get(key): Get, _: &mut ServerContext<'_, Self>) -> Option<String> {
        self.map.get(key).cloned()
    }
}

impl Handle<Put> for Kv {
    type Reply = ();
    fn handle(&mut self, Put(key, value, ttl): Put, ctx: &mut ServerContext<'_, Self>) {
        self.set(key.to_owned(), value.to_owned());
        ctx.send_after(ttl, Expire(key.to_owned()));
    }
}

impl HandleLater<WaitFor> for Kv {
    type Reply = String;
    fn handle_later(
        &mut self,
        WaitFor(key): WaitFor,
        reply: ReplyTo<String>,
        _: &mut ServerContext<'_, Self>,
    ) {
        match self.map.get(key) {
            Some(value) => reply.send(value.clone()),
            None => self.waiting.entry(key.to_owned()).or_default().push(reply),
        }
    }
}

impl HandleCast<Clear> for Kv {
    fn handle_cast(&mut self, _: Clear, _: &mut ServerContext<'_, Self>) {
        self.map.clear();
    }
}

impl HandleCast<Crash> for Kv {
    fn handle_cast(&mut self, _: Crash, _: &mut ServerContext<'_, Self>) {
        panic!("the disk went away");
    }
}

impl HandleInfo<Expire> for Kv {
    fn handle_info(&mut self, Expire(key): Expire, _: &mut ServerContext<'_, Self>) {
        self.map.remove(&key);
    }
}

/// An update from the replication feed.
impl HandleInfo<(String, String)> for Kv {
    fn handle_info(&mut self, (key, value): (String, String), _: &mut ServerContext<'_, Self>) {
        self.set(key, value);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    steadfast::route_panics_to_log();
    let (feed_tx, feed) = unbounded();
    let (spec, kv) = ServerSpec::new("kv", move |_| {
        Ok(Kv {
            map: HashMap::new(),
            waiting: HashMap::new(),
            feed: feed.clone(),
        })
    })
    .name("kv")
    .build();
    let sup = Supervisor::builder()
        .child(spec.restart(Restart::Permanent))
        .start()?;

    println!("== Each message its own reply type");
    kv.call(Put("greeting", "hello", Duration::from_secs(60)))?; // -> ()
    let greeting: Option<String> = kv.call(Get("greeting"))?;
    println!("    get greeting -> {greeting:?}");
    assert_eq!(greeting.as_deref(), Some("hello"));

    println!("\n== A key that expires (a timer in the server's loop)");
    kv.call(Put("session", "abc", Duration::from_millis(50)))?;
    println!("    right away -> {:?}", kv.call(Get("session"))?);
    steadfast::wait::until(Duration::from_secs(10), || {
        kv.call(Get("session")).is_ok_and(|v| v.is_none())
    })?;
    println!("    once its time is up -> None");

    println!("\n== A caller waits for a key; the replication feed brings it");
    let waiter = {
        let kv = kv.clone();
        thread::spawn(move || kv.call(WaitFor("leader")))
    };
    steadfast::wait::until(Duration::from_secs(10), || {
        kv.get_state(|s| s.waiting.contains_key("leader"))
            .unwrap_or(false)
    })?;
    feed_tx.send(("leader".into(), "node-2".into()))?;
    let leader = waiter.join().unwrap()?;
    println!("    waited for leader -> {leader:?}");
    assert_eq!(leader, "node-2");

    println!("\n== A crash while callers wait: they are told why at once");
    let waiter = {
        let kv = kv.clone();
        thread::spawn(move || kv.call_timeout(WaitFor("never"), Duration::from_secs(3600)))
    };
    steadfast::wait::until(Duration::from_secs(10), || {
        kv.get_state(|s| s.waiting.contains_key("never"))
            .unwrap_or(false)
    })?;
    kv.cast(Crash)?;
    match waiter.join().unwrap() {
        Err(CallError::Exited(why)) => println!("    the waiting caller: {why}"),
        other => return Err(format!("expected the crash, got {other:?}").into()),
    }
    // The same handle: it points at the mailbox, which the restarted server serves.
    let greeting = kv.call(Get("greeting"))?;
    println!("    restarted (state starts over): get greeting -> {greeting:?}");
    assert_eq!(greeting, None);
    kv.cast(Clear)?;
    let stats = kv.statistics()?;
    println!(
        "    this incarnation so far: {} calls, {} casts, {} infos",
        stats.calls, stats.casts, stats.infos
    );

    sup.shutdown()?;
    println!(
        "\nshut down; {} live steadfast threads",
        steadfast::live_threads()
    );
    assert_eq!(steadfast::live_threads(), 0);
    Ok(())
}
