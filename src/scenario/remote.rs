//! What the far side of a destination does: its MX hosts, SMTP phase timings, greylisting,
//! rate limits, connection limits, content scoring, and the faults on the scenario's
//! timeline (`../shared/postfix-model.md` §6, §9; issue 3). These are the checked forms; the
//! file syntax is described in the README ("The world").

use crate::engine::time::Time;

use super::Latency;

/// How long each step of an SMTP session takes at this destination's servers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phases {
    /// One DNS lookup (MX, or A for a host).
    pub dns: Latency,
    /// TCP connect (SYN to SYN-ACK).
    pub connect: Latency,
    /// From connect to the end of EHLO: the 220 greeting and the EHLO reply.
    pub greeting: Latency,
    /// Each RCPT TO round trip.
    pub rcpt: Latency,
    /// The mail transaction without RCPT: MAIL FROM, DATA and the end-of-data reply
    /// (the scenario's `latency`).
    pub transaction: Latency,
}

impl Phases {
    /// Only the transaction takes time (the core model's single `latency`).
    pub fn transaction_only(transaction: Latency) -> Self {
        Phases {
            dns: Latency::Fixed(0),
            connect: Latency::Fixed(0),
            greeting: Latency::Fixed(0),
            rcpt: Latency::Fixed(0),
            transaction,
        }
    }
}

/// One MX record of a destination.
#[derive(Clone, Debug, PartialEq)]
pub struct MxHost {
    pub host: String,
    pub preference: u32,
    /// The host's own behaviour when its entry overrides the destination's (timings,
    /// replies, greylisting, limits): the destination's spec with those keys replaced; its
    /// `domain`, `mx` and `unknown_recipients` are the destination's and unused. `None`:
    /// the host behaves as its destination and shares its greylist and rate buckets.
    pub behaviour: Option<Box<super::DestinationSpec>>,
}

/// A postgrey-like greylisting policy at RCPT time, keyed by (client, sender, recipient).
/// Seconds, like postgrey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreylistSpec {
    /// `--delay`: a triplet passes once this long has gone by since it was first seen.
    pub delay: i64,
    /// `--retry-window`: an unpassed triplet first seen longer ago than this starts over.
    pub retry_window: i64,
    /// `--max-age`: entries not seen for this long are forgotten.
    pub lifetime: i64,
    /// `--auto-whitelist-clients`: passes (at most one per hour) after which the client is
    /// no longer greylisted; 0 = off.
    pub auto_whitelist: u32,
}

/// What a rate-limited server says when the bucket is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateReply {
    /// `421 4.7.0 Try again later, closing connection` at the greeting (a site failure for
    /// Postfix: the destination is throttled).
    Greeting421,
    /// `450 4.2.1` to each RCPT (a per-recipient deferral: positive feedback).
    Rcpt450,
}

/// A token bucket (burst = one period's allowance, refilled evenly).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitSpec {
    /// Messages (mail transactions) allowed per `per`.
    pub messages: Option<u64>,
    /// New connections allowed per `per`; excess connections get 421 at the greeting.
    pub connections: Option<u64>,
    pub per: Time,
    pub reply: RateReply,
}

/// What a server at its connection limit does with one more connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excess {
    /// Greets with 421 and disconnects.
    Reject421,
    /// Leaves it in the listen backlog until a slot frees; with `length`, SYNs beyond that
    /// many waiting connections are dropped (the client's connect times out).
    Backlog { length: Option<u32> },
    /// Accepts TCP but never greets.
    Mute,
}

/// A cap on our concurrent connections to each of the destination's hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxConnectionsSpec {
    pub limit: u32,
    pub excess: Excess,
}

/// Replies after DATA (content scoring), per message and attempt.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct SpamSpec {
    /// Probability of `451 4.7.1` after end of DATA (deferred).
    pub tempfail: f64,
    /// Probability of `550 5.7.1` after end of DATA (bounced).
    pub reject: f64,
}

/// Where a `tempfail` fault answers 4xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// 421 at the greeting: a handshake failure, throttles the destination.
    Greeting,
    /// 451 to MAIL FROM: every recipient deferred, positive feedback.
    Mail,
    /// 450 to every RCPT.
    Rcpt,
    /// 451 after end of DATA.
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// Connections are refused at once (RST).
    Refuse,
    /// SYNs go unanswered: the connect times out after `smtp_connect_timeout`.
    Blackhole,
    /// TCP is accepted, no greeting comes: `smtp_helo_timeout`.
    Mute,
    /// Everything gets a 4xx at `stage`.
    Tempfail(Stage),
    /// Everything gets a 5xx at `stage` (MAIL FROM, each RCPT, or end of DATA; never the
    /// greeting, which Postfix's `smtp_skip_5xx_greeting = yes` treats as a 4xx).
    Reject(Stage),
    /// Lookups answer SERVFAIL: `Host not found, try again`.
    DnsServfail,
    /// Lookups time out after `lookup` (the stub resolver's retries), then fail softly.
    DnsTimeout { lookup: Time },
    /// The domain does not exist: `Host or domain name not found` (5.4.4, bounce).
    DnsNxdomain,
    /// The server is slow: its transaction time is multiplied by `factor`.
    Slow { factor: f64 },
    /// The server accepts the message data and never answers: the client gives up after
    /// `smtp_data_done_timeout` (a site failure).
    Hang,
    /// Another process fills the queue file system: `fill` bytes (`None`: all of it).
    DiskFull { fill: Option<u64> },
    /// The transport's delivery agents cannot be started or contacted (§5.4).
    TransportDown,
    /// Our host is overloaded: its own processing (smtpd sessions, the content filter,
    /// local delivery) takes `factor` times longer.
    Load { factor: f64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every MX host of destination `n` (or its DNS, for the DNS kinds).
    Domain(usize),
    /// One host by name (an MX host or a destination without an MX list).
    Host(String),
    /// The whole resolver (DNS kinds only).
    Dns,
    /// Our queue file system (`disk_full`).
    Disk,
    /// Our host's CPU (`load`).
    OurHost,
    /// A transport of ours by index into `Scenario::transports` (`transport_down`).
    Transport(usize),
}

