//! One simulation run: wires the scenario, the engine, the model and the world together,
//! plays the events, and writes the results.

use crate::engine::time::write_seconds;
use crate::engine::time::{SECOND, Time};
use crate::engine::{EventQueue, RngStreams};
use crate::error::Error;
use crate::guard::{self, Limits};
use crate::observe::{Observer, RecipientOutcome};
use crate::output::deliveries::DeliveriesCsv;
use crate::output::queues::QueueSeries;
use crate::output::summary::{DelayCollector, Peaks, Summary};
use crate::output::{AtomicFile, Staged, commit_set, complete_set};
use crate::postfix::{Event, Mta};
use crate::scenario::{QmgrStart, Scenario};
use crate::world::World;
use crate::world::traffic::Stream;
use rand::Rng;
use std::path::{Path, PathBuf};

/// Two observers as one.
pub struct Tee<'a>(pub &'a mut dyn Observer, pub &'a mut dyn Observer);

impl Observer for Tee<'_> {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        self.0.recipient_outcome(o);
        self.1.recipient_outcome(o);
    }
    fn delivery_attempt(&mut self, a: &crate::observe::DeliveryAttempt<'_>) {
        self.0.delivery_attempt(a);
        self.1.delivery_attempt(a);
    }
}

/// What a run produced besides the observations.
pub struct RunReport {
    pub mta_totals: crate::postfix::Totals,
    pub peaks: crate::postfix::QueueCounts,
    pub queued_at_end: u64,
    pub events: u64,
    pub end_time: Time,
    pub first_arrival: Option<Time>,
    pub last_final: Option<Time>,
    /// When the deferred-scan clock ticked first (its phase).
    pub first_scan_tick: Time,
}

/// The first deferred-scan tick at or after 0 for a qmgr started at `start` (≤ 0).
pub fn first_scan_tick(start: Time, queue_run_delay_s: i64) -> Time {
    let period = queue_run_delay_s * SECOND;
    start.rem_euclid(period)
}

/// Plays `scenario` with `seed`, reporting outcomes to `observer` and queue sizes to `series`.
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    observer: &mut dyn Observer,
    series: &mut QueueSeries,
) -> Result<RunReport, Error> {
    simulate_with(scenario, seed, observer, series, &Limits::default())
}

/// How often (in events or sample rows) the loop looks at the interruption flag: often
/// enough to stop within a millisecond, rarely enough to cost nothing.
const INTERRUPT_CHECK: u64 = 1 << 12;

