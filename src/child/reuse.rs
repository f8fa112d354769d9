//! Threads kept for reuse (`DynamicSupervisorBuilder::reuse_threads`): a process thread
//! whose process has ended parks here, and the next spawn in the same pool hands it the
//! next process to run instead of creating a thread.
//!
//! A pooled OS thread loops: it runs one process's whole life (`Work`: the runner's
//! `ProcessThread::run`, exit report included), marks itself returning and signals that
//! life's end (the process's `Spawned::finish` waits for that signal as it would for a
//! join), then parks as idle — unless the pool is closed, already holds `max_idle` idle
//! threads, or the thread cap is full (an idle thread counts toward it) — until handed
//! the next process or until its idle timeout, when it ends. A spawn that finds no idle
//! thread but one returning waits a moment for it rather than creating one.
//!
//! The pool owns every thread's `JoinHandle`. It is closed when its supervisor ends,
//! after every child's life has been finished or abandoned: idle threads are told to end,
//! and every thread is joined except those still running an abandoned child (detached,
//! as abandoned threads always are: they end when that child does).

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::child::briefly::look_briefly;
use crate::child::cap::LiveThread;

/// One process's life on a pooled thread, and who waits for its end.
pub(crate) struct Work {
    pub(crate) run: Box<dyn FnOnce(LiveThread) + Send>,
    /// Dropped once the life is over (after its exit report): the process's
    /// `Spawned::finish` waits for that.
    pub(crate) done: Sender<()>,
}

/// What a pooled thread is doing, for the pool's close.
const RUNNING: u8 = 0;
const RETURNING: u8 = 1;
const ENDED: u8 = 2;

/// Threads a dynamic supervisor keeps for its next children.
pub(crate) struct ThreadPool {
    state: Mutex<State>,
    max_idle: usize,
    idle_timeout: Duration,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    members: Vec<Member>,
    /// Threads between a life's end and parking (or ending).
    returning: usize,
    closed: bool,
    next_id: u64,
}

/// An idle thread, waiting on its own channel for its next process.
struct Idle {
    id: u64,
    stack: Option<usize>,
    give: Sender<Work>,
}

/// A thread of the pool, idle or not.
struct Member {
    doing: Arc<AtomicU8>,
    join: JoinHandle<()>,
}

