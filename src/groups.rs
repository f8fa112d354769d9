//! Groups: many processes under one key (Elixir's duplicate-key `Registry`, OTP's `pg`),
//! with dispatch to all of them, cleaned up synchronously when a member exits.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender};
use once_cell::sync::Lazy;

use crate::hash::{BuildU64, KeyHasher};
use crate::listeners::{Listeners, RegistryEvent};
use crate::pid::{self, ExitHook, Pid};
use crate::registry::AnyValue;
use crate::shards::Shards;

/// Keys mapped to any number of member processes, each membership with a value.
///
/// A process may join a key many times (each join is one entry, as in Elixir's duplicate
/// registries); [`leave`](Groups::leave) removes all of its entries under the key. When a
/// member exits, its entries are removed **in its own thread, before its exit is
/// reported**, as the unique [`Registry`](crate::Registry) does: whoever observed the
/// exit never gets the member back from a look-up or a dispatch.
///
/// [`dispatch`](Groups::dispatch) runs a function over a key's members on the calling
/// thread, with no lock held (it works on a snapshot of the member list, which costs one
/// reference count, not a copy), so the function may itself join, leave or look up.
///
/// # Examples
///
/// ```
/// use steadfast::channel::unbounded;
/// use steadfast::Groups;
///
/// let topics: Groups<&'static str, steadfast::channel::Sender<String>> = Groups::new();
/// let (tx, rx) = unbounded();
/// topics.join("news", tx.clone());
/// topics.join("news", tx); // twice: two entries
/// assert_eq!(topics.dispatch_send("news", "hello".to_string()), 2);
/// assert_eq!(rx.try_iter().count(), 2);
/// assert_eq!(topics.leave(&"news"), 2);
/// assert!(topics.members("news").is_empty());
/// ```
pub struct Groups<K, V> {
    inner: Arc<Inner<K, V>>,
    hook: Weak<dyn ExitHook>,
}

/// One entry: a member and its value.
struct Member<V> {
    pid: Pid,
    value: V,
}

/// A key and its members. The list is shared with dispatches in progress: a change
/// copies it only if a dispatch still holds the old one (`Arc::make_mut`).
struct Bucket<K, V> {
    key: K,
    members: Arc<Vec<Member<V>>>,
}

struct Shard<K, V> {
    /// Buckets by their key's hash (more than one on a collision).
    map: HashMap<u64, Vec<Bucket<K, V>>, BuildU64>,
}

struct Inner<K, V> {
    hasher: KeyHasher,
    shards: Shards<Shard<K, V>>,
    count: AtomicUsize,
    listeners: Listeners<RegistryEvent<K, V>>,
}

impl<V: Clone> Clone for Member<V> {
    fn clone(&self) -> Self {
        Member {
            pid: self.pid,
            value: self.value.clone(),
        }
    }
}

