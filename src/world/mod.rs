//! The world our Postfix talks to: the destinations' mail servers, DNS, the faults on the
//! scenario's timeline, and the traffic that arrives.
//!
//! The seam between the MTA and the world is [`World::start`] / [`World::resume`]: qmgr hands
//! a delivery request to an agent, and the agent's SMTP client (`smtp_client.rs`, following
//! Postfix's `smtp_connect.c`) works through DNS, MX hosts and fallback relays, taking
//! sessions from and parking them in the connection cache (`scache.rs`). Each step
//! says when the agent is next busy deciding (`Step::Wait`) or that it is done, with every
//! recipient's reply written and whether the request ended in a site failure (the hop status
//! that throttles the destination's queue, `../shared/postfix-model.md` §6.2).

pub mod connections;
pub mod faults;
pub mod greylist;
pub mod latency;
pub mod rate_limit;
pub mod scache;
pub mod server;
mod smtp_client;
pub mod tcp;
pub mod traffic;

use crate::engine::time::{SECOND, Time};
use crate::engine::{RngStreams, SimRng};
use crate::postfix::message::{Recipient, RecipientKeys};
use crate::scenario::{DestinationSpec, Scenario, Site, SmtpClientConfig};
use connections::ConnectionSlots;
use faults::Timeline;
use scache::SessionCache;
use server::Server;
use smtp_client::Client;
use std::collections::HashMap;

/// One delivery request as the agent sees it.
pub struct Request<'a> {
    pub dest: u32,
    /// The envelope sender (a traffic stream, or `u32::MAX` for the null sender).
    pub sender: u32,
    pub keys: RecipientKeys,
    /// Index in the queue file of `recipients[0]`.
    pub first: usize,
    /// The request's recipients; those `Pending` with no reply yet are to be delivered.
    pub recipients: &'a mut [Recipient],
    /// qmgr's on-demand connection-caching flags for this request.
    pub cache: CacheFlags,
}

/// `DEL_REQ_FLAG_CONN_LOAD` / `_STORE` (`qmgr_entry.c`, §5.8): reuse cached sessions, and
/// park good new ones for reuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheFlags {
    pub load: bool,
    pub store: bool,
}

/// A delivery agent's SMTP client working on one request (valid until its `Step::Done`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentId(u32);

/// Where a delivery stands after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The agent is busy until then; call [`World::resume`] at that time.
    Wait(Time, AgentId),
    /// The agent finished at `at`. `site_failure`: the hop status was set (§6.2).
    /// `relay`: the host of the last connection (for `relay=`), `setup_done`: when its
    /// handshake completed (the end of `delays=` c).
    Done {
        at: Time,
        site_failure: bool,
        relay: Option<u32>,
        setup_done: Option<Time>,
        /// The last host tried, connected or not (named in `connect to …` reasons).
        tried: Option<u32>,
        /// `conn_use=`: how many deliveries the last session has made, this one included,
        /// when it came from the connection cache; 0 for a new connection.
        conn_use: u32,
        /// Time spent in DNS lookups (part of `delays=` c).
        dns: Time,
    },
}

/// A server an agent gave up on and Postfix logs an info line for: a failed connect (no
/// queue ID), or a soft error at a server that is not the last one to try, which leaves
/// the recipients for the next (`QID: host … said: …`, `smtp_trouble.c`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectFailure {
    pub t: Time,
    pub host: u32,
    pub cause: crate::observe::Cause,
    pub kind: FailureKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// `connect to …` (`smtp_connect_addr`).
    Connect,
    /// The whole session failed at a non-final server (`smtp_bulk_fail`: greeting, MAIL,
    /// end of DATA, a lost session): one line per request.
    Session,
    /// RCPT TO of the recipient with this original index failed at a non-final server
    /// (`smtp_rcpt_fail`).
    Recipient(u32),
}

/// A mail server host (one address).
struct Host {
    /// Index of its behaviour in `World::servers`: its destination's, or its own.
    owner: u32,
    /// The destination named like this host, for DNS faults on `[host]` lookups.
    named_domain: Option<usize>,
    slots: Option<ConnectionSlots>,
}

#[derive(Clone, Copy, Debug)]
enum SiteRef {
    Domain(u32),
    Host(u32),
}

/// The SMTP client's timeouts and limits, in simulator units.
#[derive(Clone, Copy, Debug)]
struct ClientLimits {
    connect_timeout: Time,
    helo_timeout: Time,
    address_limit: u32,
    session_limit: u32,
    data_done_timeout: Time,
    cache_on_demand: bool,
    /// How long a parked session stays idle before scache closes it.
    cache_idle_limit: Time,
    /// `smtp_connection_reuse_time_limit`, whole seconds as Postfix counts it.
    reuse_time_limit_s: i64,
    reuse_count_limit: u32,
    rset_timeout: Time,
}

