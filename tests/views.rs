//! What admins read — mail.log lines and `mailq` — against texts written by hand from
//! Postfix's own formats (`log_adhoc.c`, `smtp_trouble.c`, `qmgr_deliver.c`,
//! `showq_compat.c`, `showq_json.c` in 3.7.22) for small scenarios whose timelines can be
//! worked out on paper.

use std::path::{Path, PathBuf};
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-views-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn mailsim(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args(args)
        .output()
        .expect("mailsim runs");
    assert!(
        out.status.success(),
        "mailsim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Writes `text` as a scenario in a fresh folder.
fn scenario(name: &str, text: &str) -> (PathBuf, String) {
    let dir = temp(name);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    let p = path.to_str().expect("utf-8").to_string();
    (dir, p)
}

/// The mail.log of a run, without the time stamp and host (`postfix/…[pid]: text`).
fn log_of(dir: &Path, path: &str) -> Vec<String> {
    let log = dir.join("mail.log");
    mailsim(&[
        "run",
        path,
        "--no-plots",
        "--out",
        dir.join("out").to_str().expect("utf-8"),
        "--maillog",
        log.to_str().expect("utf-8"),
    ]);
    std::fs::read_to_string(&log)
        .expect("mail.log")
        .lines()
        .map(|l| l.splitn(5, ' ').nth(4).unwrap_or("").to_string())
        .collect()
}

fn qid(id: u64) -> String {
    mailsim::output::maillog::queue_id(id)
}

/// Seven messages at 0 s to a destination whose two MX hosts both refuse connections.
const BOTH_MX_REFUSE: &str = r#"
name = "both-mx"
stop = "200s"
[[traffic]]
to = "d.test"
messages = 7
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
mx = [ { host = "mx1.d.test", preference = 10 }, { host = "mx2.d.test", preference = 20 } ]
[[fault]]
at = "0s"
kind = "refuse"
target = "d.test"
"#;

#[test]
fn a_dead_queue_repeats_the_reason_of_the_failure_that_killed_it() {
    // The first failed deliveries kill the queue (failed cohort limit 1, §5.2); messages
    // that become active after that go to the retry service, which logs the DSN qmgr
    // saved: the killing failure's own text, prefixed (qmgr_deliver.c, `SUSPENDED`). Each
    // delivery tried mx1 and then mx2, so the last error — the one logged — names mx2.
    let (dir, path) = scenario("both-mx", BOTH_MX_REFUSE);
    let log = log_of(&dir, &path);
    let refused = "connect to mx2.d.test[192.0.2.2]:25: Connection refused";
    let smtp: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("postfix/smtp[") && l.contains(" status=deferred"))
        .collect();
    let retry: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("postfix/error["))
        .collect();
    assert_eq!(smtp.len() + retry.len(), 7, "{log:#?}");
    assert!(!smtp.is_empty() && !retry.is_empty(), "{log:#?}");
    for l in &smtp {
        assert!(
            l.ends_with(&format!("dsn=4.4.1, status=deferred ({refused})")),
            "{l}"
        );
    }
    for l in &retry {
        assert!(
            l.ends_with(&format!(
                "relay=none, delay=0, delays=0/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: {refused})"
            )),
            "{l}"
        );
    }
    // mailq shows the same texts as the defer log has them: 55 characters are padded
    // with 76 − 55 = 21 spaces, the 87-character suspended reason with none.
    let q = mailsim(&["mailq", &path, "--at", "60s"]);
    let mut expected =
        String::from("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    for id in 1..=7u64 {
        let suspended = id > smtp.len() as u64;
        let reason = if suspended {
            format!("(delivery temporarily suspended: {refused})")
        } else {
            format!("                     ({refused})")
        };
        expected.push_str(&format!(
            "{}    10000 Mon Mar  2 08:00:00  sender@example.org\n{reason}\n                                         user0.{id}@d.test\n\n",
            qid(id)
        ));
    }
    expected.push_str("-- 68 Kbytes in 7 Requests.\n");
    assert_eq!(q, expected);
    assert!(!q.contains("192.0.2.255") && !log.iter().any(|l| l.contains("192.0.2.255")));
}

#[test]
fn mailq_names_the_server_that_answered() {
    // mx1 refuses connections, mx2 greylists: the recipient is deferred with mx2's reply,
    // in the log and in the defer log alike.
    let (dir, path) = scenario(
        "answered",
        r#"
name = "answered"
stop = "1h"
[[traffic]]
to = "t.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "t.test"
latency = "1s"
greylist = { delay = "300s", auto_whitelist = 0 }
mx = [ { host = "mx1.t.test", preference = 10 }, { host = "mx2.t.test", preference = 20 } ]
[[fault]]
at = "0s"
kind = "refuse"
target = "mx1.t.test"
"#,
    );
    let reason = "host mx2.t.test[192.0.2.2] said: 450 4.2.0 <user0.1@t.test>: Recipient address rejected: Greylisted, please try again later (in reply to RCPT TO command)";
    let log = log_of(&dir, &path);
    assert!(
        log.iter()
            .any(|l| l.ends_with(&format!("status=deferred ({reason})"))),
        "{log:#?}"
    );
    let q = mailsim(&["mailq", &path, "--at", "60s"]);
    assert_eq!(
        q,
        format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
{}    10000 Mon Mar  2 08:00:00  sender@example.org
({reason})
                                         user0.1@t.test

-- 9 Kbytes in 1 Request.
",
            qid(1)
        )
    );
}

