//! The world our Postfix talks to: remote destinations and the traffic that arrives.
//!
//! The seam between the MTA and the world is [`World::deliver`]: qmgr hands a delivery
//! request to an agent, the world says how long the session holds the agent, what each
//! recipient was told, and whether the session failed at the site level (which Postfix
//! reports to qmgr as negative feedback, `../shared/postfix-model.md` §6.2). Richer remote
//! behaviour (MX lists, greylisting, rate limits, outages) plugs in behind this method.

pub mod latency;
pub mod remote;
pub mod traffic;

use crate::engine::{RngStreams, Time};
use crate::postfix::message::Recipient;
use crate::scenario::Scenario;
pub use remote::Remote;

/// Why a whole session failed (site failure, reported as hop status); none in the basic
/// remote, which only answers per recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteFailure {
    ConnectionRefused,
}

/// What one delivery session did.
#[derive(Clone, Copy, Debug)]
pub struct Session {
    /// How long the delivery agent was busy.
    pub duration: Time,
    pub site_failure: Option<SiteFailure>,
}

/// Every destination's remote side.
pub struct World {
    remotes: Vec<Remote>,
}

impl World {
    pub fn new(scenario: &Scenario, streams: &RngStreams) -> Self {
        World {
            remotes: scenario
                .destinations
                .iter()
                .enumerate()
                .map(|(i, d)| Remote::new(d, streams.stream("remote", i as u64)))
                .collect(),
        }
    }

    /// One delivery attempt to destination `dest` for the pending `recipients`; writes each
    /// recipient's reply.
    pub fn deliver(&mut self, dest: u32, now: Time, recipients: &mut [Recipient]) -> Session {
        self.remotes[dest as usize].deliver(now, recipients)
    }
}
