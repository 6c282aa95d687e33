//! Means and 95 % confidence intervals over replications (Student's t), and exact integer
//! accumulators for queue-size curves so that the order in which parallel runs finish
//! never changes a digit of the output.

/// Two-sided 95 % quantiles of Student's t for 1–30 degrees of freedom (standard tables).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// t(0.975, df): the table up to 30, then the Cornish–Fisher expansion around the normal
/// quantile (error < 1e-4 from 30 degrees of freedom on).
pub fn t975(df: u64) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    if let Some(&t) = T975.get(df as usize - 1) {
        return t;
    }
    let z: f64 = 1.959_963_984_540_054;
    let n = df as f64;
    let z3 = z.powi(3);
    let z5 = z.powi(5);
    let z7 = z.powi(7);
    z + (z3 + z) / (4.0 * n)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * n * n)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * n * n * n)
}

/// Mean, sample standard deviation and 95 % CI of `values` (in the order given).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub n: u64,
    pub mean: f64,
    /// NaN for fewer than 2 values.
    pub sd: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Option<Estimate> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        if values.len() < 2 {
            return Some(Estimate {
                n: 1,
                mean,
                sd: f64::NAN,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
            });
        }
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        Some(Estimate::from_moments(values.len() as u64, mean, var))
    }

    /// From a count, mean and sample variance.
    pub fn from_moments(n: u64, mean: f64, var: f64) -> Estimate {
        let sd = var.max(0.0).sqrt();
        let half = if n >= 2 {
            t975(n - 1) * sd / (n as f64).sqrt()
        } else {
            f64::NAN
        };
        Estimate {
            n,
            mean,
            sd: if n >= 2 { sd } else { f64::NAN },
            ci_low: mean - half,
            ci_high: mean + half,
        }
    }

    /// From exact integer sums of `n` values and of their squares.
    pub fn from_sums(n: u64, sum: u128, sum_sq: u128) -> Estimate {
        let nf = n as f64;
        let mean = sum as f64 / nf;
        // n·Σx² − (Σx)² is exact in integers, so no cancellation.
        let var = if n >= 2 {
            let num = (n as u128)
                .saturating_mul(sum_sq)
                .saturating_sub(sum.saturating_mul(sum));
            num as f64 / (nf * (nf - 1.0))
        } else {
            0.0
        };
        Estimate::from_moments(n, mean, var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7, sd 2.13809;
        // half-width t(0.975, 7) × sd / √8 = 2.365 × 0.755929 = 1.78777.
        let e = Estimate::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).expect("values");
        assert_eq!(e.n, 8);
        assert!((e.mean - 5.0).abs() < 1e-12);
        assert!((e.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert!((e.ci_low - (5.0 - 1.787_772)).abs() < 1e-5, "{e:?}");
        assert!((e.ci_high - (5.0 + 1.787_772)).abs() < 1e-5, "{e:?}");
    }

    #[test]
    fn integer_sums_give_the_same_estimate() {
        let v = [2u64, 4, 4, 4, 5, 5, 7, 9];
        let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
        let sq: u128 = v.iter().map(|&x| u128::from(x) * u128::from(x)).sum();
        let a = Estimate::from_sums(8, sum, sq);
        let b = Estimate::of(&v.map(|x| x as f64)).expect("values");
        assert!((a.mean - b.mean).abs() < 1e-12 && (a.sd - b.sd).abs() < 1e-12);
    }

    #[test]
    fn t_quantiles_continue_smoothly_past_the_table() {
        assert_eq!(t975(30), 2.042);
        // Published: t(0.975, 40) = 2.021, 60: 2.000, 120: 1.980.
        assert!((t975(40) - 2.021).abs() < 5e-4);
        assert!((t975(60) - 2.000).abs() < 5e-4);
        assert!((t975(120) - 1.980).abs() < 5e-4);
        assert!(t975(0).is_nan());
    }
}
