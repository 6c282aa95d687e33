//! The scenario keys of the remote world (MX hosts, phases, greylisting, limits, spam,
//! faults, the SMTP client's parameters): what they resolve to, and one clear error, on the
//! right line, for each kind of mistake.

use mailsim::engine::time::{MILLISECOND, SECOND, Time};
use mailsim::error::InputError;
use mailsim::scenario::{
    self, ConnectionCacheConfig, Excess, FaultKind, FaultSpec, FaultTarget, GreylistSpec, Latency,
    MaxConnectionsSpec, MxHost, Phases, RateLimitSpec, RateReply, Scenario, Site, SmtpClientConfig,
    SpamSpec, Stage,
};

const MINUTE: Time = 60 * SECOND;
const HOUR: Time = 60 * MINUTE;
const DAY: i64 = 86_400;

fn parse(text: &str) -> Scenario {
    scenario::parse(text, "world.toml").unwrap_or_else(|e| panic!("{e}"))
}

const FULL: &str = r#"name = "world"
[postfix]
smtp_connect_timeout = "10s"
smtp_helo_timeout = 60
smtp_mx_address_limit = 3
smtp_mx_session_limit = 0
fallback_relay = "[relay.test]"
smtp_fallback_relay = "backup.test, [mx2.big.test]:2525 $fallback_relay"
smtp_connection_cache_on_demand = false
smtp_connection_cache_destinations = "grey.test, RELAY.test grey.test"
smtp_connection_cache_time_limit = "5s"
connection_cache_ttl_limit = 3
smtp_connection_reuse_time_limit = "1m"
smtp_connection_reuse_count_limit = 10
smtp_rset_timeout = "5s"

[[traffic]]
to = "big.test"
messages = 10
rate = "5/s"

[[destination]]
domain = "big.test"
latency = "300ms"
dns = "20ms"
connect = { mean = "50ms", sd = "10ms" }
greeting = "100ms"
rcpt = { dist = "exponential", mean = "30ms" }
mx = [
  { host = "MX1.big.test", preference = 10 },
  { host = "mx2.big.test", preference = 20 },
]
greylist = { delay = "5m", retry_window = "12h", lifetime = "30d", auto_whitelist = 0 }
rate_limit = { messages = 100, connections = 20, per = "1m", reply = "450" }
max_connections = { limit = 5, excess = "backlog", backlog = 128 }
spam = { tempfail = 0.02, reject = 0.01 }
unknown_recipients = 0.05

[[destination]]
domain = "grey.test"
greylist = "120s"
max_connections = 3
rate_limit = { connections = 2, per = "10s" }

[[destination]]
domain = "backup.test"
mx = [
  { host = "mx.backup.test", preference = 0, greylist = true, max_connections = { limit = 2, excess = "mute" } },
  { host = "mx1.big.test", preference = 10 },
]

[[destination]]
domain = "relay.test"
greylist = false
max_connections = { limit = 1, excess = "backlog" }

[[destination]]
domain = "mbox.test"
transport = "local"

[[fault]]
at = "1h"
for = "30m"
kind = "blackhole"
target = "mx1.big.test"

[[fault]]
at = "0s"
kind = "tempfail"
stage = "rcpt"
target = "grey.test"

[[fault]]
at = "2h"
for = "90s"
kind = "dns_timeout"
target = "dns"

[[fault]]
at = "3h"
kind = "dns_timeout"
lookup = "30s"
target = "big.test"

[[fault]]
at = "10m"
kind = "tempfail"
target = "relay.test"

[[fault]]
at = "1d"
for = "1h"
kind = "refuse"
target = "backup.test"

[[fault]]
at = "1d"
kind = "mute"
target = "mx2.big.test"

[[fault]]
at = "2d"
kind = "dns_servfail"
target = "grey.test"

[[fault]]
at = "2d"
kind = "dns_nxdomain"
target = "dns"
"#;

