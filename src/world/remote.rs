//! The basic remote of one destination: every session takes a latency drawn from the
//! scenario's distribution, and each recipient independently gets a 4xx (deferred) or 5xx
//! (bounced) reply with the scenario's probabilities. These are per-recipient replies (RCPT
//! stage), which Postfix counts as a completed session: positive feedback, no throttling
//! (`../shared/postfix-model.md` §6.2).

use super::Session;
use super::latency::Sampler;
use crate::engine::{SimRng, Time};
use crate::postfix::message::{RcptStatus, Recipient, Reply};
use crate::scenario::DestinationSpec;
use rand::Rng;

pub struct Remote {
    latency: Sampler,
    tempfail: f64,
    permfail: f64,
    rng: SimRng,
}

impl Remote {
    pub fn new(spec: &DestinationSpec, rng: SimRng) -> Self {
        Remote {
            latency: Sampler::new(&spec.phases.transaction),
            tempfail: spec.tempfail,
            permfail: spec.permfail,
            rng,
        }
    }

    pub fn deliver(&mut self, _now: Time, recipients: &mut [Recipient]) -> Session {
        let duration = self.latency.sample(&mut self.rng);
        let always_accepts = self.tempfail == 0.0 && self.permfail == 0.0;
        for r in recipients
            .iter_mut()
            .filter(|r| r.status == RcptStatus::Pending)
        {
            r.reply = if always_accepts {
                Reply::Sent
            } else {
                let u: f64 = self.rng.random();
                if u < self.permfail {
                    Reply::Bounced
                } else if u < self.permfail + self.tempfail {
                    Reply::Deferred
                } else {
                    Reply::Sent
                }
            };
        }
        Session {
            duration,
            site_failure: None,
        }
    }
}
