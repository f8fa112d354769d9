//! Sessions under concurrent load. These tests count steadfast's live threads, so they
//! have a binary of their own and run one at a time.

#![cfg(feature = "sessions")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Sender};
use steadfast::session::{NewSession, SessionError, SessionManager};
use steadfast::{ChildSpec, Pid, Registry};

#[test]
fn a_failed_start_leaves_no_thread_behind() {
    let _serial = serial();
    let m = SessionManager::builder()
        .children(|_| {
            vec![
                idle("ok"),
                ChildSpec::worker("broken", |_| Err("no model".into())).ready_timeout(DEADLINE),
            ]
        })
        .start()
        .unwrap();
    let before = steadfast::live_threads();
    for i in 0..20 {
        assert!(m
            .create_session(NewSession::new("a", format!("/p/{i}")))
            .is_err());
    }
    assert_eq!(steadfast::live_threads(), before);
    assert_eq!(m.count(), 0);
}

#[test]
fn concurrent_create_and_terminate_respect_every_limit() {
    let _serial = serial();
    const THREADS: usize = 8;
    const PAIRS: usize = 500;
    const LIMIT: usize = 16;
    const PROJECTS: usize = 24;
    // Each session's agent marks its project as held while it runs: two live sessions on
    // one project would be caught by the agents themselves.
    let held: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PROJECTS).map(|_| AtomicUsize::new(0)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let (h, v) = (held.clone(), violations.clone());
    let m = SessionManager::builder()
        .max_sessions(LIMIT)
        .children(move |info| {
            let project: usize = info.metadata["project"].parse().unwrap();
            let (h, v) = (h.clone(), v.clone());
            vec![
                ChildSpec::worker("agent", move |ctx| {
                    if h[project].fetch_add(1, Ordering::SeqCst) != 0 {
                        v.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = ctx.stop_signal().recv();
                    h[project].fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }),
                idle("state"),
            ]
        })
        .start()
        .unwrap();
    let threads_before = steadfast::live_threads();
    let over_limit = AtomicUsize::new(0);
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (m, over_limit, created) = (&m, &over_limit, &created);
            s.spawn(move || {
                for i in 0..PAIRS {
                    let project = (t * 7 + i) % PROJECTS;
                    let req = NewSession::new(format!("t{t}-{i}"), format!("/proj/{project}"))
                        .with_metadata("project", project.to_string());
                    match m.create_session(req) {
                        Ok(id) => {
                            created.fetch_add(1, Ordering::Relaxed);
                            if m.count() > LIMIT {
                                over_limit.fetch_add(1, Ordering::Relaxed);
                            }
                            m.terminate_session(id).unwrap();
                        }
                        Err(SessionError::SessionLimitReached { .. })
                        | Err(SessionError::ProjectAlreadyOpen(_)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
        }
    });
    assert_eq!(over_limit.load(Ordering::Relaxed), 0);
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a project was handed out twice"
    );
    assert!(created.load(Ordering::Relaxed) > 0);
    // No orphans: no session, no registry entry, no child, no thread.
    assert_eq!(m.count(), 0);
    assert_eq!(m.supervisor().count_children().unwrap().specs, 0);
    assert_eq!(steadfast::live_threads(), threads_before);
    assert!(held.iter().all(|h| h.load(Ordering::SeqCst) == 0));
}

#[test]
fn sessions_under_load_with_random_crashes_leave_nothing_behind() {
    let _serial = serial();
    steadfast::route_panics_to_log();
    const THREADS: usize = 6;
    const SESSIONS: usize = 300;
    const LIMIT: usize = 12;
    const PROJECTS: usize = 16;
    let held: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PROJECTS).map(|_| AtomicUsize::new(0)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    // Each agent incarnation registers its crash-order channel under its own pid.
    let orders: Registry<Pid, Sender<()>> = Registry::new();
    let (h, v, o) = (held.clone(), violations.clone(), orders.clone());
    let m = SessionManager::builder()
        .max_sessions(LIMIT)
        // Two crashes in a minute are restarted; the third ends the session.
        .intensity(2, Duration::from_secs(60))
        .children(move |info| {
            let project: usize = info.metadata["project"].parse().unwrap();
            let (h, v, o) = (h.clone(), v.clone(), o.clone());
            vec![
                ChildSpec::worker("agent", move |ctx| {
                    if h[project].fetch_add(1, Ordering::SeqCst) != 0 {
                        v.fetch_add(1, Ordering::SeqCst);
                    }
                    let (tx, rx) = unbounded();
                    o.register(ctx.pid(), tx).unwrap();
                    let order = ctx.recv(&rx);
                    h[project].fetch_sub(1, Ordering::SeqCst);
                    order?;
                    panic!("ordered to crash");
                }),
                idle("state"),
            ]
        })
        .start()
        .unwrap();
    let threads_before = steadfast::live_threads();
    let done = AtomicBool::new(false);
    let (crashes, ended_by_crashes) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        // The crasher: orders a random live session's agent to crash, over and over.
        s.spawn(|| {
            let mut k = 0usize;
            while !done.load(Ordering::Acquire) {
                let sessions = m.list_sessions();
                if sessions.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                k = k.wrapping_mul(31).wrapping_add(17);
                let id = sessions[k % sessions.len()].id;
                if let Ok(agent) = m.session_child(id, "agent") {
                    if let Some((_, order)) = orders.lookup(&agent) {
                        if order.send(()).is_ok() {
                            crashes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        let drivers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (m, ended_by_crashes) = (&m, &ended_by_crashes);
                s.spawn(move || {
                    // Keeps up to two sessions open; terminating one the crasher ended
                    // already is the expected `NotFound`.
                    let mut open = std::collections::VecDeque::new();
                    for i in 0..SESSIONS {
                        let project = (t * 5 + i) % PROJECTS;
                        let req = NewSession::new(format!("t{t}-{i}"), format!("/crash/{project}"))
                            .with_metadata("project", project.to_string());
                        match m.create_session(req) {
                            Ok(id) => open.push_back(id),
                            Err(SessionError::SessionLimitReached { .. })
                            | Err(SessionError::ProjectAlreadyOpen(_)) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                        while open.len() > 2 || (i + 1 == SESSIONS && !open.is_empty()) {
                            let id = open.pop_front().unwrap();
                            match m.terminate_session(id) {
                                Ok(()) => {}
                                Err(SessionError::NotFound(_)) => {
                                    ended_by_crashes.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("unexpected {e:?}"),
                            }
                        }
                    }
                })
            })
            .collect();
        let results: Vec<_> = drivers.into_iter().map(|d| d.join()).collect();
        // Stop the crasher before reporting a driver's panic, or the scope would wait
        // for it forever.
        done.store(true, Ordering::Release);
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert!(
        crashes.load(Ordering::Relaxed) > 0,
        "the crasher got through"
    );
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a project was handed out twice"
    );
    // No orphans, whether a session ended by terminate or by crashing past its intensity.
    assert_eq!(m.count(), 0);
    assert!(m.list_sessions().is_empty());
    assert_eq!(m.supervisor().count_children().unwrap().specs, 0);
    assert_eq!(orders.count(), 0, "every agent's entry went with it");
    assert_eq!(steadfast::live_threads(), threads_before);
    assert!(held.iter().all(|h| h.load(Ordering::SeqCst) == 0));
    println!(
        "crash orders: {}, sessions ended by crashes: {}",
        crashes.load(Ordering::Relaxed),
        ended_by_crashes.load(Ordering::Relaxed)
    );
}
