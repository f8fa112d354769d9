//! The session layer, mirroring the original system's test tables: start and stop,
//! registry entries appear and vanish, the child count rises and falls, limit / exists /
//! project errors, unknown ids, stopping several sessions, concurrent create and terminate.

#![cfg(feature = "sessions")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use steadfast::session::{NewSession, SessionError, SessionId, SessionManager, SessionStatus};
use steadfast::{monitor, ChildSpec, StartError};

/// Each session's agent command channel, by session id.
type Agents = Arc<Mutex<HashMap<SessionId, Sender<Cmd>>>>;

/// A manager whose sessions run an "agent" (crashes on command) and a "state" worker.
fn manager(max: usize) -> (SessionManager, Agents) {
    let agents: Agents = Arc::default();
    let a = agents.clone();
    let m = SessionManager::builder()
        .max_sessions(max)
        .intensity(2, Duration::from_secs(60))
        .children(move |info| {
            let (tx, rx) = unbounded::<Cmd>();
            a.lock().insert(info.id, tx);
            vec![agent(rx), idle("state")]
        })
        .start()
        .unwrap();
    (m, agents)
}

fn agent(rx: Receiver<Cmd>) -> ChildSpec {
    ChildSpec::worker("agent", move |ctx| match ctx.recv(&rx)? {
        Cmd::Panic(m) => panic!("{m}"),
        Cmd::Fail(m) => Err(m.into()),
        _ => Ok(()),
    })
}

fn new(name: &str, project: &str) -> NewSession {
    NewSession::new(name, format!("/steadfast-tests/{project}"))
}

#[test]
fn create_starts_a_tree_and_terminate_removes_every_trace() {
    let (m, _) = manager(4);
    let sup = m.supervisor();
    assert_eq!(sup.count_children().unwrap().active, 0);
    let id = m
        .create_session(new("one", "p1").with_metadata("owner", "ann"))
        .unwrap();
    let info = m.session_info(id).unwrap();
    assert_eq!(info.status, SessionStatus::Active);
    assert_eq!(info.name, "one");
    assert_eq!(info.metadata["owner"], "ann");
    assert_eq!(info.restart_count, 0);
    let pid = m.session_pid(id).unwrap();
    assert_eq!(info.pid, Some(pid));
    assert!(m.session_running(id));
    assert_eq!(sup.count_children().unwrap().active, 1);
    let children = m.session_supervisor(id).unwrap().which_children().unwrap();
    let ids: Vec<&str> = children.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["agent", "state"]);
    let agent = m.session_child(id, "agent").unwrap();
    assert!(agent.is_alive());

    m.terminate_session(id).unwrap();
    assert!(!pid.is_alive() && !agent.is_alive());
    assert!(!m.session_running(id));
    assert!(matches!(m.session_info(id), Err(SessionError::NotFound(x)) if x == id));
    assert_eq!(sup.count_children().unwrap().active, 0);
    assert_eq!(m.count(), 0);
    // The project is free again.
    m.create_session(new("again", "p1")).unwrap();
}

#[test]
fn limit_exists_and_project_errors_are_checked_in_that_order() {
    let (m, _) = manager(2);
    let id = SessionId::new_v4();
    m.create_session(new("a", "p1").with_id(id)).unwrap();
    // Same id and same project: the id is reported first.
    assert!(matches!(
        m.create_session(new("b", "p1").with_id(id)),
        Err(SessionError::SessionExists(x)) if x == id
    ));
    assert!(matches!(
        m.create_session(new("b", "p1")),
        Err(SessionError::ProjectAlreadyOpen(p)) if p.ends_with("p1")
    ));
    m.create_session(new("b", "p2")).unwrap();
    // Full, duplicate id and open project at once: the limit is reported first.
    assert!(matches!(
        m.create_session(new("c", "p1").with_id(id)),
        Err(SessionError::SessionLimitReached { limit: 2 })
    ));
    assert_eq!(m.count(), 2);
}

#[test]
fn two_spellings_of_one_project_are_one_project() {
    let (m, _) = manager(4);
    m.create_session(NewSession::new("a", "/steadfast-tests/x/y/../z"))
        .unwrap();
    assert!(matches!(
        m.create_session(NewSession::new("b", "/steadfast-tests/x/./z")),
        Err(SessionError::ProjectAlreadyOpen(_))
    ));
    let info = &m.list_sessions()[0];
    assert_eq!(
        info.project_path,
        std::path::PathBuf::from("/steadfast-tests/x/z")
    );
}

