//! The tree at a glance: a snapshot of a supervisor and everything under it, printable
//! like `pstree`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use crate::child::spec::ChildKind;
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::pool::PoolStats;
use crate::registry::Registry;
use crate::supervisor::event::{ChildInfo, ChildStatus};
use crate::supervisor::{Address, SUPERVISORS};

/// What a snapshot shows of a server or a pool besides its place in the tree, read when
/// the snapshot is taken.
pub(crate) enum Load {
    /// A server's mailbox: requests waiting.
    Server(usize),
    /// A pool (its workers' supervisor).
    Pool(PoolStats),
}

/// A process a snapshot shows more of — a server's incarnation (its mailbox), a pool's
/// supervisor (its counts) — registered by its pid while it runs. A server's entry is
/// its handle, which is also how `ServerRef::from_pid` finds it: one registration.
pub(crate) trait Shown: Send + Sync + 'static {
    /// What it shows now.
    fn load(&self) -> Load;
    /// Itself, to be downcast to the handle it is.
    fn as_any(&self) -> &dyn Any;
}

/// Servers and pools by the pid of the process they show on; an entry goes with it.
pub(crate) static SHOWN: Lazy<Registry<Pid, Arc<dyn Shown>>> = Lazy::new(Registry::new);

/// A snapshot of a supervision tree, nested supervisors included; see
/// [`SupervisorRef::snapshot`](crate::SupervisorRef::snapshot).
///
/// Each supervisor's part is one answer of its own (consistent within that supervisor);
/// the parts are taken one after the other, top down, so the whole is not one instant.
/// A nested supervisor that exits between its parent's answer and its own shows with no
/// children and `complete: false`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeSnapshot {
    /// The supervisor the snapshot was taken of.
    pub root: Node,
}

/// One process in a [`TreeSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// Its id in its supervisor (the root: its name, or "supervisor").
    pub id: String,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its running incarnation (`None` while not running).
    pub pid: Option<Pid>,
    /// Running, restarting or stopped (the root: running).
    pub status: ChildStatus,
    /// Restarts since its spec was added (the root: 0, as far as the snapshot knows).
    pub restarts: u64,
    /// How its latest incarnation ended.
    pub last_exit: Option<ExitReason>,
    /// How long the running incarnation has run.
    pub uptime: Option<Duration>,
    /// For a supervisor: its children, in start order.
    pub children: Vec<Node>,
    /// For a supervisor: whether its children could be read (`false`: it exited first).
    pub complete: bool,
    /// For a server: the requests waiting in its mailbox.
    pub mailbox: Option<usize>,
    /// For a pool's supervisor: the pool's counts.
    pub pool: Option<PoolStats>,
}

impl Node {
    fn from_info(info: ChildInfo, now: Instant) -> Node {
        Node {
            id: info.id.to_string(),
            kind: info.kind,
            pid: info.pid,
            status: info.status,
            restarts: info.restarts,
            last_exit: info.last_exit,
            uptime: info.started_at.map(|t| now.saturating_duration_since(t)),
            children: Vec::new(),
            complete: true,
            mailbox: None,
            pool: None,
        }
    }

    /// Reads the load of the server or pool this node is, if it is one.
    fn read_load(&mut self) {
        let shown = self.pid.and_then(|pid| SHOWN.lookup(&pid)).map(|(_, s)| s);
        match shown.map(|shown| shown.load()) {
            Some(Load::Server(queued)) => self.mailbox = Some(queued),
            Some(Load::Pool(stats)) => self.pool = Some(stats),
            None => {}
        }
    }

    /// Every node of the subtree, this one first, depth first.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.children.iter().rev());
            Some(node)
        })
    }
}

/// Takes the snapshot of the supervisor behind `handle`, then of each nested supervisor.
pub(crate) fn snapshot(handle: &Address) -> Result<TreeSnapshot, crate::SupervisorError> {
    let now = Instant::now();
    let mut root = Node {
        id: handle.label.to_string(),
        kind: ChildKind::Supervisor,
        pid: Some(handle.pid),
        status: ChildStatus::Running,
        restarts: 0,
        last_exit: None,
        uptime: None,
        children: Vec::new(),
        complete: true,
        mailbox: None,
        pool: None,
    };
    root.read_load();
    root.children = children_of(handle, now)?;
    Ok(TreeSnapshot { root })
}

