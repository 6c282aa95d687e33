//! The `[postfix]` table: main.cf parameters the model reads, with Postfix 3.7 defaults,
//! units and limits (`../shared/postfix-model.md` §10; checked against `global/mail_params.h`
//! and the `qmgr` sources of v3.7.22).
//!
//! Per-transport parameters (`smtp_destination_concurrency_limit`, `relay_…`, `local_…`)
//! fall back to their `default_…` parameter exactly as Postfix resolves them.

use super::units::parse_postfix_time;

/// How a parameter's text is interpreted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A time value; the char is Postfix's default unit for a bare number.
    Time {
        default_unit: char,
        min: i64,
        max: i64,
    },
    Int {
        min: i64,
        max: i64,
    },
    /// A concurrency feedback value: `1`, `1/4`, `1/concurrency` (`qmgr_feedback.c`).
    Feedback,
    Bool,
}

/// A parameter of real Postfix that this version of the model accepts but does not use.
/// It is reported as a warning, never silently dropped.
pub const ACCEPTED_NOT_MODELLED: &[&str] = &[
    "smtp_mail_timeout",
    "smtp_rcpt_timeout",
    "smtp_data_init_timeout",
    "smtp_data_xfer_timeout",
    "relayhost",
    "smtp_skip_5xx_greeting",
    "smtp_defer_if_no_mx_address_found",
    "qmgr_message_recipient_limit",
    "qmgr_message_recipient_minimum",
    "default_recipient_limit",
    "default_extra_recipient_limit",
    "default_recipient_refill_limit",
    "default_recipient_refill_delay",
    "default_delivery_slot_cost",
    "default_delivery_slot_loan",
    "default_delivery_slot_discount",
    "default_minimum_delivery_slots",
    "default_transport_rate_delay",
    "defer_transports",
    "confirm_delay_cleared",
    "notify_classes",
    "service_throttle_time",
    "enable_long_queue_ids",
    "delay_logging_resolution_limit",
    "fast_flush_purge_time",
    "fast_flush_refresh_time",
];

/// Global (not per-transport) parameters the model uses.
pub const GLOBAL: &[(&str, Kind, &str)] = &[
    ("queue_run_delay", time('s', 1, MAX_TIME), "300s"),
    ("minimal_backoff_time", time('s', 1, MAX_TIME), "300s"),
    ("maximal_backoff_time", time('s', 1, MAX_TIME), "4000s"),
    ("maximal_queue_lifetime", time('d', 0, 8_640_000), "5d"),
    ("bounce_queue_lifetime", time('d', 0, 8_640_000), "5d"),
    ("delay_warning_time", time('h', 0, MAX_TIME), "0h"),
    ("transport_retry_time", time('s', 1, MAX_TIME), "60s"),
    ("smtp_data_done_timeout", time('s', 1, MAX_TIME), "600s"),
    ("queue_minfree", int(0, i64::MAX), "0"),
    ("in_flow_delay", time('s', 0, 10), "1s"),
    ("qmgr_clog_warn_time", time('s', 0, MAX_TIME), "300s"),
    ("message_size_limit", int(0, i64::MAX), "10240000"),
    (
        "qmgr_message_active_limit",
        int(1, i32::MAX as i64),
        "20000",
    ),
    (
        "initial_destination_concurrency",
        int(1, i32::MAX as i64),
        "5",
    ),
    ("default_process_limit", int(1, i32::MAX as i64), "100"),
    (
        "default_destination_concurrency_limit",
        int(0, i32::MAX as i64),
        "20",
    ),
    (
        "default_destination_recipient_limit",
        int(0, i32::MAX as i64),
        "50",
    ),
    (
        "default_destination_concurrency_positive_feedback",
        Kind::Feedback,
        "1",
    ),
    (
        "default_destination_concurrency_negative_feedback",
        Kind::Feedback,
        "1",
    ),
    (
        "default_destination_concurrency_failed_cohort_limit",
        int(0, i32::MAX as i64),
        "1",
    ),
    (
        "default_destination_rate_delay",
        time('s', 0, MAX_TIME),
        "0s",
    ),
    // The SMTP client (smtp(8)); postconf(5) defaults. 0 = the OS connect timeout.
    ("smtp_connect_timeout", time('s', 0, MAX_TIME), "30s"),
    ("smtp_helo_timeout", time('s', 1, MAX_TIME), "300s"),
    // 0 = no limit.
    ("smtp_mx_address_limit", int(0, i32::MAX as i64), "5"),
    ("smtp_mx_session_limit", int(0, i32::MAX as i64), "2"),
    // Connection caching (§5.8, §6.3; smtp_params.c, scache.c): idle sessions live for
    // min(smtp_connection_cache_time_limit, connection_cache_ttl_limit).
    ("smtp_connection_cache_on_demand", Kind::Bool, "yes"),
    (
        "smtp_connection_cache_time_limit",
        time('s', 1, MAX_TIME),
        "2s",
    ),
    ("connection_cache_ttl_limit", time('s', 1, MAX_TIME), "2s"),
    (
        "smtp_connection_reuse_time_limit",
        time('s', 1, MAX_TIME),
        "300s",
    ),
    // 0 = no limit.
    (
        "smtp_connection_reuse_count_limit",
        int(0, i32::MAX as i64),
        "0",
    ),
    ("smtp_rset_timeout", time('s', 1, MAX_TIME), "20s"),
];

