//! Admin commands on the timeline (§2.1–2.2), against hand-computed timelines.

mod common;
use common::{Recorder, attempt_seconds, run};
use mailsim::engine::time::SECOND;
use mailsim::observe::FinalStatus;

/// Final outcomes of message `id`: (status, finished seconds).
fn outcome(rec: &Recorder, id: u64) -> Vec<(FinalStatus, Option<f64>)> {
    rec.outcomes
        .iter()
        .filter(|o| o.0 == id && !o.3)
        .map(|o| (o.1, o.2.map(|t| t as f64 / 1e6)))
        .collect()
}

/// One message at 0 s to `d.test`, whose server refuses connections until `refuse_for`.
fn refused_until(refuse_for: &str, admin: &str, extra: &str) -> String {
    format!(
        r#"
name = "admin"
{extra}
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
for = "{refuse_for}"
kind = "refuse"
target = "d.test"
{admin}
"#
    )
}

fn admin(at: &str, command: &str) -> String {
    format!("[[admin]]\nat = \"{at}\"\ncommand = \"{command}\"\n")
}

#[test]
fn without_admin_the_message_waits_for_its_backoff() {
    let (rec, _, _) = run(&refused_until("50s", "", ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0]);
}

#[test]
fn postqueue_f_makes_deferred_mail_eligible_at_once() {
    // Deferred at 0 with mtime 300; the flush at 100 s ignores time stamps.
    let (rec, _, _) = run(&refused_until("50s", &admin("100s", "postqueue -f"), ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 100.0]);
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Sent, Some(100.0))]);
}

#[test]
fn postqueue_f_revives_a_dead_destination() {
    // 20 messages at 10 s kill the queue (connections refused after 50 ms until 100 s);
    // dead until 310 s. A message arriving at 200 s would be deferred without a
    // connection; after `postqueue -f` at 150 s the queue is alive and everything flushed
    // is delivered then, and the late message at once.
    let text = |flush: &str| {
        format!(
            r#"
name = "flush-dead"
[[traffic]]
to = "r.test"
messages = 20
arrivals = "burst"
start = "10s"
[[traffic]]
to = "r.test"
messages = 1
arrivals = "burst"
start = "200s"
[[destination]]
domain = "r.test"
latency = "0s"
connect = "50ms"
[[fault]]
at = "0s"
for = "100s"
kind = "refuse"
target = "r.test"
{flush}
"#
        )
    };
    let (rec, report, _) = run(&text(""));
    assert_eq!(report.mta_totals.suspended_deferrals, 15 + 1);
    // With the scan at 600 s; 21 messages in windows of 5, 10, … 50 ms deliveries.
    let late = attempt_seconds(&rec, 21);
    assert!(
        late.len() == 1 && (600.0..601.0).contains(&late[0]),
        "{late:?}"
    );
    let (rec, report, _) = run(&text(&admin("150s", "postqueue -f")));
    assert_eq!(report.mta_totals.suspended_deferrals, 15);
    assert_eq!(attempt_seconds(&rec, 21), [200.0]);
    let last = report.last_final.expect("delivered");
    assert!(last < 201 * SECOND, "{last}");
    for id in 1..=20 {
        let last = *attempt_seconds(&rec, id).last().expect("attempted");
        assert!((150.0..151.0).contains(&last), "message {id}: {last}");
    }
}

#[test]
fn postsuper_d_all_deferred_removes_exactly_the_deferred_mail() {
    // 10 messages are deferred at 0 s (every recipient 4xx); 5 others are being delivered
    // (100 s each). At 50 s the deferred ones are deleted; the active ones are untouched.
    let text = r#"
name = "delete-deferred"
[[traffic]]
to = "fail.test"
messages = 10
arrivals = "burst"
[[traffic]]
to = "slow.test"
messages = 5
arrivals = "burst"
[[destination]]
domain = "fail.test"
latency = "0s"
tempfail = 1.0
[[destination]]
domain = "slow.test"
latency = "100s"
[[admin]]
at = "50s"
command = "postsuper -d ALL deferred"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!((t.deleted, t.deleted_messages, t.sent), (10, 10, 5));
    let count = |status, at: i64| {
        rec.outcomes
            .iter()
            .filter(|o| o.1 == status && o.2 == Some(at * SECOND))
            .count()
    };
    assert_eq!(count(FinalStatus::Deleted, 50), 10);
    assert_eq!(count(FinalStatus::Sent, 100), 5);
}