/// [`simulate`] within `limits`, stopping early on SIGINT/SIGTERM ([`guard::interrupted`]).
pub fn simulate_with(
    scenario: &Scenario,
    seed: u64,
    observer: &mut dyn Observer,
    series: &mut QueueSeries,
    limits: &Limits,
) -> Result<RunReport, Error> {
    let interrupted = |now: Time, events: u64| {
        let mut at = String::new();
        write_seconds(&mut at, now);
        Error::Interrupted(format!(
            "{}: stopped at simulated time {at} s after {events} events",
            scenario.name
        ))
    };
    let streams = RngStreams::new(seed);
    let start = match scenario.qmgr_start {
        QmgrStart::At(t) => t,
        QmgrStart::Random => {
            let period = scenario.postfix.queue_run_delay * SECOND;
            -streams.stream("qmgr_start", 0).random_range(0..period)
        }
    };
    let first_tick = first_scan_tick(start, scenario.postfix.queue_run_delay);
    let mut events: EventQueue<Event> = EventQueue::new(0);
    let mut mta = Mta::new(scenario);
    let mut world = World::new(scenario, &streams);
    let mut traffic: Vec<Stream> = scenario
        .traffic
        .iter()
        .enumerate()
        .map(|(i, t)| Stream::new(t.clone(), streams.stream("arrivals", i as u64)))
        .collect();
    let mut streams_open = 0usize;
    for (i, s) in traffic.iter_mut().enumerate() {
        if let Some(t) = s.first() {
            events.schedule(t, Event::Arrival { stream: i as u16 });
            streams_open += 1;
        }
    }
    events.schedule(first_tick, Event::DeferredScan);

    let sample = scenario.sample;
    let mut next_sample: Time = 0;
    let mut dests: Vec<u32> = Vec::new();
    let mut rows: u64 = 0;
    while let Some(t) = events.peek_time() {
        if scenario.stop.is_some_and(|stop| t > stop) {
            break;
        }
        let popped = events.events_popped();
        if let Some(max) = limits.max_events
            && popped >= max
        {
            let mut at = String::new();
            write_seconds(&mut at, events.now());
            return Err(Error::Runtime(format!(
                "{}: stopped after {popped} event{} (--max-events {max}) at simulated time {at} s, before the run ended; no result files were written. Raise --max-events, or give the scenario an earlier `stop`",
                scenario.name,
                if popped == 1 { "" } else { "s" }
            )));
        }
        if popped.is_multiple_of(INTERRUPT_CHECK) && guard::interrupted() {
            return Err(interrupted(events.now(), popped));
        }
        while next_sample < t {
            series.push(next_sample, mta.counts());
            next_sample += sample;
            rows += 1;
            if rows.is_multiple_of(INTERRUPT_CHECK) && guard::interrupted() {
                return Err(interrupted(next_sample, popped));
            }
        }
        let Some((now, event)) = events.pop() else {
            break;
        };
        match event {
            Event::Arrival { stream } => {
                let s = &mut traffic[stream as usize];
                dests.clear();
                for _ in 0..s.spec.recipients {
                    dests.push(s.pick_destination() as u32);
                }
                let via_maildrop = s.spec.submit == crate::scenario::Submit::Sendmail;
                match s.next_after(now) {
                    Some(next) => events.schedule(next, Event::Arrival { stream }),
                    None => streams_open -= 1,
                }
                mta.submit(now, stream, &dests, via_maildrop);
                mta.run_qmgr(now, &mut events, &mut world, observer);
            }
            other => mta.handle(now, other, &mut events, &mut world, observer),
        }
        if streams_open == 0 && mta.unfinished() == 0 {
            break;
        }
    }
    let end_time = scenario.stop.unwrap_or(events.now());
    events.advance_to(end_time);
    while next_sample <= end_time {
        series.push(next_sample, mta.counts());
        next_sample += sample;
    }
    if series.points.last().is_some_and(|(t, _)| *t < end_time) {
        series.push(next_sample, mta.counts());
    }
    mta.check_conservation()
        .map_err(|e| Error::Runtime(format!("{}: {e}", scenario.name)))?;
    let queued_at_end = mta.report_queued(observer);
    Ok(RunReport {
        mta_totals: mta.totals(),
        peaks: mta.peaks(),
        queued_at_end,
        events: events.events_popped(),
        end_time,
        first_arrival: mta.first_arrival(),
        last_final: mta.last_final(),
        first_scan_tick: first_tick,
    })
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub seed: Option<u64>,
    pub out_dir: Option<PathBuf>,
    pub deliveries: bool,
    pub plots: bool,
    pub limits: Limits,
}

/// Runs a scenario and writes its result files; returns the summary and the folder.
///
/// The files are written under temporary names and put in place together at the end
/// ([`commit_set`]): after an error or an interruption the folder holds what it held before
/// (an earlier complete run, or nothing), and the error says which.
pub fn run_to_dir(scenario: &Scenario, opts: &RunOptions) -> Result<(Summary, PathBuf), Error> {
    let seed = opts.seed.unwrap_or(scenario.seed);
    let dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| Path::new("results").join(&scenario.name));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("cannot create the results folder", &dir, e))?;
    write_set(scenario, seed, opts, &dir).map_err(|e| match e {
        Error::Interrupted(m) => Error::Interrupted(format!("{m}; {}", folder_state(&dir))),
        other => other,
    })
}

