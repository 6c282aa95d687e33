//! Retry timing of Postfix 3.7 (§4.1–4.3, §3.2): backoff = clamp(age, min, max), retries only
//! at deferred-scan ticks with mtime <= now + 1, expiry checked after a failed round.

mod common;
use common::{attempt_seconds, run};
use mailsim::observe::FinalStatus;

fn always_failing(postfix: &str, extra: &str) -> String {
    format!(
        r#"
name = "always-failing"
{extra}
[postfix]
{postfix}
[[traffic]]
to = "fail.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "fail.test"
latency = "0s"
tempfail = 1.0
"#
    )
}

#[test]
fn defaults_retry_at_the_documented_instants_and_expire_after_five_days() {
    let (rec, report, _) = run(&always_failing("", ""));
    let times = attempt_seconds(&rec, 1);
    // §4.1 worked example: 0, 300, 600, 1200, 2400, 4800, 9000, 13200, 17400, then every
    // 4200 s (4000 s cap rounded up to the next 300 s scan tick).
    assert_eq!(
        &times[..9],
        &[
            0.0, 300.0, 600.0, 1200.0, 2400.0, 4800.0, 9000.0, 13200.0, 17400.0
        ]
    );
    for pair in times[8..].windows(2) {
        assert_eq!(pair[1] - pair[0], 4200.0);
    }
    // Expiry at the first failed round at or after create_time + 5 d = 432000 s:
    // 13200 + 100 × 4200 = 433200 (the round before, 429000, is too early).
    assert_eq!(*times.last().expect("attempts"), 433_200.0);
    // Nine attempts up to 17400 s, then (433200 - 17400) / 4200 = 99 more.
    assert_eq!(times.len(), 9 + 99);
    let original: Vec<_> = rec.outcomes.iter().filter(|o| o.0 == 1).collect();
    assert_eq!(original.len(), 1);
    assert_eq!(original[0].1, FinalStatus::Expired);
    assert_eq!(original[0].2, Some(433_200_000_000));
    // The non-delivery notice is a message of its own, delivered locally.
    assert_eq!(report.mta_totals.notices, 1);
    assert_eq!(report.mta_totals.expired, 1);
    assert!(rec.outcomes.iter().any(|o| o.3 && o.1 == FinalStatus::Sent));
}

#[test]
fn compressed_timers_retry_at_10_20_40_80_then_every_80() {
    let cfg = r#"queue_run_delay = "10s"
minimal_backoff_time = "10s"
maximal_backoff_time = "80s"
maximal_queue_lifetime = "600s"
bounce_queue_lifetime = "600s""#;
    let (rec, _, _) = run(&always_failing(cfg, ""));
    let times = attempt_seconds(&rec, 1);
    assert_eq!(
        &times[..8],
        &[0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 240.0, 320.0]
    );
    // Expiry at the first failed round with age >= 600: 320 + 4 × 80 = 640.
    assert_eq!(*times.last().expect("attempts"), 640.0);
}

#[test]
fn scan_phase_from_qmgr_start_moves_every_retry_onto_its_ticks() {
    // qmgr started 2.5 s before the run: its timer grid is whole seconds 2, 7, 12, … (events.c:
    // when = time() + delay). Idle, it would wake at 2.5, 7.5, …, but the message's arrival at
    // 0 s woke it (cleanup's trigger), and select() then sleeps whole seconds from that wakeup:
    // every tick fires on the second. Each decision uses whole seconds (event_time()), so at
    // 7 s the age is 7 and mtime = 14, which the tick at 12 (14 > 13) skips and 17 takes.
    let cfg = r#"queue_run_delay = "5s"
minimal_backoff_time = "5s"
maximal_backoff_time = "40s""#;
    let (rec, _, _) = run(&always_failing(cfg, "qmgr_start = \"-2.5s\""));
    let times = attempt_seconds(&rec, 1);
    assert_eq!(&times[..7], &[0.0, 7.0, 17.0, 37.0, 77.0, 117.0, 157.0]);
}

