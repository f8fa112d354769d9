//! Process identity and the process table: liveness, exit hooks and monitors.
//!
//! Every process (a supervised thread, or a plain thread that asked for its [`Pid`]) has one
//! entry in a global, sharded table while it is alive. Exiting marks the entry exiting
//! first — from that instant no exit hook can be added — then runs the exit hooks
//! (registry clean-up), then removes the entry and fires the monitors, those taken while
//! the hooks ran included. So neither a monitor nor `is_alive` reports the exit before
//! the names are gone. The child runner notifies the supervisor only after that, which
//! is what makes exit ordering (ARCHITECTURE.md) hold.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{bounded, Receiver, Sender};
use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::exit::ExitReason;
use crate::hash::{BuildU64, Padded};

/// The identity of one process incarnation.
///
/// A `Pid` is a cheap `Copy` id, unique for the life of the program: a restarted child gets
/// a new one. It prints as `<0.N>`, as Erlang's pids do.
///
/// # Examples
///
/// ```
/// use steadfast::Pid;
/// // A plain (unsupervised) thread gets a pid on demand; it stays alive with the thread.
/// let me = Pid::current();
/// assert_eq!(me, Pid::current());
/// assert!(me.is_alive());
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(NonZeroU64);

static NEXT_PID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: Cell<Option<Pid>> = const { Cell::new(None) };
}

impl Pid {
    /// A fresh pid, entered into the process table as alive, started by `parent` (the
    /// supervisor that spawned it, or the process that started a top-level tree).
    pub(crate) fn spawn(parent: Option<Pid>) -> Pid {
        let n = NEXT_PID.fetch_add(1, Ordering::Relaxed);
        let pid = Pid(NonZeroU64::new(n).expect("pid counter overflowed"));
        TABLE.insert(pid, parent);
        pid
    }

    /// The calling thread's pid, if it is a process or has asked for one (unlike
    /// [`Pid::current`], never allocates one).
    pub(crate) fn current_if_any() -> Option<Pid> {
        CURRENT.with(|c| c.get())
    }

    /// The pid of the calling thread.
    ///
    /// Inside a supervised process this is the process's pid. A plain thread is given a pid
    /// the first time it asks; that pid stays alive for as long as the program runs (a plain
    /// thread has no supervisor to report its exit to), so names it registers stay until it
    /// unregisters them.
    pub fn current() -> Pid {
        CURRENT.with(|c| match c.get() {
            Some(pid) => pid,
            None => {
                let pid = Pid::spawn(None);
                c.set(Some(pid));
                pid
            }
        })
    }

    /// Marks the calling thread as running `pid` (the child runner does this).
    pub(crate) fn set_current(pid: Option<Pid>) {
        CURRENT.with(|c| c.set(pid));
    }

    /// Whether this process has not exited yet: true until its exit is complete (its names
    /// released), false from then on. An abandoned process counts as exited.
    pub fn is_alive(self) -> bool {
        TABLE.is_alive(self)
    }

    pub(crate) fn from_raw(n: u64) -> Option<Pid> {
        NonZeroU64::new(n).map(Pid)
    }

    /// The number behind the pid, unique for the life of the program.
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<0.{}>", self.0)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Something that must learn of every exit of the processes it tracks, synchronously, in
/// the exiting thread (the registries). `tokens` are what it asked to be handed back: one
/// per entry the process held (a registry passes its key hashes).
pub(crate) trait ExitHook: Send + Sync {
    fn on_exit(&self, pid: Pid, tokens: Vec<u64>);
}

struct Hook {
    /// The address of the hook's shared state: each hook is held once per process.
    key: usize,
    hook: Weak<dyn ExitHook>,
    tokens: Vec<u64>,
}

#[derive(Default)]
struct Entry {
    /// Who started this process: its supervisor, for a supervised one.
    parent: Option<Pid>,
    /// Who must hear of its exit; boxed, since most processes have no one.
    links: Option<Box<Links>>,
    /// Its exit has begun: its hooks are running, its monitors wait for them.
    exiting: bool,
}

#[derive(Default)]
struct Links {
    monitors: Vec<Sender<ExitReason>>,
    hooks: Vec<Hook>,
}

impl Entry {
    fn links(&mut self) -> &mut Links {
        self.links.get_or_insert_with(Box::default)
    }

    fn hooks(&self) -> &[Hook] {
        self.links.as_deref().map_or(&[], |l| &l.hooks)
    }
}

const SHARDS: usize = 64;

type TableShard = Padded<Mutex<HashMap<u64, Entry, BuildU64>>>;

struct ProcessTable {
    shards: Box<[TableShard]>,
}

static TABLE: Lazy<ProcessTable> = Lazy::new(|| ProcessTable {
    shards: (0..SHARDS)
        .map(|_| Padded(Mutex::new(HashMap::default())))
        .collect(),
});

impl ProcessTable {
    fn shard(&self, pid: Pid) -> &Mutex<HashMap<u64, Entry, BuildU64>> {
        &self.shards[(pid.as_u64() as usize) % SHARDS]
    }

    fn insert(&self, pid: Pid, parent: Option<Pid>) {
        let entry = Entry {
            parent,
            ..Entry::default()
        };
        self.shard(pid).lock().insert(pid.as_u64(), entry);
    }

    fn parent(&self, pid: Pid) -> Option<Pid> {
        self.shard(pid).lock().get(&pid.as_u64())?.parent
    }

