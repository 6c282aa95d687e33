//! `mailsim run` under stress: SIGINT/SIGTERM in the middle of a run, `--max-events`, the
//! memory estimate, and a run into a folder that holds an earlier run. In every case the
//! folder holds one complete set of results or none, never a mix or a half-written file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mailsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailsim"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-guards-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Hours of simulated traffic to a fast destination: runs for minutes unless stopped.
const LONG: &str = r#"name = "long"
sample = "1m"
[postfix]
maximal_queue_lifetime = "1h"
bounce_queue_lifetime = "1h"
[[traffic]]
to = "fast.test"
rate = "1000/s"
stop = "100h"
[[destination]]
domain = "fast.test"
latency = "1ms"
"#;

fn write_scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Starts a long run into `out`, waits until it is simulating (its temporary deliveries
/// file exists), sends `signal`, and returns what the process said.
#[cfg(unix)]
fn interrupt_long_run(dir: &Path, out: &Path, signal: libc::c_int) -> Output {
    let scenario = write_scenario(dir, "long.toml", LONG);
    let child = mailsim()
        .args(["run", "--no-plots", "--out"])
        .arg(out)
        .arg(&scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mailsim starts");
    let partial = out.join("deliveries.partial.csv");
    let started = Instant::now();
    while !partial.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(partial.exists(), "the run did not start simulating");
    std::thread::sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill failed");
    let waited = Instant::now();
    let output = child.wait_with_output().expect("mailsim ends");
    assert!(
        waited.elapsed() < Duration::from_secs(20),
        "took {:?} to stop",
        waited.elapsed()
    );
    output
}

#[cfg(unix)]
#[test]
fn sigint_stops_a_run_and_leaves_no_partial_or_result_file() {
    let dir = temp_dir("sigint");
    let out = dir.join("results");
    let output = interrupt_long_run(&dir, &out, libc::SIGINT);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: long: stopped at simulated time"),
        "{err}"
    );
    assert!(err.contains("no file of this run was kept"), "{err}");
    assert!(err.contains("holds no complete results"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(files_in(&out), Vec::<String>::new(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn sigterm_keeps_the_earlier_complete_run_intact() {
    let dir = temp_dir("sigterm");
    let out = dir.join("results");
    let status = mailsim()
        .args(["run", "scenarios/baseline.toml", "--no-plots", "--out"])
        .arg(&out)
        .status()
        .expect("runs");
    assert!(status.success());
    let before: Vec<(String, Vec<u8>)> = files_in(&out)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(out.join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "complete",
            "deferred-by-destination.csv",
            "delay-cdf.csv",
            "deliveries.csv",
            "queues.csv",
            "stall.csv",
            "summary.json",
            "timeline.csv"
        ]
    );
    let output = interrupt_long_run(&dir, &out, libc::SIGTERM);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains(
            "still holds the earlier complete run: deliveries.csv, queues.csv, summary.json"
        ),
        "{err}"
    );
    for (name, bytes) in &before {
        let now = std::fs::read(out.join(name)).expect("still there");
        assert!(now == *bytes, "{name} changed");
    }
    assert_eq!(files_in(&out).len(), before.len(), "{:?}", files_in(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn max_events_stops_the_run_with_exit_code_1_and_no_results() {
    let dir = temp_dir("max-events");
    let out = dir.join("results");
    let output = mailsim()
        .args([
            "run",
            "scenarios/baseline.toml",
            "--max-events",
            "1000",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("runs");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("stopped after 1000 events (--max-events 1000)"),
        "{err}"
    );
    assert!(err.contains("no result files were written"), "{err}");
    assert_eq!(files_in(&out), Vec::<String>::new());
    // A cap above what the run needs changes nothing.
    let output = mailsim()
        .args([
            "run",
            "scenarios/baseline.toml",
            "--no-plots",
            "--max-events",
            "1000000",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_huge_run_is_refused_before_it_starts() {
    let dir = temp_dir("huge");
    let huge = write_scenario(
        &dir,
        "huge.toml",
        "name = \"huge\"\n[[traffic]]\nto = \"a.test\"\nmessages = 1000000000\narrivals = \"burst\"\n[[destination]]\ndomain = \"a.test\"\n",
    );
    let started = Instant::now();
    let output = mailsim()
        .args(["run", "--out"])
        .arg(dir.join("out"))
        .arg(&huge)
        .output()
        .expect("runs");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "it ran");
    assert!(
        err.contains("huge.toml: `traffic`: this run may need about"),
        "{err}"
    );
    assert!(err.contains("1000000000 messages queued at once"), "{err}");
    assert!(err.contains("more than the 8.0 GiB limit"), "{err}");
    assert!(err.contains("--force"), "{err}");
    // A millisecond sample without a stop: the run may last until every message expired.
    let fine = write_scenario(
        &dir,
        "fine.toml",
        "name = \"fine\"\nsample = \"1ms\"\n[[traffic]]\nto = \"a.test\"\nmessages = 10\nrate = \"1/s\"\n[[destination]]\ndomain = \"a.test\"\n",
    );
    let output = mailsim()
        .args(["run", "--out"])
        .arg(dir.join("out"))
        .arg(&fine)
        .output()
        .expect("runs");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fine.toml: `sample`: this run may need"),
        "{err}"
    );
    assert!(err.contains("or a `stop`"), "{err}");
    // --force runs it anyway (this one is small in fact: everything is delivered at once).
    let output = mailsim()
        .args(["run", "--force", "--no-plots", "--no-deliveries", "--out"])
        .arg(dir.join("out"))
        .arg(&fine)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_run_replaces_the_whole_set_of_an_earlier_one() {
    let dir = temp_dir("replace");
    let out = dir.join("results");
    let run = |extra: &[&str]| {
        let output = mailsim()
            .args(["run", "scenarios/baseline.toml", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{}", stderr(&output));
    };
    run(&[]);
    assert_eq!(
        files_in(&out),
        [
            "complete",
            "deferred-by-destination.csv",
            "deferred-by-destination.png",
            "deferred-by-destination.svg",
            "delay-cdf.csv",
            "delays.png",
            "delays.svg",
            "deliveries.csv",
            "queues.csv",
            "queues.png",
            "queues.svg",
            "stall.csv",
            "stall.png",
            "stall.svg",
            "summary.json",
            "timeline.csv"
        ]
    );
    run(&["--no-plots", "--no-deliveries", "--seed", "9"]);
    // The earlier deliveries and plots belonged to another seed: they are gone.
    assert_eq!(
        files_in(&out),
        [
            "complete",
            "deferred-by-destination.csv",
            "delay-cdf.csv",
            "queues.csv",
            "stall.csv",
            "summary.json",
            "timeline.csv"
        ]
    );
    let marker = std::fs::read_to_string(out.join("complete")).expect("marker");
    assert_eq!(
        marker,
        "# mailsim: one complete run of scenario baseline with seed 9\nqueues.csv\nsummary.json\nstall.csv\ntimeline.csv\ndelay-cdf.csv\ndeferred-by-destination.csv\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