impl ClientLimits {
    fn from(smtp: &SmtpClientConfig, syn: &tcp::SynSchedule) -> Self {
        ClientLimits {
            connect_timeout: match smtp.connect_timeout {
                // The operating system's own: when the kernel gives up resending the SYN.
                0 => syn.gives_up,
                s => s * SECOND,
            },
            helo_timeout: smtp.helo_timeout * SECOND,
            address_limit: smtp.mx_address_limit,
            session_limit: smtp.mx_session_limit,
            data_done_timeout: smtp.data_done_timeout * SECOND,
            cache_on_demand: smtp.connection_cache.on_demand,
            cache_idle_limit: smtp.connection_cache.idle_limit * SECOND,
            reuse_time_limit_s: smtp.connection_cache.reuse_time_limit,
            reuse_count_limit: smtp.connection_cache.reuse_count_limit,
            rset_timeout: smtp.connection_cache.rset_timeout * SECOND,
        }
    }
}

/// An IPv4 address for host `id`: its own name if it is a literal address, otherwise one
/// from the documentation ranges (RFC 5737), then 100.64/10.
fn address_for(name: &str, id: u32) -> String {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return name.to_string();
    }
    let n = id as usize;
    match n / 254 {
        0 => format!("192.0.2.{}", n % 254 + 1),
        1 => format!("198.51.100.{}", n % 254 + 1),
        2 => format!("203.0.113.{}", n % 254 + 1),
        k => format!("100.{}.{}.{}", 64 + (k / 254) % 64, k % 254, n % 254 + 1),
    }
}