#[test]
fn unknown_ids_are_not_found() {
    let (m, _) = manager(4);
    let id = SessionId::new_v4();
    assert!(matches!(
        m.terminate_session(id),
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(m.session_info(id), Err(SessionError::NotFound(_))));
    assert!(matches!(m.session_pid(id), Err(SessionError::NotFound(_))));
    assert!(matches!(
        m.session_supervisor(id),
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(
        m.session_child(id, "agent"),
        Err(SessionError::NotFound(_))
    ));
    assert!(!m.session_running(id));
    let live = m.create_session(new("a", "p")).unwrap();
    assert!(matches!(
        m.session_child(live, "nope"),
        Err(SessionError::ChildNotFound { .. })
    ));
    m.terminate_session(live).unwrap();
    assert!(matches!(
        m.terminate_session(live),
        Err(SessionError::NotFound(_))
    ));
}

#[test]
fn several_sessions_are_listed_in_creation_order_and_stopped() {
    let (m, _) = manager(8);
    let ids: Vec<SessionId> = (0..5)
        .map(|i| {
            m.create_session(new(&format!("s{i}"), &format!("p{i}")))
                .unwrap()
        })
        .collect();
    let listed: Vec<SessionId> = m.list_sessions().iter().map(|s| s.id).collect();
    assert_eq!(listed, ids);
    for id in &ids[1..4] {
        m.terminate_session(*id).unwrap();
    }
    let listed: Vec<SessionId> = m.list_sessions().iter().map(|s| s.id).collect();
    assert_eq!(listed, [ids[0], ids[4]]);
    assert_eq!(m.supervisor().count_children().unwrap().active, 2);
}

#[test]
fn a_crashing_agent_restarts_its_session_tree_and_is_counted() {
    let (m, agents) = manager(4);
    let id = m.create_session(new("a", "p")).unwrap();
    let sup = m.session_supervisor(id).unwrap();
    let events = sup.events().unwrap();
    let (agent0, state0) = (
        m.session_child(id, "agent").unwrap(),
        m.session_child(id, "state").unwrap(),
    );
    let tx = agents.lock()[&id].clone();
    tx.send(Cmd::Panic("model error")).unwrap();
    // one_for_all: the state worker restarts with the agent.
    briefs_through(&events, "restarted state");
    assert_ne!(m.session_child(id, "agent").unwrap(), agent0);
    assert_ne!(m.session_child(id, "state").unwrap(), state0);
    // One crash, one restart of the session: not one per child the group took along.
    assert_eq!(m.session_info(id).unwrap().restart_count, 1);
    agents.lock()[&id].send(Cmd::Fail("again")).unwrap();
    briefs_through(&events, "restarted state");
    assert_eq!(m.session_info(id).unwrap().restart_count, 2);
    assert_eq!(m.session_info(id).unwrap().status, SessionStatus::Active);
}

#[test]
fn a_session_dying_past_its_intensity_is_gone_before_its_exit_is_observed() {
    let (m, agents) = manager(4);
    let id = m.create_session(new("doomed", "doomed")).unwrap();
    let other = m.create_session(new("fine", "fine")).unwrap();
    let exit = monitor(m.session_pid(id).unwrap());
    let tx = agents.lock()[&id].clone();
    for _ in 0..3 {
        tx.send(Cmd::Panic("again")).unwrap();
    }
    assert_eq!(
        exit.recv_timeout(DEADLINE).unwrap(),
        steadfast::ExitReason::Shutdown
    );
    // Observed the exit: every table is already clean.
    assert!(matches!(m.session_info(id), Err(SessionError::NotFound(_))));
    assert!(!m.session_running(id));
    assert_eq!(m.count(), 1);
    // The manager keeps serving, and the project is free.
    assert!(m.session_running(other));
    m.create_session(new("reborn", "doomed")).unwrap();
    // The session supervisor hears of the exit after the monitor does (names and tables
    // first, guarantee 2): its own count catches up, it is not there at once.
    let sup = m.supervisor();
    steadfast::wait::until(DEADLINE, || sup.count_children().unwrap().active == 2)
        .expect("two sessions running");
}

#[test]
fn a_session_that_died_frees_its_place_at_once_at_the_limit() {
    // A session leaves the tables as its process exits, a moment before the session
    // supervisor reads that exit; a create in that moment must not be refused.
    let (m, agents) = manager(1);
    for i in 0..20 {
        let id = m.create_session(new(&format!("s{i}"), "limit")).unwrap();
        let exit = monitor(m.session_pid(id).unwrap());
        let tx = agents.lock()[&id].clone();
        for _ in 0..3 {
            tx.send(Cmd::Panic("past intensity")).unwrap();
        }
        exit.recv_timeout(DEADLINE).unwrap();
        assert_eq!(m.count(), 0);
    }
    let last = m.create_session(new("last", "limit")).unwrap();
    m.terminate_session(last).unwrap();
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    let m = SessionManager::builder()
        .max_sessions(1)
        .children(|_| {
            vec![
                idle("ok"),
                ChildSpec::worker("broken", |_| Err("no model".into())).ready_timeout(DEADLINE),
            ]
        })
        .start()
        .unwrap();
    let err = m.create_session(new("a", "p")).unwrap_err();
    assert!(
        matches!(&err, SessionError::Start(StartError::ChildExited { id, .. }) if id == "broken"),
        "{err:?}"
    );
    assert_eq!(m.count(), 0);
    assert!(m.list_sessions().is_empty());
    assert_eq!(m.supervisor().count_children().unwrap().specs, 0);
    // The slot and the project are free.
    assert!(matches!(
        m.create_session(new("a", "p")),
        Err(SessionError::Start(_))
    ));
}

#[test]
fn bad_input_gets_an_error_and_changes_nothing() {
    let panicking = Arc::new(AtomicBool::new(false));
    let dupes = Arc::new(AtomicBool::new(false));
    let (p, d) = (panicking.clone(), dupes.clone());
    let m = SessionManager::builder()
        .max_sessions(4)
        .children(move |_| {
            if p.load(Ordering::SeqCst) {
                panic!("factory bug");
            }
            if d.load(Ordering::SeqCst) {
                return vec![idle("x"), idle("x")];
            }
            vec![idle("x")]
        })
        .start()
        .unwrap();
    let keep = m.create_session(new("keep", "keep")).unwrap();
    let before = m.list_sessions();
    assert!(matches!(
        m.create_session(new("", "p")),
        Err(SessionError::Invalid(_))
    ));
    assert!(matches!(
        m.create_session(new("   ", "p")),
        Err(SessionError::Invalid(_))
    ));
    assert!(matches!(
        m.create_session(NewSession::new("n", "")),
        Err(SessionError::Invalid(_))
    ));
    assert!(matches!(
        m.create_session(new("dup", "q").with_id(keep)),
        Err(SessionError::SessionExists(_))
    ));
    panicking.store(true, Ordering::SeqCst);
    assert!(matches!(
        m.create_session(new("n", "q")),
        Err(SessionError::FactoryPanicked(msg)) if msg == "factory bug"
    ));
    panicking.store(false, Ordering::SeqCst);
    dupes.store(true, Ordering::SeqCst);
    assert!(matches!(
        m.create_session(new("n", "q")),
        Err(SessionError::InvalidChildren(_))
    ));
    assert_eq!(m.list_sessions(), before);
    assert_eq!(m.supervisor().count_children().unwrap().specs, 1);
    assert!(matches!(
        SessionManager::builder().max_sessions(0).start(),
        Err(StartError::InvalidSpec(_))
    ));
}

#[test]
fn a_named_manager_is_found_and_shutdown_ends_every_session() {
    let m = SessionManager::builder()
        .name("sessions::named")
        .children(|_| vec![idle("w")])
        .start()
        .unwrap();
    let found = SessionManager::whereis("sessions::named").unwrap();
    let id = found.create_session(new("a", "p")).unwrap();
    let pid = m.session_pid(id).unwrap();
    m.shutdown();
    assert!(!pid.is_alive());
    assert_eq!(m.count(), 0);
    assert!(matches!(
        found.create_session(new("b", "p")),
        Err(SessionError::Supervisor(_))
    ));
    assert!(SessionManager::whereis("sessions::named").is_none());
    drop(found);
}

#[test]
fn the_manager_is_send_sync_and_cheap_to_share() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<SessionManager>();
    let (m, _) = manager(4);
    let id = std::thread::scope(|s| {
        s.spawn(|| m.clone().create_session(new("from another thread", "t")))
            .join()
            .unwrap()
    })
    .unwrap();
    assert!(m.session_running(id));
}

thread_local! {
    static HELD: std::cell::RefCell<Option<Held>> = const { std::cell::RefCell::new(None) };
}

/// Holds its thread's end (its thread-locals' destruction) until the gate opens.
struct Held(Receiver<()>);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.recv_timeout(DEADLINE);
    }
}

