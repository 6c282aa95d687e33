//! A destination's mail servers as the SMTP client meets them: how long each phase takes and
//! what is answered at the greeting, to each RCPT and after DATA. One `Server` holds the
//! behaviour and the shared policy state (greylisting, rate buckets) of one [[destination]];
//! every MX host it lists uses it.

use super::greylist::Greylist;
use super::latency::Sampler;
use super::rate_limit::TokenBucket;
use crate::engine::rng::{fnv1a, splitmix64};
use crate::engine::time::Time;
use crate::engine::{RngStreams, SimRng};
use crate::observe::Cause;
use crate::scenario::{DestinationSpec, RateReply, SpamSpec};
use rand::Rng;

pub struct Server {
    dns: Sampler,
    connect: Sampler,
    greeting: Sampler,
    rcpt: Sampler,
    transaction: Sampler,
    tempfail: f64,
    permfail: f64,
    spam: SpamSpec,
    greylist: Option<Greylist>,
    messages: Option<TokenBucket>,
    connections: Option<TokenBucket>,
    rate_reply: RateReply,
    rng: SimRng,
}

impl Server {
    pub fn new(spec: &DestinationSpec, index: usize, streams: &RngStreams) -> Self {
        let rate = spec.rate_limit;
        Server {
            dns: Sampler::new(&spec.phases.dns),
            connect: Sampler::new(&spec.phases.connect),
            greeting: Sampler::new(&spec.phases.greeting),
            rcpt: Sampler::new(&spec.phases.rcpt),
            transaction: Sampler::new(&spec.phases.transaction),
            tempfail: spec.tempfail,
            permfail: spec.permfail,
            spam: spec.spam,
            greylist: spec.greylist.map(Greylist::new),
            messages: rate.and_then(|r| r.messages.map(|n| TokenBucket::new(n, r.per))),
            connections: rate.and_then(|r| r.connections.map(|n| TokenBucket::new(n, r.per))),
            rate_reply: rate.map(|r| r.reply).unwrap_or(RateReply::Rcpt450),
            rng: streams.stream("remote", index as u64),
        }
    }

    pub fn dns_time(&mut self) -> Time {
        self.dns.sample(&mut self.rng)
    }

    pub fn connect_time(&mut self) -> Time {
        self.connect.sample(&mut self.rng)
    }

    pub fn greeting_time(&mut self) -> Time {
        self.greeting.sample(&mut self.rng)
    }

    pub fn rcpt_time(&mut self) -> Time {
        self.rcpt.sample(&mut self.rng)
    }

    pub fn transaction_time(&mut self) -> Time {
        self.transaction.sample(&mut self.rng)
    }

    /// The greeting, for a connection the server has taken at `t`: `Some(cause)` for a 421.
    /// An accepted connection uses a connection token.
    pub fn greet(&mut self, t: Time) -> Option<Cause> {
        if self.connections.as_ref().is_some_and(|b| !b.available(t)) {
            return Some(Cause::ConnectionRateLimited);
        }
        if self.rate_reply == RateReply::Greeting421
            && self.messages.as_ref().is_some_and(|b| !b.available(t))
        {
            return Some(Cause::RateLimitedGreeting);
        }
        if let Some(b) = self.connections.as_mut() {
            b.take(t);
        }
        None
    }

    /// For a session from our connection cache (no greeting this time): is the message
    /// rate answered with 421 exceeded at MAIL FROM time `t`? The server then says 421 to
    /// MAIL FROM and closes the connection, as it would have at the greeting.
    pub fn mail_refused(&self, t: Time) -> bool {
        self.rate_reply == RateReply::Greeting421
            && self.messages.as_ref().is_some_and(|b| !b.available(t))
    }

    /// Is the message rate exceeded at MAIL FROM time `t` (answered 450 to each RCPT)?
    pub fn rcpt_rate_exceeded(&self, t: Time) -> bool {
        self.rate_reply == RateReply::Rcpt450
            && self.messages.as_ref().is_some_and(|b| !b.available(t))
    }

    /// Recipient `recipient` of `sender` was delivered or bounced for good: its greylist
    /// triplet can be dropped (see [`Greylist::forget`]).
    pub fn forget(&mut self, sender: u32, recipient: u64) {
        if let Some(g) = self.greylist.as_mut() {
            g.forget(sender, recipient);
        }
    }

    /// Greylist triplets held in memory now, and at most so far.
    pub fn greylist_entries(&self) -> (usize, usize) {
        self.greylist
            .as_ref()
            .map_or((0, 0), |g| (g.len(), g.peak()))
    }

    pub fn greylists(&self) -> bool {
        self.greylist.is_some()
    }

    /// A message was accepted at `t`: it counts against the message rate.
    pub fn count_message(&mut self, t: Time) {
        if let Some(b) = self.messages.as_mut() {
            b.take(t);
        }
    }

    /// The reply to one RCPT at `t` (seconds resolution for the policy server): `None` =
    /// 250 OK. `rate_exceeded` comes from [`Server::rcpt_rate_exceeded`] at MAIL FROM.
    /// Unknown users are the domain's business ([`Mailboxes`]) and are checked first.
    pub fn rcpt(
        &mut self,
        sender: u32,
        recipient: u64,
        rate_exceeded: bool,
        t: Time,
    ) -> Option<Cause> {
        if rate_exceeded {
            return Some(Cause::RateLimited);
        }
        if let Some(g) = self.greylist.as_mut()
            && !g.check(sender, recipient, crate::engine::time::whole_seconds(t))
        {
            return Some(Cause::Greylisted);
        }
        if self.permfail == 0.0 && self.tempfail == 0.0 {
            return None;
        }
        let u: f64 = self.rng.random();
        if u < self.permfail {
            Some(Cause::RecipientRejected)
        } else if u < self.permfail + self.tempfail {
            Some(Cause::RecipientTempfail)
        } else {
            None
        }
    }

    /// The reply after end of DATA: content scoring.
    pub fn end_of_data(&mut self) -> Option<Cause> {
        if self.spam.tempfail == 0.0 && self.spam.reject == 0.0 {
            return None;
        }
        let u: f64 = self.rng.random();
        if u < self.spam.reject {
            Some(Cause::DataRejected)
        } else if u < self.spam.reject + self.spam.tempfail {
            Some(Cause::DataTempfail)
        } else {
            None
        }
    }
}

/// Which of a domain's recipient addresses exist (`unknown_recipients`). It belongs to the
/// domain, not to a server: every MX host of the domain, shared with other domains or not,
/// rejects the same addresses.
#[derive(Clone, Copy, Debug)]
pub struct Mailboxes {
    /// Recipients whose key hashes below this do not exist (`unknown_recipients` × 2^64).
    unknown_below: u64,
    salt: u64,
}

impl Mailboxes {
    pub fn new(spec: &DestinationSpec, streams: &RngStreams) -> Self {
        Mailboxes {
            unknown_below: probability_threshold(spec.unknown_recipients),
            // Keyed by the domain, so every MX host agrees on who does not exist.
            salt: streams
                .stream("unknown_recipients", fnv1a(&spec.domain))
                .random(),
        }
    }

    /// Does recipient `key` not exist? (`550 5.1.1`, whatever a policy server says:
    /// postgrey answers DEFER_IF_PERMIT, so a later reject wins.)
    pub fn unknown(&self, key: u64) -> bool {
        self.unknown_below > 0 && splitmix64(key ^ self.salt) < self.unknown_below
    }
}

fn probability_threshold(p: f64) -> u64 {
    if p <= 0.0 {
        0
    } else if p >= 1.0 {
        u64::MAX
    } else {
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}
