//! `summary.json`: the run's totals. Nothing in it depends on the machine or the wall clock,
//! so the same scenario and seed give the same bytes everywhere.

use super::histogram::Histogram;
use crate::engine::time::{SECOND, Time};
use crate::observe::{FinalStatus, Observer, RecipientOutcome};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    /// When qmgr started (≤ 0): its deferred-scan clock is due every `queue_run_delay`
    /// from then; with `qmgr_start = "random"`, the phase this run drew.
    pub qmgr_start_s: f64,
    /// Messages from the traffic streams.
    pub messages: u64,
    /// Recipients of every queue file, notices included.
    pub recipients: u64,
    /// Non-delivery and delay notices Postfix generated (null-sender messages).
    pub notices: u64,
    pub sent: u64,
    pub bounced: u64,
    pub expired: u64,
    pub deleted: u64,
    pub queued_at_end: u64,
    /// Deliveries handed to a delivery agent.
    pub attempts: u64,
    /// Recipients deferred after a delivery attempt.
    pub deferrals: u64,
    /// Recipients deferred by qmgr without an attempt because their destination was dead.
    pub suspended_deferrals: u64,
    /// Queue files removed by `postsuper -d`.
    pub deleted_messages: u64,
    /// Offers refused at the door, which their senders retry: 452 for lack of disk space,
    /// or connection refused while Postfix was stopped.
    pub refused_disk_full: u64,
    pub refused_stopped: u64,
    /// Messages whose queue file did not fit when cleanup wrote it (451 after DATA; the
    /// senders retry).
    pub refused_write_error: u64,
    /// Messages whose sender gave up after being refused until `sender_lifetime`.
    pub not_accepted: u64,
    /// Messages the traffic offered: accepted (`messages`) + `rejected_too_large` +
    /// `not_accepted` + `waiting_at_senders_at_end` (checked every run).
    pub offered: u64,
    /// Messages still outside the queue at the end: refused and waiting for their sender's
    /// next try, in an smtpd session, or in the listen backlog.
    pub waiting_at_senders_at_end: u64,
    /// Messages rejected for good at the door (552 5.3.4, over message_size_limit).
    pub rejected_too_large: u64,
    /// Messages whose cleanup slept `in_flow_delay` for want of an in_flow token.
    pub in_flow_delays: u64,
    /// Recipients that went through the content filter.
    pub filtered: u64,
    /// Deferrals (after an attempt, and qmgr's suspended ones) by cause; zero counts omitted.
    pub deferred_by_cause: BTreeMap<&'static str, u64>,
    /// Bounced recipients by cause; zero counts omitted.
    pub bounced_by_cause: BTreeMap<&'static str, u64>,
    /// Last final status minus first arrival (seconds); null if nothing arrived or mail
    /// is still queued when the run ends (the drain was cut off).
    pub drain_time_s: Option<f64>,
    /// The first instant (seconds from the start) at or after the last fault ended, the
    /// last admin command and the first arrival when no mail is left to work on (maildrop,
    /// incoming, active and deferred empty); null if that never happens in the run.
    pub backlog_clear_s: Option<f64>,
    /// Simulated time at which the run ended (seconds).
    pub end_time_s: f64,
    /// Delivery delays (arrival to `sent`) of traffic recipients, seconds.
    pub delay_s: DelayStats,
    /// Delivered recipients' time in the queue by cause, seconds: see README, "Why is it
    /// stuck?". Only `mailsim run` computes it (left out of sweeps' summaries).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stall_s: std::collections::BTreeMap<String, f64>,
    /// The closing sentence of `mailsim run` (not in summary.json).
    #[serde(skip)]
    pub headline: Option<String>,
    /// Outcomes and delays per destination (notices excluded), in scenario order.
    pub destinations: Vec<DestinationSummary>,
    pub peak: Peaks,
    /// Events handled by the engine.
    pub events: u64,
    /// TCP connections our SMTP clients opened, and deliveries over sessions from the
    /// connection cache (`conn_use=` in mail.log) instead of a new connection.
    pub smtp_connections: u64,
    pub smtp_reused: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct DelayStats {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// One destination's share of the traffic.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct DestinationSummary {
    pub domain: String,
    pub sent: u64,
    pub bounced: u64,
    pub expired: u64,
    pub deleted: u64,
    pub queued_at_end: u64,
    /// Delivery delays of its `sent` recipients, seconds.
    pub delay_s: DelayStats,
}