/// A failed session start cleans up only its own record: a live session that took the
/// same id meanwhile keeps it. The window is forced open: the failed session's
/// supervisor has exited (its record is gone) but `create_session` has not returned yet,
/// because one of its children's threads holds its end at a gate.
#[test]
fn a_failed_start_does_not_remove_a_live_session_that_reused_its_id() {
    let (gate_tx, gate) = unbounded::<()>();
    let (held_tx, held) = unbounded::<()>();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let m = SessionManager::builder()
        .children(move |_| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return vec![idle("state")];
            }
            let (gate, held_tx) = (gate.clone(), held_tx.clone());
            let holder = ChildSpec::worker("holder", move |ctx| {
                HELD.with(|h| *h.borrow_mut() = Some(Held(gate.clone())));
                let _ = held_tx.send(());
                let _ = ctx.stop_signal().recv();
                Ok(())
            });
            let broken =
                ChildSpec::worker("broken", |_| Err("no config".into())).ready_timeout(DEADLINE);
            vec![holder, broken]
        })
        .start()
        .unwrap();
    let id = SessionId::new_v4();
    let m2 = m.clone();
    let first =
        std::thread::spawn(move || m2.create_session(NewSession::new("a", "/p/a").with_id(id)));
    held.recv_timeout(DEADLINE).unwrap();
    // The failed session's process has exited: its record is gone.
    steadfast::wait::until(DEADLINE, || m.session_info(id).is_err()).unwrap();
    m.create_session(NewSession::new("b", "/p/b").with_id(id))
        .expect("the id is free again");
    gate_tx.send(()).unwrap();
    assert!(first.join().unwrap().is_err());
    let info = m
        .session_info(id)
        .expect("the live session keeps its record");
    assert_eq!(info.name, "b");
    assert_eq!(m.count(), 1);
    assert!(matches!(
        m.create_session(NewSession::new("c", "/p/b")),
        Err(SessionError::ProjectAlreadyOpen(_))
    ));
    m.shutdown();
}

