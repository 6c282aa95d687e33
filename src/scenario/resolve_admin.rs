//! Resolving `[[admin]]` entries: command syntax (`admin.rs`), names checked against the
//! scenario, and for every `postfix reload` or `postfix start` the configuration that
//! takes effect then, with the `postconf -e` changes made before it.

use super::admin::{self, AdminAction, AdminCommand, Parsed};
use super::params::{self, Value};
use super::{
    DestinationSpec, PostfixConfig, Resolver, SmtpClientConfig, TransportConfig, did_you_mean, raw,
    transport_config,
};
use crate::error::InputError;
use std::collections::BTreeMap;

/// The most `[[admin]]` entries a scenario may have (each is one event on the timeline).
pub const MAX_ADMIN_ENTRIES: usize = 1_000_000;

/// The settings a restarted qmgr and new delivery agents read.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconfiguration {
    pub postfix: PostfixConfig,
    pub transports: Vec<TransportConfig>,
    pub smtp: SmtpClientConfig,
    /// main.cf's content_filter is set: smtpd and pickup processes started from now on add
    /// the FILTER record (files already queued keep theirs, or their lack of one).
    pub filter_on: bool,
    /// smtpd's maxproc (`-` follows default_process_limit).
    pub smtpd_maxproc: u32,
}

/// What the resolver knows that a reconfiguration needs.
pub(super) struct Context<'a> {
    pub postfix: &'a BTreeMap<String, raw::ParamValue>,
    pub transports: &'a [String],
    pub maxprocs: &'a BTreeMap<String, Option<u32>>,
    pub destinations: &'a [DestinationSpec],
    /// The scenario's content filter and the value that names it.
    pub filter: Option<(super::ContentFilter, super::FilterNexthop)>,
    /// fast_flush_domains at the start.
    pub fast_flush_domains: &'a [String],
}

