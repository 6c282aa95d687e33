//! Closed-form queueing results: with concurrency c (initial = limit), Poisson arrivals and
//! exponential service, a destination is an M/M/c queue and the mean wait before delivery
//! starts must match Erlang C.

mod common;
use common::run;

fn erlang_c_wait(c: u32, lambda: f64, mu: f64) -> f64 {
    let a = lambda / mu;
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..c {
        if k > 0 {
            term *= a / f64::from(k);
        }
        sum += term;
    }
    let top = term * a / f64::from(c) * f64::from(c) / (f64::from(c) - a);
    let p_wait = top / (sum + top);
    p_wait / (f64::from(c) * mu - lambda)
}

#[test]
fn erlang_c_formula_matches_a_hand_computed_value() {
    // c = 4, a = 3.2: C = 0.596432…, Wq = C / 0.8 = 0.745541 s.
    assert!((erlang_c_wait(4, 3.2, 1.0) - 0.745_540_6).abs() < 1e-6);
}

#[test]
fn mm4_mean_wait_matches_erlang_c_within_5_percent() {
    let messages = 400_000;
    let text = format!(
        r#"
name = "mmc"
seed = 11
[postfix]
initial_destination_concurrency = 4
default_destination_concurrency_limit = 4
[[traffic]]
to = "mmc.test"
messages = {messages}
rate = "3.2/s"
[[destination]]
domain = "mmc.test"
latency = {{ dist = "exponential", mean = "1s" }}
"#
    );
    let (rec, _, _) = run(&text);
    let warmup = 20_000;
    let waits: Vec<f64> = rec.attempts[warmup..]
        .iter()
        .map(|(_, start, arrival)| (start - arrival) as f64 / 1e6)
        .collect();
    assert_eq!(rec.attempts.len(), messages, "one attempt per message");
    let mean = waits.iter().sum::<f64>() / waits.len() as f64;
    let expected = erlang_c_wait(4, 3.2, 1.0);
    let err = (mean - expected).abs() / expected;
    assert!(
        err < 0.05,
        "mean wait {mean:.4} s vs Erlang C {expected:.4} s ({:.1} %)",
        err * 100.0
    );
}

#[test]
fn throughput_of_a_saturated_destination_is_window_over_latency() {
    // 2000 messages at once, window 4 (initial = limit), 1 s per delivery: 500 s to drain.
    let text = r#"
name = "saturated"
[postfix]
initial_destination_concurrency = 4
default_destination_concurrency_limit = 4
[[traffic]]
to = "s.test"
messages = 2000
arrivals = "burst"
[[destination]]
domain = "s.test"
latency = "1s"
"#;
    let (rec, report, _) = run(text);
    assert_eq!(report.last_final, Some(500_000_000));
    assert_eq!(rec.outcomes.len(), 2000);
}

#[test]
fn window_grows_by_three_per_lock_step_wave_from_initial_concurrency() {
    // Burst of 100, limit 20, initial 5, fixed 1 s: the deliveries run in lock-step waves.
    // qmgr reads all the replies of a wave before an agent picks the next request
    // (qmgr_deliver.c selects at the agent's "ready"), and each reply grows the window only
    // while window < busy + initial (qmgr_queue_unthrottle), with busy falling by one per
    // reply: W, W+1, W+2, W+3, then W+3 < (W−3) + 5 fails. So +3 per wave: 5, 8, 11, 14,
    // 17, then 20 (the limit). The Postfix 3.7.11 recording of rate-limit-421 shows it: five
    // replies read together at 35.467 s, then eight new connections; those eight, then 11.
    let text = r#"
name = "slow-start"
[[traffic]]
to = "w.test"
messages = 100
arrivals = "burst"
[[destination]]
domain = "w.test"
latency = "1s"
"#;
    let (rec, _, _) = run(text);
    let started_at = |t: i64| rec.attempts.iter().filter(|a| a.1 == t * 1_000_000).count();
    let waves: Vec<usize> = (0..8).map(started_at).collect();
    // 5 + 8 + 11 + 14 + 17 = 55, then 20, 20, and the last 5.
    assert_eq!(waves, [5, 8, 11, 14, 17, 20, 20, 5]);
}