#[test]
fn every_new_key_resolves_to_its_checked_value() {
    let s = parse(FULL);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(
        s.smtp,
        SmtpClientConfig {
            connect_timeout: 10,
            helo_timeout: 60,
            mx_address_limit: 3,
            mx_session_limit: 0,
            fallback_relay: vec![
                Site::Domain(2),
                Site::Host("mx2.big.test".into()),
                Site::Host("relay.test".into()),
            ],
            data_done_timeout: 600,
            // The idle limit is the smaller of the client's and scache's.
            connection_cache: ConnectionCacheConfig {
                on_demand: false,
                destinations: vec![1, 3],
                idle_limit: 3,
                reuse_time_limit: 60,
                reuse_count_limit: 10,
                rset_timeout: 5,
            },
        }
    );

    let big = &s.destinations[0];
    assert_eq!(big.domain, "big.test");
    assert_eq!(
        big.phases,
        Phases {
            dns: Latency::Fixed(20 * MILLISECOND),
            connect: Latency::LogNormal {
                mean: 50 * MILLISECOND,
                sd: 10 * MILLISECOND
            },
            greeting: Latency::Fixed(100 * MILLISECOND),
            rcpt: Latency::Exponential {
                mean: 30 * MILLISECOND
            },
            transaction: Latency::Fixed(300 * MILLISECOND),
        }
    );
    assert_eq!(
        big.mx,
        vec![
            MxHost {
                host: "mx1.big.test".into(),
                preference: 10,
                behaviour: None,
            },
            MxHost {
                host: "mx2.big.test".into(),
                preference: 20,
                behaviour: None,
            },
        ]
    );
    assert_eq!(
        big.greylist,
        Some(GreylistSpec {
            delay: 300,
            retry_window: 12 * 3600,
            lifetime: 30 * DAY,
            auto_whitelist: 0,
        })
    );
    assert_eq!(
        big.rate_limit,
        Some(RateLimitSpec {
            messages: Some(100),
            connections: Some(20),
            per: MINUTE,
            reply: RateReply::Rcpt450,
        })
    );
    assert_eq!(
        big.max_connections,
        Some(MaxConnectionsSpec {
            limit: 5,
            excess: Excess::Backlog { length: Some(128) },
        })
    );
    assert_eq!(
        big.spam,
        SpamSpec {
            tempfail: 0.02,
            reject: 0.01
        }
    );
    assert_eq!(big.unknown_recipients, 0.05);

    let grey = &s.destinations[1];
    assert_eq!(
        grey.phases,
        Phases::transaction_only(Latency::Fixed(500 * MILLISECOND))
    );
    assert!(grey.mx.is_empty());
    assert_eq!(
        grey.greylist,
        Some(GreylistSpec {
            delay: 120,
            retry_window: 2 * DAY,
            lifetime: 35 * DAY,
            auto_whitelist: 5,
        })
    );
    assert_eq!(
        grey.max_connections,
        Some(MaxConnectionsSpec {
            limit: 3,
            excess: Excess::Reject421,
        })
    );
    assert_eq!(
        grey.rate_limit,
        Some(RateLimitSpec {
            messages: None,
            connections: Some(2),
            per: 10 * SECOND,
            reply: RateReply::Greeting421,
        })
    );
    assert_eq!(grey.spam, SpamSpec::default());
    assert_eq!(grey.unknown_recipients, 0.0);

    let backup = &s.destinations[2];
    let own = backup.mx[0].behaviour.as_deref().expect("its own keys");
    assert_eq!(
        own.greylist,
        Some(GreylistSpec {
            delay: 300,
            retry_window: 2 * DAY,
            lifetime: 35 * DAY,
            auto_whitelist: 5,
        }),
        "greylist = true is postgrey's defaults"
    );
    assert_eq!(own.max_connections.map(|m| m.excess), Some(Excess::Mute));
    assert_eq!(backup.greylist, None);
    assert_eq!(
        (backup.mx[1].host.as_str(), backup.mx[1].behaviour.is_none()),
        ("mx1.big.test", true),
        "hosts may be shared"
    );

    let relay = &s.destinations[3];
    assert_eq!(relay.greylist, None);
    assert_eq!(
        relay.max_connections.map(|m| m.excess),
        Some(Excess::Backlog { length: None })
    );

    let mbox = &s.destinations[4];
    assert_eq!(s.transports[mbox.transport].name, "local");

    assert_eq!(
        s.faults,
        vec![
            FaultSpec {
                kind: FaultKind::Blackhole,
                start: HOUR,
                end: HOUR + 30 * MINUTE,
                target: FaultTarget::Host("mx1.big.test".into()),
            },
            FaultSpec {
                kind: FaultKind::Tempfail(Stage::Rcpt),
                start: 0,
                end: Time::MAX,
                target: FaultTarget::Domain(1),
            },
            FaultSpec {
                kind: FaultKind::DnsTimeout {
                    lookup: 10 * SECOND
                },
                start: 2 * HOUR,
                end: 2 * HOUR + 90 * SECOND,
                target: FaultTarget::Dns,
            },
            FaultSpec {
                kind: FaultKind::DnsTimeout {
                    lookup: 30 * SECOND
                },
                start: 3 * HOUR,
                end: Time::MAX,
                target: FaultTarget::Domain(0),
            },
            FaultSpec {
                kind: FaultKind::Tempfail(Stage::Greeting),
                start: 10 * MINUTE,
                end: Time::MAX,
                target: FaultTarget::Domain(3),
            },
            FaultSpec {
                kind: FaultKind::Refuse,
                start: 24 * HOUR,
                end: 25 * HOUR,
                target: FaultTarget::Domain(2),
            },
            FaultSpec {
                kind: FaultKind::Mute,
                start: 24 * HOUR,
                end: Time::MAX,
                target: FaultTarget::Host("mx2.big.test".into()),
            },
            FaultSpec {
                kind: FaultKind::DnsServfail,
                start: 48 * HOUR,
                end: Time::MAX,
                target: FaultTarget::Domain(1),
            },
            FaultSpec {
                kind: FaultKind::DnsNxdomain,
                start: 48 * HOUR,
                end: Time::MAX,
                target: FaultTarget::Dns,
            },
        ]
    );
}

