//! Fidelity against real Postfix 3.7 (issue 9; README "How faithful is it?").
//!
//! Each `tests/fidelity/<name>/` holds `scenario.toml` and `real/`, a trace of that scenario
//! recorded on Debian's Postfix 3.7.11 by `validation/record.py` (no Postfix is needed here).
//! The simulation replays qmgr's measured start and the very arrivals the recording offered.
//!
//! Criteria (issue 9), for scenarios whose remote answers deterministically:
//! - final counts of sent, bounced, expired and still-queued recipients: exact;
//! - drain time (last final status − first arrival) within 10 %;
//! - peak deferred within 10 % (or 2 files, for small peaks);
//! - queue curves: the mean absolute difference of the active and of the deferred queue over
//!   the recorded 0.5 s samples at most 10 % of the real peak;
//! - the number of delivery attempts equal for at least 90 % of the recipients;
//! - and, what still holds where per-recipient counts are decided by a race between the
//!   host's processes: the attempts-per-recipient histograms within a total variation
//!   distance of 10 %, and the total number of attempts within 10 %.
//!
//! A remote that answers at random (`tempfail = 0.3`) gives one draw per recording, so per-
//! message attempt counts cannot match: there the recorded figures must fall inside the range
//! the simulation gives over many seeds.
//!
//! Where mailsim cannot match, [`GAPS`] names the scenario, the figure, the bound it does
//! meet, and why — a documented gap, not a silently loosened test.

use mailsim::fidelity::{Comparison, Trace, compare};
use mailsim::scenario;
use std::path::{Path, PathBuf};

struct Gap {
    scenario: &'static str,
    figure: &'static str,
    bound: f64,
    reason: &'static str,
}

/// Known gaps between mailsim and the recordings, with their reasons. Each bound is the
/// measured figure rounded modestly (the simulation is deterministic), and each must be
/// needed: [`every_gap_is_needed_and_met`] fails a gap whose figure meets the default bound.
const GAPS: &[Gap] = &[
    Gap {
        scenario: "greylisting",
        figure: "deferred curve",
        bound: 0.16,
        reason: "Host speed, not Postfix: on the recording host a delivery over a reused \
            session takes 88 ms (median rcpt-to-rcpt on one connection; 10th percentile \
            32 ms, 90th 172 ms; 1 011 cycles in events.csv.gz) where the scenario's RCPT \
            reply takes 10 ms, so the first retry wave runs 8.24-9.49 s (145 of 300 end \
            before 9 s) against mailsim's 8.13-8.53 s. qmgr_active.c sets the deferred \
            mtime to event_time() + clamp(event_time() - create_time, 5, 40), whole \
            seconds, and qmgr_active_feed takes mtime <= time() + 1: a retry ending at 8 s \
            of a message created at 2-4 s goes at the 13.5 s scan, one ending at 9 s only \
            if created at 4 s (the recording follows this exactly). So 112 real, 226 \
            simulated retry at 13.5 s and pass greylisting at 23.5 s; the other 188 real \
            (79 simulated) wait until 38.5 s: 109 files of difference for 15 s, 15.1 % of \
            the peak. With agent_report = 40 ms (the host's cost put in the model's \
            hand-off) the curve is 7.6 % off: the delivery time alone makes the gap.",
    },
    Gap {
        scenario: "concurrency-limit",
        figure: "same attempts",
        bound: 0.45,
        reason: "Which request of a wave loses is the host's scheduling: a finished \
            delivery lets qmgr start two, one reuses the parked session and the other's new \
            connection gets the 421 (events.csv.gz at 3.65 s: conn 8 reused, conn 14 \
            refused); which smtp process reaches scache first is a race mailsim cannot \
            replay. Both sides deliver in arrival order (581 inversions of 17 955 pairs \
            among real first-attempt successes), defer 110 first attempts with as many \
            adjacent pairs by arrival rank (34 real, 37 simulated), agree in histogram \
            (2.7 % distance, total attempts 0.9 % off), and the per-recipient agreement, \
            46.3 %, is what two independent draws of these histograms give (47.3 %).",
    },
    Gap {
        scenario: "rate-limit-421",
        figure: "same attempts",
        bound: 0.50,
        reason: "How many requests fail once the bucket empties is timing: at each of the \
            six full revivals (0-235 s, a backlog of 30 or more) qmgr starts from the same \
            state (window 5: five connections open first), yet the recording fails 21 to 35 attempts per wave (greeting 421s 13-26, MAIL FROM \
            421s on reused sessions 7-11) as smtp processes race for parked sessions; \
            mailsim's replay fails 24 in every wave. Which messages draw the extra failures \
            cascades into their later attempts: 51.3 % same counts, total attempts 304 vs \
            329 (7.6 %), drain, peaks and curves within 1 %.",
    },
    Gap {
        scenario: "rate-limit-421",
        figure: "attempts distance",
        bound: 0.15,
        reason: "The same race as its same-attempts gap: 21-35 failed attempts per real \
            wave against mailsim's constant 24 shift recipients between 2 and 3 attempts \
            (real 1:37 2:56 3:48 4:9, mailsim 1:36 2:77 3:34 4:3): 14.0 % would have to \
            change.",
    },
];

/// A compared figure, its default bound (issue 9) and whether it is a floor.
struct Figure {
    value: f64,
    default: f64,
    at_least: bool,
}

impl Figure {
    fn meets(&self, bound: f64) -> bool {
        if self.at_least {
            self.value >= bound
        } else {
            self.value <= bound
        }
    }
}

