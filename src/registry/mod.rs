//! Registries: names mapped to live processes, cleaned up synchronously when they exit.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::RegistryError;
use crate::hash::{BuildU64, KeyHasher};
use crate::listeners::{Listeners, RegistryEvent};
use crate::pid::{self, ExitHook, Pid};
use crate::shards::Shards;
use crate::wait::{self, Timeout};

mod global;

pub use global::{registry, AnyValue};

/// A map from unique keys to live processes, each entry carrying a value.
///
/// Every entry is owned by a process. When the owner exits, its entries are removed *in
/// its own thread, before* its exit is reported to anyone — its supervisor, its monitors,
/// a `join` — so whoever waited for the exit finds the registry already clean and never
/// needs to poll. (Elixir's `Registry` cleans up asynchronously; this one does not.)
///
/// A `Registry` is a handle: clones share the same entries. It is built for reading:
/// entries are spread over 64 shards, and a look-up takes a read lock that only its own
/// thread's slot writes to, so threads looking up at once do not slow each other down;
/// a registration pays for that by locking the shard in every slot (one per core, at
/// most eight). Keys are hashed with foldhash, seeded at random per registry: fast, and
/// proof against precomputed collisions, though not against an attacker who can time
/// look-ups to recover the seed.
///
/// # Examples
///
/// ```
/// use steadfast::{Pid, Registry};
///
/// let reg: Registry<&'static str, u32> = Registry::new();
/// reg.register("answer", 42).unwrap();
/// assert_eq!(reg.lookup("answer"), Some((Pid::current(), 42)));
/// assert!(reg.register("answer", 7).is_err());
/// reg.unregister("answer");
/// assert_eq!(reg.count(), 0);
/// ```
pub struct Registry<K, V> {
    inner: Arc<Inner<K, V>>,
    /// `inner` as the process table holds it, to be told of exits.
    hook: Weak<dyn ExitHook>,
}

struct Slot<K, V> {
    key: K,
    pid: Pid,
    value: V,
}

/// One shard: entries by their key's hash, and the (astronomically rare) entries whose
/// hash another key in the shard already has.
struct Shard<K, V> {
    map: HashMap<u64, Slot<K, V>, BuildU64>,
    overflow: Vec<(u64, Slot<K, V>)>,
}

struct Inner<K, V> {
    hasher: KeyHasher,
    shards: Shards<Shard<K, V>>,
    listeners: Listeners<RegistryEvent<K, V>>,
}

impl<K, V> Inner<K, V> {
    fn count(&self) -> usize {
        let count = |s: &Shard<K, V>| s.map.len() + s.overflow.len();
        self.shards.iter().map(|s| count(&s)).sum()
    }
}

impl<K, V> Clone for Registry<K, V> {
    fn clone(&self) -> Self {
        Registry {
            inner: self.inner.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Registry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("count", &self.inner.count())
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for Registry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Registry::new()
    }
}

impl<K, V> Registry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty private registry.
    pub fn new() -> Self {
        let inner = Arc::new(Inner {
            hasher: KeyHasher::default(),
            shards: Shards::new(|| Shard {
                map: HashMap::default(),
                overflow: Vec::new(),
            }),
            listeners: Listeners::new(),
        });
        let hook: Weak<dyn ExitHook> = Arc::downgrade(&inner) as Weak<Inner<K, V>>;
        Registry { inner, hook }
    }

    fn hook_key(&self) -> usize {
        pid::hook_key(&self.inner)
    }

    /// Registers `key` to the calling process, with `value`.
    ///
    /// Inside a supervised process the owner is that process, and the entry goes when it
    /// exits. A plain thread owns its entries until it unregisters them (see
    /// [`Pid::current`]).
    ///
    /// # Errors
    ///
    /// [`RegistryError::AlreadyRegistered`] if a live process holds `key` (the calling one
    /// included). A holder that has exited, or was abandoned, does not count: the new
    /// registration wins. [`RegistryError::NotAlive`] if the calling process was abandoned.
    pub fn register(&self, key: K, value: V) -> Result<(), RegistryError> {
        self.register_for(Pid::current(), key, value)
    }

    /// Registers `key` on behalf of `pid`; the entry goes when `pid` exits.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotAlive`] if `pid` has already exited;
    /// [`RegistryError::AlreadyRegistered`] as for [`register`](Registry::register).
    pub fn register_for(&self, pid: Pid, key: K, value: V) -> Result<(), RegistryError> {
        let inner = &self.inner;
        let h = inner.hash(&key);
        let mut shard = inner.shards.write(h);
        if let Some(holder) = shard.get(h, &key).map(|s| s.pid) {
            if holder == pid || holder.is_alive() {
                return Err(RegistryError::AlreadyRegistered(holder));
            }
            // A dead holder whose clean-up has not reached this key yet: replace it.
            shard.remove(h, &key, holder);
            inner.listeners.tell(|| RegistryEvent::Unregistered {
                key: key.clone(),
                pid: holder,
                exited: true,
            });
        }
        // The owner's exit hook learns of the entry before anyone can see it, and under
        // this shard's lock: an owner that exits after this point runs its hook, which
        // waits for the lock and then removes the entry, before its monitors fire. (The
        // other order left a window in which a look-up made after the owner's monitor
        // fired could still return it.) Adding the token fails if the owner is dead.
        if !pid::add_exit_token(pid, self.hook_key(), &self.hook, h) {
            return Err(RegistryError::NotAlive(pid));
        }
        inner.listeners.tell(|| RegistryEvent::Registered {
            key: key.clone(),
            pid,
            value: value.clone(),
        });
        shard.insert(h, Slot { key, pid, value });
        Ok(())
    }

