//! Cheap hashing for keys that are already well spread: pids (sequential numbers) and the
//! registry's own SipHash values. Not for keys a caller chooses.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiplies the one `u64` it is given by an odd constant (Fibonacci hashing), so that
/// both the low bits (the bucket) and the high bits (hashbrown's tag) vary.
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this; fold anything else in, for safety.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type BuildU64 = BuildHasherDefault<U64Hasher>;

/// Keeps each shard of a sharded structure on its own cache lines, so that threads working
/// on different shards do not slow each other down.
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How many shards a sharded registry has.
const SHARDS: usize = 64;

/// A registry's shards, each behind its own lock on its own cache lines, picked by the
/// top bits of a key's hash (the map inside a shard spreads the rest). Shared by the
/// unique registry and the groups, so both shard the same way.
pub(crate) struct Shards<T>(Box<[Padded<parking_lot::RwLock<T>>]>);

impl<T> Shards<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Shards(
            (0..SHARDS)
                .map(|_| Padded(parking_lot::RwLock::new(make())))
                .collect(),
        )
    }

    /// The shard of hash `h`.
    pub(crate) fn of(&self, h: u64) -> &parking_lot::RwLock<T> {
        &self.0[(h >> 58) as usize % SHARDS]
    }

    /// Every shard, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &parking_lot::RwLock<T>> {
        self.0.iter().map(|p| &p.0)
    }
}