/// One message with four recipients at 0 s: one to a.test, three to b.test, whose server
/// is unreachable (`kind`) for the first 400 s.
fn four_recipients(kind: &str) -> String {
    format!(
        r#"
name = "four"
stop = "1h"
[[traffic]]
to = {{ "a.test" = 1, "b.test" = 1 }}
messages = 1
recipients = 4
arrivals = "burst"
[[destination]]
domain = "a.test"
latency = "1s"
[[destination]]
domain = "b.test"
latency = "1s"
[[fault]]
at = "0s"
for = "400s"
kind = "{kind}"
target = "b.test"
"#
    )
}

#[test]
fn an_active_message_has_no_defer_log() {
    // Blackhole: the b.test delivery at 0 s times out at 30 s; the file is deferred with
    // mtime 30 + 300 = 330 s, which the 300-s scan skips (330 > 300 + 1) and the 600-s
    // scan takes. At 600.5 s it is in the active queue again, its second delivery under
    // way (the fault ended at 400 s): qmgr removed the defer log when it read the file,
    // and showq lists defer-log records only.
    let text = four_recipients("blackhole");
    let (_dir, path) = scenario("active", &text);
    let q = mailsim(&["mailq", &path, "--at", "600.5s"]);
    assert_eq!(
        q,
        format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
{}*   10000 Mon Mar  2 08:00:00  sender@example.org
                                         user1.1@b.test
                                         user2.1@b.test
                                         user3.1@b.test

-- 9 Kbytes in 1 Request.
",
            qid(1)
        )
    );
    let j = mailsim(&["mailq", &path, "--at", "600.5s", "--json"]);
    assert_eq!(
        j,
        format!(
            "{{\"queue_name\": \"active\", \"queue_id\": \"{}\", \"arrival_time\": 1772438400, \"message_size\": 10000, \"forced_expire\": false, \"sender\": \"sender@example.org\", \"recipients\": [{{\"address\": \"user1.1@b.test\"}}, {{\"address\": \"user2.1@b.test\"}}, {{\"address\": \"user3.1@b.test\"}}]}}\n",
            qid(1)
        )
    );
    // Between rounds the defer log is there (deferred at 330 s, before the 600 s scan).
    let between = mailsim(&["mailq", &path, "--at", "400s"]);
    assert!(
        between.contains(
            "(connect to b.test[192.0.2.2]:25: Connection timed out)\n                                         user1.1@b.test"
        ),
        "{between}"
    );
}

#[test]
fn one_agent_logs_a_whole_request_and_qmgr_logs_the_original_recipient_count() {
    // Refused until 400 s: tries at 0, 300 (both refused) and 600 s (delivered).
    let text = four_recipients("refuse");
    let (dir, path) = scenario("four", &text);
    let log = log_of(&dir, &path);
    // The smtpd session around the message, as collate.pl needs it to find its end.
    let smtpd: Vec<&str> = log
        .iter()
        .filter_map(|l| l.strip_prefix("postfix/smtpd["))
        .map(|l| l.split_once("]: ").map_or("", |(_, t)| t))
        .collect();
    assert_eq!(
        smtpd,
        [
            "connect from client.example.org[198.51.100.200]".to_string(),
            format!("{}: client=client.example.org[198.51.100.200]", qid(1)),
            "disconnect from client.example.org[198.51.100.200] ehlo=1 mail=1 rcpt=4 data=1 quit=1 commands=8".to_string(),
        ]
    );
    // qmgr's nrcpt= is the size record's count at every activation (qmgr_message.c), 4,
    // although only three recipients are left after the first round.
    let active: Vec<&String> = log
        .iter()
        .filter(|l| l.ends_with("(queue active)"))
        .collect();
    assert_eq!(active.len(), 3, "{log:#?}");
    for l in &active {
        assert!(
            l.ends_with("from=<sender@example.org>, size=10000, nrcpt=4 (queue active)"),
            "{l}"
        );
    }
    // In each round one smtp process handles the b.test request: its connect line and
    // its three status lines have one pid; the three delivered at 600 s share one DATA
    // and so one remote queue ID.
    let pid = |l: &str| {
        l.split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(p, _)| p.to_string())
    };
    let b_lines: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("@b.test") || l.contains("connect to b.test"))
        .collect();
    assert_eq!(b_lines.len(), 2 * 4 + 3, "{b_lines:#?}");
    for round in b_lines.chunks(4).take(2) {
        assert!(round[0].ends_with("connect to b.test[192.0.2.2]:25: Connection refused"));
        let p = pid(round[0]);
        assert!(round.iter().all(|l| pid(l) == p), "{round:#?}");
    }
    let sent = &b_lines[8..];
    let remote = |l: &str| l.rsplit_once("queued as ").map(|(_, id)| id.to_string());
    assert!(sent.iter().all(|l| l.contains("status=sent")));
    assert!(
        sent.iter()
            .all(|l| pid(l) == pid(sent[0]) && remote(l) == remote(sent[0]))
    );
    // a.test's delivery ran beside b.test's first try: another process, and another
    // transaction than the one at 600 s.
    let a = log
        .iter()
        .find(|l| l.contains("@a.test"))
        .expect("a.test line");
    assert_ne!(pid(a), pid(b_lines[0]));
    assert_ne!(remote(a), remote(sent[0]));
}