#[test]
fn a_timer_fires_at_the_fraction_of_qmgrs_last_wakeup() {
    // As above, but the message arrives at 0.3 s: qmgr last woke at x.3 s, so every tick of
    // the whole-second grid 2, 7, 12, … fires 0.3 s after its second; the create time is 0
    // (whole seconds), so the backoff arithmetic is unchanged.
    let cfg = r#"queue_run_delay = "5s"
minimal_backoff_time = "5s"
maximal_backoff_time = "40s""#;
    let text = always_failing(cfg, "qmgr_start = \"-2.5s\"").replace(
        "arrivals = \"burst\"",
        "arrivals = \"burst\"\nstart = \"300ms\"",
    );
    let (rec, _, _) = run(&text);
    let times = attempt_seconds(&rec, 1);
    assert_eq!(&times[..6], &[0.3, 7.3, 17.3, 37.3, 77.3, 117.3]);
}

#[test]
fn a_phase_earlier_than_one_period_is_its_remainder() {
    let cfg = r#"queue_run_delay = "5s"
minimal_backoff_time = "5s"
maximal_backoff_time = "40s""#;
    let (a, _, _) = run(&always_failing(cfg, "qmgr_start = \"-2.5s\""));
    let (b, _, _) = run(&always_failing(cfg, "qmgr_start = \"-12.5s\""));
    assert_eq!(attempt_seconds(&a, 1), attempt_seconds(&b, 1));
}

#[test]
fn scan_phase_halfway_gives_the_documented_schedule() {
    // §4.1: "With the scan phase at 150 s: 0, 450, 1050, 2250, 4650, 8850, …"
    let (rec, _, _) = run(&always_failing("", "qmgr_start = \"-150s\""));
    let times = attempt_seconds(&rec, 1);
    assert_eq!(&times[..6], &[0.0, 450.0, 1050.0, 2250.0, 4650.0, 8850.0]);
}

#[test]
fn minimal_backoff_wins_when_larger_than_maximal() {
    let cfg = r#"queue_run_delay = "10s"
minimal_backoff_time = "100s"
maximal_backoff_time = "30s"
maximal_queue_lifetime = "300s""#;
    let (rec, _, _) = run(&always_failing(cfg, ""));
    let times = attempt_seconds(&rec, 1);
    assert_eq!(&times[..4], &[0.0, 100.0, 200.0, 300.0]);
    assert_eq!(times.len(), 4, "expired at 300 s");
}

#[test]
fn delay_warning_is_sent_once() {
    let cfg = r#"queue_run_delay = "10s"
minimal_backoff_time = "10s"
maximal_backoff_time = "80s"
maximal_queue_lifetime = "600s"
delay_warning_time = "100s""#;
    let (_, report, _) = run(&always_failing(cfg, ""));
    // One delay warning (first failed round at age >= 99: 160 s) and one non-delivery notice.
    assert_eq!(report.mta_totals.notices, 2);
}

#[test]
fn a_message_arriving_between_ticks_waits_for_the_tick_after_its_mtime() {
    let text = r#"
name = "one-retry"
[[traffic]]
to = "a.test"
messages = 1
arrivals = "burst"
start = "10s"
[[destination]]
domain = "a.test"
latency = "0s"
tempfail = 1.0
"#;
    // Created at 10 s: the first retry is at the first tick with mtime (10 + 300 = 310)
    // <= now + 1, i.e. 600 s, not 300 s; then age 590 gives mtime 1190, taken at 1200 s.
    let (rec, _, _) = run(text);
    let times = attempt_seconds(&rec, 1);
    assert_eq!(&times[..3], &[10.0, 600.0, 1200.0]);
}

