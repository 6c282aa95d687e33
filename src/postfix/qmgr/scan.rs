//! Directory scans and qmgr's main loop (`qmgr.c: qmgr_loop`, `qmgr_scan.c`; §3.1–3.2).
//!
//! Each loop iteration imports at most one file, alternating between the incoming and the
//! deferred scan while both have files, and stops both while the active queue is full
//! (preferring incoming when it frees up). A deferred file is eligible when its mtime is at
//! most now + 1 s, judged when the scan reaches it.
//!
//! Directory order: Postfix reads files in readdir order (§13). For deferred/ (hashed into
//! subdirectories by the queue ID, ext4 orders each directory by a hash of the names) that
//! is an arbitrary order fixed for each file: the Postfix 3.7.11 recording of
//! rate-limit-421 reads the same files in the same relative order in all seven retry scans
//! (27 706 pairs, none reversed), so the files early in it are retried first every time,
//! whatever their age. We give each file a fixed pseudo-random place
//! ([`super::readdir_key`]). Incoming is read in arrival order (qmgr scans it at every
//! new file, so only a burst could be reordered).

use super::{Dir, Scan};
use crate::engine::EventQueue;
use crate::engine::time::{Time, whole_seconds};
use crate::observe::Observer;
use crate::postfix::message::Location;
use crate::postfix::{Event, Mta};
use std::cmp::Reverse;

impl Mta {
    /// Plays qmgr's main loop until there is nothing left to import, then asks for agents.
    pub fn run_qmgr(&mut self, now: Time, events: &mut EventQueue<Event>, obs: &mut dyn Observer) {
        self.qmgr.now = now;
        if !self.running {
            return;
        }
        if self.qmgr.triggered {
            // cleanup's, master's or postqueue's trigger woke qmgr: its due timers run
            // before qmgr_loop imports anything.
            self.run_due_timers(now, events);
        }
        loop {
            let mut imported = false;
            let mut from_incoming = 0;
            while (self.counts.active as usize) < self.qmgr.active_limit {
                let first = self.qmgr.first;
                let second = match first {
                    Dir::Incoming => Dir::Deferred,
                    Dir::Deferred => Dir::Incoming,
                };
                let mut took = None;
                for dir in [first, second] {
                    if let Some(m) = self.next_file(dir, now) {
                        took = Some((dir, m));
                        break;
                    }
                }
                let Some((dir, m)) = took else { break };
                self.qmgr.first = match dir {
                    Dir::Incoming => Dir::Deferred,
                    Dir::Deferred => Dir::Incoming,
                };
                self.activate(m, now, obs);
                imported = true;
                if dir == Dir::Incoming {
                    from_incoming += 1;
                }
            }
            if (self.counts.active as usize) >= self.qmgr.active_limit {
                self.qmgr.first = Dir::Incoming;
            }
            self.in_flow_refill(from_incoming);
            let started = self.drain(now, events);
            // Finishing messages (e.g. all recipients deferred without an attempt) frees
            // active slots; loop until a pass changes nothing.
            if !imported && !started {
                break;
            }
        }
        self.ensure_qmgr_wakeup(now, events);
        self.ensure_pickup_wakeup(now, events);
    }

    /// The next eligible file of a running scan, already removed from its directory index;
    /// completes the scan (and performs a queued restart) when the directory is exhausted.
    fn next_file(&mut self, dir: Dir, now: Time) -> Option<u32> {
        let now_s = whole_seconds(now);
        loop {
            let scan = self.scan(dir);
            if !scan.running {
                return None;
            }
            let found = match dir {
                Dir::Incoming => self.next_incoming(now_s, scan.all),
                Dir::Deferred => self.next_deferred(now_s, scan.start_stamp, scan.all),
            };
            if found.is_some() {
                return found;
            }
            // This pass is complete.
            let restart_stamp = self.next_move_stamp;
            match dir {
                Dir::Deferred => {
                    let qmgr = &mut self.qmgr;
                    for item in qmgr.held_back.drain(..).chain(qmgr.behind_cursor.drain(..)) {
                        qmgr.deferred.push(Reverse(item));
                    }
                    qmgr.deferred_cursor = 0;
                }
                Dir::Incoming => {
                    let later = std::mem::take(&mut self.qmgr.incoming_later);
                    self.qmgr.incoming.extend(later);
                }
            }
            let scan = self.scan_mut(dir);
            scan.all = false;
            if scan.restart {
                scan.restart = false;
                scan.all = std::mem::take(&mut scan.restart_all);
                scan.start_stamp = if dir == Dir::Deferred {
                    restart_stamp
                } else {
                    u64::MAX
                };
            } else {
                scan.running = false;
                return None;
            }
        }
    }

    fn next_incoming(&mut self, now_s: i64, all: bool) -> Option<u32> {
        while let Some((m, stamp)) = self.qmgr.incoming.pop_front() {
            let msg = self.messages.get(m);
            if msg.location != Location::Incoming || msg.move_stamp != stamp {
                continue;
            }
            if msg.mtime > now_s + 1 && !all {
                // Skipped by this pass (a time stamp in the future); still in incoming/.
                self.qmgr.incoming_later.push((m, stamp));
                continue;
            }
            return Some(m);
        }
        None
    }

    /// The next due file of the running deferred pass, in directory order: files are judged
    /// due (mtime at most now + 1 s, or any with `all`) as the pass goes, and one that comes
    /// due behind the pass's position waits for the next pass, as readdir would leave it.
    fn next_deferred(&mut self, now_s: i64, start_stamp: u64, all: bool) -> Option<u32> {
        while let Some((mtime, stamp, m)) = self.qmgr.deferred.peek() {
            let msg = self.messages.get(m);
            if msg.location != Location::Deferred || msg.move_stamp != stamp {
                self.qmgr.deferred.pop();
                continue;
            }
            if mtime > now_s + 1 && !all {
                break;
            }
            self.qmgr.deferred.pop();
            if stamp >= start_stamp {
                // Deferred after this pass began: the next pass sees it.
                self.qmgr.held_back.push((mtime, stamp, m));
                continue;
            }
            let key = super::readdir_key(msg.id);
            if key < self.qmgr.deferred_cursor {
                self.qmgr.behind_cursor.push((mtime, stamp, m));
            } else {
                self.qmgr.due_batch.push((key, stamp, m));
            }
        }
        if !self.qmgr.due_batch.is_empty() {
            let qmgr = &mut self.qmgr;
            qmgr.due.add(&mut qmgr.due_batch);
        }
        while let Some((key, stamp, m)) = self.qmgr.due.pop() {
            let msg = self.messages.get(m);
            if msg.location != Location::Deferred || msg.move_stamp != stamp {
                continue;
            }
            self.qmgr.deferred_cursor = key;
            return Some(m);
        }
        None
    }

    fn scan(&self, dir: Dir) -> Scan {
        match dir {
            Dir::Incoming => self.qmgr.incoming_scan,
            Dir::Deferred => self.qmgr.deferred_scan,
        }
    }

    fn scan_mut(&mut self, dir: Dir) -> &mut Scan {
        match dir {
            Dir::Incoming => &mut self.qmgr.incoming_scan,
            Dir::Deferred => &mut self.qmgr.deferred_scan,
        }
    }
}