#[test]
fn an_agent_takes_its_request_when_ready_at_most_two_under_way() {
    // agent_handoff 10 ms: qmgr has at most two agent requests under way per transport
    // (QMGR_TRANSPORT_MAX_PEND, qmgr_transport.c), and picks each request only when its
    // agent is ready. A burst of 5 at 0 (window 5) starts in pairs: 10, 10, 20, 20, 30 ms.
    // agent_report 5 ms: the first reply reaches qmgr at 10 + 1000 + 5 ms, when the window
    // grows and two more agents are asked for (ready 10 ms later).
    let text = r#"
name = "handoff"
[host]
agent_handoff = "10ms"
agent_report = "5ms"
[[traffic]]
to = "w.test"
messages = 7
arrivals = "burst"
[[destination]]
domain = "w.test"
latency = "1s"
"#;
    let (rec, report, _) = run(text);
    let mut starts: Vec<i64> = rec.attempts.iter().map(|a| a.1 / 1000).collect();
    starts.sort_unstable();
    assert_eq!(starts, [10, 10, 20, 20, 30, 1025, 1025]);
    // The last two: delivered at 2025 ms, their replies read 5 ms later.
    assert_eq!(report.last_final, Some(2_030_000));
}

#[test]
fn process_limit_caps_concurrency_across_destinations() {
    // Two destinations with window 20 each, but only 10 smtp processes.
    let text = r#"
name = "maxproc"
[postfix]
initial_destination_concurrency = 20
[master]
smtp = 10
[[traffic]]
to = { "a.test" = 1, "b.test" = 1 }
messages = 1000
arrivals = "burst"
[[destination]]
domain = "a.test"
latency = "1s"
[[destination]]
domain = "b.test"
latency = "1s"
"#;
    let (_, report, _) = run(text);
    assert_eq!(
        report.last_final,
        Some(100_000_000),
        "1000 deliveries / 10 agents × 1 s"
    );
}

#[test]
fn rate_delay_spaces_deliveries_to_one_destination() {
    // §5.5: a rate delay forces concurrency 1 and suspends the queue after each delivery.
    let text = r#"
name = "rate-delay"
[postfix]
default_destination_rate_delay = "2s"
[[traffic]]
to = "r.test"
messages = 5
arrivals = "burst"
[[destination]]
domain = "r.test"
latency = "1s"
"#;
    let (rec, _, _) = run(text);
    let starts: Vec<i64> = rec.attempts.iter().map(|a| a.1 / 1_000_000).collect();
    assert_eq!(starts, vec![0, 3, 6, 9, 12]);
}

#[test]
fn active_queue_limit_holds_mail_in_incoming() {
    let text = r#"
name = "active-limit"
sample = "1s"
[postfix]
qmgr_message_active_limit = 10
initial_destination_concurrency = 2
default_destination_concurrency_limit = 2
[[traffic]]
to = "x.test"
messages = 50
arrivals = "burst"
[[destination]]
domain = "x.test"
latency = "1s"
"#;
    let (_, report, series) = run(text);
    assert_eq!(report.peaks.active, 10);
    // qmgr imports each file as cleanup writes it until the active queue is full.
    assert_eq!(report.peaks.incoming, 40);
    let at = |t: i64| {
        series
            .points
            .iter()
            .find(|p| p.0 == t * 1_000_000)
            .map(|p| p.1)
    };
    let c = at(0).expect("sample at 0");
    assert_eq!((c.active, c.incoming), (10, 40));
    let c = at(1).expect("sample at 1");
    assert_eq!((c.active, c.incoming), (10, 38));
    assert_eq!(
        report.last_final,
        Some(25_000_000),
        "50 messages, 2 at a time, 1 s each"
    );
}
