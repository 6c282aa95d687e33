//! The synthetic mail.log: Postfix's line formats, readable by Debian's pflogsumm with counts
//! that match summary.json.

use std::path::PathBuf;
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-log-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn run_with_log(scenario: &str, dir: &std::path::Path) -> (String, serde_json::Value) {
    let log = dir.join("mail.log");
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "run",
            scenario,
            "--no-plots",
            "--out",
            dir.to_str().expect("utf-8"),
            "--maillog",
            log.to_str().expect("utf-8"),
        ])
        .output()
        .expect("mailsim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("mail.log");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
            .expect("json");
    (text, summary)
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no {key}"))
}

/// The number in front of `label` in pflogsumm's "Grand Totals".
fn grand_total(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let count = words.next()?;
            (words.next() == Some(label))
                .then(|| count.trim_end_matches(['k', 'm']).parse().ok())?
        })
        .unwrap_or_else(|| panic!("pflogsumm reports no `{label}`:\n{report}"))
}

#[test]
fn pflogsumm_counts_match_the_summary() {
    let setup = Command::new("bash")
        .arg("tests/setup/pflogsumm.sh")
        .output()
        .expect("bash runs");
    let pflogsumm = String::from_utf8_lossy(&setup.stdout).trim().to_string();
    assert!(
        setup.status.success() && !pflogsumm.is_empty(),
        "pflogsumm is not installed and tests/setup/pflogsumm.sh could not install it (needs apt-get as root)"
    );
    // Through every path a recipient can take: bounces and rejections, a dead destination
    // and the retry service, expiry with notices, the content filter (which, as on a real
    // log, counts each message twice: received from outside and re-injected; delivered to
    // the filter and delivered), postsuper -d.
    // The two biggest ones are cut down (fewer messages, a shorter stream) to keep the
    // test quick.
    for (scenario, from, to) in [
        ("rejections", "messages = 20000", "messages = 4000"),
        ("remote-outage", "", ""),
        ("expiry", "", ""),
        ("slow-content-filter", "stop = \"3h\"", "stop = \"30m\""),
        ("delete-deferred", "", ""),
    ] {
        let dir = temp(&format!("pflogsumm-{scenario}"));
        let text = std::fs::read_to_string(format!("scenarios/{scenario}.toml"))
            .expect("scenario")
            .replace(from, to);
        let file = dir.join(format!("{scenario}.toml"));
        std::fs::write(&file, text).expect("write");
        let (log, summary) = run_with_log(file.to_str().expect("utf-8"), &dir);
        let out = Command::new(&pflogsumm)
            .arg(dir.join("mail.log"))
            .output()
            .expect("pflogsumm runs");
        assert!(out.status.success());
        let report = String::from_utf8_lossy(&out.stdout);
        let filtered = n(&summary, "filtered");
        assert_eq!(
            grand_total(&report, "delivered"),
            n(&summary, "sent") + filtered,
            "{scenario}"
        );
        assert_eq!(
            grand_total(&report, "bounced"),
            n(&summary, "bounced"),
            "{scenario}"
        );
        assert_eq!(
            grand_total(&report, "received"),
            n(&summary, "messages") + filtered,
            "{scenario}"
        );
        // "N deferred (M deferrals)": M counts every deferral line ("0 deferred" alone
        // when there are none).
        let deferrals: u64 = match report
            .lines()
            .find_map(|l| l.split_once("deferred  (").map(|(_, rest)| rest))
        {
            Some(rest) => rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .expect("pflogsumm's deferrals"),
            None => grand_total(&report, "deferred"),
        };
        assert_eq!(
            deferrals,
            n(&summary, "deferrals") + n(&summary, "suspended_deferrals"),
            "{scenario}"
        );
        assert!(log.lines().count() > 1000, "{scenario}");
    }
}

