//! A small realistic program on the session layer: three projects, each session with a
//! manager server, a state server and an agent server that takes its prompts from a
//! channel (watched in its loop) and crashes now and then; one session
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
use steadfast::server::{
    Handle, HandleCast, HandleInfo, Serve, ServerContext, ServerRef, ServerSpec,
};
use steadfast::session::{NewSession, SessionError, SessionId, SessionManager};
use steadfast::{monitor, ChildSpec, Pid, Supervisor};

/// The session's manager (Session.Manager): what the session is about.
struct Manager {
    summary: String,
}

/// Asks a manager what its session is about.
struct Summary;

impl Serve for Manager {}

impl Handle<Summary> for Manager {
    type Reply = String;
    fn handle(&mut self, _: Summary, _: &mut ServerContext<'_, Self>) -> String {
        self.summary.clone()
    }
}

/// The session's state (Session.State): the work done so far, by its agent.
#[derive(Default)]
struct State {
    done: Vec<String>,
}

/// Asks the state for the work done; a `String` cast records one more.
struct Done;

impl Serve for State {}

impl Handle<Done> for State {
    type Reply = Vec<String>;
    fn handle(&mut self, _: Done, _: &mut ServerContext<'_, Self>) -> Vec<String> {
        self.done.clone()
    }
}

impl HandleCast<String> for State {
    fn handle_cast(&mut self, task: String, _: &mut ServerContext<'_, Self>) {
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
            get_manager(&manager, s.id)?.call(Summary)?,
            get_state(&manager, s.id)?.call(Done)?,
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

/// The session's agent: takes prompts from the channel the application keeps for its
/// session, in its own loop (watched from `handle_continue`, once its start has been
/// acknowledged), and records its work in the session's state.
struct Agent {
    name: String,
    prompts: Receiver<Prompt>,
    state: ServerRef<State>,
    done: Sender<String>,
}

impl Serve for Agent {
    fn handle_continue(&mut self, ctx: &mut ServerContext<'_, Self>) {
        ctx.watch(self.prompts.clone());
    }
}

impl HandleInfo<Prompt> for Agent {
    fn handle_info(&mut self, prompt: Prompt, _: &mut ServerContext<'_, Self>) {
        match prompt {
            Prompt::Work(task) => {
                let _ = self.state.cast(task.to_owned());
                let _ = self.done.send(format!("[{}] done: {task}", self.name));
            }
            Prompt::Garbage => panic!("[{}] could not parse the model's answer", self.name),
        }
    }
}

fn agent(
    name: String,
    prompts: Receiver<Prompt>,
    state: ServerRef<State>,
    done: Sender<String>,
) -> ChildSpec {
    let (spec, _) = ServerSpec::new("agent", move |_| {
        Ok(Agent {
            name: name.clone(),
            prompts: prompts.clone(),
            state: state.clone(),
            done: done.clone(),
        })
    })
    .build();
    spec
}
