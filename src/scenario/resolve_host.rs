//! Resolving what describes our own host: the queue file system (`[disk]`), message sizes
//! (§7.1) and the content filter (`content_filter`, `[filter]`; §7.3).

use super::remote::{DiskSpec, HostSpeed, TcpStack};
use super::{
    At, DestinationSpec, Latency, Phases, Resolver, did_you_mean, is_service_name, params, raw,
    units,
};
use crate::engine::time::{SECOND, Time};
use crate::error::InputError;
use std::collections::BTreeMap;

/// A content_filter value: its transport, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterNexthop {
    pub transport: String,
    pub host: String,
    pub port: u16,
}

/// A message-size distribution, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeDist {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
    Exponential { mean: u64 },
    LogNormal { mean: u64, sd: u64 },
}

impl Resolver<'_> {
    /// `content_filter = transport:[host]:port` in `[postfix]`, or else the first one a
    /// `postconf -e` sets (the filter's transport and destination must exist from the start
    /// for a reload to switch it on). A `[filter]` table without any content_filter is a
    /// mistake.
    pub(super) fn content_filter_setting(
        &self,
        table: &BTreeMap<String, raw::ParamValue>,
        admin: &[raw::Admin],
        has_filter_table: bool,
    ) -> Result<Option<FilterNexthop>, InputError> {
        let at = ("postfix", None, params::CONTENT_FILTER);
        let text = table
            .get(params::CONTENT_FILTER)
            .map(|v| v.as_text())
            .unwrap_or_default();
        if let Some(f) = self.parse_content_filter(at, &text)? {
            return Ok(Some(f));
        }
        for (i, a) in admin.iter().enumerate() {
            let Ok(super::admin::Parsed::Postconf(pairs)) = super::admin::parse(&a.command) else {
                continue; // a bad command is reported with the rest of [[admin]]
            };
            for (name, value) in pairs {
                if name == params::CONTENT_FILTER
                    && let Some(f) =
                        self.parse_content_filter(("admin", Some(i), "command"), &value)?
                {
                    return Ok(Some(f));
                }
            }
        }
        if has_filter_table {
            return Err(self.err(
                ("filter", None, "latency"),
                "[filter] describes a content filter, but [postfix] sets no content_filter (e.g. content_filter = \"smtp-amavis:[127.0.0.1]:10024\")".into(),
            ));
        }
        Ok(None)
    }

    /// One content_filter value; `None` when empty (no filter).
    pub(super) fn parse_content_filter(
        &self,
        at: At<'_>,
        text: &str,
    ) -> Result<Option<FilterNexthop>, InputError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let shape = "is transport:[host]:port, e.g. \"smtp-amavis:[127.0.0.1]:10024\"";
        let Some((transport, nexthop)) = text.split_once(':') else {
            return Err(self.err(at, format!("content_filter `{text}` {shape}")));
        };
        if !is_service_name(transport) || transport == "local" {
            return Err(self.err(
                at,
                format!("`{transport}` is not an SMTP transport name (master.cf service); the content_filter value {shape}"),
            ));
        }
        let (host, rest) = match nexthop.strip_prefix('[') {
            Some(inner) => match inner.split_once(']') {
                Some((h, rest)) => (h, rest),
                None => (inner, ""),
            },
            None => match nexthop.split_once(':') {
                Some((h, _)) => (h, &nexthop[h.len()..]),
                None => (nexthop, ""),
            },
        };
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(self.err(
                at,
                format!("`{nexthop}`: the content_filter nexthop {shape}"),
            ));
        }
        // smtp(8) connects to port 25 unless the nexthop names one.
        let port = match rest.trim() {
            "" => 25,
            p => match p
                .strip_prefix(':')
                .and_then(|n| n.trim().parse::<u16>().ok())
            {
                Some(n) if n > 0 => n,
                _ => {
                    return Err(self.err(
                        at,
                        format!("`{nexthop}`: the port of the content_filter nexthop must be a number from 1 to 65535; the value {shape}"),
                    ));
                }
            },
        };
        Ok(Some(FilterNexthop {
            transport: transport.to_string(),
            host,
            port,
        }))
    }

    /// The filter as a destination of its transport: a server on our host answering every
    /// message after `latency` (default 1 s, amavisd's typical scan time).
    pub(super) fn filter_destination(
        &self,
        host: &str,
        transport: usize,
        f: Option<&raw::Filter>,
        before: &[DestinationSpec],
    ) -> Result<DestinationSpec, InputError> {
        if before.iter().any(|d| d.domain == host) {
            return Err(self.err(
                ("postfix", None, params::CONTENT_FILTER),
                format!("the filter's host `{host}` is also a [[destination]]"),
            ));
        }
        // One host name is one server, the first listing's: [filter] would be ignored.
        if let Some(d) = before.iter().find(|d| d.mx.iter().any(|m| m.host == host)) {
            return Err(self.err(
                ("postfix", None, params::CONTENT_FILTER),
                format!(
                    "the filter's host `{host}` is also an MX host of {}: give the filter a host of its own",
                    d.domain
                ),
            ));
        }
        let at = |k| ("filter", None, k);
        let latency = |key, v: Option<&toml::Value>, default| match v {
            Some(v) => self.latency(at(key), v),
            None => Ok(default),
        };
        let mut phases = Phases::transaction_only(latency(
            "latency",
            f.and_then(|f| f.latency.as_ref()),
            Latency::Fixed(SECOND),
        )?);
        phases.connect = latency(
            "connect",
            f.and_then(|f| f.connect.as_ref()),
            Latency::Fixed(0),
        )?;
        phases.greeting = latency(
            "greeting",
            f.and_then(|f| f.greeting.as_ref()),
            Latency::Fixed(0),
        )?;
        let mut spec = DestinationSpec::accepting(host, transport, phases);
        spec.is_content_filter = true;
        if let Some(f) = f {
            spec.tempfail = self.probability(at("tempfail"), f.tempfail)?;
            spec.permfail = self.probability(at("permfail"), f.permfail)?;
            if let Some(v) = &f.max_connections {
                spec.max_connections = Some(self.max_connections(at("max_connections"), v)?);
            }
        }
        Ok(spec)
    }

    pub(super) fn disk(&self, d: &raw::Disk) -> Result<DiskSpec, InputError> {
        let size = units::parse_size(&d.size.as_text())
            .map_err(|m| self.err(("disk", None, "size"), m))?;
        if size == 0 {
            return Err(self.err(("disk", None, "size"), "must be positive".into()));
        }
        let used = match &d.used {
            Some(v) => {
                units::parse_size(&v.as_text()).map_err(|m| self.err(("disk", None, "used"), m))?
            }
            None => 0,
        };
        if used > size {
            return Err(self.err(
                ("disk", None, "used"),
                format!("{used} bytes used on a {size}-byte disk: `used` must not exceed `size`"),
            ));
        }
        Ok(DiskSpec { size, used })
    }

    /// `[kernel]`: how our TCP stack resends an unanswered SYN.
    pub(super) fn kernel(&self, k: Option<&raw::Kernel>) -> Result<TcpStack, InputError> {
        let mut tcp = TcpStack::default();
        let Some(k) = k else { return Ok(tcp) };
        // The kernel's own range for both (MAX_TCP_SYNCNT).
        let check = |key: &str, v: Option<i64>, min: i64| match v {
            None => Ok(None),
            Some(v) if (min..=127).contains(&v) => Ok(Some(v as u32)),
            Some(v) => Err(self.err(
                ("kernel", None, key),
                format!("{v} is out of range: Linux takes {min} to 127"),
            )),
        };
        if let Some(v) = check("tcp_syn_retries", k.tcp_syn_retries, 1)? {
            tcp.syn_retries = v;
        }
        if let Some(v) = check("tcp_syn_linear_timeouts", k.tcp_syn_linear_timeouts, 0)? {
            tcp.syn_linear_timeouts = v;
        }
        Ok(tcp)
    }

    /// `[host]`: the durations of qmgr's hand-off to an agent and of the agent's report.
    pub(super) fn host(&self, h: Option<&raw::Host>) -> Result<HostSpeed, InputError> {
        let mut speed = HostSpeed::default();
        let Some(h) = h else { return Ok(speed) };
        let get = |key: &str, v: &Option<String>| -> Result<Option<Time>, InputError> {
            let Some(text) = v else { return Ok(None) };
            let at = ("host", None, key);
            let t = self.duration(at, text, false)?;
            // Inter-process round trips: a second is already a host in deep trouble.
            if t > 10 * SECOND {
                return Err(self.err(
                    at,
                    format!("`{text}` is more than 10s; this is a per-request hand-off between Postfix processes (typically 50us to a few ms)"),
                ));
            }
            Ok(Some(t))
        };
        if let Some(t) = get("agent_handoff", &h.agent_handoff)? {
            speed.agent_handoff = t;
        }
        if let Some(t) = get("agent_report", &h.agent_report)? {
            speed.agent_report = t;
        }
        Ok(speed)
    }

    /// `size = "75KB"`, `size = 10000`, or a table `{ mean = "75KB", sd = "150KB" }`
    /// (lognormal), `{ dist = "uniform", min = …, max = … }`, `{ dist = "exponential",
    /// mean = … }`.
    pub(super) fn size_dist(&self, at: At<'_>, v: &toml::Value) -> Result<SizeDist, InputError> {
        let size = |v: &toml::Value| -> Result<u64, InputError> {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                _ => {
                    return Err(self.err(
                        at,
                        "a size is a string like \"75KB\" or a number of bytes".into(),
                    ));
                }
            };
            units::parse_size(&text).map_err(|m| self.err(at, m))
        };
        match v {
            toml::Value::String(_) | toml::Value::Integer(_) => Ok(SizeDist::Fixed(size(v)?)),
            toml::Value::Table(t) => {
                const KEYS: [&str; 5] = ["dist", "mean", "sd", "min", "max"];
                if let Some(bad) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
                    return Err(self.err(
                        at,
                        format!(
                            "unknown key `{bad}` (accepted: {}){}",
                            KEYS.join(", "),
                            did_you_mean(bad, KEYS)
                        ),
                    ));
                }
                let get = |k: &str| -> Result<u64, InputError> {
                    let v = t
                        .get(k)
                        .ok_or_else(|| self.err(at, format!("missing `{k}` in the size distribution")))?;
                    size(v)
                };
                let dist = match t.get("dist") {
                    Some(toml::Value::String(s)) => s.as_str(),
                    Some(_) => return Err(self.err(at, "`dist` must be a string".into())),
                    None if t.contains_key("sd") => "lognormal",
                    None if t.contains_key("min") => "uniform",
                    None => "exponential",
                };
                match dist {
                    "fixed" => Ok(SizeDist::Fixed(get("mean")?)),
                    "uniform" => {
                        let (min, max) = (get("min")?, get("max")?);
                        if min > max {
                            return Err(self.err(at, "a uniform size needs min <= max".into()));
                        }
                        Ok(SizeDist::Uniform { min, max })
                    }
                    "exponential" => Ok(SizeDist::Exponential { mean: get("mean")? }),
                    "lognormal" => {
                        let (mean, sd) = (get("mean")?, get("sd")?);
                        if mean == 0 {
                            return Err(self.err(at, "a lognormal size needs a positive mean".into()));
                        }
                        Ok(SizeDist::LogNormal { mean, sd })
                    }
                    other => Err(self.err(
                        at,
                        format!(
                            "unknown distribution `{other}` (accepted: fixed, uniform, exponential, lognormal){}",
                            did_you_mean(other, ["fixed", "uniform", "exponential", "lognormal"])
                        ),
                    )),
                }
            }
            _ => Err(self.err(
                at,
                "a size is \"75KB\", a number of bytes, or a table such as { mean = \"75KB\", sd = \"150KB\" }".into(),
            )),
        }
    }
}
