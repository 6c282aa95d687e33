//! Admin commands on the timeline (`[[admin]]`), with the effects of §2.1–2.2: what moves,
//! what wakes, what waits.
//!
//! - `postqueue -f`, `-s site`, `-i id`: the flush service (`flush.rs`).
//! - `postsuper -d/-h/-H/-r/-e/-f`: renames and removals. A file in the active queue is
//!   renamed under qmgr's feet: deliveries already with an agent finish, queued ones are
//!   dropped, and the rename shows when qmgr lets go of the message.
//! - `postfix reload`: qmgr exits (its agents finish their requests), and a new one moves
//!   active files back to incoming, forgets every window and dead queue, and starts both
//!   scans with a new scan phase. `postfix stop` kills the agents and smtpd instead (the
//!   master's SIGTERM to its process group); `postfix start` is a reload after a stop.

use super::message::{LeaveAction, Location, RcptStatus};
use super::notes::NoteKind;
use super::qmgr::event_loop::{EventLoop, Timer};
use super::{Event, Mta};
use crate::engine::EventQueue;
use crate::engine::time::{SECOND, Time, whole_seconds};
use crate::observe::{MasterAction, Observer};
use crate::scenario::{AdminCommand, QueueSet, Selection};
use crate::world::World;
use std::cmp::Reverse;

/// pickup's wakeup period (master.cf `pickup … 60`).
pub const PICKUP_WAKEUP: Time = 60 * SECOND;
/// master's wakeup of qmgr (master.cf `qmgr … 300`): an incoming scan.
pub const QMGR_WAKEUP: Time = 300 * SECOND;

impl Mta {
    /// Does admin action `index` send qmgr a trigger, waking its event loop?
    pub(super) fn admin_wakes_qmgr(&self, index: usize) -> bool {
        self.running
            && matches!(
                self.admin_actions.get(index).map(|a| &a.command),
                Some(
                    AdminCommand::Flush | AdminCommand::FlushSite { .. } | AdminCommand::FlushId(_)
                )
            )
    }

