//! The page's event feed: the latest events of every supervisor in the tree, newest
//! last. A supervisor is subscribed to when a snapshot first shows it; one that has
//! exited is dropped (its channel disconnects).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crossbeam_channel::Receiver;
use serde_json::{json, Value};

use crate::child::spec::ChildKind;
use crate::pid::Pid;
use crate::supervisor::event::Event;
use crate::supervisor::AnySupervisorRef;
use crate::tree::TreeSnapshot;

/// How many events the page is sent.
const KEPT: usize = 100;

pub(super) struct Feed {
    started: Instant,
    /// Each followed supervisor's label and events.
    followed: HashMap<Pid, (String, Receiver<Event>)>,
    latest: VecDeque<Value>,
}

impl Feed {
    pub(super) fn new(started: Instant) -> Feed {
        Feed {
            started,
            followed: HashMap::new(),
            latest: VecDeque::new(),
        }
    }

    /// Follows every supervisor `tree` shows that is not followed yet, then takes what
    /// the followed ones have sent.
    pub(super) fn follow(&mut self, tree: &TreeSnapshot) {
        for node in tree.root.iter() {
            let Some(pid) = node.pid else { continue };
            let is_supervisor = node.kind == ChildKind::Supervisor;
            if !is_supervisor || self.followed.contains_key(&pid) {
                continue;
            }
            let events = AnySupervisorRef::from_pid(pid).and_then(|s| s.events().ok());
            if let Some(events) = events {
                self.followed.insert(pid, (node.id.clone(), events));
            }
        }
        let at = self.started.elapsed().as_secs_f64();
        let mut gone = Vec::new();
        for (pid, (label, events)) in &self.followed {
            loop {
                match events.try_recv() {
                    Ok(event) => {
                        self.latest.push_back(describe(at, label, &event));
                        if self.latest.len() > KEPT {
                            self.latest.pop_front();
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        gone.push(*pid);
                        break;
                    }
                }
            }
        }
        for pid in gone {
            self.followed.remove(&pid);
        }
    }

    pub(super) fn latest(&self) -> &VecDeque<Value> {
        &self.latest
    }
}

/// One event as the page shows it.
fn describe(at: f64, supervisor: &str, event: &Event) -> Value {
    let (kind, detail) = match event {
        Event::ChildStarted { pid, .. } => ("started", pid.to_string()),
        Event::ChildExited { pid, reason, .. } => ("exited", format!("{pid}: {reason}")),
        Event::ChildAbandoned { pid, .. } => ("abandoned", pid.to_string()),
        Event::ChildRestarted { pid, .. } => ("restarted", format!("as {pid}")),
        Event::RestartScheduled { delay, .. } => ("backoff", format!("restart in {delay:?}")),
        Event::RestartFailed { error, .. } => ("restart failed", error.clone()),
        Event::IntensityExceeded { restarts, period } => (
            "gave up",
            format!("more than {restarts} restarts in {period:?}"),
        ),
        Event::SupervisorStopped { reason } => ("stopped", reason.to_string()),
    };
    let abnormal = matches!(event, Event::ChildExited { reason, .. } if reason.is_abnormal())
        || matches!(
            event,
            Event::IntensityExceeded { .. } | Event::ChildAbandoned { .. }
        );
    json!({
        "at_seconds": at,
        "supervisor": supervisor,
        "child": event.child_id(),
        "kind": kind,
        "detail": detail,
        "abnormal": abnormal,
    })
}
