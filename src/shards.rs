//! The registries' storage: a table cut into shards, each behind a lock that readers on
//! different threads take without touching each other's cache lines.
//!
//! # Why not one `RwLock` per shard
//!
//! Taking a read lock writes to the lock's word. Two threads looking up names spread over
//! every shard each write, within a few look-ups, to nearly every shard's word the other
//! wrote last: each look-up then waits for a cache line to come over from the other core,
//! and two threads looking up were slower together than one alone.
//!
//! # The protocol
//!
//! Each shard has one lock word *per reader slot* (a "big-reader" lock). A thread gets a
//! slot the first time it reads (round robin, so the first threads to read get distinct
//! slots); the slot's words for all shards lie together, on lines no other slot touches.
//!
//! - A reader takes its own slot's word for the shard, shared.
//! - A writer takes the shard's word in *every* slot, exclusive, in slot order (so two
//!   writers cannot deadlock), and releases them all when done.
//!
//! So a writer excludes every reader and every other writer, and readers share. Writes
//! cost one lock per slot instead of one; the registries write far less than they read.
//! The number of slots is the machine's parallelism, at most eight.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::Lazy;
use parking_lot::lock_api::RawRwLock as _;
use parking_lot::RawRwLock;

use crate::hash::Padded;

/// How many shards a table has.
const SHARDS: usize = 64;

/// How many reader slots each shard has.
static SLOTS: Lazy<usize> = Lazy::new(|| {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
});

/// Gives each thread its reader slot, round robin.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's reader slot (below `SLOTS`, so a look-up divides nothing).
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % *SLOTS;
}

/// A table's shards, picked by the top bits of a key's hash (the map inside a shard
/// spreads the rest). Shared by the unique registry and the groups, so both shard the
/// same way.
pub(crate) struct Shards<T> {
    data: Box<[Padded<UnsafeCell<T>>]>,
    /// `locks[slot][shard]`: a slot's words on lines of their own.
    locks: Box<[Padded<[RawRwLock; SHARDS]>]>,
}

// SAFETY: the data is only reached through the guards below, which give `&T` to readers
// holding a shared lock and `&mut T` to a writer holding every slot's lock exclusively:
// the same rules as `RwLock<T>`, so the same bounds.
unsafe impl<T: Send> Send for Shards<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shards<T> {}

impl<T> Shards<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Shards {
            data: (0..SHARDS)
                .map(|_| Padded(UnsafeCell::new(make())))
                .collect(),
            locks: (0..*SLOTS)
                .map(|_| Padded(std::array::from_fn(|_| RawRwLock::INIT)))
                .collect(),
        }
    }

    fn index(h: u64) -> usize {
        (h >> 58) as usize % SHARDS
    }

    /// Shard `i`, for reading.
    fn read_at(&self, i: usize) -> ReadGuard<'_, T> {
        let lock = &self.locks[SLOT.with(|s| *s)].0[i];
        lock.lock_shared();
        ReadGuard {
            lock,
            // SAFETY: we hold a shared lock on the shard, so no writer holds it (a writer
            // holds every slot's word exclusively, this one included).
            data: unsafe { &*self.data[i].0.get() },
        }
    }

    /// Shard `i`, for writing.
    fn write_at(&self, i: usize) -> WriteGuard<'_, T> {
        for slot in self.locks.iter() {
            slot.0[i].lock_exclusive();
        }
        WriteGuard { shards: self, i }
    }

    /// The shard of hash `h`, for reading.
    pub(crate) fn read(&self, h: u64) -> ReadGuard<'_, T> {
        self.read_at(Self::index(h))
    }

    /// The shard of hash `h`, for writing.
    pub(crate) fn write(&self, h: u64) -> WriteGuard<'_, T> {
        self.write_at(Self::index(h))
    }

    /// Every shard in order, each read-locked while the caller looks at it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ReadGuard<'_, T>> {
        (0..SHARDS).map(move |i| self.read_at(i))
    }
}

/// A shard read-locked through the calling thread's slot.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a RawRwLock,
    data: &'a T,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard took the shared lock in `read_at` and releases it once.
        unsafe { self.lock.unlock_shared() }
    }
}

/// A shard write-locked in every slot.
pub(crate) struct WriteGuard<'a, T> {
    shards: &'a Shards<T>,
    i: usize,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the shard exclusively (every slot's word).
        unsafe { &*self.shards.data[self.i].0.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference from the guard.
        unsafe { &mut *self.shards.data[self.i].0.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        for slot in self.shards.locks.iter() {
            // SAFETY: `write_at` took every slot's word for shard `i` exclusively; each is
            // released once.
            unsafe { slot.0[self.i].unlock_exclusive() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn writers_exclude_readers_on_every_slot() {
        // Many threads (more than there are slots) bump two counters under the write
        // lock and check, under read locks, that a reader never sees them apart.
        let shards = Arc::new(Shards::new(|| (0u64, 0u64)));
        let threads: Vec<_> = (0..6)
            .map(|n| {
                let shards = shards.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        if n % 2 == 0 {
                            let mut w = shards.write(h);
                            w.0 += 1;
                            for _ in 0..50 {
                                std::hint::black_box(&mut *w);
                            }
                            w.1 += 1;
                        } else {
                            let r = shards.read(h);
                            assert_eq!(r.0, r.1, "a reader saw a write half done");
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let total: u64 = shards.iter().map(|s| s.0).sum();
        assert_eq!(total, 3 * 20_000);
    }
}
