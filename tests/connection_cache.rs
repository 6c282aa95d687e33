//! On-demand SMTP connection caching (`../shared/postfix-model.md` §5.8, §6.3; Postfix 3.7's
//! `qmgr_entry.c`, `smtp_connect.c`, `smtp_reuse.c`, `smtp_session.c`, `scache_multi.c`),
//! against hand-computed timelines.
//!
//! Most scenarios here use one server with fixed phases: DNS 10 ms, connect 50 ms, greeting
//! 100 ms, one RCPT 20 ms, the rest of the transaction 200 ms. A delivery over a new
//! connection takes 0.01 + 0.05 + 0.1 + 0.02 + 0.2 = 0.38 s; over a cached session the
//! DNS lookup (Postfix looks the site up before it searches the cache) and the RSET probe
//! (one round trip, 20 ms like an RCPT) replace connect and greeting:
//! 0.01 + 0.02 + 0.02 + 0.2 = 0.25 s.

mod common;
use common::scenario;
use mailsim::engine::time::{MILLISECOND, SECOND, Time};
use mailsim::observe::{Cause, Event, Happening, NullObserver, Observer, RecipientOutcome, Status};
use mailsim::output::queues::QueueSeries;
use mailsim::run::{RunReport, simulate};

/// One status line: message, status, `conn_use`, when, the relay's host name.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    message: u64,
    status: Status,
    conn_use: u32,
    done: Time,
    relay: Option<String>,
    cause: Option<Cause>,
}

#[derive(Default)]
struct Lines(Vec<Line>);

