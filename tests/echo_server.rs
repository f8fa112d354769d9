//! The echo server example under test: a crashing connection ends only its handler, and
//! shutdown with everyone blocked in `accept` and `read` is prompt and clean — every
//! child `Shutdown`, none abandoned.

mod common;

#[allow(dead_code)]
#[path = "../examples/echo_server.rs"]
mod echo_server;

use std::time::{Duration, Instant};

use common::*;
use echo_server::{start, Client};
use steadfast::channel::Receiver;
use steadfast::{Event, ExitReason};

fn exits(events: &Receiver<Event>) -> Vec<(String, ExitReason)> {
    events
        .try_iter()
        .filter_map(|e| match e {
            Event::ChildExited { id, reason, .. } => Some((id.to_string(), reason)),
            Event::ChildAbandoned { id, .. } => {
                Some((format!("abandoned {id}"), ExitReason::Killed))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn boom_ends_only_its_handler_and_shutdown_is_prompt_and_clean() {
    let server = start("tests::echo_server::handlers").unwrap();
    let handler_events = server.handlers.events().unwrap();
    let top_events = server.sup.events().unwrap();

    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.addr).unwrap())
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.send(&format!("hello {i}")).unwrap(),
            format!("hello {i}")
        );
    }
    assert_eq!(server.handlers.count_children().unwrap().active, 3);

    // "boom" crashes that client's handler only: its connection closes...
    assert_eq!(clients[1].send("boom").unwrap(), "");
    loop {
        if let Event::ChildExited { reason, .. } = next(&handler_events) {
            assert!(matches!(reason, ExitReason::Panicked(_)), "{reason}");
            break;
        }
    }
    // ...the others echo on, and the acceptor and handlers' supervisor were untouched.
    assert_eq!(clients[0].send("still here").unwrap(), "still here");
    assert_eq!(clients[2].send("me too").unwrap(), "me too");
    assert_eq!(server.handlers.count_children().unwrap().active, 2);
    assert!(
        top_events.try_recv().is_err(),
        "nothing happened at the top"
    );

    // Everyone is blocked: the acceptor in accept, two handlers in read. With the
    // default 5 s worker shutdown timeout, sitting it out would take 5 s per level.
    let started = Instant::now();
    server.sup.shutdown().unwrap();
    let took = started.elapsed();

    let handlers = exits(&handler_events);
    assert_eq!(
        handlers,
        [
            ("connection".to_string(), ExitReason::Shutdown),
            ("connection".to_string(), ExitReason::Shutdown)
        ]
    );
    let top = exits(&top_events);
    assert_eq!(
        top,
        [
            ("acceptor".to_string(), ExitReason::Shutdown),
            ("handlers".to_string(), ExitReason::Shutdown)
        ]
    );
    // A small fraction of one shutdown timeout (generous for a loaded machine).
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
}
