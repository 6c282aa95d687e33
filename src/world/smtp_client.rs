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
//! Connection caching (§6.3; `smtp_connect.c: smtp_cache_policy, smtp_reuse_session`,
//! `smtp_reuse.c`, `smtp_session.c`): the request's caching policy takes effect once the
//! first site's DNS lookup has found addresses. With the load flag, at each site the client
//! first takes the session cached under the request's next-hop name, then those cached at
//! the best-preference addresses, before it connects to the addresses left; a less
//! preferred address is also tried from the cache before a new connection. Each cached
//! session is first probed with RSET. The DNS lookup is not skipped: Postfix 3.7 looks the
//! site up before it searches the cache (the spec's §6.3 says otherwise; the source wins).
//! Good sessions are parked after their transaction when they were opened with the store
//! flag or came from the cache, until `smtp_connection_reuse_time_limit` after they were
//! opened or `smtp_connection_reuse_count_limit` reuses.
//!
//! A whole conversation with one host is decided when it starts (its phase times are drawn
//! then), so the agent steps from host to host; fault windows are looked up at the exact
//! phase instants.

use super::connections::Admission;
use super::scache::IdleSession;
use super::{AgentId, CacheFlags, Request, SiteRef, Step, World};
use crate::engine::time::{Time, whole_seconds};
use crate::observe::Cause;
use crate::postfix::message::Reply;
use crate::scenario::{FaultKind, Stage};

/// Where the client is within the current site (`smtp_connect_inet`'s order of work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// The site's DNS lookup is next.
    #[default]
    Resolve,
    /// `smtp_reuse_session`, first: the session cached under the request's next-hop name.
    ReuseNexthop,
    /// `smtp_reuse_session`, then: sessions cached at the best-preference addresses, from
    /// `next_addr` on.
    ReuseBest,
    /// The address loop from `next_addr` on: new connections, or cached sessions of less
    /// preferred addresses.
    Connect,
}

/// Progress of one request through its sites and addresses.
#[derive(Clone, Debug, Default)]
pub(super) struct Client {
    site: usize,
    phase: Phase,
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
    /// `smtp_cache_policy` for this request, applied once the first site has addresses.
    policy: CacheFlags,
    /// `SMTP_MISC_FLAG_CONN_LOAD` / `_STORE` in effect (none until the policy applies).
    cache: CacheFlags,
    /// `HAVE_SCACHE_REQUEST_NEXTHOP`: the next good session is also cached under the
    /// request's next-hop name; cleared by the first session that was not throttled.
    nexthop_key: bool,
    /// MX preference of the site's first address (`domain_best_pref`).
    best_pref: u32,
    /// Sessions taken from the cache by `smtp_reuse_session` at this site.
    reused_here: u32,
    /// Addresses whose cached sessions this request used (`cache_used`): later sites skip
    /// them.
    cache_used: Vec<u32>,
    /// `conn_use=` of the last session (0: a new connection).
    conn_use: u32,
    /// Time spent waiting for DNS answers.
    dns_time: Time,
}

