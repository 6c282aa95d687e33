//! Arrival streams: when messages arrive and to whom they are addressed.
//!
//! Each stream has its own random stream, so adding a stream or a destination does not
//! change the arrivals of the others.

use crate::engine::{SECOND, SimRng, Time};
use crate::scenario::{ArrivalProcess, SizeDist, TrafficStream};
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};

pub struct Stream {
    pub spec: TrafficStream,
    rng: SimRng,
    emitted: u64,
    /// Cumulative weights for choosing a destination per recipient.
    cumulative: Vec<f64>,
    total_weight: f64,
    interarrival: Option<Exp<f64>>,
    sizes: SizeSampler,
    /// Sizes have their own stream so a size distribution does not move the arrivals.
    size_rng: SimRng,
}

/// Message sizes in bytes.
enum SizeSampler {
    Fixed(u64),
    Uniform(u64, u64),
    Exponential(Exp<f64>),
    LogNormal(LogNormal<f64>),
}

impl SizeSampler {
    fn new(dist: SizeDist) -> Self {
        match dist {
            SizeDist::Fixed(n) => SizeSampler::Fixed(n),
            SizeDist::Uniform { min, max } => SizeSampler::Uniform(min, max),
            SizeDist::Exponential { mean } => match Exp::new(1.0 / mean.max(1) as f64) {
                Ok(e) => SizeSampler::Exponential(e),
                Err(_) => SizeSampler::Fixed(mean),
            },
            SizeDist::LogNormal { mean, sd } => {
                let m = mean.max(1) as f64;
                let v = (sd as f64) * (sd as f64);
                let sigma2 = (1.0 + v / (m * m)).ln();
                match LogNormal::new(m.ln() - sigma2 / 2.0, sigma2.sqrt()) {
                    Ok(d) => SizeSampler::LogNormal(d),
                    Err(_) => SizeSampler::Fixed(mean),
                }
            }
        }
    }

    fn sample(&self, rng: &mut SimRng) -> u64 {
        match self {
            SizeSampler::Fixed(n) => *n,
            SizeSampler::Uniform(a, b) => rng.random_range(*a..=*b),
            // `as` saturates: a huge draw becomes u64::MAX, never wraps.
            SizeSampler::Exponential(e) => e.sample(rng).round() as u64,
            SizeSampler::LogNormal(d) => d.sample(rng).round() as u64,
        }
    }
}

impl Stream {
    pub fn new(spec: TrafficStream, rng: SimRng, size_rng: SimRng) -> Self {
        let mut acc = 0.0;
        let cumulative = spec
            .to
            .iter()
            .map(|(_, w)| {
                acc += w;
                acc
            })
            .collect();
        let interarrival = match spec.arrivals {
            ArrivalProcess::Poisson => Exp::new(spec.rate).ok(),
            _ => None,
        };
        Stream {
            sizes: SizeSampler::new(spec.size),
            spec,
            rng,
            emitted: 0,
            cumulative,
            total_weight: acc,
            interarrival,
            size_rng,
        }
    }

    /// The size of the next message.
    pub fn draw_size(&mut self) -> u64 {
        self.sizes.sample(&mut self.size_rng)
    }

    /// Time of the first arrival, if the stream produces any.
    pub fn first(&mut self) -> Option<Time> {
        let t = match self.spec.arrivals {
            ArrivalProcess::Burst | ArrivalProcess::Uniform => self.spec.start,
            ArrivalProcess::Poisson => self.spec.start + self.gap(),
        };
        self.admit(self.replayed().unwrap_or(t))
    }

    /// The next replayed instant. The draws are made all the same, so that the destinations
    /// picked from the same random stream stay those of the run that was recorded.
    fn replayed(&self) -> Option<Time> {
        let times = self.spec.replay.as_ref()?;
        Some(
            times
                .get(self.emitted as usize)
                .copied()
                .unwrap_or(Time::MAX),
        )
    }

    /// Records one arrival at `now` and returns the time of the next one.
    pub fn next_after(&mut self, now: Time) -> Option<Time> {
        self.emitted += 1;
        let t = match self.spec.arrivals {
            ArrivalProcess::Burst => now,
            ArrivalProcess::Uniform => {
                // Exact spacing from the start, so rounding does not drift.
                let offset = (self.emitted as f64 * SECOND as f64 / self.spec.rate).round() as Time;
                self.spec.start.saturating_add(offset)
            }
            ArrivalProcess::Poisson => now + self.gap(),
        };
        self.admit(self.replayed().map_or(t, |r| r.max(now)))
    }

    fn admit(&self, t: Time) -> Option<Time> {
        if t == Time::MAX {
            return None; // a replay that ran out
        }
        if self
            .spec
            .messages
            .is_some_and(|limit| self.emitted >= limit)
        {
            return None;
        }
        match self.spec.stop {
            Some(stop) if t >= stop => None,
            _ => Some(t),
        }
    }

    fn gap(&mut self) -> Time {
        match &self.interarrival {
            Some(d) => {
                let s: f64 = d.sample(&mut self.rng);
                ((s * SECOND as f64).round() as Time).max(0)
            }
            None => 0,
        }
    }

    /// The destination of one recipient.
    pub fn pick_destination(&mut self) -> usize {
        if self.spec.to.len() == 1 {
            return self.spec.to[0].0;
        }
        let u: f64 = self.rng.random::<f64>() * self.total_weight;
        let i = self.cumulative.partition_point(|&c| c <= u);
        self.spec.to[i.min(self.spec.to.len() - 1)].0
    }
}