/// `smtp_connection_cache_destinations`: destinations whose sessions are always cached,
/// read by `resolve_world.rs` (a list of the scenario's domain names).
pub const CACHE_DESTINATIONS: &str = "smtp_connection_cache_destinations";

/// Parameters whose value is a list of next-hop sites (`host`, `[host]`, with an optional
/// `:port`). They name the scenario's destinations and hosts, so they are resolved after the
/// destinations (`resolve_world.rs`), not by [`parse_value`].
pub const RELAY_LISTS: &[&str] = &["smtp_fallback_relay", "fallback_relay"];

/// Domain lists (`domain`, `.domain`, `$relay_domains`), read by [`parse_domain_list`]:
/// `fast_flush_domains` (default `$relay_domains`) decides which sites `postqueue -s` may
/// flush; `relay_domains` (empty at compatibility_level ≥ 2) is read only as its default.
pub const DOMAIN_LISTS: &[&str] = &["fast_flush_domains", "relay_domains"];

/// A domain list as Postfix's `match_list` reads it for these parameters: names separated
/// by commas and/or spaces, case-insensitive; `$relay_domains` (or `${relay_domains}`)
/// stands for `relay` where that is given. Negations, files and lookup tables are not
/// modelled.
pub fn parse_domain_list(text: &str, relay: Option<&[String]>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if item == "$relay_domains" || item == "${relay_domains}" {
            match relay {
                Some(list) => out.extend(list.iter().cloned()),
                None => return Err(format!("`{item}` cannot be used here")),
            }
            continue;
        }
        let name = item.to_ascii_lowercase();
        let body = name.strip_prefix('.').unwrap_or(&name);
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(format!(
                "`{item}`: mailsim reads domain names here (`example.com`, `.example.com`{}); negations, files and lookup tables are not modelled",
                if relay.is_some() {
                    ", `$relay_domains`"
                } else {
                    ""
                }
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// Does `site` match a domain list? With `parent_domain_matches_subdomains` (whose default
/// names fast_flush_domains and relay_domains), `example.com` also matches its
/// subdomains; `.example.com` matches only them (match_list.c, domain_list.c).
pub fn domain_list_matches(list: &[String], site: &str) -> bool {
    let site = site.to_ascii_lowercase();
    list.iter().any(|d| match d.strip_prefix('.') {
        Some(_) => site.ends_with(d.as_str()),
        None => site == *d || site.ends_with(&format!(".{d}")),
    })
}

/// `content_filter = transport:[host]:port`, read by `resolve_host.rs`.
pub const CONTENT_FILTER: &str = "content_filter";

/// Per-transport parameter tails: `<transport>_<tail>` overrides `default_<tail>`
/// (`initial_destination_concurrency` has the `<transport>_initial_…` form).
pub const PER_TRANSPORT_TAILS: &[&str] = &[
    "destination_concurrency_limit",
    "destination_recipient_limit",
    "destination_concurrency_positive_feedback",
    "destination_concurrency_negative_feedback",
    "destination_concurrency_failed_cohort_limit",
    "destination_rate_delay",
    "initial_destination_concurrency",
];

/// Postfix's largest time value we accept (100 years), far above any scenario.
const MAX_TIME: i64 = 100 * 365 * 86_400;

const fn time(default_unit: char, min: i64, max: i64) -> Kind {
    Kind::Time {
        default_unit,
        min,
        max,
    }
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

/// The kind of a per-transport tail, and its built-in default for `transport`
/// (`local` has its own in `mail_params.h`: concurrency 2, recipients 1).
pub fn tail_kind(tail: &str) -> Option<Kind> {
    Some(match tail {
        "destination_concurrency_limit" | "destination_recipient_limit" => int(0, i32::MAX as i64),
        "destination_concurrency_failed_cohort_limit" => int(0, i32::MAX as i64),
        "initial_destination_concurrency" => int(1, i32::MAX as i64),
        "destination_concurrency_positive_feedback"
        | "destination_concurrency_negative_feedback" => Kind::Feedback,
        "destination_rate_delay" => time('s', 0, MAX_TIME),
        _ => return None,
    })
}

/// A feedback value as Postfix evaluates it: `base` or `base / window`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feedback {
    pub base: f64,
    pub per_concurrency: bool,
}

impl Feedback {
    pub const ONE: Feedback = Feedback {
        base: 1.0,
        per_concurrency: false,
    };

    /// `QMGR_FEEDBACK_VAL`: the feedback at the current window.
    pub fn value(&self, window: i32) -> f64 {
        if self.per_concurrency {
            self.base / f64::from(window.max(1))
        } else {
            self.base
        }
    }
}

/// Parses a feedback value like `qmgr_feedback_init`: a number, `a/b`, or `a/concurrency`,
/// whose base must lie in [0, 1]. Postfix replaces bad values by 1 with a warning; a
/// simulator user is better served by an error.
pub fn parse_feedback(text: &str) -> Result<Feedback, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{t}` is not a feedback value: write a number in [0, 1] such as `1` or `1/4`, or `N/concurrency` with N in [0, 1]"
        )
    };
    let (base, per_concurrency) = match t.split_once('/') {
        None => (t.parse::<f64>().map_err(|_| bad())?, false),
        Some((num, den)) => {
            let num: f64 = num.trim().parse().map_err(|_| bad())?;
            let den = den.trim();
            if den == "concurrency" {
                (num, true)
            } else {
                let d: f64 = den.parse().map_err(|_| bad())?;
                if d.is_nan() || d < 1.0 / i32::MAX as f64 {
                    return Err(bad());
                }
                (num / d, false)
            }
        }
    };
    if !(0.0..=1.0).contains(&base) {
        return Err(bad());
    }
    Ok(Feedback {
        base,
        per_concurrency,
    })
}

/// A parsed parameter value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Seconds(i64),
    Int(i64),
    Feedback(Feedback),
    Bool(bool),
}

/// Parses `text` as a value of `kind`; the error says what is accepted.
pub fn parse_value(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Time {
            default_unit,
            min,
            max,
        } => {
            let t = text.trim();
            let out_of_range = || {
                // A bare number takes the default unit, which surprises (600 = 600 days).
                let bare = if t.chars().all(|c| c.is_ascii_digit()) {
                    format!(" (a bare number is in {} here)", unit_name(default_unit))
                } else {
                    String::new()
                };
                format!(
                    "`{t}`{bare} is out of range: Postfix accepts {} to {}",
                    seconds_text(min),
                    seconds_text(max)
                )
            };
            let s = parse_postfix_time(text, default_unit)?;
            if s < min || s > max {
                return Err(out_of_range());
            }
            Ok(Value::Seconds(s))
        }
        Kind::Int { min, max } => {
            let n: i64 = text
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not an integer", text.trim()))?;
            if n < min || n > max {
                return Err(format!(
                    "`{n}` is out of range: Postfix accepts {min} to {max}"
                ));
            }
            Ok(Value::Int(n))
        }
        Kind::Feedback => parse_feedback(text).map(Value::Feedback),
        Kind::Bool => match text.trim() {
            "yes" | "true" => Ok(Value::Bool(true)),
            "no" | "false" => Ok(Value::Bool(false)),
            other => Err(format!("`{other}` is not `yes` or `no`")),
        },
    }
}

fn unit_name(unit: char) -> &'static str {
    match unit {
        'm' => "minutes",
        'h' => "hours",
        'd' => "days",
        'w' => "weeks",
        _ => "seconds",
    }
}

/// `8640000s (100d)`: seconds, and the largest whole unit when there is one.
fn seconds_text(s: i64) -> String {
    match [(604_800, 'w'), (86_400, 'd'), (3_600, 'h'), (60, 'm')]
        .iter()
        .find(|(f, _)| s >= *f && s % f == 0)
    {
        Some((f, u)) => format!("{s}s ({}{u})", s / f),
        None => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_values_follow_qmgr_feedback_c() {
        assert_eq!(parse_feedback("1"), Ok(Feedback::ONE));
        let quarter = parse_feedback("1/4").expect("valid");
        assert_eq!(quarter.value(7), 0.25);
        let per = parse_feedback("1/concurrency").expect("valid");
        assert_eq!(per.value(5), 0.2);
        assert!(parse_feedback("2").is_err());
        assert!(parse_feedback("2/concurrency").is_err());
        assert!(parse_feedback("sqrt_concurrency").is_err());
    }

    #[test]
    fn fast_flush_domains_match_like_parent_domain_matches_subdomains() {
        let relay = vec!["relay.test".to_string()];
        let list =
            parse_domain_list("a.test, .b.test $relay_domains", Some(&relay)).expect("valid");
        assert_eq!(list, ["a.test", ".b.test", "relay.test"]);
        assert!(domain_list_matches(&list, "a.test"));
        assert!(domain_list_matches(&list, "mx.A.test"));
        assert!(!domain_list_matches(&list, "b.test"));
        assert!(domain_list_matches(&list, "x.b.test"));
        assert!(domain_list_matches(&list, "relay.test"));
        assert!(!domain_list_matches(&list, "aa.test"));
        assert!(parse_domain_list("!a.test", None).is_err());
        assert!(parse_domain_list("hash:/etc/postfix/relay", None).is_err());
        assert!(parse_domain_list("$relay_domains", None).is_err());
    }

    #[test]
    fn lifetimes_default_to_days_and_are_capped_at_100_days() {
        let kind = GLOBAL
            .iter()
            .find(|(n, _, _)| *n == "maximal_queue_lifetime")
            .map(|(_, k, _)| *k)
            .expect("listed");
        assert_eq!(parse_value(kind, "5"), Ok(Value::Seconds(432_000)));
        assert_eq!(parse_value(kind, "600s"), Ok(Value::Seconds(600)));
        assert!(parse_value(kind, "600").is_err(), "600 days > 100 days");
    }
}
