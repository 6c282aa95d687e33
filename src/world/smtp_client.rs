//! The SMTP client's delivery loop for one request, as Postfix 3.7 runs it
//! (`smtp_connect.c: smtp_connect_inet`, `smtp_trouble.c`, `smtp_proto.c`; spec §6.1–6.2, §6.4):
//!
//! - Sites are the next-hop domain, then each `smtp_fallback_relay`; only the last one is
//!   the "final next hop".
//! - A site's hosts come from DNS in MX preference order (equal preferences shuffled), at
//!   most `smtp_mx_address_limit` of them; at most `smtp_mx_session_limit` of them may get
//!   as far as a completed handshake.
//! - A failed TCP connect is only logged; the next address is tried.
//! - A failed handshake (4xx greeting, greeting timeout) and every 4xx reply in a transaction
//!   leave the recipients for the next server, unless this is the final server, where they
//!   are deferred. 5xx replies bounce at once.
//! - Recipients left when the addresses run out are deferred (or bounced, for a hard DNS
//!   error) with the last error, and the request reports a site failure — qmgr's negative
//!   feedback — unless some session of this request completed a mail transaction.
//!
//! A whole conversation with one host is decided when it starts (its phase times are drawn
//! then), so the agent steps from host to host; fault windows are looked up at the exact
//! phase instants.

use super::connections::Admission;
use super::{AgentId, Request, SiteRef, Step, World};
use crate::engine::time::Time;
use crate::observe::Cause;
use crate::postfix::message::Reply;
use crate::scenario::{FaultKind, Stage};

/// Progress of one request through its sites and addresses.
#[derive(Clone, Debug, Default)]
pub(super) struct Client {
    site: usize,
    resolved: bool,
    addrs: HostList,
    next_addr: usize,
    addr_count: u32,
    sess_count: u32,
    final_nexthop: bool,
    /// `SMTP_MISC_FLAG_COMPLETE_SESSION`: a transaction completed with some server.
    complete_session: bool,
    /// The hop status was set by a handshake failure at the final server.
    hop_failure: bool,
    /// The last error (Postfix's `why`), used for recipients left at the end.
    last_cause: Option<Cause>,
    /// The host of the last conversation that got a TCP connection, and when its
    /// handshake completed (`relay=`, end of `delays=` c).
    relay: Option<u32>,
    setup_done: Option<Time>,
    tried: Option<u32>,
}

impl Client {
    pub(super) fn reset(&mut self) {
        let mut addrs = std::mem::take(&mut self.addrs);
        addrs.clear();
        *self = Client {
            addrs,
            ..Client::default()
        };
    }
}

/// The hosts of the current site, kept inside the client for the usual short lists so the
/// hot path does not chase a pointer per delivery.
#[derive(Clone, Debug, Default)]
struct HostList {
    len: usize,
    inline: [u32; INLINE_HOSTS],
    spill: Vec<u32>,
}

const INLINE_HOSTS: usize = 6;

impl HostList {
    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, h: u32) {
        if self.len < INLINE_HOSTS {
            self.inline[self.len] = h;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(h);
        }
        self.len += 1;
    }

    fn as_mut_slice(&mut self) -> &mut [u32] {
        if self.len <= INLINE_HOSTS {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill[..]
        }
    }

    fn get(&self, i: usize) -> u32 {
        if self.len <= INLINE_HOSTS {
            self.inline[i]
        } else {
            self.spill[i]
        }
    }
}

/// How a conversation with one host ended.
enum HostOutcome {
    /// No TCP connection: only logged, the next address is tried.
    ConnectFailed(Cause),
    /// Connected, but the greeting or EHLO failed (`smtp_site_fail`).
    HandshakeFailed(Cause),
    Transaction,
}