impl<K, V> Clone for Groups<K, V> {
    fn clone(&self) -> Self {
        Groups {
            inner: self.inner.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Groups<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Groups")
            .field("entries", &self.inner.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for Groups<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Groups::new()
    }
}

impl<K, V> Groups<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty set of groups.
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            hasher: KeyHasher::default(),
            shards: Shards::new(|| Shard {
                map: HashMap::default(),
            }),
            count: AtomicUsize::new(0),
            listeners: Listeners::new(),
        });
        let hook: Weak<dyn ExitHook> = Arc::downgrade(&inner) as Weak<Inner<K, V>>;
        Groups { inner, hook }
    }

    /// Adds an entry for the calling process under `key`, with `value`. The entry goes
    /// when the process exits (a plain thread keeps it until it leaves; see
    /// [`Pid::current`]).
    pub fn join(&self, key: K, value: V) {
        // The calling process is alive while it calls.
        let _ = self.join_for(Pid::current(), key, value);
    }

    /// Adds an entry for `pid` under `key`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotAlive`](crate::RegistryError::NotAlive) if `pid` has exited.
    pub fn join_for(&self, pid: Pid, key: K, value: V) -> Result<(), crate::RegistryError> {
        let inner = &self.inner;
        let h = inner.hasher.hash_one(&key);
        let mut shard = inner.shards.write(h);
        // Under the shard's lock, before the entry is visible: an owner exiting after
        // this point waits for the lock in its exit hook, then removes the entry.
        if !pid::add_exit_token(pid, pid::hook_key(inner), &self.hook, h) {
            return Err(crate::RegistryError::NotAlive(pid));
        }
        let buckets = shard.map.entry(h).or_default();
        let i = match buckets.iter().position(|b| b.key == key) {
            Some(i) => i,
            None => {
                buckets.push(Bucket {
                    key: key.clone(),
                    members: Arc::default(),
                });
                buckets.len() - 1
            }
        };
        Arc::make_mut(&mut buckets[i].members).push(Member {
            pid,
            value: value.clone(),
        });
        inner.count.fetch_add(1, Ordering::Relaxed);
        inner
            .listeners
            .tell(|| RegistryEvent::Registered { key, pid, value });
        Ok(())
    }

    /// Removes the calling process's entries under `key`; returns how many.
    pub fn leave<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.leave_for(Pid::current(), key)
    }

    /// Removes `pid`'s entries under `key`; returns how many.
    pub fn leave_for<Q>(&self, pid: Pid, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &self.inner;
        let h = inner.hasher.hash_one(key);
        let mut shard = inner.shards.write(h);
        let removed = shard.remove(h, |k: &K| k.borrow() == key, pid, &inner.listeners, false);
        drop(shard);
        for _ in 0..removed {
            pid::remove_exit_token(pid, pid::hook_key(inner), h);
        }
        inner.count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Every `(pid, value)` under `key`, in join order.
    pub fn members<Q>(&self, key: &Q) -> Vec<(Pid, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let snapshot = self.snapshot(key);
        snapshot.iter().map(|m| (m.pid, m.value.clone())).collect()
    }

    /// The values `pid` joined `key` with.
    pub fn values<Q>(&self, key: &Q, pid: Pid) -> Vec<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let snapshot = self.snapshot(key);
        let mine = snapshot.iter().filter(|m| m.pid == pid);
        mine.map(|m| m.value.clone()).collect()
    }

    /// How many entries `key` has.
    pub fn count_members<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.snapshot(key).len()
    }

    /// Calls `f` with each `(pid, value)` under `key`, in join order, on the calling
    /// thread, with no lock held; returns how many it was called with (0 for an empty or
    /// unknown key). Members that join or leave meanwhile are not seen by this dispatch.
    pub fn dispatch<Q>(&self, key: &Q, mut f: impl FnMut(Pid, &V)) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let snapshot = self.snapshot(key);
        for m in snapshot.iter() {
            f(m.pid, &m.value);
        }
        snapshot.len()
    }

    /// The keys under which `pid` has entries.
    pub fn keys(&self, pid: Pid) -> Vec<K> {
        let mut hashes = pid::exit_tokens(pid, pid::hook_key(&self.inner));
        hashes.sort_unstable();
        hashes.dedup();
        let mut keys = Vec::new();
        for h in hashes {
            let shard = self.inner.shards.read(h);
            let buckets = shard.map.get(&h).into_iter().flatten();
            let held = buckets.filter(|b| b.members.iter().any(|m| m.pid == pid));
            keys.extend(held.map(|b| b.key.clone()));
        }
        keys
    }

    /// Every `(key, pid, value)` entry for which `pred` holds (shard by shard: each
    /// shard's part is consistent, the whole is not one instant).
    ///
    /// `pred` runs with no lock held (each shard's entries are copied out first), so it
    /// may use these groups in any way: query, join, leave, dispatch.
    pub fn select(&self, mut pred: impl FnMut(&K, Pid, &V) -> bool) -> Vec<(K, Pid, V)> {
        let mut out = Vec::new();
        self.for_each(|k, pid, v| {
            if pred(&k, pid, &v) {
                out.push((k, pid, v));
            }
        });
        out
    }

    /// How many entries `pred` holds for (`pred` runs with no lock held, as in
    /// [`select`](Groups::select)).
    pub fn count_matching(&self, mut pred: impl FnMut(&K, Pid, &V) -> bool) -> usize {
        let mut n = 0;
        self.for_each(|k, pid, v| n += usize::from(pred(&k, pid, &v)));
        n
    }

    /// How many entries there are, over every key.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// A channel told of every join and leave (and every entry an exit removed), in
    /// order per key. Dropping the receiver ends it; the groups carry on.
    pub fn listen(&self) -> Receiver<RegistryEvent<K, V>> {
        self.inner.listeners.add()
    }

    fn snapshot<Q>(&self, key: &Q) -> Arc<Vec<Member<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &self.inner;
        let h = inner.hasher.hash_one(key);
        let shard = inner.shards.read(h);
        let bucket = shard.map.get(&h);
        let bucket = bucket.and_then(|b| b.iter().find(|b| b.key.borrow() == key));
        bucket.map(|b| b.members.clone()).unwrap_or_default()
    }

    /// Calls `f` with every entry, shard by shard: each shard's entries are copied out
    /// under its read lock, and `f` runs after the lock is released.
    fn for_each(&self, mut f: impl FnMut(K, Pid, V)) {
        let mut copied = Vec::new();
        for shard in self.inner.shards.iter() {
            for bucket in shard.map.values().flatten() {
                let members = bucket.members.iter();
                copied.extend(members.map(|m| (bucket.key.clone(), m.pid, m.value.clone())));
            }
            drop(shard);
            for (k, pid, v) in copied.drain(..) {
                f(k, pid, v);
            }
        }
    }
}

