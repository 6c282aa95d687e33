//! The model's log of what happens to queue files, kept compactly (indices, not strings)
//! while a run goes on, and handed to the observer as [`crate::observe::Event`]s — the
//! raw material of mail.log, `explain` and delay attribution. Recording is off unless the
//! observer asks for events, so plain runs pay nothing for it.

use super::Mta;
use crate::engine::time::Time;
use crate::observe::{
    Address, Agent, Cause, Event, Happening, Observer, RecipientStatus, Status, Via,
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
    pub suspended_by: Option<Cause>,
    pub agent: AgentNote,
    pub relay: Option<u32>,
    pub tried: Option<u32>,
    pub arrival: Time,
    pub active: Time,
    pub handoff: Option<Time>,
    pub setup_done: Option<Time>,
    pub to_filter: bool,
    /// The agent process (`None`: qmgr's deferral through the retry service).
    pub pid: Option<u32>,
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
    ConnectFailed {
        host: u32,
        cause: Cause,
        pid: u32,
        transport: u16,
    },
    DeferredScan,
    /// postqueue failed: the mail system is down (`None`), or the site is not a fast-flush
    /// domain.
    PostqueueFatal {
        site: Option<u32>,
    },
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
        self.first_hosts = (0..self.domains.len())
            .map(|d| {
                world
                    .first_host(d)
                    .map(|(n, a, port)| (n.to_string(), a.to_string(), port))
            })
            .collect();
    }

    /// Hands the recorded notes up to `now` (and the agents' failed connects) to `obs`, in
    /// time order; notes about later instants (a conversation's planned end) wait.
    pub fn flush_notes(&mut self, now: Time, world: &mut World, obs: &mut dyn Observer) {
        if !self.record_notes {
            return;
        }
        for f in world.connect_failures.drain(..) {
            self.notes.push(Note {
                t: f.t,
                id: 0,
                origin: 0,
                kind: NoteKind::ConnectFailed {
                    host: f.host,
                    cause: f.cause,
                    pid: f.pid,
                    transport: f.transport,
                },
            });
        }
        // Stable: notes of the same instant keep the order they happened in.
        self.notes.sort_by_key(|n| n.t);
        let split = self.notes.partition_point(|n| n.t <= now);
        let later: Vec<Note> = self.notes.split_off(split);
        let notes = std::mem::replace(&mut self.notes, later);
        for n in &notes {
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
                        done: n.t,
                        index: r.index,
                        to_filter: r.to_filter,
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
                NoteKind::ConnectFailed {
                    host: h,
                    cause,
                    pid,
                    transport,
                } => {
                    let (host, address) = world.host(h);
                    Happening::ConnectFailed {
                        host,
                        address,
                        port: world.port(h),
                        cause,
                        pid,
                        transport: self
                            .transport_names
                            .get(transport as usize)
                            .map(String::as_str)
                            .unwrap_or("smtp"),
                    }
                }
                NoteKind::DeferredScan => Happening::DeferredScan,
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
