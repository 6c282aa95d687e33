//! Sweeps: byte-identical output for any thread count and when sharded, common random
//! numbers, charts, and the spread the deferred-scan phase gives (issue 10).

use std::path::{Path, PathBuf};
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mailsim(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(args)
        .output()
        .expect("mailsim runs");
    assert!(
        out.status.success(),
        "mailsim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect("file written")
}

const SCENARIO: &str = "scenarios/remote-outage.toml";
const SETS: [&str; 4] = [
    "--set",
    "maximal_backoff_time=1000s,4000s",
    "--set",
    "traffic.0.rate=1/s,2/s",
];

#[test]
fn output_is_identical_for_any_jobs_and_when_sharded() {
    let one = temp("jobs1");
    let two = temp("jobs2");
    let mut base = vec!["sweep", SCENARIO, "--replications", "3", "--no-plots"];
    base.extend(SETS);
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    }
    mailsim(&with(
        &base,
        &["--jobs", "1", "--out", one.to_str().expect("utf-8")],
    ));
    mailsim(&with(
        &base,
        &["--jobs", "2", "--out", two.to_str().expect("utf-8")],
    ));
    let shards: Vec<PathBuf> = (1..=3).map(|k| temp(&format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let shard = format!("{}/3", k + 1);
        mailsim(&with(
            &base,
            &["--shard", &shard, "--out", dir.to_str().expect("utf-8")],
        ));
        assert!(
            !dir.join("points.csv").exists(),
            "a shard writes no aggregates"
        );
    }
    let merged = temp("merged");
    let mut merge = vec!["merge"];
    merge.extend(shards.iter().map(|d| d.to_str().expect("utf-8")));
    merge.extend(["--out", merged.to_str().expect("utf-8"), "--no-plots"]);
    mailsim(&merge);
    for file in ["runs.csv", "points.csv", "series.csv"] {
        let reference = read(&one, file);
        assert_eq!(reference, read(&two, file), "{file}: --jobs 1 vs 2");
        assert_eq!(reference, read(&merged, file), "{file}: merged shards");
    }
    // 4 points × 3 replications; replication r has the same seed at every point.
    let runs = read(&one, "runs.csv");
    let rows: Vec<Vec<&str>> = runs
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 12);
    let header: Vec<&str> = runs.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (rep, seed) = (col("replication"), col("seed"));
    for r in 0..3 {
        let seeds: Vec<&str> = rows
            .iter()
            .filter(|row| row[rep] == r.to_string())
            .map(|row| row[seed])
            .collect();
        assert_eq!(seeds.len(), 4);
        assert!(
            seeds.iter().all(|s| *s == seeds[0]),
            "common random numbers"
        );
    }
    // Replication 0 is the plain run.
    assert!(rows.iter().any(|row| row[rep] == "0" && row[seed] == "5"));
}