    /// Carries out admin action `index` of the scenario.
    pub(super) fn admin(
        &mut self,
        index: usize,
        now: Time,
        events: &mut EventQueue<Event>,
        world: &mut World,
        obs: &mut dyn Observer,
    ) {
        let Some(action) = self.admin_actions.get(index).cloned() else {
            return;
        };
        self.totals.admin_commands += 1;
        let command = match action.command {
            AdminCommand::Flush => Some(("postqueue -f", None)),
            AdminCommand::FlushSite { .. } => Some(("postqueue -s", None)),
            AdminCommand::FlushId(_) => Some(("postqueue -i", None)),
            AdminCommand::Reload { config } => Some(("postfix reload", Some(config))),
            AdminCommand::Stop => Some(("postfix stop", None)),
            AdminCommand::Start { config } => Some(("postfix start", Some(config))),
            _ => None,
        };
        if let Some((what, config)) = command {
            self.note(now, 0, 0, super::notes::NoteKind::Command { what, config });
        }
        match action.command {
            AdminCommand::Flush => self.flush_all(now, events),
            AdminCommand::FlushSite { destination } => self.flush_site(destination, now),
            AdminCommand::FlushId(id) => self.flush_file(id, now),
            AdminCommand::Delete(selection, queues) => {
                let files = self.select(selection, queues);
                for &m in &files {
                    // postsuper removes the file at once and says so (postsuper.c:
                    // delete_one), also under qmgr's feet.
                    self.admin_note(m, now, "removed", selection);
                    if self.owned_by_qmgr(m) {
                        self.messages.get_mut(m).on_leave = LeaveAction::Delete;
                        self.cancel_queued_entries(m, now, events, obs);
                    } else {
                        self.delete_file(m, now, obs);
                    }
                }
                self.postsuper_summary(now, "Deleted", files.len());
            }
            AdminCommand::Hold(selection, queues) => {
                let queues = QueueSet {
                    maildrop: false, // postsuper never holds maildrop files
                    hold: false,
                    ..queues
                };
                let files = self.select(selection, queues);
                for &m in &files {
                    self.admin_note(m, now, "placed on hold", selection);
                    if self.owned_by_qmgr(m) {
                        self.messages.get_mut(m).on_leave = LeaveAction::Hold;
                        self.cancel_queued_entries(m, now, events, obs);
                    } else {
                        self.messages.get_mut(m).on_leave = LeaveAction::Normal;
                        self.relocate(m, Location::Hold);
                    }
                }
                self.postsuper_summary(now, "Placed on hold", files.len());
            }
            AdminCommand::Release(selection, queues) => {
                let files = self.select(
                    selection,
                    QueueSet {
                        hold: queues.hold,
                        ..QueueSet::default()
                    },
                );
                for &m in &files {
                    self.admin_note(m, now, "released from hold", selection);
                    self.release(m);
                }
                self.postsuper_summary(now, "Released from hold", files.len());
            }
            AdminCommand::Requeue(selection, queues) => {
                let queues = QueueSet {
                    maildrop: false, // already there
                    ..queues
                };
                let files = self.select(selection, queues);
                for &m in &files {
                    if selection != Selection::All {
                        // A single ID also gets mtime = now (postsuper.c: requeue_one).
                        self.messages.get_mut(m).mtime = whole_seconds(now);
                    }
                    self.admin_note(m, now, "requeued", selection);
                    if self.owned_by_qmgr(m) {
                        self.messages.get_mut(m).on_leave = LeaveAction::Requeue;
                        self.cancel_queued_entries(m, now, events, obs);
                    } else {
                        self.messages.get_mut(m).on_leave = LeaveAction::Normal;
                        self.requeue_to_maildrop(m, now, events);
                    }
                }
                self.postsuper_summary(now, "Requeued", files.len());
            }
            AdminCommand::Expire {
                selection,
                queues,
                release,
            } => {
                let queues = QueueSet {
                    maildrop: false, // expire_one and super() skip maildrop
                    ..queues
                };
                let files = self.select(selection, queues);
                let mut released = 0;
                for &m in &files {
                    self.admin_note(m, now, "expired", selection);
                    self.messages.get_mut(m).force_expired = true;
                    if release && self.messages.get(m).location == Location::Hold {
                        // postsuper -f: exp_rel_one = expire_one, then release_one.
                        self.admin_note(m, now, "released from hold", selection);
                        self.release(m);
                        released += 1;
                    }
                }
                self.postsuper_summary(now, "Force-expired", files.len());
                if release {
                    self.postsuper_summary(now, "Released from hold", released);
                }
            }
            AdminCommand::Postconf(_) => {} // read at the next reload or start
            AdminCommand::Reload { config } => {
                self.note(now, 0, 0, NoteKind::Master(MasterAction::Reload));
                self.qmgr_exit(now, obs);
                self.qmgr_start(config, now, events, world);
            }
            AdminCommand::Stop => {
                self.note(now, 0, 0, NoteKind::Master(MasterAction::Stop));
                // SIGTERM to the whole process group (master_sig.c: `master_sigdeath`):
                // agents and smtpd die where they are, before qmgr's state is dropped.
                self.kill_agents(world);
                self.smtpd_killed(now, events);
                self.qmgr_exit(now, obs);
            }
            AdminCommand::Start { config } => {
                self.note(now, 0, 0, NoteKind::Master(MasterAction::Start));
                self.qmgr_start(config, now, events, world);
            }
        }
        self.ensure_pickup_wakeup(now, events);
    }

    /// Is file `m` in a running qmgr's memory? Only then does a rename or removal wait for
    /// qmgr to let go of it (§2.2); with Postfix stopped, postsuper's rename or unlink of a
    /// file in active/ is all there is (postsuper.c: `delete_one`, `hold_one`, `requeue_one`
    /// and `super()` act on any queue directory named).
    fn owned_by_qmgr(&self, m: u32) -> bool {
        self.running && self.messages.get(m).location == Location::Active
    }

    /// What postsuper did to queue file `m`. Only an operation on one queue ID logs it
    /// (`delete_one`, `hold_one`, … in postsuper.c); `ALL` works silently (`super()`).
    fn admin_note(&mut self, m: u32, now: Time, what: &'static str, selection: Selection) {
        let (id, origin) = (self.messages.get(m).id, self.messages.get(m).origin_id);
        let listed = selection != Selection::All;
        self.note(
            now,
            id,
            origin,
            super::notes::NoteKind::Admin { what, listed },
        );
    }