    /// The holder of `key` and its value, if registered.
    pub fn lookup<Q>(&self, key: &Q) -> Option<(Pid, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup_with(key, |pid, v| (pid, v.clone()))
    }

    /// Applies `f` to the holder and value of `key` under the shard's read lock.
    fn lookup_with<Q, R>(&self, key: &Q, f: impl FnOnce(Pid, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &self.inner;
        let h = inner.hash(key);
        let shard = inner.shards.read(h);
        shard.get(h, key).map(|s| f(s.pid, &s.value))
    }

    /// Removes `key` if the calling process holds it, and returns its value.
    ///
    /// As Elixir's `Registry.unregister/2`: a process removes only its own entries, so a
    /// late caller (an abandoned thread, say) cannot remove a name someone else has taken
    /// since.
    pub fn unregister<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.unregister_for(Pid::current(), key)
    }

    /// Removes `key` if `pid` holds it, and returns its value.
    pub fn unregister_for<Q>(&self, pid: Pid, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &self.inner;
        let h = inner.hash(key);
        let mut shard = inner.shards.write(h);
        let slot = shard.remove(h, key, pid)?;
        inner.listeners.tell(|| RegistryEvent::Unregistered {
            key: slot.key.clone(),
            pid,
            exited: false,
        });
        drop(shard);
        pid::remove_exit_token(pid, self.hook_key(), h);
        Some(slot.value)
    }

    /// Changes the value of the calling process's own entry under `key`.
    ///
    /// `f` runs on a copy of the value with no lock held (the entry takes the result when
    /// it returns), so it may use this registry too; look-ups meanwhile see the old value.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotRegistered`]; [`RegistryError::NotOwner`] when another
    /// process holds the key (only an owner may change its entry).
    ///
    /// # Examples
    ///
    /// ```
    /// use steadfast::Registry;
    ///
    /// let reg: Registry<&'static str, u32> = Registry::new();
    /// reg.register("hits", 0).unwrap();
    /// reg.update_value("hits", |n| *n += 1).unwrap();
    /// assert_eq!(reg.lookup("hits").map(|(_, n)| n), Some(1));
    /// ```
    pub fn update_value<Q>(&self, key: &Q, f: impl FnOnce(&mut V)) -> Result<(), RegistryError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let me = Pid::current();
        let inner = &self.inner;
        let h = inner.hash(key);
        let owned = |slot: Option<&Slot<K, V>>| match slot {
            Some(slot) if slot.pid == me => Ok(()),
            Some(slot) => Err(RegistryError::NotOwner(slot.pid)),
            None => Err(RegistryError::NotRegistered),
        };
        // `f` runs on a copy, with no lock held, so that it may use this registry too;
        // only the owner changes its entry, so no other update can come in between.
        let mut value = {
            let shard = inner.shards.read(h);
            let slot = shard.get(h, key);
            owned(slot)?;
            slot.map(|s| s.value.clone()).expect("checked above")
        };
        f(&mut value);
        let mut shard = inner.shards.write(h);
        let slot = shard.get_mut(h, key);
        owned(slot.as_deref())?;
        if let Some(slot) = slot {
            slot.value = value;
        }
        Ok(())
    }

    /// Every `(key, pid, value)` for which `pred` holds (shard by shard: each shard's
    /// part is consistent, the whole is not one instant).
    ///
    /// `pred` runs with no lock held (each shard's entries are copied out first), so it
    /// may use this registry in any way: look up, register, unregister, update.
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
    /// [`select`](Registry::select)).
    pub fn count_matching(&self, mut pred: impl FnMut(&K, Pid, &V) -> bool) -> usize {
        let mut n = 0;
        self.for_each(|k, pid, v| n += usize::from(pred(&k, pid, &v)));
        n
    }

    /// A channel told of every registration and unregistration (exits included), in
    /// order per key. Dropping the receiver ends it; the registry carries on.
    pub fn listen(&self) -> crossbeam_channel::Receiver<RegistryEvent<K, V>> {
        self.inner.listeners.add()
    }

    /// Calls `f` with every entry, shard by shard: each shard's entries are copied out
    /// under its read lock, and `f` runs after the lock is released.
    fn for_each(&self, mut f: impl FnMut(K, Pid, V)) {
        let mut copied = Vec::new();
        for shard in self.inner.shards.iter() {
            let slots = shard
                .map
                .values()
                .chain(shard.overflow.iter().map(|(_, s)| s));
            copied.extend(slots.map(|s| (s.key.clone(), s.pid, s.value.clone())));
            drop(shard);
            for (k, pid, v) in copied.drain(..) {
                f(k, pid, v);
            }
        }
    }

    /// The keys `pid` holds.
    pub fn keys(&self, pid: Pid) -> Vec<K> {
        let mut hashes = pid::exit_tokens(pid, self.hook_key());
        hashes.sort_unstable();
        hashes.dedup();
        let mut keys = Vec::with_capacity(hashes.len());
        for h in hashes {
            let shard = self.inner.shards.read(h);
            keys.extend(shard.held(h, pid).map(|s| s.key.clone()));
        }
        keys
    }

    /// How many keys are registered.
    ///
    /// Counted shard by shard (a look-up or a registration pays for no shared counter),
    /// so under concurrent changes it is a count some moment during the call saw.
    pub fn count(&self) -> usize {
        self.inner.count()
    }

    /// Blocks until `key` is registered, for at most `timeout`, and returns its entry.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if `key` is still not registered when the time is up.
    pub fn wait_for_registration<Q>(&self, key: &Q, timeout: Duration) -> Result<(Pid, V), Timeout>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
    {
        wait::until_some(timeout, format_args!("{key:?} to be registered"), || {
            self.lookup(key)
        })
    }

    /// Blocks until `key` is not registered, for at most `timeout`.
    ///
    /// Code that observed its owner's exit (through a monitor or a join) does not need
    /// this: the entry was gone before the exit was reported.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if `key` is still registered when the time is up.
    pub fn wait_for_cleanup<Q>(&self, key: &Q, timeout: Duration) -> Result<(), Timeout>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
    {
        wait::until_some(timeout, format_args!("{key:?} to be unregistered"), || {
            self.lookup_with(key, |_, _| ()).is_none().then_some(())
        })
    }
}