#[test]
fn soft_errors_at_a_server_that_is_not_the_last_are_logged() {
    // smtp_trouble.c: a 4xx at a non-final server is logged as `QID: <reason>` and the
    // recipients go on to the next MX (here mx2, which accepts): once per session for the
    // greeting and MAIL FROM (smtp_bulk_fail), once per recipient at RCPT (smtp_rcpt_fail).
    let q = qid(1);
    for (stage, line) in [
        (
            "greeting",
            "host mx1.t.test[192.0.2.1] refused to talk to me: 421 4.7.0 Service not available, closing transmission channel".to_string(),
        ),
        (
            "mail",
            "host mx1.t.test[192.0.2.1] said: 451 4.3.0 Temporary local problem, try again later (in reply to MAIL FROM command)".to_string(),
        ),
        (
            "rcpt",
            "host mx1.t.test[192.0.2.1] said: 450 4.2.0 <user0.1@t.test>: Temporary failure, try again later (in reply to RCPT TO command)".to_string(),
        ),
    ] {
        let text = format!(
            r#"
name = "skip"
stop = "1h"
[[traffic]]
to = "t.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "t.test"
latency = "1s"
mx = [ {{ host = "mx1.t.test", preference = 10 }}, {{ host = "mx2.t.test", preference = 20 }} ]
[[fault]]
at = "0s"
kind = "tempfail"
stage = "{stage}"
target = "mx1.t.test"
"#
        );
        let (dir, path) = scenario(&format!("skip-{stage}"), &text);
        let log = log_of(&dir, &path);
        let info = format!("{q}: {line}");
        let at = log
            .iter()
            .position(|l| l.ends_with(&info))
            .unwrap_or_else(|| panic!("{stage}: no `{info}` in {log:#?}"));
        let sent = &log[at + 1];
        assert!(
            sent.contains("relay=mx2.t.test[192.0.2.2]:25") && sent.contains("status=sent"),
            "{stage}: {sent}"
        );
        assert_eq!(log.iter().filter(|l| l.contains("mx1.t.test")).count(), 1);
    }
}

/// collate.pl's grouping (auxiliary/collate): smtp lines without a queue ID are buffered
/// per process id and belong to the next `QID: to=` line of that process.
#[test]
fn connect_lines_belong_to_the_deferral_of_the_same_process() {
    let dir = temp("collate");
    let log = log_of(&dir, "scenarios/remote-outage.toml");
    let mut pending: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut groups = 0;
    for l in &log {
        let Some((tag, text)) = l.split_once(": ") else {
            continue;
        };
        if !tag.starts_with("postfix/smtp[") {
            continue;
        }
        if text.starts_with("connect to ") {
            pending
                .entry(tag.to_string())
                .or_default()
                .push(text.to_string());
        } else if let Some((_, status)) = text.split_once(" to=<")
            && let Some(connects) = pending.remove(tag)
        {
            // The failed connects of this request come before its first status line, and
            // the last one is the error its recipients were deferred with.
            let last = connects.last().expect("a buffered line");
            assert!(
                status.ends_with(&format!("status=deferred ({last})")),
                "{l}"
            );
            groups += 1;
        }
    }
    // Hundreds of refused deliveries before the queue dies each time (634 with seed 5).
    assert!(groups > 500, "{groups}");
    assert!(
        pending.is_empty(),
        "connect lines nobody's status followed: {pending:?}"
    );
}

/// One message at 0 s to a blackholed b.test: its delivery hangs in the connect timeout
/// until 30 s, and `admin` acts on it at 10 s, while it is active.
fn postsuper_while_active(admin: &str) -> String {
    format!(
        r#"
name = "active-admin"
stop = "1h"
[[traffic]]
to = "b.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "b.test"
latency = "1s"
[[fault]]
at = "0s"
for = "60s"
kind = "blackhole"
target = "b.test"
{admin}
"#
    )
}

