//! The model's log of what happens to queue files, kept compactly (indices, not strings)
//! while a run goes on, and handed to the observer as [`crate::observe::Event`]s — the
//! raw material of mail.log, `explain` and delay attribution. Recording is off unless the
//! observer asks for events, so plain runs pay nothing for it.

use super::Mta;
use crate::engine::time::Time;
use crate::observe::{
    Address, Agent, Cause, DeadWhy, Event, Happening, Observer, RecipientStatus, Status, Via,
};
use crate::world::World;

/// Who the envelope sender is: a traffic stream, or the null sender.
pub(crate) const NULL_SENDER: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) enum AgentNote {
    Smtp(u16),
    Local,
    Retry,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct RecipientNote {
    pub index: u32,
    pub dest: u32,
    /// For a notice: the traffic stream whose sender it goes back to.
    pub notice_to: Option<u16>,
    pub status: Status,
    pub cause: Option<Cause>,
    /// For a deferral by qmgr through the retry service: the saved reason's cause (its DSN)
    /// and text (`Mta::saved_text`).
    pub suspended_by: Option<Cause>,
    pub saved_text: Option<u32>,
    /// The server named in the reason ([`crate::postfix::message::NO_HOST`] if none).
    pub server: u32,
    /// The agent's process id.
    pub pid: u32,
    pub agent: AgentNote,
    pub relay: Option<u32>,
    pub tried: Option<u32>,
    pub arrival: Time,
    pub active: Time,
    pub handoff: Option<Time>,
    pub setup_done: Option<Time>,
    pub conn_use: u32,
    pub to_filter: bool,
    /// Of the wait from activation to hand-off, the part the queue's window caused.
    pub window_wait: Time,
    /// The agent's DNS time.
    pub dns: Time,
    /// For the filter's 250: the queue file it re-injected the message as.
    pub queued_as: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum NoteKind {
    Received {
        via: Via,
        sender: u32,
        size: u64,
        nrcpt: u32,
        arrival: Time,
    },
    Activated {
        nrcpt: u32,
        size: u64,
        sender: u32,
    },
    Recipient(RecipientNote),
    Deferred {
        mtime: i64,
    },
    Removed,
    Expired {
        forced: bool,
        sender: u32,
    },
    NoticeSent {
        notice: u64,
        delay_warning: bool,
    },
    Skipped,
    Admin {
        what: &'static str,
        listed: bool,
    },
    PostsuperSummary {
        what: &'static str,
        count: u64,
    },
    Master(crate::observe::MasterAction),
    SmtpdClient,
    Refused(crate::observe::Refusal),
    /// An agent's info line about a server it gave up on (`crate::world::ConnectFailure`).
    ServerFailed {
        host: u32,
        cause: Cause,
        kind: crate::world::FailureKind,
        pid: u32,
        dest: u32,
        transport: u16,
        notice_to: Option<u16>,
    },
    DeferredScan,
    AgentWarning {
        text: &'static str,
    },
    /// Destination `dest` became dead for qmgr, or alive again.
    DestinationState {
        dest: u32,
        dead: bool,
        why: DeadNote,
    },
    /// qmgr let go of a file an admin command renamed or removed while it was active.
    LeftActive {
        to: &'static str,
        deferred: bool,
    },
    /// qmgr's warning that destination `dest` clogs the active queue.
    ClogWarning {
        dest: u32,
        transport: u16,
        entries: u64,
        messages: u64,
        active_limit: u64,
        advice: crate::observe::ClogAdvice,
    },
    /// An admin command that acts on qmgr (`postqueue -f`, `postfix reload`, …); a new
    /// qmgr reads configuration `config` (an index into the scenario's reconfigurations).
    Command {
        what: &'static str,
        config: Option<usize>,
    },
    /// postqueue failed: the mail system is down (`None`), or the site is not a fast-flush
    /// domain.
    PostqueueFatal {
        site: Option<u32>,
    },
}

/// Why a destination died or revived (see [`crate::observe::DeadWhy`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum DeadNote {
    QueueDied { text: u32, until: Time },
    TransportDied { until: Time },
    Timer,
    Delivery,
    Flush,
    QmgrRestart,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Note {
    pub t: Time,
    pub id: u64,
    pub origin: u64,
    pub kind: NoteKind,
}

impl Mta {
    /// Records a note if anyone listens.
    pub(crate) fn note(&mut self, t: Time, id: u64, origin: u64, kind: NoteKind) {
        if self.record_notes {
            self.notes.push(Note {
                t,
                id,
                origin,
                kind,
            });
        }
    }

    /// Turns on recording (when the observer wants events) for the model and the world.
    pub fn record_events(&mut self, on: bool, world: &mut World) {
        self.record_notes = on;
        world.keep_notes = on;
        self.learn_hosts(world);
    }

    /// Hands the recorded notes up to `now` (and the agents' failed connects) to `obs`, in
    /// time order; notes about later instants (a conversation's planned end) wait.
    pub fn flush_notes(&mut self, now: Time, world: &mut World, obs: &mut dyn Observer) {
        if !self.record_notes || (self.notes.is_empty() && world.connect_failures.is_empty()) {
            return;
        }
        for (t, text) in world.agent_warnings.drain(..) {
            self.notes.push(Note {
                t,
                id: 0,
                origin: 0,
                kind: NoteKind::AgentWarning { text },
            });
        }
        // Stable: notes of the same instant keep the order they happened in. They are
        // usually in order already, and this runs after every event.
        if !self.notes.is_sorted_by_key(|n| n.t) {
            self.notes.sort_by_key(|n| n.t);
        }
        let split = self.notes.partition_point(|n| n.t <= now);
        // The buffer goes back after the loop, so no event allocates.
        let mut notes = std::mem::take(&mut self.notes);
        for n in &notes[..split] {
            let what = match n.kind {
                NoteKind::Received {
                    via,
                    sender,
                    size,
                    nrcpt,
                    arrival,
                } => Happening::Received {
                    via,
                    sender: self.sender_text(sender),
                    arrival,
                    size,
                    nrcpt,
                },
                NoteKind::Activated {
                    nrcpt,
                    size,
                    sender,
                } => Happening::Activated {
                    nrcpt,
                    size,
                    sender: self.sender_text(sender),
                },
                NoteKind::Recipient(r) => {
                    let destination = self
                        .domains
                        .get(r.dest as usize)
                        .map(String::as_str)
                        .unwrap_or("?");
                    let recipient = match r.notice_to {
                        Some(stream) => Address::Literal(self.sender_text(u32::from(stream))),
                        None => Address::Generated {
                            message: n.origin,
                            index: r.index,
                            domain: destination,
                        },
                    };
                    Happening::Recipient(RecipientStatus {
                        recipient,
                        destination,
                        status: r.status,
                        cause: r.cause,
                        suspended_by: r.suspended_by,
                        saved: r.saved_text.map(|t| self.saved_text(t)),
                        server: self.host_text(r.server).map(|(h, a, _)| (h, a)),
                        agent: match r.agent {
                            AgentNote::Smtp(t) => Agent::Smtp(
                                self.transport_names
                                    .get(t as usize)
                                    .map(String::as_str)
                                    .unwrap_or("smtp"),
                            ),
                            AgentNote::Local => Agent::Local,
                            AgentNote::Retry => Agent::Retry,
                        },
                        relay: r.relay.map(|h| world.host(h)),
                        tried: r.tried.map(|h| world.host(h)),
                        port: r.relay.or(r.tried).map_or(25, |h| world.port(h)),
                        pid: r.pid,
                        queued_as: r.queued_as,
                        arrival: r.arrival,
                        active: r.active,
                        handoff: r.handoff,
                        setup_done: r.setup_done,
                        conn_use: r.conn_use,
                        done: n.t,
                        index: r.index,
                        to_filter: r.to_filter,
                        window_wait: r.window_wait,
                        dns: r.dns,
                    })
                }
                NoteKind::Deferred { mtime } => Happening::Deferred { mtime },
                NoteKind::Removed => Happening::Removed,
                NoteKind::Expired { forced, sender } => Happening::Expired {
                    forced,
                    sender: self.sender_text(sender),
                },
                NoteKind::NoticeSent {
                    notice,
                    delay_warning,
                } => Happening::NoticeSent {
                    notice,
                    delay_warning,
                },
                NoteKind::Skipped => Happening::Skipped,
                NoteKind::Admin { what, listed } => Happening::Admin { what, listed },
                NoteKind::PostsuperSummary { what, count } => {
                    Happening::PostsuperSummary { what, count }
                }
                NoteKind::Master(action) => Happening::Master(action),
                NoteKind::SmtpdClient => Happening::SmtpdClient,
                NoteKind::Refused(why) => Happening::Refused(why),
                NoteKind::ServerFailed {
                    host,
                    cause,
                    kind,
                    pid,
                    dest,
                    transport,
                    notice_to,
                } => {
                    let port = world.port(host);
                    let (host, address) = world.host(host);
                    let transport = self
                        .transport_names
                        .get(transport as usize)
                        .map(String::as_str)
                        .unwrap_or("smtp");
                    let destination = self
                        .domains
                        .get(dest as usize)
                        .map(String::as_str)
                        .unwrap_or("?");
                    match kind {
                        crate::world::FailureKind::Connect => Happening::ConnectFailed {
                            host,
                            address,
                            port,
                            cause,
                            pid,
                            transport,
                        },
                        crate::world::FailureKind::Session => Happening::ServerSkipped {
                            host,
                            address,
                            port,
                            cause,
                            pid,
                            recipient: None,
                            destination,
                            transport,
                        },
                        crate::world::FailureKind::Recipient(index) => {
                            let recipient = match notice_to {
                                Some(stream) => {
                                    Address::Literal(self.sender_text(u32::from(stream)))
                                }
                                None => Address::Generated {
                                    message: n.origin,
                                    index,
                                    domain: destination,
                                },
                            };
                            Happening::ServerSkipped {
                                host,
                                address,
                                port,
                                cause,
                                pid,
                                recipient: Some(recipient),
                                destination,
                                transport,
                            }
                        }
                    }
                }
                NoteKind::DeferredScan => Happening::DeferredScan,
                NoteKind::AgentWarning { text } => Happening::AgentWarning { text },
                NoteKind::DestinationState { dest, dead, why } => Happening::DestinationState {
                    destination: self
                        .domains
                        .get(dest as usize)
                        .map(String::as_str)
                        .unwrap_or("?"),
                    dead,
                    why: match why {
                        DeadNote::QueueDied { text, until } => DeadWhy::QueueDied {
                            reason: self.saved_text(text),
                            until,
                        },
                        DeadNote::TransportDied { until } => DeadWhy::TransportDied { until },
                        DeadNote::Timer => DeadWhy::Timer,
                        DeadNote::Delivery => DeadWhy::Delivery,
                        DeadNote::Flush => DeadWhy::Flush,
                        DeadNote::QmgrRestart => DeadWhy::QmgrRestart,
                    },
                },
                NoteKind::LeftActive { to, deferred } => Happening::LeftActive { to, deferred },
                NoteKind::Command { what, config } => Happening::Command { what, config },
                NoteKind::ClogWarning {
                    dest,
                    transport,
                    entries,
                    messages,
                    active_limit,
                    advice,
                } => Happening::ClogWarning {
                    destination: self
                        .domains
                        .get(dest as usize)
                        .map(String::as_str)
                        .unwrap_or("?"),
                    transport: self
                        .transport_names
                        .get(transport as usize)
                        .map(String::as_str)
                        .unwrap_or("smtp"),
                    entries,
                    messages,
                    active_limit,
                    advice,
                },
                NoteKind::PostqueueFatal { site } => Happening::PostqueueFatal {
                    site: site.map(|d| {
                        self.domains
                            .get(d as usize)
                            .map(String::as_str)
                            .unwrap_or("?")
                    }),
                },
            };
            obs.event(&Event {
                t: n.t,
                id: n.id,
                origin: n.origin,
                what,
            });
        }
        notes.drain(..split);
        self.notes = notes;
    }

    fn sender_text(&self, sender: u32) -> &str {
        if sender == NULL_SENDER {
            ""
        } else {
            self.senders
                .get(sender as usize)
                .map(String::as_str)
                .unwrap_or("?")
        }
    }
}
