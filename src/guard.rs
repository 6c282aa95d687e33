//! Guards around a run: a memory estimate before a huge run starts, a cap on the number of
//! events, and the interruption flag that SIGINT/SIGTERM set.
//!
//! The estimate is deliberately simple and errs on the large side (README, "Exit codes and
//! errors"): as if no message left the queue before it expired, every message that can
//! arrive within one queue lifetime is queued at once.

use crate::engine::time::{SECOND, Time};
use crate::error::{Error, InputError};
use crate::scenario::{ArrivalProcess, Scenario};
use std::sync::atomic::{AtomicBool, Ordering};

/// Memory per queued message: the queue file's record, its slot in the arena (which grows by
/// doubling) and its entries in the directory indexes. Measured (`mailsim bench memory`,
/// BENCHMARKS.md): 174 bytes for the model, 279 with `mailsim run`'s delay attribution;
/// rounded up for the arena's growth.
pub const BYTES_PER_MESSAGE: u64 = 400;
/// Memory per recipient of a queued message (measured: about 8–16).
pub const BYTES_PER_RECIPIENT: u64 = 24;
/// Memory per greylist triplet a remote server holds: the hash-table entry (32 bytes and a
/// control byte) at the table's load and doubling growth, measured at about 103 bytes (2 M
/// triplets took 206 MB more than the same run without greylisting).
pub const BYTES_PER_GREYLIST_ENTRY: u64 = 104;
/// Memory per row of queue samples: the row, its CSV text and the plot's points.
pub const BYTES_PER_SAMPLE_ROW: u64 = 200;
/// Runs estimated above this are refused without `--force`.
pub const MEMORY_LIMIT: u64 = 8 << 30;

/// What a run may need, from the scenario alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Messages the traffic streams inject (expected, for open streams).
    pub messages: f64,
    /// An upper bound on messages queued at once.
    pub peak_queued: f64,
    /// Recipients per queued message, weighted by `peak_queued`.
    pub recipients_per_message: f64,
    /// The latest simulated instant the run can reach.
    pub horizon: Time,
    /// Rows of queue samples up to `horizon`.
    pub sample_rows: f64,
    /// An upper bound on the greylist triplets held at once (0 without greylisting).
    pub greylist_entries: f64,
    pub bytes: f64,
}

/// Estimates what running `sc` may need (see the module header).
pub fn estimate(sc: &Scenario) -> Estimate {
    let p = &sc.postfix;
    let backoff = p.minimal_backoff_time.max(p.maximal_backoff_time);
    // The longest a message stays: until it expires, plus the retry that finds it expired.
    let residence = (p.maximal_queue_lifetime + backoff + p.queue_run_delay) as f64;
    let notice_residence = (p.bounce_queue_lifetime + backoff + p.queue_run_delay) as f64;
    // A triplet lives while its recipient is queued, and one that left the queue unseen
    // (expired, deleted, delivered by a server that does not greylist) until the daily
    // sweep after `lifetime`: the recipients of one residence plus one lifetime, at most.
    let greylist_lifetime = greylist_lifetime(sc);
    let (mut messages, mut peak, mut recipients) = (0.0, 0.0, 0.0);
    let mut triplets = 0.0;
    let mut last_arrival: f64 = 0.0;
    for t in &sc.traffic {
        let start = t.start as f64 / SECOND as f64;
        let stop = match (t.stop, sc.stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|s| s as f64 / SECOND as f64);
        let (n, end) = match (t.arrivals, t.messages) {
            (ArrivalProcess::Burst, m) => (m.unwrap_or(0) as f64, start),
            (_, Some(m)) => {
                let end = start + m as f64 / t.rate;
                match stop {
                    Some(s) if s < end => (t.rate * (s - start).max(0.0), s),
                    _ => (m as f64, end),
                }
            }
            (_, None) => {
                let s = stop.unwrap_or(start);
                (t.rate * (s - start).max(0.0), s)
            }
        };
        let queued = match t.arrivals {
            ArrivalProcess::Burst => n,
            _ => n.min(t.rate * residence),
        };
        messages += n;
        peak += queued;
        recipients += queued * f64::from(t.recipients);
        if let Some(lifetime) = greylist_lifetime {
            let held = match t.arrivals {
                ArrivalProcess::Burst => n,
                _ => n.min(t.rate * (residence + lifetime as f64)),
            };
            triplets += held * f64::from(t.recipients);
        }
        last_arrival = last_arrival.max(end);
    }
    let horizon = match sc.stop {
        Some(s) => s,
        None => {
            let seconds = last_arrival + residence + notice_residence;
            (seconds * SECOND as f64).min(Time::MAX as f64) as Time
        }
    };
    let sample_rows = horizon as f64 / sc.sample.max(1) as f64 + 1.0;
    let bytes = peak * BYTES_PER_MESSAGE as f64
        + recipients * BYTES_PER_RECIPIENT as f64
        + triplets * BYTES_PER_GREYLIST_ENTRY as f64
        + sample_rows * BYTES_PER_SAMPLE_ROW as f64;
    Estimate {
        messages,
        peak_queued: peak,
        recipients_per_message: if peak > 0.0 { recipients / peak } else { 0.0 },
        horizon,
        sample_rows,
        greylist_entries: triplets,
        bytes,
    }
}