/// Twelve lines; each bad case appends its own lines from line 13 on (in `b.test`, the
/// second destination, unless it opens a table of its own).
const BASE: &str = r#"name = "w"
[postfix]
queue_run_delay = "10s"
[[traffic]]
to = "a.test"
messages = 10
rate = "5/s"
[[destination]]
domain = "a.test"
mx = [ { host = "mx1.a.test", preference = 10 } ]
[[destination]]
domain = "b.test"
"#;

#[test]
fn without_the_new_keys_everything_has_its_default() {
    let s = parse(BASE);
    assert_eq!(
        s.smtp,
        SmtpClientConfig {
            connect_timeout: 30,
            helo_timeout: 300,
            mx_address_limit: 5,
            mx_session_limit: 2,
            fallback_relay: Vec::new(),
            data_done_timeout: 600,
            connection_cache: ConnectionCacheConfig {
                on_demand: true,
                destinations: Vec::new(),
                idle_limit: 2,
                reuse_time_limit: 300,
                reuse_count_limit: 0,
                rset_timeout: 20,
            },
        }
    );
    assert!(s.faults.is_empty());
    let b = &s.destinations[1];
    assert_eq!(
        b.phases,
        Phases::transaction_only(Latency::Fixed(500 * MILLISECOND))
    );
    assert_eq!(
        (b.mx.len(), b.greylist, b.rate_limit, b.max_connections),
        (0, None, None, None)
    );
}

#[test]
fn fallback_relay_is_the_default_of_smtp_fallback_relay() {
    let only = BASE.replace(
        "queue_run_delay = \"10s\"",
        "fallback_relay = \"[b.test]:25\"",
    );
    assert_eq!(
        parse(&only).smtp.fallback_relay,
        vec![Site::Host("b.test".into())]
    );
    let both = BASE.replace(
        "queue_run_delay = \"10s\"",
        "fallback_relay = \"b.test\"\nsmtp_fallback_relay = \"[mx1.a.test] a.test\"",
    );
    assert_eq!(
        parse(&both).smtp.fallback_relay,
        vec![Site::Host("mx1.a.test".into()), Site::Domain(0)]
    );
    let empty = BASE.replace("queue_run_delay = \"10s\"", "smtp_fallback_relay = \"\"");
    assert!(parse(&empty).smtp.fallback_relay.is_empty());
}

