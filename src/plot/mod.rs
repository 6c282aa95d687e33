//! Charts of a run's results (PNG and SVG with an embedded font).

pub mod chart;
pub mod queues;
pub mod sweep;