fn children_of(handle: &Address, now: Instant) -> Result<Vec<Node>, crate::SupervisorError> {
    let mut nodes = Vec::new();
    for info in handle.which_children()? {
        let mut node = Node::from_info(info, now);
        node.read_load();
        if node.kind == ChildKind::Supervisor {
            let nested = node
                .pid
                .and_then(|pid| SUPERVISORS.lookup(&pid))
                .map(|(_, h)| h);
            match nested.map(|h| children_of(&h, now)) {
                Some(Ok(children)) => node.children = children,
                // Gone (or not running) between its parent's answer and its own.
                _ => node.complete = node.pid.is_none(),
            }
        }
        nodes.push(node);
    }
    Ok(nodes)
}

impl fmt::Display for TreeSnapshot {
    /// An indented tree, one process a line:
    ///
    /// ```text
    /// app <0.1>
    /// ├── db  worker <0.2> running, up 3.2s
    /// └── handlers  supervisor <0.3> running, up 3.2s, 1 restart (last: panicked: boom)
    ///     └── conn  worker <0.9> running, up 120ms
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = &self.root;
        match root.pid {
            Some(pid) => writeln!(f, "{} {pid}", root.id)?,
            None => writeln!(f, "{}", root.id)?,
        }
        write_children(f, &root.children, "")
    }
}

fn write_children(f: &mut fmt::Formatter<'_>, children: &[Node], indent: &str) -> fmt::Result {
    for (i, node) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        write!(f, "{indent}{branch}{}  ", node.id)?;
        write_line(f, node)?;
        write_children(f, &node.children, &format!("{indent}{more}"))?;
    }
    Ok(())
}

fn write_line(f: &mut fmt::Formatter<'_>, node: &Node) -> fmt::Result {
    let kind = match node.kind {
        ChildKind::Worker => "worker",
        ChildKind::Supervisor => "supervisor",
    };
    let status = match node.status {
        ChildStatus::Running => "running",
        ChildStatus::Restarting => "restarting",
        ChildStatus::Stopped => "stopped",
    };
    match node.pid {
        Some(pid) => write!(f, "{kind} {pid} {status}")?,
        None => write!(f, "{kind} {status}")?,
    }
    if let Some(up) = node.uptime {
        write!(f, ", up {:.1?}", up)?;
    }
    if node.restarts > 0 {
        let s = if node.restarts == 1 { "" } else { "s" };
        write!(f, ", {} restart{s}", node.restarts)?;
    }
    if let Some(why) = &node.last_exit {
        write!(f, " (last: {why})")?;
    }
    if let Some(queued) = node.mailbox {
        write!(f, ", {queued} queued")?;
    }
    if let Some(pool) = &node.pool {
        write!(
            f,
            ", pool: {} done, {} queued, {} in flight, {} dead-lettered",
            pool.done, pool.queued, pool.in_flight, pool.dead_lettered
        )?;
    }
    if !node.complete {
        write!(f, " [exited before it could be read]")?;
    }
    writeln!(f)
}

impl TreeSnapshot {
    /// The tree in Graphviz's DOT language: one box per process, coloured by state
    /// (running green, restarting orange, stopped grey), supervisors bold, an edge from
    /// each supervisor to each child. Render with `dot -Tsvg`.
    ///
    /// ```
    /// use steadfast::{ChildSpec, Supervisor};
    ///
    /// let sup = Supervisor::builder()
    ///     .name("app")
    ///     .child(ChildSpec::worker("db", |ctx| { let _ = ctx.stop_signal().recv(); Ok(()) }))
    ///     .start()?;
    /// let dot = sup.snapshot()?.to_dot();
    /// assert!(dot.starts_with("digraph steadfast {"));
    /// assert!(dot.contains("\"app\" -> \"app/db\""));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph steadfast {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n");
        dot_node(&mut out, &self.root, &self.root.id);
        out.push_str("}\n");
        out
    }
}

