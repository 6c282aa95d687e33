//! A token bucket holding `n` tokens and refilled at `n` per `per`, kept in the generic cell
//! rate algorithm's form (one "theoretical arrival time") with every time scaled by `n`, so
//! the arithmetic is exact in integers whatever the rate.

use crate::engine::time::Time;

#[derive(Clone, Debug)]
pub struct TokenBucket {
    n: i128,
    per: i128,
    /// Theoretical arrival time, scaled by `n`.
    tat: i128,
}

impl TokenBucket {
    /// `n` (≥ 1) tokens per `per` (> 0), starting full.
    pub fn new(n: u64, per: Time) -> Self {
        TokenBucket {
            n: i128::from(n.max(1)),
            per: i128::from(per.max(1)),
            tat: i128::MIN / 4,
        }
    }

    /// Is a token available at `t`?
    pub fn available(&self, t: Time) -> bool {
        let burst_tolerance = (self.n - 1) * self.per;
        i128::from(t) * self.n >= self.tat - burst_tolerance
    }

    /// Takes a token at `t` if one is available.
    pub fn take(&mut self, t: Time) -> bool {
        if !self.available(t) {
            return false;
        }
        self.tat = self.tat.max(i128::from(t) * self.n) + self.per;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::time::SECOND;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refills_evenly() {
        let mut b = TokenBucket::new(3, 60 * SECOND);
        assert!(b.take(0));
        assert!(b.take(0));
        assert!(b.take(0));
        assert!(!b.take(0));
        // One token every 20 s.
        assert!(!b.take(20 * SECOND - 1));
        assert!(b.take(20 * SECOND));
        assert!(!b.take(20 * SECOND));
        // After a long pause the bucket is full again, not fuller.
        for _ in 0..3 {
            assert!(b.take(1000 * SECOND));
        }
        assert!(!b.take(1000 * SECOND));
    }

    #[test]
    fn a_sustained_rate_is_exact() {
        let mut b = TokenBucket::new(100, 60 * SECOND);
        // An offer every 100 ms for 6000 s; tokens come every 600 ms after the burst of 100.
        let taken = (0..60_000).filter(|i| b.take(i * 100 * 1000)).count();
        // floor(5999.9 s × 100 / 60 s) + 100.
        assert_eq!(taken, 100 + 10_000 - 1);
    }
}
