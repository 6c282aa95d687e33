//! Scenario files: the TOML format, its units and defaults, and validation with errors that
//! name the file, the line and the key.
//!
//! Parsing happens in two steps: serde reads the file into `raw` types (unknown keys are
//! errors there), then [`resolve`](self) turns them into a checked [`Scenario`] whose values
//! are in simulator units (microseconds, seconds for qmgr parameters) with every Postfix
//! default filled in (3.7 defaults, `params.rs`).

pub mod admin;
pub mod locate;
pub mod params;
mod raw;
pub mod remote;
mod resolve_admin;
mod resolve_host;
mod resolve_world;
pub mod units;

use crate::engine::time::{MILLISECOND, SECOND, Time};
use crate::error::InputError;
pub use admin::{AdminAction, AdminCommand, QueueSet, Selection};
use params::{Feedback, Kind, Value};
pub use remote::{
    ConnectionCacheConfig, ContentFilter, DiskSpec, Excess, FaultKind, FaultSpec, FaultTarget,
    GreylistSpec, HostSpeed, MaxConnectionsSpec, MxHost, Phases, RateLimitSpec, RateReply, Site,
    SmtpClientConfig, SpamSpec, Stage, TcpStack,
};
pub use resolve_admin::Reconfiguration;
pub use resolve_host::{FilterNexthop, SizeDist};
pub use resolve_world::fault_kind_name;
use std::collections::BTreeMap;
use std::path::Path;

impl DestinationSpec {
    /// A destination whose single server accepts everything.
    pub fn accepting(domain: &str, transport: usize, phases: Phases) -> Self {
        DestinationSpec {
            domain: domain.to_string(),
            transport,
            phases,
            tempfail: 0.0,
            permfail: 0.0,
            mx: Vec::new(),
            greylist: None,
            rate_limit: None,
            max_connections: None,
            spam: SpamSpec::default(),
            unknown_recipients: 0.0,
            is_content_filter: false,
        }
    }
}

/// How the deferred-scan clock is placed (§3.2): qmgr started at a fixed instant ≤ 0, or at a
/// random phase drawn per run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QmgrStart {
    At(Time),
    Random,
}

/// main.cf values the model reads, resolved to their effective values.
#[derive(Clone, Debug, PartialEq)]
pub struct PostfixConfig {
    /// Seconds, like qmgr.
    pub queue_run_delay: i64,
    pub minimal_backoff_time: i64,
    pub maximal_backoff_time: i64,
    pub maximal_queue_lifetime: i64,
    pub bounce_queue_lifetime: i64,
    pub delay_warning_time: i64,
    pub transport_retry_time: i64,
    pub qmgr_message_active_limit: usize,
    pub default_process_limit: u32,
    /// Bytes.
    pub queue_minfree: u64,
    /// Bytes; 0 = no limit.
    pub message_size_limit: u64,
    /// Seconds (0 = off).
    pub in_flow_delay: i64,
    /// Seconds between a queue's clog warnings (0 = none).
    pub qmgr_clog_warn_time: i64,
    /// Sites the flush service keeps fast-flush logs for (`postqueue -s`), lower case.
    pub fast_flush_domains: Vec<String>,
}

/// One delivery transport (a master.cf service used by qmgr) with its resolved
/// per-transport parameters (`qmgr_transport.c: qmgr_transport_create`).
#[derive(Clone, Debug, PartialEq)]
pub struct TransportConfig {
    pub name: String,
    /// master.cf maxproc; 0 = unlimited.
    pub maxproc: u32,
    /// 0 = no limit. Forced to 1 when a rate delay is set, as qmgr does.
    pub dest_concurrency_limit: i32,
    pub initial_concurrency: i32,
    /// 0 = no limit.
    pub recipient_limit: u32,
    pub positive_feedback: Feedback,
    pub negative_feedback: Feedback,
    pub failed_cohort_limit: i32,
    /// Seconds.
    pub rate_delay: i64,
}

/// A random delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    Fixed(Time),
    Uniform { min: Time, max: Time },
    Exponential { mean: Time },
    LogNormal { mean: Time, sd: Time },
}