impl World {
    /// Runs request `e` from `event_time` until it must wait for the clock (its next DNS
    /// lookup or connection lies in the future) or is done. Finishing needs no wait: the
    /// agent's reply is computed from what already happened.
    pub(super) fn advance(&mut self, e: usize, event_time: Time, mut req: Request<'_>) -> Step {
        let mut now = event_time;
        loop {
            if !req.recipients.iter().any(|r| r.is_left()) {
                return self.finish(e, now, &mut req);
            }
            let sites = 1 + self.fallback.len();
            if !self.clients[e].resolved {
                if now > event_time {
                    return Step::Wait(now, AgentId(e as u32));
                }
                let site_index = self.clients[e].site;
                let site = match site_index {
                    0 => SiteRef::Domain(req.dest),
                    i => self.fallback[i - 1],
                };
                let mut addrs = std::mem::take(&mut self.clients[e].addrs);
                addrs.clear();
                let (delay, error) = self.resolve(site, now, &mut addrs);
                let c = &mut self.clients[e];
                c.addrs = addrs;
                c.final_nexthop = site_index + 1 == sites;
                c.resolved = true;
                c.next_addr = 0;
                c.addr_count = 0;
                c.sess_count = 0;
                if error.is_some() {
                    c.last_cause = error;
                }
                now += delay.max(0);
                continue;
            }
            let c = &mut self.clients[e];
            if c.next_addr >= c.addrs.len() {
                if c.final_nexthop {
                    return self.finish(e, now, &mut req);
                }
                c.site += 1;
                c.resolved = false;
                continue;
            }
            if now > event_time {
                return Step::Wait(now, AgentId(e as u32));
            }
            let host = c.addrs.get(c.next_addr);
            c.next_addr += 1;
            c.addr_count += 1;
            now = self.converse(e, host, now, &mut req).max(now);
        }
    }

    /// DNS for one site: fills `addrs` and returns the lookup time and any error.
    fn resolve(&mut self, site: SiteRef, now: Time, addrs: &mut HostList) -> (Time, Option<Cause>) {
        let (domain, owner) = match site {
            SiteRef::Domain(d) => (Some(d as usize), d as usize),
            SiteRef::Host(h) => {
                let host = &self.hosts[h as usize];
                (host.named_domain, host.owner as usize)
            }
        };
        let lookup = self.servers[owner].dns_time();
        match self.faults.dns(domain, now) {
            Some(FaultKind::DnsServfail) => return (lookup, Some(Cause::DnsTempfail)),
            Some(FaultKind::DnsTimeout { lookup }) => return (lookup, Some(Cause::DnsTempfail)),
            Some(FaultKind::DnsNxdomain) => return (lookup, Some(Cause::DnsNotFound)),
            _ => {}
        }
        match site {
            SiteRef::Host(h) => addrs.push(h),
            SiteRef::Domain(d) => {
                let list = &self.mx[d as usize];
                let mut i = 0;
                while i < list.len() {
                    let mut j = i + 1;
                    while j < list.len() && list[j].0 == list[i].0 {
                        j += 1;
                    }
                    let run = addrs.len();
                    for &(_, h) in &list[i..j] {
                        addrs.push(h);
                    }
                    if j - i > 1 {
                        // Equal preferences are tried in random order.
                        use rand::seq::SliceRandom;
                        addrs.as_mut_slice()[run..].shuffle(&mut self.shuffle);
                    }
                    i = j;
                }
            }
        }
        (lookup, None)
    }

