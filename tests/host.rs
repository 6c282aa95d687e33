//! Our own host: the queue file system and smtpd's 452 (§7.1), refused mail coming back
//! from its senders.

mod common;
use common::run;

#[test]
fn smtpd_refuses_mail_once_free_space_is_below_one_and_a_half_message_size_limits() {
    // 100 MB file system, 1 MB messages every second, a destination that never answers
    // (everything stays queued). smtpd answers 452 at MAIL FROM when free space is below
    // 1.5 × message_size_limit = 15 MB: the 86 messages offered at 0…85 s fit
    // (100 − 85 = 15 MB free before the last), the offer at 86 s finds 14 MB and is refused,
    // and so is every later one.
    let text = r#"
name = "disk-threshold"
stop = "150s"
[disk]
size = "100MB"
[postfix]
message_size_limit = 10000000
[[traffic]]
to = "d.test"
rate = "1/s"
arrivals = "uniform"
size = "1MB"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
kind = "blackhole"
target = "d.test"
"#;
    let (_, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(t.messages, 86);
    // Offers at 86 … 150 s (the one at 150 s still runs).
    assert_eq!(t.refused_disk, 65);
    assert_eq!(t.not_accepted, 0);
    // Nothing refused at the door is lost: the 65 wait for their senders' next try.
    assert_eq!((t.offered, report.waiting_at_senders_at_end), (151, 65));
}

#[test]
fn refusals_last_exactly_as_long_as_the_disk_is_full_and_nothing_is_lost() {
    // Another process fills all but 10 MB from 100 s to 200 s (< 15 MB: 452). Offers at
    // 100…199 s are refused; their senders come back 300 s later and are accepted.
    let text = r#"
name = "disk-full"
[disk]
size = "1GB"
[postfix]
message_size_limit = 10000000
[[traffic]]
to = "d.test"
messages = 300
rate = "1/s"
arrivals = "uniform"
size = "100KB"
sender_retry = "300s"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "100s"
for = "100s"
kind = "disk_full"
fill = "990MB"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(t.refused_disk, 100);
    assert_eq!((t.messages, t.sent, t.not_accepted), (300, 300, 0));
    let accepted_at: Vec<i64> = rec
        .outcomes
        .iter()
        .filter_map(|o| o.2)
        .map(|t| t / 1_000_000)
        .collect();
    assert!(accepted_at.iter().all(|&s| !(100..200).contains(&s)));
    assert_eq!(
        accepted_at
            .iter()
            .filter(|&&s| (400..500).contains(&s))
            .count(),
        100
    );
}

#[test]
fn a_sender_gives_up_after_its_lifetime() {
    let text = r#"
name = "give-up"
[disk]
size = "1GB"
[[traffic]]
to = "d.test"
messages = 10
arrivals = "burst"
sender_retry = "10m"
sender_lifetime = "1h"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
kind = "disk_full"
"#;
    let (_, report, _) = run(text);
    let t = report.mta_totals;
    // Tried at 0, 10, …, 60 min (7 offers each), then the next try would be past 1 h.
    assert_eq!((t.messages, t.not_accepted, t.refused_disk), (0, 10, 70));
}

#[test]
fn a_message_over_message_size_limit_is_rejected_for_good() {
    let text = r#"
name = "too-big"
[postfix]
message_size_limit = 1000000
[[traffic]]
to = "d.test"
messages = 100
arrivals = "burst"
size = { dist = "uniform", min = "500KB", max = "1500KB" }
[[destination]]
domain = "d.test"
latency = "0s"
"#;
    let (_, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(t.messages + t.rejected_messages, 100);
    assert!((30..70).contains(&t.rejected_messages), "{t:?}");
}

fn filtered(messages: u32, filter: &str, faults: &str) -> String {
    format!(
        r#"
name = "filter"
[postfix]
content_filter = "smtp-amavis:[127.0.0.1]:10024"
[master]
smtp-amavis = 2
[filter]
{filter}
[[traffic]]
to = "d.test"
messages = {messages}
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
{faults}
"#
    )
}

#[test]
fn filter_throughput_is_filter_maxproc_over_filter_latency() {
    // Two amavis processes at 1 s per message: 1000 messages pass in 500 s, each
    // re-injected as a new queue file and delivered at once.
    let (rec, report, _) = run(&filtered(1000, r#"latency = "1s""#, ""));
    let t = report.mta_totals;
    assert_eq!((t.filtered, t.sent, t.recipients), (1000, 1000, 1000));
    assert_eq!(report.last_final, Some(500 * mailsim::engine::time::SECOND));
    // Every message was tried twice: once to the filter, once to its destination, and is
    // reported under its original id with its original arrival.
    assert_eq!(rec.attempts.len(), 2000);
    assert!(rec.outcomes.iter().all(|o| o.0 <= 1000));
}

#[test]
fn a_hung_filter_holds_its_processes_for_smtp_data_done_timeout() {
    // The filter takes the data and never answers from 0 to 100 s: the two deliveries
    // started at 0 s fail at 600 s (site failures), the eight others then pass at 2/s,
    // and the two failed ones, 600 s old, back off 600 s and are retried at 1200 s.
    let faults = "[[fault]]\nat = \"0s\"\nfor = \"100s\"\nkind = \"hang\"\ntarget = \"filter\"";
    let (_, report, _) = run(&filtered(10, r#"latency = "1s""#, faults));
    let t = report.mta_totals;
    assert_eq!(
        t.deferred_by_cause
            .get(mailsim::observe::Cause::DataTimedOut),
        2
    );
    assert_eq!(t.sent, 10);
    assert_eq!(
        report.last_final,
        Some(1201 * mailsim::engine::time::SECOND)
    );
}

#[test]
fn a_five_second_agent_outage_defers_a_minute_of_mail() {
    // §9.10: the first delivery finds no smtp agent (transport_down for 5 s): the whole
    // transport is dead for transport_retry_time (60 s), and mail arriving in that minute
    // is deferred without an attempt, to be retried at the deferred scans (300 s for the
    // messages of 0 s and 1 s, 600 s for the rest).
    let text = r#"
name = "transport-down"
[[traffic]]
to = "d.test"
messages = 10
rate = "1/s"
arrivals = "uniform"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
for = "5s"
kind = "transport_down"
target = "smtp"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(
        t.deferred_by_cause
            .get(mailsim::observe::Cause::TransportUnavailable),
        10
    );
    let starts: Vec<i64> = rec.attempts.iter().map(|a| a.1 / 1_000_000).collect();
    assert_eq!(starts.iter().filter(|&&s| s == 300).count(), 2);
    assert_eq!(starts.iter().filter(|&&s| s == 600).count(), 8);
    assert_eq!(t.sent, 10);
}

fn inflow(stop: &str) -> String {
    format!(
        r#"
name = "in-flow"
stop = "{stop}"
[postfix]
qmgr_message_active_limit = 1
[[traffic]]
to = "d.test"
messages = 300
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "10s"
"#
    )
}

#[test]
fn in_flow_delay_lets_mail_in_at_smtpd_maxproc_per_second_while_qmgr_is_behind() {
    // qmgr holds one message at a time (10 s each) and its incoming scan never finishes,
    // so the in_flow bucket is refilled by one token per import only. The first 100
    // messages take the 100 tokens and the first import gives one back (101 at 0 s); each
    // of the other 199 makes cleanup sleep 1 s, holding one of smtpd's 100 processes: they
    // come in 100 per second.
    let (_, report, _) = run(&inflow("0.5s"));
    assert_eq!(report.mta_totals.messages, 101);
    let (_, report, _) = run(&inflow("1.5s"));
    assert_eq!(report.mta_totals.messages, 201);
    let (_, report, _) = run(&inflow("2.5s"));
    assert_eq!(report.mta_totals.messages, 300);
    assert_eq!(report.mta_totals.in_flow_delays, 199);
}

#[test]
fn host_load_slows_the_content_filter() {
    // Load 3 from 0 to 100 s: the filter's 1 s becomes 3 s; 2 processes pass 2 messages
    // per 3 s, so the 20 messages take 30 s instead of 10 s.
    let faults = "[[fault]]\nat = \"0s\"\nfor = \"100s\"\nkind = \"load\"\nfactor = 3";
    let (_, report, _) = run(&filtered(20, r#"latency = "1s""#, faults));
    assert_eq!(report.last_final, Some(30 * mailsim::engine::time::SECOND));
    let (_, report, _) = run(&filtered(20, r#"latency = "1s""#, ""));
    assert_eq!(report.last_final, Some(10 * mailsim::engine::time::SECOND));
}

#[test]
fn the_filters_re_injection_takes_an_in_flow_token_or_sleeps() {
    // One token (default_process_limit = 1), one active file, one filter process at 10 s.
    // 0 s: message 1 takes the token, is imported (qmgr gives the token back) and goes to
    // the filter; message 2 takes that token and waits in incoming (active full: the
    // incoming scan stays open, so qmgr refills nothing). 10 s: the filter re-injects
    // message 1 through cleanup, which has no token and sleeps 1 s (single_server.c); the
    // filter's 250 comes at 11 s, message 2 is imported (a token back) and filtered by
    // 21 s, when its re-injection takes that token; both second passes go out at 21 s.
    let text = r#"
name = "filter-in-flow"
[postfix]
content_filter = "smtp-amavis:[127.0.0.1]:10024"
default_process_limit = 1
qmgr_message_active_limit = 1
[master]
smtp-amavis = 1
[filter]
latency = "10s"
[[traffic]]
to = "d.test"
messages = 2
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!((t.in_flow_delays, t.filtered, t.sent), (1, 2, 2));
    assert_eq!(report.last_final, Some(21 * mailsim::engine::time::SECOND));
    // Message 2 reached the filter only when message 1's answer freed the active slot.
    assert_eq!(common::attempt_seconds(&rec, 2)[0], 11.0);
}

#[test]
fn pickup_waits_for_cleanups_in_flow_sleep_one_file_at_a_time() {
    // sendmail mail: the first file takes the only token (qmgr gives it back on import),
    // the second takes it again; the active queue (1 file, 10 s deliveries) stays full, so
    // files 3, 4 and 5 each make cleanup sleep 1 s while the single pickup process waits:
    // maildrop holds 3, 2, 1, 0 files at 0, 1, 2, 3 s.
    let text = r#"
name = "pickup-in-flow"
sample = "1s"
stop = "5s"
[postfix]
default_process_limit = 1
qmgr_message_active_limit = 1
[[traffic]]
to = "d.test"
messages = 5
arrivals = "burst"
submit = "sendmail"
[[destination]]
domain = "d.test"
latency = "10s"
"#;
    let (_, report, series) = run(text);
    assert_eq!(report.mta_totals.in_flow_delays, 3);
    let maildrop: Vec<u64> = series
        .points
        .iter()
        .take(5)
        .map(|(_, c)| c.maildrop)
        .collect();
    assert_eq!(maildrop, [3, 2, 1, 0, 0]);
}

#[test]
fn a_filter_delivery_running_through_a_reload_is_still_re_injected() {
    // The reload at 5 s orphans the filter delivery of 0 s; its agent finishes at 10 s and
    // the filter re-injects the message as ever: a second pass, then d.test.
    let admin = "[[admin]]\nat = \"5s\"\ncommand = \"postfix reload\"";
    let (rec, report, _) = run(&filtered(1, r#"latency = "10s""#, admin));
    let t = report.mta_totals;
    assert_eq!((t.filtered, t.sent, t.attempts), (1, 1, 2));
    assert_eq!(common::attempt_seconds(&rec, 1), [0.0, 10.0]);
}

#[test]
fn a_queue_file_that_does_not_fit_at_the_end_of_data_is_refused_with_451() {
    // 20 MB disk, ten 4 MB messages in 10 s sessions from 0 s: all pass MAIL FROM with
    // 20 MB free (the 452 check, 1.5 × 10 MB), but cleanup's writes at 10 s fit only five
    // files; the other five get 451 4.3.0 (queue file write error) and their senders
    // retry. free_bytes in queues.csv shows the disk full from 10 s.
    let text = r#"
name = "overcommit"
stop = "100s"
[disk]
size = "20MB"
[postfix]
message_size_limit = 10000000
[[traffic]]
to = "d.test"
messages = 10
arrivals = "burst"
size = "4MB"
receive = "10s"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
kind = "blackhole"
target = "d.test"
"#;
    let (_, report, series) = run(text);
    let t = report.mta_totals;
    assert_eq!(
        (t.messages, t.refused_write_error, t.refused_disk),
        (5, 5, 0)
    );
    assert_eq!(series.free_bytes.first(), Some(&Some(20_000_000)));
    assert_eq!(series.free_bytes.get(1), Some(&Some(0)));
    let csv = series.to_csv();
    assert!(csv.starts_with("time_s,maildrop,incoming,active,deferred,hold,free_bytes\n0,0,0,0,0,0,20000000\n10,0,0,5,0,0,0\n"), "{csv}");
}

#[test]
fn the_filters_re_injection_is_refused_by_smtpds_452_when_the_disk_is_short() {
    // From 0.5 s another process leaves 100 − 85 MB − the 10 KB message ≈ 14.99 MB free,
    // below 1.5 × message_size_limit (15.36 MB). The filter's re-injection at 1 s gets our
    // 452 at MAIL FROM and passes it back: the first pass is deferred (positive feedback,
    // a reply after DATA), retried at the 300 s scan, after the fill ended, and delivered.
    let text = r#"
name = "reinject-452"
[disk]
size = "100MB"
[postfix]
content_filter = "smtp-amavis:[127.0.0.1]:10024"
[filter]
latency = "1s"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0.5s"
for = "100s"
kind = "disk_full"
fill = "85MB"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(
        t.deferred_by_cause
            .get(mailsim::observe::Cause::InsufficientStorage),
        1
    );
    assert_eq!((t.filtered, t.sent), (1, 1));
    assert_eq!(common::attempt_seconds(&rec, 1), [0.0, 300.0, 301.0]);
    assert_eq!(report.last_final, Some(301 * mailsim::engine::time::SECOND));
}

/// (arrival, finished) of every delivered recipient, in seconds.
#[derive(Default)]
struct Times(Vec<(f64, f64)>);

impl mailsim::observe::Observer for Times {
    fn recipient_outcome(&mut self, o: &mailsim::observe::RecipientOutcome<'_>) {
        if let Some(f) = o.finished {
            self.0.push((o.arrival as f64 / 1e6, f as f64 / 1e6));
        }
    }
}

fn times(text: &str) -> Vec<(f64, f64)> {
    let sc = common::scenario(text);
    let mut t = Times::default();
    let mut series = mailsim::output::queues::QueueSeries::default();
    mailsim::run::simulate(&sc, sc.seed, &mut t, &mut series).expect("runs");
    t.0.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    t.0
}

#[test]
fn the_arrival_time_is_smtpds_mail_from_not_the_end_of_the_session() {
    // smtpd stamps the arrival at MAIL FROM (smtpd.c, after smtpd_check_queue): a 10 s
    // session at 0 s is a message that arrived at 0 s and is delivered at 10 s, delay 10.
    let text = r#"
name = "recv"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
receive = "10s"
[[destination]]
domain = "d.test"
latency = "0s"
"#;
    assert_eq!(times(text), [(0.0, 10.0)]);
}

#[test]
fn cleanups_in_flow_sleep_counts_in_the_delay() {
    // One token: message 1 takes it and gives it back when qmgr imports it, message 2 takes
    // it again, and message 3 sleeps 1 s in cleanup after MAIL FROM (qmgr holds its one
    // active file for 10 s, so no token comes back); it still arrived at 0 s.
    let text = r#"
name = "inflow-delay"
[postfix]
default_process_limit = 1
qmgr_message_active_limit = 1
[[traffic]]
to = "d.test"
messages = 3
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "10s"
"#;
    assert_eq!(times(text), [(0.0, 10.0), (0.0, 20.0), (0.0, 30.0)]);
}

fn agent_work(host: &str, fault: &str) -> String {
    format!(
        r#"
name = "agent-cpu"
{host}
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
{fault}
"#
    )
}

#[test]
fn host_load_slows_the_agents_own_work() {
    // [host] agent_cpu = 100 ms of the agent's own work before it connects: the message is
    // delivered at 0.1 s; under load 10 the work takes 1 s.
    let host = "[host]\nagent_cpu = \"100ms\"";
    let load = "[[fault]]\nat = \"0s\"\nfor = \"1h\"\nkind = \"load\"\nfactor = 10";
    let (_, report, _) = run(&agent_work(host, ""));
    assert_eq!(report.last_final, Some(100_000));
    let (_, report, _) = run(&agent_work(host, load));
    assert_eq!(report.last_final, Some(1_000_000));
}

#[test]
fn a_load_fault_with_nothing_to_slow_is_a_warning() {
    // No smtpd session time, no filter, no local destination, no agent_cpu: the fault can
    // only slow the local delivery of notices, and check says so.
    let load = "[[fault]]\nat = \"0s\"\nfor = \"1h\"\nkind = \"load\"\nfactor = 10";
    let sc = common::scenario(&agent_work("", load));
    assert!(
        sc.warnings
            .iter()
            .any(|w| w.contains("[[fault]] #1: a load fault slows") && w.contains("test.toml:14:")),
        "{:?}",
        sc.warnings
    );
    let sc = common::scenario(&agent_work("[host]\nagent_cpu = \"1ms\"", load));
    assert!(sc.warnings.is_empty(), "{:?}", sc.warnings);
}
