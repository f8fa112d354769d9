//! A supervisor's child table: its children in start order, and the index by pid. Only the
//! supervisor's own thread touches it.

use crate::child::runner::Spawned;
use crate::child::spec::{ChildKind, ChildSpec};
use crate::pid::Pid;
use crate::supervisor::event::{ChildCounts, ChildInfo, ChildStatus};
use crate::supervisor::server::Server;

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) run: Option<Spawned>,
    pub(super) status: ChildStatus,
    /// The pid the child is known by while it is not running (dynamic children keep
    /// their last pid while `Restarting`).
    pub(super) last_pid: Option<Pid>,
}

impl Server {
    pub(super) fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .values()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.run.as_ref().map(|r| r.pid),
                status: c.status,
                kind: c.spec.kind,
                restart: c.spec.restart,
            })
            .collect()
    }

    pub(super) fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts {
            specs: self.children.len(),
            ..ChildCounts::default()
        };
        for c in self.children.values() {
            counts.active += usize::from(c.run.is_some());
            match c.spec.kind {
                ChildKind::Worker => counts.workers += 1,
                ChildKind::Supervisor => counts.supervisors += 1,
            }
        }
        counts
    }

    pub(super) fn find_id(&self, id: &str) -> Option<u64> {
        self.children
            .iter()
            .find(|(_, c)| &*c.spec.id == id)
            .map(|(&seq, _)| seq)
    }

    pub(super) fn insert(&mut self, spec: ChildSpec, run: Spawned) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_pid.insert(run.pid, seq);
        self.children.insert(
            seq,
            Child {
                spec,
                last_pid: Some(run.pid),
                run: Some(run),
                status: ChildStatus::Running,
            },
        );
    }

    pub(super) fn set_running(&mut self, seq: u64, run: Spawned) {
        let child = self.children.get_mut(&seq).expect("child exists");
        if let Some(old) = child.last_pid.replace(run.pid) {
            self.by_pid.remove(&old);
        }
        self.by_pid.insert(run.pid, seq);
        child.run = Some(run);
        child.status = ChildStatus::Running;
    }

    pub(super) fn remove(&mut self, seq: u64) {
        if let Some(child) = self.children.remove(&seq) {
            if let Some(handover) = &self.handover {
                handover.release();
            }
            if let Some(pid) = child.last_pid {
                if self.by_pid.get(&pid) == Some(&seq) {
                    self.by_pid.remove(&pid);
                }
            }
        }
    }
}