    /// One conversation with `host` starting at `t0`; returns when it ends.
    fn converse(&mut self, e: usize, host: u32, t0: Time, req: &mut Request<'_>) -> Time {
        let limits = self.limits;
        let c = &self.clients[e];
        let mut more = c.next_addr < c.addrs.len()
            && !(limits.address_limit > 0 && c.addr_count >= limits.address_limit);
        let final_nexthop = c.final_nexthop;
        let mut final_server = final_nexthop && !more;
        let h = host as usize;
        let owner = self.hosts[h].owner as usize;
        let fault = self.faults.host(host, t0);
        let mut slot = None;
        let (end, outcome) = 'talk: {
            match fault {
                Some(FaultKind::Refuse) => {
                    let t = t0 + self.servers[owner].connect_time();
                    break 'talk (t, HostOutcome::ConnectFailed(Cause::ConnectionRefused));
                }
                Some(FaultKind::Blackhole) => {
                    break 'talk (
                        t0 + limits.connect_timeout,
                        HostOutcome::ConnectFailed(Cause::ConnectionTimedOut),
                    );
                }
                _ => {}
            }
            let connect = self.servers[owner].connect_time();
            if connect >= limits.connect_timeout {
                break 'talk (
                    t0 + limits.connect_timeout,
                    HostOutcome::ConnectFailed(Cause::ConnectionTimedOut),
                );
            }
            let mut t = t0 + connect;
            let timed_out = (
                t + limits.helo_timeout,
                HostOutcome::HandshakeFailed(Cause::GreetingTimedOut),
            );
            if fault == Some(FaultKind::Mute) {
                break 'talk timed_out;
            }
            if let Some(slots) = self.hosts[h].slots.as_mut() {
                match slots.admit(t, limits.helo_timeout) {
                    Admission::Served { slot: s, start } => {
                        if start - t >= limits.helo_timeout {
                            break 'talk timed_out;
                        }
                        t = start;
                        slot = Some(s);
                    }
                    Admission::Reject421 => {
                        let greeting = self.servers[owner].greeting_time();
                        break 'talk (
                            t + greeting,
                            HostOutcome::HandshakeFailed(Cause::TooManyConnections),
                        );
                    }
                    Admission::Mute => break 'talk timed_out,
                    Admission::Dropped => {
                        break 'talk (
                            t0 + limits.connect_timeout,
                            HostOutcome::ConnectFailed(Cause::ConnectionTimedOut),
                        );
                    }
                }
            }
            let greeting = self.servers[owner].greeting_time();
            if greeting >= limits.helo_timeout {
                break 'talk (
                    t + limits.helo_timeout,
                    HostOutcome::HandshakeFailed(Cause::GreetingTimedOut),
                );
            }
            let refusal = match self.faults.host(host, t) {
                Some(FaultKind::Tempfail(Stage::Greeting)) => Some(Cause::GreetingTempfail),
                _ => self.servers[owner].greet(t),
            };
            if let Some(cause) = refusal {
                break 'talk (t + greeting, HostOutcome::HandshakeFailed(cause));
            }
            t += greeting;
            let c = &mut self.clients[e];
            c.setup_done = Some(t);
            c.sess_count += 1;
            if limits.session_limit > 0 && c.sess_count >= limits.session_limit {
                more = false;
            }
            final_server = final_nexthop && !more;
            match self.transaction(e, host, t, final_server, req) {
                Ok(end) => {
                    self.clients[e].complete_session = true;
                    (end, HostOutcome::Transaction)
                }
                // The server went silent after DATA: a lost session, like a handshake
                // failure for what it does to the recipients and the destination.
                Err(end) => (end, HostOutcome::HandshakeFailed(Cause::DataTimedOut)),
            }
        };
        if let (Some(s), Some(slots)) = (slot, self.hosts[h].slots.as_mut()) {
            slots.hold(s, end);
        }
        if let HostOutcome::ConnectFailed(cause) = outcome
            && self.keep_notes
        {
            self.connect_failures.push(super::ConnectFailure {
                t: end,
                host,
                cause,
                pid: req.pid,
                transport: req.transport,
            });
        }
        let c = &mut self.clients[e];
        c.tried = Some(host);
        c.relay = match outcome {
            HostOutcome::ConnectFailed(_) => None,
            _ => Some(host),
        };
        match outcome {
            HostOutcome::ConnectFailed(cause) => c.last_cause = Some(cause),
            HostOutcome::HandshakeFailed(cause) => {
                c.last_cause = Some(cause);
                if final_server {
                    for r in req.recipients.iter_mut().filter(|r| r.is_left()) {
                        r.reply = Reply::Deferred(cause);
                    }
                    if !c.complete_session {
                        c.hop_failure = true;
                    }
                }
            }
            HostOutcome::Transaction => {}
        }
        if !more {
            c.next_addr = c.addrs.len();
        }
        end
    }

    /// MAIL FROM, RCPT TO for each recipient left, DATA: returns when the transaction ends,
    /// or `Err(when)` if the server never answered the end of data (`smtp_stream_except`).
    fn transaction(
        &mut self,
        e: usize,
        host: u32,
        mut t: Time,
        final_server: bool,
        req: &mut Request<'_>,
    ) -> Result<Time, Time> {
        let owner = self.hosts[host as usize].owner as usize;
        if self.faults.host(host, t) == Some(FaultKind::Tempfail(Stage::Mail)) {
            t += self.servers[owner].rcpt_time();
            for i in 0..req.recipients.len() {
                if req.recipients[i].is_left() {
                    self.reject(e, req, i, Cause::MailTempfail, final_server);
                }
            }
            return Ok(t);
        }
        let rate_exceeded = self.servers[owner].rcpt_rate_exceeded(t);
        let mut accepted = std::mem::take(&mut self.accepted);
        accepted.clear();
        for i in 0..req.recipients.len() {
            if !req.recipients[i].is_left() {
                continue;
            }
            t += self.servers[owner].rcpt_time();
            let reply = if self.faults.host(host, t) == Some(FaultKind::Tempfail(Stage::Rcpt)) {
                Some(Cause::RecipientTempfail)
            } else {
                let key = req.keys.key(req.recipients[i].orig_index);
                self.servers[owner].rcpt(req.sender, key, rate_exceeded, t)
            };
            match reply {
                None => accepted.push(i),
                Some(cause) => self.reject(e, req, i, cause, final_server),
            }
        }
        if !accepted.is_empty() {
            let mut transfer = self.servers[owner].transaction_time();
            if self.on_our_host[owner] {
                transfer = self.faults.scaled_by_load(transfer, t);
            }
            match self.faults.host(host, t) {
                Some(FaultKind::Slow { factor }) => {
                    transfer = (transfer as f64 * factor).min(i64::MAX as f64 / 4.0) as Time;
                }
                Some(FaultKind::Hang) => {
                    // Accepted recipients stay left: the caller fails them with the session.
                    self.accepted = accepted;
                    return Err(t + self.limits.data_done_timeout);
                }
                _ => {}
            }
            if transfer >= self.limits.data_done_timeout {
                self.accepted = accepted;
                return Err(t + self.limits.data_done_timeout);
            }
            t += transfer;
            self.servers[owner].count_message(t);
            let verdict = if self.faults.host(host, t) == Some(FaultKind::Tempfail(Stage::Data)) {
                Some(Cause::DataTempfail)
            } else {
                self.servers[owner].end_of_data()
            };
            for &i in &accepted {
                match verdict {
                    None => req.recipients[i].reply = Reply::Sent,
                    Some(cause) => self.reject(e, req, i, cause, final_server),
                }
            }
        }
        self.accepted = accepted;
        Ok(t)
    }

    /// A 4xx or 5xx for recipient `i` (`smtp_rcpt_fail`): 5xx bounces; 4xx defers at the
    /// final server and otherwise leaves the recipient for the next one.
    fn reject(
        &mut self,
        e: usize,
        req: &mut Request<'_>,
        i: usize,
        cause: Cause,
        final_server: bool,
    ) {
        if cause.is_soft() {
            self.clients[e].last_cause = Some(cause);
            if final_server {
                req.recipients[i].reply = Reply::Deferred(cause);
            }
        } else {
            req.recipients[i].reply = Reply::Bounced(cause);
        }
    }

    /// Recipients still left are deferred or bounced with the last error (`smtp_sess_fail`).
    fn finish(&mut self, e: usize, now: Time, req: &mut Request<'_>) -> Step {
        let c = &self.clients[e];
        let mut cause = c.last_cause.unwrap_or(Cause::Unavailable);
        if !cause.is_soft() && c.site > 0 {
            // A hard error from a fallback relay is a configuration problem: 4.3.5, deferred.
            cause = Cause::DnsTempfail;
        }
        let mut any_left = false;
        for r in req.recipients.iter_mut().filter(|r| r.is_left()) {
            any_left = true;
            r.reply = if cause.is_soft() {
                Reply::Deferred(cause)
            } else {
                Reply::Bounced(cause)
            };
        }
        let site_failure = c.hop_failure || (any_left && cause.is_soft() && !c.complete_session);
        Step::Done {
            at: now,
            site_failure,
            relay: c.relay,
            setup_done: c.setup_done,
            tried: c.tried,
        }
    }
}
