//! The `mailsim` binary: parses the command line, calls the library, maps errors to exit
//! codes (0 ok, 1 run failed, 2 bad input, 130 interrupted).

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use mailsim::error::Error;
use mailsim::{bench, guard, run, scenario, sweep};
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
            maillog,
            start_date,
            log_scans,
            qshape,
            max_events,
            force,
        } => {
            let log_start = mailsim::output::maillog::parse_start(&start_date).map_err(|m| {
                Error::Input(mailsim::error::InputError::new(
                    "command line",
                    None,
                    Some("--start-date"),
                    m,
                ))
            })?;
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
                maillog,
                log_start,
                log_scans,
                qshape,
                limits: guard::Limits { max_events },
                scenario_file: path.display().to_string(),
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
            if let Some(line) = &summary.headline {
                eprintln!("{line}");
            }
            eprintln!("results in {}", dir.display());
            if guard::interrupted() {
                eprintln!(
                    "(an interrupt came while the results were put in place; they are complete)"
                );
            }
            Ok(())
        }
        Command::Sweep {
            scenario: path,
            set,
            replications,
            jobs,
            out,
            keep_runs,
            shard,
            no_plots,
            resume,
            stop_after_runs,
        } => {
            // A resumed sweep replays the recipe saved in its checkpoint.
            let (recipe, done, dir) = match &resume {
                Some(dir) => {
                    let checkpoint = sweep::Checkpoint::read(dir)?;
                    (checkpoint.recipe, Some(checkpoint.state), Some(dir.clone()))
                }
                None => {
                    let Some(path) = &path else {
                        return Err(input_error(
                            "SCENARIO",
                            "give the scenario file, or --resume DIR for an interrupted sweep"
                                .into(),
                        ));
                    };
                    let label = path.display().to_string();
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        Error::Input(mailsim::error::InputError::new(
                            &label,
                            None,
                            None,
                            format!("cannot read the scenario file: {e}"),
                        ))
                    })?;
                    let shard = shard.as_deref().map(parse_shard).transpose().map_err(|m| {
                        Error::Input(mailsim::error::InputError::new(
                            &label,
                            None,
                            Some("--shard"),
                            m,
                        ))
                    })?;
                    let recipe = sweep::SweepRecipe {
                        scenario_file: label,
                        scenario_text: text,
                        sets: set.clone(),
                        replications,
                        shard,
                    };
                    (recipe, None, out.clone())
                }
            };
            let label = recipe.scenario_file.clone();
            let sets = recipe
                .sets
                .iter()
                .map(|a| sweep::parse_set(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| {
                    Error::Input(mailsim::error::InputError::new(
                        &label,
                        None,
                        Some("--set"),
                        m,
                    ))
                })?;
            if recipe.replications == Some(0) {
                return Err(Error::Input(mailsim::error::InputError::new(
                    &label,
                    None,
                    Some("--replications"),
                    "must be at least 1".into(),
                )));
            }
            let spec =
                sweep::SweepSpec::new(&recipe.scenario_text, &label, &sets, recipe.replications)?;
            for w in &spec.base_scenario.warnings {
                eprintln!("warning: {w}");
            }
            let dir = dir.unwrap_or_else(|| {
                std::path::Path::new("results").join(format!("{}-sweep", spec.base_scenario.name))
            });
            guard::install_interrupt_handler()?;
            let started = Instant::now();
            let shard = recipe.shard;
            let opts = sweep::SweepOptions {
                jobs,
                shard,
                keep_runs: keep_runs.then(|| dir.clone()),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                fingerprint: sweep::fingerprint(&recipe.scenario_text, &recipe.sets),
                stop_after_runs,
                checkpoint: Some((dir.clone(), recipe)),
                resume: done,
            };
            let state = sweep::run(&spec, &opts)?;
            state.write(&dir, !no_plots)?;
            // Complete: the checkpoint has served.
            let _ = std::fs::remove_file(dir.join(sweep::CHECKPOINT_FILE));
            eprintln!(
                "{}: {} points × {} replications = {} runs{} in {:.2} s wall; results in {}",
                spec.base_scenario.name,
                spec.point_count(),
                spec.replications,
                state.rows.len(),
                match shard {
                    Some((k, n)) => format!(" (shard {k}/{n})"),
                    None => String::new(),
                },
                started.elapsed().as_secs_f64(),
                dir.display()
            );
            Ok(())
        }
        Command::Merge {
            dirs,
            out,
            no_plots,
        } => {
            let parts = dirs
                .iter()
                .map(|d| sweep::SweepState::read(d))
                .collect::<Result<Vec<_>, _>>()?;
            let merged = sweep::SweepState::merge(parts).map_err(Error::Runtime)?;
            merged.write(&out, !no_plots)?;
            eprintln!("{} runs merged into {}", merged.rows.len(), out.display());
            Ok(())
        }
        Command::Compare {
            scenario: path,
            real,
            out,
            no_plots,
        } => {
            let sc = scenario::load(&path)?;
            let trace = mailsim::fidelity::Trace::load(&real)?;
            let cmp = mailsim::fidelity::compare(&sc, &trace)?;
            println!("{cmp}");
            if !no_plots {
                let dir = out.unwrap_or_else(|| {
                    std::path::Path::new("results").join(format!("{}-fidelity", sc.name))
                });
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io("cannot create the results folder", &dir, e))?;
                mailsim::plot::chart::write_line_chart(
                    &mailsim::fidelity::chart(&cmp),
                    &dir.join("fidelity.png"),
                    &dir.join("fidelity.svg"),
                )
                .map_err(|e| Error::Runtime(e.to_string()))?;
                eprintln!("chart in {}", dir.join("fidelity.png").display());
            }
            Ok(())
        }
        Command::Plot { dir } => {
            if dir.join(sweep::output::STATE_FILE).is_file() {
                let state = sweep::SweepState::read(&dir)?;
                mailsim::plot::sweep::write_sweep_charts(&state, &dir)?;
            } else {
                mailsim::plot::queues::replot_run(&dir)?;
            }
            eprintln!("charts redrawn in {}", dir.display());
            Ok(())
        }
        Command::Mailq {
            scenario: path,
            at,
            json,
            seed,
            start_date,
        } => {
            let start = mailsim::output::maillog::parse_start(&start_date)
                .map_err(|m| input_error("--start-date", m))?;
            let sc = scenario::load(&path)?;
            let at = parse_at(&at)?;
            let files = run::snapshot_at(&sc, seed.unwrap_or(sc.seed), at)?;
            let text = if json {
                mailsim::output::mailq::format_j(&files, start)
            } else {
                mailsim::output::mailq::format_p(&files, start)
            };
            print_out(&text);
            Ok(())
        }
        Command::Qshape {
            scenario: path,
            at,
            sender,
            seed,
            queues,
        } => {
            const QUEUES: [&str; 5] = ["maildrop", "incoming", "active", "deferred", "hold"];
            let mut chosen: Vec<&'static str> = Vec::new();
            for q in &queues {
                match QUEUES.iter().find(|n| **n == q.as_str()) {
                    Some(n) => chosen.push(n),
                    None => {
                        return Err(input_error(
                            "queue",
                            format!("`{q}` is not a queue (accepted: {})", QUEUES.join(", ")),
                        ));
                    }
                }
            }
            if chosen.is_empty() {
                chosen = vec!["incoming", "active"];
            }
            let sc = scenario::load(&path)?;
            let at = parse_at(&at)?;
            let files = run::snapshot_at(&sc, seed.unwrap_or(sc.seed), at)?;
            let rows = mailsim::output::qshape::table(&files, &chosen, sender, at);
            print_out(&mailsim::output::qshape::format(&rows));
            Ok(())
        }
        Command::Explain {
            scenario: path,
            message,
            seed,
        } => {
            let sc = scenario::load(&path)?;
            let seed = seed.unwrap_or(sc.seed);
            let mut explainer = mailsim::output::explain::Explainer::new(
                message,
                sc.postfix.clone(),
                sc.reconfigurations
                    .iter()
                    .map(|r| r.postfix.clone())
                    .collect(),
                run::qmgr_start_time(&sc, seed),
            );
            let report = run::simulate(
                &sc,
                seed,
                &mut explainer,
                &mut mailsim::output::queues::QueueSeries::default(),
            )?;
            match explainer.finish() {
                Ok(story) => {
                    print_out(&story);
                    Ok(())
                }
                Err(mailsim::output::explain::NoStory::FilterCopy { of }) => Err(input_error(
                    "--message",
                    format!(
                        "{message} is the queue file the content filter re-injected for message {of} (re-injected copies take ids from the same counter); `explain --message {of}` tells that message's story, both passes included"
                    ),
                )),
                Err(mailsim::output::explain::NoStory::Never) => Err(input_error(
                    "--message",
                    format!(
                        "message {message} never arrived in this run ({} messages and {} notices; ids are the message_id column of deliveries.csv, and queue files re-injected by a content filter take ids from the same counter)",
                        report.mta_totals.messages, report.mta_totals.notices
                    ),
                )),
            }
        }
        Command::Check { scenario: path } => {
            let sc = scenario::load(&path)?;
            // A [sweep] table is checked too: its names and every point it makes.
            if let Ok(text) = std::fs::read_to_string(&path) {
                let label = path.display().to_string();
                let spec = sweep::SweepSpec::new(&text, &label, &[], None)?;
                if !spec.axes.is_empty() {
                    for p in 0..spec.point_count() {
                        spec.point(p)?;
                    }
                }
            }
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
            what,
            messages,
            repeat,
            scenario: path,
            events,
            pending,
            replications,
            full,
            child,
        } => {
            use cli::BenchWhat;
            let messages = messages.unwrap_or(match what {
                BenchWhat::Sweep => 200_000,
                BenchWhat::Memory => 10_000_000,
                _ => 1_000_000,
            });
            if let Some(case) = child {
                println!("{}", bench::memory_child(&case, messages, full)?);
                return Ok(());
            }
            let (sc, text, label) = match &path {
                Some(p) => {
                    let label = p.display().to_string();
                    let text = std::fs::read_to_string(p).map_err(|e| {
                        Error::Input(mailsim::error::InputError::new(
                            &label,
                            None,
                            None,
                            format!("cannot read the scenario file: {e}"),
                        ))
                    })?;
                    (scenario::load(p)?, text, label)
                }
                None => (
                    bench::reference_scenario(messages)?,
                    bench::reference_text(messages, 20),
                    format!("the reference model with {messages} messages"),
                ),
            };
            guard::install_interrupt_handler()?;
            let repeat = repeat.max(1);
            match what {
                BenchWhat::Model => println!("{}", bench::measure(&sc, repeat)?),
                BenchWhat::Engine => {
                    let sizes = if pending.is_empty() {
                        vec![100, 10_000, 1_000_000]
                    } else {
                        pending
                    };
                    for pending in sizes {
                        let (median, runs) = bench::engine_hold(pending, events, repeat);
                        let runs: Vec<String> = runs.iter().map(|r| format!("{r:.3}")).collect();
                        println!(
                            "{pending:>9} pending: {events} schedule+pop pairs, median {median:.3} s [{}]: {:.1} M events/s",
                            runs.join(", "),
                            events as f64 / median / 1e6
                        );
                    }
                }
                BenchWhat::Run => println!("{}", bench::measure_run(&sc, repeat)?),
                BenchWhat::Sweep => println!(
                    "{}",
                    bench::measure_sweep(&text, &label, replications, repeat)?
                ),
                BenchWhat::Memory => {
                    let exe = std::env::current_exe().map_err(|e| {
                        Error::Runtime(format!("cannot find the mailsim executable: {e}"))
                    })?;
                    println!("{}", bench::measure_memory(&exe, messages, full)?);
                }
            }
            Ok(())
        }
    }
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{text}`: write K/N with 1 <= K <= N, e.g. --shard 2/8");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

fn input_error(key: &str, message: String) -> Error {
    Error::Input(mailsim::error::InputError::new(
        "command line",
        None,
        Some(key),
        message,
    ))
}

/// `--at`: a duration from the start of the run.
fn parse_at(text: &str) -> Result<mailsim::engine::time::Time, Error> {
    scenario::units::parse_duration(text, false).map_err(|m| input_error("--at", m))
}

/// Writes to stdout; a closed pipe (`| head`) just ends the output.
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