impl Client {
    pub(super) fn reset(&mut self, policy: CacheFlags) {
        let mut addrs = std::mem::take(&mut self.addrs);
        addrs.clear();
        let mut cache_used = std::mem::take(&mut self.cache_used);
        cache_used.clear();
        *self = Client {
            addrs,
            cache_used,
            policy,
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

    fn is_empty(&self) -> bool {
        self.len == 0
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

    /// Removes the first `h`, keeping the order of the others.
    fn remove(&mut self, h: u32) {
        let slice = self.as_mut_slice();
        let Some(i) = slice.iter().position(|&x| x == h) else {
            return;
        };
        slice[i..].rotate_left(1);
        if self.len > INLINE_HOSTS {
            self.spill.pop();
            if self.spill.len() == INLINE_HOSTS {
                self.inline.copy_from_slice(&self.spill);
                self.spill.clear();
            }
        }
        self.len -= 1;
    }
}

/// How a conversation with one host ended.
enum HostOutcome {
    /// No TCP connection: only logged, the next address is tried.
    ConnectFailed(Cause),
    /// Connected, but the greeting or EHLO failed (`smtp_site_fail`), or the session was
    /// lost: the session is "throttled".
    HandshakeFailed(Cause),
    /// The mail transaction ran; `closed`: the server disconnected after refusing it, so
    /// it did not complete and cannot be cached.
    Transaction { closed: bool },
}

/// How a mail transaction ended.
enum TransactionEnd {
    /// Its replies came in; the session is still open.
    Done(Time),
    /// The server answered 421 and closed the connection.
    Closed(Time),
    /// The server never answered the end of data (`smtp_stream_except`).
    Lost(Time),
}

/// Which loop of `smtp_connect_inet` a conversation belongs to.
#[derive(Clone, Copy)]
enum Loop {
    /// `smtp_reuse_session`: the list was already updated; the final-server flag is given.
    Reuse { final_server: bool },
    /// The address loop: the address and session limits decide what comes next.
    Connect,
}

/// One conversation's place in the request.
struct Turn {
    within: Loop,
    /// The session came from the cache.
    from_cache: bool,
    /// Another address may be tried after this one.
    more: bool,
    /// `SMTP_MISC_FLAG_FINAL_SERVER`: soft errors here defer.
    final_server: bool,
}

/// The RSET probe of a cached session (`smtp_reuse_common`).
enum Probe {
    /// Nothing cached for the address.
    None,
    /// The session answered at the given time.
    Answered(IdleSession, Time),
    /// The session was dead; the client gave up on it then.
    Failed(Time),
}
impl World {
    /// Runs request `e` from `event_time` until it must wait for the clock (its next DNS
    /// lookup, cache lookup or connection lies in the future) or is done. Finishing needs no
    /// wait: the agent's reply is computed from what already happened.
    pub(super) fn advance(&mut self, e: usize, event_time: Time, mut req: Request<'_>) -> Step {
        let mut now = event_time;
        loop {
            if !req.recipients.iter().any(|r| r.is_left()) {
                return self.finish(e, now, &mut req);
            }
            // Every lookup and conversation happens at its own instant: the agent waits for
            // the clock first (the cache holds only what is idle by then).
            match self.clients[e].phase {
                Phase::Resolve => {
                    if now > event_time {
                        return Step::Wait(now, AgentId(e as u32));
                    }
                    now = self.resolve_site(e, now, &req);
                }
                Phase::ReuseNexthop => {
                    if !self.clients[e].nexthop_key {
                        self.clients[e].phase = Phase::ReuseBest;
                        continue;
                    }
                    if now > event_time {
                        return Step::Wait(now, AgentId(e as u32));
                    }
                    self.clients[e].phase = Phase::ReuseBest;
                    now = self.reuse_nexthop(e, now, &mut req).max(now);
                }
                Phase::ReuseBest => {
                    let c = &self.clients[e];
                    let i = c.next_addr;
                    let site = self.site_ref(e, &req);
                    if i >= c.addrs.len() || self.preference(site, c.addrs.get(i)) != c.best_pref {
                        // smtp_connect_inet: the sessions reused count as addresses and
                        // sessions of this site.
                        let c = &mut self.clients[e];
                        c.addr_count = c.reused_here;
                        c.sess_count = c.reused_here;
                        c.next_addr = 0;
                        c.phase = Phase::Connect;
                        continue;
                    }
                    if now > event_time {
                        return Step::Wait(now, AgentId(e as u32));
                    }
                    now = self.reuse_best(e, i, now, &mut req).max(now);
                }
                Phase::Connect => {
                    let c = &mut self.clients[e];
                    if c.next_addr >= c.addrs.len() {
                        if c.final_nexthop {
                            return self.finish(e, now, &mut req);
                        }
                        c.site += 1;
                        c.phase = Phase::Resolve;
                        continue;
                    }
                    if now > event_time {
                        return Step::Wait(now, AgentId(e as u32));
                    }
                    let host = c.addrs.get(c.next_addr);
                    c.next_addr += 1;
                    c.addr_count += 1;
                    let site = self.site_ref(e, &req);
                    let c = &self.clients[e];
                    // Best-preference addresses were searched already (smtp_reuse_session).
                    let cached = if c.cache.load && self.preference(site, host) != c.best_pref {
                        self.probe_cached(host, now)
                    } else {
                        Probe::None
                    };
                    let (t0, cached) = match cached {
                        Probe::None => (now, None),
                        Probe::Answered(s, t) => (t, Some(s)),
                        // The dead session is dropped; a new connection follows.
                        Probe::Failed(t) => (t, None),
                    };
                    now = self
                        .converse(e, host, t0, &mut req, cached, Loop::Connect)
                        .max(now);
                }
            }
        }
    }

    /// The current site.
    fn site_ref(&self, e: usize, req: &Request<'_>) -> SiteRef {
        match self.clients[e].site {
            0 => SiteRef::Domain(req.dest),
            i => self.fallback[i - 1],
        }
    }

    /// The MX preference of `host` at `site` (0 for an address looked up without MX).
    fn preference(&self, site: SiteRef, host: u32) -> u32 {
        match site {
            SiteRef::Domain(d) => self.mx[d as usize]
                .iter()
                .find(|&&(_, h)| h == host)
                .map_or(0, |&(p, _)| p),
            SiteRef::Host(_) => 0,
        }
    }

    /// The current site's DNS lookup at `now`; returns when it is answered. On the first
    /// site with addresses the request's caching policy takes effect; with the load flag
    /// the cache is searched next.
    fn resolve_site(&mut self, e: usize, now: Time, req: &Request<'_>) -> Time {
        let sites = 1 + self.fallback.len();
        let site_index = self.clients[e].site;
        let site = self.site_ref(e, req);
        let mut addrs = std::mem::take(&mut self.clients[e].addrs);
        addrs.clear();
        let (delay, error) = self.resolve(site, now, &mut addrs);
        let best_pref = if addrs.is_empty() {
            0
        } else {
            self.preference(site, addrs.get(0))
        };
        let c = &mut self.clients[e];
        c.addrs = addrs;
        c.final_nexthop = site_index + 1 == sites;
        c.next_addr = 0;
        c.addr_count = 0;
        c.sess_count = 0;
        c.reused_here = 0;
        c.best_pref = best_pref;
        if error.is_some() {
            c.last_cause = error;
        }
        if site_index == 0 && !c.addrs.is_empty() {
            c.cache = c.policy;
            c.nexthop_key = c.cache.load || c.cache.store;
        }
        c.dns_time += delay.max(0);
        c.phase = Phase::Connect;
        if c.cache.load {
            // Addresses whose cached sessions this request used are not visited again.
            for &h in &c.cache_used {
                c.addrs.remove(h);
            }
            if !c.addrs.is_empty() {
                c.phase = Phase::ReuseNexthop;
            }
        }
        now + delay.max(0)
    }

    /// `smtp_reuse_session`, first step, at `now`: the session cached under the request's
    /// next-hop name (perhaps a fallback relay's, which is how a cached session skips dead
    /// hosts). Returns when the client is done with it.
    fn reuse_nexthop(&mut self, e: usize, now: Time, req: &mut Request<'_>) -> Time {
        let Some((host, s)) = self.scache.take_nexthop(req.dest, now) else {
            return now;
        };
        let t = match self.probe(host, s, now) {
            Ok(t) => t,
            Err(t) => return t,
        };
        let c = &mut self.clients[e];
        c.reused_here = 1;
        self.update_addr_list(e, host);
        let c = &self.clients[e];
        let final_server = c.final_nexthop && c.addrs.is_empty();
        self.converse(e, host, t, req, Some(s), Loop::Reuse { final_server })
    }

    /// `smtp_reuse_session`, second step: the session cached at best-preference address
    /// `i`, searched at `now`. Returns when the client is done with it.
    fn reuse_best(&mut self, e: usize, i: usize, now: Time, req: &mut Request<'_>) -> Time {
        let host = self.clients[e].addrs.get(i);
        let (s, t) = match self.probe_cached(host, now) {
            Probe::Answered(s, t) => (s, t),
            Probe::None => {
                self.clients[e].next_addr = i + 1;
                return now;
            }
            Probe::Failed(t) => {
                self.clients[e].next_addr = i + 1;
                return t;
            }
        };
        self.clients[e].reused_here += 1;
        // The address leaves the list (the next one takes its place), or the list goes.
        self.update_addr_list(e, host);
        let c = &self.clients[e];
        let final_server = c.final_nexthop && i >= c.addrs.len();
        self.converse(e, host, t, req, Some(s), Loop::Reuse { final_server })
    }

    /// `smtp_update_addr_list` after a session was taken from the cache: the list is dropped
    /// when a limit is reached, otherwise the session's address leaves it.
    fn update_addr_list(&mut self, e: usize, host: u32) {
        let limits = self.limits;
        let c = &mut self.clients[e];
        if c.reused_here == limits.session_limit || c.reused_here == limits.address_limit {
            c.addrs.clear();
        } else {
            c.addrs.remove(host);
        }
    }

    /// A cached session of `host` taken from the cache at `now` and probed.
    fn probe_cached(&mut self, host: u32, now: Time) -> Probe {
        match self.scache.take_endpoint(host, now) {
            Some(s) => match self.probe(host, s, now) {
                Ok(t) => Probe::Answered(s, t),
                Err(t) => Probe::Failed(t),
            },
            None => Probe::None,
        }
    }

    /// `smtp_reuse_common`: the RSET probe of session `s` to `host` at `now`. A server that
    /// does not answer (blackholed or mute now) costs `smtp_rset_timeout`; one that refused
    /// connections at some instant while the session was idle was down, and closed it.
    /// A failed probe is silent: no error is recorded for the recipients. Returns when the
    /// reply came, or `Err(when)` the client gave up on the session.
    fn probe(&mut self, host: u32, s: IdleSession, now: Time) -> Result<Time, Time> {
        let owner = self.hosts[host as usize].owner as usize;
        // With a connection limit, a connection waiting in the listen backlog may have
        // taken the idle session's slot (`connections.rs`): the server closed it.
        let slot_lost = match (s.slot, self.hosts[host as usize].slots.as_ref()) {
            (Some((slot, count)), Some(slots)) => !slots.still_held(slot, count),
            _ => false,
        };
        let outcome = match self.faults.host(host, now) {
            Some(FaultKind::Blackhole | FaultKind::Mute) => Err(now + self.limits.rset_timeout),
            _ => {
                let t = now + self.servers[owner].rcpt_time();
                let closed = slot_lost
                    || self
                        .faults
                        .host_had(host, s.parked, now, |k| k == FaultKind::Refuse);
                if closed { Err(t) } else { Ok(t) }
            }
        };
        if let (Err(t), Some((slot, _)), Some(slots), false) = (
            outcome,
            s.slot,
            self.hosts[host as usize].slots.as_mut(),
            slot_lost,
        ) {
            // The client drops the dead session: its slot is free from then.
            slots.release_at(slot, t);
        }
        outcome
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

    /// One conversation with `host` starting at `t0`, over `cached` (a session from the
    /// cache whose RSET probe was answered at `t0`) or a new connection; returns when it
    /// ends. Afterwards the session is parked in the cache or closed
    /// (`smtp_cleanup_session`).
    fn converse(
        &mut self,
        e: usize,
        host: u32,
        t0: Time,
        req: &mut Request<'_>,
        cached: Option<IdleSession>,
        within: Loop,
    ) -> Time {
        let limits = self.limits;
        let c = &self.clients[e];
        let final_nexthop = c.final_nexthop;
        let (more, final_server) = match within {
            Loop::Reuse { final_server } => (true, final_server),
            Loop::Connect => {
                let more = c.next_addr < c.addrs.len()
                    && !(limits.address_limit > 0 && c.addr_count >= limits.address_limit);
                (more, final_nexthop && !more)
            }
        };
        let mut turn = Turn {
            within,
            from_cache: cached.is_some(),
            more,
            final_server,
        };
        let h = host as usize;
        let owner = self.hosts[h].owner as usize;
        let mut fault = self.faults.host(host, t0);
        let mut slot = cached.and_then(|s| s.slot).map(|(s, _)| s);
        // A session may be parked after its transaction if it came from the cache (it keeps
        // its deadline, `smtp_session_activate`) or was opened with the store flag
        // (`smtp_session_alloc`): its expire_time in whole seconds and its reuse_count.
        let mut cacheable: Option<(i64, u32)> = cached.map(|s| (s.expire_s, s.reuse_count + 1));
        let (end, outcome) = 'talk: {
            if cached.is_some() {
                self.sessions_reused += 1;
                break 'talk self.session(e, host, t0, &mut turn, req);
            }
            // The SYN that gets an answer: the first, or, while the host is blackholed, the
            // first retransmission after the blackhole ends, if that comes before
            // smtp_connect_timeout (tests/fidelity/blackhole-starvation shows it on Postfix).
            let mut syn = 0;
            if fault == Some(FaultKind::Blackhole) {
                let answered = self.syn.retransmits.iter().copied().find(|&s| {
                    s < limits.connect_timeout
                        && self.faults.host(host, t0 + s) != Some(FaultKind::Blackhole)
                });
                let Some(s) = answered else {
                    break 'talk (
                        t0 + limits.connect_timeout,
                        HostOutcome::ConnectFailed(Cause::ConnectionTimedOut),
                    );
                };
                syn = s;
                fault = self.faults.host(host, t0 + s);
            }
            if fault == Some(FaultKind::Refuse) {
                let t = t0 + syn + self.servers[owner].connect_time();
                break 'talk (t, HostOutcome::ConnectFailed(Cause::ConnectionRefused));
            }
            let connect = syn + self.servers[owner].connect_time();
            if connect >= limits.connect_timeout {
                break 'talk (
                    t0 + limits.connect_timeout,
                    HostOutcome::ConnectFailed(Cause::ConnectionTimedOut),
                );
            }
            let mut t = t0 + connect;
            self.connections_opened += 1;
            if self.clients[e].cache.store {
                // smtp_connect_sock: the clock starts before the connect.
                cacheable = Some((whole_seconds(t0) + limits.reuse_time_limit_s, 0));
            }
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
            self.session(e, host, t, &mut turn, req)
        };
        // smtp_cleanup_session: THIS_SESSION_IS_EXPIRED is judged at the end of the
        // transaction; failed and throttled sessions are never cached.
        let park = match (&outcome, cacheable) {
            (HostOutcome::Transaction { closed: false }, Some((expire_s, reuse_count)))
                if expire_s >= whole_seconds(end)
                    && (limits.reuse_count_limit == 0
                        || reuse_count < limits.reuse_count_limit) =>
            {
                Some((expire_s, reuse_count))
            }
            _ => None,
        };
        let slots = self.hosts[h].slots.as_mut();
        match (park, slot, slots) {
            (Some((expire_s, reuse_count)), slot, slots) => {
                let idle_until = end + limits.cache_idle_limit;
                // The idle connection keeps its slot at the remote until scache closes it.
                let slot = match (slot, slots) {
                    (Some(s), Some(slots)) => {
                        slots.park(s, end, idle_until);
                        Some((s, slots.admissions(s)))
                    }
                    _ => None,
                };
                let nexthop = self.clients[e].nexthop_key.then_some(req.dest);
                self.scache.park(
                    self.clock,
                    host,
                    nexthop,
                    IdleSession {
                        parked: end,
                        idle_until,
                        expire_s,
                        reuse_count,
                        slot,
                    },
                );
            }
            // Its hold ran to the end of its idle time: the connection closes now.
            (None, Some(s), Some(slots)) if cached.is_some() => slots.release_at(s, end),
            (None, Some(s), Some(slots)) => slots.hold(s, end),
            _ => {}
        }
        if self.keep_notes {
            let kind = match outcome {
                HostOutcome::ConnectFailed(_) => Some(super::FailureKind::Connect),
                HostOutcome::HandshakeFailed(_) if !final_server => {
                    Some(super::FailureKind::Session)
                }
                _ => None,
            };
            if let (
                Some(kind),
                HostOutcome::ConnectFailed(cause) | HostOutcome::HandshakeFailed(cause),
            ) = (kind, &outcome)
            {
                self.connect_failures.push(super::ConnectFailure {
                    t: end,
                    host,
                    cause: *cause,
                    kind,
                });
            }
        }
        let c = &mut self.clients[e];
        if cached.is_some() {
            c.cache_used.push(host);
        }
        c.tried = Some(host);
        c.relay = match outcome {
            HostOutcome::ConnectFailed(_) => None,
            _ => Some(host),
        };
        // log_adhoc: conn_use = reuse_count + 1, shown for sessions from the cache.
        c.conn_use = cached.map_or(0, |s| s.reuse_count + 2);
        match outcome {
            HostOutcome::ConnectFailed(cause) => c.last_cause = Some(cause),
            HostOutcome::HandshakeFailed(cause) => {
                c.last_cause = Some(cause);
                if turn.final_server {
                    for r in req.recipients.iter_mut().filter(|r| r.is_left()) {
                        r.reply = Reply::Deferred(cause);
                        r.reply_host = host;
                    }
                    if !c.complete_session {
                        c.hop_failure = true;
                    }
                }
            }
            // A session that was not throttled: later ones are not cached under the
            // next-hop name, so it never names a less preferred server.
            HostOutcome::Transaction { .. } => c.nexthop_key = false,
        }
        if !turn.more {
            c.next_addr = c.addrs.len();
        }
        end
    }

    /// The handshake with `host` completed at `t` (or a cached session answered its RSET):
    /// in the address loop the session counts against `smtp_mx_session_limit`
    /// (`smtp_reuse_session` counts its own); then its transaction runs.
    fn session(
        &mut self,
        e: usize,
        host: u32,
        t: Time,
        turn: &mut Turn,
        req: &mut Request<'_>,
    ) -> (Time, HostOutcome) {
        let limit = self.limits.session_limit;
        let c = &mut self.clients[e];
        c.setup_done = Some(t);
        if let Loop::Connect = turn.within {
            c.sess_count += 1;
            if limit > 0 && c.sess_count >= limit {
                turn.more = false;
            }
            turn.final_server = c.final_nexthop && !turn.more;
        }
        match self.transaction(e, host, t, turn.final_server, turn.from_cache, req) {
            TransactionEnd::Done(end) => {
                self.clients[e].complete_session = true;
                (end, HostOutcome::Transaction { closed: false })
            }
            TransactionEnd::Closed(end) => (end, HostOutcome::Transaction { closed: true }),
            // The server went silent after DATA: a lost session, like a handshake failure
            // for what it does to the recipients and the destination.
            TransactionEnd::Lost(end) => (end, HostOutcome::HandshakeFailed(Cause::DataTimedOut)),
        }
    }

    /// MAIL FROM, RCPT TO for each recipient left, DATA, over a new session or one
    /// `from_cache` (which did not meet the greeting's checks).
    fn transaction(
        &mut self,
        e: usize,
        host: u32,
        mut t: Time,
        final_server: bool,
        from_cache: bool,
        req: &mut Request<'_>,
    ) -> TransactionEnd {
        let owner = self.hosts[host as usize].owner as usize;
        // A reply other than 2xx to MAIL FROM fails every recipient (`smtp_mesg_fail`, no
        // throttle): 4xx defers (or moves on to the next server), 5xx bounces; the session
        // still counts as completed (smtp_proto.c: smtp_xfer).
        let mail_refusal = match self.faults.host(host, t) {
            Some(FaultKind::Tempfail(Stage::Mail)) => Some(Cause::MailTempfail),
            Some(FaultKind::Reject(Stage::Mail)) => Some(Cause::MailRejected),
            _ if from_cache && self.servers[owner].mail_refused(t) => Some(Cause::RateLimitedMail),
            _ => None,
        };
        if let Some(cause) = mail_refusal {
            t += self.servers[owner].rcpt_time();
            self.note_skip(t, host, cause, None, final_server);
            for i in 0..req.recipients.len() {
                if req.recipients[i].is_left() {
                    self.reject(e, host, req, i, cause, final_server);
                }
            }
            return match cause {
                Cause::RateLimitedMail => TransactionEnd::Closed(t),
                _ => TransactionEnd::Done(t),
            };
        }
        let rate_exceeded = self.servers[owner].rcpt_rate_exceeded(t);
        // The recipient domain's own MX hosts know its users; a fallback relay accepts any
        // recipient for relaying.
        let primary = self.clients[e].site == 0;
        let mut accepted = std::mem::take(&mut self.accepted);
        accepted.clear();
        for i in 0..req.recipients.len() {
            if !req.recipients[i].is_left() {
                continue;
            }
            t += self.servers[owner].rcpt_time();
            let key = req.keys.key(req.recipients[i].orig_index);
            let fault = self.faults.host(host, t);
            let reply = if fault == Some(FaultKind::Tempfail(Stage::Rcpt)) {
                Some(Cause::RecipientTempfail)
            } else if fault == Some(FaultKind::Reject(Stage::Rcpt)) {
                Some(Cause::RecipientRejected)
            } else if primary && self.mailboxes[req.dest as usize].unknown(key) {
                Some(Cause::UnknownUser)
            } else {
                self.servers[owner].rcpt(req.sender, key, rate_exceeded, t)
            };
            match reply {
                None => accepted.push(i),
                Some(cause) => {
                    let index = req.recipients[i].orig_index;
                    self.note_skip(t, host, cause, Some(index), final_server);
                    self.reject(e, host, req, i, cause, final_server);
                }
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
                    return TransactionEnd::Lost(t + self.limits.data_done_timeout);
                }
                _ => {}
            }
            if transfer >= self.limits.data_done_timeout {
                self.accepted = accepted;
                return TransactionEnd::Lost(t + self.limits.data_done_timeout);
            }
            t += transfer;
            self.servers[owner].count_message(t);
            let verdict = match self.faults.host(host, t) {
                Some(FaultKind::Tempfail(Stage::Data)) => Some(Cause::DataTempfail),
                Some(FaultKind::Reject(Stage::Data)) => Some(Cause::DataRejected),
                _ => self.servers[owner].end_of_data(),
            };
            if let Some(cause) = verdict {
                self.note_skip(t, host, cause, None, final_server);
            }
            for &i in &accepted {
                match verdict {
                    None => {
                        req.recipients[i].reply = Reply::Sent;
                        self.forget_final(host, req, i);
                    }
                    Some(cause) => self.reject(e, host, req, i, cause, final_server),
                }
            }
        }
        self.accepted = accepted;
        TransactionEnd::Done(t)
    }

