//! A log-linear histogram of delays: bounded memory however many recipients a run has,
//! with a relative error below 1/1024 (values under 2048 µs are exact). Percentiles are
//! clamped to the exact minimum and maximum, so a run where every delay is the same reports
//! that value exactly.

use crate::engine::Time;

const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;

#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum: i128,
    min: Time,
    max: Time,
}

fn bucket(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // v in [2^exp, 2^(exp+1))
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    (2 * SUB + u64::from(exp - SUB_BITS - 1) * SUB + sub) as usize
}

/// The midpoint of a bucket's value range.
fn bucket_value(b: usize) -> u64 {
    let b = b as u64;
    if b < 2 * SUB {
        return b;
    }
    let k = b - 2 * SUB;
    let exp = k / SUB + u64::from(SUB_BITS) + 1;
    let sub = k % SUB;
    let shift = exp - u64::from(SUB_BITS);
    let low = (SUB + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, value: Time) {
        let v = value.max(0);
        let b = bucket(v as u64);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.n += 1;
        self.sum += i128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    pub fn max(&self) -> Option<Time> {
        (self.n > 0).then_some(self.max)
    }

    /// The `p`-quantile (0 < p ≤ 1): the smallest recorded value with at least p·n values at
    /// or below it, to the histogram's precision.
    pub fn quantile(&self, p: f64) -> Option<Time> {
        if self.n == 0 {
            return None;
        }
        let rank = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = bucket_value(b) as Time;
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_are_exact() {
        let mut h = Histogram::default();
        for _ in 0..10 {
            h.record(300_000_000);
        }
        assert_eq!(h.quantile(0.5), Some(300_000_000));
        assert_eq!(h.quantile(0.99), Some(300_000_000));
        assert_eq!(h.mean(), Some(300_000_000.0));
    }

    #[test]
    fn quantiles_within_relative_precision() {
        let mut h = Histogram::default();
        for v in 1..=100_000i64 {
            h.record(v * 1_000);
        }
        for (p, exact) in [
            (0.5, 50_000_000.0),
            (0.95, 95_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let q = h.quantile(p).expect("non-empty") as f64;
            assert!(
                (q - exact).abs() / exact < 1.0 / 1000.0,
                "p{p}: {q} vs {exact}"
            );
        }
        assert_eq!(h.max(), Some(100_000_000));
    }

    #[test]
    fn small_values_are_exact_and_buckets_are_monotone() {
        let mut last = 0;
        for v in [0u64, 1, 2047, 2048, 4095, 4096, 1 << 40] {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
        }
        let mut h = Histogram::default();
        h.record(7);
        h.record(9);
        assert_eq!(h.quantile(0.5), Some(7));
        assert_eq!(h.quantile(1.0), Some(9));
    }
}
