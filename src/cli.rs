//! Command-line interface (clap).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Deterministic discrete-event simulator of a Postfix mail queue.
#[derive(Parser, Debug)]
#[command(name = "mailsim", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Shown by `--help` (and the subcommands' help).
const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the run failed: an I/O error, a broken invariant (conservation), --max-events exceeded
  2    bad input: the scenario file or the command line (one error line: file:line: `key`: message),
       or a run refused by the memory estimate (use --force)
  130  interrupted by SIGINT (Ctrl-C) or SIGTERM: no file of the run is kept; the output folder
       holds the earlier complete run, if any (listed in its `complete` file)

Broken scenarios and the error each gets: tests/bad-scenarios/.";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario and write queues.csv, deliveries.csv, summary.json and queues.png/svg.
    ///
    /// The files are written under temporary names and put in place together when the run
    /// is complete, with a `complete` file listing them.
    #[command(after_help = EXIT_CODES)]
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
        /// Stop with an error (exit code 1) after N simulated events; no results are written.
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
        /// Run even when the memory estimate exceeds 8 GiB.
        #[arg(long)]
        force: bool,
    },
    /// Check a scenario file without running it.
    #[command(after_help = EXIT_CODES)]
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
