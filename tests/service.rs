//! The process boundary, in subprocesses of this test binary: SIGTERM → orderly stop and
//! success; the root giving up → failure; a second signal during a slow stop → exit at
//! once. systemd's notifications go to a datagram socket the test binds, and their
//! order is checked. The service is `examples/service.rs` itself.

#![cfg(all(unix, feature = "signals", feature = "systemd"))]

mod common;

#[allow(dead_code)]
#[path = "../examples/service.rs"]
mod service_example;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use steadfast::service::{Outcome, Service};
use steadfast::{ChildSpec, Event, Shutdown, Supervisor};

const SCENARIO: &str = "STEADFAST_SERVICE_SCENARIO";

/// The subprocess: runs a tree as a service, as the scenario says, and prints each exit
/// its event stream reported, then exits with the service's status.
#[test]
#[ignore = "run by the tests below, in a subprocess"]
fn scenario() {
    let Ok(which) = std::env::var(SCENARIO) else {
        return;
    };
    let (sink, events) = steadfast::channel::unbounded();
    let app = match which.as_str() {
        "example" => service_example::start("127.0.0.1:0", Some(sink)).unwrap().0,
        "gives-up" => Supervisor::builder()
            .intensity(2, Duration::from_secs(60))
            .event_sink(sink)
            .child(idle("steady"))
            .child(ChildSpec::worker("doomed", |ctx| {
                // Crashes after the service is up (so READY goes out first).
                let _ = ctx.sleep(Duration::from_millis(300));
                panic!("dependency gone")
            }))
            .start()
            .unwrap(),
        "slow-stop" => Supervisor::builder()
            .event_sink(sink)
            .child(
                ChildSpec::worker("stubborn", |_ctx| {
                    std::thread::sleep(Duration::from_secs(120));
                    Ok(())
                })
                .shutdown(Shutdown::Timeout(Duration::from_secs(120))),
            )
            .start()
            .unwrap(),
        other => panic!("unknown scenario {other}"),
    };
    let outcome = Service::new(app).run();
    // libtest's "test scenario ... " has no line end of its own.
    println!();
    for event in events.try_iter() {
        if let Event::ChildExited { id, reason, .. } = event {
            println!("exit {id} {}", reason_word(&reason));
        }
    }
    println!("outcome {outcome}");
    std::process::exit(if outcome.is_success() { 0 } else { 1 });
}

/// A running scenario and the socket its systemd notifications arrive on.
struct Running {
    child: Child,
    notify: UnixDatagram,
    path: PathBuf,
}

impl Running {
    fn start(which: &str) -> Running {
        let path =
            std::env::temp_dir().join(format!("steadfast-notify-{}-{which}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let notify = UnixDatagram::bind(&path).unwrap();
        notify.set_read_timeout(Some(DEADLINE)).unwrap();
        let child = common::scenario("scenario", SCENARIO, which)
            .arg("--test-threads=1")
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "100000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running {
            child,
            notify,
            path,
        }
    }

    /// The next notification (within the deadline).
    fn next(&self) -> String {
        let mut buf = [0u8; 256];
        let n = self.notify.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Notifications until `msg` (included).
    fn until(&self, msg: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let m = self.next();
            let done = m == msg;
            seen.push(m);
            if done {
                return seen;
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process; its status and stdout.
    fn finish(self) -> (ExitStatus, String) {
        let out = self.child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&self.path);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status, stdout)
    }
}

#[test]
fn sigterm_stops_the_tree_in_order_and_exits_with_success() {
    let run = Running::start("example");
    assert_eq!(run.next(), "READY=1");
    // The watchdog pings while the root answers.
    assert_eq!(run.next(), "WATCHDOG=1");
    run.signal("-TERM");
    let rest = run.until("STOPPING=1");
    let pings = &rest[..rest.len() - 1];
    assert!(pings.iter().all(|m| m == "WATCHDOG=1"), "{rest:?}");
    let (status, stdout) = run.finish();
    assert!(status.success(), "{status:?}\n{stdout}");
    let exits: Vec<&str> = stdout.lines().filter(|l| l.starts_with("exit ")).collect();
    // Reverse start order, every child Shutdown.
    assert_eq!(
        exits,
        [
            "exit http shutdown",
            "exit jobs shutdown",
            "exit heartbeat shutdown"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("outcome stopped on a signal"), "{stdout}");
}

#[test]
fn a_root_that_gives_up_ends_the_process_with_failure() {
    let run = Running::start("gives-up");
    assert_eq!(run.next(), "READY=1");
    let rest = run.until("STOPPING=1");
    let pings = &rest[..rest.len() - 1];
    assert!(pings.iter().all(|m| m == "WATCHDOG=1"), "{rest:?}");
    let (status, stdout) = run.finish();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("restart intensity exceeded"), "{stdout}");
}

#[test]
fn a_second_signal_during_a_slow_stop_ends_the_process_at_once() {
    let run = Running::start("slow-stop");
    assert_eq!(run.next(), "READY=1");
    run.signal("-TERM");
    run.until("STOPPING=1");
    // The stop now waits up to 120 s for the stubborn child; a second signal ends it.
    let sent = Instant::now();
    run.signal("-INT");
    let (status, stdout) = run.finish();
    assert_eq!(
        status.code(),
        Some(128 + 2),
        "{status:?} {:?}\n{stdout}",
        status.signal()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn outcomes_map_to_exit_statuses() {
    use std::process::ExitCode;
    assert_eq!(Outcome::Stopped.exit_code(), ExitCode::SUCCESS);
    assert_eq!(Outcome::Ended.exit_code(), ExitCode::SUCCESS);
    let failed = Outcome::Failed(steadfast::SupervisorError::IntensityExceeded {
        restarts: 1,
        period: Duration::from_secs(1),
    });
    assert_eq!(failed.exit_code(), ExitCode::FAILURE);
    assert!(!failed.is_success());
}