/// The longest greylist `lifetime` (seconds) of any server, if one greylists (any
/// recipient might meet it: hosts can be shared between destinations).
fn greylist_lifetime(sc: &Scenario) -> Option<i64> {
    sc.destinations
        .iter()
        .flat_map(|d| {
            std::iter::once(d.greylist).chain(
                d.mx.iter()
                    .map(|m| m.behaviour.as_ref().and_then(|b| b.greylist)),
            )
        })
        .flatten()
        .map(|g| g.lifetime)
        .max()
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Refuses a run whose estimate exceeds [`MEMORY_LIMIT`], saying why and how to proceed.
/// `file` names the scenario.
pub fn check_memory(sc: &Scenario, file: &str) -> Result<Estimate, Error> {
    let e = estimate(sc);
    if e.bytes <= MEMORY_LIMIT as f64 {
        return Ok(e);
    }
    let queue_bytes = e.peak_queued
        * (BYTES_PER_MESSAGE as f64 + e.recipients_per_message * BYTES_PER_RECIPIENT as f64)
        + e.greylist_entries * BYTES_PER_GREYLIST_ENTRY as f64;
    let rows_bytes = e.sample_rows * BYTES_PER_SAMPLE_ROW as f64;
    let (key, advice) = if queue_bytes >= rows_bytes {
        (
            "traffic",
            "lower `messages` or `rate`, give a `stop`, or shorten maximal_queue_lifetime",
        )
    } else if sc.stop.is_some() {
        ("sample", "give a coarser `sample` or an earlier `stop`")
    } else {
        (
            "sample",
            "give a coarser `sample`, or a `stop` (without one the run may last until the last message expires)",
        )
    };
    Err(InputError::new(
        file,
        None,
        Some(key),
        format!(
            "this run may need about {} of memory ({:.0} messages queued at once × {:.0} bytes, {}{:.0} queue samples × {BYTES_PER_SAMPLE_ROW} bytes), more than the {} limit: {advice}; or pass --force to run it anyway",
            gib(e.bytes),
            e.peak_queued,
            BYTES_PER_MESSAGE as f64 + e.recipients_per_message * BYTES_PER_RECIPIENT as f64,
            if e.greylist_entries > 0.0 {
                format!(
                    "{:.0} greylist triplets × {BYTES_PER_GREYLIST_ENTRY} bytes, ",
                    e.greylist_entries
                )
            } else {
                String::new()
            },
            e.sample_rows,
            gib(MEMORY_LIMIT as f64),
        ),
    )
    .into())
}

/// Limits on one simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Stop with an error after this many events (`--max-events`).
    pub max_events: Option<u64>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT and SIGTERM (and SIGHUP) request a clean stop: the run notices within a few
/// thousand events, removes its temporary files and exits with 130. A second signal exits at
/// once (temporary `.partial` files may then remain; they are never taken for results).
pub fn install_interrupt_handler() -> Result<(), Error> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting at once");
            std::process::exit(130);
        }
    })
    .map_err(|e| Error::Runtime(format!("cannot install the SIGINT/SIGTERM handler: {e}")))
}

/// Whether SIGINT or SIGTERM asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(destination: &str) -> Scenario {
        let text = format!(
            "name = \"m\"\n[[traffic]]\nto = \"d.test\"\nmessages = 1000\narrivals = \"burst\"\nrecipients = 2\n[[destination]]\ndomain = \"d.test\"\n{destination}\n"
        );
        crate::scenario::parse(&text, "m.toml").expect("valid")
    }

    #[test]
    fn greylist_triplets_count_in_the_estimate() {
        let plain = estimate(&scenario(""));
        assert_eq!(plain.greylist_entries, 0.0);
        let grey = estimate(&scenario("greylist = true"));
        // A burst stays queued at worst: one triplet per recipient.
        assert_eq!(grey.greylist_entries, 2000.0);
        assert_eq!(
            grey.bytes - plain.bytes,
            2000.0 * BYTES_PER_GREYLIST_ENTRY as f64
        );
        let host = estimate(&scenario(
            "mx = [ { host = \"mx.d.test\", preference = 10, greylist = \"60s\" } ]",
        ));
        assert_eq!(host.greylist_entries, 2000.0, "an MX host's own greylist");
    }
}
