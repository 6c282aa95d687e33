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
    fn event(&mut self, e: &crate::observe::Event<'_>) {
        self.0.event(e);
        self.1.event(e);
    }
    fn wants_events(&self) -> bool {
        self.0.wants_events() || self.1.wants_events()
    }
    fn sample(&mut self, t: Time) {
        self.0.sample(t);
        self.1.sample(t);
    }
}

/// Any number of observers as one.
pub struct Fan<'a>(pub Vec<&'a mut dyn Observer>);

impl Observer for Fan<'_> {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        for x in &mut self.0 {
            x.recipient_outcome(o);
        }
    }
    fn delivery_attempt(&mut self, a: &crate::observe::DeliveryAttempt<'_>) {
        for x in &mut self.0 {
            x.delivery_attempt(a);
        }
    }
    fn event(&mut self, e: &crate::observe::Event<'_>) {
        for x in &mut self.0 {
            if x.wants_events() {
                x.event(e);
            }
        }
    }
    fn wants_events(&self) -> bool {
        self.0.iter().any(|x| x.wants_events())
    }
    fn sample(&mut self, t: Time) {
        for x in &mut self.0 {
            x.sample(t);
        }
    }
}

/// What a run produced besides the observations.
pub struct RunReport {
    pub mta_totals: crate::postfix::Totals,
    pub peaks: crate::postfix::QueueCounts,
    pub queued_at_end: u64,
    /// Messages still with their senders (retrying, in a session, in the backlog).
    pub waiting_at_senders_at_end: u64,
    pub events: u64,
    pub end_time: Time,
    pub first_arrival: Option<Time>,
    pub last_final: Option<Time>,
    /// When qmgr (its deferred-scan clock) started: `qmgr_start`, or the drawn phase.
    pub qmgr_start: Time,
    /// When the deferred-scan clock ticked first (its phase).
    pub first_scan_tick: Time,
    /// Greylist triplets the remote servers held at the end, and at most (the sum of each
    /// server's peak).
    pub greylist_entries: usize,
    pub greylist_peak: usize,
    /// TCP connections the SMTP clients opened, and conversations they held over sessions
    /// from the connection cache instead.
    pub smtp_connections: u64,
    pub smtp_reused: u64,
    /// The first instant at or after the last fault, the last admin command and the first
    /// arrival with nothing left to work on (`backlog_clear_s`).
    pub backlog_clear: Option<Time>,
}

impl RunReport {
    /// A run where nothing happened (for the names of a summary's columns).
    pub fn empty() -> Self {
        RunReport {
            mta_totals: crate::postfix::Totals::default(),
            peaks: crate::postfix::QueueCounts::default(),
            queued_at_end: 0,
            events: 0,
            end_time: 0,
            first_arrival: None,
            last_final: None,
            first_scan_tick: 0,
            qmgr_start: 0,
            greylist_entries: 0,
            greylist_peak: 0,
            smtp_connections: 0,
            smtp_reused: 0,
            backlog_clear: None,
            waiting_at_senders_at_end: 0,
        }
    }
}

/// When qmgr started in a run of `scenario` with `seed` (≤ 0): `qmgr_start = "random"`
/// draws it uniformly over one `queue_run_delay` from its own stream, so it depends on the
/// seed alone.
pub fn qmgr_start_time(scenario: &Scenario, seed: u64) -> Time {
    match scenario.qmgr_start {
        QmgrStart::At(t) => t,
        QmgrStart::Random => {
            let period = scenario.postfix.queue_run_delay * SECOND;
            -RngStreams::new(seed)
                .stream("qmgr_start", 0)
                .random_range(0..period)
        }
    }
}

/// When a scenario's disturbances are over: its last fault's end and last admin command
/// (`None` if a fault never ends).
fn disturbed_until(scenario: &Scenario) -> Option<Time> {
    let mut until: Time = 0;
    for f in &scenario.faults {
        if f.end == Time::MAX {
            return None;
        }
        until = until.max(f.end);
    }
    for a in &scenario.admin {
        until = until.max(a.at);
    }
    Some(until)
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
    simulate_with(scenario, seed, observer, series, &Limits::default(), |_| {})
}

/// The queue files at simulated time `at` (`mailq`, `qshape`).
pub fn snapshot_at(
    scenario: &Scenario,
    seed: u64,
    at: Time,
) -> Result<Vec<crate::output::mailq::QueueFile>, Error> {
    let mut sc = scenario.clone();
    sc.stop = Some(at.max(1));
    let mut files = Vec::new();
    simulate_with(
        &sc,
        seed,
        &mut crate::observe::NullObserver,
        &mut QueueSeries::default(),
        &Limits::default(),
        |mta| files = mta.queue_files(),
    )?;
    Ok(files)
}

