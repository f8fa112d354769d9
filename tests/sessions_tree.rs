//! The session layer inside an application tree: a session manager as a child of the
//! user's root supervisor, restarted by it and found again by name with its tables
//! consistent; per-session servers reached through the session.

#![cfg(feature = "sessions")]

mod common;

use std::time::Duration;

use common::*;
use steadfast::server::{Server, ServerRef, ServerSpec};
use steadfast::session::{NewSession, SessionError, SessionManager};
use steadfast::{Context, Strategy, Supervisor, SupervisorError};

/// A session's state server: a counter of notes.
struct State {
    notes: Vec<String>,
}

impl Server for State {
    type Call = ();
    type Reply = Vec<String>;
    type Cast = String;
    fn handle_call(&mut self, _: (), _: &Context) -> Vec<String> {
        self.notes.clone()
    }
    fn handle_cast(&mut self, note: String, _: &Context) {
        if note == "crash" {
            panic!("the state server was told to crash");
        }
        self.notes.push(note);
    }
}

fn manager_builder(name: &str) -> steadfast::session::SessionManagerBuilder {
    SessionManager::builder()
        .name(name)
        .intensity(5, Duration::from_secs(10))
        .children(|_info| {
            vec![
                ServerSpec::new("state", |_| Ok(State { notes: vec![] }))
                    .build()
                    .0,
            ]
        })
}

#[test]
fn a_manager_under_a_root_supervisor_is_found_again_after_a_restart() {
    let name = "sessions_tree::restarted";
    let (spec, manager) = manager_builder(name).child_spec("sessions").unwrap();
    // Not started yet: requests fail plainly, nothing panics.
    assert!(matches!(
        manager.create_session(NewSession::new("early", "/p/early")),
        Err(SessionError::Supervisor(SupervisorError::NoSupervisor))
    ));
    let (crasher, crash) = controlled("crasher");
    let root = Supervisor::builder()
        .strategy(Strategy::OneForAll)
        .intensity(5, Duration::from_secs(10))
        .child(spec)
        .child(crasher)
        .start()
        .unwrap();
    let events = root.events().unwrap();
    let a = manager
        .create_session(NewSession::new("a", "/p/a"))
        .unwrap();
    let b = manager
        .create_session(NewSession::new("b", "/p/b"))
        .unwrap();
    assert_eq!(manager.count(), 2);
    let before = manager.supervisor().pid();
    let found = SessionManager::whereis(name).unwrap();
    assert_eq!(found.supervisor().pid(), before);

    // A sibling crashes: one_for_all restarts the session supervisor too.
    crash.send(Cmd::Panic("sibling down")).unwrap();
    briefs_through(&events, "restarted crasher");

    // Found again by name, at the new supervisor; the old sessions are gone from every
    // table (they stopped with their supervisor), and their projects are free again.
    let again = SessionManager::whereis(name).expect("registered again");
    assert_ne!(again.supervisor().pid(), before);
    assert_eq!(again.supervisor().pid(), manager.supervisor().pid());
    assert_eq!(manager.count(), 0);
    assert!(manager.list_sessions().is_empty());
    for id in [a, b] {
        assert!(matches!(
            manager.session_info(id),
            Err(SessionError::NotFound(_))
        ));
        assert!(!manager.session_running(id));
    }
    let c = manager
        .create_session(NewSession::new("a again", "/p/a"))
        .unwrap();
    assert!(again.session_running(c));
    assert_eq!(manager.supervisor().count_children().unwrap().active, 1);

    // Stopped and restarted by hand: the same again.
    root.terminate_child("sessions").unwrap();
    assert!(SessionManager::whereis(name).is_none());
    assert_eq!(manager.count(), 0);
    root.restart_child("sessions").unwrap();
    assert!(SessionManager::whereis(name).is_some());
    manager
        .create_session(NewSession::new("b again", "/p/b"))
        .unwrap();
    assert_eq!(manager.count(), 1);
    drop(root);
    assert!(SessionManager::whereis(name).is_none());
}

#[test]
fn shutdown_of_a_child_mode_manager_ends_its_sessions_and_leaves_the_tree_up() {
    let (spec, manager) = manager_builder("sessions_tree::shutdown")
        .child_spec("sessions")
        .unwrap();
    let root = Supervisor::builder().child(spec).start().unwrap();
    manager
        .create_session(NewSession::new("a", "/p/sa"))
        .unwrap();
    manager
        .create_session(NewSession::new("b", "/p/sb"))
        .unwrap();
    manager.shutdown();
    assert_eq!(manager.count(), 0);
    assert_eq!(root.count_children().unwrap().active, 1);
    manager
        .create_session(NewSession::new("c", "/p/sc"))
        .unwrap();
}

#[test]
fn a_sessions_servers_are_reached_through_the_session_and_survive_its_restarts() {
    let manager = manager_builder("sessions_tree::servers").start().unwrap();
    let id = manager
        .create_session(NewSession::new("s", "/p/servers"))
        .unwrap();
    let state: ServerRef<State> = manager.server(id, "state").unwrap();
    state.cast("first".into()).unwrap();
    assert_eq!(state.call(()).unwrap(), ["first"]);
    // A wrong type or id finds nothing.
    assert!(matches!(
        manager.server::<State>(id, "nope"),
        Err(SessionError::ChildNotFound { .. })
    ));
    // The state server crashes; the session restarts it from set-up; the handle works on.
    let old = state.pid().unwrap();
    let gone = steadfast::monitor(old);
    state.cast("crash".into()).unwrap();
    gone.recv_timeout(DEADLINE).unwrap();
    state.cast("second".into()).unwrap();
    assert_eq!(state.call(()).unwrap(), ["second"]);
    let again: ServerRef<State> = manager.server(id, "state").unwrap();
    assert_ne!(again.pid(), Some(old));
    manager.shutdown();
}