#[test]
fn random_qmgr_start_is_per_seed_and_uniform_over_one_period() {
    let text = r#"
name = "phase"
qmgr_start = "random"
[postfix]
queue_run_delay = "5s"
[[traffic]]
to = "a.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "a.test"
latency = "0s"
"#;
    let sc = common::scenario(text);
    let tick = |seed: u64| {
        let mut series = mailsim::output::queues::QueueSeries::default();
        mailsim::run::simulate(&sc, seed, &mut mailsim::observe::NullObserver, &mut series)
            .expect("runs")
            .first_scan_tick
    };
    assert_eq!(tick(1), tick(1));
    let n = 1000;
    let mut ticks: Vec<f64> = (0..n).map(|s| tick(s) as f64 / 5e6).collect();
    assert!(ticks.iter().all(|&u| (0.0..1.0).contains(&u)));
    // Kolmogorov–Smirnov against U[0, 1): critical value at alpha = 0.01 is 1.63 / sqrt(n).
    ticks.sort_by(f64::total_cmp);
    let d = ticks
        .iter()
        .enumerate()
        .map(|(i, &u)| ((i + 1) as f64 / n as f64 - u).max(u - i as f64 / n as f64))
        .fold(0.0, f64::max);
    assert!(d < 1.63 / (n as f64).sqrt(), "KS distance {d}");
    let distinct: std::collections::BTreeSet<i64> = (0..20).map(tick).collect();
    assert!(distinct.len() > 15, "phases barely vary across seeds");
}

#[test]
fn the_drawn_phase_is_reported_in_the_summary() {
    let text = r#"
name = "phase"
qmgr_start = "random"
[postfix]
queue_run_delay = "5s"
[[traffic]]
to = "a.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "a.test"
latency = "0s"
"#;
    let sc = common::scenario(text);
    for seed in [1, 2, 3] {
        let start = mailsim::run::qmgr_start_time(&sc, seed);
        assert!((-5_000_000..=0).contains(&start), "{start}");
        let (summary, _) = mailsim::run::collect(&sc, seed).expect("runs");
        assert_eq!(summary.qmgr_start_s, start as f64 / 1e6);
        // The first deferred scan at or after 0: the start modulo the period.
        let mut series = mailsim::output::queues::QueueSeries::default();
        let report =
            mailsim::run::simulate(&sc, seed, &mut mailsim::observe::NullObserver, &mut series)
                .expect("runs");
        assert_eq!(report.qmgr_start, start);
        assert_eq!(report.first_scan_tick, start.rem_euclid(5_000_000));
    }
}

/// `mailsim explain`'s story of message `id`.
fn explain(text: &str, id: u64) -> String {
    let sc = common::scenario(text);
    let mut ex = mailsim::output::explain::Explainer::new(
        id,
        sc.postfix.clone(),
        Vec::new(),
        mailsim::run::qmgr_start_time(&sc, sc.seed),
    );
    mailsim::run::simulate(
        &sc,
        sc.seed,
        &mut ex,
        &mut mailsim::output::queues::QueueSeries::default(),
    )
    .expect("runs");
    ex.finish().expect("the message arrived")
}

#[test]
fn explain_states_the_scan_clock_and_the_scans_that_passed_the_file_over() {
    // qmgr started at -100 s: scans due at 200, 500, 800 s. Deferred at 0 s with mtime 300:
    // the scan at 200 s passes it over, the one at 500 s takes it.
    let story = explain(
        &always_failing("", "qmgr_start = \"-100s\"\nstop = \"600s\""),
        1,
    );
    assert!(
        story.contains("Scan clock: qmgr started at -100 s, so its deferred-queue scans are due every queue_run_delay = 300 s, at second 200, 500, 800, …"),
        "{story}"
    );
    let lines: Vec<&str> = story.lines().collect();
    let passed = lines
        .iter()
        .position(|l| {
            l.trim_start().starts_with("200 s  deferred-queue scan: the file is not due yet (time stamp 300 s > now + 1 s)")
        })
        .unwrap_or_else(|| panic!("{story}"));
    let taken = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("500 s  deferred-queue scan (every")
        })
        .unwrap_or_else(|| panic!("{story}"));
    assert!(passed < taken);
    // Attempts at 0, 300, 600, 1200 s; deferred at 1200 s with mtime 2400, so the scans at
    // 1500, 1800 and 2100 s pass it over: one line for the three.
    let story = explain(&always_failing("", "stop = \"2500s\""), 1);
    assert!(
        story.lines().any(|l| l.trim_start()
            == "1500 s  3 deferred-queue scans, up to the one at 2100 s: the file is not due yet (time stamp 2400 s > now + 1 s)"),
        "{story}"
    );
}