/// Appends `node` (known as `path`) and its subtree.
fn dot_node(out: &mut String, node: &Node, path: &str) {
    use std::fmt::Write;
    let colour = match node.status {
        ChildStatus::Running => "#c8f0c8",
        ChildStatus::Restarting => "#ffd9a0",
        ChildStatus::Stopped => "#dddddd",
    };
    // Lines of the box, joined by DOT's `\n`.
    let mut lines = vec![escape(&node.id)];
    if let Some(pid) = node.pid {
        lines.push(pid.to_string());
    }
    if node.restarts > 0 {
        lines.push(format!("{} restarts", node.restarts));
    }
    let bold = if node.kind == ChildKind::Supervisor {
        ", penwidth=2"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  \"{}\" [label=\"{}\", fillcolor=\"{colour}\"{bold}];",
        escape(path),
        lines.join("\\n")
    );
    for child in &node.children {
        let child_path = format!("{path}/{}", child.id);
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\";",
            escape(path),
            escape(&child_path)
        );
        dot_node(out, child, &child_path);
    }
}

/// A DOT string's contents: backslashes and quotes escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The snapshot as data (feature `serde`): `{"root": node}`, each node
/// `{"id", "kind": "worker"|"supervisor", "pid": "<0.7>"|null, "status":
/// "running"|"restarting"|"stopped", "restarts", "last_exit": {"reason", "abnormal"}|null,
/// "uptime_seconds"|null, "mailbox"|null, "pool": {"submitted", "done",
/// "dead_lettered", "handed_back", "queued", "in_flight"}|null, "complete", "children"}`.
#[cfg(feature = "serde")]
impl serde::Serialize for TreeSnapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("TreeSnapshot", 1)?;
        out.serialize_field("root", &self.root)?;
        out.end()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;

        struct Exit<'a>(&'a ExitReason);
        impl serde::Serialize for Exit<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut out = s.serialize_struct("Exit", 2)?;
                out.serialize_field("reason", &self.0.to_string())?;
                out.serialize_field("abnormal", &self.0.is_abnormal())?;
                out.end()
            }
        }
        struct Counts<'a>(&'a PoolStats);
        impl serde::Serialize for Counts<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let p = self.0;
                let mut out = s.serialize_struct("PoolStats", 6)?;
                out.serialize_field("submitted", &p.submitted)?;
                out.serialize_field("done", &p.done)?;
                out.serialize_field("dead_lettered", &p.dead_lettered)?;
                out.serialize_field("handed_back", &p.handed_back)?;
                out.serialize_field("queued", &p.queued)?;
                out.serialize_field("in_flight", &p.in_flight)?;
                out.end()
            }
        }

        let mut out = s.serialize_struct("Node", 11)?;
        out.serialize_field("id", &self.id)?;
        let kind = match self.kind {
            ChildKind::Worker => "worker",
            ChildKind::Supervisor => "supervisor",
        };
        out.serialize_field("kind", kind)?;
        out.serialize_field("pid", &self.pid.map(|p| p.to_string()))?;
        let status = match self.status {
            ChildStatus::Running => "running",
            ChildStatus::Restarting => "restarting",
            ChildStatus::Stopped => "stopped",
        };
        out.serialize_field("status", status)?;
        out.serialize_field("restarts", &self.restarts)?;
        out.serialize_field("last_exit", &self.last_exit.as_ref().map(Exit))?;
        out.serialize_field("uptime_seconds", &self.uptime.map(|d| d.as_secs_f64()))?;
        out.serialize_field("mailbox", &self.mailbox)?;
        out.serialize_field("pool", &self.pool.as_ref().map(Counts))?;
        out.serialize_field("complete", &self.complete)?;
        out.serialize_field("children", &self.children)?;
        out.end()
    }
}