#[test]
fn released_mail_waits_for_the_next_deferred_scan() {
    // Deferred at 0 (mtime 300), held at 10 s, released at 400 s: the file goes back to
    // deferred with its old time stamp and is taken by the scan at 600 s.
    let admins = admin("10s", "postsuper -h ALL") + &admin("400s", "postsuper -H ALL");
    let (rec, report, _) = run(&refused_until("50s", &admins, ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 600.0]);
    assert_eq!(report.peaks.hold, 1);
    // Released before its time stamp, it keeps its place: the 300 s scan.
    let admins = admin("10s", "postsuper -h ALL") + &admin("200s", "postsuper -H ALL");
    let (rec, _, _) = run(&refused_until("50s", &admins, ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0]);
}

#[test]
fn held_mail_never_moves_by_itself() {
    let (rec, report, _) = run(&refused_until(
        "50s",
        &admin("10s", "postsuper -h ALL"),
        r#"stop = "2h""#,
    ));
    assert_eq!(attempt_seconds(&rec, 1), [0.0]);
    assert_eq!(report.queued_at_end, 1);
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Queued, None)]);
}

#[test]
fn requeued_mail_waits_for_pickups_wakeup() {
    // postsuper -r at 100 s: into maildrop, no trigger; pickup's 60 s wakeup at 120 s
    // re-injects it through cleanup (new create_time) and qmgr delivers it at once.
    let (rec, _, _) = run(&refused_until(
        "50s",
        &admin("100s", "postsuper -r ALL"),
        "",
    ));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 120.0]);
}

#[test]
fn force_expired_mail_is_returned_at_its_next_scan_without_an_attempt() {
    // Refused for good; expired by the admin at 100 s; the 300 s scan reads it and
    // returns it to the sender without trying.
    let (rec, report, _) = run(&refused_until(
        "1d",
        &admin("100s", "postsuper -e ALL"),
        r#"stop = "1h""#,
    ));
    assert_eq!(attempt_seconds(&rec, 1), [0.0]);
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Expired, Some(300.0))]);
    assert_eq!(report.mta_totals.notices, 1);
}

#[test]
fn reload_gives_the_deferred_scan_a_new_phase() {
    // Refused until 400 s: tries at 0 and 300 (mtime 600). Without a reload the scan at
    // 600 delivers. A reload at 450 s restarts the scan clock: scans at 450, 750.
    let (rec, _, _) = run(&refused_until("400s", "", ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0, 600.0]);
    let (rec, _, _) = run(&refused_until("400s", &admin("450s", "postfix reload"), ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0, 750.0]);
}

#[test]
fn postconf_then_reload_applies_the_new_setting() {
    // queue_run_delay = 60s from the reload at 450 s: scans at 450, 510, 570, 630.
    let admins =
        admin("440s", "postconf -e 'queue_run_delay = 60s'") + &admin("450s", "postfix reload");
    let (rec, _, _) = run(&refused_until("400s", &admins, ""));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0, 630.0]);
}

#[test]
fn reload_orphans_deliveries_in_flight_and_requeues_the_rest() {
    // Concurrency 1, 100 s per delivery: message 1 is with an agent, message 2 waits in
    // the active queue. The reload at 50 s sends message 2 back through incoming to the new
    // qmgr, which starts it at once; the old agent finishes message 1 at 100 s.
    let text = r#"
name = "reload-active"
[postfix]
initial_destination_concurrency = 1
default_destination_concurrency_limit = 1
[[traffic]]
to = "slow.test"
messages = 2
arrivals = "burst"
[[destination]]
domain = "slow.test"
latency = "100s"
[[admin]]
at = "50s"
command = "postfix reload"
"#;
    let (rec, report, _) = run(text);
    assert_eq!(attempt_seconds(&rec, 1), [0.0]);
    assert_eq!(attempt_seconds(&rec, 2), [50.0]);
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Sent, Some(100.0))]);
    assert_eq!(outcome(&rec, 2), [(FinalStatus::Sent, Some(150.0))]);
    assert_eq!(report.mta_totals.sent, 2);
}