/// How often (in events or sample rows) the loop looks at the interruption flag: often
/// enough to stop within a millisecond, rarely enough to cost nothing.
const INTERRUPT_CHECK: u64 = 1 << 12;

/// [`simulate`] within `limits`, stopping early on SIGINT/SIGTERM ([`guard::interrupted`]),
/// letting `inspect` look at the mail system when the run ends.
pub fn simulate_with(
    scenario: &Scenario,
    seed: u64,
    observer: &mut dyn Observer,
    series: &mut QueueSeries,
    limits: &Limits,
    inspect: impl FnOnce(&Mta),
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
    let start = qmgr_start_time(scenario, seed);
    let first_tick = first_scan_tick(start, scenario.postfix.queue_run_delay);
    let mut events: EventQueue<Event> = EventQueue::new(0);
    let mut mta = Mta::new(scenario, seed);
    mta.set_start(start);
    let recording = observer.wants_events();
    let mut world = World::new(scenario, &streams);
    let mut traffic: Vec<Stream> = scenario
        .traffic
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Stream::new(
                t.clone(),
                streams.stream("arrivals", i as u64),
                streams.stream("sizes", i as u64),
            )
        })
        .collect();
    let mut streams_open = 0usize;
    for (i, s) in traffic.iter_mut().enumerate() {
        if let Some(t) = s.first() {
            events.schedule(t, Event::Arrival { stream: i as u16 });
            streams_open += 1;
        }
    }
    mta.start_scan_clock(first_tick, &mut events);
    let mut admin_pending = scenario.admin.len();
    for (i, a) in scenario.admin.iter().enumerate() {
        events.schedule(
            a.at,
            Event::Admin {
                // The scenario check allows at most MAX_ADMIN_ENTRIES (< 2^32) entries.
                index: u32::try_from(i).unwrap_or(u32::MAX),
            },
        );
    }

    mta.record_events(recording, &mut world);
    let sample = scenario.sample;
    let mut next_sample: Time = 0;
    let mut dests: Vec<u32> = Vec::new();
    let mut rows: u64 = 0;
    let calm_from = disturbed_until(scenario);
    let mut backlog_clear: Option<Time> = None;
    // Nothing left to work on at `now`, after the disturbances and the first arrival: the
    // state held since the last event, so the backlog cleared at the later of the two.
    let clear_at = |mta: &Mta, now: Time, last: Time| -> Option<Time> {
        let calm = calm_from?.max(mta.first_arrival()?);
        (now >= calm && mta.unfinished() == 0).then(|| last.max(calm))
    };
    while let Some(t) = events.peek_time() {
        if backlog_clear.is_none() {
            backlog_clear = clear_at(&mta, t, events.now());
        }
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
            series.push_with_destinations(
                next_sample,
                mta.counts(),
                mta.deferred_by_destination(),
                mta.free_bytes(next_sample),
            );
            sample_qshape(series, &mta, next_sample);
            observer.sample(next_sample);
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
                let size = s.draw_size();
                match s.next_after(now) {
                    Some(next) => events.schedule(next, Event::Arrival { stream }),
                    None => streams_open -= 1,
                }
                mta.arrive(now, stream, &dests, size, &mut events);
                mta.run_qmgr(now, &mut events, observer);
            }
            other => {
                if let Event::Admin { .. } = other {
                    admin_pending -= 1;
                }
                mta.handle(now, other, &mut events, &mut world, observer)
            }
        }
        if recording {
            mta.flush_notes(now, &mut world, observer);
        }
        if backlog_clear.is_none() {
            backlog_clear = clear_at(&mta, now, now);
        }
        // Done when nothing can arrive, nothing is left to do, and no admin command is
        // still to come (it might release held mail).
        if streams_open == 0
            && admin_pending == 0
            && mta.inbound_pending() == 0
            && mta.unfinished() == 0
        {
            break;
        }
    }
    let end_time = scenario.stop.unwrap_or(events.now());
    if backlog_clear.is_none() {
        // The run ended with nothing left: clear from then, or once the last disturbance
        // is over if that comes later (within the run).
        backlog_clear =
            clear_at(&mta, Time::MAX, events.now()).filter(|&t| t <= end_time.max(events.now()));
    }
    events.advance_to(end_time);
    if recording {
        mta.flush_notes(Time::MAX, &mut world, observer);
    }
    while next_sample <= end_time {
        series.push_with_destinations(
            next_sample,
            mta.counts(),
            mta.deferred_by_destination(),
            mta.free_bytes(next_sample),
        );
        sample_qshape(series, &mta, next_sample);
        observer.sample(next_sample);
        next_sample += sample;
    }
    if series.points.last().is_some_and(|(t, _)| *t < end_time) {
        series.push_with_destinations(
            next_sample,
            mta.counts(),
            mta.deferred_by_destination(),
            mta.free_bytes(next_sample),
        );
        sample_qshape(series, &mta, next_sample);
        observer.sample(next_sample);
    }
    mta.check_conservation()
        .map_err(|e| Error::Runtime(format!("{}: {e}", scenario.name)))?;
    let queued_at_end = mta.report_queued(observer);
    inspect(&mta);
    let (greylist_entries, greylist_peak) = world.greylist_entries();
    Ok(RunReport {
        mta_totals: mta.totals(),
        peaks: mta.peaks(),
        queued_at_end,
        waiting_at_senders_at_end: mta.inbound_pending() as u64,
        events: events.events_popped(),
        end_time,
        first_arrival: mta.first_arrival(),
        last_final: mta.last_final(),
        qmgr_start: start,
        first_scan_tick: first_tick,
        greylist_entries,
        greylist_peak,
        smtp_connections: world.connections_opened,
        smtp_reused: world.sessions_reused,
        backlog_clear,
    })
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub seed: Option<u64>,
    pub out_dir: Option<PathBuf>,
    pub deliveries: bool,
    pub plots: bool,
    /// Also write a synthetic mail.log here, with times from `log_start` (Unix seconds).
    pub maillog: Option<PathBuf>,
    pub log_start: i64,
    /// Log qmgr's deferred-scan starts too (as `qmgr -v`).
    pub log_scans: bool,
    /// Write qshape.csv (the qshape table at every sample).
    pub qshape: bool,
    pub limits: Limits,
    /// The scenario's file name, so the closing sentence does not suggest it to itself.
    pub scenario_file: String,
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
    let mut series = QueueSeries {
        qshape: opts
            .qshape
            .then(|| crate::output::qshape::CSV_HEADER.to_string()),
        ..QueueSeries::default()
    };
    let mut staged: Vec<Staged> = Vec::new();
    let mut deliveries = match opts.deliveries {
        true => Some(DeliveriesCsv::create(AtomicFile::create(
            &dir.join("deliveries.csv"),
        )?)?),
        false => None,
    };
    let mut maillog = match &opts.maillog {
        Some(path) => {
            let mut log =
                crate::output::maillog::MailLog::create(AtomicFile::create(path)?, opts.log_start);
            log.scans = opts.log_scans;
            Some(log)
        }
        None => None,
    };
    let mut stall = crate::output::stall::StallAttribution::new();
    // The closing sentence imagines a `postqueue -f` a minute after the last fault ended.
    let last_fault = crate::output::timeline::of(scenario)
        .into_iter()
        .filter(|e| e.fault)
        .filter_map(|e| e.end.map(|end| (end, e.label)))
        .filter(|(end, _)| scenario.stop.is_none_or(|stop| *end < stop))
        .max_by_key(|(end, _)| *end);
    stall.flush_probe = last_fault.as_ref().map(|(end, _)| end + 60 * SECOND);
    let report = {
        let mut observers: Vec<&mut dyn Observer> = vec![&mut delays, &mut stall];
        if let Some(csv) = deliveries.as_mut() {
            observers.push(csv);
        }
        if let Some(log) = maillog.as_mut() {
            observers.push(log);
        }
        simulate_with(
            scenario,
            seed,
            &mut Fan(observers),
            &mut series,
            &opts.limits,
            |_| {},
        )?
    };
    let mut summary = summarize(scenario, seed, &report, &delays);
    summary.stall_s = stall.totals_by_name();
    summary.headline = crate::output::stall::headline(
        &summary.stall_s,
        &crate::output::stall::HeadlineContext {
            scenario_file: opts.scenario_file.clone(),
            last_fault: last_fault.map(|(end, label)| (end, format!("the {label} fault"))),
            start_unix: opts.log_start,
            flush_at: stall.flush_probe,
            flush_saving: stall.flush_saving,
            flush_saved_recipients: stall.flush_saved_recipients,
            top_deferral: summary
                .deferred_by_cause
                .iter()
                .filter(|(c, _)| !matches!(**c, "suspended" | "transport_unavailable"))
                .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
                .map(|(c, _)| c.to_string()),
        },
    );
    if let Some(csv) = deliveries {
        staged.push(csv.finish()?);
    }
    if let Some(log) = maillog {
        staged.push(log.finish()?);
    }
    check("writing the results")?;
    let mut stage = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        let mut f = AtomicFile::create(&dir.join(name))?;
        f.write_all(bytes)?;
        staged.push(f.finish()?);
        Ok(())
    };
    stage("queues.csv", series.to_csv().as_bytes())?;
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Runtime(format!("summary: {e}")))?;
    stage("summary.json", format!("{json}\n").as_bytes())?;
    stage("stall.csv", stall.csv.as_bytes())?;
    if let Some(csv) = &series.qshape {
        stage("qshape.csv", csv.as_bytes())?;
    }
    let (extras, timeline, cdf) = run_extras(scenario, &series, &delays);
    for (name, text) in &extras {
        stage(name, text.as_bytes())?;
    }
    if opts.plots {
        check("writing the results")?;
        let names: Vec<&str> = scenario
            .destinations
            .iter()
            .map(|d| d.domain.as_str())
            .collect();
        staged.extend(crate::plot::queues::write_run_charts(
            &scenario.name,
            &series,
            &timeline,
            &cdf,
            &names,
            dir,
        )?);
        staged.extend(crate::plot::queues::write_stall_chart(
            &scenario.name,
            &stall.csv,
            &timeline,
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

/// The files beside queues.csv that charts need — the timeline, the delay distribution,
/// the deferred files per destination — with the timeline and distribution themselves.
#[allow(clippy::type_complexity)]
fn run_extras(
    scenario: &Scenario,
    series: &QueueSeries,
    delays: &DelayCollector,
) -> (
    Vec<(&'static str, String)>,
    Vec<crate::output::timeline::Entry>,
    Vec<(f64, f64)>,
) {
    use std::fmt::Write as _;
    let timeline = crate::output::timeline::of(scenario);
    let cdf = delays.cdf();
    let mut text = String::from("delay_s,fraction\n");
    for (d, q) in &cdf {
        let _ = writeln!(text, "{d},{q}");
    }
    let names: Vec<&str> = scenario
        .destinations
        .iter()
        .map(|d| d.domain.as_str())
        .collect();
    let files = vec![
        ("timeline.csv", crate::output::timeline::to_csv(&timeline)),
        ("delay-cdf.csv", text),
        (
            "deferred-by-destination.csv",
            series.destinations_csv(&names),
        ),
    ];
    (files, timeline, cdf)
}

/// qshape.csv rows at sample `t`, if asked for: the deferred queue and incoming+active.
fn sample_qshape(series: &mut QueueSeries, mta: &Mta, t: Time) {
    if let Some(csv) = series.qshape.as_mut() {
        let rows = mta.qshape_rows(t, &["deferred"]);
        crate::output::qshape::csv_rows(csv, t, "deferred", &rows);
        let rows = mta.qshape_rows(t, &["incoming", "active"]);
        crate::output::qshape::csv_rows(csv, t, "incoming+active", &rows);
    }
}

/// A run kept in memory (for sweeps): its summary and queue-size series, no files.
pub fn collect(scenario: &Scenario, seed: u64) -> Result<(Summary, QueueSeries), Error> {
    let mut delays = DelayCollector::default();
    let mut series = QueueSeries::default();
    let report = simulate(scenario, seed, &mut delays, &mut series)?;
    Ok((summarize(scenario, seed, &report, &delays), series))
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
        qmgr_start_s: secs(report.qmgr_start),
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
        deleted_messages: t.deleted_messages,
        refused_disk_full: t.refused_disk,
        refused_stopped: t.refused_stopped,
        refused_write_error: t.refused_write_error,
        not_accepted: t.not_accepted,
        offered: t.offered,
        waiting_at_senders_at_end: report.waiting_at_senders_at_end,
        rejected_too_large: t.rejected_messages,
        in_flow_delays: t.in_flow_delays,
        filtered: t.filtered,
        deferred_by_cause: t.deferred_by_cause.named(),
        bounced_by_cause: t.bounced_by_cause.named(),
        drain_time_s: match (report.first_arrival, report.last_final) {
            (Some(a), Some(f)) if report.queued_at_end == 0 => Some(secs(f - a)),
            _ => None,
        },
        backlog_clear_s: report.backlog_clear.map(secs),
        end_time_s: secs(report.end_time),
        delay_s: delays.stats(),
        stall_s: Default::default(),
        headline: None,
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
        smtp_connections: report.smtp_connections,
        smtp_reused: report.smtp_reused,
    }
}
