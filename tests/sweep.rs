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
    // Each wave takes 0.85 s (50 ms deliveries at windows 5, 10, 20, 20, …: 17 waves for 300).
    // So the drain times form two clusters, 20.85–21.85 s and 37.85–39.85 s, 16 s apart: more
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
    };
    let state = mailsim::sweep::run(&spec, &opts).expect("runs");
    let metric = |name: &str| {
        mailsim::sweep::METRICS
            .iter()
            .position(|(n, _)| *n == name)
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
        assert!(
            (d - (pass + 0.85)).abs() < 1e-6,
            "qmgr_start {s}: drain {d}"
        );
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
    // drains at the same instant, the one of qmgr_start = 0 (scans at 0, 5, …: 20.85 s).
    let fixed =
        mailsim::sweep::SweepSpec::new(&text("0s"), "phase.toml", &[], Some(3)).expect("valid");
    let state = mailsim::sweep::run(&fixed, &opts).expect("runs");
    for row in &state.rows {
        assert_eq!(row.metrics[drain], Some(20.85));
        assert_eq!(row.metrics[start], Some(0.0));
    }
}

/// Issue 8: a sweep stopped by SIGINT leaves a checkpoint, and `--resume` finishes it into
/// the same files an uninterrupted sweep writes.
#[cfg(unix)]
#[test]
fn an_interrupted_sweep_resumes_into_identical_files() {
    use std::time::{Duration, Instant};
    let whole = temp("resume-whole");
    let cut = temp("resume-cut");
    // ≈ 600 runs of a few ms each: long enough to be stopped part-way on any machine.
    let args = |out: &Path, jobs: &str| -> Vec<String> {
        [
            "sweep",
            SCENARIO,
            "--set",
            "maximal_backoff_time=1000s,4000s",
            "--replications",
            "300",
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

    let child = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(args(&cut, "1"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mailsim starts");
    std::thread::sleep(Duration::from_millis(500));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let stopped = child.wait_with_output().expect("mailsim ends");
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(stopped.status.code(), Some(130), "{err}");
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