impl<K, T> Groups<K, Sender<T>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + 'static,
{
    /// Sends `message` to every member's channel under `key`; returns how many took it
    /// (a member whose receiver is gone does not count, and stays until it leaves or
    /// exits).
    pub fn dispatch_send<Q>(&self, key: &Q, message: T) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let snapshot = self.snapshot(key);
        let mut delivered = 0;
        if let Some((last, rest)) = snapshot.split_last() {
            for m in rest {
                delivered += usize::from(m.value.send(message.clone()).is_ok());
            }
            delivered += usize::from(last.value.send(message).is_ok());
        }
        delivered
    }
}

impl<K: Eq + Clone, V: Clone> Shard<K, V> {
    /// Removes `pid`'s entries under the keys with hash `h` that `which` picks, telling
    /// the listeners; returns how many.
    fn remove(
        &mut self,
        h: u64,
        which: impl Fn(&K) -> bool,
        pid: Pid,
        listeners: &Listeners<RegistryEvent<K, V>>,
        exited: bool,
    ) -> usize {
        let Some(buckets) = self.map.get_mut(&h) else {
            return 0;
        };
        let mut removed = 0;
        for bucket in buckets.iter_mut().filter(|b| which(&b.key)) {
            let before = bucket.members.len();
            if !bucket.members.iter().any(|m| m.pid == pid) {
                continue;
            }
            Arc::make_mut(&mut bucket.members).retain(|m| m.pid != pid);
            let gone = before - bucket.members.len();
            removed += gone;
            for _ in 0..gone {
                listeners.tell(|| RegistryEvent::Unregistered {
                    key: bucket.key.clone(),
                    pid,
                    exited,
                });
            }
        }
        buckets.retain(|b| !b.members.is_empty());
        if buckets.is_empty() {
            self.map.remove(&h);
        }
        removed
    }
}

impl<K, V> ExitHook for Inner<K, V>
where
    K: Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    fn on_exit(&self, pid: Pid, mut tokens: Vec<u64>) {
        tokens.sort_unstable();
        tokens.dedup();
        for h in tokens {
            let removed = self
                .shards
                .write(h)
                .remove(h, |_| true, pid, &self.listeners, true);
            self.count.fetch_sub(removed, Ordering::Relaxed);
        }
    }
}

static GLOBAL: Lazy<Groups<String, AnyValue>> = Lazy::new(Groups::new);

/// The global groups: names to members with values of any type, with typed look-up —
/// process groups any part of a program can find.
///
/// # Examples
///
/// ```
/// use steadfast::groups;
///
/// groups().join_value("workers", 1u32);
/// groups().join_value("workers", 2u32);
/// let mut ids: Vec<u32> = groups().members_as::<u32>("workers").into_iter().map(|(_, v)| v).collect();
/// ids.sort();
/// assert_eq!(ids, [1, 2]);
/// groups().leave("workers");
/// ```
pub fn groups() -> &'static Groups<String, AnyValue> {
    &GLOBAL
}

impl Groups<String, AnyValue> {
    /// Joins `key` for the calling process with a value of any type.
    pub fn join_value<T: std::any::Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        self.join(key.into(), Arc::new(value));
    }

    /// The members under `key` whose value is a `T` (others are skipped).
    pub fn members_as<T: std::any::Any + Clone>(&self, key: &str) -> Vec<(Pid, T)> {
        let snapshot = self.snapshot(key);
        let typed = snapshot.iter().filter_map(|m| {
            let value = m.value.downcast_ref::<T>()?;
            Some((m.pid, value.clone()))
        });
        typed.collect()
    }
}