impl<K: Eq, V> Shard<K, V> {
    fn get<Q>(&self, h: u64, key: &Q) -> Option<&Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.map.get(&h) {
            Some(s) if s.key.borrow() == key => Some(s),
            _ if self.overflow.is_empty() => None,
            _ => self
                .overflow
                .iter()
                .find(|(oh, s)| *oh == h && s.key.borrow() == key)
                .map(|(_, s)| s),
        }
    }

    fn get_mut<Q>(&mut self, h: u64, key: &Q) -> Option<&mut Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.map.get(&h).is_some_and(|s| s.key.borrow() == key) {
            return self.map.get_mut(&h);
        }
        let found = self
            .overflow
            .iter_mut()
            .find(|(oh, s)| *oh == h && s.key.borrow() == key);
        found.map(|(_, s)| s)
    }

    /// Inserts a slot whose key is not present.
    fn insert(&mut self, h: u64, slot: Slot<K, V>) {
        match self.map.entry(h) {
            Entry::Vacant(e) => {
                e.insert(slot);
            }
            Entry::Occupied(_) => self.overflow.push((h, slot)),
        }
    }

    /// Removes `key` if `pid` holds it.
    fn remove<Q>(&mut self, h: u64, key: &Q, pid: Pid) -> Option<Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if let Entry::Occupied(e) = self.map.entry(h) {
            if e.get().key.borrow() == key {
                return (e.get().pid == pid).then(|| e.remove());
            }
        }
        let i = self
            .overflow
            .iter()
            .position(|(oh, s)| *oh == h && s.key.borrow() == key && s.pid == pid)?;
        Some(self.overflow.swap_remove(i).1)
    }

    /// The slots with hash `h` that `pid` holds.
    fn held(&self, h: u64, pid: Pid) -> impl Iterator<Item = &Slot<K, V>> {
        let main = self.map.get(&h).filter(|s| s.pid == pid);
        let more = self
            .overflow
            .iter()
            .filter(move |(oh, s)| *oh == h && s.pid == pid)
            .map(|(_, s)| s);
        main.into_iter().chain(more)
    }
}

impl<K: Eq, V> Inner<K, V> {
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Removes every entry with hash `h` that `pid` holds (its owner exited); returns
    /// how many.
    fn remove_held(&self, h: u64, pid: Pid) -> usize
    where
        K: Clone,
        V: Clone,
    {
        let mut shard = self.shards.write(h);
        let mut gone = Vec::new();
        if shard.map.get(&h).is_some_and(|s| s.pid == pid) {
            gone.extend(shard.map.remove(&h));
        }
        if !shard.overflow.is_empty() {
            let (mine, rest) = std::mem::take(&mut shard.overflow)
                .into_iter()
                .partition(|(oh, s)| *oh == h && s.pid == pid);
            shard.overflow = rest;
            gone.extend(mine.into_iter().map(|(_, s): (u64, Slot<K, V>)| s));
        }
        for slot in &gone {
            self.listeners.tell(|| RegistryEvent::Unregistered {
                key: slot.key.clone(),
                pid,
                exited: true,
            });
        }
        drop(shard);
        gone.len()
    }
}

impl<K, V> ExitHook for Inner<K, V>
where
    K: Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    fn on_exit(&self, pid: Pid, tokens: Vec<u64>) {
        for h in tokens {
            self.remove_held(h, pid);
        }
    }
}
