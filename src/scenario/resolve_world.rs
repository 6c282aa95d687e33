//! Checking the keys that describe the world beyond our Postfix: a destination's SMTP phase
//! timings, MX hosts, greylisting, limits and content scoring; the `[[fault]]` timeline; the
//! SMTP client's `[postfix]` parameters. The checked types are in `remote.rs`, the syntax in
//! the README ("The world").

use super::params::{self, Value};
use super::remote::{
    ConnectionCacheConfig, Excess, FaultKind, FaultSpec, FaultTarget, GreylistSpec,
    MaxConnectionsSpec, MxHost, RateLimitSpec, RateReply, Site, SmtpClientConfig, SpamSpec, Stage,
};
use super::{
    At, DestinationSpec, LOCAL_DESTINATION, LOCAL_TRANSPORT, Resolver, did_you_mean, global_bool,
    global_seconds, raw, units,
};
use crate::engine::time::{SECOND, Time, write_seconds};
use crate::error::InputError;
use std::collections::BTreeMap;

type Table = toml::map::Map<String, toml::Value>;

/// The fault target meaning the resolver itself; reserved as a domain and host name.
pub const DNS_TARGET: &str = "dns";

const DAY: i64 = 86_400;

/// postgrey(8) defaults: `--delay=300`, `--retry-window=2` (days), `--max-age=35` (days),
/// `--auto-whitelist-clients=5`.
const POSTGREY: GreylistSpec = GreylistSpec {
    delay: 300,
    retry_window: 2 * DAY,
    lifetime: 35 * DAY,
    auto_whitelist: 5,
};

/// The stub resolver's cost of a lookup that never answers: glibc's `timeout:5` ×
/// `attempts:2` (resolv.conf(5) defaults, one nameserver).
const DEFAULT_DNS_TIMEOUT: Time = 10 * SECOND;

/// The fault target naming the content filter.
const FILTER_TARGET: &str = "filter";

const FAULT_KINDS: &[&str] = &[
    "refuse",
    "blackhole",
    "mute",
    "tempfail",
    "reject",
    "dns_servfail",
    "dns_timeout",
    "dns_nxdomain",
    "slow",
    "hang",
    "disk_full",
    "transport_down",
    "load",
];
const STAGES: &[&str] = &["greeting", "mail", "rcpt", "data"];

/// The destination keys that describe an SMTP server, none of which a `local` destination
/// can have.
const SMTP_KEYS: &[&str] = &[
    "dns",
    "connect",
    "greeting",
    "rcpt",
    "mx",
    "greylist",
    "rate_limit",
    "max_connections",
    "spam",
    "unknown_recipients",
];

/// Letters, digits, `.`, `-`, `_` (already lowercased), like a destination's domain.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
}

/// `t` as seconds for messages (`300s`, `2.5s`).
fn secs_text(t: Time) -> String {
    let mut s = String::new();
    write_seconds(&mut s, t);
    s.push('s');
    s
}

/// The largest `max_connections` limit: each host keeps one slot per connection and scans
/// them per connection, so 4294967295 would take 32 GiB (the fuzzer's out-of-memory abort).
/// A server taking more than this from one client is, for the model, unlimited.
pub const MAX_CONNECTION_LIMIT: u32 = 10_000;

/// At most this many names in "known names" lists, so an error stays one readable line.
const LISTED: usize = 20;

fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return "none".into();
    }
    let mut s = names
        .iter()
        .take(LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    s
}

/// What one MX entry may set for its host alone; the rest belongs to the domain (DNS,
/// which recipients exist).
const HOST_KEYS: &[&str] = &[
    "latency",
    "connect",
    "greeting",
    "rcpt",
    "tempfail",
    "permfail",
    "greylist",
    "rate_limit",
    "max_connections",
    "spam",
];

fn is_local(d: &DestinationSpec) -> bool {
    d.transport == LOCAL_TRANSPORT
}

/// The SMTP destinations' MX host names, each once, in file order.
fn mx_hosts(dests: &[DestinationSpec]) -> Vec<&str> {
    let mut hosts: Vec<&str> = Vec::new();
    for m in dests.iter().filter(|d| !is_local(d)).flat_map(|d| &d.mx) {
        if !hosts.contains(&m.host.as_str()) {
            hosts.push(&m.host);
        }
    }
    hosts
}

