//! Command-line interface (clap).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Deterministic discrete-event simulator of a Postfix mail queue.
///
/// Exit codes: 0 success, 1 the run failed (I/O error, broken invariant), 2 bad input
/// (scenario file or command line).
#[derive(Parser, Debug)]
#[command(name = "mailsim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario and write queues.csv, deliveries.csv, summary.json and queues.png/svg.
    Run {
        /// The scenario file (TOML), e.g. scenarios/baseline.toml.
        scenario: PathBuf,
        /// Random seed (overrides the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Output folder (default: results/<scenario name>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not write deliveries.csv (one row per recipient).
        #[arg(long)]
        no_deliveries: bool,
        /// Do not draw queues.png / queues.svg.
        #[arg(long)]
        no_plots: bool,
    },
    /// Check a scenario file without running it.
    Check { scenario: PathBuf },
    /// Measure simulation speed (events per second) on a generated large run.
    Bench {
        /// Messages in the benchmark run.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        /// A scenario to time instead of the built-in one.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}