    /// A soft error at a server that is not the final one is only logged, and the
    /// recipients wait for the next server: `QID: <reason>` (`smtp_rcpt_fail` for one
    /// recipient, `smtp_bulk_fail` once for the session).
    fn note_skip(
        &mut self,
        t: Time,
        host: u32,
        cause: Cause,
        rcpt: Option<u32>,
        final_server: bool,
    ) {
        if self.keep_notes && cause.is_soft() && !final_server {
            self.connect_failures.push(super::ConnectFailure {
                t,
                host,
                cause,
                kind: match rcpt {
                    Some(i) => super::FailureKind::Recipient(i),
                    None => super::FailureKind::Session,
                },
            });
        }
    }

    /// A 4xx or 5xx for recipient `i` from `host` (`smtp_rcpt_fail`): 5xx bounces; 4xx
    /// defers at the final server and otherwise leaves the recipient for the next one.
    fn reject(
        &mut self,
        e: usize,
        host: u32,
        req: &mut Request<'_>,
        i: usize,
        cause: Cause,
        final_server: bool,
    ) {
        if cause.is_soft() {
            self.clients[e].last_cause = Some(cause);
            if final_server {
                req.recipients[i].reply = Reply::Deferred(cause);
                req.recipients[i].reply_host = host;
            }
        } else {
            req.recipients[i].reply = Reply::Bounced(cause);
            req.recipients[i].reply_host = host;
            self.forget_final(host, req, i);
        }
    }

