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