/// The figures a gap may name.
const FIGURES: &[&str] = &[
    "drain",
    "active curve",
    "deferred curve",
    "same attempts",
    "attempts distance",
    "total attempts",
];

fn figure(c: &Comparison, name: &str) -> Figure {
    let (value, default, at_least) = match name {
        "drain" => (c.drain.relative_error(), 0.10, false),
        "active curve" => (c.active.relative(), 0.10, false),
        "deferred curve" => (c.deferred.relative(), 0.10, false),
        "same attempts" => (c.same_attempts_share(), 0.90, true),
        // Where per-recipient counts are a race, their distribution still has to agree.
        "attempts distance" => (c.attempts_distribution_distance(), 0.10, false),
        "total attempts" => (c.attempts.relative_error(), 0.10, false),
        other => panic!("unknown figure {other:?}"),
    };
    Figure {
        value,
        default,
        at_least,
    }
}

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fidelity")
        .join(name)
}

fn load(name: &str) -> (mailsim::scenario::Scenario, Trace) {
    let d = dir(name);
    let sc = scenario::load(&d.join("scenario.toml")).expect("scenario loads");
    let trace = Trace::load(&d.join("real")).expect("trace loads");
    (sc, trace)
}

fn bound(name: &str, figure: &str, default: f64) -> f64 {
    GAPS.iter()
        .find(|g| g.scenario == name && g.figure == figure)
        .map(|g| {
            assert!(!g.reason.is_empty());
            g.bound
        })
        .unwrap_or(default)
}

fn run(name: &str) -> Comparison {
    let (sc, trace) = load(name);
    compare(&sc, &trace).expect("simulation runs")
}

/// The issue-9 criteria for a deterministic scenario.
fn holds(name: &str) -> Comparison {
    let c = run(name);
    let report = format!("\n{c}");
    assert_eq!(c.sent.sim, c.sent.real, "sent{report}");
    assert_eq!(c.bounced.sim, c.bounced.real, "bounced{report}");
    assert_eq!(c.expired.sim, c.expired.real, "expired{report}");
    assert_eq!(c.queued.sim, c.queued.real, "still queued{report}");
    let peak = c.deferred.peak;
    assert!(
        (peak.sim - peak.real).abs() <= (0.10 * peak.real).max(2.0),
        "peak deferred{report}"
    );
    assert_eq!(
        c.matched, c.recipients,
        "every recipient on both sides{report}"
    );
    for &name_of in FIGURES {
        let f = figure(&c, name_of);
        let b = bound(name, name_of, f.default);
        assert!(
            f.meets(b),
            "{name_of}: {:.4} against the bound {b}{report}",
            f.value
        );
    }
    c
}

#[test]
fn throughput() {
    holds("throughput");
}

#[test]
fn greylisting() {
    holds("greylisting");
}

#[test]
fn refused_outage_with_recovery() {
    holds("refused-outage");
}

#[test]
fn blackhole_starving_a_healthy_destination() {
    holds("blackhole-starvation");
}

#[test]
fn concurrency_limited_server_answering_421() {
    holds("concurrency-limit");
}

#[test]
fn rate_limiter_answering_421() {
    holds("rate-limit-421");
}

#[test]
fn expiry() {
    holds("expiry");
}

#[test]
fn every_gap_is_needed_and_met() {
    // A gap documents a figure that misses issue 9's bound: one whose figure meets the
    // default bound is stale and must go, and its own bound must hold.
    for g in GAPS {
        assert!(
            FIGURES.contains(&g.figure),
            "{}: figure {:?}",
            g.scenario,
            g.figure
        );
        assert!(g.reason.len() > 80, "{} {}: say why", g.scenario, g.figure);
        let c = run(g.scenario);
        let f = figure(&c, g.figure);
        assert!(
            !f.meets(f.default),
            "{} {}: {:.4} meets the default bound {}: remove the gap",
            g.scenario,
            g.figure,
            f.value,
            f.default
        );
        assert!(
            f.meets(g.bound),
            "{} {}: {:.4} misses the gap's bound {}",
            g.scenario,
            g.figure,
            f.value,
            g.bound
        );
    }
}

/// The share of `values` at or below `x`.
fn rank(values: &[f64], x: f64) -> f64 {
    values.iter().filter(|&&v| v <= x).count() as f64 / values.len() as f64
}

#[test]
fn random_tempfail_is_one_draw_of_the_simulated_distribution() {
    // 30 % of recipients get a 450 at each attempt, at random: the recording is one draw.
    // Over 200 seeds of the simulation (each with its own arrivals and replies), the recorded
    // drain time and total attempts must lie inside the central
    // 98 % of the simulated values. Counts are exact: everything is delivered in the end.
    let (sc, trace) = load("tempfail-30");
    let mut drains = Vec::new();
    let mut attempts = Vec::new();
    let mut real = None;
    for seed in 1..=200 {
        let mut s = sc.clone();
        s.seed = seed;
        let c = compare(&s, &trace).expect("simulation runs");
        assert_eq!(c.sent.sim, c.sent.real, "seed {seed}: all sent");
        drains.push(c.drain.sim);
        attempts.push(c.attempts.sim);
        real = Some((c.drain.real, c.attempts.real));
    }
    let (drain, total) = real.expect("ran");
    for (what, values, x) in [("drain", &drains, drain), ("attempts", &attempts, total)] {
        let r = rank(values, x);
        assert!(
            (0.01..=0.99).contains(&r),
            "recorded {what} {x} at the {:.1}th percentile of the simulated ones",
            100.0 * r
        );
    }
}
