//! Each supervised panic is reported once by default: by the `log` record when a logger
//! takes it (the standard hook then stays quiet), else by the standard hook. Panics of
//! other threads always reach the previous hook. The panic hook and the logger are
//! process-global, so each case runs in a subprocess of this binary and the test counts
//! what reached its stderr.

mod common;
use std::time::Duration;

use steadfast::{ChildSpec, Restart, Supervisor};

const SCENARIO: &str = "STEADFAST_PANIC_SCENARIO";

/// Writes every record it takes to stderr, as a usual logger would; takes none for the
/// target `steadfast::panic` when `skip_panics`.
struct StderrLogger {
    skip_panics: bool,
}

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        !(self.skip_panics && meta.target() == "steadfast::panic")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("LOG {} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger { skip_panics: false };
static FILTERING_LOGGER: StderrLogger = StderrLogger { skip_panics: true };

/// The subprocess: set up as the scenario says, crash one supervised child and one plain
/// thread, each with a message of its own.
#[test]
#[ignore = "run by the tests below, in a subprocess"]
fn scenario() {
    let Ok(which) = std::env::var(SCENARIO) else {
        return;
    };
    match which.as_str() {
        "logger" => log::set_logger(&LOGGER).unwrap(),
        "filtering-logger" => log::set_logger(&FILTERING_LOGGER).unwrap(),
        "routed" => steadfast::route_panics_to_log(),
        _ => {}
    }
    log::set_max_level(log::LevelFilter::Info);
    let (sink, events) = steadfast::channel::unbounded();
    let sup = Supervisor::builder()
        .event_sink(sink)
        .child(ChildSpec::worker("p", |_| panic!("supervised-7f3a")).restart(Restart::Temporary))
        .start()
        .unwrap();
    loop {
        let event = events.recv_timeout(Duration::from_secs(10)).unwrap();
        if let steadfast::Event::ChildExited { .. } = event {
            break;
        }
    }
    sup.shutdown().unwrap();
    let plain = std::thread::spawn(|| panic!("plain-9c1e"));
    assert!(plain.join().is_err());
}

/// Runs a scenario; returns its stderr.
fn run(which: &str) -> String {
    let out = common::scenario("scenario", SCENARIO, which)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{which}: {:?}\n{stderr}", out.status);
    stderr
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn without_a_logger_the_standard_hook_reports_a_supervised_panic_once() {
    let err = run("no-logger");
    assert_eq!(count(&err, "supervised-7f3a"), 1, "{err}");
    assert_eq!(count(&err, "plain-9c1e"), 1, "{err}");
}

#[test]
fn with_a_logger_the_log_record_reports_it_once_and_the_hook_is_quiet() {
    let err = run("logger");
    assert_eq!(count(&err, "supervised-7f3a"), 1, "{err}");
    let line = err.lines().find(|l| l.contains("supervised-7f3a")).unwrap();
    assert!(line.starts_with("LOG ERROR child \"p\""), "{line}");
    assert!(
        line.contains("tests/panic_hook.rs:"),
        "the location is in the record: {line}"
    );
    // Other threads keep the standard hook.
    assert_eq!(count(&err, "plain-9c1e"), 1, "{err}");
}

#[test]
fn a_logger_that_filters_the_panic_target_out_leaves_it_to_the_standard_hook() {
    let err = run("filtering-logger");
    assert_eq!(count(&err, "supervised-7f3a"), 1, "{err}");
    assert!(!err.contains("LOG ERROR child"), "{err}");
}

#[test]
fn route_panics_to_log_keeps_supervised_panics_off_stderr_even_without_a_logger() {
    let err = run("routed");
    assert_eq!(count(&err, "supervised-7f3a"), 0, "{err}");
    // Other threads keep the standard hook.
    assert_eq!(count(&err, "plain-9c1e"), 1, "{err}");
}