#[test]
fn mail_offered_while_postfix_is_stopped_is_retried_by_its_sender() {
    // Messages every 10 s from 0 to 290 s; Postfix is stopped from 100 to 200 s. Offers in
    // [100, 200) are refused and come back 300 s later (sender_retry): nothing is lost.
    let text = r#"
name = "stop-start"
[[traffic]]
to = "d.test"
messages = 30
rate = "0.1/s"
arrivals = "uniform"
sender_retry = "300s"
[[destination]]
domain = "d.test"
latency = "0s"
[[admin]]
at = "100s"
command = "postfix stop"
[[admin]]
at = "200s"
command = "postfix start"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(t.refused_stopped, 10);
    assert_eq!((t.messages, t.sent, t.not_accepted), (30, 30, 0));
    let finished: Vec<f64> = rec
        .outcomes
        .iter()
        .filter_map(|o| o.2)
        .map(|t| t as f64 / 1e6)
        .collect();
    // The refused ones arrive at 100…190 s and are accepted at 400…490 s.
    for k in 0..10 {
        let at = 400.0 + 10.0 * k as f64;
        assert!(
            finished.contains(&at),
            "nothing finished at {at}: {finished:?}"
        );
    }
}

#[test]
fn pickups_wakeup_follows_the_start_of_postfix() {
    // Postfix started 25 s before the run: pickup wakes at 35, 95, 155 s…; a requeue at
    // 100 s is picked up at 155 s.
    let (rec, _, _) = run(&refused_until(
        "50s",
        &admin("100s", "postsuper -r ALL"),
        r#"qmgr_start = "-25s""#,
    ));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 155.0]);
}

/// Three messages at 0 s for a destination taking 100 s per delivery, one at a time
/// (concurrency 1): message 1 is with an agent from 0 s, messages 2 and 3 wait in active.
fn one_at_a_time(admins: &str) -> String {
    format!(
        r#"
name = "stopped"
stop = "1h"
[postfix]
initial_destination_concurrency = 1
default_destination_concurrency_limit = 1
[[traffic]]
to = "slow.test"
messages = 3
arrivals = "burst"
[[destination]]
domain = "slow.test"
latency = "100s"
{admins}
"#
    )
}

fn stop_then(at: &str, command: &str) -> String {
    admin("10s", "postfix stop") + &admin(at, command) + &admin("30s", "postfix start")
}

#[test]
fn postsuper_d_while_postfix_is_stopped_deletes_the_active_files() {
    // `postfix stop; postsuper -d ALL; postfix start` empties the queue: with no qmgr,
    // postsuper unlinks the files in active/ (postsuper.c: super() over every queue named),
    // and the agent that had message 1 died with the stop.
    let (rec, report, _) = run(&one_at_a_time(&stop_then("20s", "postsuper -d ALL")));
    let t = report.mta_totals;
    assert_eq!((t.deleted, t.deleted_messages, t.sent), (3, 3, 0));
    for id in 1..=3 {
        assert_eq!(outcome(&rec, id), [(FinalStatus::Deleted, Some(20.0))]);
    }
    assert_eq!(report.queued_at_end, 0);
}

#[test]
fn postsuper_h_while_postfix_is_stopped_holds_the_active_files() {
    let (rec, report, _) = run(&one_at_a_time(&stop_then("20s", "postsuper -h ALL")));
    assert_eq!(report.peaks.hold, 3);
    assert_eq!(report.mta_totals.sent, 0);
    assert_eq!(report.queued_at_end, 3);
    // Only message 1 was ever with an agent, and that one died at 10 s.
    assert_eq!(rec.attempts.len(), 1);
}

#[test]
fn postsuper_r_while_postfix_is_stopped_requeues_the_active_files() {
    // Into maildrop at 20 s; `postfix start` at 30 s wakes pickup at once (master_service.c:
    // master_wakeup_init), and the three are delivered one after another from 30 s.
    let (rec, report, _) = run(&one_at_a_time(&stop_then("20s", "postsuper -r ALL")));
    assert_eq!(report.mta_totals.sent, 3);
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 30.0]);
    assert_eq!(attempt_seconds(&rec, 2), [130.0]);
    assert_eq!(attempt_seconds(&rec, 3), [230.0]);
    assert_eq!(outcome(&rec, 3), [(FinalStatus::Sent, Some(330.0))]);
}

