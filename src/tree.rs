//! The tree at a glance: a snapshot of a supervisor and everything under it, printable
//! like `pstree`.

use std::fmt;
use std::time::{Duration, Instant};

use crate::child::spec::ChildKind;
use crate::exit::ExitReason;
use crate::pid::Pid;
use crate::supervisor::event::{ChildInfo, ChildStatus};
use crate::supervisor::{Address, SUPERVISORS};

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
    };
    root.children = children_of(handle, now)?;
    Ok(TreeSnapshot { root })
}

fn children_of(handle: &Address, now: Instant) -> Result<Vec<Node>, crate::SupervisorError> {
    let mut nodes = Vec::new();
    for info in handle.which_children()? {
        let mut node = Node::from_info(info, now);
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
    if !node.complete {
        write!(f, " [exited before it could be read]")?;
    }
    writeln!(f)
}