#[derive(Serialize, Debug, Clone, PartialEq, Default)]
pub struct Peaks {
    pub maildrop: u64,
    pub incoming: u64,
    pub active: u64,
    pub deferred: u64,
    pub hold: u64,
}

/// Collects delivery delays of traffic recipients, overall and per destination.
#[derive(Default)]
pub struct DelayCollector {
    pub histogram: Histogram,
    per_destination: Vec<(String, Histogram, [u64; 5])>,
}

impl Observer for DelayCollector {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        if o.notice {
            return;
        }
        let i = match self
            .per_destination
            .iter()
            .position(|(d, _, _)| d == o.destination)
        {
            Some(i) => i,
            None => {
                self.per_destination.push((
                    o.destination.to_string(),
                    Histogram::default(),
                    [0; 5],
                ));
                self.per_destination.len() - 1
            }
        };
        let (_, histogram, counts) = &mut self.per_destination[i];
        let slot = match o.status {
            FinalStatus::Sent => 0,
            FinalStatus::Bounced => 1,
            FinalStatus::Expired => 2,
            FinalStatus::Deleted => 3,
            FinalStatus::Queued => 4,
        };
        counts[slot] += 1;
        if let (FinalStatus::Sent, Some(f)) = (o.status, o.finished) {
            self.histogram.record(f - o.arrival);
            histogram.record(f - o.arrival);
        }
    }
}

impl Summary {
    /// Every number of the summary as a flat list of named columns (sweeps' runs.csv):
    /// top-level counts and times; `delay_<stat>_s`, `peak_<queue>`; one
    /// `deferred_by_cause.<cause>` and `bounced_by_cause.<cause>` per cause (0 when
    /// absent); `stall_s.<cause>` when computed; `<domain>:<value>` per destination. The
    /// names depend only on the scenario's destinations, so every run of a sweep has the
    /// same columns.
    pub fn columns(&self) -> Vec<(String, Option<f64>)> {
        let n = |v: u64| Some(v as f64);
        let mut out: Vec<(String, Option<f64>)> = vec![
            // The scan clock's phase: with `qmgr_start = "random"` it differs per run.
            ("qmgr_start_s".into(), Some(self.qmgr_start_s)),
            ("messages".into(), n(self.messages)),
            ("recipients".into(), n(self.recipients)),
            ("notices".into(), n(self.notices)),
            ("sent".into(), n(self.sent)),
            ("bounced".into(), n(self.bounced)),
            ("expired".into(), n(self.expired)),
            ("deleted".into(), n(self.deleted)),
            ("queued_at_end".into(), n(self.queued_at_end)),
            ("attempts".into(), n(self.attempts)),
            ("deferrals".into(), n(self.deferrals)),
            ("suspended_deferrals".into(), n(self.suspended_deferrals)),
            ("deleted_messages".into(), n(self.deleted_messages)),
            ("refused_disk_full".into(), n(self.refused_disk_full)),
            ("refused_stopped".into(), n(self.refused_stopped)),
            ("refused_write_error".into(), n(self.refused_write_error)),
            ("not_accepted".into(), n(self.not_accepted)),
            ("offered".into(), n(self.offered)),
            (
                "waiting_at_senders_at_end".into(),
                n(self.waiting_at_senders_at_end),
            ),
            ("rejected_too_large".into(), n(self.rejected_too_large)),
            ("in_flow_delays".into(), n(self.in_flow_delays)),
            ("filtered".into(), n(self.filtered)),
            ("drain_time_s".into(), self.drain_time_s),
            ("backlog_clear_s".into(), self.backlog_clear_s),
        ];
        let delays = |prefix: &str, d: &DelayStats, out: &mut Vec<(String, Option<f64>)>| {
            out.push((format!("{prefix}delay_count"), Some(d.count as f64)));
            for (k, v) in [
                ("mean", d.mean),
                ("p50", d.p50),
                ("p95", d.p95),
                ("p99", d.p99),
                ("max", d.max),
            ] {
                out.push((format!("{prefix}delay_{k}_s"), v));
            }
        };
        delays("", &self.delay_s, &mut out);
        let p = &self.peak;
        for (k, v) in [
            ("maildrop", p.maildrop),
            ("incoming", p.incoming),
            ("active", p.active),
            ("deferred", p.deferred),
            ("hold", p.hold),
        ] {
            out.push((format!("peak_{k}"), n(v)));
        }
        out.push(("end_time_s".into(), Some(self.end_time_s)));
        out.push(("events".into(), n(self.events)));
        for (map, prefix) in [
            (&self.deferred_by_cause, "deferred_by_cause"),
            (&self.bounced_by_cause, "bounced_by_cause"),
        ] {
            for c in crate::observe::Cause::ALL {
                out.push((
                    format!("{prefix}.{}", c.name()),
                    n(map.get(c.name()).copied().unwrap_or(0)),
                ));
            }
        }
        for (cause, v) in &self.stall_s {
            out.push((format!("stall_s.{cause}"), Some(*v)));
        }
        for d in &self.destinations {
            let name = &d.domain;
            for (k, v) in [
                ("sent", d.sent),
                ("bounced", d.bounced),
                ("expired", d.expired),
                ("deleted", d.deleted),
                ("queued_at_end", d.queued_at_end),
            ] {
                out.push((format!("{name}:{k}"), n(v)));
            }
            delays(&format!("{name}:"), &d.delay_s, &mut out);
        }
        out
    }
}