#[test]
fn a_fault_on_a_domain_that_is_also_an_mx_host_targets_the_domain() {
    let text = format!(
        "{BASE}mx = [ {{ host = \"a.test\", preference = 5 }} ]\n[[fault]]\nat = \"0s\"\nkind = \"refuse\"\ntarget = \"a.test\"\n"
    );
    assert_eq!(parse(&text).faults[0].target, FaultTarget::Domain(0));
}

fn error(text: &str) -> InputError {
    match scenario::parse(text, "bad.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// `extra` appended to BASE gives one error on `line`, whose key contains `key` and whose
/// message contains every one of `says`.
#[track_caller]
fn rejects(extra: &str, line: usize, key: &str, says: &[&str]) {
    let e = error(&format!("{BASE}{extra}"));
    assert_eq!(e.file, "bad.toml");
    assert_eq!(e.line, Some(line), "{e}");
    let shown = e.key.clone().unwrap_or_default();
    assert!(shown.contains(key), "key `{shown}` lacks `{key}`: {e}");
    for s in says {
        assert!(e.message.contains(s), "message lacks `{s}`: {e}");
    }
}

#[test]
fn destination_key_mistakes() {
    rejects(
        "greylist = { delays = \"5m\" }\n",
        13,
        "[[destination]] #2 greylist",
        &["unknown key `delays`", "did you mean `delay`"],
    );
    rejects(
        "tempfail = 0.1\ngreylist = { delay = \"1h\", retry_window = \"30m\" }\n",
        14,
        "greylist.retry_window",
        &["shorter than delay"],
    );
    rejects("greylist = \"1.5s\"\n", 13, "greylist", &["whole seconds"]);
    rejects(
        "greylist = \"3d\"\n",
        13,
        "greylist",
        &["retry_window", "table form"],
    );
    rejects(
        "greylist = { lifetime = \"1d\" }\n",
        13,
        "greylist.lifetime",
        &["shorter than retry_window"],
    );
    rejects("greylist = 5\n", 13, "greylist", &["true", "\"300s\""]);
    rejects("mx = []\n", 13, "mx", &["lists no host"]);
    rejects(
        "mx = [\n  { host = \"mx2.b.test\" },\n]\n",
        13,
        "mx",
        &["mx entry 1", "preference", "0 to 65535"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", preference = 1 }, { host = \"MX.b.test\", preference = 2 } ]\n",
        13,
        "mx",
        &["mx entry 2", "listed twice"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", preference = 1 }, { host = \"mx2.b.test\", preference = 2, greylist = \"soon\" } ]\n",
        13,
        "mx",
        &["mx entry 2"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", preference = 1, tempfail = 0.7, permfail = 0.5 } ]\n",
        13,
        "mx",
        &["mx entry 1", "must not exceed 1"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", preference = 1, unknown_recipients = 0.1 } ]\n",
        13,
        "mx",
        &["unknown key `unknown_recipients`", "greylist"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", preference = 70000 } ]\n",
        13,
        "mx",
        &["0 to 65535"],
    );
    rejects(
        "mx = [ { host = \"mx 1\", preference = 1 } ]\n",
        13,
        "mx",
        &["not a host name"],
    );
    rejects(
        "mx = [ { host = \"mx.b.test\", prefernce = 1 } ]\n",
        13,
        "mx",
        &["did you mean `preference`"],
    );
    rejects(
        "mx = [ { host = \"dns\", preference = 1 } ]\n",
        13,
        "mx",
        &["reserved"],
    );
    rejects(
        "rate_limit = { messages = 10 }\n",
        13,
        "rate_limit.per",
        &["missing", "per = \"1m\""],
    );
    rejects(
        "rate_limit = { per = \"1m\" }\n",
        13,
        "rate_limit",
        &["messages", "connections"],
    );
    rejects(
        "rate_limit = { messages = 10, per = \"1m\", reply = \"500\" }\n",
        13,
        "rate_limit.reply",
        &["\"421\"", "\"450\""],
    );
    rejects(
        "rate_limit = { connections = 10, per = \"1m\", reply = 450 }\n",
        13,
        "rate_limit.reply",
        &["no `messages`"],
    );
    rejects(
        "rate_limit = { messages = 0, per = \"1m\" }\n",
        13,
        "rate_limit.messages",
        &["at least 1"],
    );
    rejects(
        "max_connections = { limit = 5, backlog = 10 }\n",
        13,
        "max_connections.backlog",
        &["excess = \"backlog\""],
    );
    rejects(
        "max_connections = 0\n",
        13,
        "max_connections",
        &["at least 1"],
    );
    rejects(
        "max_connections = { limit = 5, excess = \"backlg\" }\n",
        13,
        "max_connections.excess",
        &["did you mean `backlog`"],
    );
    rejects(
        "max_connections = { excess = \"mute\" }\n",
        13,
        "max_connections.limit",
        &["missing"],
    );
    rejects(
        "spam = { tempfail = 0.6, reject = 0.5 }\n",
        13,
        "spam",
        &["must not exceed 1"],
    );
    rejects(
        "spam = { rejct = 0.5 }\n",
        13,
        "spam",
        &["did you mean `reject`"],
    );
    rejects(
        "spam = { reject = \"high\" }\n",
        13,
        "spam.reject",
        &["not a probability"],
    );
    rejects(
        "unknown_recipients = 1.5\n",
        13,
        "unknown_recipients",
        &["not a probability"],
    );
    rejects("connect = \"fast\"\n", 13, "connect", &["not a duration"]);
    rejects(
        "rcpt = { mean = \"1s\", mode = \"x\" }\n",
        13,
        "rcpt",
        &["unknown key `mode`"],
    );
    rejects(
        "transport = \"local\"\nlatency = \"1ms\"\ngreylist = true\n",
        15,
        "[[destination]] #2 greylist",
        &["transport = \"local\"", "local(8)"],
    );
    rejects(
        "[[destination]]\ndomain = \"dns\"\n",
        14,
        "[[destination]] #3 domain",
        &["reserved"],
    );
}

#[test]
fn dotted_keys_are_located_too() {
    rejects(
        "greylist.delay = \"0s\"\n",
        13,
        "greylist.delay",
        &["at least 1s"],
    );
}

#[test]
fn fault_mistakes() {
    let fault = |body: &str| format!("[[fault]]\n{body}");
    rejects(
        &fault("at = \"1h\"\nkind = \"blackhol\"\ntarget = \"a.test\"\n"),
        15,
        "[[fault]] #1 kind",
        &["not a fault kind", "did you mean `blackhole`"],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"refuse\"\n"),
        13,
        "[[fault]] #1 target",
        &["missing", "\"dns\""],
    );
    rejects(
        &fault("kind = \"refuse\"\ntarget = \"a.test\"\n"),
        13,
        "[[fault]] #1 at",
        &["missing"],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"dns_servfail\"\ntarget = \"mx1.a.test\"\n"),
        16,
        "[[fault]] #1 target",
        &["MX host", "DNS fault"],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"blackhole\"\ntarget = \"dns\"\n"),
        16,
        "target",
        &["resolver", "blackhole"],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"refuse\"\nstage = \"rcpt\"\ntarget = \"a.test\"\n"),
        16,
        "[[fault]] #1 stage",
        &["only applies to kind = \"tempfail\""],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"tempfail\"\nstage = \"helo\"\ntarget = \"a.test\"\n"),
        16,
        "stage",
        &["greeting, mail, rcpt, data"],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"dns_servfail\"\nlookup = \"5s\"\ntarget = \"a.test\"\n"),
        16,
        "[[fault]] #1 lookup",
        &["only applies to kind = \"dns_timeout\""],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"refuse\"\ntarget = \"a.tset\"\n"),
        16,
        "target",
        &[
            "did you mean `a.test`",
            "domains: a.test, b.test",
            "hosts: mx1.a.test",
        ],
    );
    rejects(
        &fault("at = \"1h\"\nkind = \"refuse\"\ntarget = \"local\"\n"),
        16,
        "target",
        &["local"],
    );
    rejects(
        &fault("at = \"1h\"\nfor = \"0s\"\nkind = \"refuse\"\ntarget = \"a.test\"\n"),
        15,
        "[[fault]] #1 for",
        &["must be positive"],
    );
    rejects(
        &fault("at = \"-1h\"\nkind = \"refuse\"\ntarget = \"a.test\"\n"),
        14,
        "[[fault]] #1 at",
        &["negative"],
    );
    // The second fault, to check the index.
    rejects(
        &format!(
            "{}{}",
            fault("at = \"1h\"\nkind = \"refuse\"\ntarget = \"a.test\"\n"),
            fault("at = \"2h\"\nkind = \"mute\"\ntarget = \"c.test\"\n")
        ),
        20,
        "[[fault]] #2 target",
        &["not a destination domain"],
    );
    // Unknown keys are caught by serde, on their line.
    rejects(
        &fault("at = \"1h\"\nkind = \"refuse\"\ntargte = \"a.test\"\n"),
        16,
        "targte",
        &["did you mean `target`"],
    );
}