/// Activations of queue files: (time, message id).
#[derive(Default)]
struct Activations(Vec<(i64, u64)>);

impl mailsim::observe::Observer for Activations {
    fn recipient_outcome(&mut self, _: &mailsim::observe::RecipientOutcome<'_>) {}
    fn wants_events(&self) -> bool {
        true
    }
    fn event(&mut self, e: &mailsim::observe::Event<'_>) {
        if let mailsim::observe::Happening::Activated { .. } = e.what {
            self.0.push((e.t, e.id));
        }
    }
}

#[test]
fn the_deferred_scan_reads_files_in_one_fixed_directory_order() {
    // Eight messages at once to a host refusing connections until 25 s: the first attempt
    // kills the queue, the rest are deferred through the retry service, all with mtime 10.
    // The scans at 10 and 20 s find all eight due and read them in deferred/'s readdir
    // order: fixed for each file (its place in the hashed directory), the same in both
    // scans, not the order of their deferral (the Postfix 3.7.11 recording of
    // rate-limit-421 reads its files in one relative order in all seven retry scans).
    let text = r#"
name = "readdir"
qmgr_start = "0s"
[postfix]
queue_run_delay = "10s"
minimal_backoff_time = "10s"
maximal_backoff_time = "10s"
[[traffic]]
to = "r.test"
messages = 8
arrivals = "burst"
[[destination]]
domain = "r.test"
[[fault]]
kind = "refuse"
target = "r.test"
at = "0s"
for = "25s"
"#;
    let sc = common::scenario(text);
    let mut seen = Activations::default();
    mailsim::run::simulate(
        &sc,
        sc.seed,
        &mut seen,
        &mut mailsim::output::queues::QueueSeries::default(),
    )
    .expect("runs");
    let mut expected: Vec<u64> = (1..=8).collect();
    expected.sort_by_key(|&id| mailsim::postfix::qmgr::readdir_key(id));
    // The directory order is not the deferral order (ids 1..8), or this proves nothing.
    assert_ne!(expected, (1..=8).collect::<Vec<u64>>());
    let scan = |t: i64| -> Vec<u64> {
        seen.0
            .iter()
            .filter(|a| a.0 == t * 1_000_000)
            .map(|a| a.1)
            .collect()
    };
    assert_eq!(
        scan(0),
        (1..=8).collect::<Vec<u64>>(),
        "new mail in arrival order"
    );
    assert_eq!(scan(10), expected);
    assert_eq!(scan(20), expected);
}

#[test]
fn explain_tells_the_story_in_time_order() {
    // outage-flush's message 5400 is passed over by scans between a dead destination's
    // revival and a postqueue -f; those scans were once told after later lines, and the
    // one before the flush with the time stamp 0 s.
    let text = std::fs::read_to_string("scenarios/outage-flush.toml").expect("scenario");
    let story = explain(&text, 5400);
    let times: Vec<f64> = story
        .lines()
        .filter_map(|l| l.trim_start().split_once(" s  "))
        .filter_map(|(t, _)| t.parse().ok())
        .collect();
    assert!(times.len() > 20, "{story}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{story}");
    assert!(
        story.contains(
            "3000 s  deferred-queue scan: the file is not due yet (time stamp 3639 s > now + 1 s)"
        ),
        "{story}"
    );
}
