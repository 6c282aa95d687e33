//! The `mailsim` binary: parses the command line, calls the library, maps errors to exit
//! codes (0 ok, 1 run failed, 2 bad input, 130 interrupted).

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use mailsim::error::Error;
use mailsim::{bench, guard, run, scenario};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn execute(command: Command) -> Result<(), Error> {
    match command {
        Command::Run {
            scenario: path,
            seed,
            out,
            no_deliveries,
            no_plots,
            max_events,
            force,
        } => {
            let sc = scenario::load(&path)?;
            for w in &sc.warnings {
                eprintln!("warning: {w}");
            }
            if !force {
                guard::check_memory(&sc, &path.display().to_string())?;
            }
            guard::install_interrupt_handler()?;
            let started = Instant::now();
            let opts = run::RunOptions {
                seed,
                out_dir: out,
                deliveries: !no_deliveries,
                plots: !no_plots,
                limits: guard::Limits { max_events },
            };
            let (summary, dir) = run::run_to_dir(&sc, &opts)?;
            let wall = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} messages (+{} notices), recipients: {} sent, {} bounced, {} expired, {} still queued; drain time {}; {} events in {:.2} s wall ({:.1} M events/s)",
                sc.name,
                summary.messages,
                summary.notices,
                summary.sent,
                summary.bounced,
                summary.expired,
                summary.queued_at_end,
                summary
                    .drain_time_s
                    .map(|d| format!("{d} s"))
                    .unwrap_or_else(|| "n/a".into()),
                summary.events,
                wall,
                summary.events as f64 / wall.max(1e-9) / 1e6
            );
            eprintln!("results in {}", dir.display());
            if guard::interrupted() {
                eprintln!(
                    "(an interrupt came while the results were put in place; they are complete)"
                );
            }
            Ok(())
        }
        Command::Check { scenario: path } => {
            let sc = scenario::load(&path)?;
            for w in &sc.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} traffic stream(s), {} destination(s))",
                path.display(),
                sc.traffic.len(),
                sc.destinations.len() - 1
            );
            Ok(())
        }
        Command::Bench {
            messages,
            repeat,
            scenario: path,
        } => {
            let sc = match path {
                Some(p) => scenario::load(&p)?,
                None => bench::reference_scenario(messages)?,
            };
            guard::install_interrupt_handler()?;
            let report = bench::measure(&sc, repeat.max(1))?;
            println!("{report}");
            Ok(())
        }
    }
}