/// One fault on the timeline: active for `start <= t < end`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub start: Time,
    /// `Time::MAX` when the fault has no `for`.
    pub end: Time,
    pub target: FaultTarget,
}

/// A next-hop "site" for the SMTP client: a domain (MX lookup) or a `[host]` (address
/// lookup only). Used for `smtp_fallback_relay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Site {
    Domain(usize),
    Host(String),
}

/// The SMTP client's parameters (`smtp_*`, postconf(5) 3.7 defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpClientConfig {
    /// Seconds; 0 = the operating system's connect timeout (the `[kernel]` SYN retries).
    pub connect_timeout: i64,
    /// Seconds.
    pub helo_timeout: i64,
    /// 0 = no limit.
    pub mx_address_limit: u32,
    /// 0 = no limit.
    pub mx_session_limit: u32,
    /// `smtp_fallback_relay` (default `$fallback_relay`), tried after the primary site.
    pub fallback_relay: Vec<Site>,
    /// Seconds.
    pub data_done_timeout: i64,
    pub connection_cache: ConnectionCacheConfig,
}

/// SMTP connection caching (`../shared/postfix-model.md` §5.8, §6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionCacheConfig {
    /// `smtp_connection_cache_on_demand`: cache when qmgr sees back-to-back deliveries.
    pub on_demand: bool,
    /// `smtp_connection_cache_destinations`, as destination indices: always cached.
    pub destinations: Vec<usize>,
    /// Seconds an idle session stays in the cache: the smaller of
    /// `smtp_connection_cache_time_limit` and scache's `connection_cache_ttl_limit`.
    pub idle_limit: i64,
    /// `smtp_connection_reuse_time_limit`, seconds after the session was opened.
    pub reuse_time_limit: i64,
    /// `smtp_connection_reuse_count_limit`; 0 = no limit.
    pub reuse_count_limit: u32,
    /// `smtp_rset_timeout`, seconds: how long the RSET probe of a cached session that gets
    /// no answer takes to fail.
    pub rset_timeout: i64,
}

impl Default for ConnectionCacheConfig {
    /// Postfix 3.7's defaults.
    fn default() -> Self {
        ConnectionCacheConfig {
            on_demand: true,
            destinations: Vec::new(),
            idle_limit: 2,
            reuse_time_limit: 300,
            reuse_count_limit: 0,
            rset_timeout: 20,
        }
    }
}

/// `content_filter = transport:[host]:port` (§7.3): every message is first delivered to
/// the filter, which re-injects it as a new queue file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentFilter {
    /// Index into `Scenario::transports`.
    pub transport: usize,
    /// Index into `Scenario::destinations`: the filter's nexthop and its behaviour.
    pub destination: usize,
    /// The port of the nexthop (`relay=host[addr]:port`).
    pub port: u16,
}

/// Our host's TCP stack (`[kernel]`): how an unanswered SYN is sent again. Linux starts with
/// a 1 s retransmission timeout; since 6.5 the first `syn_linear_timeouts` retransmissions keep
/// it (then it doubles), before that it doubled from the start; the connect fails after
/// `syn_retries` retransmissions (ip-sysctl.rst: tcp_syn_retries, tcp_syn_linear_timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpStack {
    pub syn_retries: u32,
    pub syn_linear_timeouts: u32,
}

impl Default for TcpStack {
    /// Linux's defaults since 6.5 (Debian 12's 6.1 behaves as `syn_linear_timeouts = 0`).
    fn default() -> Self {
        TcpStack {
            syn_retries: 6,
            syn_linear_timeouts: 4,
        }
    }
}

/// How long Postfix's own inter-process hand-offs take on our host (`[host]`): the model's
/// qmgr and agents otherwise act in no time. Both default to 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSpeed {
    /// qmgr asks for an agent (`qmgr_transport_alloc`: a connect to the transport's socket)
    /// → an idle agent says it is ready and qmgr picks the request for it (`qmgr_deliver`).
    pub agent_handoff: crate::engine::time::Time,
    /// The agent's last server reply → qmgr reads its status (`qmgr_deliver_update`): the
    /// agent logs each recipient (deferrals through the defer service), caches the session
    /// and writes its reply.
    pub agent_report: crate::engine::time::Time,
}

/// The queue file system (`[disk]`): free space = size − used − queue files − fault fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub size: u64,
    /// Taken by everything else on that file system.
    pub used: u64,
}
