//! Sampling delays from the scenario's latency distributions, in whole microseconds.

use crate::engine::{SimRng, Time};
use crate::scenario::Latency;
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};

/// A latency distribution ready to sample.
#[derive(Clone, Copy, Debug)]
pub enum Sampler {
    Fixed(Time),
    Uniform { min: Time, max: Time },
    Exponential(Exp<f64>),
    LogNormal(LogNormal<f64>),
}

impl Sampler {
    pub fn new(latency: &Latency) -> Self {
        match *latency {
            Latency::Fixed(t) => Sampler::Fixed(t),
            Latency::Uniform { min, max } => Sampler::Uniform { min, max },
            Latency::Exponential { mean } if mean > 0 => match Exp::new(1.0 / mean as f64) {
                Ok(e) => Sampler::Exponential(e),
                Err(_) => Sampler::Fixed(mean),
            },
            Latency::Exponential { mean } => Sampler::Fixed(mean.max(0)),
            Latency::LogNormal { mean, sd } => {
                // Parameters of the underlying normal from the lognormal's mean and sd.
                let m = mean as f64;
                let v = (sd as f64) * (sd as f64);
                let sigma2 = (1.0 + v / (m * m)).ln();
                let mu = m.ln() - sigma2 / 2.0;
                match LogNormal::new(mu, sigma2.sqrt()) {
                    Ok(d) => Sampler::LogNormal(d),
                    Err(_) => Sampler::Fixed(mean),
                }
            }
        }
    }

    pub fn sample(&self, rng: &mut SimRng) -> Time {
        let t = match self {
            Sampler::Fixed(t) => return *t,
            Sampler::Uniform { min, max } if min == max => return *min,
            Sampler::Uniform { min, max } => return rng.random_range(*min..=*max),
            Sampler::Exponential(d) => d.sample(rng),
            Sampler::LogNormal(d) => d.sample(rng),
        };
        // Round to the microsecond; f64 → i64 saturates, so absurd draws cannot wrap.
        t.round() as Time
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RngStreams;

    #[test]
    fn lognormal_by_mean_and_sd_has_that_mean_and_sd() {
        let s = Sampler::new(&Latency::LogNormal {
            mean: 500_000,
            sd: 300_000,
        });
        let mut rng = RngStreams::new(3).stream("t", 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| s.sample(&mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!((mean - 500_000.0).abs() < 5_000.0, "mean {mean}");
        assert!(
            (var.sqrt() - 300_000.0).abs() < 10_000.0,
            "sd {}",
            var.sqrt()
        );
    }

    #[test]
    fn exponential_mean() {
        let s = Sampler::new(&Latency::Exponential { mean: 1_000_000 });
        let mut rng = RngStreams::new(4).stream("t", 0);
        let n = 200_000;
        let mean = (0..n).map(|_| s.sample(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((mean - 1_000_000.0).abs() < 10_000.0, "mean {mean}");
    }
}
