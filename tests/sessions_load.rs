//! Sessions under concurrent load. These tests count steadfast's live threads, so they
//! have a binary of their own and run one at a time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use steadfast::session::{NewSession, SessionError, SessionManager};
use steadfast::ChildSpec;

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_failed_start_leaves_no_thread_behind() {
    let _serial = SERIAL.lock();
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
    let _serial = SERIAL.lock();
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