#[test]
fn log_lines_have_postfix_shapes() {
    let dir = temp("shapes");
    let (log, _) = run_with_log("scenarios/remote-outage.toml", &dir);
    // The pattern pflogsumm and most log tools use for delivery lines.
    let status_lines: Vec<&str> = log.lines().filter(|l| l.contains(" status=")).collect();
    assert!(!status_lines.is_empty());
    for l in status_lines.iter().take(2000) {
        let (head, rest) = l.split_once(": ").expect("prefix");
        let fields: Vec<&str> = head.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{l}");
        assert!(
            fields[4].starts_with("postfix/") && fields[4].ends_with(']'),
            "{l}"
        );
        let (qid, rest) = rest.split_once(": ").expect("queue id");
        assert!(
            qid.len() == 10 && qid.chars().all(|c| c.is_ascii_hexdigit()),
            "{l}"
        );
        assert!(rest.starts_with("to=<"), "{l}");
        for key in [", relay=", ", delay=", ", delays=", ", dsn=", ", status="] {
            assert!(rest.contains(key), "{key} missing: {l}");
        }
    }
    // The dead destination's deferrals come from the retry service, with relay=none.
    assert!(log.lines().any(|l| l.contains("postfix/error[")
        && l.contains("relay=none")
        && l.contains(
            "status=deferred (delivery temporarily suspended: connect to partner.example["
        )));
    assert!(log.lines().any(|l| l.contains("postfix/smtp[")
        && l.ends_with("Connection refused")
        && l.contains(": connect to partner.example[")));
    assert!(log.lines().any(|l| l.ends_with("(queue active)")));
    assert!(log.lines().any(|l| l.ends_with(": removed")));
}

fn mailsim_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(args)
        .output()
        .expect("mailsim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn mailq_and_qshape_show_a_deferred_message_by_hand() {
    // One message at 0 s to a server that refuses connections: deferred with the reason.
    let dir = temp("mailq");
    let scenario = dir.join("refused.toml");
    std::fs::write(
        &scenario,
        r#"
name = "refused"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
kind = "refuse"
target = "d.test"
"#,
    )
    .expect("write");
    let path = scenario.to_str().expect("utf-8");
    let text = mailsim_stdout(&["mailq", path, "--at", "60s"]);
    let qid = mailsim::output::maillog::queue_id(1);
    let expected = format!(
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
{qid}    10000 Mon Mar  2 08:00:00  sender@example.org
                         (connect to d.test[192.0.2.1]:25: Connection refused)
                                         user0.1@d.test

-- 9 Kbytes in 1 Request.
"
    );
    assert_eq!(text, expected);
    let json = mailsim_stdout(&["mailq", path, "--at", "60s", "--json"]);
    assert!(json.starts_with("{\"queue_name\": \"deferred\""));
    assert!(json.contains("\"arrival_time\": 1772438400"));
    // 12 minutes old: the 20-minute bucket ([10, 20) min). qshape.pl 3.7.22 printed this
    // for such a deferred file (columns at least 3 wide, TOTAL before the longer d.test).
    let table = mailsim_stdout(&["qshape", path, "--at", "12m", "deferred"]);
    assert_eq!(
        table,
        "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                  TOTAL  1  0  0  1  0  0   0   0   0    0     0
                                 d.test  1  0  0  1  0  0   0   0   0    0     0
"
    );
}

#[test]
fn explain_tells_a_greylisted_messages_life() {
    let story = mailsim_stdout(&["explain", "scenarios/greylisting.toml", "--message", "3"]);
    let lines: Vec<&str> = story.lines().collect();
    let find = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{story}"))
    };
    let received = find("received by smtpd");
    let deferred = find("deferred by the smtp agent");
    let backoff = find(
        "backoff = clamp(age 0 s, minimal_backoff_time 300 s, maximal_backoff_time 4000 s) = 300 s",
    );
    let scan = find("deferred-queue scan (every queue_run_delay = 300 s): the file is due");
    let sent = find("delivered by the smtp agent");
    assert!(received < deferred && deferred < backoff && backoff < scan && scan < sent);
    assert!(story.contains("Greylisted"));
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("backoff") && l.contains('%'))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "explain",
            "scenarios/greylisting.toml",
            "--message",
            "999999",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never arrived"));
}

