//! `deliveries.csv`: one row per recipient outcome, streamed to disk as outcomes happen so
//! memory does not grow with the number of messages simulated.
//!
//! Columns: `message_id,recipient,destination,arrival_s,finished_s,delay_s,attempts,status`;
//! `finished_s` and `delay_s` are empty for recipients still queued at the end.

use super::{AtomicFile, Staged};
use crate::engine::time::write_seconds;
use crate::error::Error;
use crate::observe::{Observer, RecipientOutcome};
use crate::text::{Ascii, push_decimal};

pub const HEADER: &str =
    "message_id,recipient,destination,arrival_s,finished_s,delay_s,attempts,status\n";

pub struct DeliveriesCsv {
    file: AtomicFile,
    line: Vec<u8>,
    /// The first write error, reported when the run ends (an observer cannot fail mid-run).
    error: Option<Error>,
}

impl DeliveriesCsv {
    pub fn create(file: AtomicFile) -> Result<Self, Error> {
        let mut d = DeliveriesCsv {
            file,
            line: Vec::with_capacity(256),
            error: None,
        };
        d.file.write_all(HEADER.as_bytes())?;
        Ok(d)
    }

    /// The complete file, still under its temporary name.
    pub fn finish(self) -> Result<Staged, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.file.finish()
    }
}

impl Observer for DeliveriesCsv {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        if self.error.is_some() {
            return;
        }
        // Built by hand rather than with `write!`: this runs once per recipient.
        let l = &mut self.line;
        l.clear();
        push_decimal(l, o.message_id);
        l.push(b',');
        o.recipient.push_to(l);
        l.push(b',');
        l.push_text(o.destination);
        l.push(b',');
        write_seconds(l, o.arrival);
        l.push(b',');
        if let Some(f) = o.finished {
            write_seconds(l, f);
            l.push(b',');
            write_seconds(l, f - o.arrival);
        } else {
            l.push(b',');
        }
        l.push(b',');
        push_decimal(l, u64::from(o.attempts));
        l.push(b',');
        l.push_text(o.status.as_str());
        l.push(b'\n');
        if let Err(e) = self.file.write_all(l) {
            self.error = Some(e);
        }
    }
}