/// Every `shutdown` returns only once the sessions have stopped, also when another call
/// is already stopping them.
#[test]
fn concurrent_shutdowns_each_return_after_the_sessions_stopped() {
    let (stopping_tx, stopping) = unbounded::<()>();
    let (go_tx, go) = unbounded::<()>();
    let m = SessionManager::builder()
        .children(move |_| {
            let (stopping_tx, go) = (stopping_tx.clone(), go.clone());
            vec![ChildSpec::worker("slow", move |ctx| {
                let _ = ctx.stop_signal().recv();
                let _ = stopping_tx.send(());
                let _ = go.recv_timeout(DEADLINE);
                Ok(())
            })]
        })
        .start()
        .unwrap();
    let id = m.create_session(NewSession::new("s", "/p/s")).unwrap();
    let slow = m.session_child(id, "slow").unwrap();
    let first = {
        let m = m.clone();
        std::thread::spawn(move || m.shutdown())
    };
    stopping.recv_timeout(DEADLINE).unwrap();
    let (done_tx, done) = unbounded();
    let second = {
        let m = m.clone();
        std::thread::spawn(move || {
            m.shutdown();
            done_tx.send(slow.is_alive()).unwrap();
        })
    };
    go_tx.send(()).unwrap();
    assert_eq!(
        done.recv_timeout(DEADLINE),
        Ok(false),
        "returned before the stop ended"
    );
    first.join().unwrap();
    second.join().unwrap();
    assert!(!slow.is_alive());
}

/// The design contract's names still answer, as the session_* accessors do.
#[test]
#[allow(deprecated)]
fn the_contract_names_answer_as_the_session_accessors() {
    let (m, _) = manager(2);
    let id = m.create_session(new("named", "contract")).unwrap();
    assert_eq!(m.get_session_info(id).unwrap(), m.session_info(id).unwrap());
    assert_eq!(m.get_session_pid(id).unwrap(), m.session_pid(id).unwrap());
}