pub struct World {
    hosts: Vec<Host>,
    /// Per destination: its hosts with MX preference, in preference order (stable).
    mx: Vec<Vec<(u32, u32)>>,
    servers: Vec<Server>,
    /// Per destination: which of its recipients exist (checked at its own MX hosts).
    mailboxes: Vec<server::Mailboxes>,
    /// Some server greylists (so final replies drop triplets).
    greylisting: bool,
    /// Per destination: delivered by local(8) rather than SMTP.
    local: Vec<bool>,
    /// Per server: runs on our own host (the content filter), so host load slows it.
    on_our_host: Vec<bool>,
    faults: Timeline,
    /// `[host] agent_cpu`: an SMTP agent's own work per request, before it connects.
    agent_cpu: Time,
    limits: ClientLimits,
    /// Our TCP stack's SYN retransmissions (`[kernel]`).
    syn: tcp::SynSchedule,
    fallback: Vec<SiteRef>,
    host_ids: HashMap<String, u32>,
    /// Clients of agents at work, reused last-in first-out so the few in use stay in cache.
    clients: Vec<Client>,
    free_clients: Vec<u32>,
    shuffle: SimRng,
    /// Scratch: recipients accepted at RCPT in the current transaction.
    accepted: Vec<usize>,
    /// Host names, in host-id order, and the documentation addresses standing in for theirs.
    host_names: Vec<String>,
    host_addresses: Vec<String>,
    /// The port each host listens on: 25, or the content filter's own.
    host_ports: Vec<u16>,
    /// Failed connects since the caller last took them (only kept when `keep_notes`).
    pub connect_failures: Vec<ConnectFailure>,
    /// Agents' warnings without a queue ID, with their time (only kept when `keep_notes`).
    pub agent_warnings: Vec<(Time, &'static str)>,
    /// Destination domain names, by index.
    domains: Vec<String>,
    /// Per fallback site: the host standing for the name it looks up (for the reason text of
    /// a lookup that fails).
    fallback_names: Vec<u32>,
    pub keep_notes: bool,
    /// Idle sessions parked for reuse (scache).
    scache: SessionCache,
    /// Per destination: listed in `smtp_connection_cache_destinations`.
    always_cache: Vec<bool>,
    /// The instant of the step being played: the world is asked in time order, so what
    /// expired before it is of no use to anyone.
    clock: Time,
    /// TCP connections our SMTP clients opened (the connect succeeded), and conversations
    /// held over sessions taken from the cache instead.
    pub connections_opened: u64,
    pub sessions_reused: u64,
}

impl World {
    pub fn new(scenario: &Scenario, streams: &RngStreams) -> Self {
        let dests = &scenario.destinations;
        let local: Vec<bool> = dests
            .iter()
            .map(|d| {
                scenario
                    .transports
                    .get(d.transport)
                    .map(|t| t.name.as_str())
                    == Some("local")
            })
            .collect();
        let mut host_ids: HashMap<String, u32> = HashMap::new();
        let mut own_behaviours: Vec<&DestinationSpec> = Vec::new();
        let mut hosts: Vec<Host> = Vec::new();
        let mut mx: Vec<Vec<(u32, u32)>> = Vec::with_capacity(dests.len());
        for (d, spec) in dests.iter().enumerate() {
            let names: Vec<(u32, &str, Option<&DestinationSpec>)> = if local[d] {
                Vec::new()
            } else if spec.mx.is_empty() {
                vec![(0, spec.domain.as_str(), None)]
            } else {
                spec.mx
                    .iter()
                    .map(|m| (m.preference, m.host.as_str(), m.behaviour.as_deref()))
                    .collect()
            };
            let mut list = Vec::with_capacity(names.len());
            for (preference, name, own) in names {
                // A host listed by several destinations is one server: the first listing
                // decides its behaviour (the scenario check refuses later listings that say
                // otherwise); which recipients exist stays each domain's own.
                let id = *host_ids.entry(name.to_string()).or_insert_with(|| {
                    let (owner, limits) = match own {
                        Some(b) => {
                            own_behaviours.push(b);
                            (
                                (dests.len() + own_behaviours.len() - 1) as u32,
                                b.max_connections,
                            )
                        }
                        None => (d as u32, spec.max_connections),
                    };
                    hosts.push(Host {
                        owner,
                        named_domain: None,
                        slots: limits.as_ref().map(ConnectionSlots::new),
                    });
                    (hosts.len() - 1) as u32
                });
                list.push((preference, id));
            }
            list.sort_by_key(|&(preference, _)| preference);
            mx.push(list);
        }
        for (d, spec) in dests.iter().enumerate() {
            if let Some(&h) = host_ids.get(&spec.domain) {
                hosts[h as usize].named_domain = Some(d);
            }
        }
        let faults = Timeline::new(
            &scenario.faults,
            hosts.len(),
            dests.len(),
            |d| {
                mx.get(d)
                    .map(|l| l.iter().map(|&(_, h)| h).collect())
                    .unwrap_or_default()
            },
            |name| host_ids.get(name).copied(),
        );
        let on_our_host: Vec<bool> = dests
            .iter()
            .chain(own_behaviours.iter().copied())
            .map(|d| d.is_content_filter)
            .collect();
        let syn = tcp::SynSchedule::new(&scenario.tcp);
        let mut world = World {
            hosts,
            mx,
            servers: dests
                .iter()
                .chain(own_behaviours)
                .enumerate()
                .map(|(i, d)| Server::new(d, i, streams))
                .collect(),
            mailboxes: dests
                .iter()
                .map(|d| server::Mailboxes::new(d, streams))
                .collect(),
            greylisting: false,
            local,
            on_our_host,
            faults,
            agent_cpu: scenario.agent_cpu,
            limits: ClientLimits::from(&scenario.smtp, &syn),
            syn,
            fallback: Vec::new(),
            host_ids,
            clients: Vec::new(),
            free_clients: Vec::new(),
            shuffle: streams.stream("mx_shuffle", 0),
            accepted: Vec::new(),
            host_names: Vec::new(),
            host_addresses: Vec::new(),
            host_ports: Vec::new(),
            connect_failures: Vec::new(),
            agent_warnings: Vec::new(),
            domains: dests.iter().map(|d| d.domain.clone()).collect(),
            fallback_names: Vec::new(),
            keep_notes: false,
            scache: SessionCache::default(),
            always_cache: vec![false; dests.len()],
            clock: Time::MIN,
            connections_opened: 0,
            sessions_reused: 0,
        };
        world.scache = SessionCache::new(world.hosts.len(), dests.len());
        let mut named: Vec<(&String, &u32)> = world.host_ids.iter().collect();
        named.sort_by_key(|(_, id)| **id);
        world.host_names = named.iter().map(|(n, _)| (*n).clone()).collect();
        world.host_addresses = named.iter().map(|(n, id)| address_for(n, **id)).collect();
        world.greylisting = world.servers.iter().any(Server::greylists);
        world.host_ports = vec![25; world.host_names.len()];
        if let Some(f) = scenario.filter {
            for &(_, h) in world
                .mx
                .get(f.destination)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                world.host_ports[h as usize] = f.port;
            }
        }
        world.reconfigure(&scenario.smtp);
        world
    }

    /// Greylist triplets held by all servers: now, and the sum of each server's peak (an
    /// upper bound of the most held at once).
    pub fn greylist_entries(&self) -> (usize, usize) {
        self.servers
            .iter()
            .map(Server::greylist_entries)
            .fold((0, 0), |(n, p), (a, b)| (n + a, p + b))
    }

    /// Number of server hosts (ids `0..host_count()`).
    pub fn host_count(&self) -> u32 {
        u32::try_from(self.host_names.len()).unwrap_or(u32::MAX)
    }