/// `t` in seconds, rounded to the microsecond so JSON shows e.g. 300.5, not 300.50000001.
pub fn seconds(t: Time) -> f64 {
    // Rounded to the microsecond's decimal digits so JSON shows e.g. 300.5, not 300.50000001.
    (t as f64 / SECOND as f64 * 1e6).round() / 1e6
}

impl DelayCollector {
    pub fn stats(&self) -> DelayStats {
        delay_stats(&self.histogram)
    }

    /// The delay distribution as (delay in seconds, fraction delivered within it), at every
    /// 0.5 % — what `delay-cdf.csv` and `delays.png` show.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        if self.histogram.count() == 0 {
            return Vec::new();
        }
        (0..=200)
            .filter_map(|i| {
                let q = f64::from(i) / 200.0;
                self.histogram.quantile(q).map(|t| (seconds(t), q))
            })
            .collect()
    }

    /// Per-destination summaries, ordered like `domains` (destinations nothing was sent to
    /// are listed with zeros).
    pub fn destinations<'a>(
        &self,
        domains: impl Iterator<Item = &'a str>,
    ) -> Vec<DestinationSummary> {
        domains
            .map(|domain| {
                let found = self.per_destination.iter().find(|(d, _, _)| d == domain);
                let (stats, counts) = match found {
                    Some((_, h, c)) => (delay_stats(h), *c),
                    None => (DelayStats::default(), [0; 5]),
                };
                DestinationSummary {
                    domain: domain.to_string(),
                    sent: counts[0],
                    bounced: counts[1],
                    expired: counts[2],
                    deleted: counts[3],
                    queued_at_end: counts[4],
                    delay_s: stats,
                }
            })
            .collect()
    }
}

fn delay_stats(h: &Histogram) -> DelayStats {
    DelayStats {
        count: h.count(),
        mean: h.mean().map(|m| (m / SECOND as f64 * 1e6).round() / 1e6),
        p50: h.quantile(0.5).map(seconds),
        p95: h.quantile(0.95).map(seconds),
        p99: h.quantile(0.99).map(seconds),
        max: h.max().map(seconds),
    }
}