/// What an interrupted run left in `dir`.
fn folder_state(dir: &Path) -> String {
    let shown = dir.display();
    match complete_set(dir) {
        Some(files) if !files.is_empty() => format!(
            "no file of this run was kept (its temporary files were removed); {shown} still holds the earlier complete run: {}",
            files.join(", ")
        ),
        _ => format!(
            "no file of this run was kept (its temporary files were removed); {shown} holds no complete results"
        ),
    }
}

fn write_set(
    scenario: &Scenario,
    seed: u64,
    opts: &RunOptions,
    dir: &Path,
) -> Result<(Summary, PathBuf), Error> {
    let check = |stage: &str| {
        if guard::interrupted() {
            Err(Error::Interrupted(format!(
                "{}: stopped while {stage}",
                scenario.name
            )))
        } else {
            Ok(())
        }
    };
    let mut delays = DelayCollector::default();
    let mut series = QueueSeries::default();
    let mut staged: Vec<Staged> = Vec::new();
    let report = if opts.deliveries {
        let mut csv = DeliveriesCsv::create(AtomicFile::create(&dir.join("deliveries.csv"))?)?;
        let report = simulate_with(
            scenario,
            seed,
            &mut Tee(&mut delays, &mut csv),
            &mut series,
            &opts.limits,
        )?;
        staged.push(csv.finish()?);
        report
    } else {
        simulate_with(scenario, seed, &mut delays, &mut series, &opts.limits)?
    };
    let summary = summarize(scenario, seed, &report, &delays);
    check("writing the results")?;
    let mut queues = AtomicFile::create(&dir.join("queues.csv"))?;
    queues.write_all(series.to_csv().as_bytes())?;
    staged.push(queues.finish()?);
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Runtime(format!("summary: {e}")))?;
    let mut file = AtomicFile::create(&dir.join("summary.json"))?;
    file.write_all(format!("{json}\n").as_bytes())?;
    staged.push(file.finish()?);
    if opts.plots {
        check("writing the results")?;
        staged.extend(crate::plot::queues::write_queue_chart(
            &scenario.name,
            &series,
            dir,
        )?);
    }
    // The last chance to stop with the folder as it was; from here the set goes in place.
    check("writing the results")?;
    commit_set(
        dir,
        staged,
        &format!(
            "mailsim: one complete run of scenario {} with seed {seed}",
            scenario.name
        ),
    )?;
    Ok((summary, dir.to_path_buf()))
}

pub fn summarize(
    scenario: &Scenario,
    seed: u64,
    report: &RunReport,
    delays: &DelayCollector,
) -> Summary {
    let t = &report.mta_totals;
    let p = &report.peaks;
    let secs = crate::output::summary::seconds;
    Summary {
        scenario: scenario.name.clone(),
        seed,
        messages: t.messages,
        recipients: t.recipients,
        notices: t.notices,
        sent: t.sent,
        bounced: t.bounced,
        expired: t.expired,
        deleted: t.deleted,
        queued_at_end: report.queued_at_end,
        attempts: t.attempts,
        deferrals: t.deferrals,
        suspended_deferrals: t.suspended_deferrals,
        deferred_by_cause: t.deferred_by_cause.named(),
        bounced_by_cause: t.bounced_by_cause.named(),
        drain_time_s: match (report.first_arrival, report.last_final) {
            (Some(a), Some(f)) => Some(secs(f - a)),
            _ => None,
        },
        end_time_s: secs(report.end_time),
        delay_s: delays.stats(),
        destinations: delays.destinations(
            scenario
                .destinations
                .iter()
                .filter(|d| d.domain != crate::scenario::LOCAL_DESTINATION)
                .map(|d| d.domain.as_str()),
        ),
        peak: Peaks {
            maildrop: p.maildrop,
            incoming: p.incoming,
            active: p.active,
            deferred: p.deferred,
            hold: p.hold,
        },
        events: report.events,
    }
}