    /// Recipient `i` was delivered or bounced by `host`: no server will see it again (its
    /// key is its message's own), so its greylist triplet goes from the destination's MX
    /// hosts and from `host` (a fallback relay).
    fn forget_final(&mut self, host: u32, req: &Request<'_>, i: usize) {
        if !self.greylisting || req.keys.recur() {
            return;
        }
        let key = req.keys.key(req.recipients[i].orig_index);
        let owners = self
            .mx
            .get(req.dest as usize)
            .into_iter()
            .flatten()
            .map(|&(_, h)| h)
            .chain([host])
            .filter_map(|h| self.hosts.get(h as usize).map(|x| x.owner as usize));
        for o in owners {
            if let Some(s) = self.servers.get_mut(o) {
                s.forget(req.sender, key);
            }
        }
    }

    /// Recipients still left are deferred or bounced with the last error (`smtp_sess_fail`).
    fn finish(&mut self, e: usize, now: Time, req: &mut Request<'_>) -> Step {
        let c = &self.clients[e];
        let mut cause = c.last_cause.unwrap_or(Cause::Unavailable);
        let mut tried = c.tried;
        let any_left = req.recipients.iter().any(|r| r.is_left());
        if any_left && !cause.is_soft() && c.site > 0 {
            // smtp_connect.c (end of smtp_connect_inet): a hard error at a fallback relay
            // is taken for a configuration problem: warning, status 4.3.5, the diagnostic
            // text kept; deferred. The only hard error left at the end is a lookup's
            // NXDOMAIN, so the reason names the relay's name.
            cause = Cause::FallbackNotFound;
            tried = self.fallback_names.get(c.site - 1).copied().or(tried);
            if self.keep_notes {
                self.agent_warnings
                    .push((now, "smtp_fallback_relay configuration problem"));
            }
        }
        let c = &self.clients[e];
        let mut any_left = false;
        // The last error's server: the last host tried (DNS errors name none; a fallback
        // relay's failed lookup names the relay).
        let host = tried.unwrap_or(crate::postfix::message::NO_HOST);
        for r in req.recipients.iter_mut().filter(|r| r.is_left()) {
            any_left = true;
            r.reply_host = host;
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
            tried,
            conn_use: c.conn_use,
            dns: c.dns_time,
        }
    }
}