#[test]
fn postfix_stop_kills_deliveries_in_flight() {
    // Three 100 s deliveries from 0 s; `postfix stop` at 50 s kills their agents (SIGTERM
    // to the master's process group, master_sig.c): nothing is delivered while Postfix is
    // down, the files stay in active/, and the qmgr started at 500 s moves them to incoming
    // and delivers them again, done at 600 s.
    let text = r#"
name = "stop-inflight"
stop = "1h"
[[traffic]]
to = "slow.test"
messages = 3
arrivals = "burst"
[[destination]]
domain = "slow.test"
latency = "100s"
[[admin]]
at = "50s"
command = "postfix stop"
[[admin]]
at = "500s"
command = "postfix start"
"#;
    let (rec, report, series) = run(text);
    for id in 1..=3 {
        assert_eq!(attempt_seconds(&rec, id), [0.0, 500.0]);
        assert_eq!(outcome(&rec, id), [(FinalStatus::Sent, Some(600.0))]);
    }
    assert_eq!(report.mta_totals.sent, 3);
    // Still three files in active/ while Postfix is down.
    let at = |s: i64| {
        series
            .points
            .iter()
            .find(|(t, _)| *t == s * SECOND)
            .map(|(_, c)| c.active)
    };
    assert_eq!(at(400), Some(3));
}

#[test]
fn postfix_stop_drops_smtpd_sessions_and_their_clients_retry() {
    // Sessions of 100 s from 0 s; smtpd dies at 50 s: the three clients retry after
    // sender_retry (350 s: still stopped, refused again; 650 s: accepted, a 100 s session
    // again), so the mail arrives at 650 s and is delivered when its session ends, 750 s.
    let text = r#"
name = "stop-smtpd"
stop = "1h"
[[traffic]]
to = "d.test"
messages = 3
arrivals = "burst"
receive = "100s"
sender_retry = "300s"
[[destination]]
domain = "d.test"
latency = "0s"
[[admin]]
at = "50s"
command = "postfix stop"
[[admin]]
at = "500s"
command = "postfix start"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!(t.refused_stopped, 6);
    assert_eq!((t.messages, t.sent, t.not_accepted), (3, 3, 0));
    // The killed sessions' queue IDs (1-3) were used up; the messages are 4-6.
    for id in 4..=6 {
        assert_eq!(outcome(&rec, id), [(FinalStatus::Sent, Some(750.0))]);
    }
}

#[test]
fn postconf_content_filter_off_and_reload_bypasses_a_dead_filter() {
    // The classic "amavis is down, bypass it": the filter refuses connections from 0 s;
    // `content_filter =` at 10 s and a reload at 20 s. smtpd processes started after the
    // reload add no FILTER record (smtpd.c reads content_filter at start), so the mail
    // arriving from 100 s goes straight to d.test, one attempt each, delivered on arrival.
    let text = r#"
name = "cf-off"
stop = "2h"
[postfix]
content_filter = "smtp-amavis:[127.0.0.1]:10024"
[master]
smtp-amavis = 2
[filter]
latency = "1s"
[[traffic]]
to = "d.test"
messages = 20
rate = "1/s"
arrivals = "uniform"
start = "100s"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
kind = "refuse"
target = "filter"
[[admin]]
at = "10s"
command = "postconf -e 'content_filter ='"
[[admin]]
at = "20s"
command = "postfix reload"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!((t.sent, t.filtered, t.attempts), (20, 0, 20));
    assert_eq!(report.queued_at_end, 0);
    for id in 1..=20u64 {
        let at = 99.0 + id as f64;
        assert_eq!(outcome(&rec, id), [(FinalStatus::Sent, Some(at))]);
    }
}