    /// Host `h`'s name and address.
    pub fn host(&self, h: u32) -> (&str, &str) {
        (
            self.host_names
                .get(h as usize)
                .map(String::as_str)
                .unwrap_or("?"),
            self.host_addresses
                .get(h as usize)
                .map(String::as_str)
                .unwrap_or("?"),
        )
    }

    /// The port host `h` listens on.
    pub fn port(&self, h: u32) -> u16 {
        self.host_ports.get(h as usize).copied().unwrap_or(25)
    }

    /// New delivery agents after `postfix reload` (or `start`) read the new `smtp_*`
    /// settings; scache(8) restarts too, closing the connections it held.
    pub fn reconfigure(&mut self, smtp: &SmtpClientConfig) {
        self.limits = ClientLimits::from(smtp, &self.syn);
        for (host, s) in self.scache.drain() {
            if let (Some((slot, count)), Some(slots)) =
                (s.slot, self.hosts[host as usize].slots.as_mut())
                && slots.still_held(slot, count)
            {
                // The connection closes once its transaction is over.
                slots.release_at(slot, s.parked.max(self.clock));
            }
        }
        self.always_cache.iter_mut().for_each(|a| *a = false);
        for &d in &smtp.connection_cache.destinations {
            if let Some(a) = self.always_cache.get_mut(d) {
                *a = true;
            }
        }
        self.fallback = smtp
            .fallback_relay
            .iter()
            .filter_map(|site| match site {
                Site::Domain(d) => Some(SiteRef::Domain(*d as u32)),
                Site::Host(name) => self.host_ids.get(name).map(|&h| SiteRef::Host(h)),
            })
            .collect();
        let sites = self.fallback.clone();
        self.fallback_names = sites
            .iter()
            .map(|&site| match site {
                SiteRef::Host(h) => h,
                SiteRef::Domain(d) => {
                    let name = self.domains.get(d as usize).cloned().unwrap_or_default();
                    self.name_host(&name, d)
                }
            })
            .collect();
    }

    /// The host named `name`; a domain with MX hosts of other names gets one appended that
    /// no MX list holds and nothing connects to (it only names the lookup in reasons).
    fn name_host(&mut self, name: &str, domain: u32) -> u32 {
        if let Some(&h) = self.host_ids.get(name) {
            return h;
        }
        let h = self.hosts.len() as u32;
        self.hosts.push(Host {
            owner: domain,
            named_domain: Some(domain as usize),
            slots: None,
        });
        self.host_ids.insert(name.to_string(), h);
        self.host_names.push(name.to_string());
        self.host_addresses.push(address_for(name, h));
        h
    }

    /// An agent takes a delivery request at `now`.
    pub fn start(&mut self, now: Time, req: Request<'_>) -> Step {
        if self.local[req.dest as usize] {
            let work = self.servers[req.dest as usize].transaction_time();
            let done = now + self.faults.scaled_by_load(work, now);
            for r in req.recipients.iter_mut().filter(|r| r.is_left()) {
                r.reply = crate::postfix::message::Reply::Sent;
            }
            return Step::Done {
                at: done.max(now),
                site_failure: false,
                relay: None,
                setup_done: None,
                tried: None,
                conn_use: 0,
                dns: 0,
            };
        }
        let agent = match self.free_clients.pop() {
            Some(a) => a,
            None => {
                self.clients.push(Client::default());
                (self.clients.len() - 1) as u32
            }
        };
        // smtp_cache_policy: the destination list forces caching; otherwise qmgr's flags
        // decide, when on-demand caching is on.
        let cache = if self.always_cache[req.dest as usize] {
            CacheFlags {
                load: true,
                store: true,
            }
        } else if self.limits.cache_on_demand {
            req.cache
        } else {
            CacheFlags::default()
        };
        self.clients[agent as usize].reset(cache);
        // The agent's own CPU work comes first (it shows in delays= c); our host's load
        // stretches it.
        let begin = now + self.faults.scaled_by_load(self.agent_cpu, now);
        self.step(agent, begin, req)
    }

    /// `agent` was killed between steps (`postfix stop`): its client is free again. What it
    /// had planned with the server stays decided (§ "a conversation is decided when it
    /// starts"), so a connection slot it held is given back only at the planned end.
    pub fn abort(&mut self, agent: AgentId) {
        self.free_clients.push(agent.0);
    }

    /// `agent` continues at `now` (after a [`Step::Wait`]).
    pub fn resume(&mut self, agent: AgentId, now: Time, req: Request<'_>) -> Step {
        self.step(agent.0, now, req)
    }

    fn step(&mut self, agent: u32, now: Time, req: Request<'_>) -> Step {
        self.clock = self.clock.max(now);
        let step = self.advance(agent as usize, now, req);
        if let Step::Done { .. } = step {
            self.free_clients.push(agent);
        }
        step
    }
}
