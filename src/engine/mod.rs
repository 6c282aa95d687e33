//! The discrete-event engine: simulated time, the event queue and random streams (and a fast
//! hasher for maps keyed by ids, a list that keeps its first element in place).
//!
//! It knows nothing about mail. Its whole surface is `now`, `schedule`, `pop` and the
//! per-purpose random streams, so that models built on it stay readable (the SimPy lesson)
//! and runs stay reproducible on any machine and any thread count.

pub mod hash;
pub mod one_or_many;
pub mod queue;
pub mod rng;
pub mod time;

pub use queue::EventQueue;
pub use rng::{RngStreams, SimRng};
pub use time::{SECOND, Time};
