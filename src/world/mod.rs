//! The world our Postfix talks to: the destinations' mail servers, DNS, the faults on the
//! scenario's timeline, and the traffic that arrives.
//!
//! The seam between the MTA and the world is [`World::start`] / [`World::resume`]: qmgr hands
//! a delivery request to an agent, and the agent's SMTP client (`smtp_client.rs`, following
//! Postfix's `smtp_connect.c`) works through DNS, MX hosts and fallback relays. Each step
//! says when the agent is next busy deciding (`Step::Wait`) or that it is done, with every
//! recipient's reply written and whether the request ended in a site failure (the hop status
//! that throttles the destination's queue, `../shared/postfix-model.md` §6.2).

pub mod connections;
pub mod faults;
pub mod greylist;
pub mod latency;
pub mod rate_limit;
pub mod server;
mod smtp_client;
pub mod traffic;

use crate::engine::time::{SECOND, Time};
use crate::engine::{RngStreams, SimRng};
use crate::postfix::message::{Recipient, RecipientKeys};
use crate::scenario::{DestinationSpec, Scenario, Site, SmtpClientConfig};
use connections::ConnectionSlots;
use faults::Timeline;
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
    /// The agent process's pid and transport, for what it logs without a queue ID.
    pub pid: u32,
    pub transport: u16,
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
    },
}

/// Something an agent saw that Postfix logs without a queue ID.
#[derive(Clone, Copy, Debug)]
pub struct ConnectFailure {
    pub t: Time,
    pub host: u32,
    pub cause: crate::observe::Cause,
    /// The agent that logs it (its request's `pid` and `transport`).
    pub pid: u32,
    pub transport: u16,
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
}

impl ClientLimits {
    fn from(smtp: &SmtpClientConfig) -> Self {
        ClientLimits {
            connect_timeout: match smtp.connect_timeout {
                0 => OS_CONNECT_TIMEOUT,
                s => s * SECOND,
            },
            helo_timeout: smtp.helo_timeout * SECOND,
            address_limit: smtp.mx_address_limit,
            session_limit: smtp.mx_session_limit,
            data_done_timeout: smtp.data_done_timeout * SECOND,
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

/// Linux's connect timeout with the default `tcp_syn_retries = 6`, used when
/// `smtp_connect_timeout = 0` leaves it to the operating system.
const OS_CONNECT_TIMEOUT: Time = 127 * SECOND;

pub struct World {
    hosts: Vec<Host>,
    /// Per destination: its hosts with MX preference, in preference order (stable).
    mx: Vec<Vec<(u32, u32)>>,
    servers: Vec<Server>,
    /// Per destination: delivered by local(8) rather than SMTP.
    local: Vec<bool>,
    /// Per server: runs on our own host (the content filter), so host load slows it.
    on_our_host: Vec<bool>,
    faults: Timeline,
    /// `[host] agent_cpu`: an SMTP agent's own work per request, before it connects.
    agent_cpu: Time,
    limits: ClientLimits,
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
    pub keep_notes: bool,
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
                // decides its behaviour.
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
        let mut world = World {
            hosts,
            mx,
            servers: dests
                .iter()
                .chain(own_behaviours)
                .enumerate()
                .map(|(i, d)| Server::new(d, i, streams))
                .collect(),
            local,
            on_our_host,
            faults,
            agent_cpu: scenario.agent_cpu,
            limits: ClientLimits::from(&scenario.smtp),
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
            keep_notes: false,
        };
        let mut named: Vec<(&String, &u32)> = world.host_ids.iter().collect();
        named.sort_by_key(|(_, id)| **id);
        world.host_names = named.iter().map(|(n, _)| (*n).clone()).collect();
        world.host_addresses = named.iter().map(|(n, id)| address_for(n, **id)).collect();
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

    /// The preferred host of destination `d` (its first MX) with its port, for texts that
    /// name one.
    pub fn first_host(&self, d: usize) -> Option<(&str, &str, u16)> {
        self.mx.get(d).and_then(|l| l.first()).map(|&(_, h)| {
            let (name, address) = self.host(h);
            (name, address, self.port(h))
        })
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

    /// New delivery agents after `postfix reload` read the new `smtp_*` settings.
    pub fn reconfigure(&mut self, smtp: &SmtpClientConfig) {
        self.limits = ClientLimits::from(smtp);
        self.fallback = smtp
            .fallback_relay
            .iter()
            .filter_map(|site| match site {
                Site::Domain(d) => Some(SiteRef::Domain(*d as u32)),
                Site::Host(name) => self.host_ids.get(name).map(|&h| SiteRef::Host(h)),
            })
            .collect();
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
            };
        }
        let agent = match self.free_clients.pop() {
            Some(a) => a,
            None => {
                self.clients.push(Client::default());
                (self.clients.len() - 1) as u32
            }
        };
        self.clients[agent as usize].reset();
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
        let step = self.advance(agent as usize, now, req);
        if let Step::Done { .. } = step {
            self.free_clients.push(agent);
        }
        step
    }
}