impl Resolver<'_> {
    /// Unknown keys of an inline table are errors with a near miss, like `latency`'s.
    fn known_keys(
        &self,
        at: At<'_>,
        within: &str,
        t: &Table,
        accepted: &[&str],
    ) -> Result<(), InputError> {
        match t.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(bad) => Err(self.err(
                at,
                format!(
                    "unknown key `{bad}` in {within} (accepted: {}){}",
                    accepted.join(", "),
                    did_you_mean(bad, accepted.iter().copied())
                ),
            )),
            None => Ok(()),
        }
    }

    fn sub_duration(&self, at: At<'_>, t: &Table, name: &str) -> Result<Option<Time>, InputError> {
        match t.get(name) {
            None => Ok(None),
            Some(toml::Value::String(s)) => units::parse_duration(s, false)
                .map(Some)
                .map_err(|m| self.err_in(at, name, m)),
            Some(v) => Err(self.err_in(
                at,
                name,
                format!(
                    "must be a duration string such as \"300s\", not a {}",
                    v.type_str()
                ),
            )),
        }
    }

    fn sub_int(
        &self,
        at: At<'_>,
        t: &Table,
        name: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, InputError> {
        match t.get(name) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (min..=max).contains(n) => Ok(Some(*n)),
            Some(v) if max == i64::MAX => Err(self.err_in(
                at,
                name,
                format!("`{v}`: give an integer of at least {min}"),
            )),
            Some(v) => Err(self.err_in(
                at,
                name,
                format!("`{v}`: give an integer from {min} to {max}"),
            )),
        }
    }

    fn sub_probability(&self, at: At<'_>, t: &Table, name: &str) -> Result<f64, InputError> {
        let Some(v) = t.get(name) else {
            return Ok(0.0);
        };
        match v {
            toml::Value::Float(p) if (0.0..=1.0).contains(p) => Ok(*p),
            toml::Value::Integer(p @ (0 | 1)) => Ok(*p as f64),
            _ => Err(self.err_in(
                at,
                name,
                format!("`{v}` is not a probability: write a number from 0 to 1"),
            )),
        }
    }

    /// Fills the remote-world fields of destination `i` (`spec` has the core ones).
    pub(super) fn remote(
        &self,
        i: usize,
        d: &raw::Destination,
        spec: &mut DestinationSpec,
    ) -> Result<(), InputError> {
        let at = |k: &'static str| ("destination", Some(i), k);
        if is_local(spec) {
            let given = [
                d.dns.is_some(),
                d.connect.is_some(),
                d.greeting.is_some(),
                d.rcpt.is_some(),
                d.mx.is_some(),
                d.greylist.is_some(),
                d.rate_limit.is_some(),
                d.max_connections.is_some(),
                d.spam.is_some(),
                d.unknown_recipients.is_some(),
            ];
            if let Some((&key, _)) = SMTP_KEYS.iter().zip(given).find(|(_, g)| *g) {
                return Err(self.err(
                    at(key),
                    format!(
                        "a destination with transport = \"local\" is delivered by local(8), not over SMTP: `{key}` does not apply (accepted here: latency, tempfail, permfail)"
                    ),
                ));
            }
            return Ok(());
        }
        let phase = |key: &'static str, v: &Option<toml::Value>| match v {
            Some(v) => self.latency(at(key), v).map(Some),
            None => Ok(None),
        };
        if let Some(l) = phase("dns", &d.dns)? {
            spec.phases.dns = l;
        }
        if let Some(l) = phase("connect", &d.connect)? {
            spec.phases.connect = l;
        }
        if let Some(l) = phase("greeting", &d.greeting)? {
            spec.phases.greeting = l;
        }
        if let Some(l) = phase("rcpt", &d.rcpt)? {
            spec.phases.rcpt = l;
        }
        if let Some(v) = &d.greylist {
            spec.greylist = self.greylist(at("greylist"), v)?;
        }
        if let Some(v) = &d.rate_limit {
            spec.rate_limit = Some(self.rate_limit(at("rate_limit"), v)?);
        }
        if let Some(v) = &d.max_connections {
            spec.max_connections = Some(self.max_connections(at("max_connections"), v)?);
        }
        if let Some(v) = &d.spam {
            spec.spam = self.spam(at("spam"), v)?;
        }
        spec.unknown_recipients =
            self.probability(at("unknown_recipients"), d.unknown_recipients)?;
        // Last: an MX entry's own keys override the destination's, now complete.
        if let Some(v) = &d.mx {
            spec.mx = self.mx(at("mx"), v, spec)?;
        }
        Ok(())
    }

    /// A host listed by several destinations is one server, whose behaviour is that of its
    /// first listing (the world builds one server per host name). A later listing's own
    /// server keys would be ignored for that host: refuse those that say something else.
    /// (`unknown_recipients` is the domain's and `dns` the lookup's: both always apply.)
    pub(super) fn shared_hosts(
        &self,
        i: usize,
        d: &raw::Destination,
        spec: &DestinationSpec,
        before: &[DestinationSpec],
    ) -> Result<(), InputError> {
        if is_local(spec) {
            return Ok(());
        }
        // Server keys set on the destination itself, as written.
        let dest_keys: Vec<&'static str> = [
            ("latency", d.latency.is_some()),
            ("connect", d.connect.is_some()),
            ("greeting", d.greeting.is_some()),
            ("rcpt", d.rcpt.is_some()),
            ("tempfail", d.tempfail.is_some()),
            ("permfail", d.permfail.is_some()),
            ("greylist", d.greylist.is_some()),
            ("rate_limit", d.rate_limit.is_some()),
            ("max_connections", d.max_connections.is_some()),
            ("spam", d.spam.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect();
        let entries: Vec<Option<&Table>> = match d.mx.as_ref() {
            Some(toml::Value::Array(a)) => a.iter().map(|e| e.as_table()).collect(),
            _ => Vec::new(),
        };
        // This destination's hosts: its MX entries, or the domain itself.
        let own: Vec<(Option<usize>, &str, &DestinationSpec)> = if spec.mx.is_empty() {
            vec![(None, spec.domain.as_str(), spec)]
        } else {
            spec.mx
                .iter()
                .enumerate()
                .map(|(n, m)| {
                    (
                        Some(n),
                        m.host.as_str(),
                        m.behaviour.as_deref().unwrap_or(spec),
                    )
                })
                .collect()
        };
        for (n, host, wanted) in own {
            let Some((j, owner)) = first_listing(before, host) else {
                continue;
            };
            let entry_keys: Vec<&str> = n
                .and_then(|n| entries.get(n).copied().flatten())
                .map(|t| {
                    t.keys()
                        .map(String::as_str)
                        .filter(|k| HOST_KEYS.contains(k))
                        .collect()
                })
                .unwrap_or_default();
            let differs = |key: &str| !same_server_key(key, wanted, owner);
            let first = before[j].domain.as_str();
            if let Some(key) = entry_keys.iter().copied().find(|k| differs(k)) {
                return Err(self.err(
                    ("destination", Some(i), "mx"),
                    format!(
                        "mx entry {}: `{host}` is also an MX host of {first} ([[destination]] #{}), which lists it first and so decides how that server behaves: its `{key}` here would be ignored; give the host's own keys in {first}'s mx entry for it",
                        n.map_or(0, |n| n + 1),
                        j + 1
                    ),
                ));
            }
            if let Some(key) = dest_keys
                .iter()
                .copied()
                .find(|k| !entry_keys.contains(k) && differs(k))
            {
                return Err(self.err(
                    ("destination", Some(i), key),
                    format!(
                        "`{host}`, a host of {}, is also an MX host of {first} ([[destination]] #{}), which lists it first and so decides how that server behaves: this `{key}` would be ignored there; set it at {first}, give this destination a host of its own, or set the key only in the mx entries of its own hosts",
                        spec.domain,
                        j + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The behaviour keys of one MX entry, applied over its destination's `base`; `None`
    /// when the entry has none.
    fn host_behaviour(
        &self,
        at: At<'_>,
        entry: &str,
        t: &Table,
        base: &DestinationSpec,
    ) -> Result<Option<Box<DestinationSpec>>, InputError> {
        if !t.keys().any(|k| HOST_KEYS.contains(&k.as_str())) {
            return Ok(None);
        }
        let mut spec = base.clone();
        spec.mx.clear();
        let within = |e: InputError| InputError {
            message: format!("{entry}: {}", e.message),
            ..e
        };
        for (key, v) in t {
            match key.as_str() {
                "latency" => spec.phases.transaction = self.latency(at, v).map_err(within)?,
                "connect" => spec.phases.connect = self.latency(at, v).map_err(within)?,
                "greeting" => spec.phases.greeting = self.latency(at, v).map_err(within)?,
                "rcpt" => spec.phases.rcpt = self.latency(at, v).map_err(within)?,
                "tempfail" | "permfail" => {
                    let p = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
                    let p = self.probability(at, p.or(Some(f64::NAN))).map_err(within)?;
                    if key == "tempfail" {
                        spec.tempfail = p;
                    } else {
                        spec.permfail = p;
                    }
                }
                "greylist" => spec.greylist = self.greylist(at, v).map_err(within)?,
                "rate_limit" => spec.rate_limit = Some(self.rate_limit(at, v).map_err(within)?),
                "max_connections" => {
                    spec.max_connections = Some(self.max_connections(at, v).map_err(within)?)
                }
                "spam" => spec.spam = self.spam(at, v).map_err(within)?,
                _ => {}
            }
        }
        if spec.tempfail + spec.permfail > 1.0 {
            return Err(self.err(
                at,
                format!("{entry}: tempfail + permfail must not exceed 1"),
            ));
        }
        Ok(Some(Box::new(spec)))
    }

    fn mx(
        &self,
        at: At<'_>,
        v: &toml::Value,
        base: &DestinationSpec,
    ) -> Result<Vec<MxHost>, InputError> {
        const SHAPE: &str = "mx is a list of hosts such as [ { host = \"mx1.example.com\", preference = 10 }, { host = \"mx2.example.com\", preference = 20 } ]";
        let toml::Value::Array(entries) = v else {
            return Err(self.err(at, SHAPE.into()));
        };
        if entries.is_empty() {
            return Err(self.err(
                at,
                "lists no host; leave `mx` out for a domain without MX records (the domain itself is then the only host)".into(),
            ));
        }
        let mut out: Vec<MxHost> = Vec::new();
        for (n, e) in entries.iter().enumerate() {
            let entry = format!("mx entry {}", n + 1);
            let toml::Value::Table(t) = e else {
                return Err(self.err(at, format!("{entry} is not a table: {SHAPE}")));
            };
            let accepted: Vec<&str> = ["host", "preference"]
                .into_iter()
                .chain(HOST_KEYS.iter().copied())
                .collect();
            self.known_keys(at, &entry, t, &accepted)?;
            let host = match t.get("host") {
                Some(toml::Value::String(s)) => s.trim().to_ascii_lowercase(),
                Some(_) => {
                    return Err(self.err(at, format!("{entry}: `host` must be a host name string")));
                }
                None => {
                    return Err(self.err(
                        at,
                        format!(
                            "{entry} has no `host`: write {{ host = \"mx1.example.com\", preference = 10 }}"
                        ),
                    ));
                }
            };
            if !is_host_name(&host) {
                return Err(self.err(
                    at,
                    format!(
                        "{entry}: `{host}` is not a host name (letters, digits, `.`, `-`, `_`)"
                    ),
                ));
            }
            if host == DNS_TARGET || host == LOCAL_DESTINATION {
                return Err(self.err(
                    at,
                    format!(
                        "{entry}: `{host}` is reserved (a [[fault]] target = \"dns\" means the resolver, \"local\" means local delivery)"
                    ),
                ));
            }
            let preference = match t.get("preference") {
                Some(toml::Value::Integer(p)) => {
                    u32::try_from(*p).ok().filter(|p| *p <= u32::from(u16::MAX))
                }
                Some(_) => None,
                None => {
                    return Err(self.err(
                        at,
                        format!(
                            "{entry} (`{host}`) has no `preference`: give one from 0 to 65535 (lower is tried first; equal preferences in random order)"
                        ),
                    ));
                }
            };
            let Some(preference) = preference else {
                return Err(self.err(
                    at,
                    format!("{entry} (`{host}`): `preference` must be an integer from 0 to 65535"),
                ));
            };
            if out.iter().any(|m| m.host == host) {
                return Err(self.err(
                    at,
                    format!("{entry}: `{host}` is listed twice in this destination's mx"),
                ));
            }
            let behaviour = self.host_behaviour(at, &entry, t, base)?;
            out.push(MxHost {
                host,
                preference,
                behaviour,
            });
        }
        Ok(out)
    }

    fn greylist(&self, at: At<'_>, v: &toml::Value) -> Result<Option<GreylistSpec>, InputError> {
        let mut g = POSTGREY;
        // In the shorthand there are no sub-keys to name; errors name `greylist` itself.
        let mut table_form = false;
        let whole = |name: &str, t: Time, table_form: bool| -> Result<i64, InputError> {
            if t % SECOND != 0 {
                let m = format!("`{}`: postgrey counts whole seconds", secs_text(t));
                return Err(if table_form {
                    self.err_in(at, name, m)
                } else {
                    self.err(at, m)
                });
            }
            Ok(t / SECOND)
        };
        match v {
            toml::Value::Boolean(false) => return Ok(None),
            toml::Value::Boolean(true) => {}
            toml::Value::String(s) => {
                g.delay = whole("delay", self.duration(at, s, false)?, false)?;
            }
            toml::Value::Table(t) => {
                table_form = true;
                self.known_keys(
                    at,
                    "`greylist`",
                    t,
                    &["delay", "retry_window", "lifetime", "auto_whitelist"],
                )?;
                for (name, field) in [
                    ("delay", &mut g.delay),
                    ("retry_window", &mut g.retry_window),
                    ("lifetime", &mut g.lifetime),
                ] {
                    if let Some(d) = self.sub_duration(at, t, name)? {
                        *field = whole(name, d, true)?;
                    }
                }
                if let Some(n) = self.sub_int(at, t, "auto_whitelist", 0, i64::from(u32::MAX))? {
                    g.auto_whitelist = u32::try_from(n).unwrap_or(u32::MAX);
                }
            }
            _ => {
                return Err(self.err(
                    at,
                    "greylist is true (postgrey's defaults), false, a delay such as \"300s\", or a table { delay = \"300s\", retry_window = \"2d\", lifetime = \"35d\", auto_whitelist = 5 }".into(),
                ));
            }
        }
        let complain = |name: &str, m: String| {
            if table_form {
                self.err_in(at, name, m)
            } else {
                self.err(at, m)
            }
        };
        if g.delay < 1 {
            return Err(complain("delay", "the delay must be at least 1s".into()));
        }
        if g.retry_window < g.delay {
            return Err(complain(
                "retry_window",
                format!(
                    "retry_window ({}s) is shorter than delay ({}s): no retry could ever pass; give retry_window >= delay{}",
                    g.retry_window,
                    g.delay,
                    if table_form {
                        ""
                    } else {
                        " in the table form { delay = \"…\", retry_window = \"…\" }"
                    }
                ),
            ));
        }
        if g.lifetime < g.retry_window {
            return Err(complain(
                "lifetime",
                format!(
                    "lifetime ({}s) is shorter than retry_window ({}s): entries would be forgotten while still waiting for their retry; give lifetime >= retry_window",
                    g.lifetime, g.retry_window
                ),
            ));
        }
        Ok(Some(g))
    }

    fn rate_limit(&self, at: At<'_>, v: &toml::Value) -> Result<RateLimitSpec, InputError> {
        let toml::Value::Table(t) = v else {
            return Err(self.err(
                at,
                "rate_limit is a table such as { messages = 100, connections = 20, per = \"1m\", reply = \"421\" }".into(),
            ));
        };
        self.known_keys(
            at,
            "`rate_limit`",
            t,
            &["messages", "connections", "per", "reply"],
        )?;
        let count = |name| -> Result<Option<u64>, InputError> {
            Ok(self
                .sub_int(at, t, name, 1, i64::MAX)?
                .and_then(|n| u64::try_from(n).ok()))
        };
        let messages = count("messages")?;
        let connections = count("connections")?;
        if messages.is_none() && connections.is_none() {
            return Err(self.err(
                at,
                "limits nothing: give `messages`, `connections` or both (how many are allowed per `per`)".into(),
            ));
        }
        let per = match self.sub_duration(at, t, "per")? {
            Some(p) if p > 0 => p,
            Some(_) => return Err(self.err_in(at, "per", "must be positive".into())),
            None => {
                return Err(self.err_in(
                    at,
                    "per",
                    "missing: write per = \"1m\" (the period over which the allowance refills)"
                        .into(),
                ));
            }
        };
        let reply = match t.get("reply") {
            None => RateReply::Greeting421,
            Some(r) => match reply_code(r).as_deref() {
                Some("421") => RateReply::Greeting421,
                Some("450") => RateReply::Rcpt450,
                _ => {
                    return Err(self.err_in(
                        at,
                        "reply",
                        format!(
                            "`{r}`: accepted \"421\" (421 at the greeting, the connection is closed) or \"450\" (450 to each RCPT)"
                        ),
                    ));
                }
            },
        };
        if reply == RateReply::Rcpt450 && messages.is_none() {
            return Err(self.err_in(
                at,
                "reply",
                "\"450\" answers messages over the limit, but no `messages` limit is given (connections over their limit always get 421)".into(),
            ));
        }
        Ok(RateLimitSpec {
            messages,
            connections,
            per,
            reply,
        })
    }

    pub(super) fn max_connections(
        &self,
        at: At<'_>,
        v: &toml::Value,
    ) -> Result<MaxConnectionsSpec, InputError> {
        let limit_of = |n: i64, sub: Option<&str>| -> Result<u32, InputError> {
            match u32::try_from(n) {
                Ok(l) if (1..=MAX_CONNECTION_LIMIT).contains(&l) => Ok(l),
                _ => {
                    let m = format!(
                        "`{n}`: the limit is a number of connections, at least 1 and at most {MAX_CONNECTION_LIMIT} (leave max_connections out for a server without a limit)"
                    );
                    Err(match sub {
                        Some(s) => self.err_in(at, s, m),
                        None => self.err(at, m),
                    })
                }
            }
        };
        let t = match v {
            toml::Value::Integer(n) => {
                return Ok(MaxConnectionsSpec {
                    limit: limit_of(*n, None)?,
                    excess: Excess::Reject421,
                });
            }
            toml::Value::Table(t) => t,
            _ => {
                return Err(self.err(
                    at,
                    "max_connections is a number (excess connections get 421) or a table { limit = 5, excess = \"421\" | \"backlog\" | \"mute\", backlog = 128 }".into(),
                ));
            }
        };
        self.known_keys(at, "`max_connections`", t, &["limit", "excess", "backlog"])?;
        let limit = match t.get("limit") {
            Some(toml::Value::Integer(n)) => limit_of(*n, Some("limit"))?,
            Some(other) => {
                return Err(self.err_in(
                    at,
                    "limit",
                    format!(
                        "`{other}`: the limit is a number of connections, at least 1 and at most {MAX_CONNECTION_LIMIT}"
                    ),
                ));
            }
            None => {
                return Err(self.err_in(
                    at,
                    "limit",
                    "missing: write limit = 5 (concurrent connections the server accepts)".into(),
                ));
            }
        };
        let backlog = self
            .sub_int(at, t, "backlog", 0, i64::from(u32::MAX))?
            .and_then(|n| u32::try_from(n).ok());
        let excess = match t.get("excess") {
            None => Excess::Reject421,
            Some(e) => match reply_code(e).as_deref() {
                Some("421") => Excess::Reject421,
                Some("backlog") => Excess::Backlog { length: backlog },
                Some("mute") => Excess::Mute,
                other => {
                    return Err(self.err_in(
                        at,
                        "excess",
                        format!(
                            "`{e}`: accepted \"421\" (greet with 421 and close), \"backlog\" (wait in the listen queue), \"mute\" (accept, never greet){}",
                            did_you_mean(other.unwrap_or_default(), ["421", "backlog", "mute"])
                        ),
                    ));
                }
            },
        };
        if backlog.is_some() && !matches!(excess, Excess::Backlog { .. }) {
            return Err(self.err_in(
                at,
                "backlog",
                "the listen queue length only applies with excess = \"backlog\"".into(),
            ));
        }
        Ok(MaxConnectionsSpec { limit, excess })
    }

    fn spam(&self, at: At<'_>, v: &toml::Value) -> Result<SpamSpec, InputError> {
        let toml::Value::Table(t) = v else {
            return Err(self.err(
                at,
                "spam is a table such as { tempfail = 0.02, reject = 0.01 } (probabilities per message and attempt)".into(),
            ));
        };
        self.known_keys(at, "`spam`", t, &["tempfail", "reject"])?;
        let tempfail = self.sub_probability(at, t, "tempfail")?;
        let reject = self.sub_probability(at, t, "reject")?;
        if tempfail + reject > 1.0 {
            return Err(self.err(at, "tempfail + reject must not exceed 1".into()));
        }
        Ok(SpamSpec { tempfail, reject })
    }

    /// The `[[fault]]` timeline, in file order; `dests` excludes the implicit local one.
    pub(super) fn faults(
        &self,
        faults: &[raw::Fault],
        dests: &[DestinationSpec],
        transports: &[String],
    ) -> Result<Vec<FaultSpec>, InputError> {
        let hosts = mx_hosts(dests);
        let mut out = Vec::new();
        for (i, f) in faults.iter().enumerate() {
            let at = |k| ("fault", Some(i), k);
            let Some(start) = &f.at else {
                return Err(self.err(
                    at("at"),
                    "missing: when the fault begins, e.g. at = \"1h\" (from the start of the run)"
                        .into(),
                ));
            };
            let start = self.duration(at("at"), start, false)?;
            let end = match &f.duration {
                None => Time::MAX,
                Some(s) => {
                    let length = self.duration(at("for"), s, false)?;
                    if length <= 0 {
                        return Err(self.err(
                            at("for"),
                            "must be positive; leave `for` out for a fault that lasts to the end of the run".into(),
                        ));
                    }
                    start
                        .checked_add(length)
                        .ok_or_else(|| self.err(at("for"), "is too long".into()))?
                }
            };
            let Some(kind_name) = &f.kind else {
                return Err(self.err(
                    at("kind"),
                    format!(
                        "missing: what goes wrong (accepted: {})",
                        FAULT_KINDS.join(", ")
                    ),
                ));
            };
            let kind = match kind_name.as_str() {
                "refuse" => FaultKind::Refuse,
                "blackhole" => FaultKind::Blackhole,
                "mute" => FaultKind::Mute,
                "tempfail" => {
                    FaultKind::Tempfail(self.stage(at("stage"), f.stage.as_deref(), "greeting")?)
                }
                "reject" => {
                    let stage = self.stage(at("stage"), f.stage.as_deref(), "mail")?;
                    if stage == Stage::Greeting {
                        return Err(self.err(
                            at("stage"),
                            "a 5xx greeting is handled by Postfix as a 4xx (smtp_skip_5xx_greeting = yes: the next MX is tried, or the mail is deferred and the destination throttled): write kind = \"tempfail\" with stage = \"greeting\"; reject takes mail, rcpt or data".into(),
                        ));
                    }
                    FaultKind::Reject(stage)
                }
                "dns_servfail" => FaultKind::DnsServfail,
                "dns_timeout" => {
                    let lookup = match &f.lookup {
                        None => DEFAULT_DNS_TIMEOUT,
                        Some(s) => {
                            let l = self.duration(at("lookup"), s, false)?;
                            if l <= 0 {
                                return Err(self.err(at("lookup"), "must be positive".into()));
                            }
                            l
                        }
                    };
                    FaultKind::DnsTimeout { lookup }
                }
                "dns_nxdomain" => FaultKind::DnsNxdomain,
                "disk_full" => FaultKind::DiskFull {
                    fill: self.fill(at("fill"), f.fill.as_ref())?,
                },
                "transport_down" => FaultKind::TransportDown,
                "hang" => FaultKind::Hang,
                "slow" | "load" => {
                    let factor = match f.factor {
                        Some(x) if x.is_finite() && x >= 1.0 => x,
                        Some(x) => {
                            return Err(self.err(
                                at("factor"),
                                format!(
                                    "`{x}`: a slowdown factor is a number ≥ 1 (2 = twice as slow)"
                                ),
                            ));
                        }
                        None => {
                            return Err(self.err(
                                at("factor"),
                                "missing: how many times slower, e.g. factor = 5".into(),
                            ));
                        }
                    };
                    if kind_name == "load" {
                        FaultKind::Load { factor }
                    } else {
                        FaultKind::Slow { factor }
                    }
                }
                other => {
                    return Err(self.err(
                        at("kind"),
                        format!(
                            "`{other}` is not a fault kind (accepted: {}){}",
                            FAULT_KINDS.join(", "),
                            did_you_mean(other, FAULT_KINDS.iter().copied())
                        ),
                    ));
                }
            };
            if f.stage.is_some() && !matches!(kind, FaultKind::Tempfail(_) | FaultKind::Reject(_)) {
                return Err(self.err(
                    at("stage"),
                    format!(
                        "only applies to kind = \"tempfail\" or \"reject\", not \"{kind_name}\""
                    ),
                ));
            }
            if f.lookup.is_some() && !matches!(kind, FaultKind::DnsTimeout { .. }) {
                return Err(self.err(
                    at("lookup"),
                    format!("only applies to kind = \"dns_timeout\", not \"{kind_name}\""),
                ));
            }
            if f.factor.is_some()
                && !matches!(kind, FaultKind::Slow { .. } | FaultKind::Load { .. })
            {
                return Err(self.err(
                    at("factor"),
                    format!("only applies to kind = \"slow\" or \"load\", not \"{kind_name}\""),
                ));
            }
            if f.fill.is_some() && !matches!(kind, FaultKind::DiskFull { .. }) {
                return Err(self.err(
                    at("fill"),
                    format!("only applies to kind = \"disk_full\", not \"{kind_name}\""),
                ));
            }
            let target = match kind {
                FaultKind::Load { .. } => match f.target.as_deref() {
                    None | Some("host") => FaultTarget::OurHost,
                    Some(other) => {
                        return Err(self.err(
                            at("target"),
                            format!("`{other}`: a load fault slows our own host; write target = \"host\" or leave it out"),
                        ));
                    }
                },
                FaultKind::DiskFull { .. } => match f.target.as_deref() {
                    None | Some("disk") => FaultTarget::Disk,
                    Some(other) => {
                        return Err(self.err(
                            at("target"),
                            format!("`{other}`: a disk_full fault fills our queue file system; write target = \"disk\" or leave it out"),
                        ));
                    }
                },
                FaultKind::TransportDown => {
                    let Some(name) = f.target.as_deref() else {
                        return Err(self.err(
                            at("target"),
                            format!(
                                "missing: the transport whose agents cannot start (transports: {})",
                                transports.join(", ")
                            ),
                        ));
                    };
                    match transports.iter().position(|t| t == name) {
                        Some(i) => FaultTarget::Transport(i),
                        None => {
                            return Err(self.err(
                                at("target"),
                                format!(
                                    "`{name}` is not a transport of this scenario (transports: {}){}",
                                    transports.join(", "),
                                    did_you_mean(name, transports.iter().map(String::as_str))
                                ),
                            ));
                        }
                    }
                }
                _ => {
                    let Some(target) = &f.target else {
                        return Err(self.err(
                            at("target"),
                            "missing: a [[destination]] domain, an MX host, or \"dns\" (the resolver)"
                                .into(),
                        ));
                    };
                    self.fault_target(at("target"), target, kind_name, dests, &hosts)?
                }
            };
            let fault = FaultSpec {
                kind,
                start,
                end,
                target,
            };
            if let Some(j) = out.iter().position(|o| contradicts(o, &fault, dests)) {
                let o = &out[j];
                let same_target = o.target == fault.target;
                let shared = match (&o.target, &fault.target) {
                    (FaultTarget::Domain(a), FaultTarget::Domain(b)) if !same_target => {
                        fault_hosts(&o.target, dests)
                            .into_iter()
                            .find(|h| fault_hosts(&fault.target, dests).contains(h))
                            .map(|h| {
                                format!(
                                    "{} and {} share the MX host {h}, and ",
                                    dests[*a].domain, dests[*b].domain
                                )
                            })
                    }
                    _ => None,
                };
                let on = match &o.target {
                    FaultTarget::Domain(a) => dests[*a].domain.clone(),
                    FaultTarget::Host(h) => h.clone(),
                    _ => "the resolver".into(),
                };
                let how = if fault_kind_name(o.kind) == fault_kind_name(fault.kind) {
                    match fault.kind {
                        FaultKind::Tempfail(_) | FaultKind::Reject(_) => "the same stage",
                        FaultKind::Slow { .. } => "the same factor",
                        FaultKind::DnsTimeout { .. } => "the same lookup",
                        _ => "the same kind",
                    }
                } else {
                    "the same kind"
                };
                return Err(self.err(
                    at("kind"),
                    format!(
                        "contradicts [[fault]] #{} ({} on {on} from {} to {}): {}while both are active only the first in file order shows{}; let one end before the other starts, or give both {how}",
                        j + 1,
                        fault_text(o.kind),
                        secs_text(o.start),
                        until_text(o.end),
                        shared.as_deref().unwrap_or(""),
                        if shared.is_some() { " there" } else { "" },
                    ),
                ));
            }
            out.push(fault);
        }
        self.hidden_domain_faults(&out, dests)?;
        Ok(out)
    }

    /// A host's own fault wins over its domain's ([`crate::world::faults`]), so a domain
    /// fault that host faults of other kinds cover on every one of the domain's hosts for
    /// all of its time never shows: refuse it, as it would be silently ignored.
    fn hidden_domain_faults(
        &self,
        faults: &[FaultSpec],
        dests: &[DestinationSpec],
    ) -> Result<(), InputError> {
        for (i, d) in faults.iter().enumerate() {
            let FaultTarget::Domain(x) = d.target else {
                continue;
            };
            if !is_connection_kind(d.kind) {
                continue;
            }
            let hosts = fault_hosts(&d.target, dests);
            let mut first_cover = None;
            let hidden = hosts.iter().all(|&host| {
                // The other-kind faults on this host, clipped to d's window, in time order.
                let mut spans: Vec<(Time, Time, usize)> = faults
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| {
                        matches!(&h.target, FaultTarget::Host(n) if n == host)
                            && is_connection_kind(h.kind)
                            && h.kind != d.kind
                    })
                    .map(|(j, h)| (h.start.max(d.start), h.end.min(d.end), j))
                    .filter(|(s, e, _)| s < e)
                    .collect();
                spans.sort_unstable();
                let mut covered = d.start;
                for &(s, e, j) in &spans {
                    if s > covered {
                        break;
                    }
                    first_cover.get_or_insert(j);
                    covered = covered.max(e);
                }
                covered >= d.end
            });
            if hidden && let Some(j) = first_cover {
                let host = match &faults[j].target {
                    FaultTarget::Host(n) => n.as_str(),
                    _ => "",
                };
                return Err(self.err(
                    ("fault", Some(i), "kind"),
                    format!(
                        "this {} on {} never shows: a fault on a host wins over one on its domain, and [[fault]] #{} ({} on {host}){} covers {} for all its time; let them overlap only in part, or leave the domain a host the fault reaches",
                        fault_text(d.kind),
                        dests[x].domain,
                        j + 1,
                        fault_text(faults[j].kind),
                        if hosts.len() > 1 {
                            " with the other host faults"
                        } else {
                            ""
                        },
                        if hosts.len() > 1 {
                            "every host of the domain"
                        } else {
                            "its only host"
                        },
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `fill` of a disk_full fault: a size, or "100%" / absent for the whole disk.
    fn fill(&self, at: At<'_>, v: Option<&raw::ParamValue>) -> Result<Option<u64>, InputError> {
        let Some(v) = v else {
            return Ok(None);
        };
        let text = v.as_text();
        if text.trim() == "100%" {
            return Ok(None);
        }
        super::units::parse_size(&text)
            .map(Some)
            .map_err(|m| self.err(at, format!("{m}; or \"100%\" for the whole disk")))
    }

    fn stage(&self, at: At<'_>, stage: Option<&str>, default: &str) -> Result<Stage, InputError> {
        Ok(match stage.unwrap_or(default) {
            "greeting" => Stage::Greeting,
            "mail" => Stage::Mail,
            "rcpt" => Stage::Rcpt,
            "data" => Stage::Data,
            other => {
                return Err(self.err(
                    at,
                    format!(
                        "`{other}` is not an SMTP stage (accepted: {}){}",
                        STAGES.join(", "),
                        did_you_mean(other, STAGES.iter().copied())
                    ),
                ));
            }
        })
    }

    fn fault_target(
        &self,
        at: At<'_>,
        target: &str,
        kind_name: &str,
        dests: &[DestinationSpec],
        hosts: &[&str],
    ) -> Result<FaultTarget, InputError> {
        let mut name = target.trim().to_ascii_lowercase();
        if name == FILTER_TARGET {
            // The content filter's nexthop host, by its role.
            match dests.iter().find(|d| d.is_content_filter) {
                Some(d) => name = d.domain.clone(),
                None => {
                    return Err(self.err(
                        at,
                        "target = \"filter\" needs a content_filter in [postfix]".into(),
                    ));
                }
            }
        }
        let dns_kind = kind_name.starts_with("dns_");
        if name == DNS_TARGET {
            if !dns_kind {
                return Err(self.err(
                    at,
                    format!(
                        "target = \"dns\" is the resolver: it takes the DNS kinds (dns_servfail, dns_timeout, dns_nxdomain), not \"{kind_name}\"; give a domain or an MX host"
                    ),
                ));
            }
            return Ok(FaultTarget::Dns);
        }
        // The domain wins over a host of the same name (a domain that is its own MX).
        if let Some(j) = dests.iter().position(|d| d.domain == name) {
            if is_local(&dests[j]) {
                return Err(self.err(
                    at,
                    format!(
                        "`{name}` is delivered by the local transport, which has no remote side to fail"
                    ),
                ));
            }
            return Ok(FaultTarget::Domain(j));
        }
        if hosts.contains(&name.as_str()) {
            if dns_kind {
                return Err(self.err(
                    at,
                    format!(
                        "`{name}` is an MX host; a DNS fault targets a domain (its lookups) or \"dns\" (every lookup)"
                    ),
                ));
            }
            return Ok(FaultTarget::Host(name));
        }
        if name == LOCAL_DESTINATION {
            return Err(self.err(
                at,
                "local delivery has no remote side to fail; give a [[destination]] domain, an MX host, or \"dns\"".into(),
            ));
        }
        let domains: Vec<&str> = dests
            .iter()
            .filter(|d| !is_local(d))
            .map(|d| d.domain.as_str())
            .collect();
        let candidates = domains.iter().chain(hosts).copied().chain([DNS_TARGET]);
        Err(self.err(
            at,
            format!(
                "`{name}` is not a destination domain, an MX host or \"dns\" (domains: {}; hosts: {}){}",
                name_list(domains.iter().copied()),
                name_list(hosts.iter().copied()),
                did_you_mean(&name, candidates)
            ),
        ))
    }

    /// The SMTP client's parameters; `dests` excludes the implicit local destination.
    pub(super) fn smtp_client(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
        values: &BTreeMap<String, Value>,
        dests: &[DestinationSpec],
    ) -> Result<SmtpClientConfig, InputError> {
        let count = |name| u32::try_from(global_seconds(values, name)).unwrap_or(u32::MAX);
        let (smtp_fallback, fallback) = ("smtp_fallback_relay", "fallback_relay");
        debug_assert!(params::RELAY_LISTS.contains(&smtp_fallback));
        debug_assert!(params::RELAY_LISTS.contains(&fallback));
        // smtp_fallback_relay defaults to $fallback_relay (postconf(5)).
        let fallback_relay = match table.get(fallback) {
            Some(v) => self.relay_list(fallback, &v.as_text(), dests, None)?,
            None => Vec::new(),
        };
        let fallback_relay = match table.get(smtp_fallback) {
            Some(v) => {
                self.relay_list(smtp_fallback, &v.as_text(), dests, Some(&fallback_relay))?
            }
            None => fallback_relay,
        };
        Ok(SmtpClientConfig {
            connect_timeout: global_seconds(values, "smtp_connect_timeout"),
            helo_timeout: global_seconds(values, "smtp_helo_timeout"),
            mx_address_limit: count("smtp_mx_address_limit"),
            mx_session_limit: count("smtp_mx_session_limit"),
            fallback_relay,
            data_done_timeout: global_seconds(values, "smtp_data_done_timeout"),
            connection_cache: ConnectionCacheConfig {
                on_demand: global_bool(values, "smtp_connection_cache_on_demand"),
                destinations: match table.get(params::CACHE_DESTINATIONS) {
                    Some(v) => self.cache_destinations(&v.as_text(), dests)?,
                    None => Vec::new(),
                },
                idle_limit: global_seconds(values, "smtp_connection_cache_time_limit")
                    .min(global_seconds(values, "connection_cache_ttl_limit")),
                reuse_time_limit: global_seconds(values, "smtp_connection_reuse_time_limit"),
                reuse_count_limit: count("smtp_connection_reuse_count_limit"),
                rset_timeout: global_seconds(values, "smtp_rset_timeout"),
            },
        })
    }

    /// `smtp_connection_cache_destinations`: next-hop domains separated by commas and/or
    /// spaces, matched against the request's bare domain (`smtp_cache_policy`). Postfix
    /// would silently never match `[host]`, `host:port` or a name it never delivers to;
    /// here each is a mistake worth an error.
    fn cache_destinations(
        &self,
        text: &str,
        dests: &[DestinationSpec],
    ) -> Result<Vec<usize>, InputError> {
        let at = ("postfix", None, params::CACHE_DESTINATIONS);
        let known = || {
            dests
                .iter()
                .filter(|d| !is_local(d))
                .map(|d| d.domain.as_str())
        };
        let mut out = Vec::new();
        for element in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let name = element.to_ascii_lowercase();
            if name.contains(['[', ']', ':', '/']) {
                let bare = name
                    .trim_start_matches('[')
                    .split([']', ':'])
                    .next()
                    .unwrap_or("");
                return Err(self.err(
                    at,
                    format!(
                        "`{element}`: list bare destination domains, without [], :port, \
                         files or tables (postconf(5)){}",
                        did_you_mean(bare, known())
                    ),
                ));
            }
            match dests.iter().position(|d| !is_local(d) && d.domain == name) {
                Some(d) if !out.contains(&d) => out.push(d),
                Some(_) => {}
                None => {
                    return Err(self.err(
                        at,
                        format!(
                            "`{element}` is not an SMTP destination of this scenario{}",
                            did_you_mean(&name, known())
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A list of sites separated by commas and/or spaces: `domain` or `[host]`, each with an
    /// optional `:port` (accepted, ignored: the model has one port). `expand` is what
    /// `$fallback_relay` stands for, where it may appear.
    fn relay_list(
        &self,
        key: &str,
        text: &str,
        dests: &[DestinationSpec],
        expand: Option<&[Site]>,
    ) -> Result<Vec<Site>, InputError> {
        let at = ("postfix", None, key);
        let mx = mx_hosts(dests);
        let domains: Vec<&str> = dests
            .iter()
            .filter(|d| !is_local(d))
            .map(|d| d.domain.as_str())
            .collect();
        // `[name]` skips the MX lookup: the name must be a server, that is an MX host or a
        // destination that has no MX list (its own name is its host).
        let mut hosts = mx.clone();
        for d in dests.iter().filter(|d| !is_local(d) && d.mx.is_empty()) {
            if !hosts.contains(&d.domain.as_str()) {
                hosts.push(&d.domain);
            }
        }
        let mut sites = Vec::new();
        for element in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            if let (Some(expanded), "$fallback_relay" | "${fallback_relay}") = (expand, element) {
                sites.extend_from_slice(expanded);
                continue;
            }
            let (name, bracketed, port) = match element.strip_prefix('[') {
                Some(rest) => {
                    let Some((name, after)) = rest.split_once(']') else {
                        return Err(self.err(at, format!("`{element}` lacks its closing `]`")));
                    };
                    (name, true, after)
                }
                None => match element.find(':') {
                    Some(p) => (&element[..p], false, &element[p..]),
                    None => (element, false, ""),
                },
            };
            let port_ok = match port.strip_prefix(':') {
                None => port.is_empty(),
                Some(p) => {
                    p.parse::<u16>().is_ok_and(|n| n > 0)
                        || (p.starts_with(|c: char| c.is_ascii_alphabetic())
                            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                }
            };
            let name = name.to_ascii_lowercase();
            if !port_ok || !is_host_name(&name) {
                return Err(self.err(
                    at,
                    format!(
                        "`{element}` is not a relay: write `domain` (MX lookup) or `[host]` (no MX lookup), optionally with `:port`, separated by commas or spaces"
                    ),
                ));
            }
            if bracketed {
                if !hosts.contains(&name.as_str()) {
                    return Err(self.err(
                        at,
                        format!(
                            "`[{name}]` is not a known host: give an MX host or a [[destination]] without `mx` (hosts: {}){}",
                            name_list(hosts.iter().copied()),
                            did_you_mean(&name, hosts.iter().copied())
                        ),
                    ));
                }
                sites.push(Site::Host(name));
            } else {
                let Some(j) = dests.iter().position(|d| d.domain == name && !is_local(d)) else {
                    return Err(self.err(
                        at,
                        format!(
                            "`{name}` is not the domain of an SMTP [[destination]] (domains: {}){}; a relay host is written `[host]`",
                            name_list(domains.iter().copied()),
                            did_you_mean(&name, domains.iter().copied())
                        ),
                    ));
                };
                sites.push(Site::Domain(j));
            }
        }
        Ok(sites)
    }
}

/// The earlier SMTP destination that first lists `host` (as an MX host, or as its own name
/// when it has no MX list), with the behaviour that listing gives the host.
fn first_listing<'a>(
    before: &'a [DestinationSpec],
    host: &str,
) -> Option<(usize, &'a DestinationSpec)> {
    before
        .iter()
        .enumerate()
        .filter(|(_, d)| !is_local(d))
        .find_map(|(j, d)| {
            if d.mx.is_empty() {
                (d.domain == host).then_some((j, d))
            } else {
                d.mx.iter()
                    .find(|m| m.host == host)
                    .map(|m| (j, m.behaviour.as_deref().unwrap_or(d)))
            }
        })
}

/// Whether two behaviours agree on one server key.
fn same_server_key(key: &str, a: &DestinationSpec, b: &DestinationSpec) -> bool {
    match key {
        "latency" => a.phases.transaction == b.phases.transaction,
        "connect" => a.phases.connect == b.phases.connect,
        "greeting" => a.phases.greeting == b.phases.greeting,
        "rcpt" => a.phases.rcpt == b.phases.rcpt,
        "tempfail" => a.tempfail == b.tempfail,
        "permfail" => a.permfail == b.permfail,
        "greylist" => a.greylist == b.greylist,
        "rate_limit" => a.rate_limit == b.rate_limit,
        "max_connections" => a.max_connections == b.max_connections,
        "spam" => a.spam == b.spam,
        _ => true,
    }
}

fn is_dns_kind(kind: FaultKind) -> bool {
    matches!(
        kind,
        FaultKind::DnsServfail | FaultKind::DnsTimeout { .. } | FaultKind::DnsNxdomain
    )
}

/// The name a fault kind has in scenario files.
pub fn fault_kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Refuse => "refuse",
        FaultKind::Blackhole => "blackhole",
        FaultKind::Mute => "mute",
        FaultKind::Tempfail(_) => "tempfail",
        FaultKind::Reject(_) => "reject",
        FaultKind::DnsServfail => "dns_servfail",
        FaultKind::DnsTimeout { .. } => "dns_timeout",
        FaultKind::DnsNxdomain => "dns_nxdomain",
        FaultKind::Slow { .. } => "slow",
        FaultKind::Hang => "hang",
        FaultKind::DiskFull { .. } => "disk_full",
        FaultKind::TransportDown => "transport_down",
        FaultKind::Load { .. } => "load",
    }
}

/// Two faults contradict when they say different things about the same target (the same
/// layer: connections or lookups) at the same time, or about one host two domains share.
/// The world would show only the first; the second is then a mistake the user should hear
/// about. A fault on a host may overlap one on its domain: the host's wins, which is how
/// "all hosts down, one worse" is written.
fn contradicts(a: &FaultSpec, b: &FaultSpec, dests: &[DestinationSpec]) -> bool {
    // Disk fills add up and loads multiply; only the world's faults hide one another.
    let of_the_world = matches!(
        a.target,
        FaultTarget::Domain(_) | FaultTarget::Host(_) | FaultTarget::Dns
    );
    let same_place = a.target == b.target
        || match (&a.target, &b.target) {
            (FaultTarget::Domain(_), FaultTarget::Domain(_)) if is_connection_kind(a.kind) => {
                let hb = fault_hosts(&b.target, dests);
                fault_hosts(&a.target, dests).iter().any(|h| hb.contains(h))
            }
            _ => false,
        };
    of_the_world
        && same_place
        && is_dns_kind(a.kind) == is_dns_kind(b.kind)
        && a.kind != b.kind
        && a.start < b.end
        && b.start < a.end
}

/// Faults on a server's connections (not DNS, not our own host).
fn is_connection_kind(kind: FaultKind) -> bool {
    !is_dns_kind(kind)
        && !matches!(
            kind,
            FaultKind::DiskFull { .. } | FaultKind::TransportDown | FaultKind::Load { .. }
        )
}

/// The host names a connection fault on `target` reaches.
fn fault_hosts<'a>(target: &'a FaultTarget, dests: &'a [DestinationSpec]) -> Vec<&'a str> {
    match target {
        FaultTarget::Domain(d) => match dests.get(*d) {
            Some(spec) if spec.mx.is_empty() => vec![spec.domain.as_str()],
            Some(spec) => spec.mx.iter().map(|m| m.host.as_str()).collect(),
            None => Vec::new(),
        },
        FaultTarget::Host(h) => vec![h.as_str()],
        _ => Vec::new(),
    }
}

/// A fault's kind as written, with its stage or factor (`tempfail at rcpt`, `slow ×2`).
fn fault_text(kind: FaultKind) -> String {
    let stage = |s: Stage| match s {
        Stage::Greeting => "greeting",
        Stage::Mail => "mail",
        Stage::Rcpt => "rcpt",
        Stage::Data => "data",
    };
    match kind {
        FaultKind::Tempfail(s) | FaultKind::Reject(s) => {
            format!("{} at {}", fault_kind_name(kind), stage(s))
        }
        FaultKind::Slow { factor } => format!("slow ×{factor}"),
        FaultKind::DnsTimeout { lookup } => format!("dns_timeout of {}", secs_text(lookup)),
        k => fault_kind_name(k).to_string(),
    }
}

fn until_text(end: Time) -> String {
    if end == Time::MAX {
        "the end of the run".to_string()
    } else {
        secs_text(end)
    }
}

/// A reply code or keyword written as a string or an integer (`"421"` or `421`).
fn reply_code(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.trim().to_string()),
        toml::Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}