    fn is_alive(&self, pid: Pid) -> bool {
        self.shard(pid).lock().contains_key(&pid.as_u64())
    }
}

/// The process that started live process `pid` (its supervisor; for a top-level
/// supervisor, the process that started it), if it has one and `pid` lives.
pub(crate) fn parent_of(pid: Pid) -> Option<Pid> {
    TABLE.parent(pid)
}

/// Whether live process `pid` is `ancestor` or was started, directly or through nested
/// supervisors, under it. Supervisors use it to refuse a request that would make them
/// wait for the very process that sent it.
pub(crate) fn is_within(pid: Pid, ancestor: Pid) -> bool {
    let mut at = Some(pid);
    // Parent links form a tree; the bound only guards against a bug looping forever.
    for _ in 0..10_000 {
        match at {
            Some(p) if p == ancestor => return true,
            Some(p) => at = TABLE.parent(p),
            None => return false,
        }
    }
    false
}

/// Hands `token` to `hook` when `pid` exits. Returns `false` if `pid` is not alive.
pub(crate) fn add_exit_token(pid: Pid, key: usize, hook: &Weak<dyn ExitHook>, token: u64) -> bool {
    let mut shard = TABLE.shard(pid).lock();
    let Some(entry) = shard.get_mut(&pid.as_u64()).filter(|e| !e.exiting) else {
        return false;
    };
    let hooks = &mut entry.links().hooks;
    match hooks.iter_mut().find(|h| h.key == key) {
        Some(h) => h.tokens.push(token),
        None => hooks.push(Hook {
            key,
            hook: hook.clone(),
            tokens: vec![token],
        }),
    }
    true
}

/// Takes back one `token` given with [`add_exit_token`] (the entry was removed early).
pub(crate) fn remove_exit_token(pid: Pid, key: usize, token: u64) {
    let mut shard = TABLE.shard(pid).lock();
    let Some(entry) = shard.get_mut(&pid.as_u64()) else {
        return;
    };
    let Some(links) = entry.links.as_deref_mut() else {
        return;
    };
    if let Some(h) = links.hooks.iter_mut().find(|h| h.key == key) {
        if let Some(i) = h.tokens.iter().position(|&t| t == token) {
            h.tokens.swap_remove(i);
        }
    }
}

/// The tokens `pid` holds for `key`'s hook.
pub(crate) fn exit_tokens(pid: Pid, key: usize) -> Vec<u64> {
    let shard = TABLE.shard(pid).lock();
    shard
        .get(&pid.as_u64())
        .and_then(|e| e.hooks().iter().find(|h| h.key == key))
        .map(|h| h.tokens.clone())
        .unwrap_or_default()
}

/// Ends `pid`: removes it from the table, runs its exit hooks, fires its monitors.
///
/// Only the first call for a pid does anything (an abandoned process is exited by its
/// supervisor, and again, harmlessly, by its own thread when it finally returns).
/// Returns whether this call was the one that ended it.
pub(crate) fn exit(pid: Pid, reason: &ExitReason) -> bool {
    let shard = TABLE.shard(pid);
    // Collect under the lock, act outside it: hooks lock the registries.
    let links = {
        let mut table = shard.lock();
        let Some(entry) = table.get_mut(&pid.as_u64()).filter(|e| !e.exiting) else {
            return false;
        };
        match entry.links.take() {
            Some(links) => {
                // Stays in the table, exiting, while its hooks run: a monitor taken
                // meanwhile waits for them (see the module docs).
                entry.exiting = true;
                links
            }
            // Nothing to release and nobody to tell: gone at once.
            None => {
                table.remove(&pid.as_u64());
                return true;
            }
        }
    };
    let Links {
        mut monitors,
        hooks,
    } = *links;
    for h in hooks {
        if let Some(hook) = h.hook.upgrade() {
            hook.on_exit(pid, h.tokens);
        }
    }
    let late = shard.lock().remove(&pid.as_u64()).and_then(|e| e.links);
    monitors.extend(late.into_iter().flat_map(|l| l.monitors));
    for m in monitors {
        let _ = m.send(reason.clone());
    }
    true
}

/// A one-shot notification of `pid`'s exit.
///
/// The receiver gets exactly one [`ExitReason`]: the process's own when it exits, or
/// [`ExitReason::NoProcess`] at once if it had already exited when `monitor` was called.
/// By the time the reason arrives every name the process owned has been released.
///
/// # Examples
///
/// ```
/// use steadfast::{monitor, ChildSpec, ExitReason, Supervisor};
///
/// let sup = Supervisor::builder()
///     .child(ChildSpec::worker("idle", |ctx| {
///         let _ = ctx.stop_signal().recv();
///         Ok(())
///     }))
///     .start()
///     .unwrap();
/// let pid = sup.which_children().unwrap()[0].pid.unwrap();
/// let exit = monitor(pid);
/// sup.terminate_child("idle").unwrap();
/// assert_eq!(exit.recv().unwrap(), ExitReason::Shutdown);
/// // Too late: the process is gone, and the monitor says so at once.
/// assert_eq!(monitor(pid).recv().unwrap(), ExitReason::NoProcess);
/// ```
pub fn monitor(pid: Pid) -> Receiver<ExitReason> {
    let (tx, rx) = bounded(1);
    let mut shard = TABLE.shard(pid).lock();
    match shard.get_mut(&pid.as_u64()) {
        Some(entry) => entry.links().monitors.push(tx),
        None => {
            drop(shard);
            let _ = tx.send(ExitReason::NoProcess);
        }
    }
    rx
}

/// Exit-hook keys: the address of the hook's shared state, stable while it lives.
pub(crate) fn hook_key<T>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc) as *const () as usize
}

/// The same key, from the weak handle the process table holds.
#[cfg(feature = "sessions")]
pub(crate) fn hook_key_of(hook: &Weak<dyn ExitHook>) -> usize {
    hook.as_ptr() as *const () as usize
}
