//! A small realistic program on the session layer: three projects, each session with a
//! manager server, a state server and an agent that crashes now and then; one session
//! crashing past its intensity; a duplicate project refused; everything listed and shut
//! down. The session manager is a child of the application's own root supervisor, as
//! the original system adds it to its application tree.
//!
//! Run with `cargo run --example sessions`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use steadfast::server::{Server, ServerRef, ServerSpec};
use steadfast::session::{NewSession, SessionError, SessionId, SessionManager};
use steadfast::{monitor, ChildSpec, Context, Pid, Supervisor};

/// The session's manager (Session.Manager): what the session is about.
struct Manager {
    summary: String,
}

impl Server for Manager {
    type Call = ();
    type Reply = String;
    type Cast = ();
    fn handle_call(&mut self, _: (), _: &Context) -> String {
        self.summary.clone()
    }
}

/// The session's state (Session.State): the work done so far, by its agent.
#[derive(Default)]
struct State {
    done: Vec<String>,
}

impl Server for State {
    type Call = ();
    type Reply = Vec<String>;
    type Cast = String;
    fn handle_call(&mut self, _: (), _: &Context) -> Vec<String> {
        self.done.clone()
    }
    fn handle_cast(&mut self, task: String, _: &Context) {
        self.done.push(task);
    }
}

// The original system's helpers: a session's processes, reached through the session.
fn get_manager(m: &SessionManager, id: SessionId) -> Result<ServerRef<Manager>, SessionError> {
    m.server(id, "manager")
}

fn get_state(m: &SessionManager, id: SessionId) -> Result<ServerRef<State>, SessionError> {
    m.server(id, "state")
}

fn get_agent(m: &SessionManager, id: SessionId) -> Result<Pid, SessionError> {
    m.session_child(id, "agent")
}

/// What a session's agent is told to do.
enum Prompt {
    Work(&'static str),
    /// The model returned garbage: the agent crashes.
    Garbage,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Each crash is printed from the event stream below: keep supervised panics off
    // stderr (they still go to a logger, if there were one).
    steadfast::route_panics_to_log();

    // Each session's agent takes prompts from a channel kept here, by session id.
    let prompts: Arc<Mutex<HashMap<SessionId, Sender<Prompt>>>> = Arc::default();
    let (done_tx, done) = unbounded::<String>();
    let p = prompts.clone();
    let (sessions, manager) = SessionManager::builder()
        .name("sessions-example")
        .max_sessions(3)
        .intensity(2, Duration::from_secs(30))
        .shutdown_timeout(Duration::from_secs(2))
        .children(move |info| {
            let (tx, rx) = unbounded();
            p.lock().insert(info.id, tx);
            let summary = format!("{} on {}", info.name, info.project_path.display());
            let (manager, _) = ServerSpec::new("manager", move |_| {
                Ok(Manager {
                    summary: summary.clone(),
                })
            })
            .build();
            let (state, state_ref) = ServerSpec::new("state", |_| Ok(State::default())).build();
            vec![
                manager,
                state,
                agent(info.name.clone(), rx, state_ref, done_tx.clone()),
            ]
        })
        .child_spec("sessions")?;
    // The application's root supervisor, with the session manager among its children.
    let app = Supervisor::builder().name("app").child(sessions).start()?;

    println!("== Three sessions, one per project");
    let mut ids = Vec::new();
    for (name, project) in [
        ("refactor", "/src/editor"),
        ("docs", "/src/website"),
        ("triage", "/src/tracker"),
    ] {
        if name == "triage" {
            println!("    (the same project through another spelling is refused:");
            match manager.create_session(NewSession::new("again", "/src/website/../editor")) {
                Err(e) => println!("     {e})"),
                Ok(_) => unreachable!("the project is open"),
            }
        }
        let id =
            manager.create_session(NewSession::new(name, project).with_metadata("user", "ann"))?;
        let info = manager.session_info(id)?;
        println!(
            "    {name:<9} {id} on {} ({:?}, supervisor {})",
            info.project_path.display(),
            info.status,
            info.pid.unwrap()
        );
        ids.push(id);
    }

    println!("\n== A fourth session is over the limit");
    match manager.create_session(NewSession::new("extra", "/src/other")) {
        Err(e) => println!("    {e}"),
        Ok(_) => unreachable!("the limit is 3"),
    }

    println!("\n== Work, with a crash now and then (one_for_all restarts agent and state)");
    let send = |id: SessionId, p: Prompt| prompts.lock()[&id].send(p).unwrap();
    send(ids[0], Prompt::Work("rename a function"));
    println!("    {}", done.recv_timeout(Duration::from_secs(10))?);
    let agent = get_agent(&manager, ids[0])?;
    send(ids[0], Prompt::Garbage);
    steadfast::wait::until(Duration::from_secs(10), || {
        get_agent(&manager, ids[0]).is_ok_and(|p| p != agent)
    })?;
    println!(
        "    refactor's agent crashed and came back: {} -> {} (restarts so far: {})",
        agent,
        get_agent(&manager, ids[0])?,
        manager.session_info(ids[0])?.restart_count
    );
    send(ids[0], Prompt::Work("extract a module"));
    println!("    {}", done.recv_timeout(Duration::from_secs(10))?);

    println!("\n== triage crashes three times: past its intensity (2 in 30 s), it ends");
    let exit = monitor(manager.session_pid(ids[2])?);
    for _ in 0..3 {
        send(ids[2], Prompt::Garbage);
    }
    println!(
        "    its supervisor exited: {}",
        exit.recv_timeout(Duration::from_secs(10))?
    );
    println!(
        "    already gone from every table: info {:?}, running {}",
        manager.session_info(ids[2]).err().map(|e| e.to_string()),
        manager.session_running(ids[2])
    );

    println!("\n== Its project is free again");
    let id = manager.create_session(NewSession::new("triage-2", "/src/tracker"))?;
    ids[2] = id;

    println!("\n== Sessions now, as their manager and state servers tell it");
    for s in manager.list_sessions() {
        println!(
            "    {:<9} {:?} restarts={}: {:?}, done so far {:?}",
            s.name,
            s.status,
            s.restart_count,
            get_manager(&manager, s.id)?.call(())?,
            get_state(&manager, s.id)?.call(())?,
        );
    }

    println!("\n== Terminate one, then shut everything down");
    manager.terminate_session(ids[1])?;
    println!("    docs terminated; {} left", manager.count());
    app.shutdown()?;
    println!(
        "    after shutdown: {} sessions, {} live steadfast threads",
        manager.count(),
        steadfast::live_threads()
    );
    Ok(())
}

fn agent(
    name: String,
    prompts: Receiver<Prompt>,
    state: ServerRef<State>,
    done: Sender<String>,
) -> ChildSpec {
    ChildSpec::worker("agent", move |ctx| loop {
        match ctx.recv(&prompts)? {
            Prompt::Work(task) => {
                state.cast(task.to_owned())?;
                done.send(format!("[{name}] done: {task}"))?
            }
            Prompt::Garbage => panic!("[{name}] could not parse the model's answer"),
        }
    })
}