#[test]
fn postsuper_on_an_active_file_logs_at_once_and_qmgr_warns_when_it_lets_go() {
    // postsuper renames or removes the file at once and logs it when it is named by its
    // queue ID (postsuper.c: hold_one, release_one, delete_one; ALL only counts); the
    // agent's try still ends at 30 s, and qmgr's own rename to deferred/ then finds nothing
    // (qmgr_active.c: qmgr_active_defer).
    let q = qid(1);
    let warning = format!(
        "postfix/qmgr[880]: warning: qmgr_active_defer: rename {q} from active to deferred: No such file or directory"
    );
    let text = postsuper_while_active(&format!(
        "[[admin]]\nat = \"10s\"\ncommand = \"postsuper -h {q}\"\n[[admin]]\nat = \"1000s\"\ncommand = \"postsuper -H {q}\""
    ));
    let (dir, path) = scenario("hold-active", &text);
    let log = std::fs::read_to_string({
        log_of(&dir, &path);
        dir.join("mail.log")
    })
    .expect("log");
    let lines: Vec<&str> = log.lines().collect();
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.ends_with(needle))
            .map(|l| &l[7..15])
            .unwrap_or_else(|| panic!("no `{needle}` in {log}"))
    };
    assert_eq!(find(&format!("{q}: placed on hold")), "08:00:10");
    assert_eq!(find(&warning), "08:00:30");
    assert_eq!(find(&format!("{q}: released from hold")), "08:16:40");
    // Released at 1000 s with its old time stamp (330 s, long past): the 1200-s scan.
    let sent = lines
        .iter()
        .find(|l| l.contains("status=sent (250 2.0.0 Ok: queued as "))
        .expect("delivered");
    assert_eq!(&sent[7..15], "08:20:01", "{sent}");

    let text = postsuper_while_active(&format!(
        "[[admin]]\nat = \"10s\"\ncommand = \"postsuper -d {q}\""
    ));
    let (dir, path) = scenario("delete-active", &text);
    let log = log_of(&dir, &path);
    let at = log
        .iter()
        .position(|l| l.ends_with(&format!("{q}: removed")))
        .expect("postsuper's removed line");
    assert!(log[at].starts_with("postfix/postsuper["));
    assert!(log[at + 1..].contains(&warning), "{log:#?}");
    // Nothing is left: the stall.csv rows after 30 s are all zero.
    let stall = std::fs::read_to_string(dir.join("out").join("stall.csv")).expect("stall.csv");
    for row in stall.lines().skip(1) {
        let (t, counts) = row.split_once(',').expect("row");
        if t.parse::<f64>().expect("time") > 30.0 {
            assert_eq!(counts, "0,0,0,0,0,0", "{row}");
        }
    }
}

#[test]
fn qmgr_warns_when_one_destination_clogs_the_active_queue() {
    // qmgr_message_active_limit 100: more than 20 entries for one destination make qmgr
    // warn when it creates the 21st (qmgr_entry.c: qmgr_entry_create), once per
    // qmgr_clog_warn_time. 50 messages at 0 s for a destination with a window of 1 and
    // 10-s transactions: the 21st entry finds 20 queued and 1 busy among 21 messages in the
    // active queue; the window is at its limit, so the advice is to raise the limit.
    let (dir, path) = scenario(
        "clog",
        r#"
name = "clog"
stop = "10m"
[postfix]
qmgr_message_active_limit = 100
initial_destination_concurrency = 1
smtp_destination_concurrency_limit = 1
[[traffic]]
to = "slow.test"
messages = 50
arrivals = "burst"
[[destination]]
domain = "slow.test"
latency = "10s"
"#,
    );
    let log = log_of(&dir, &path);
    let warnings: Vec<&str> = log
        .iter()
        .filter_map(|l| l.strip_prefix("postfix/qmgr[880]: warning: "))
        .collect();
    assert_eq!(
        warnings,
        [
            "mail for slow.test is using up 21 of 21 active queue entries",
            "you may need to increase the main.cf smtp_destination_concurrency_limit from 1",
            "please avoid flushing the whole queue when you have",
            "lots of deferred mail, that is bad for performance",
            "to turn off these warnings specify: qmgr_clog_warn_time = 0",
        ]
    );
    // qmgr_clog_warn_time = 0 turns them off.
    let (dir, path) = scenario(
        "clog-off",
        &std::fs::read_to_string(&path)
            .expect("scenario")
            .replace("[postfix]", "[postfix]\nqmgr_clog_warn_time = \"0\""),
    );
    assert!(!log_of(&dir, &path).iter().any(|l| l.contains("warning:")));
}