#[test]
fn a_local_destination_cannot_be_a_fault_target() {
    let text = format!(
        "{BASE}[[destination]]\ndomain = \"mbox.test\"\ntransport = \"local\"\n[[fault]]\nat = \"0s\"\nkind = \"refuse\"\ntarget = \"mbox.test\"\n"
    );
    let e = error(&text);
    assert_eq!(e.line, Some(19), "{e}");
    assert!(e.message.contains("local transport"), "{e}");
}

#[test]
fn smtp_client_parameter_mistakes() {
    let with = |param: &str| BASE.replace("queue_run_delay = \"10s\"", param);
    #[track_caller]
    fn check(text: &str, key: &str, says: &[&str]) {
        let e = error(text);
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        for s in says {
            assert!(e.message.contains(s), "message lacks `{s}`: {e}");
        }
    }
    check(
        &with("smtp_fallback_relay = \"c.test\""),
        "[postfix] smtp_fallback_relay",
        &[
            "not the domain of an SMTP [[destination]]",
            "a.test, b.test",
        ],
    );
    check(
        &with("fallback_relay = \"[a.test]\""),
        "[postfix] fallback_relay",
        &["not a known host", "mx1.a.test"],
    );
    check(
        &with("fallback_relay = \"[b.test\""),
        "[postfix] fallback_relay",
        &["closing `]`"],
    );
    check(
        &with("smtp_fallback_relay = \"b.test:99999\""),
        "[postfix] smtp_fallback_relay",
        &["not a relay", ":port"],
    );
    check(
        &with("smtp_helo_timeout = \"0s\""),
        "[postfix] smtp_helo_timeout",
        &["out of range"],
    );
    check(
        &with("smtp_mx_address_limit = -1"),
        "[postfix] smtp_mx_address_limit",
        &["out of range"],
    );
    check(
        &with("smtp_connect_timeout = \"1.5s\""),
        "[postfix] smtp_connect_timeout",
        &["no fractions"],
    );
    check(
        &with("smtp_fallback_rlay = \"a.test\""),
        "[postfix] smtp_fallback_rlay",
        &["did you mean `smtp_fallback_relay`"],
    );
}

#[test]
fn smtp_client_parameters_are_no_longer_warned_about() {
    let text = BASE.replace(
        "queue_run_delay = \"10s\"",
        "smtp_connect_timeout = 0\nsmtp_rcpt_timeout = \"60s\"",
    );
    let s = parse(&text);
    assert_eq!(s.smtp.connect_timeout, 0);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("smtp_rcpt_timeout"));
}