/// One destination domain and how its servers answer (`remote.rs` has the parts).
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationSpec {
    pub domain: String,
    /// Index into [`Scenario::transports`].
    pub transport: usize,
    pub phases: Phases,
    /// Probability that a recipient gets a 4xx reply at RCPT (deferred) in an attempt.
    pub tempfail: f64,
    /// Probability that a recipient gets a 5xx reply at RCPT (bounced) in an attempt.
    pub permfail: f64,
    /// MX records; empty = the domain itself is the only host (no MX record).
    pub mx: Vec<MxHost>,
    pub greylist: Option<GreylistSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    pub max_connections: Option<MaxConnectionsSpec>,
    pub spam: SpamSpec,
    /// Fraction of recipient addresses that do not exist (`550 5.1.1` at RCPT, every time).
    pub unknown_recipients: f64,
    /// This is the content filter's nexthop, not a mail domain.
    pub is_content_filter: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArrivalProcess {
    Poisson,
    Uniform,
    Burst,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Submit {
    /// smtpd → cleanup → incoming.
    Smtp,
    /// sendmail → postdrop → maildrop → pickup → cleanup → incoming.
    Sendmail,
}

/// One arrival stream.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficStream {
    /// (destination index, weight); weights are positive.
    pub to: Vec<(usize, f64)>,
    /// How many messages; `None` = open stream until `stop`.
    pub messages: Option<u64>,
    /// Messages per second (unused for bursts).
    pub rate: f64,
    pub arrivals: ArrivalProcess,
    pub start: Time,
    pub stop: Option<Time>,
    pub recipients: u32,
    pub submit: Submit,
    pub sender: String,
    pub size: SizeDist,
    /// When mail is refused at the door (452, Postfix stopped), the sending side retries
    /// after this long, and gives up once the message is this old.
    pub sender_retry: Time,
    pub sender_lifetime: Time,
    /// How long an SMTP client's session holds one of our smtpd processes.
    pub receive: Latency,
    /// Arrival instants to play instead of drawing them (`mailsim compare` replays those a
    /// recording offered); never set from a scenario file.
    pub replay: Option<std::sync::Arc<[Time]>>,
}

/// Where non-delivery and delay notices go (a destination index; by default the implicit
/// local destination that accepts).
#[derive(Clone, Debug, PartialEq)]
pub struct Notices {
    pub destination: usize,
}

/// A checked scenario, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub sample: Time,
    pub stop: Option<Time>,
    pub qmgr_start: QmgrStart,
    pub postfix: PostfixConfig,
    pub transports: Vec<TransportConfig>,
    pub destinations: Vec<DestinationSpec>,
    pub traffic: Vec<TrafficStream>,
    pub notices: Notices,
    pub smtp: SmtpClientConfig,
    pub faults: Vec<FaultSpec>,
    /// Admin commands in time order.
    pub admin: Vec<AdminAction>,
    /// The configuration each `postfix reload` / `postfix start` switches to.
    pub reconfigurations: Vec<Reconfiguration>,
    /// The queue file system; `None` = never full.
    pub disk: Option<DiskSpec>,
    /// `[kernel]`: our TCP stack's SYN retransmissions.
    pub tcp: TcpStack,
    /// `[host]`: how long Postfix's own hand-offs take.
    pub host: HostSpeed,
    /// The content filter's transport and destination, if main.cf names one at the start
    /// or a `postconf -e` names one later.
    pub filter: Option<ContentFilter>,
    /// main.cf's content_filter is set at the start (smtpd and pickup add FILTER records).
    pub filter_on: bool,
    /// master.cf maxproc of smtpd (0 = unlimited).
    pub smtpd_maxproc: u32,
    /// `[host] agent_cpu`: the CPU time a delivery agent spends on our host per request
    /// (reading the queue file, TLS, writing the message), before it connects; `load`
    /// faults multiply it.
    pub agent_cpu: Time,
    /// Things the user should know that are not errors (accepted but unmodelled parameters).
    pub warnings: Vec<String>,
}

/// The master.cf service receiving SMTP mail.
const SMTPD_SERVICE: &str = "smtpd";

/// The name of the implicit destination that accepts notices locally.
pub const LOCAL_DESTINATION: &str = "local";

/// Index of the `local` transport in [`Scenario::transports`] (always second, after `smtp`).
pub const LOCAL_TRANSPORT: usize = 1;

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, InputError> {
    let label = path.display().to_string();
    if path.is_dir() {
        return Err(InputError::new(
            &label,
            None,
            None,
            "is a directory, not a scenario file (give a .toml file, e.g. scenarios/baseline.toml)"
                .into(),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        InputError::new(
            &label,
            None,
            None,
            format!("cannot read the scenario file: {e}"),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        InputError::new(
            &label,
            None,
            None,
            "is not a text file (not valid UTF-8); a scenario is a TOML text file".into(),
        )
    })?;
    // NUL is valid UTF-8 but never in a text file: a binary file or a disk-full truncation.
    if text.contains('\0') {
        return Err(InputError::new(
            &label,
            None,
            None,
            "is not a text file (it contains NUL bytes); a scenario is a TOML text file".into(),
        ));
    }
    parse(&text, &label)
}

/// Checks scenario `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, InputError> {
    let blank = |l: &str| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    };
    if text.lines().all(blank) {
        return Err(InputError::new(
            file,
            None,
            None,
            "the file is empty (or only comments); a scenario needs at least `name`, one [[traffic]] and one [[destination]] (see scenarios/baseline.toml)".into(),
        ));
    }
    let raw = raw::read(text, file)?;
    Resolver { text, file }.resolve(raw)
}

struct Resolver<'a> {
    text: &'a str,
    file: &'a str,
}

/// Where a value sits: table name, array index, key.
type At<'k> = (&'k str, Option<usize>, &'k str);

