//! Registries: names mapped to live processes, cleaned up synchronously when they exit.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};

use crate::error::RegistryError;
use crate::pid::{self, ExitHook, Pid};
use crate::wait::{self, Timeout};

const SHARDS: usize = 64;

/// A map from unique keys to live processes, each entry carrying a value.
///
/// Every entry is owned by a process. When the owner exits, its entries are removed *in
/// its own thread, before* its exit is reported to anyone — its supervisor, its monitors,
/// a `join` — so whoever waited for the exit finds the registry already clean and never
/// needs to poll. (Elixir's `Registry` cleans up asynchronously; this one does not.)
///
/// A `Registry` is a handle: clones share the same entries.
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
}

/// One shard of entries: key to holder and value.
type Shard<K, V> = RwLock<HashMap<K, (Pid, V)>>;
/// One shard of the owners index: holder to the keys it holds.
type OwnerShard<K> = Mutex<HashMap<Pid, Vec<K>>>;

struct Inner<K, V> {
    hasher: RandomState,
    shards: Box<[Shard<K, V>]>,
    /// The keys each owner holds, so an exit removes them without scanning.
    owners: Box<[OwnerShard<K>]>,
    count: AtomicUsize,
}

impl<K, V> Clone for Registry<K, V> {
    fn clone(&self) -> Self {
        Registry {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Registry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("count", &self.inner.count.load(Ordering::Relaxed))
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
        Registry {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
                owners: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                count: AtomicUsize::new(0),
            }),
        }
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
    /// registration wins.
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
        let weak: Weak<dyn ExitHook> = Arc::downgrade(inner) as Weak<Inner<K, V>>;
        if !pid::add_exit_hook(pid, pid::hook_key(inner), weak) {
            return Err(RegistryError::NotAlive(pid));
        }
        let shard = inner.shard_of(&key);
        {
            let mut map = inner.shards[shard].write();
            if let Some((holder, _)) = map.get(&key) {
                if *holder == pid || holder.is_alive() {
                    return Err(RegistryError::AlreadyRegistered(*holder));
                }
                // A dead holder whose clean-up has not reached this key yet: replace it.
                inner.count.fetch_sub(1, Ordering::Relaxed);
            }
            map.insert(key.clone(), (pid, value));
            inner.count.fetch_add(1, Ordering::Relaxed);
        }
        inner.owners[owner_shard(pid)]
            .lock()
            .entry(pid)
            .or_default()
            .push(key.clone());
        // If the owner exited meanwhile, its clean-up may have run before we recorded the
        // key: undo, so no entry outlives its owner.
        if !pid.is_alive() {
            inner.remove_if_held_by(&key, pid);
            return Err(RegistryError::NotAlive(pid));
        }
        Ok(())
    }

    /// The holder of `key` and its value, if registered.
    pub fn lookup<Q>(&self, key: &Q) -> Option<(Pid, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = &self.inner;
        inner.shards[inner.shard_of(key)].read().get(key).cloned()
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
        let removed = {
            let mut map = inner.shards[inner.shard_of(key)].write();
            match map.get(key) {
                Some((holder, _)) if *holder == pid => map.remove(key),
                _ => None,
            }
        };
        let (_, value) = removed?;
        inner.count.fetch_sub(1, Ordering::Relaxed);
        let mut owners = inner.owners[owner_shard(pid)].lock();
        if let Some(keys) = owners.get_mut(&pid) {
            if let Some(i) = keys.iter().position(|k| k.borrow() == key) {
                keys.swap_remove(i);
            }
            if keys.is_empty() {
                owners.remove(&pid);
            }
        }
        Some(value)
    }

    /// The keys `pid` holds.
    pub fn keys(&self, pid: Pid) -> Vec<K> {
        self.inner.owners[owner_shard(pid)]
            .lock()
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }

    /// How many keys are registered.
    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
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
            self.lookup(key).is_none().then_some(())
        })
    }
}

fn owner_shard(pid: Pid) -> usize {
    (pid.as_u64() as usize) % SHARDS
}

impl<K: Hash + Eq, V> Inner<K, V> {
    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    fn remove_if_held_by(&self, key: &K, pid: Pid) {
        let mut map = self.shards[self.shard_of(key)].write();
        if map.get(key).is_some_and(|(holder, _)| *holder == pid) {
            map.remove(key);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<K, V> ExitHook for Inner<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Send + Sync,
{
    fn on_exit(&self, pid: Pid) {
        let keys = self.owners[owner_shard(pid)].lock().remove(&pid);
        for key in keys.into_iter().flatten() {
            self.remove_if_held_by(&key, pid);
        }
    }
}

/// A value in the global registry: anything `Send + Sync`, looked up by type.
pub type AnyValue = Arc<dyn Any + Send + Sync>;

static GLOBAL: Lazy<Registry<String, AnyValue>> = Lazy::new(Registry::new);

/// The global registry: names to any `Send + Sync` value, with typed look-up.
///
/// Named supervisors register their handles here, so a
/// [`SupervisorRef`](crate::SupervisorRef) can be found by name; the name is released when
/// the supervisor exits.
///
/// # Examples
///
/// ```
/// use steadfast::registry;
///
/// registry().register_value("config-version", 3u32).unwrap();
/// assert_eq!(registry().lookup_as::<u32>("config-version").map(|(_, v)| v), Some(3));
/// // A look-up with the wrong type finds nothing; it never panics.
/// assert!(registry().lookup_as::<String>("config-version").is_none());
/// registry().unregister("config-version");
/// ```
pub fn registry() -> &'static Registry<String, AnyValue> {
    &GLOBAL
}

impl Registry<String, AnyValue> {
    /// Registers `name` to the calling process with a value of any type.
    ///
    /// # Errors
    ///
    /// As [`register`](Registry::register).
    pub fn register_value<T: Any + Send + Sync>(
        &self,
        name: impl Into<String>,
        value: T,
    ) -> Result<(), RegistryError> {
        self.register(name.into(), Arc::new(value))
    }

    /// Registers `name` on behalf of `pid` with a value of any type.
    ///
    /// # Errors
    ///
    /// As [`register_for`](Registry::register_for).
    pub fn register_value_for<T: Any + Send + Sync>(
        &self,
        pid: Pid,
        name: impl Into<String>,
        value: T,
    ) -> Result<(), RegistryError> {
        self.register_for(pid, name.into(), Arc::new(value))
    }

    /// The holder of `name` and its value, if registered with a value of type `T`.
    ///
    /// A name registered with another type gives `None`.
    pub fn lookup_as<T: Any + Clone>(&self, name: &str) -> Option<(Pid, T)> {
        let (pid, value) = self.lookup(name)?;
        value.downcast_ref::<T>().map(|v| (pid, v.clone()))
    }
}
