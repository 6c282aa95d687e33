//! Per-run, per-purpose random streams from a portable generator.
//!
//! PCG-XSL-RR 128/64 (`rand_pcg::Pcg64`) is a named algorithm whose output is fixed by its
//! definition, unlike `StdRng`. Each purpose (arrivals of stream 3, the remote of destination
//! 7, …) gets its own stream derived from (run seed, purpose, index) by SplitMix64 mixing, so
//! adding a feature that draws numbers does not reshuffle any other stream.

use rand_pcg::Pcg64;

/// The generator every model component draws from.
pub type SimRng = Pcg64;

/// Derives independent streams from one run seed.
#[derive(Clone, Copy, Debug)]
pub struct RngStreams {
    seed: u64,
}

/// SplitMix64's output function: a well-mixed, portable hash of one word.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a: a stable hash of a name (std's hasher may change between releases).
pub fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl RngStreams {
    pub fn new(seed: u64) -> Self {
        RngStreams { seed }
    }

    /// The stream for `purpose` number `index`.
    pub fn stream(&self, purpose: &str, index: u64) -> SimRng {
        let a = splitmix64(self.seed ^ fnv1a(purpose));
        let b = splitmix64(a ^ splitmix64(index));
        let state = (u128::from(a) << 64) | u128::from(b);
        let stream = (u128::from(splitmix64(b ^ 0x5851_F42D_4C95_7F2D)) << 64) | u128::from(index);
        Pcg64::new(state, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    const PINNED_FIRST_DRAW: u64 = 12_207_815_191_203_557_810;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let s = RngStreams::new(7);
        let a: u64 = s.stream("arrivals", 0).random();
        let a2: u64 = RngStreams::new(7).stream("arrivals", 0).random();
        let b: u64 = s.stream("arrivals", 1).random();
        let c: u64 = s.stream("remote", 0).random();
        let d: u64 = RngStreams::new(8).stream("arrivals", 0).random();
        assert_eq!(a, a2);
        assert!(a != b && a != c && a != d && b != c);
    }

    #[test]
    fn generator_output_is_pinned() {
        // The first draw of a fixed stream must never change: outputs of old scenario runs
        // are only reproducible while this holds.
        let first: u64 = RngStreams::new(1).stream("pin", 0).random();
        assert_eq!(first, PINNED_FIRST_DRAW);
    }
}