impl Resolver<'_> {
    fn err(&self, at: At<'_>, message: String) -> InputError {
        self.err_shown(at, at.2, message)
    }

    /// An error about `sub` inside the inline table at `at`: the line is the table's key,
    /// the key shown is `key.sub`.
    fn err_in(&self, at: At<'_>, sub: &str, message: String) -> InputError {
        self.err_shown(at, &format!("{}.{sub}", at.2), message)
    }

    fn err_shown(&self, at: At<'_>, key: &str, message: String) -> InputError {
        let (table, index, located) = at;
        let line = locate::key_line(self.text, table, index, Some(located));
        let shown = match (table, index) {
            ("", _) => key.to_string(),
            (t, Some(i)) => format!("[[{t}]] #{} {key}", i + 1),
            (t, None) => format!("[{t}] {key}"),
        };
        InputError::new(self.file, line, Some(&shown), message)
    }

    fn duration(&self, at: At<'_>, text: &str, allow_negative: bool) -> Result<Time, InputError> {
        units::parse_duration(text, allow_negative).map_err(|m| self.err(at, m))
    }

    fn resolve(&self, raw: raw::Scenario) -> Result<Scenario, InputError> {
        let mut warnings = Vec::new();
        // `results/<name>` must be a folder of its own: ".." would write (and clear earlier
        // result files) in the folder above `results/`.
        if raw.name.trim().is_empty()
            || raw.name.trim_matches('.').is_empty()
            || raw
                .name
                .contains(|c: char| c == '/' || c == '\\' || c.is_control())
        {
            return Err(self.err(
                ("", None, "name"),
                "must be a non-empty name without slashes, and not `.` or `..` (it names the results folder)".into(),
            ));
        }
        let sample = match &raw.sample {
            Some(s) => self.duration(("", None, "sample"), s, false)?,
            None => 10 * SECOND,
        };
        if sample <= 0 {
            return Err(self.err(("", None, "sample"), "must be positive".into()));
        }
        if sample < MIN_SAMPLE {
            return Err(self.err(
                ("", None, "sample"),
                format!(
                    "`{}` is finer than 1ms, the finest sample step (queues.csv gets one row per step)",
                    raw.sample.as_deref().unwrap_or_default().trim()
                ),
            ));
        }
        let stop = match &raw.stop {
            Some(s) => {
                let t = self.duration(("", None, "stop"), s, false)?;
                if t <= 0 {
                    return Err(self.err(("", None, "stop"), "must be positive".into()));
                }
                Some(t)
            }
            None => None,
        };
        if let Some(stop) = stop {
            let rows = stop / sample + 1;
            if rows > MAX_SAMPLE_ROWS {
                // The coarsest step that fits, rounded up to a whole millisecond.
                let fits = (stop / (MAX_SAMPLE_ROWS - 1) + MILLISECOND) / MILLISECOND * MILLISECOND;
                let mut hint = String::new();
                crate::engine::time::write_seconds(&mut hint, fits);
                return Err(self.err(
                    ("", None, "sample"),
                    format!(
                        "with stop = \"{}\" this step gives {rows} rows of queues.csv, more than the {MAX_SAMPLE_ROWS} allowed: give sample = \"{hint}s\" or coarser",
                        raw.stop.as_deref().unwrap_or_default().trim()
                    ),
                ));
            }
        }
        let postfix_values = self.postfix_values(&raw.postfix, &mut warnings)?;
        let mut postfix = self.postfix_config(&postfix_values, &mut warnings);
        postfix.fast_flush_domains = self.fast_flush_domains(&raw.postfix)?;
        let qmgr_start = match raw.qmgr_start.as_deref() {
            None => QmgrStart::At(0),
            Some("random") => QmgrStart::Random,
            Some(s) => {
                let t = self.duration(("", None, "qmgr_start"), s, true)?;
                if t > 0 {
                    return Err(self.err(
                        ("", None, "qmgr_start"),
                        "must be zero, negative (qmgr was started before the run) or \"random\""
                            .into(),
                    ));
                }
                QmgrStart::At(t)
            }
        };

        // Transports: smtp and local always exist; destinations may name others.
        let mut transport_names: Vec<String> = vec!["smtp".into(), "local".into()];
        debug_assert_eq!(transport_names[LOCAL_TRANSPORT], "local");
        for (i, d) in raw.destination.iter().enumerate() {
            if let Some(t) = &d.transport {
                if !is_service_name(t) {
                    return Err(self.err(
                        ("destination", Some(i), "transport"),
                        format!(
                            "`{t}` is not a master.cf service name (letters, digits, `-`, `_`)"
                        ),
                    ));
                }
                if !transport_names.contains(t) {
                    transport_names.push(t.clone());
                }
            }
        }
        // The content filter's transport is a master.cf service too.
        let filter_nexthop =
            self.content_filter_setting(&raw.postfix, &raw.admin, raw.filter.is_some())?;
        if let Some(f) = &filter_nexthop
            && !transport_names.contains(&f.transport)
        {
            transport_names.push(f.transport.clone());
        }
        let maxprocs = self.master(&raw.master, &transport_names)?;
        self.check_transport_prefixes(&raw.postfix, &transport_names, &mut warnings)?;
        let transports: Vec<TransportConfig> = transport_names
            .iter()
            .map(|name| {
                transport_config(
                    name,
                    &postfix_values,
                    &maxprocs,
                    postfix.default_process_limit,
                )
            })
            .collect();

        let mut destinations = Vec::new();
        for (i, d) in raw.destination.iter().enumerate() {
            destinations.push(self.destination(i, d, &transport_names, &destinations)?);
        }
        if destinations.is_empty() {
            return Err(InputError::new(
                self.file,
                None,
                Some("destination"),
                "the scenario has no [[destination]]: add one per domain the traffic sends to"
                    .into(),
            ));
        }
        let user_destinations = destinations.len();
        let filter = match &filter_nexthop {
            Some(f) => {
                let transport = transport_names
                    .iter()
                    .position(|t| *t == f.transport)
                    .unwrap_or(0);
                let spec = self.filter_destination(
                    &f.host,
                    transport,
                    raw.filter.as_ref(),
                    &destinations,
                )?;
                destinations.push(spec);
                Some(ContentFilter {
                    transport,
                    destination: destinations.len() - 1,
                    port: f.port,
                })
            }
            None => None,
        };
        // On from the start only if main.cf has it; a filter first set by `postconf -e`
        // exists (transport, destination) but is off until that reload.
        let filter_on = self
            .parse_content_filter(
                ("postfix", None, params::CONTENT_FILTER),
                &raw.postfix
                    .get(params::CONTENT_FILTER)
                    .map(|v| v.as_text())
                    .unwrap_or_default(),
            )?
            .is_some();
        let local_index = destinations.len();
        let local_latency = match raw.notices.as_ref().and_then(|n| n.latency.as_ref()) {
            Some(v) => self.latency(("notices", None, "latency"), v)?,
            None => Latency::Fixed(10 * crate::engine::time::MILLISECOND),
        };
        destinations.push(DestinationSpec::accepting(
            LOCAL_DESTINATION,
            LOCAL_TRANSPORT,
            Phases::transaction_only(local_latency),
        ));
        let notices = match raw.notices.as_ref().and_then(|n| n.to.as_deref()) {
            None | Some(LOCAL_DESTINATION) => Notices {
                destination: local_index,
            },
            Some(domain) => match destinations.iter().position(|d| d.domain == domain) {
                Some(i) => Notices { destination: i },
                None => {
                    return Err(self.err(
                        ("notices", None, "to"),
                        format!(
                            "`{domain}` is neither \"local\" nor the domain of a [[destination]]{}",
                            did_you_mean(domain, destinations.iter().map(|d| d.domain.as_str()))
                        ),
                    ));
                }
            },
        };

        if raw.traffic.len() > usize::from(u16::MAX) {
            return Err(InputError::new(
                self.file,
                None,
                Some("traffic"),
                format!(
                    "{} [[traffic]] streams; at most {} are supported",
                    raw.traffic.len(),
                    u16::MAX
                ),
            ));
        }
        let mut traffic = Vec::new();
        for (i, t) in raw.traffic.iter().enumerate() {
            traffic.push(self.traffic(i, t, &destinations[..user_destinations])?);
        }
        if traffic.is_empty() {
            return Err(InputError::new(
                self.file,
                None,
                Some("traffic"),
                "the scenario has no [[traffic]]: add an arrival stream".into(),
            ));
        }
        if stop.is_none()
            && let Some(i) = traffic
                .iter()
                .position(|t| t.messages.is_none() && t.stop.is_none())
        {
            return Err(InputError::new(
                self.file,
                locate::key_line(self.text, "traffic", Some(i), None),
                Some(&format!("[[traffic]] #{}", i + 1)),
                "an open stream (no `messages`) needs a `stop` in the stream or at the top level"
                    .into(),
            ));
        }
        for (i, (t, r)) in traffic.iter().zip(&raw.traffic).enumerate() {
            self.check_volume(i, t, r.rate.as_deref().unwrap_or_default(), stop)?;
        }
        let smtp = self.smtp_client(&raw.postfix, &postfix_values, &destinations[..local_index])?;
        let faults = self.faults(&raw.fault, &destinations[..local_index], &transport_names)?;
        let disk = match &raw.disk {
            Some(d) => Some(self.disk(d)?),
            None => None,
        };
        let tcp = self.kernel(raw.kernel.as_ref())?;
        let host = self.host(raw.host.as_ref())?;
        let (admin, reconfigurations) = self.admin(
            &raw.admin,
            &resolve_admin::Context {
                postfix: &raw.postfix,
                transports: &transport_names,
                maxprocs: &maxprocs,
                destinations: &destinations[..local_index],
                filter: filter.zip(filter_nexthop.clone()),
                fast_flush_domains: &postfix.fast_flush_domains,
            },
            &mut warnings,
        )?;
        let smtpd_maxproc = smtpd_maxproc(&maxprocs, postfix.default_process_limit);
        let agent_cpu = match raw.host.as_ref().and_then(|h| h.agent_cpu.as_deref()) {
            Some(text) => self.duration(("host", None, "agent_cpu"), text, false)?,
            None => 0,
        };
        self.warn_idle_load(
            &faults,
            &traffic,
            filter.is_some(),
            agent_cpu,
            &destinations[..user_destinations],
            &transport_names,
            &mut warnings,
        );
        Ok(Scenario {
            name: raw.name.clone(),
            description: raw.description.clone().unwrap_or_default(),
            seed: raw.seed.unwrap_or(1),
            sample,
            stop,
            qmgr_start,
            postfix,
            transports,
            destinations,
            traffic,
            notices,
            smtp,
            faults,
            admin,
            reconfigurations,
            disk,
            tcp,
            host,
            filter,
            filter_on,
            smtpd_maxproc,
            agent_cpu,
            warnings,
        })
    }

    /// A `load` fault slows what our host does itself: smtpd sessions (`receive`), the
    /// content filter, local delivery and the agents' `[host] agent_cpu`. With none of them
    /// but the local delivery of notices, it changes (next to) nothing: say so.
    #[allow(clippy::too_many_arguments)]
    fn warn_idle_load(
        &self,
        faults: &[FaultSpec],
        traffic: &[TrafficStream],
        filter: bool,
        agent_cpu: Time,
        destinations: &[DestinationSpec],
        transports: &[String],
        warnings: &mut Vec<String>,
    ) {
        let sessions = traffic
            .iter()
            .any(|t| t.submit == Submit::Smtp && t.receive != Latency::Fixed(0));
        let local = destinations
            .iter()
            .any(|d| transports.get(d.transport).map(String::as_str) == Some("local"));
        if sessions || filter || agent_cpu > 0 || local {
            return;
        }
        for (i, f) in faults.iter().enumerate() {
            if matches!(f.kind, FaultKind::Load { .. }) {
                warnings.push(format!(
                    "{}:{}: [[fault]] #{}: a load fault slows smtpd sessions (`receive`), the content filter, local delivery and `[host] agent_cpu`; this scenario has none of them but the local delivery of notices, so it changes next to nothing (qmgr's own work takes no time in the model): give the traffic a `receive` time or set `[host] agent_cpu`",
                    self.file,
                    locate::key_line(self.text, "fault", Some(i), Some("kind")).unwrap_or(0),
                    i + 1
                ));
            }
        }
    }

    /// Parses every `[postfix]` entry; unknown names are errors (with a near miss), names the
    /// model ignores are warnings.
    fn postfix_values(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<String, Value>, InputError> {
        let mut values = BTreeMap::new();
        for (name, value) in table {
            let at = ("postfix", None, name.as_str());
            let text = value.as_text();
            let kind = if let Some((_, kind, _)) = params::GLOBAL.iter().find(|(n, _, _)| n == name)
            {
                *kind
            } else if let Some(kind) =
                transport_tail(name).and_then(|(_, tail)| params::tail_kind(tail))
            {
                kind
            } else if params::RELAY_LISTS.contains(&name.as_str())
                || params::DOMAIN_LISTS.contains(&name.as_str())
                || name == params::CONTENT_FILTER
                || name == params::CACHE_DESTINATIONS
            {
                continue; // lists and nexthops: `smtp_client`, `fast_flush_domains` and `content_filter_setting` read them
            } else if params::ACCEPTED_NOT_MODELLED.contains(&name.as_str()) {
                warnings.push(format!(
                    "{}:{}: [postfix] {name} is a Postfix parameter this model does not use yet; it has no effect",
                    self.file,
                    locate::key_line(self.text, "postfix", None, Some(name)).unwrap_or(0)
                ));
                continue;
            } else {
                let known = params::GLOBAL
                    .iter()
                    .map(|(n, _, _)| *n)
                    .chain(params::RELAY_LISTS.iter().copied())
                    .chain(params::DOMAIN_LISTS.iter().copied())
                    .chain([params::CONTENT_FILTER, params::CACHE_DESTINATIONS])
                    .chain(params::ACCEPTED_NOT_MODELLED.iter().copied());
                return Err(self.err(
                    at,
                    format!(
                        "unknown Postfix parameter{} (parameters use main.cf names; see the README, \"Postfix parameters the model reads\")",
                        did_you_mean(name, known)
                    ),
                ));
            };
            let parsed = params::parse_value(kind, &text).map_err(|m| self.err(at, m))?;
            values.insert(name.clone(), parsed);
        }
        Ok(values)
    }

    fn postfix_config(
        &self,
        values: &BTreeMap<String, Value>,
        warnings: &mut Vec<String>,
    ) -> PostfixConfig {
        let secs = |name: &str| global_seconds(values, name);
        let int = |name: &str| global_seconds(values, name);
        let maximal_queue_lifetime = secs("maximal_queue_lifetime");
        let mut bounce_queue_lifetime = secs("bounce_queue_lifetime");
        if bounce_queue_lifetime > maximal_queue_lifetime {
            // qmgr_post_init lowers it, with a warning.
            warnings.push(format!(
                "{}: bounce_queue_lifetime is larger than maximal_queue_lifetime; Postfix uses {}s for both, so does the model",
                self.file, maximal_queue_lifetime
            ));
            bounce_queue_lifetime = maximal_queue_lifetime;
        }
        PostfixConfig {
            queue_run_delay: secs("queue_run_delay"),
            minimal_backoff_time: secs("minimal_backoff_time"),
            maximal_backoff_time: secs("maximal_backoff_time"),
            maximal_queue_lifetime,
            bounce_queue_lifetime,
            delay_warning_time: secs("delay_warning_time"),
            transport_retry_time: secs("transport_retry_time"),
            qmgr_message_active_limit: usize::try_from(int("qmgr_message_active_limit"))
                .unwrap_or(1),
            default_process_limit: u32::try_from(int("default_process_limit")).unwrap_or(1),
            queue_minfree: u64::try_from(int("queue_minfree")).unwrap_or(0),
            message_size_limit: u64::try_from(int("message_size_limit")).unwrap_or(0),
            in_flow_delay: secs("in_flow_delay"),
            qmgr_clog_warn_time: secs("qmgr_clog_warn_time"),
            fast_flush_domains: Vec::new(), // set by `fast_flush_domains` from the table
        }
    }

    /// `fast_flush_domains` (default `$relay_domains`) with `relay_domains` (default empty:
    /// `${{$compatibility_level} <level {2} ? {$mydestination} : {}}` in mail_params.h, and
    /// the model's host is at level ≥ 2, as Debian 12's main.cf is).
    fn fast_flush_domains(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
    ) -> Result<Vec<String>, InputError> {
        let text = |name: &str| table.get(name).map(|v| v.as_text());
        let at = |name| ("postfix", None, name);
        let relay = params::parse_domain_list(&text("relay_domains").unwrap_or_default(), None)
            .map_err(|m| self.err(at("relay_domains"), m))?;
        params::parse_domain_list(
            &text("fast_flush_domains").unwrap_or_else(|| "$relay_domains".into()),
            Some(&relay),
        )
        .map_err(|m| self.err(at("fast_flush_domains"), m))
    }

    /// A `<transport>_<tail>` parameter for a transport the scenario does not have is a
    /// mistake unless it is one of Postfix's stock services (harmless, warned).
    fn check_transport_prefixes(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
        transports: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<(), InputError> {
        const STOCK: &[&str] = &[
            "relay", "lmtp", "virtual", "error", "retry", "discard", "pipe",
        ];
        for name in table.keys() {
            let Some((prefix, tail)) = transport_tail(name) else {
                continue;
            };
            if prefix == "default" || transports.iter().any(|t| t == prefix) {
                continue;
            }
            if STOCK.contains(&prefix) {
                warnings.push(format!(
                    "{}: [postfix] {name}: no destination uses transport `{prefix}`; it has no effect",
                    self.file
                ));
                continue;
            }
            let candidates: Vec<String> =
                transports.iter().map(|t| format!("{t}_{tail}")).collect();
            return Err(self.err(
                ("postfix", None, name),
                format!(
                    "`{prefix}` is not a transport of this scenario (transports: {}){}",
                    transports.join(", "),
                    did_you_mean(name, candidates.iter().map(String::as_str))
                ),
            ));
        }
        Ok(())
    }

    fn master(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
        transports: &[String],
    ) -> Result<BTreeMap<String, Option<u32>>, InputError> {
        let mut out = BTreeMap::new();
        for (service, value) in table {
            let at = ("master", None, service.as_str());
            if !transports.contains(service) && service != SMTPD_SERVICE {
                return Err(self.err(
                    at,
                    format!(
                        "not smtpd nor a delivery transport of this scenario (transports: {}){}",
                        transports.join(", "),
                        did_you_mean(
                            service,
                            transports.iter().map(String::as_str).chain([SMTPD_SERVICE])
                        )
                    ),
                ));
            }
            let text = value.as_text();
            // `-` stays `-`: it means default_process_limit as of the latest reload.
            let maxproc = if text.trim() == "-" {
                None
            } else {
                Some(text.trim().parse::<u32>().map_err(|_| {
                    self.err(at, format!("`{text}`: maxproc is a non-negative integer, `-` (default_process_limit) or 0 (unlimited)"))
                })?)
            };
            out.insert(service.clone(), maxproc);
        }
        Ok(out)
    }

    fn latency(&self, at: At<'_>, value: &toml::Value) -> Result<Latency, InputError> {
        let (table, index, key) = at;
        let sub = |k: &str| -> Option<&toml::Value> { value.get(k) };
        let dur = |k: &str| -> Result<Time, InputError> {
            let v = sub(k).ok_or_else(|| self.err(at, format!("missing `{k}` in `{key}`")))?;
            let s = v.as_str().ok_or_else(|| {
                self.err(
                    at,
                    format!("`{key}.{k}` must be a duration string like \"200ms\""),
                )
            })?;
            self.duration((table, index, key), s, false)
        };
        match value {
            toml::Value::String(s) => Ok(Latency::Fixed(self.duration(at, s, false)?)),
            toml::Value::Table(t) => {
                let allowed = ["dist", "mean", "sd", "min", "max", "value"];
                if let Some(bad) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
                    return Err(self.err(
                        at,
                        format!("unknown key `{bad}` (accepted: dist, mean, sd, min, max, value){}", did_you_mean(bad, allowed)),
                    ));
                }
                let dist = match t.get("dist") {
                    Some(toml::Value::String(s)) => s.as_str(),
                    Some(_) => return Err(self.err(at, "`dist` must be a string".into())),
                    None if t.contains_key("sd") => "lognormal",
                    None if t.contains_key("min") => "uniform",
                    None if t.contains_key("value") => "fixed",
                    None => "exponential",
                };
                let lat = match dist {
                    "fixed" => Latency::Fixed(dur("value")?),
                    "uniform" => {
                        let (min, max) = (dur("min")?, dur("max")?);
                        if min > max {
                            return Err(self.err(at, "uniform latency needs min <= max".into()));
                        }
                        Latency::Uniform { min, max }
                    }
                    "exponential" => Latency::Exponential { mean: dur("mean")? },
                    "lognormal" => {
                        let (mean, sd) = (dur("mean")?, dur("sd")?);
                        if mean <= 0 {
                            return Err(self.err(at, "a lognormal latency needs a positive mean".into()));
                        }
                        Latency::LogNormal { mean, sd }
                    }
                    other => {
                        return Err(self.err(
                            at,
                            format!(
                                "unknown distribution `{other}` (accepted: fixed, uniform, exponential, lognormal){}",
                                did_you_mean(other, ["fixed", "uniform", "exponential", "lognormal"])
                            ),
                        ));
                    }
                };
                Ok(lat)
            }
            _ => Err(self.err(
                at,
                "a latency is a duration (\"200ms\") or a table such as { mean = \"200ms\", sd = \"100ms\" } or { dist = \"exponential\", mean = \"1s\" }".into(),
            )),
        }
    }

    fn probability(&self, at: At<'_>, value: Option<f64>) -> Result<f64, InputError> {
        let p = value.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&p) {
            return Err(self.err(
                at,
                format!("`{p}` is not a probability: write a number from 0 to 1"),
            ));
        }
        Ok(p)
    }

    fn destination(
        &self,
        i: usize,
        d: &raw::Destination,
        transports: &[String],
        before: &[DestinationSpec],
    ) -> Result<DestinationSpec, InputError> {
        let at = |k| ("destination", Some(i), k);
        let domain = d.domain.trim().to_ascii_lowercase();
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(self.err(
                at("domain"),
                "must be a domain name such as \"example.com\"".into(),
            ));
        }
        if domain == LOCAL_DESTINATION {
            return Err(self.err(
                at("domain"),
                "\"local\" is reserved for local delivery of notices".into(),
            ));
        }
        if domain == resolve_world::DNS_TARGET {
            return Err(self.err(
                at("domain"),
                "\"dns\" is reserved: a [[fault]] with target = \"dns\" means the resolver".into(),
            ));
        }
        if before.iter().any(|b| b.domain == domain) {
            return Err(self.err(at("domain"), format!("`{domain}` is defined twice")));
        }
        let transport_name = d.transport.as_deref().unwrap_or("smtp");
        let transport = transports
            .iter()
            .position(|t| t == transport_name)
            .unwrap_or(0);
        let latency = match &d.latency {
            Some(v) => self.latency(at("latency"), v)?,
            None => Latency::Fixed(500 * crate::engine::time::MILLISECOND),
        };
        let tempfail = self.probability(at("tempfail"), d.tempfail)?;
        let permfail = self.probability(at("permfail"), d.permfail)?;
        if tempfail + permfail > 1.0 {
            return Err(self.err(
                at("permfail"),
                "tempfail + permfail must not exceed 1".into(),
            ));
        }
        let mut spec = DestinationSpec {
            tempfail,
            permfail,
            ..DestinationSpec::accepting(&domain, transport, Phases::transaction_only(latency))
        };
        self.remote(i, d, &mut spec)?;
        self.shared_hosts(i, d, &spec, before)?;
        Ok(spec)
    }

    fn traffic(
        &self,
        i: usize,
        t: &raw::Traffic,
        dests: &[DestinationSpec],
    ) -> Result<TrafficStream, InputError> {
        let at = |k| ("traffic", Some(i), k);
        let find = |name: &str| -> Result<usize, InputError> {
            let name = name.trim().to_ascii_lowercase();
            dests.iter().position(|d| d.domain == name).ok_or_else(|| {
                self.err(
                    at("to"),
                    format!(
                        "no [[destination]] has domain = \"{name}\"{}",
                        did_you_mean(&name, dests.iter().map(|d| d.domain.as_str()))
                    ),
                )
            })
        };
        let to = match &t.to {
            toml::Value::String(s) => vec![(find(s)?, 1.0)],
            toml::Value::Table(map) => {
                let mut v = Vec::new();
                for (name, w) in map {
                    let w = w
                        .as_float()
                        .or_else(|| w.as_integer().map(|i| i as f64))
                        .unwrap_or(f64::NAN);
                    if !(w.is_finite() && w > 0.0) {
                        return Err(self.err(
                            at("to"),
                            format!("the weight of `{name}` must be a positive number"),
                        ));
                    }
                    v.push((find(name)?, w));
                }
                if v.is_empty() {
                    return Err(self.err(at("to"), "names no destination".into()));
                }
                v
            }
            _ => {
                return Err(self.err(
                    at("to"),
                    "is a domain (\"d1.test\") or a weighted table { \"a.test\" = 3, \"b.test\" = 1 }".into(),
                ));
            }
        };
        let arrivals = match t.arrivals.as_deref().unwrap_or("poisson") {
            "poisson" => ArrivalProcess::Poisson,
            "uniform" => ArrivalProcess::Uniform,
            "burst" => ArrivalProcess::Burst,
            other => {
                return Err(self.err(
                    at("arrivals"),
                    format!(
                        "`{other}` is not an arrival process (accepted: poisson, uniform, burst){}",
                        did_you_mean(other, ["poisson", "uniform", "burst"])
                    ),
                ));
            }
        };
        let rate = match &t.rate {
            Some(r) => units::parse_rate(r).map_err(|m| self.err(at("rate"), m))?,
            None if arrivals == ArrivalProcess::Burst => 0.0,
            None => {
                return Err(self.err(
                    at("rate"),
                    "missing: write e.g. rate = \"50/s\" (or arrivals = \"burst\")".into(),
                ));
            }
        };
        if let Some(m) = t.messages {
            if m == 0 || m > MAX_MESSAGES_PER_STREAM {
                return Err(self.err(
                    at("messages"),
                    format!("`{m}` messages: give 1 to {MAX_MESSAGES_PER_STREAM}"),
                ));
            }
        } else if arrivals == ArrivalProcess::Burst {
            return Err(self.err(at("messages"), "a burst needs a number of messages".into()));
        }
        let start = match &t.start {
            Some(s) => self.duration(at("start"), s, false)?,
            None => 0,
        };
        let stop = match &t.stop {
            Some(s) => {
                let stop = self.duration(at("stop"), s, false)?;
                if stop <= start {
                    return Err(self.err(at("stop"), "must be after `start`".into()));
                }
                Some(stop)
            }
            None => None,
        };
        let recipients = t.recipients.unwrap_or(1);
        if recipients == 0 || recipients > 100_000 {
            return Err(self.err(
                at("recipients"),
                format!("`{recipients}`: give 1 to 100000 recipients per message"),
            ));
        }
        let submit = match t.submit.as_deref().unwrap_or("smtp") {
            "smtp" => Submit::Smtp,
            "sendmail" => Submit::Sendmail,
            other => {
                return Err(self.err(
                    at("submit"),
                    format!(
                        "`{other}` is not a submission path (accepted: smtp, sendmail){}",
                        did_you_mean(other, ["smtp", "sendmail"])
                    ),
                ));
            }
        };
        let sender = t
            .from
            .clone()
            .unwrap_or_else(|| "sender@example.org".into());
        if sender.is_empty() || sender.contains(|c: char| c.is_whitespace() || c == ',' || c == '"')
        {
            return Err(self.err(
                at("from"),
                "must be an address without spaces, commas or quotes".into(),
            ));
        }
        let size = match &t.size {
            Some(v) => self.size_dist(at("size"), v)?,
            None => SizeDist::Fixed(10_000),
        };
        let retry_setting = |key: &'static str, value: &Option<String>, default: Time| match value {
            Some(text) => {
                let d = self.duration(at(key), text, false)?;
                if d <= 0 {
                    return Err(self.err(at(key), "must be positive".into()));
                }
                Ok(d)
            }
            None => Ok(default),
        };
        let sender_retry = retry_setting("sender_retry", &t.sender_retry, 300 * SECOND)?;
        let receive = match &t.receive {
            Some(v) => self.latency(at("receive"), v)?,
            None => Latency::Fixed(0),
        };
        let sender_lifetime =
            retry_setting("sender_lifetime", &t.sender_lifetime, 5 * 86_400 * SECOND)?;
        Ok(TrafficStream {
            to,
            messages: t.messages,
            rate,
            arrivals,
            start,
            stop,
            recipients,
            submit,
            sender,
            size,
            sender_retry,
            sender_lifetime,
            receive,
            replay: None,
        })
    }

    /// An open stream must not produce more than a closed one may have, and a closed stream
    /// that no `stop` cuts short must finish arriving within the clock's range.
    fn check_volume(
        &self,
        i: usize,
        t: &TrafficStream,
        rate: &str,
        global_stop: Option<Time>,
    ) -> Result<(), InputError> {
        if t.arrivals == ArrivalProcess::Burst {
            return Ok(());
        }
        let at = ("traffic", Some(i), "rate");
        let rate = rate.trim();
        let stop = match (t.stop, global_stop) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (t.messages, stop) {
            (None, Some(stop)) => {
                let seconds = (stop - t.start).max(0) as f64 / SECOND as f64;
                let expected = t.rate * seconds;
                if expected > MAX_MESSAGES_PER_STREAM as f64 {
                    return Err(self.err(
                        at,
                        format!(
                            "`{rate}` until the stop makes about {expected:.3e} messages; a stream sends at most {MAX_MESSAGES_PER_STREAM}: lower the rate, stop earlier, or give `messages`"
                        ),
                    ));
                }
            }
            (Some(n), None) => {
                let last = t.start as f64 + n as f64 / t.rate * SECOND as f64;
                if last > units::MAX_DURATION as f64 {
                    return Err(self.err(
                        at,
                        format!(
                            "at `{rate}`, {n} messages keep arriving for about {:.0} years, beyond the clock's {}: give a higher rate, fewer messages or a `stop`",
                            last / (365.0 * 86_400.0 * SECOND as f64),
                            units::MAX_DURATION_TEXT
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The finest `sample` step.
pub const MIN_SAMPLE: Time = MILLISECOND;

/// The most rows `queues.csv` may get from `stop` / `sample` (each is kept in memory for the
/// plot: 10 million rows are about 500 MB).
pub const MAX_SAMPLE_ROWS: i64 = 10_000_000;

/// A stream of more messages than this is almost certainly a typo (and would not fit the
/// run in memory for its per-message output anyway).
pub const MAX_MESSAGES_PER_STREAM: u64 = 1_000_000_000;

fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Splits `smtp_destination_concurrency_limit` into ("smtp", "destination_concurrency_limit").
fn transport_tail(name: &str) -> Option<(&str, &str)> {
    params::PER_TRANSPORT_TAILS.iter().find_map(|tail| {
        let prefix = name.strip_suffix(tail)?.strip_suffix('_')?;
        (!prefix.is_empty()).then_some((prefix, *tail))
    })
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match locate::near_miss(word, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

fn default_text(name: &str) -> &'static str {
    params::GLOBAL
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, d)| *d)
        .unwrap_or("0")
}

fn global_value(values: &BTreeMap<String, Value>, name: &str) -> Value {
    if let Some(v) = values.get(name) {
        return *v;
    }
    let kind = params::GLOBAL
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
        .unwrap_or(Kind::Int { min: 0, max: 0 });
    params::parse_value(kind, default_text(name)).unwrap_or(Value::Int(0))
}

/// A yes/no parameter.
fn global_bool(values: &BTreeMap<String, Value>, name: &str) -> bool {
    matches!(global_value(values, name), Value::Bool(true))
}

/// A time (seconds) or integer parameter.
fn global_seconds(values: &BTreeMap<String, Value>, name: &str) -> i64 {
    match global_value(values, name) {
        Value::Seconds(s) | Value::Int(s) => s,
        _ => 0,
    }
}

/// Resolves `<transport>_<tail>`, falling back to `default_<tail>` (or the bare
/// `initial_destination_concurrency`), with the `local` transport's own built-in defaults.
/// smtpd's maxproc: its `[master]` entry, or `-` (default_process_limit).
fn smtpd_maxproc(maxprocs: &BTreeMap<String, Option<u32>>, default_process_limit: u32) -> u32 {
    maxprocs
        .get(SMTPD_SERVICE)
        .copied()
        .flatten()
        .unwrap_or(default_process_limit)
}

fn transport_config(
    name: &str,
    values: &BTreeMap<String, Value>,
    maxprocs: &BTreeMap<String, Option<u32>>,
    default_process_limit: u32,
) -> TransportConfig {
    let get = |tail: &str, fallback: &str| -> Value {
        if let Some(v) = values.get(&format!("{name}_{tail}")) {
            return *v;
        }
        if name == "local" {
            match tail {
                "destination_concurrency_limit" => return Value::Int(2),
                "destination_recipient_limit" => return Value::Int(1),
                _ => {}
            }
        }
        global_value(values, fallback)
    };
    let int = |v: Value| match v {
        Value::Int(i) | Value::Seconds(i) => i,
        _ => 0,
    };
    let feedback = |v: Value| match v {
        Value::Feedback(f) => f,
        _ => Feedback::ONE,
    };
    let rate_delay = int(get(
        "destination_rate_delay",
        "default_destination_rate_delay",
    ));
    let mut limit = i32::try_from(int(get(
        "destination_concurrency_limit",
        "default_destination_concurrency_limit",
    )))
    .unwrap_or(i32::MAX);
    if rate_delay > 0 {
        limit = 1; // qmgr_transport_create: a rate delay forces concurrency 1
    }
    let mut initial = i32::try_from(int(get(
        "initial_destination_concurrency",
        "initial_destination_concurrency",
    )))
    .unwrap_or(1);
    if limit > 0 && initial > limit {
        initial = limit;
    }
    TransportConfig {
        name: name.to_string(),
        maxproc: maxprocs
            .get(name)
            .copied()
            .flatten()
            .unwrap_or(default_process_limit),
        dest_concurrency_limit: limit,
        initial_concurrency: initial,
        recipient_limit: u32::try_from(int(get(
            "destination_recipient_limit",
            "default_destination_recipient_limit",
        )))
        .unwrap_or(0),
        positive_feedback: feedback(get(
            "destination_concurrency_positive_feedback",
            "default_destination_concurrency_positive_feedback",
        )),
        negative_feedback: feedback(get(
            "destination_concurrency_negative_feedback",
            "default_destination_concurrency_negative_feedback",
        )),
        failed_cohort_limit: i32::try_from(int(get(
            "destination_concurrency_failed_cohort_limit",
            "default_destination_concurrency_failed_cohort_limit",
        )))
        .unwrap_or(1),
        rate_delay,
    }
}
