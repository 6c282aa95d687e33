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
        /// Also write a synthetic mail.log (Postfix's own line format) to this file.
        #[arg(long, value_name = "FILE")]
        maillog: Option<PathBuf>,
        /// Wall-clock date of simulated time 0 in the mail.log, YYYY-MM-DDTHH:MM:SS (UTC).
        #[arg(long, value_name = "DATE", default_value = "2026-03-02T08:00:00")]
        start_date: String,
        /// In the mail.log, also show each deferred-queue scan as qmgr's verbose logging
        /// does (`qmgr_scan_start: start deferred queue scan`).
        #[arg(long)]
        log_scans: bool,
        /// Also write qshape.csv: qshape's table of the deferred and the incoming+active
        /// queues at every sample.
        #[arg(long)]
        qshape: bool,
        /// Stop with an error (exit code 1) after N simulated events; no results are written.
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
        /// Run even when the memory estimate exceeds 8 GiB.
        #[arg(long)]
        force: bool,
    },
    /// Run a scenario many times: replications and parameter sweeps, in parallel.
    ///
    /// Writes runs.csv (one row per run), points.csv (mean, sd, 95 % CI per point),
    /// series.csv (queue curves with CI), sweep-state.json and charts.
    Sweep {
        /// The scenario file (TOML); its `[sweep]` table is read too.
        scenario: Option<PathBuf>,
        /// A value to sweep: NAME=V1,V2,… (a [postfix] parameter, or a path such as
        /// traffic.0.rate, destination.0.latency, fault.0.for). Repeat for a Cartesian product.
        #[arg(long = "set", value_name = "NAME=V1,V2")]
        set: Vec<String>,
        /// Runs per point (default: the [sweep] table's, or 1).
        #[arg(long)]
        replications: Option<u32>,
        /// Worker threads (default: all cores). The output does not depend on it.
        #[arg(long)]
        jobs: Option<usize>,
        /// Output folder (default: results/<scenario name>-sweep/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also keep each run's summary.json and queues.csv under runs/.
        #[arg(long)]
        keep_runs: bool,
        /// Run only slice K of N (K from 1), for several machines; combine with `merge`.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Do not draw charts.
        #[arg(long)]
        no_plots: bool,
        /// Continue the interrupted sweep in DIR (its sweep-checkpoint.json), with the same
        /// scenario and settings; the files come out as if it had never stopped.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["scenario", "set", "replications", "shard", "out"])]
        resume: Option<PathBuf>,
        /// Behave as if interrupted once this many runs are done (tests of --resume).
        #[arg(long, hide = true, value_name = "N")]
        stop_after_runs: Option<u64>,
    },
    /// Combine the folders of sweep shards into the files one sweep would have written.
    Merge {
        /// Shard folders (each with a sweep-state.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Do not draw charts.
        #[arg(long)]
        no_plots: bool,
    },
    /// Redraw the charts of a run or sweep folder from the files already written.
    Plot { dir: PathBuf },
    /// Print the queue at simulated time --at the way `postqueue -p` (mailq) does.
    Mailq {
        scenario: PathBuf,
        /// Simulated time, e.g. 90m or 2h30m.
        #[arg(long)]
        at: String,
        /// One JSON object per queue file, as `postqueue -j`.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        seed: Option<u64>,
        /// Wall-clock date of simulated time 0, YYYY-MM-DDTHH:MM:SS (UTC).
        #[arg(long, value_name = "DATE", default_value = "2026-03-02T08:00:00")]
        start_date: String,
    },
    /// Print qshape's table of the queue at simulated time --at: pending recipients per
    /// domain by age (5, 10, 20 … 1280+ minutes).
    Qshape {
        scenario: PathBuf,
        #[arg(long)]
        at: String,
        /// Count senders (one per message) instead of recipient domains, as `qshape -s`.
        #[arg(long)]
        sender: bool,
        #[arg(long)]
        seed: Option<u64>,
        /// Queues to count (default: incoming active), e.g. deferred.
        queues: Vec<String>,
    },
    /// Tell one message's life: every activation, attempt and reply, the rule that decided
    /// its next step, and where its time went.
    Explain {
        scenario: PathBuf,
        /// The message id: the message_id column of deliveries.csv (ids count from 1; queue
        /// files a content filter re-injects and notices take ids from the same counter).
        #[arg(long)]
        message: u64,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Check a scenario file without running it.
    #[command(after_help = EXIT_CODES)]
    Check { scenario: PathBuf },
    /// Compare a scenario's simulation with a trace of it recorded on a real Postfix
    /// (validation/record.py): final counts, drain time, queue curves, attempts per recipient.
    /// Writes fidelity.png and fidelity.svg (real and simulated queues on one chart).
    #[command(after_help = EXIT_CODES)]
    Compare {
        /// The scenario file the trace was recorded from.
        scenario: PathBuf,
        /// The trace's folder (queues.csv, deliveries.csv, meta.json).
        #[arg(long)]
        real: PathBuf,
        /// Folder for the chart (default: results/<scenario name>-fidelity/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not draw the chart.
        #[arg(long)]
        no_plots: bool,
    },
    /// Measure simulation speed and memory (BENCHMARKS.md has the figures and commands).
    ///
    /// An event is one pop from the event queue. Wall-clock medians depend on the machine and
    /// its load; nothing here is a pass/fail test.
    Bench {
        /// What to measure: model (the simulation alone), engine (schedule/pop), run (all of
        /// `mailsim run`, with and without deliveries.csv), sweep (1 vs 2 threads), memory
        /// (peak RSS of 10 M-message runs).
        #[arg(value_enum, default_value_t = BenchWhat::Model)]
        what: BenchWhat,
        /// Messages in the built-in reference model [default: 1000000; sweep: 200000 per
        /// run; memory: 10000000].
        #[arg(long)]
        messages: Option<u64>,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        /// A scenario to time instead of the built-in reference model (model, run, sweep).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Pops per queue size (engine).
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        /// Queue sizes (engine) [default: 100, 10000, 1000000].
        #[arg(long, value_delimiter = ',')]
        pending: Vec<usize>,
        /// Runs in the sweep (sweep).
        #[arg(long, default_value_t = 8)]
        replications: u32,
        /// Measure `mailsim run` rather than the model alone (memory).
        #[arg(long)]
        full: bool,
        /// Internal: run one memory case in this process and print its figures.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhat {
    Model,
    Engine,
    Run,
    Sweep,
    Memory,
}
