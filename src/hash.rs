//! Hashing: of the keys callers choose (the registries' names), and of keys that are
//! already well spread (pids, and those names' own hashes).

use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a registry's keys: foldhash, seeded at random per registry.
///
/// A look-up is mostly hashing and locking, and SipHash (std's default) took 15 ns of a
/// 40 ns look-up where foldhash takes one or two. The random seed per registry defeats
/// precomputed collisions; like any fast hash it does not claim to resist an attacker who
/// can time look-ups to recover the seed. Keys with equal 64-bit hashes are still
/// correct (kept apart, searched linearly), only slower.
pub(crate) type KeyHasher = foldhash::quality::RandomState;

/// For keys that are already hashes or sequential numbers. Multiplies the one `u64` it is given by an odd constant (Fibonacci hashing), so that
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