#[test]
fn postconf_can_switch_a_content_filter_on() {
    // No filter at first; `postconf -e` names one at 4.5 s, the reload at 5 s switches it
    // on: of the messages arriving at 0…9 s, those from 5 s go through it.
    let text = r#"
name = "cf-on"
[master]
smtp-amavis = 2
[filter]
latency = "1s"
[[traffic]]
to = "d.test"
messages = 10
rate = "1/s"
arrivals = "uniform"
[[destination]]
domain = "d.test"
latency = "0s"
[[admin]]
at = "4.5s"
command = "postconf -e 'content_filter = smtp-amavis:[127.0.0.1]:10024'"
[[admin]]
at = "5s"
command = "postfix reload"
"#;
    let (_, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!((t.sent, t.filtered, t.attempts), (10, 5, 15));
}

#[test]
fn postconf_in_flow_delay_applies_after_reload() {
    // in_flow_delay = 0s from the reload at 0.5 s: the burst of 300 at 1 s, which with the
    // 1 s default would make 199 cleanups sleep (host.rs), comes in at once.
    let text = r#"
name = "inflow-reload"
stop = "1.5s"
[postfix]
qmgr_message_active_limit = 1
[[traffic]]
to = "d.test"
messages = 300
arrivals = "burst"
start = "1s"
[[destination]]
domain = "d.test"
latency = "10s"
[[admin]]
at = "0.2s"
command = "postconf -e 'in_flow_delay = 0s'"
[[admin]]
at = "0.5s"
command = "postfix reload"
"#;
    let (_, report, _) = run(text);
    assert_eq!(report.mta_totals.in_flow_delays, 0);
    assert_eq!(report.mta_totals.messages, 300);
}

#[test]
fn postconf_default_process_limit_resizes_services_with_maxproc_dash() {
    // smtp's maxproc is `-` and smtpd's is left out (also `-`): after default_process_limit
    // = 1 and a reload, one delivery runs at a time (10 s each: done at 11, 21, 31 s), and
    // one smtpd takes clients (10 s sessions: the three messages arrive at 11, 21, 31 s).
    let text = |receive: &str, latency: &str| {
        format!(
            r#"
name = "limit-reload"
[master]
smtp = "-"
[[traffic]]
to = "d.test"
messages = 3
arrivals = "burst"
start = "1s"
receive = "{receive}"
[[destination]]
domain = "d.test"
latency = "{latency}"
[[admin]]
at = "0s"
command = "postconf -e 'default_process_limit = 1'"
[[admin]]
at = "0.5s"
command = "postfix reload"
"#
        )
    };
    let finished = |rec: &Recorder| {
        let mut f: Vec<f64> = (1..=3)
            .filter_map(|id| outcome(rec, id).first().and_then(|o| o.1))
            .collect();
        f.sort_by(f64::total_cmp);
        f
    };
    let (rec, _, _) = run(&text("0s", "10s"));
    assert_eq!(finished(&rec), [11.0, 21.0, 31.0]);
    let (rec, _, _) = run(&text("10s", "0s"));
    assert_eq!(finished(&rec), [11.0, 21.0, 31.0]);
}

#[test]
fn postsuper_r_sends_a_second_pass_file_through_the_filter_again() {
    // pickup adds the FILTER record to every maildrop file (pickup.c), a requeued second
    // pass too: filtered at 0 s, re-injected at 1 s and deferred (d.test refuses until
    // 110 s), requeued at 100 s, picked up at 120 s, filtered again, delivered at 121 s.
    let text = r#"
name = "requeue-filter"
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
at = "0s"
for = "110s"
kind = "refuse"
target = "d.test"
[[admin]]
at = "100s"
command = "postsuper -r ALL"
"#;
    let (rec, report, _) = run(text);
    let t = report.mta_totals;
    assert_eq!((t.filtered, t.sent), (2, 1));
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 1.0, 120.0, 121.0]);
}

#[test]
fn postqueue_s_is_refused_for_a_site_outside_fast_flush_domains() {
    // fast_flush_domains defaults to $relay_domains, empty at compatibility_level >= 2:
    // the flush service denies the site (flush.c: flush_send_service) and postqueue exits
    // with "Flush service is not configured for destination". Nothing moves: the message
    // deferred at 0 s waits for the 300 s scan. `check` says so beforehand.
    let text = refused_until("50s", &admin("100s", "postqueue -s d.test"), "");
    let sc = common::scenario(&text);
    assert!(
        sc.warnings.iter().any(|w| w
            .contains("fatal: Flush service is not configured for destination \"d.test\"")
            && w.contains("test.toml:18:")),
        "{:?}",
        sc.warnings
    );
    let (rec, _, _) = run(&text);
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 300.0]);
}

#[test]
fn postqueue_s_flushes_the_sites_fast_flush_log() {
    let text = refused_until(
        "50s",
        &admin("100s", "postqueue -s d.test"),
        "[postfix]\nfast_flush_domains = \"d.test\"",
    );
    assert!(common::scenario(&text).warnings.is_empty());
    let (rec, _, _) = run(&text);
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 100.0]);
}

