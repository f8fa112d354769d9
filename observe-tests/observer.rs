//! The observer's HTTP side (feature `observer`): the page, the JSON it reads, the DOT
//! view, and a restart showing up in both the tree and the events. (What a browser shows
//! is tested by `tests/browser/observer.sh`, which `.ci/run` runs.)

#[path = "common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use steadfast::{observer, Supervisor};

const DEADLINE: Duration = Duration::from_secs(10);

/// A GET: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn tree_json(addr: SocketAddr) -> Value {
    let (status, body) = get(addr, "/tree.json");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_page_the_data_and_a_restart_in_both() {
    let (flaky, crash_tx) = common::flaky("observed crash");
    let app = Supervisor::builder()
        .name("observed")
        .child(flaky)
        .start()
        .unwrap();
    let page = observer::serve("127.0.0.1:0", app.handle()).unwrap();
    let addr = page.addr();
    assert!(addr.ip().is_loopback());

    let (status, html) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(html.contains("<title>steadfast"), "the page");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained: no CDN"
    );

    let json = tree_json(addr);
    assert_eq!(json["tree"]["root"]["id"], "observed");
    assert_eq!(json["tree"]["root"]["children"][0]["restarts"], 0);

    crash_tx.send(()).unwrap();
    let json = steadfast::wait::until_some(DEADLINE, "the restart in the JSON", || {
        let json = tree_json(addr);
        (json["tree"]["root"]["children"][0]["restarts"] == 1).then_some(json)
    })
    .unwrap();
    let flaky = &json["tree"]["root"]["children"][0];
    assert_eq!(flaky["last_exit"]["reason"], "panicked: observed crash");
    assert_eq!(flaky["last_exit"]["abnormal"], true);
    let kinds: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["child"] == "flaky")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["exited", "restarted"]);

    let (status, dot) = get(addr, "/tree.dot");
    assert_eq!(status, 200);
    assert!(dot.contains(r#""observed" -> "observed/flaky";"#), "{dot}");
    assert_eq!(get(addr, "/nothing").0, 404);

    // Stopping it joins its thread; tiny_http's accept thread then closes the port.
    page.stop();
    steadfast::wait::until(DEADLINE, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
    })
    .unwrap();
}

#[test]
fn a_tree_that_is_gone_is_reported_not_hung() {
    let app = Supervisor::builder().name("short-lived").start().unwrap();
    let page = observer::serve("127.0.0.1:0", app.handle()).unwrap();
    app.shutdown().unwrap();
    let (status, body) = get(page.addr(), "/tree.json");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not answering"), "{body}");
}
