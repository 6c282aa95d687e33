//! The scenario's fault timeline, indexed for the questions the SMTP client asks: "what is
//! wrong with this host at time t?" and "what does the resolver say about this domain at t?".
//! A fault on a domain's connections applies to the hosts that serve it, since the hosts are
//! what is down; a DNS fault applies to lookups of that domain, or to all (`target = "dns"`).

use crate::engine::time::Time;
use crate::scenario::{FaultKind, FaultSpec, FaultTarget};

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Time,
    end: Time,
    kind: FaultKind,
    /// Aimed at this host by name (not at one of its domains): wins over a domain's fault.
    specific: bool,
}

impl Window {
    fn active(&self, t: Time) -> bool {
        self.start <= t && t < self.end
    }
}

/// Faults by host and by domain. A fault aimed at a host wins over one aimed at a domain it
/// serves (the more specific target: "all hosts down, one worse"); the scenario check
/// refuses two different faults at the same level that would meet on one host.
#[derive(Default)]
pub struct Timeline {
    by_host: Vec<Vec<Window>>,
    dns_by_domain: Vec<Vec<Window>>,
    dns_everywhere: Vec<Window>,
    /// `load` faults on our host: (start, end, factor).
    load: Vec<(Time, Time, f64)>,
}

impl Timeline {
    /// `hosts_of(d)` lists the host ids serving destination `d`; `host_id(name)` finds a host.
    pub fn new(
        faults: &[FaultSpec],
        hosts: usize,
        domains: usize,
        hosts_of: impl Fn(usize) -> Vec<u32>,
        host_id: impl Fn(&str) -> Option<u32>,
    ) -> Self {
        let mut t = Timeline {
            by_host: vec![Vec::new(); hosts],
            dns_by_domain: vec![Vec::new(); domains],
            dns_everywhere: Vec::new(),
            load: Vec::new(),
        };
        for f in faults {
            let w = Window {
                start: f.start,
                end: f.end,
                kind: f.kind,
                specific: matches!(f.target, FaultTarget::Host(_)),
            };
            let dns = matches!(
                f.kind,
                FaultKind::DnsServfail | FaultKind::DnsTimeout { .. } | FaultKind::DnsNxdomain
            );
            match (&f.target, dns) {
                (FaultTarget::Dns, _) => t.dns_everywhere.push(w),
                (FaultTarget::Domain(d), true) => {
                    if let Some(list) = t.dns_by_domain.get_mut(*d) {
                        list.push(w);
                    }
                }
                (FaultTarget::Domain(d), false) => {
                    for h in hosts_of(*d) {
                        t.by_host[h as usize].push(w);
                    }
                }
                (FaultTarget::Host(name), false) => {
                    if let Some(h) = host_id(name) {
                        t.by_host[h as usize].push(w);
                    }
                }
                // The scenario check refuses DNS faults on a host; disk and transport faults
                // are our own host's, not the world's.
                (FaultTarget::Host(_), true)
                | (FaultTarget::Disk, _)
                | (FaultTarget::Transport(_), _) => {}
                (FaultTarget::OurHost, _) => {
                    if let FaultKind::Load { factor } = f.kind {
                        t.load.push((f.start, f.end, factor));
                    }
                }
            }
        }
        t
    }

    /// The connection-level fault of host `h` at `t`, if any.
    pub fn host(&self, h: u32, t: Time) -> Option<FaultKind> {
        let list = self.by_host.get(h as usize)?;
        list.iter()
            .find(|w| w.specific && w.active(t))
            .or_else(|| list.iter().find(|w| w.active(t)))
            .map(|w| w.kind)
    }

    /// Whether host `h` had a fault that `kind` accepts at some instant of `[from, to]`.
    pub fn host_had(&self, h: u32, from: Time, to: Time, kind: impl Fn(FaultKind) -> bool) -> bool {
        self.by_host.get(h as usize).is_some_and(|list| {
            list.iter()
                .any(|w| w.start <= to && from < w.end && kind(w.kind))
        })
    }

    /// The resolver fault for a lookup of domain `d` (or of a name that is no destination,
    /// `None`) at `t`; a fault on the domain wins over one on the whole resolver.
    pub fn dns(&self, d: Option<usize>, t: Time) -> Option<FaultKind> {
        d.and_then(|d| self.dns_by_domain.get(d))
            .and_then(|list| list.iter().find(|w| w.active(t)))
            .or_else(|| self.dns_everywhere.iter().find(|w| w.active(t)))
            .map(|w| w.kind)
    }

    /// How many times slower our host works at `t` (1 when not overloaded); overlapping
    /// load faults multiply.
    pub fn load_factor(&self, t: Time) -> f64 {
        self.load
            .iter()
            .filter(|&&(start, end, _)| start <= t && t < end)
            .map(|&(_, _, f)| f)
            .product()
    }

    /// `work` (a duration starting at `t`) on our host, stretched by its load.
    pub fn scaled_by_load(&self, work: Time, t: Time) -> Time {
        if self.load.is_empty() {
            return work;
        }
        let f = self.load_factor(t);
        (work as f64 * f).min(i64::MAX as f64 / 4.0) as Time
    }

    pub fn is_empty(&self) -> bool {
        self.dns_everywhere.is_empty()
            && self.load.is_empty()
            && self.by_host.iter().all(Vec::is_empty)
            && self.dns_by_domain.iter().all(Vec::is_empty)
    }
}