impl Observer for Lines {
    fn recipient_outcome(&mut self, _: &RecipientOutcome<'_>) {}
    fn wants_events(&self) -> bool {
        true
    }
    fn event(&mut self, e: &Event<'_>) {
        if let Happening::Recipient(r) = e.what {
            self.0.push(Line {
                message: e.origin,
                status: r.status,
                conn_use: r.conn_use,
                done: r.done,
                relay: r.relay.map(|(h, _)| h.to_string()),
                cause: r.cause,
            });
        }
    }
}

fn run(text: &str) -> (Vec<Line>, RunReport) {
    let sc = scenario(text);
    let mut lines = Lines::default();
    let report = simulate(&sc, sc.seed, &mut lines, &mut QueueSeries::default())
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    let mut lines = lines.0;
    lines.sort_by_key(|l| (l.message, l.done));
    (lines, report)
}

fn ms(n: i64) -> Time {
    n * MILLISECOND
}

/// `messages` to `d.test` with the phases above; `postfix` and `traffic` are extra keys.
fn to_one_server(postfix: &str, messages: u32, traffic: &str, destination: &str) -> String {
    format!(
        r#"
name = "cache"
[postfix]
{postfix}
[[traffic]]
to = "d.test"
messages = {messages}
{traffic}
[[destination]]
domain = "d.test"
dns = "10ms"
connect = "50ms"
greeting = "100ms"
rcpt = "20ms"
latency = "200ms"
{destination}
"#
    )
}

fn conn_uses(lines: &[Line]) -> Vec<u32> {
    lines.iter().map(|l| l.conn_use).collect()
}

fn done_ms(lines: &[Line]) -> Vec<i64> {
    lines.iter().map(|l| l.done / MILLISECOND).collect()
}

#[test]
fn a_burst_pays_connection_setup_once_per_session() {
    // 20 messages at 0, window 5. Wave 1 (5) starts with no delivery done yet: not back to
    // back, nothing cached; done together at 0.38. qmgr reads the five replies before an
    // agent picks a request (qmgr_deliver.c), so the window grows only while window < busy
    // + 5 with busy falling: 5 → 8. Wave 2 (8) is selected at second 0 after a completion
    // in second 0: store + reuse; 8 new connections, parked at 0.76. Wave 3 (the last 7)
    // reuses 7 of them: done at 0.76 + 0.25 = 1.01 s. 13 connections, 7 reuses.
    let (lines, report) = run(&to_one_server("", 20, r#"arrivals = "burst""#, ""));
    assert_eq!((report.smtp_connections, report.smtp_reused), (13, 7));
    let mut expected_use = vec![0; 13];
    expected_use.extend([2; 7]);
    assert_eq!(conn_uses(&lines), expected_use);
    let mut expected_done = vec![380; 5];
    expected_done.extend([760; 8]);
    expected_done.extend([1010; 7]);
    assert_eq!(done_ms(&lines), expected_done);
    assert_eq!(report.last_final, Some(ms(1010)));

    // Without caching wave 3 pays the set-up: 0.76 + 0.38.
    let (lines, report) = run(&to_one_server(
        r#"smtp_connection_cache_on_demand = "no""#,
        20,
        r#"arrivals = "burst""#,
        "",
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (20, 0));
    assert!(lines.iter().all(|l| l.conn_use == 0));
    assert_eq!(report.last_final, Some(ms(1140)));
}

#[test]
fn sessions_are_reused_again_while_the_backlog_lasts() {
    // 40 messages: waves 1 and 2 as above (5 + 8 new). At 0.76 the eight replies raise the
    // window to 11 (8 → 9, 10, 11 while busy falls 8 → 5): 8 requests take the sessions
    // parked at 0.76 (conn_use 2, done 1.01), 3 open new ones (done 1.14). At 1.01 the 8
    // reused ones reply together, 3 still busy: window 14, so 8 take the sessions just
    // parked again (conn_use 3, done 1.26) and 3 open new ones (done 1.39). At 1.14 the
    // window is 17 and the last 5 go: 3 over the sessions parked at 1.14 (conn_use 2, done
    // 1.39), 2 new (done 1.52). 21 connections, 19 reuses.
    let (lines, report) = run(&to_one_server("", 40, r#"arrivals = "burst""#, ""));
    assert_eq!((report.smtp_connections, report.smtp_reused), (21, 19));
    let count = |u: u32| lines.iter().filter(|l| l.conn_use == u).count();
    assert_eq!((count(0), count(2), count(3)), (21, 11, 8));
    let finished_at = |t: i64| lines.iter().filter(|l| l.done == ms(t)).count();
    assert_eq!(
        [380, 760, 1010, 1140, 1260, 1390, 1520].map(finished_at),
        [5, 8, 8, 3, 8, 6, 2]
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.conn_use == 3)
            .all(|l| l.done == ms(1260))
    );
}

#[test]
fn trickle_traffic_never_reuses_a_connection() {
    // One message every 3 s: each delivery (0.38 s) ends before the next arrives, the
    // in-core queue is deleted when empty and a new one has no delivery history, so qmgr
    // never asks for caching.
    let (lines, report) = run(&to_one_server(
        "",
        10,
        "rate = \"1/3s\"\narrivals = \"uniform\"",
        "",
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (10, 0));
    assert!(lines.iter().all(|l| l.conn_use == 0));
    assert_eq!(report.last_final, Some(27 * SECOND + ms(380)));
}

#[test]
fn a_cache_destination_reuses_within_the_idle_limit_only() {
    let forced = r#"smtp_connection_cache_destinations = "d.test""#;
    // Every second: the session parked at k + 0.38 (idle until k + 2.38) serves the next
    // message at k + 1.01. One connection; conn_use counts 2, 3, … 10.
    let (lines, report) = run(&to_one_server(
        forced,
        10,
        "rate = \"1/s\"\narrivals = \"uniform\"",
        "",
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (1, 9));
    assert_eq!(conn_uses(&lines), [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(report.last_final, Some(9 * SECOND + ms(250)));

    // Every 1.5 s: parked at 0.38, looked up at 1.51 — within 2 s, reused …
    let every_one_and_a_half = "rate = \"2/3s\"\narrivals = \"uniform\"";
    let (_, report) = run(&to_one_server(forced, 4, every_one_and_a_half, ""));
    assert_eq!((report.smtp_connections, report.smtp_reused), (1, 3));
    // … but not when smtp_connection_cache_time_limit or scache's own
    // connection_cache_ttl_limit is 1 s.
    for limit in [
        r#"smtp_connection_cache_time_limit = "1s""#,
        r#"connection_cache_ttl_limit = "1s""#,
    ] {
        let (_, report) = run(&to_one_server(
            &format!("{forced}\n{limit}"),
            4,
            every_one_and_a_half,
            "",
        ));
        assert_eq!(
            (report.smtp_connections, report.smtp_reused),
            (4, 0),
            "{limit}"
        );
    }
    // Every 3 s: the session was closed at 2.38.
    let (_, report) = run(&to_one_server(
        forced,
        4,
        "rate = \"1/3s\"\narrivals = \"uniform\"",
        "",
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (4, 0));
}

#[test]
fn the_reuse_count_limit_closes_a_session_after_that_many_reuses() {
    // smtp_connection_reuse_count_limit = 2: a session delivers once new and twice reused;
    // after its second reuse (reuse_count 2 >= 2) it is closed, and the next message opens
    // a new one.
    let (lines, report) = run(&to_one_server(
        "smtp_connection_cache_destinations = \"d.test\"\nsmtp_connection_reuse_count_limit = 2",
        10,
        "rate = \"1/s\"\narrivals = \"uniform\"",
        "",
    ));
    assert_eq!(conn_uses(&lines), [0, 2, 3, 0, 2, 3, 0, 2, 3, 0]);
    assert_eq!((report.smtp_connections, report.smtp_reused), (4, 6));
    assert_eq!(
        done_ms(&lines),
        [380, 1250, 2250, 3380, 4250, 5250, 6380, 7250, 8250, 9380]
    );
}

#[test]
fn the_reuse_time_limit_counts_whole_seconds_from_the_connect() {
    // smtp_connection_reuse_time_limit = 3s: the first connection starts at 0.01 (second
    // 0), so expire_time is 3. It is parked after deliveries ending in seconds 0 to 3
    // (expire_time < end is false), and closed after the one ending at 4.25. The next one
    // starts at 5.01 (expires at 8) and is closed after the delivery ending at 9.25.
    let (lines, report) = run(&to_one_server(
        "smtp_connection_cache_destinations = \"d.test\"\nsmtp_connection_reuse_time_limit = \"3s\"",
        10,
        "rate = \"1/s\"\narrivals = \"uniform\"",
        "",
    ));
    assert_eq!(conn_uses(&lines), [0, 2, 3, 4, 5, 0, 2, 3, 4, 5]);
    assert_eq!((report.smtp_connections, report.smtp_reused), (2, 8));
}

#[test]
fn a_cached_session_to_the_backup_mx_hides_the_dead_primary() {
    // Concurrency 1; the primary MX (preference 10) is blackholed, the backup (20) works.
    // One message a second, 40 in all. A new request waits 30 s for the primary's connect
    // timeout, then delivers through the backup: 30.38 s each without caching.
    //
    // With on-demand caching: message 1 is not back to back (no cache flags); message 2,
    // selected at 30.38 right after it, is: its session to the backup (done 60.76) is
    // parked, and, because the connection timeout to the primary did not clear it, also
    // under the next-hop name d.test. Message 3 (selected at 60.76) takes it by name and
    // never tries the primary; each later one finds it again 0.25 s later. All 40 are
    // backlogged by then: the last is done at 60.76 + 38 × 0.25 = 70.26 s.
    let dest = r#"mx = [ { host = "mx1.d.test", preference = 10 }, { host = "mx2.d.test", preference = 20 } ]
[[fault]]
at = "0s"
kind = "blackhole"
target = "mx1.d.test""#;
    let postfix = "smtp_destination_concurrency_limit = 1\ninitial_destination_concurrency = 1";
    let traffic = "rate = \"1/s\"\narrivals = \"uniform\"";
    let (lines, report) = run(&to_one_server(postfix, 40, traffic, dest));
    assert_eq!((report.smtp_connections, report.smtp_reused), (2, 38));
    assert!(
        lines
            .iter()
            .all(|l| l.relay.as_deref() == Some("mx2.d.test"))
    );
    assert_eq!(lines[1].done, ms(60_760));
    assert_eq!(lines[2].conn_use, 2);
    assert_eq!(report.last_final, Some(ms(70_260)));

    let (_, report) = run(&to_one_server(
        &format!("{postfix}\nsmtp_connection_cache_on_demand = \"no\""),
        40,
        traffic,
        dest,
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (40, 0));
    assert_eq!(report.last_final, Some(40 * ms(30_380)));
}

#[test]
fn domains_sharing_an_mx_host_share_its_sessions_by_address() {
    // x.test and y.test both use mx.shared.test; messages alternate every 0.5 s. y's first
    // request has no session under its own name, but finds x's at the best MX address
    // (smtp_reuse_addr). From then on each request takes the session the other parked.
    let text = r#"
name = "shared"
[postfix]
smtp_connection_cache_destinations = "x.test y.test"
[[traffic]]
to = "x.test"
messages = 4
rate = "1/s"
arrivals = "uniform"
[[traffic]]
to = "y.test"
messages = 4
rate = "1/s"
arrivals = "uniform"
start = "500ms"
[[destination]]
domain = "x.test"
dns = "10ms"
connect = "50ms"
greeting = "100ms"
rcpt = "20ms"
latency = "200ms"
mx = [ { host = "mx.shared.test", preference = 10 } ]
[[destination]]
domain = "y.test"
dns = "10ms"
mx = [ { host = "mx.shared.test", preference = 10 } ]
"#;
    let (mut lines, report) = run(text);
    assert_eq!((report.smtp_connections, report.smtp_reused), (1, 7));
    lines.sort_by_key(|l| l.done);
    assert_eq!(conn_uses(&lines), [0, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        done_ms(&lines),
        [380, 750, 1250, 1750, 2250, 2750, 3250, 3750]
    );
}

#[test]
fn a_server_that_went_down_while_the_session_was_idle_fails_the_probe() {
    // Parked at 0.38; the server refuses connections from 0.5 to 0.9, so it was down and
    // the session is gone. Message 2 (1.0) takes it at 1.01, the RSET gets no answer after
    // one round trip (1.03), and a new connection delivers at 1.03 + 0.37 = 1.40.
    let forced = r#"smtp_connection_cache_destinations = "d.test""#;
    let traffic = "rate = \"1/s\"\narrivals = \"uniform\"";
    let refuse =
        "[[fault]]\nat = \"500ms\"\nfor = \"400ms\"\nkind = \"refuse\"\ntarget = \"d.test\"";
    let (lines, report) = run(&to_one_server(forced, 2, traffic, refuse));
    assert_eq!((report.smtp_connections, report.smtp_reused), (2, 0));
    assert_eq!(done_ms(&lines), [380, 1400]);
    assert_eq!(report.mta_totals.deferrals, 0, "a failed probe is silent");

    // A server that does not answer at all (blackholed from 1 s to 5 s): the probe at
    // 1.01 waits smtp_rset_timeout, then a new connection at 6.01 (the blackhole is over).
    let blackhole =
        "[[fault]]\nat = \"1s\"\nfor = \"4s\"\nkind = \"blackhole\"\ntarget = \"d.test\"";
    for (timeout, done) in [("", 21_380), ("smtp_rset_timeout = \"5s\"", 6_380)] {
        let (lines, _) = run(&to_one_server(
            &format!("{forced}\n{timeout}"),
            2,
            traffic,
            blackhole,
        ));
        assert_eq!(done_ms(&lines), [380, done], "{timeout}");
    }
}

#[test]
fn a_message_rate_limit_answers_a_reused_session_at_mail_from() {
    // 3 messages an hour, 421 when exceeded. Message 1 opens a connection and takes a
    // token; 2 and 3 reuse it (a cached session meets no greeting, so the check moves to
    // MAIL FROM) and take the last two; 4 reuses it and gets 421 at MAIL FROM: deferred,
    // no site failure, and the server closed the connection, so 5 needs a new one — and
    // gets 421 at the greeting.
    let (lines, _) = run(&to_one_server(
        r#"smtp_connection_cache_destinations = "d.test""#,
        5,
        "rate = \"1/s\"\narrivals = \"uniform\"",
        "rate_limit = { messages = 3, per = \"1h\", reply = \"421\" }\n",
    ));
    // The first attempts (the retries come after 300 s).
    let first: Vec<&Line> = lines.iter().filter(|l| l.done < 10 * SECOND).collect();
    assert_eq!(
        first
            .iter()
            .map(|l| (l.status, l.conn_use, l.cause))
            .collect::<Vec<_>>(),
        [
            (Status::Sent, 0, None),
            (Status::Sent, 2, None),
            (Status::Sent, 3, None),
            (Status::Deferred, 4, Some(Cause::RateLimitedMail)),
            (Status::Deferred, 0, Some(Cause::RateLimitedGreeting)),
        ]
    );
    // Message 4: DNS, RSET, then the 421 to MAIL FROM one round trip later; message 5: the
    // greeting, 50 + 100 ms after its DNS lookup.
    assert_eq!(first[3].done, 3 * SECOND + ms(10 + 20 + 20));
    assert_eq!(first[4].done, 4 * SECOND + ms(10 + 50 + 100));
}

#[test]
fn the_counters_do_not_depend_on_recording_events() {
    // A run whose observer wants no events (no mail.log) plays the same conversations.
    let sc = scenario(&to_one_server("", 20, r#"arrivals = "burst""#, ""));
    let report = simulate(&sc, sc.seed, &mut NullObserver, &mut QueueSeries::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.smtp_connections, report.smtp_reused), (13, 7));
}

#[test]
fn mail_log_shows_conn_use_after_the_relay_and_summary_counts_connections() {
    // The burst above through `mailsim run --maillog`: log_adhoc puts `conn_use=N` after
    // `relay=` for the 7 deliveries over cached sessions (c = DNS + RSET = 0.03 s).
    let dir = std::env::temp_dir().join(format!("mailsim-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("burst.toml");
    std::fs::write(&file, to_one_server("", 20, r#"arrivals = "burst""#, "")).expect("write");
    let log = dir.join("mail.log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .arg("run")
        .arg(&file)
        .arg("--no-plots")
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--maillog")
        .arg(&log)
        .output()
        .expect("mailsim runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("mail.log");
    let sent: Vec<&str> = text.lines().filter(|l| l.contains("status=sent")).collect();
    assert_eq!(sent.len(), 20);
    let reused: Vec<&&str> = sent.iter().filter(|l| l.contains("conn_use=")).collect();
    assert_eq!(reused.len(), 7);
    for l in reused {
        assert!(
            l.contains(
                "relay=d.test[192.0.2.1]:25, conn_use=2, delay=1, delays=0/0.76/0.03/0.22, dsn=2.0.0, status=sent"
            ),
            "{l}"
        );
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out").join("summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(summary["smtp_connections"], 13);
    assert_eq!(summary["smtp_reused"], 7);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postfix_reload_closes_the_cached_connections() {
    // The reload at 1.5 s restarts scache(8) with the other daemons: the session message 2
    // parked at 1.25 is gone, so message 3 opens a new connection, which message 4 reuses.
    let (lines, report) = run(&to_one_server(
        r#"smtp_connection_cache_destinations = "d.test""#,
        4,
        "rate = \"1/s\"\narrivals = \"uniform\"",
        "[[admin]]\nat = \"1500ms\"\ncommand = \"postfix reload\"",
    ));
    assert_eq!(conn_uses(&lines), [0, 2, 0, 2]);
    assert_eq!((report.smtp_connections, report.smtp_reused), (2, 2));
    assert_eq!(done_ms(&lines), [380, 1250, 2380, 3250]);
}

#[test]
fn a_connection_rate_limit_counts_only_new_connections() {
    // One new connection per hour allowed, 421 at the greeting beyond. With d.test cached,
    // message 1 takes the only token and the other nine reuse its session: all delivered
    // in the first 10 s. Without caching message 2's connection gets the 421.
    let traffic = "rate = \"1/s\"\narrivals = \"uniform\"";
    let limit = "rate_limit = { connections = 1, per = \"1h\" }\n";
    let (lines, report) = run(&to_one_server(
        r#"smtp_connection_cache_destinations = "d.test""#,
        10,
        traffic,
        limit,
    ));
    assert_eq!((report.smtp_connections, report.smtp_reused), (1, 9));
    assert!(lines.iter().all(|l| l.status == Status::Sent));
    assert_eq!(report.last_final, Some(9 * SECOND + ms(250)));

    let (lines, _) = run(&to_one_server(
        r#"smtp_connection_cache_on_demand = "no""#,
        10,
        traffic,
        limit,
    ));
    assert_eq!(
        (lines[1].status, lines[1].cause, lines[1].done),
        (
            Status::Deferred,
            Some(Cause::ConnectionRateLimited),
            SECOND + ms(10 + 50 + 100)
        )
    );
}

#[test]
fn an_idle_cached_session_holds_its_servers_connection_slot() {
    // mx.shared.test takes one connection at a time and answers 421 to more. x.test's
    // session is parked idle from 0.38 to 2.38; y.test, not cached, connects at 0.56 and
    // is refused (greeting at 0.66). Its retry finds the slot free: qmgr last woke at 0.66,
    // so the scan timer due at 300 s fires at 300.66 (events.c), and the 380 ms session
    // (DNS, connect, greeting, RCPT, transaction) ends at 301.04.
    let text = r#"
name = "slot"
[postfix]
smtp_connection_cache_destinations = "x.test"
[[traffic]]
to = "x.test"
messages = 1
arrivals = "burst"
[[traffic]]
to = "y.test"
messages = 1
arrivals = "burst"
start = "500ms"
[[destination]]
domain = "x.test"
dns = "10ms"
connect = "50ms"
greeting = "100ms"
rcpt = "20ms"
latency = "200ms"
max_connections = 1
mx = [ { host = "mx.shared.test", preference = 10 } ]
[[destination]]
domain = "y.test"
dns = "10ms"
mx = [ { host = "mx.shared.test", preference = 10 } ]
"#;
    let (lines, _) = run(text);
    let summary: Vec<(u64, Status, Option<Cause>, i64)> = lines
        .iter()
        .map(|l| (l.message, l.status, l.cause, l.done / MILLISECOND))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Status::Sent, None, 380),
            (2, Status::Deferred, Some(Cause::TooManyConnections), 660),
            (2, Status::Sent, None, 301_040),
        ]
    );
}
