//! `timeline.csv`: the scenario's faults and admin commands on the time axis, so charts can
//! mark them (and `mailsim plot` can redraw them without the scenario).
//!
//! Columns: `kind,label,start_s,end_s` (`kind` is `fault` or `admin`; `end_s` is empty for
//! an admin command and for a fault that lasts to the end of the run).

use crate::engine::time::{Time, write_seconds};
use crate::scenario::{FaultTarget, Scenario};

pub const HEADER: &str = "kind,label,start_s,end_s\n";

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub fault: bool,
    pub label: String,
    pub start: Time,
    pub end: Option<Time>,
}

/// The scenario's timeline, in scenario order (faults, then admin commands).
pub fn of(scenario: &Scenario) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in &scenario.faults {
        let what = crate::scenario::fault_kind_name(f.kind);
        let target = match &f.target {
            FaultTarget::Domain(d) => scenario
                .destinations
                .get(*d)
                .map(|d| d.domain.clone())
                .unwrap_or_default(),
            FaultTarget::Host(h) => h.clone(),
            FaultTarget::Dns => "dns".into(),
            FaultTarget::Disk => "disk".into(),
            FaultTarget::Transport(t) => scenario
                .transports
                .get(*t)
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            FaultTarget::OurHost => "host".into(),
        };
        out.push(Entry {
            fault: true,
            label: format!("{what} {target}"),
            start: f.start,
            end: (f.end != Time::MAX).then_some(f.end),
        });
    }
    for a in &scenario.admin {
        out.push(Entry {
            fault: false,
            label: a.text.clone(),
            start: a.at,
            end: None,
        });
    }
    out
}

pub fn to_csv(entries: &[Entry]) -> String {
    let mut s = String::from(HEADER);
    for e in entries {
        s.push_str(if e.fault { "fault," } else { "admin," });
        if e.label.contains([',', '"']) {
            s.push('"');
            s.push_str(&e.label.replace('"', "\"\""));
            s.push('"');
        } else {
            s.push_str(&e.label);
        }
        s.push(',');
        write_seconds(&mut s, e.start);
        s.push(',');
        if let Some(end) = e.end {
            write_seconds(&mut s, end);
        }
        s.push('\n');
    }
    s
}

/// Reads [`to_csv`]'s output back.
pub fn from_csv(text: &str) -> Result<Vec<Entry>, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let bad = || format!("timeline.csv row {}: not kind,label,start_s,end_s", n + 2);
        let r = record.map_err(|_| bad())?;
        let secs = |s: &str| -> Result<Time, String> {
            let v: f64 = s.parse().map_err(|_| bad())?;
            Ok((v * crate::engine::time::SECOND as f64).round() as Time)
        };
        out.push(Entry {
            fault: r.get(0) == Some("fault"),
            label: r.get(1).unwrap_or_default().to_string(),
            start: secs(r.get(2).unwrap_or_default())?,
            end: match r.get(3).unwrap_or_default() {
                "" => None,
                s => Some(secs(s)?),
            },
        });
    }
    Ok(out)
}
