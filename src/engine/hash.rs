//! A fast, deterministic hasher for maps keyed by small integers (message ids, slot
//! numbers).
//!
//! std's default SipHash resists hash flooding, which a simulator's own ids never attempt,
//! and took a seventh of the instructions of a `mailsim run` in the delay attribution's
//! maps (see BENCHMARKS.md). This is the multiply-rotate scheme of rustc's FxHash; it is
//! keyed by nothing, so the same keys land in the same buckets on every run (map iteration
//! order is still not something output may depend on).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x517c_c1b7_2722_0a95;

#[derive(Clone, Copy, Default)]
pub struct IdHasher {
    hash: u64,
}

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_find_what_they_hold() {
        let mut m: IdMap<(u64, u32), u64> = IdMap::default();
        for id in 0..10_000u64 {
            m.insert((id, (id % 7) as u32), id * 3);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&(4_321, 2)), Some(&12_963));
        assert_eq!(m.get(&(4_321, 3)), None);
    }

    #[test]
    fn distinct_words_hash_apart() {
        let hash = |v: u64| {
            let mut h = IdHasher::default();
            h.write_u64(v);
            h.finish()
        };
        assert_ne!(hash(1), hash(2));
        // Sequential ids must not share their low bits (the bucket index).
        let low: IdSet<u64> = (0..1024).map(|v| hash(v) & 1023).collect();
        assert!(low.len() > 600, "{} distinct buckets", low.len());
    }
}