#[test]
fn a_missing_shard_is_an_error() {
    let a = temp("lone-shard");
    mailsim(&[
        "sweep",
        SCENARIO,
        "--replications",
        "2",
        "--shard",
        "1/2",
        "--out",
        a.to_str().expect("utf-8"),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "merge",
            a.to_str().expect("utf-8"),
            "--out",
            temp("lone-merged").to_str().expect("utf-8"),
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a shard is missing"));
}

#[test]
fn sweep_charts_carry_their_titles_and_series() {
    let dir = temp("charts");
    let mut args = vec![
        "sweep",
        SCENARIO,
        "--replications",
        "2",
        "--out",
        dir.to_str().expect("utf-8"),
    ];
    args.extend(SETS);
    mailsim(&args);
    let svg = read(&dir, "series.svg");
    assert!(svg.contains("remote-outage: messages in the queue"));
    assert!(svg.contains("maximal_backoff_time=1000s, traffic.0.rate=1/s"));
    let svg = read(&dir, "metric-drain_time_s.svg");
    assert!(svg.contains("drain time (s) by maximal_backoff_time"));
    assert!(svg.contains("traffic.0.rate=2/s"));
    // A duration axis says its unit.
    assert!(
        svg.lines().any(|l| l.trim() == "maximal_backoff_time (s)"),
        "x axis label"
    );
    // A text axis gets its names as tick labels.
    let names = temp("names");
    mailsim(&[
        "sweep",
        SCENARIO,
        "--set",
        "traffic.0.arrivals=poisson,uniform",
        "--replications",
        "1",
        "--out",
        names.to_str().expect("utf-8"),
    ]);
    let svg = read(&names, "metric-delay_p95_s.svg");
    for name in ["poisson", "uniform"] {
        assert!(
            svg.lines().any(|l| l.trim() == name),
            "category tick {name}"
        );
    }
    let png = std::fs::read(dir.join("series.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Redrawing from the files gives the same charts.
    let before = read(&dir, "series.svg");
    mailsim(&["plot", dir.to_str().expect("utf-8")]);
    assert_eq!(before, read(&dir, "series.svg"));
}

#[test]
fn a_single_runs_charts_mark_faults_and_admin_commands() {
    let dir = temp("run-charts");
    mailsim(&[
        "run",
        "scenarios/outage-flush.toml",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    let svg = read(&dir, "queues.svg");
    assert!(svg.contains("refuse partner.example"), "fault band label");
    assert!(svg.contains("postqueue -f"), "admin marker label");
    assert!(read(&dir, "delays.svg").contains("delivery delay"));
    assert!(read(&dir, "deferred-by-destination.svg").contains("partner.example"));
    // The attribution chart: stacked areas (filled polygons) under the fault band.
    let stall = read(&dir, "stall.svg");
    assert!(stall.contains("refuse partner.example") && stall.contains("dead destination"));
    assert!(stall.contains("<polygon"), "filled layers");
    let before = read(&dir, "queues.svg");
    std::fs::remove_file(dir.join("queues.svg")).expect("remove");
    mailsim(&["plot", dir.to_str().expect("utf-8")]);
    assert_eq!(
        before,
        read(&dir, "queues.svg"),
        "plot redraws the same chart"
    );
}

#[test]
fn a_random_scan_phase_spreads_the_drain_time_of_a_greylisted_burst() {
    // Issue 10's measurement: a 5 s deferred scan and a 20 s greylisting remote; the same
    // 300 messages, all arriving at 0 s, finish in waves set by the scan clock's phase alone.
    // Every first attempt gets 450 within second 0: mtime 0 + 5. qmgr started at S scans at
    // seconds floor(S) + 5k (events.c), and takes a file at a scan T with mtime <= T + 1;
    // each retry sets mtime = T + max(age, 5), and the one at T >= 20 passes:
    //   floor(S) = -5: scans 0, 5, 10, …: retries 5, 10, 20: pass at 20;
    //   floor(S) = -4: 6, 11, 21: pass at 21;
    //   floor(S) = -3: 7, then mtime 14 → 17 (fails, age 17 → mtime 34) → pass at 37;
    //   floor(S) = -2: 8, 18, pass at 38;
    //   floor(S) = -1: 4, 9, 19, pass at 39 (one more attempt: 1500 instead of 1200).
    // The passing wave takes 0.9 s: the queue was emptied, so its window starts again at 5,
    // and the replies of one 50 ms round are all read before an agent takes a request
    // (qmgr_deliver.c), each raising the window only while window < busy + 5 with busy
    // falling reply by reply (qmgr_queue_unthrottle): +3 per round, windows 5, 8, 11, 14,
    // 17, then 20: 55 in five rounds, 245 more in thirteen: 18 rounds for 300.
    // So the drain times form two clusters, 20.9–21.9 s and 37.9–39.9 s, 16 s apart: more
    // than one queue_run_delay, which a mere shift of the retries by the phase could not give.
    let text = |start: &str| {
        format!(
            r#"
name = "phase"
qmgr_start = "{start}"
sample = "1s"
[postfix]
queue_run_delay = "5s"
minimal_backoff_time = "5s"
maximal_backoff_time = "20s"
[[traffic]]
to = "g.test"
messages = 300
arrivals = "burst"
[[destination]]
domain = "g.test"
latency = "50ms"
greylist = {{ delay = "20s", auto_whitelist = 0 }}
"#
        )
    };
    let spec = mailsim::sweep::SweepSpec::new(&text("random"), "phase.toml", &[], Some(20))
        .expect("valid");
    let opts = mailsim::sweep::SweepOptions {
        jobs: Some(2),
        shard: None,
        keep_runs: None,
        progress: false,
        checkpoint: None,
        resume: None,
        fingerprint: String::new(),
        stop_after_runs: None,
    };
    let state = mailsim::sweep::run(&spec, &opts).expect("runs");
    let metric = |name: &str| {
        state
            .metrics
            .iter()
            .position(|n| n == name)
            .expect("metric")
    };
    let (start, drain, attempts) = (
        metric("qmgr_start_s"),
        metric("drain_time_s"),
        metric("attempts"),
    );
    let mut times = Vec::new();
    for row in &state.rows {
        let s = row.metrics[start].expect("qmgr_start_s");
        assert!((-5.0..=0.0).contains(&s), "phase {s}");
        let (pass, tries) = match s.floor() as i64 {
            -5 => (20.0, 4),
            -4 => (21.0, 4),
            -3 => (37.0, 4),
            -2 => (38.0, 4),
            _ => (39.0, 5),
        };
        let d = row.metrics[drain].expect("drained");
        assert!((d - (pass + 0.9)).abs() < 1e-6, "qmgr_start {s}: drain {d}");
        assert_eq!(row.metrics[attempts], Some(f64::from(tries * 300)), "{s}");
        times.push(d);
    }
    times.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().any(|&g| g > 5.0),
        "the replications' drain times form one cluster: {times:?}"
    );
    // With the phase fixed (the default), nothing else here is random: every replication
    // drains at the same instant, the one of qmgr_start = 0 (scans at 0, 5, …: 20.9 s).
    let fixed =
        mailsim::sweep::SweepSpec::new(&text("0s"), "phase.toml", &[], Some(3)).expect("valid");
    let state = mailsim::sweep::run(&fixed, &opts).expect("runs");
    for row in &state.rows {
        assert_eq!(row.metrics[drain], Some(20.9));
        assert_eq!(row.metrics[start], Some(0.0));
    }
}

/// Issue 8: a sweep stopped part-way leaves a checkpoint, and `--resume` finishes it into
/// the same files an uninterrupted sweep writes. The stop comes after a set number of runs
/// (a hidden option taking the interruption path), not after a sleep: no timing involved.
#[test]
fn an_interrupted_sweep_resumes_into_identical_files() {
    let whole = temp("resume-whole");
    let cut = temp("resume-cut");
    let args = |out: &Path, jobs: &str| -> Vec<String> {
        [
            "sweep",
            SCENARIO,
            "--set",
            "maximal_backoff_time=1000s,4000s",
            "--replications",
            "6",
            "--no-plots",
            "--jobs",
            jobs,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    mailsim(
        &args(&whole, "2")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // One thread runs batches of 4: the stop comes after the first batch, 4 of 12 runs.
    let stopped = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(args(&cut, "1"))
        .args(["--stop-after-runs", "3"])
        .output()
        .expect("mailsim runs");
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{err}");
    assert!(
        err.contains("sweep interrupted after 4 of 12 runs"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    assert!(cut.join("sweep-checkpoint.json").exists());
    assert!(
        !cut.join("runs.csv").exists(),
        "no result file before the sweep completes"
    );

    let resume = cut.display().to_string();
    mailsim(&["sweep", "--resume", &resume, "--no-plots", "--jobs", "2"]);
    for file in ["runs.csv", "points.csv", "series.csv"] {
        assert_eq!(read(&whole, file), read(&cut, file), "{file} differs");
    }
    assert!(
        !cut.join("sweep-checkpoint.json").exists(),
        "the checkpoint is removed once the sweep completes"
    );
    // Resuming a finished sweep is an error naming the missing checkpoint.
    let again = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(["sweep", "--resume", &resume])
        .output()
        .expect("mailsim runs");
    assert_ne!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("sweep-checkpoint.json"));
}

/// Common random numbers: a replication sees the same traffic at every point. Vary only
/// a qmgr parameter, record each run's arrivals, and compare them point by point.
#[test]
fn a_replication_has_the_same_arrivals_at_every_point() {
    use mailsim::observe::{Observer, RecipientOutcome};
    #[derive(Default)]
    struct Arrivals(Vec<(u64, i64)>);
    impl Observer for Arrivals {
        fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
            self.0.push((o.message_id, o.arrival));
        }
    }
    let text = std::fs::read_to_string(SCENARIO).expect("scenario");
    let sets = vec![mailsim::sweep::parse_set("maximal_backoff_time=1000s,4000s").expect("set")];
    let spec = mailsim::sweep::SweepSpec::new(&text, SCENARIO, &sets, Some(3)).expect("spec");
    let arrivals = |point: usize, r: u32| {
        let sc = spec.point(point).expect("point").scenario;
        let seed = mailsim::sweep::replication_seed(sc.seed, r);
        let mut rec = Arrivals::default();
        mailsim::run::simulate(
            &sc,
            seed,
            &mut rec,
            &mut mailsim::output::queues::QueueSeries::default(),
        )
        .expect("runs");
        rec.0.sort_unstable();
        rec.0
    };
    let mut per_replication = Vec::new();
    for r in 0..3 {
        let a = arrivals(0, r);
        assert!(a.len() > 1000);
        assert_eq!(
            a,
            arrivals(1, r),
            "replication {r}: other arrivals at point 1"
        );
        per_replication.push(a);
    }
    assert_ne!(
        per_replication[0], per_replication[1],
        "replications differ"
    );
}

#[test]
fn shards_of_different_scenario_texts_do_not_merge() {
    // Same name, different outage length: an edited file between two array jobs.
    let text = std::fs::read_to_string(SCENARIO).expect("scenario");
    let edited = text.replace("for = \"30m\"", "for = \"90m\"");
    assert_ne!(text, edited);
    let dir = temp("two-texts");
    std::fs::create_dir_all(&dir).expect("dir");
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, &text).expect("write");
    std::fs::write(&b, &edited).expect("write");
    let (sa, sb) = (dir.join("shard-a"), dir.join("shard-b"));
    for (file, shard, out) in [(&a, "1/2", &sa), (&b, "2/2", &sb)] {
        mailsim(&[
            "sweep",
            file.to_str().expect("utf-8"),
            "--replications",
            "2",
            "--shard",
            shard,
            "--no-plots",
            "--out",
            out.to_str().expect("utf-8"),
        ]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(["merge"])
        .arg(&sa)
        .arg(&sb)
        .args(["--out"])
        .arg(dir.join("merged"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("made from different scenario texts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sweep_too_big_to_hold_is_refused_before_it_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "sweep",
            SCENARIO,
            "--replications",
            "100000000",
            "--no-plots",
            "--out",
        ])
        .arg(temp("huge"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("100000000 runs"), "{err}");
    assert!(err.contains("GiB of results in memory"), "{err}");
}

#[test]
fn runs_csv_has_every_summary_value_and_cut_off_drains_are_empty() {
    // remote-outage stopped at 80 min, with mail still queued: no drain time, counted as
    // undrained; per-destination and per-cause columns are there.
    let text = std::fs::read_to_string(SCENARIO)
        .expect("scenario")
        .replace("stop = \"5h\"", "stop = \"80m\"");
    let dir = temp("cut-off");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("cut.toml");
    std::fs::write(&file, text).expect("write");
    let out = dir.join("sweep");
    mailsim(&[
        "sweep",
        file.to_str().expect("utf-8"),
        "--replications",
        "2",
        "--no-plots",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let runs = read(&out, "runs.csv");
    let header: Vec<&str> = runs.lines().next().expect("header").split(',').collect();
    for col in [
        "notices",
        "backlog_clear_s",
        "deferred_by_cause.connection_refused",
        "deferred_by_cause.suspended",
        "bounced_by_cause.unknown_user",
        "partner.example:delay_p99_s",
        "other.example:sent",
        "peak_maildrop",
    ] {
        assert!(header.contains(&col), "no {col} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    for row in runs.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_ne!(cells[col("queued_at_end")], "0", "{row}");
        assert_eq!(
            cells[col("drain_time_s")],
            "",
            "a cut-off drain is no drain time"
        );
    }
    let points = read(&out, "points.csv");
    let header: Vec<&str> = points.lines().next().expect("header").split(',').collect();
    let undrained = header
        .iter()
        .position(|h| *h == "undrained")
        .expect("undrained");
    let row: Vec<&str> = points.lines().nth(1).expect("row").split(',').collect();
    assert_eq!(row[undrained], "2");
    // The backlog clears at different times for different backoff caps (the old drain
    // time was the end of traffic, 7200 s, everywhere). With a 300-s cap every file is
    // retried at the first scan after the outage (3000 s); with 4000 s the oldest wait
    // for their own clamp(age) backoff. (1000 s and 4000 s tie here: both land on the
    // same 300-s scan tick.)
    let dir = temp("clear");
    mailsim(&[
        "sweep",
        SCENARIO,
        "--set",
        "maximal_backoff_time=300s,4000s",
        "--replications",
        "1",
        "--no-plots",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    let runs = read(&dir, "runs.csv");
    let header: Vec<&str> = runs.lines().next().expect("header").split(',').collect();
    let c = header
        .iter()
        .position(|h| *h == "backlog_clear_s")
        .expect("column");
    let clear: Vec<f64> = runs
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(c).expect("cell").parse().expect("number"))
        .collect();
    assert_eq!(clear.len(), 2);
    assert!(clear[0] + 600.0 < clear[1], "{clear:?}");
    assert!(clear[1] < 7200.0, "{clear:?}");
}