    /// postsuper's closing report, e.g. `Deleted: 3 messages` (postsuper.c: `main`).
    fn postsuper_summary(&mut self, now: Time, what: &'static str, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.note(
            now,
            0,
            0,
            super::notes::NoteKind::PostsuperSummary { what, count },
        );
    }

    /// Queue files matching a `postsuper` selection, in message-id order.
    pub(super) fn select(&self, selection: Selection, queues: QueueSet) -> Vec<u32> {
        let in_set = |loc: Location| match loc {
            Location::Maildrop => queues.maildrop,
            Location::Incoming => queues.incoming,
            Location::Active => queues.active,
            Location::Deferred => queues.deferred,
            Location::Hold => queues.hold,
            Location::Gone => false,
        };
        let mut found: Vec<(u64, u32)> = self
            .messages
            .iter_live_indexed()
            .filter(|(_, msg)| in_set(msg.location))
            .filter(|(_, msg)| match selection {
                Selection::All => true,
                Selection::QueueId(id) => msg.id == id,
                Selection::Message(id) => msg.origin_id == id,
            })
            .map(|(m, msg)| (msg.id, m))
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, m)| m).collect()
    }

    /// Every queue file `selection` names, in any queue.
    pub(super) fn find(&self, selection: Selection) -> Vec<u32> {
        self.select(selection, ALL_QUEUES)
    }

    /// `postsuper -d` of a file not in the active queue.
    fn delete_file(&mut self, m: u32, now: Time, obs: &mut dyn Observer) {
        // Out of its directory first, while its recipients still show what it was queued for.
        self.relocate(m, Location::Gone);
        let n = self.messages.get(m).recipients.len();
        for r in 0..n {
            if self.messages.get(m).recipients[r].status == RcptStatus::Pending {
                self.finalize(m, r, RcptStatus::Deleted, now, obs);
            }
        }
        self.totals.deleted_messages += 1;
        self.messages.free(m);
    }

    /// `postsuper -H`: back to deferred with its old time stamp; the next deferred scan
    /// takes it once that time has come.
    fn release(&mut self, m: u32) {
        let mtime = self.messages.get(m).mtime;
        let stamp = self.relocate(m, Location::Deferred);
        self.qmgr.deferred.push(Reverse((mtime, stamp, m)));
    }

    /// `postsuper -r`: into maildrop, for pickup's next wakeup (postsuper sends no trigger).
    fn requeue_to_maildrop(&mut self, m: u32, now: Time, events: &mut EventQueue<Event>) {
        self.messages.get_mut(m).requeued = true;
        let stamp = self.relocate(m, Location::Maildrop);
        self.maildrop.push_back((m, stamp));
        self.ensure_pickup_wakeup(now, events);
    }

    /// qmgr is done with a message an admin command renamed or removed while it was active.
    pub(super) fn leave_after_admin(
        &mut self,
        m: u32,
        action: LeaveAction,
        now: Time,
        obs: &mut dyn Observer,
    ) {
        self.messages.get_mut(m).on_leave = LeaveAction::Normal;
        let deferred = self.messages.get(m).pending_recipients() > 0;
        let to = match action {
            _ if !deferred => "removed",
            LeaveAction::Hold => "hold",
            LeaveAction::Requeue => "maildrop",
            LeaveAction::Delete | LeaveAction::Normal => "removed",
        };
        let (id, origin) = (self.messages.get(m).id, self.messages.get(m).origin_id);
        self.note(
            now,
            id,
            origin,
            super::notes::NoteKind::LeftActive { to, deferred },
        );
        if !deferred {
            // Nothing left: the file is gone for qmgr (its own remove fails, and it warns).
            self.relocate(m, Location::Gone);
            self.messages.free(m);
            return;
        }
        match action {
            LeaveAction::Hold => {
                self.relocate(m, Location::Hold);
            }
            LeaveAction::Delete => self.delete_file(m, now, obs),
            LeaveAction::Requeue => {
                self.messages.get_mut(m).requeued = true;
                let stamp = self.relocate(m, Location::Maildrop);
                self.maildrop.push_back((m, stamp));
                self.pickup_wanted = true;
            }
            LeaveAction::Normal => {}
        }
    }

    /// `postqueue -i`: qmgr reads the g+r bit and unthrottles the message's destinations.
    pub(super) fn unthrottle_destinations_of(&mut self, m: u32) {
        let dests: Vec<u32> = self
            .messages
            .get(m)
            .recipients
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
            .map(|r| r.dest)
            .collect();
        for d in dests {
            if (d as usize) < self.qmgr.dest_transport.len() {
                self.enable_queue(d);
            }
        }
    }

    /// qmgr exits (`postfix reload` or `stop`): its in-memory state is gone; agents at work
    /// finish their requests and update the files. A rename or removal an admin made while
    /// the file was in qmgr's memory already happened on disk: it shows now.
    fn qmgr_exit(&mut self, now: Time, obs: &mut dyn Observer) {
        self.abandon_entries();
        self.running = false;
        self.qmgr_generation += 1;
        for m in self.select(Selection::All, ACTIVE_ONLY) {
            let action = self.messages.get(m).on_leave;
            if action != LeaveAction::Normal {
                self.leave_after_admin(m, action, now, obs);
            }
        }
    }

    /// A new qmgr starts with configuration `config` (`qmgr_post_init`): active files go
    /// back to incoming with mtime = now, both scans start, and the deferred-scan clock gets
    /// a new phase.
    fn qmgr_start(
        &mut self,
        config: usize,
        now: Time,
        events: &mut EventQueue<Event>,
        world: &mut World,
    ) {
        if let Some(c) = self.reconfigurations.get(config).cloned() {
            let was_eligible = self.fast_flush_eligibility();
            self.cfg = c.postfix.clone();
            self.fast_flush_reconfigured(&was_eligible, now);
            self.filter_on = c.filter_on;
            // New smtpd and cleanup processes, and the new qmgr's token target.
            self.inbound_reconfigure(&c);
            world.reconfigure(&c.smtp);
            self.qmgr.restart(
                c.postfix.qmgr_message_active_limit,
                &c.transports,
                self.next_move_stamp,
            );
        }
        let now_s = whole_seconds(now);
        for m in self.select(Selection::All, ACTIVE_ONLY) {
            let msg = self.messages.get_mut(m);
            msg.mtime = now_s;
            msg.refcount = 0;
            msg.on_leave = LeaveAction::Normal;
            let stamp = self.relocate(m, Location::Incoming);
            self.qmgr.incoming.push_back((m, stamp));
        }
        self.running = true;
        self.qmgr_generation += 1;
        let generation = self.qmgr_generation;
        // A new process, a new event loop: qmgr_post_init scans at once and asks for the
        // deferred-scan timer, whose whole-second grid starts now.
        self.qmgr.event_loop = EventLoop::new(now);
        self.request_timer(
            Timer::DeferredScan { generation },
            self.cfg.queue_run_delay,
            now,
            events,
        );
        self.qmgr_started_at = now;
        // Dead queues and transports were forgotten.
        for d in 0..self.domains.len() as u32 {
            self.sync_dead(d, super::notes::DeadNote::QmgrRestart);
        }
        // The master restarts every service's wakeup timer from now, with a wakeup at once
        // (master_service.c: master_restart_service, master_start_service call
        // master_wakeup_init), and pickup is a new process: nothing of an old one's cleanup
        // sleep survives.
        self.master_started_at = now;
        self.pickup_busy_until = None;
        self.pickup(now, events);
    }

    /// A pickup wakeup is due if maildrop has files nobody triggered for.
    pub(super) fn ensure_pickup_wakeup(&mut self, now: Time, events: &mut EventQueue<Event>) {
        if (self.pickup_wanted || !self.maildrop.is_empty()) && !self.pickup_wakeup_pending {
            // pickup's timer runs from when the master started it (`qmgr_start`).
            let phase = self.master_started_at;
            let next = phase + ((now - phase).div_euclid(PICKUP_WAKEUP) + 1) * PICKUP_WAKEUP;
            events.schedule(next, Event::PickupWakeup);
            self.pickup_wakeup_pending = true;
        }
        self.pickup_wanted = false;
    }

    /// pickup's periodic wakeup (only scheduled while maildrop has files).
    pub(super) fn pickup_wakeup(&mut self, now: Time, events: &mut EventQueue<Event>) {
        self.pickup_wakeup_pending = false;
        if self.running {
            self.pickup(now, events);
        }
        self.ensure_pickup_wakeup(now, events);
    }

    /// master's periodic wakeup of qmgr: an incoming scan, for files whose time stamp was
    /// in the future when a scan passed them (only scheduled while there are any).
    pub(super) fn ensure_qmgr_wakeup(&mut self, now: Time, events: &mut EventQueue<Event>) {
        if !self.qmgr.incoming_later.is_empty() && !self.qmgr_wakeup_pending && self.running {
            let phase = self.qmgr_started_at;
            let next = phase + ((now - phase).div_euclid(QMGR_WAKEUP) + 1) * QMGR_WAKEUP;
            events.schedule(
                next,
                Event::QmgrWakeup {
                    generation: self.qmgr_generation,
                },
            );
            self.qmgr_wakeup_pending = true;
        }
    }

    pub(super) fn qmgr_wakeup(&mut self, generation: u32) {
        self.qmgr_wakeup_pending = false;
        if generation == self.qmgr_generation && self.running {
            self.qmgr
                .request_scan(super::qmgr::Dir::Incoming, u64::MAX, false);
        }
    }
}

const ACTIVE_ONLY: QueueSet = QueueSet {
    maildrop: false,
    incoming: false,
    active: true,
    deferred: false,
    hold: false,
};
const ALL_QUEUES: QueueSet = QueueSet {
    maildrop: true,
    incoming: true,
    active: true,
    deferred: true,
    hold: true,
};