impl ThreadPool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Arc<ThreadPool> {
        Arc::new(ThreadPool {
            state: Mutex::new(State::default()),
            max_idle,
            idle_timeout,
        })
    }

    /// Hands `work` to an idle thread spawned with `stack` (one about to be idle is
    /// waited for a moment); gives the work back if there is none.
    pub(crate) fn run_idle(&self, stack: Option<usize>, work: Work) -> Result<(), Work> {
        if self.max_idle == 0 {
            return Err(work); // nothing ever waits
        }
        let taken = || {
            let mut state = self.state.lock();
            let i = state.idle.iter().rposition(|t| t.stack == stack)?;
            Some(state.idle.swap_remove(i).give)
        };
        let give = match taken() {
            Some(give) => Some(give),
            None if self.state.lock().returning > 0 => look_briefly(taken),
            None => None,
        };
        let Some(give) = give else { return Err(work) };
        // Taken out of the idle set, the thread waits for this send (even if its idle
        // timeout passes meanwhile); only a closed pool has let it go.
        give.send(work).map_err(|e| e.into_inner())
    }

    /// Spawns a thread of the pool that runs `work` first, counted by `guard`.
    pub(crate) fn spawn(
        self: &Arc<ThreadPool>,
        builder: thread::Builder,
        stack: Option<usize>,
        work: Work,
        guard: LiveThread,
    ) -> io::Result<()> {
        let doing = Arc::new(AtomicU8::new(RUNNING));
        let pool = self.clone();
        let id = {
            // Taken and counted under one lock: spawns race (callers' threads spawn too).
            let mut state = self.state.lock();
            state.next_id += 1;
            state.next_id
        };
        let member = doing.clone();
        let join = builder.spawn(move || pool.serve(id, stack, member, work, guard))?;
        let mut state = self.state.lock();
        // Threads that ended on their idle timeout are joined as new ones come.
        let (ended, members): (Vec<Member>, Vec<Member>) = std::mem::take(&mut state.members)
            .into_iter()
            .partition(|m| m.doing.load(Ordering::Acquire) == ENDED && m.join.is_finished());
        state.members = members;
        state.members.push(Member { doing, join });
        drop(state);
        for m in ended {
            let _ = m.join.join();
        }
        Ok(())
    }

    /// A pooled thread's loop (see the module docs).
    fn serve(
        &self,
        id: u64,
        stack: Option<usize>,
        doing: Arc<AtomicU8>,
        work: Work,
        guard: LiveThread,
    ) {
        let (mut work, mut guard) = (work, guard);
        loop {
            let Work { run, done } = work;
            run(guard);
            self.state.lock().returning += 1;
            doing.store(RETURNING, Ordering::Release);
            drop(done);
            match self.park(id, stack) {
                Some(next) => {
                    doing.store(RUNNING, Ordering::Release);
                    (work, guard) = next;
                }
                None => break,
            }
        }
        doing.store(ENDED, Ordering::Release);
    }

    /// Parks as idle until handed a process; `None` to end. An idle thread counts toward
    /// the thread cap: it parks only if there is room, and runs its next process under
    /// the same count.
    fn park(&self, id: u64, stack: Option<usize>) -> Option<(Work, LiveThread)> {
        let (rx, guard) = {
            let mut state = self.state.lock();
            state.returning -= 1;
            if state.closed || state.idle.len() >= self.max_idle {
                return None;
            }
            let guard = LiveThread::acquire(stack).ok()?;
            let (give, rx) = bounded(1);
            state.idle.push(Idle { id, stack, give });
            (rx, guard)
        };
        let next = match rx.recv_timeout(self.idle_timeout) {
            Ok(next) => Some(next),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut state = self.state.lock();
                match state.idle.iter().position(|t| t.id == id) {
                    Some(i) => {
                        state.idle.swap_remove(i);
                        None
                    }
                    // Taken just now: the process is on its way.
                    None => {
                        drop(state);
                        rx.recv().ok()
                    }
                }
            }
        };
        next.map(|work| (work, guard))
    }

    /// Closes the pool: idle threads end, and every thread is joined except those still
    /// running an abandoned process (see the module docs).
    pub(crate) fn close(&self) {
        let members = {
            let mut state = self.state.lock();
            state.closed = true;
            state.idle.clear(); // their channels disconnect: they end
            std::mem::take(&mut state.members)
        };
        for m in members {
            if m.doing.load(Ordering::Acquire) == RUNNING {
                continue; // an abandoned child's: detached
            }
            let _ = m.join.join();
        }
    }

    /// How many threads wait idle (for tests and snapshots).
    pub(crate) fn idle(&self) -> usize {
        self.state.lock().idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spawns a pooled thread whose first life ends at once.
    fn spawn_one(pool: &Arc<ThreadPool>) {
        let (done, _) = bounded(0);
        let work = Work {
            run: Box::new(|_| {}),
            done,
        };
        let guard = LiveThread::acquire(None).unwrap();
        pool.spawn(thread::Builder::new(), None, work, guard)
            .unwrap();
    }

    /// Spawns race (a dynamic supervisor spawns from callers' threads as well as its
    /// own): each thread must get an id of its own, or one idle thread's timeout takes
    /// another's place out of the idle set and leaves its own stale entry behind.
    #[test]
    fn threads_spawned_at_once_all_leave_the_idle_set_on_their_timeout() {
        for _ in 0..20 {
            let pool = ThreadPool::new(64, Duration::from_millis(5));
            thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| (0..4).for_each(|_| spawn_one(&pool)));
                }
            });
            let left = || pool.idle() + pool.state.lock().returning;
            let gone = crate::wait::until(Duration::from_secs(10), || left() == 0);
            assert!(gone.is_ok(), "{} idle left after their timeout", left());
            pool.close();
        }
    }
}