#[test]
fn log_scans_shows_the_deferred_scan_clock_with_its_phase() {
    // qmgr started 2 min before the run: scans at 3, 8, 13 … minutes past the start date.
    let dir = temp("scans");
    let scenario = dir.join("phase.toml");
    let text = std::fs::read_to_string("scenarios/greylisting.toml")
        .expect("scenario")
        .replace("seed = 7", "seed = 7\nqmgr_start = \"-2m\"");
    std::fs::write(&scenario, text).expect("write");
    let log = dir.join("mail.log");
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "run",
            scenario.to_str().expect("utf-8"),
            "--no-plots",
            "--out",
        ])
        .arg(&dir)
        .args(["--maillog", log.to_str().expect("utf-8"), "--log-scans"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scans: Vec<String> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .filter(|l| l.ends_with("qmgr_scan_start: start deferred queue scan"))
        .take(3)
        .map(|l| l[7..15].to_string())
        .collect();
    assert_eq!(scans, ["08:03:00", "08:08:00", "08:13:00"]);
}

#[test]
fn explain_follows_a_reload_a_flush_and_a_filter_copy() {
    // postconf -e then postfix reload at 20 s: the new qmgr's rules are the new values
    // (queue_run_delay 60 s from 20 s: scans at 80, 140 … 320 s; backoff clamped to
    // [60, 120] s). The message was deferred at 0 s with the old rules (300 s).
    let dir = temp("explain-reload");
    let scenario = dir.join("reload.toml");
    std::fs::write(
        &scenario,
        r#"
name = "reload"
stop = "30m"
[[traffic]]
to = "b.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "b.test"
latency = "1s"
[[fault]]
at = "0s"
kind = "refuse"
target = "b.test"
[[admin]]
at = "10s"
command = "postconf -e 'queue_run_delay = 60s' 'minimal_backoff_time = 60s' 'maximal_backoff_time = 120s'"
[[admin]]
at = "20s"
command = "postfix reload"
"#,
    )
    .expect("write");
    let story = mailsim_stdout(&[
        "explain",
        scenario.to_str().expect("utf-8"),
        "--message",
        "1",
    ]);
    assert!(story.contains("with time stamp 300 s: backoff = clamp(age 0 s, minimal_backoff_time 300 s, maximal_backoff_time 4000 s) = 300 s"), "{story}");
    assert!(story.contains("         320 s  deferred-queue scan (every queue_run_delay = 60 s): the file is due (time stamp 300 s <= now + 1 s)"), "{story}");
    assert!(story.contains("with time stamp 440 s: backoff = clamp(age 320 s, minimal_backoff_time 60 s, maximal_backoff_time 120 s) = 120 s"), "{story}");

    // outage-flush: the flush at 3000 s says why the file is active, and nothing is said
    // about scans once the file is gone.
    let story = mailsim_stdout(&[
        "explain",
        "scenarios/outage-flush.toml",
        "--message",
        "5400",
    ]);
    let lines: Vec<&str> = story.lines().collect();
    let active = lines
        .iter()
        .position(|l| l.contains("into the active queue (after postqueue -f at 3000 s"))
        .unwrap_or_else(|| panic!("{story}"));
    let removed = lines
        .iter()
        .position(|l| l.contains("removed: nothing left to deliver"))
        .expect("removed");
    assert!(active < removed);
    assert!(
        lines[removed..]
            .iter()
            .all(|l| !l.contains("deferred-queue scan")),
        "{story}"
    );
    assert!(
        story.contains("partner.example is dead for qmgr: declared dead"),
        "{story}"
    );

    // A re-injected copy's id points at the message it belongs to (exit 2).
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "explain",
            "scenarios/slow-content-filter.toml",
            "--message",
            "3000",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3000 is the queue file the content filter re-injected for message"),
        "{err}"
    );
}
