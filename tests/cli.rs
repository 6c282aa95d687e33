//! The `mailsim` binary: determinism of its files, and bad input giving one clear error
//! with exit code 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn mailsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailsim"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn run_baseline(out: &Path, seed: Option<&str>) {
    let mut cmd = mailsim();
    cmd.args(["run", "scenarios/baseline.toml", "--no-plots", "--out"])
        .arg(out);
    if let Some(s) = seed {
        cmd.args(["--seed", s]);
    }
    let status = cmd.status().expect("runs");
    assert!(status.success());
}

#[test]
fn same_seed_gives_byte_identical_files_and_another_seed_differs() {
    let base = temp_dir("determinism");
    let (a, b, c) = (base.join("a"), base.join("b"), base.join("c"));
    run_baseline(&a, None);
    run_baseline(&b, None);
    run_baseline(&c, Some("8"));
    for f in ["queues.csv", "deliveries.csv", "summary.json"] {
        assert_eq!(
            read(&a.join(f)),
            read(&b.join(f)),
            "{f} differs between identical runs"
        );
        assert_ne!(
            read(&a.join(f)),
            read(&c.join(f)),
            "{f} does not depend on the seed"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&a)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn a_run_writes_csv_summary_and_plots() {
    let out = temp_dir("plots");
    let status = mailsim()
        .args(["run", "scenarios/baseline.toml", "--out"])
        .arg(&out)
        .status()
        .expect("runs");
    assert!(status.success());
    let png = read(&out.join("queues.png"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = String::from_utf8(read(&out.join("queues.svg"))).expect("utf-8");
    assert!(svg.contains("baseline: Postfix queue sizes"));
    assert!(svg.contains("deferred"));
    let csv = String::from_utf8(read(&out.join("queues.csv"))).expect("utf-8");
    assert!(csv.starts_with("time_s,maildrop,incoming,active,deferred,hold,free_bytes\n0,"));
    let summary: serde_json::Value =
        serde_json::from_slice(&read(&out.join("summary.json"))).expect("json");
    for key in [
        "messages",
        "recipients",
        "sent",
        "bounced",
        "expired",
        "deleted",
        "queued_at_end",
        "attempts",
        "drain_time_s",
        "delay_s",
        "peak",
        "events",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(summary["messages"], 2000);
}

/// Runs `check` on `text`; returns (exit code, stderr).
fn check_text(name: &str, text: &str) -> (i32, String) {
    let dir = temp_dir(name);
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).expect("write");
    let out = mailsim().arg("check").arg(&path).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"name = "x"
[postfix]
queue_run_delay = "10s"
[[traffic]]
to = "d1.test"
messages = 10
rate = "5/s"
[[destination]]
domain = "d1.test"
tempfail = 0.3
"#;

#[test]
fn a_good_scenario_checks_ok() {
    let (code, err) = check_text("good", GOOD);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn unknown_key_names_file_line_key_and_near_miss() {
    let (code, err) = check_text(
        "unknown-key",
        &GOOD.replace("tempfail = 0.3", "tempfial = 0.3"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:10"), "{err}");
    assert!(err.contains("tempfial"), "{err}");
    assert!(err.contains("did you mean `tempfail`"), "{err}");
}

#[test]
fn unknown_postfix_parameter_suggests_the_real_one() {
    let (code, err) = check_text(
        "unknown-param",
        &GOOD.replace("queue_run_delay", "queue_run_dleay"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("did you mean `queue_run_delay`"), "{err}");
}

#[test]
fn bad_unit_is_rejected_with_the_accepted_units() {
    let (code, err) = check_text("bad-unit", &GOOD.replace("\"10s\"", "\"5 dayz\""));
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("queue_run_delay"), "{err}");
    assert!(err.contains("s, m, h, d, w"), "{err}");
}

#[test]
fn negative_rate_is_rejected() {
    let (code, err) = check_text("negative-rate", &GOOD.replace("5/s", "-5/s"));
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:7"), "{err}");
    assert!(err.contains("rate"), "{err}");
    assert!(err.contains("positive"), "{err}");
}

#[test]
fn probability_above_one_and_unknown_destination_are_rejected() {
    let (code, err) = check_text("prob", &GOOD.replace("0.3", "1.5"));
    assert_eq!(code, 2);
    assert!(
        err.contains("tempfail") && err.contains("probability"),
        "{err}"
    );
    let (code, err) = check_text(
        "dest",
        &GOOD.replace("to = \"d1.test\"", "to = \"d2.test\""),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("d2.test") && err.contains("did you mean `d1.test`"),
        "{err}"
    );
}

#[test]
fn syntax_error_missing_file_directory_and_empty_file() {
    let (code, err) = check_text("syntax", "name = \"x\n");
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:1"), "{err}");
    let (code, err) = check_text("empty", "");
    assert_eq!(code, 2);
    assert!(err.contains("empty"), "{err}");
    let out = mailsim()
        .args(["check", "no/such/file.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.toml"));
    let out = mailsim()
        .args(["check", "scenarios"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory"));
}

#[test]
fn lifetime_without_unit_is_days_and_over_100_days_is_an_error() {
    // Postfix reads a bare 600 as 600 days, over its 100-day maximum (§11).
    let (code, err) = check_text(
        "lifetime",
        &GOOD.replace("queue_run_delay = \"10s\"", "maximal_queue_lifetime = 600"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn unmodelled_postfix_parameter_is_a_warning_not_silence() {
    let (code, err) = check_text(
        "warn",
        &GOOD.replace("queue_run_delay = \"10s\"", "smtp_rcpt_timeout = \"60s\""),
    );
    assert_eq!(code, 0);
    assert!(
        err.contains("warning") && err.contains("smtp_rcpt_timeout"),
        "{err}"
    );
}

#[test]
fn every_shipped_scenario_checks() {
    for entry in std::fs::read_dir("scenarios").expect("scenarios/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = mailsim().arg("check").arg(&path).output().expect("runs");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn an_open_stream_with_its_own_stop_needs_no_global_stop() {
    let text = GOOD.replace("messages = 10\n", "stop = \"10s\"\n");
    let (code, err) = check_text("open-stream", &text);
    assert_eq!(code, 0, "{err}");
    let text = GOOD.replace("messages = 10\n", "");
    let (code, err) = check_text("open-stream-no-stop", &text);
    assert_eq!(code, 2);
    assert!(err.contains("stop"), "{err}");
}

#[test]
fn a_domain_that_would_break_csv_is_rejected() {
    let (code, err) = check_text(
        "domain",
        &GOOD.replace("domain = \"d1.test\"", "domain = \"d1,test\""),
    );
    assert_eq!(code, 2);
    assert!(err.contains("domain"), "{err}");
}

/// The number just before the word `word` in `text` (`"… 4030 events per run …"`).
fn number_before(text: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == word)
        .and_then(|w| w[0].parse().ok())
}

#[test]
fn bench_counts_the_events_of_the_run_it_times() {
    // Wall times are printed, never checked; what the benchmark ran must be the scenario.
    let out = mailsim()
        .args([
            "bench",
            "--scenario",
            "scenarios/baseline.toml",
            "--repeat",
            "1",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = temp_dir("bench-baseline");
    run_baseline(&dir, None);
    let summary = String::from_utf8_lossy(&read(&dir.join("summary.json"))).into_owned();
    let json: serde_json::Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(number_before(&text, "messages"), json["messages"].as_u64());
    assert_eq!(number_before(&text, "events"), json["events"].as_u64());

    let out = mailsim()
        .args([
            "bench",
            "engine",
            "--pending",
            "10,20",
            "--events",
            "1000",
            "--repeat",
            "1",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(number_before(&text, "pending:"), Some(10), "{text}");
}

#[test]
fn bench_memory_child_reports_its_case() {
    // The parent reads `peak_kib peak_queued messages events seconds` from each child.
    let out = mailsim()
        .args([
            "bench",
            "memory",
            "--child",
            "growing-queue",
            "--messages",
            "3000",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|f| f.parse().expect("number"))
        .collect();
    assert_eq!(fields.len(), 5);
    assert!(fields[0] > 0.0, "peak RSS in KiB");
    assert!(
        fields[1] > 0.0 && fields[1] <= 3000.0,
        "queue files at a sample"
    );
    assert_eq!(fields[2], 3000.0, "messages");
    let bad = mailsim()
        .args([
            "bench",
            "memory",
            "--child",
            "no-such-case",
            "--messages",
            "10",
        ])
        .output()
        .expect("runs");
    assert_ne!(bad.status.code(), Some(0));
}