#[test]
fn postqueue_s_moves_only_the_files_deferred_while_the_site_was_logged() {
    // Message 1 is deferred at 0 s, when d.test is no fast-flush site (flush_add is
    // denied); the reload at 10 s makes it one; message 2 is deferred at 20 s and logged.
    // The flush at 100 s moves message 2 only; message 1 waits for the deferred scan of
    // the new qmgr (10 s + 300 s).
    let text = r#"
name = "fast-flush-log"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
start = "20s"
[[destination]]
domain = "d.test"
latency = "0s"
[[fault]]
at = "0s"
for = "50s"
kind = "refuse"
target = "d.test"
[[admin]]
at = "5s"
command = "postconf -e 'fast_flush_domains = d.test'"
[[admin]]
at = "10s"
command = "postfix reload"
[[admin]]
at = "100s"
command = "postqueue -s d.test"
"#;
    let (rec, _, _) = run(text);
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 310.0]);
    assert_eq!(attempt_seconds(&rec, 2), [20.0, 100.0]);
}

#[test]
fn postqueue_while_postfix_is_stopped_moves_nothing() {
    // postqueue -i needs the flush service: with Postfix stopped it fails ("Cannot flush
    // mail queue - mail system is down", postqueue.c) and the file stays deferred with
    // its time stamp (300 s); the qmgr started at 70 s scans at 70 and 370 s.
    let admins = admin("50s", "postfix stop")
        + &admin("60s", "postqueue -i 1")
        + &admin("70s", "postfix start");
    let text = refused_until("50s", &admins, "");
    let sc = common::scenario(&text);
    assert!(
        sc.warnings
            .iter()
            .any(|w| w.contains("postqueue -i 1") && w.contains("mail system is down")),
        "{:?}",
        sc.warnings
    );
    let (rec, _, _) = run(&text);
    assert_eq!(attempt_seconds(&rec, 1), [0.0, 370.0]);
}

/// One message through the filter to a d.test that refuses: after the filter (0-1 s) its
/// second pass, queue file 2, waits in deferred.
fn second_pass_deferred(command: &str) -> String {
    format!(
        r#"
name = "filt-del"
stop = "1h"
[postfix]
content_filter = "smtp-amavis:[127.0.0.1]:10024"
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
[[admin]]
at = "100s"
command = "{command}"
"#
    )
}

#[test]
fn postsuper_takes_the_queue_ids_mailq_and_mail_log_show() {
    let qid = mailsim::output::maillog::queue_id(2);
    let (rec, report, _) = run(&second_pass_deferred(&format!("postsuper -d {qid}")));
    assert_eq!(
        (
            report.mta_totals.deleted,
            report.mta_totals.deleted_messages
        ),
        (1, 1)
    );
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Deleted, Some(100.0))]);
}

#[test]
fn a_message_id_names_every_queue_file_of_the_message() {
    // message_id 1 is the message; its live file after the filter is queue file 2.
    let (rec, report, _) = run(&second_pass_deferred("postsuper -d 1"));
    assert_eq!(report.mta_totals.deleted_messages, 1);
    assert_eq!(outcome(&rec, 1), [(FinalStatus::Deleted, Some(100.0))]);
}

#[test]
fn every_admin_entry_runs_its_own_command_however_many_there_are() {
    // 65 536 flushes at 1 s, then `postsuper -d ALL` at 3 s: the last entry must run as
    // itself (an index that saturated at 65 535 replayed a flush instead).
    let text = refused_until(
        "1d",
        &(admin("1s", "postqueue -f") + &admin("3s", "postsuper -d ALL")),
        r#"stop = "1h""#,
    );
    let mut sc = common::scenario(&text);
    let flush = sc.admin[0].clone();
    let delete = sc.admin.pop().expect("delete");
    sc.admin.resize(65_536, flush);
    sc.admin.push(delete);
    let mut rec = Recorder::default();
    let mut series = mailsim::output::queues::QueueSeries::default();
    let report = mailsim::run::simulate(&sc, sc.seed, &mut rec, &mut series).expect("runs");
    assert_eq!(report.mta_totals.deleted_messages, 1);
    assert_eq!(report.mta_totals.admin_commands, 65_537);
}