impl Resolver<'_> {
    pub(super) fn admin(
        &self,
        entries: &[raw::Admin],
        cx: &Context<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<AdminAction>, Vec<Reconfiguration>), InputError> {
        if entries.len() > MAX_ADMIN_ENTRIES {
            return Err(InputError::new(
                self.file,
                super::locate::key_line(self.text, "admin", Some(MAX_ADMIN_ENTRIES), None),
                Some(&format!("[[admin]] #{}", MAX_ADMIN_ENTRIES + 1)),
                format!(
                    "{} [[admin]] entries; at most {MAX_ADMIN_ENTRIES} are supported",
                    entries.len()
                ),
            ));
        }
        let mut timed = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let at = self.duration(("admin", Some(i), "at"), &e.at, false)?;
            timed.push((at, i));
        }
        // The timeline runs in time order; entries at the same instant keep file order.
        timed.sort();
        let mut table = cx.postfix.clone();
        let mut pending_changes: Option<usize> = None;
        let mut actions = Vec::new();
        let mut configs: Vec<Reconfiguration> = Vec::new();
        // What the flush service will answer depends on whether Postfix runs then, and on
        // the fast_flush_domains of the last (re)start.
        let mut running = true;
        for (at, i) in timed {
            let key = ("admin", Some(i), "command");
            let text = entries[i].command.trim();
            let parsed = admin::parse(text).map_err(|m| self.err(key, m))?;
            let line = super::locate::key_line(self.text, "admin", Some(i), Some("command"));
            let mut warn = |what: String| {
                warnings.push(format!(
                    "{}:{}: [[admin]] #{} `{text}`: {what}",
                    self.file,
                    line.unwrap_or(0),
                    i + 1
                ));
            };
            let flushing = matches!(
                parsed,
                Parsed::Flush | Parsed::FlushSite(_) | Parsed::FlushId(_)
            );
            if flushing && !running {
                // postqueue.c: the flush request finds no master (FLUSH_STAT_FAIL).
                warn("Postfix is stopped then: postqueue answers `fatal: Cannot flush mail queue - mail system is down` and does nothing".into());
            } else if let Parsed::FlushSite(site) = &parsed {
                let domains = configs
                    .last()
                    .map(|c| c.postfix.fast_flush_domains.as_slice())
                    .unwrap_or(cx.fast_flush_domains);
                if !params::domain_list_matches(domains, site) {
                    // flush.c: flush_send_service denies a site outside fast_flush_domains.
                    warn(format!(
                        "fast_flush_domains does not match `{site}` (its default is $relay_domains, empty at compatibility_level 2 and above): postqueue answers `fatal: Flush service is not configured for destination \"{site}\"` and does nothing; add the site to fast_flush_domains, or use postqueue -f"
                    ));
                }
            }
            let command = match parsed {
                Parsed::Flush => AdminCommand::Flush,
                Parsed::FlushSite(site) => {
                    match cx.destinations.iter().position(|d| d.domain == site) {
                        Some(destination) => AdminCommand::FlushSite { destination },
                        None => {
                            return Err(self.err(
                                key,
                                format!(
                                    "postqueue -s `{site}`: no [[destination]] has this domain{}",
                                    did_you_mean(
                                        &site,
                                        cx.destinations.iter().map(|d| d.domain.as_str())
                                    )
                                ),
                            ));
                        }
                    }
                }
                Parsed::FlushId(id) => AdminCommand::FlushId(id),
                Parsed::Postsuper(op, selection, queues) => match op {
                    'd' => AdminCommand::Delete(selection, queues),
                    'h' => AdminCommand::Hold(selection, queues),
                    'H' => AdminCommand::Release(selection, queues),
                    'r' => AdminCommand::Requeue(selection, queues),
                    'e' | 'f' => AdminCommand::Expire {
                        selection,
                        queues,
                        release: op == 'f',
                    },
                    _ => return Err(self.err(key, format!("postsuper -{op} is not modelled"))),
                },
                Parsed::Postconf(pairs) => {
                    for (name, value) in &pairs {
                        self.check_postconf(key, name, value, cx, warnings)?;
                        table.insert(name.clone(), raw::ParamValue::Text(value.clone()));
                    }
                    pending_changes.get_or_insert(i);
                    AdminCommand::Postconf(pairs)
                }
                Parsed::Reload | Parsed::Start => {
                    let config = configs.len();
                    configs.push(self.reconfiguration(key, &table, cx)?);
                    pending_changes = None;
                    if parsed == Parsed::Reload {
                        AdminCommand::Reload { config }
                    } else {
                        AdminCommand::Start { config }
                    }
                }
                Parsed::Stop => AdminCommand::Stop,
            };
            match command {
                AdminCommand::Stop => running = false,
                AdminCommand::Start { .. } => running = true,
                _ => {}
            }
            actions.push(AdminAction {
                at,
                command,
                text: text.to_string(),
            });
        }
        if let Some(i) = pending_changes {
            warnings.push(format!(
                "{}:{}: [[admin]] #{}: postconf -e changes take effect at `postfix reload` or `postfix start`, and none follows",
                self.file,
                super::locate::key_line(self.text, "admin", Some(i), Some("command")).unwrap_or(0),
                i + 1
            ));
        }
        self.check_stop_start(&actions)?;
        Ok((actions, configs))
    }

    /// One `postconf -e` setting must be a parameter the scenario could set in `[postfix]`.
    fn check_postconf(
        &self,
        key: super::At<'_>,
        name: &str,
        value: &str,
        cx: &Context<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), InputError> {
        let single: BTreeMap<String, raw::ParamValue> =
            [(name.to_string(), raw::ParamValue::Text(value.to_string()))].into();
        let mut scratch = Vec::new();
        let rewrap = |e: InputError| {
            self.err(
                key,
                format!("postconf -e '{name} = {value}': {}", e.message),
            )
        };
        if name == params::CONTENT_FILTER {
            return self.check_content_filter(key, value, cx);
        }
        if params::DOMAIN_LISTS.contains(&name) {
            let relay = (name == "fast_flush_domains").then_some(&[][..]);
            return params::parse_domain_list(value, relay)
                .map(|_| ())
                .map_err(|m| self.err(key, format!("postconf -e '{name} = {value}': {m}")));
        }
        self.postfix_values(&single, &mut scratch).map_err(rewrap)?;
        self.check_transport_prefixes(&single, cx.transports, &mut scratch)
            .map_err(rewrap)?;
        if params::ACCEPTED_NOT_MODELLED.contains(&name) {
            warnings.push(format!(
                "{}: postconf -e '{name} = …': a Postfix parameter this model does not use yet; it has no effect",
                self.file
            ));
        }
        Ok(())
    }

    /// `postconf -e 'content_filter = …'`: empty turns the filter off; otherwise it must be
    /// the scenario's one filter (the first content_filter of the file gave it its transport
    /// and its `[filter]` behaviour).
    fn check_content_filter(
        &self,
        key: super::At<'_>,
        value: &str,
        cx: &Context<'_>,
    ) -> Result<(), InputError> {
        let Some(f) = self.parse_content_filter(key, value)? else {
            return Ok(());
        };
        match &cx.filter {
            Some((_, known)) if *known == f => Ok(()),
            Some((_, known)) => Err(self.err(
                key,
                format!(
                    "postconf -e 'content_filter = {}': the scenario's content filter is `{}:[{}]:{}` ([filter] describes that one server); mailsim switches it off and on, not to another filter",
                    value.trim(),
                    known.transport,
                    known.host,
                    known.port
                ),
            )),
            None => Err(self.err(key, "no content filter is known".into())),
        }
    }

    /// The configuration read from `table` (the `[postfix]` table with `postconf -e` changes).
    fn reconfiguration(
        &self,
        key: super::At<'_>,
        table: &BTreeMap<String, raw::ParamValue>,
        cx: &Context<'_>,
    ) -> Result<Reconfiguration, InputError> {
        let mut scratch = Vec::new();
        let rewrap = |e: InputError| self.err(key, format!("after postconf -e: {}", e.message));
        let values: BTreeMap<String, Value> =
            self.postfix_values(table, &mut scratch).map_err(rewrap)?;
        let mut postfix = self.postfix_config(&values, &mut scratch);
        postfix.fast_flush_domains = self.fast_flush_domains(table).map_err(rewrap)?;
        let transports = cx
            .transports
            .iter()
            .map(|name| transport_config(name, &values, cx.maxprocs, postfix.default_process_limit))
            .collect();
        let smtp = self
            .smtp_client(table, &values, cx.destinations)
            .map_err(rewrap)?;
        let filter_text = table
            .get(params::CONTENT_FILTER)
            .map(|v| v.as_text())
            .unwrap_or_default();
        let filter_on = !filter_text.trim().is_empty();
        Ok(Reconfiguration {
            smtpd_maxproc: super::smtpd_maxproc(cx.maxprocs, postfix.default_process_limit),
            postfix,
            transports,
            smtp,
            filter_on,
        })
    }

    /// `postfix stop` and `postfix start` must alternate: Postfix refuses to start twice.
    fn check_stop_start(&self, actions: &[AdminAction]) -> Result<(), InputError> {
        let mut running = true;
        for a in actions {
            let ok = match a.command {
                AdminCommand::Stop => std::mem::replace(&mut running, false),
                AdminCommand::Start { .. } => !std::mem::replace(&mut running, true),
                AdminCommand::Reload { .. } => running,
                _ => true,
            };
            if !ok {
                return Err(InputError::new(
                    self.file,
                    None,
                    Some("admin"),
                    format!(
                        "`{}` at {} s: Postfix is {} then (postfix stop and postfix start must alternate; reload needs a running Postfix)",
                        a.text,
                        crate::output::summary::seconds(a.at),
                        if running { "running" } else { "stopped" }
                    ),
                ));
            }
        }
        Ok(())
    }
}
