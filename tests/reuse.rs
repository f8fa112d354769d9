//! Thread reuse (`DynamicSupervisorBuilder::reuse_threads`): an ended child's thread runs
//! the next child; exit ordering holds on it; idle threads are bounded, expire, and never
//! outlive their supervisor; an abandoned child's thread is left alone.

mod common;

use std::cell::RefCell;
use std::collections::HashSet;
use std::thread::{self, ThreadId};
use std::time::Duration;

use common::*;
use steadfast::channel::{self, Receiver, Sender};
use steadfast::{
    registry, Backoff, ChildSpec, DynamicSupervisor, Event, ExitReason, Restart, Shutdown,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// Sends once when the thread it was set on ends (its thread-locals are destroyed).
struct OnThreadEnd(Sender<ThreadId>);

impl Drop for OnThreadEnd {
    fn drop(&mut self) {
        let _ = self.0.send(thread::current().id());
    }
}

thread_local! {
    static WATCHED: RefCell<Option<OnThreadEnd>> = const { RefCell::new(None) };
    /// Set by a child; a later child on the same thread sees it.
    static LEFT_BEHIND: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Has the current thread say when it ends (once per thread).
fn watch_thread(ends: &Sender<ThreadId>) {
    WATCHED.with(|w| {
        w.borrow_mut()
            .get_or_insert_with(|| OnThreadEnd(ends.clone()));
    });
}

/// A task that reports its thread, watches it, and ends.
fn task(id: &str, ran_on: Sender<ThreadId>, ends: Sender<ThreadId>) -> ChildSpec {
    ChildSpec::task(id, move |_ctx| {
        watch_thread(&ends);
        ran_on.send(thread::current().id())?;
        Ok(())
    })
}

#[test]
fn an_ended_childs_thread_runs_the_next_child() {
    let (ran_on, ran) = channel::unbounded();
    let (ends, ended) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .reuse_threads(4)
        .start()
        .unwrap();
    let mut threads = HashSet::new();
    for n in 0..50 {
        let pid = sup
            .start_child(task(&format!("t{n}"), ran_on.clone(), ends.clone()))
            .unwrap();
        threads.insert(ran.recv_timeout(DEADLINE).unwrap());
        // Its exit is complete (monitors fire after names are released, before the
        // thread goes idle) before the next start.
        steadfast::monitor(pid).recv_timeout(DEADLINE).unwrap();
    }
    // One after another: a handful of threads ran all fifty (a start may come before
    // the last thread has parked, and spawn instead: never more than a few).
    eprintln!("{} threads ran 50 tasks", threads.len());
    assert!(threads.len() < 10, "{} threads for 50 tasks", threads.len());
    assert!(sup.idle_threads() <= 4);
    drop((ran_on, ends));
    sup.shutdown().unwrap();
    // Every thread the pool ever had is joined by the shutdown: each has ended.
    let gone: HashSet<ThreadId> = ended.try_iter().collect();
    assert_eq!(gone, threads, "a pooled thread outlived its supervisor");
}

#[test]
fn at_most_max_idle_threads_wait_and_they_expire() {
    let (ran_on, ran) = channel::unbounded();
    let (ends, ended) = channel::unbounded();
    let (go, gate) = channel::bounded::<()>(0);
    let sup = DynamicSupervisor::builder()
        .reuse_threads(3)
        .idle_thread_timeout(Duration::from_millis(50))
        .start()
        .unwrap();
    // Ten at once: ten threads; when they end, three may wait.
    let gated = |n: usize| {
        let (ran_on, ends, gate) = (ran_on.clone(), ends.clone(), gate.clone());
        ChildSpec::task(format!("g{n}"), move |ctx| {
            watch_thread(&ends);
            ran_on.send(thread::current().id())?;
            ctx.recv(&gate)?;
            Ok(())
        })
    };
    let pids: Vec<_> = (0..10)
        .map(|n| sup.start_child(gated(n)).unwrap())
        .collect();
    let threads: HashSet<ThreadId> = (0..10)
        .map(|_| ran.recv_timeout(DEADLINE).unwrap())
        .collect();
    assert_eq!(threads.len(), 10);
    let downs: Vec<Receiver<ExitReason>> = pids.iter().map(|&p| steadfast::monitor(p)).collect();
    drop(go); // all ten end
    for down in downs {
        down.recv_timeout(DEADLINE).unwrap();
    }
    // Seven threads end at once (no room to wait); the three idle ones after 50 ms.
    let gone: HashSet<ThreadId> = (0..10)
        .map(|_| ended.recv_timeout(DEADLINE).unwrap())
        .collect();
    assert_eq!(gone, threads);
    steadfast::wait::until(DEADLINE, || sup.idle_threads() == 0).unwrap();
    sup.shutdown().unwrap();
}

#[test]
fn names_and_monitors_are_done_with_before_the_thread_is_reused() {
    let (ran_on, ran) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .reuse_threads(1)
        .start()
        .unwrap();
    for round in 0..20 {
        let ran_on = ran_on.clone();
        // Each holds the same name; a thread is reused only after the last one's
        // name is gone, so every registration succeeds.
        let pid = sup
            .start_child(ChildSpec::task("named", move |_ctx| {
                registry().register("reuse:the-name".to_string(), std::sync::Arc::new(()))?;
                LEFT_BEHIND.with(|l| l.borrow_mut().replace(format!("round {round}")));
                ran_on.send(thread::current().id())?;
                Ok(())
            }))
            .unwrap();
        let down = steadfast::monitor(pid);
        ran.recv_timeout(DEADLINE).unwrap();
        assert!(matches!(
            down.recv_timeout(DEADLINE),
            Ok(ExitReason::Normal) | Ok(ExitReason::NoProcess)
        ));
        assert!(registry().lookup("reuse:the-name").is_none());
    }
    sup.shutdown().unwrap();
}

#[test]
fn thread_locals_carry_over_to_the_next_child_on_a_thread() {
    let (seen_tx, seen) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .reuse_threads(1)
        .start()
        .unwrap();
    let first = sup
        .start_child(ChildSpec::task("first", |_ctx| {
            LEFT_BEHIND.with(|l| *l.borrow_mut() = Some("from the first".into()));
            Ok(())
        }))
        .unwrap();
    steadfast::monitor(first).recv_timeout(DEADLINE).unwrap();
    steadfast::wait::until(DEADLINE, || sup.idle_threads() == 1).unwrap();
    sup.start_child(ChildSpec::task("second", move |_ctx| {
        seen_tx.send(LEFT_BEHIND.with(|l| l.borrow().clone()))?;
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        seen.recv_timeout(DEADLINE).unwrap().as_deref(),
        Some("from the first")
    );
    sup.shutdown().unwrap();
}

#[test]
fn restarts_after_a_backoff_run_on_kept_threads_and_nothing_is_lost() {
    let (sink, events) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .reuse_threads(2)
        .intensity(1_000, Duration::from_secs(60))
        .event_sink(sink)
        .start()
        .unwrap();
    let (crash, crashes) = channel::unbounded::<()>();
    sup.start_child(
        ChildSpec::worker("w", move |ctx| {
            ctx.recv(&crashes)?;
            Err("told to".into())
        })
        .restart(Restart::Permanent)
        .backoff(Backoff::fixed(Duration::from_micros(50))),
    )
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..30 {
        crash.send(()).unwrap();
        seen.extend(until(&events, |e| {
            matches!(e, Event::ChildRestarted { .. })
        }));
    }
    sup.shutdown().unwrap();
    seen.extend(events.try_iter());
    // Every incarnation started exited exactly once.
    let (mut started, mut exited) = (HashSet::new(), HashSet::new());
    for e in seen {
        match e {
            Event::ChildStarted { pid, .. } | Event::ChildRestarted { pid, .. } => {
                assert!(started.insert(pid))
            }
            Event::ChildExited { pid, .. } => assert!(exited.insert(pid)),
            _ => {}
        }
    }
    assert_eq!(started.len(), 31);
    assert_eq!(started, exited);
}

#[test]
fn an_abandoned_childs_thread_is_left_alone_and_ends_with_it() {
    let (ends, ended) = channel::unbounded();
    let (release, released) = channel::bounded::<()>(1);
    let (ran_on, ran) = channel::unbounded();
    let sup = DynamicSupervisor::builder()
        .reuse_threads(4)
        .start()
        .unwrap();
    let (e, r) = (ends.clone(), ran_on.clone());
    sup.start_child(
        ChildSpec::worker("deaf", move |_ctx| {
            watch_thread(&e);
            r.send(thread::current().id())?;
            let _ = released.recv(); // ignores its stop
            Ok(())
        })
        .shutdown(Shutdown::Timeout(Duration::from_millis(20))),
    )
    .unwrap();
    let deaf_thread = ran.recv_timeout(DEADLINE).unwrap();
    // A few that end and leave idle threads.
    for n in 0..3 {
        let pid = sup
            .start_child(task(&format!("t{n}"), ran_on.clone(), ends.clone()))
            .unwrap();
        ran.recv_timeout(DEADLINE).unwrap();
        steadfast::monitor(pid).recv_timeout(DEADLINE).unwrap();
    }
    // The shutdown abandons the deaf child and does not wait for its thread.
    sup.shutdown().unwrap();
    let gone: HashSet<ThreadId> = ended.try_iter().collect();
    assert!(!gone.contains(&deaf_thread));
    release.send(()).unwrap();
    assert_eq!(ended.recv_timeout(DEADLINE), Ok(deaf_thread));
}

#[test]
fn starts_exits_and_shutdowns_raced_leave_no_thread_and_lose_no_exit() {
    for round in 0..40 {
        let (sink, events) = channel::unbounded();
        let (ends, ended) = channel::unbounded();
        let (ran_on, ran) = channel::unbounded();
        let sup = DynamicSupervisor::builder()
            .reuse_threads(round % 4)
            .idle_thread_timeout(Duration::from_micros(round as u64 * 100))
            .event_sink(sink)
            .start()
            .unwrap();
        let handle = sup.handle();
        thread::scope(|s| {
            for k in 0..3 {
                let (handle, ran_on, ends) = (handle.clone(), ran_on.clone(), ends.clone());
                s.spawn(move || {
                    for n in 0..10 {
                        let _ = handle.start_child(task(
                            &format!("{k}-{n}"),
                            ran_on.clone(),
                            ends.clone(),
                        ));
                    }
                });
            }
            if round % 2 == 0 {
                drop(sup.handle().count_children());
            }
        });
        sup.shutdown().unwrap();
        let threads: HashSet<ThreadId> = ran.try_iter().collect();
        let gone: HashSet<ThreadId> = ended.try_iter().collect();
        assert_eq!(
            gone, threads,
            "round {round}: a thread outlived its supervisor"
        );
        let (mut started, mut exited) = (HashSet::new(), HashSet::new());
        for e in events.try_iter() {
            match e {
                Event::ChildStarted { pid, .. } => assert!(started.insert(pid)),
                Event::ChildExited { pid, .. } => assert!(exited.insert(pid)),
                _ => {}
            }
        }
        assert_eq!(started, exited, "round {round}");
    }
}

struct Counter(u64);

impl steadfast::server::Serve for Counter {}

impl steadfast::server::Handle<u64> for Counter {
    type Reply = (u64, ThreadId);
    fn handle(
        &mut self,
        n: u64,
        _: &mut steadfast::server::ServerContext<'_, Self>,
    ) -> (u64, ThreadId) {
        self.0 += n;
        (self.0, thread::current().id())
    }
}

#[test]
fn servers_one_after_another_on_a_kept_thread_each_serve_only_their_own_calls() {
    let sup = DynamicSupervisor::builder()
        .reuse_threads(1)
        .start()
        .unwrap();
    let mut threads = HashSet::new();
    let mut last: Option<steadfast::server::ServerRef<Counter>> = None;
    for round in 0..10 {
        let (spec, server) =
            steadfast::server::ServerSpec::new(format!("counter-{round}"), |_| Ok(Counter(0)))
                .build();
        let pid = sup.start_child(spec.restart(Restart::Temporary)).unwrap();
        assert_eq!(server.call(1).unwrap().0, 1, "a fresh state each time");
        let (count, thread) = server.call(2).unwrap();
        assert_eq!(count, 3);
        threads.insert(thread);
        // The server before this one is gone for good: its handle says so, at once.
        if let Some(old) = last.take() {
            assert!(old.call(1).is_err());
        }
        let down = steadfast::monitor(pid);
        sup.terminate_child(pid).unwrap();
        down.recv_timeout(DEADLINE).unwrap();
        last = Some(server);
    }
    assert!(
        threads.len() < 10,
        "{} threads for 10 servers",
        threads.len()
    );
    sup.shutdown().unwrap();
}
