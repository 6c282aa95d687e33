//! Fuzzing the scenario parser and validator with proptest: mutated scenario texts must give
//! a scenario or one clean error, never a panic.
//!
//! Seeds are the shipped scenarios, the bad-scenarios corpus and a few texts below that use
//! every key; each case applies 1–8 mutations (lines deleted, duplicated, swapped, values and
//! keys replaced by absurd ones, random bytes inserted, the text cut short). A mutated text
//! that is still valid is played for its first 20 000 events: the model must take whatever
//! the parser accepts.
//!
//! `cargo test` runs a smoke run of 2 000 cases. For a long run:
//!
//! ```sh
//! MAILSIM_FUZZ_CASES=5000000 MAILSIM_FUZZ_SEED=1 cargo test --release --test fuzz_parser
//! ```
//!
//! (`MAILSIM_FUZZ_SEED` picks the random stream, so two shards can run on two cores;
//! `MAILSIM_FUZZ_LAST=FILE` writes each valid text there before it is played, to find what
//! aborted the process if it ever does.)

use mailsim::error::InputError;
use mailsim::guard::Limits;
use mailsim::observe::NullObserver;
use mailsim::output::queues::QueueSeries;
use mailsim::run::simulate_with;
use mailsim::scenario;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// Events played of each valid mutated scenario.
const PLAYED_EVENTS: u64 = 20_000;

/// Texts that exercise the keys the shipped scenarios do not use.
const EXTRA_SEEDS: &[&str] = &[
    r#"name = "world"
sample = "1s"
stop = "2h"
qmgr_start = "-2.5s"
[postfix]
smtp_connect_timeout = "10s"
smtp_helo_timeout = 60
smtp_mx_address_limit = 3
fallback_relay = "[relay.test]"
smtp_fallback_relay = "backup.test, [mx2.big.test]:2525 $fallback_relay"
smtp_destination_concurrency_limit = 10
default_destination_concurrency_negative_feedback = "1/concurrency"
bounce_queue_lifetime = 1
delay_warning_time = "4h"
in_flow_delay = "1s"
[master]
smtp = "-"
slow = 0
[[traffic]]
to = { "big.test" = 2, "relay.test" = 1 }
messages = 10
rate = "5/s"
arrivals = "uniform"
submit = "sendmail"
size = "2.5MB"
recipients = 3
[[traffic]]
to = "mbox.test"
messages = 3
arrivals = "burst"
start = "1m"
[[destination]]
domain = "big.test"
transport = "slow"
latency = "300ms"
dns = "20ms"
connect = { mean = "50ms", sd = "10ms" }
greeting = { min = "10ms", max = "1s" }
rcpt = { dist = "exponential", mean = "30ms" }
mx = [
  { host = "MX1.big.test", preference = 10, greylist = false, latency = "1s" },
  { host = "mx2.big.test", preference = 20 },
]
greylist = { delay = "5m", retry_window = "12h", lifetime = "30d", auto_whitelist = 0 }
rate_limit = { messages = 100, connections = 20, per = "1m", reply = "450" }
max_connections = { limit = 5, excess = "backlog", backlog = 128 }
spam = { tempfail = 0.02, reject = 0.01 }
unknown_recipients = 0.05
[[destination]]
domain = "relay.test"
greylist = "120s"
max_connections = 3
[[destination]]
domain = "backup.test"
[[destination]]
domain = "mbox.test"
transport = "local"
[notices]
to = "relay.test"
latency = { dist = "fixed", value = "5ms" }
[[fault]]
at = "1h"
for = "30m"
kind = "blackhole"
target = "mx1.big.test"
[[fault]]
at = "0s"
kind = "tempfail"
stage = "rcpt"
target = "relay.test"
[[fault]]
at = "2h"
kind = "dns_timeout"
lookup = "30s"
target = "dns"
"#,
    "name = \"x\"\n[[traffic]]\nto = \"a.test\"\nmessages = 1\nrate = \"1/s\"\n[[destination]]\ndomain = \"a.test\"\n",
];

/// Replacement values: the kinds of mistakes an admin makes, and numbers at the edges.
const VALUES: &[&str] = &[
    "\"5 dayz\"",
    "\"5dayz\"",
    "-1",
    "0",
    "1",
    "2",
    "0.5",
    "1.5",
    "-0.0",
    "1e12",
    "1000000000000",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "\"\"",
    "\" \"",
    "true",
    "false",
    "[]",
    "{}",
    "[1, 2]",
    "\"9223372036854775807us\"",
    "\"9223372036854775807s\"",
    "\"999999999999999999999d\"",
    "\"106751991d\"",
    "\"15250w\"",
    "\"0.0000001us\"",
    "\"1.2.3s\"",
    "\".s\"",
    "\"-\"",
    "\"-0s\"",
    "\"1h30m\"",
    "\"1e3s\"",
    "\"NaNs\"",
    "\"-5/s\"",
    "\"0/s\"",
    "\"1/0s\"",
    "\"1e300/s\"",
    "\"nan/s\"",
    "\"inf/h\"",
    "\"1/1us\"",
    "\"1000000000/us\"",
    "\"1/\"",
    "\"/\"",
    "\"1/concurrency\"",
    "\"2/concurrency\"",
    "\"1/0\"",
    "\"random\"",
    "\"burst\"",
    "\"local\"",
    "\"dns\"",
    "\"a.test\"",
    "\"big.test\"",
    "\"mx1.big.test\"",
    "\"[mx1.big.test]\"",
    "\"[nowhere\"",
    "\"a.test:99999\"",
    "\"99999999999TB\"",
    "\"18446744073709551615\"",
    "\"1.5KiB\"",
    "{ mean = \"0s\", sd = \"1s\" }",
    "{ mean = \"1s\", sd = \"-1s\" }",
    "{ min = \"2s\", max = \"1s\" }",
    "{ dist = \"gamma\", mean = \"1s\" }",
    "{ dist = 3 }",
    "{ mean = 5 }",
    "{ value = \"9999999999999d\" }",
    "[ { host = \"x.test\", preference = 70000 } ]",
    "[ { host = \"x.test\" } ]",
    "[ { host = \"x.test\", preference = -1 } ]",
    "[ 1 ]",
    "{ delay = \"0s\" }",
    "{ delay = \"1.5s\" }",
    "{ messages = 0, per = \"1m\" }",
    "{ messages = 1, per = \"0s\" }",
    "{ limit = 0 }",
    "{ limit = 5, excess = \"backlog\", backlog = -1 }",
    "{ tempfail = 0.9, reject = 0.9 }",
    "{ tempfail = nan }",
    "{ \"a.test\" = 0 }",
    "{ \"a.test\" = nan }",
    "{ \"a.test\" = -1, \"b.test\" = 1 }",
    "{ \"nowhere.test\" = 1 }",
    "\"\\u0000\"",
    "\"line\\nbreak\"",
    "'''multi\nline'''",
    "\"\"\"\nunterminated",
    "1979-05-27T07:32:00Z",
];

/// Keys, known and nearly known, in every table.
const KEYS: &[&str] = &[
    "name",
    "nmae",
    "description",
    "seed",
    "sample",
    "stop",
    "qmgr_start",
    "to",
    "messages",
    "rate",
    "arrivals",
    "start",
    "recipients",
    "submit",
    "from",
    "size",
    "domain",
    "transport",
    "latency",
    "tempfail",
    "tempfial",
    "permfail",
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
    "at",
    "for",
    "kind",
    "target",
    "stage",
    "lookup",
    "queue_run_delay",
    "queue_run_dleay",
    "minimal_backoff_time",
    "maximal_backoff_time",
    "maximal_queue_lifetime",
    "bounce_queue_lifetime",
    "delay_warning_time",
    "qmgr_message_active_limit",
    "default_process_limit",
    "smtp_destination_concurrency_limit",
    "foo_destination_concurrency_limit",
    "smtp_destination_rate_delay",
    "smtp_fallback_relay",
    "fallback_relay",
    "smtp_connect_timeout",
    "smtp",
    "local",
    "greylist.delay",
    "latency.mean",
    "\"quoted key\"",
    "a.b.c",
    "\"\"",
];

const HEADERS: &[&str] = &[
    "[postfix]",
    "[master]",
    "[[traffic]]",
    "[[destination]]",
    "[[fault]]",
    "[notices]",
    "[[notices]]",
    "[postfix.smtp]",
    "[[postfix]]",
    "[traffic]",
    "[",
    "[[",
    "[[destination.mx]]",
    "[destination.greylist]",
    "[[ destination ]]",
];

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, String),
    ReplaceKey(usize, String),
    InsertLine(usize, String),
    InsertText(usize, String),
    InsertBytes(usize, Vec<u8>),
    Truncate(usize),
    ReplaceNumber(usize, String),
}

fn value() -> impl Strategy<Value = String> {
    let units = prop::sample::select(vec![
        "us", "ms", "s", "m", "h", "d", "w", "", "x", "dayz", " s", "min", "µs", "KB", "GiB", "/s",
        "/h", "/10s",
    ]);
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        2 => (any::<u64>(), units.clone()).prop_map(|(n, u)| format!("\"{n}{u}\"")),
        1 => (0u32..1000, 0u32..1000, units).prop_map(|(a, b, u)| format!("\"{a}.{b}{u}\"")),
        1 => "[ -~]{0,12}".prop_map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(HEADERS).prop_map(str::to_string),
        1 => "[ -~]{0,30}",
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "00",
            "-1",
            "1e12",
            "99999999999999999999",
            "9223372036854775807",
            "4294967295",
            "65536",
            "0.0000001",
            "nan",
        ])
        .prop_map(str::to_string),
        any::<u64>().prop_map(|n| n.to_string()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => at.prop_map(Mutation::DeleteLine),
        2 => at.prop_map(Mutation::DuplicateLine),
        2 => (at, at).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        5 => (at, value()).prop_map(|(a, v)| Mutation::ReplaceValue(a, v)),
        2 => (at, prop::sample::select(KEYS)).prop_map(|(a, k)| Mutation::ReplaceKey(a, k.to_string())),
        3 => (at, line()).prop_map(|(a, l)| Mutation::InsertLine(a, l)),
        1 => (at, "\\PC{1,4}|[\\[\\]{}=\"'#.,\n]{1,3}").prop_map(|(a, s)| Mutation::InsertText(a, s)),
        1 => (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Mutation::InsertBytes(a, b)),
        1 => at.prop_map(Mutation::Truncate),
        3 => (at, number()).prop_map(|(a, n)| Mutation::ReplaceNumber(a, n)),
    ]
}

/// Byte offset `at` (any number) moved onto a char boundary of `text`.
fn boundary(text: &str, at: usize) -> usize {
    let mut i = at % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match m {
        Mutation::DeleteLine(a) => {
            lines.remove(a % n);
        }
        Mutation::DuplicateLine(a) => {
            let l = lines[a % n].clone();
            lines.insert(a % n, l);
        }
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::ReplaceValue(a, v) => {
            let l = &mut lines[a % n];
            if let Some((k, _)) = l.split_once('=') {
                *l = format!("{k}= {v}");
            } else {
                l.push_str(&format!(" = {v}"));
            }
        }
        Mutation::ReplaceKey(a, k) => {
            let l = &mut lines[a % n];
            *l = match l.split_once('=') {
                Some((_, v)) => format!("{k} ={v}"),
                None => format!("{k} = {l}"),
            };
        }
        Mutation::InsertLine(a, l) => lines.insert(a % (n + 1), l.clone()),
        Mutation::InsertText(a, s) => {
            let mut t = lines.join("\n");
            let i = boundary(&t, *a);
            t.insert_str(i, s);
            return t;
        }
        Mutation::InsertBytes(a, bytes) => {
            let t = lines.join("\n");
            let i = boundary(&t, *a);
            let mut raw = t.as_bytes()[..i].to_vec();
            raw.extend_from_slice(bytes);
            raw.extend_from_slice(&t.as_bytes()[i..]);
            // `load` refuses non-UTF-8 files before parsing; the parser sees text.
            return String::from_utf8_lossy(&raw).into_owned();
        }
        Mutation::Truncate(a) => {
            let t = lines.join("\n");
            let i = boundary(&t, *a);
            return t[..i].to_string();
        }
        Mutation::ReplaceNumber(a, num) => {
            let l = &mut lines[a % n];
            if let Some(start) = l.find(|c: char| c.is_ascii_digit()) {
                let len = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(l.len() - start);
                l.replace_range(start..start + len, num);
            }
        }
    }
    let mut t = lines.join("\n");
    t.push('\n');
    t
}

fn seeds() -> Vec<String> {
    let mut out: Vec<String> = EXTRA_SEEDS.iter().map(|s| s.to_string()).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["scenarios", "tests/bad-scenarios"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "toml")
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                out.push(t);
            }
        }
    }
    out
}

/// What every error must satisfy: it says something, names the file, points at a line of
/// the file (if any), and prints as one line.
fn check_error(text: &str, e: &InputError) -> Result<(), TestCaseError> {
    prop_assert_eq!(&e.file, "fuzz.toml");
    prop_assert!(!e.message.trim().is_empty(), "empty message: {:?}", e);
    if let Some(line) = e.line {
        let last = text.lines().count().max(1);
        prop_assert!(
            (1..=last).contains(&line),
            "line {} outside 1..={}: {}",
            line,
            last,
            e
        );
    }
    if let Some(key) = &e.key {
        prop_assert!(!key.trim().is_empty(), "empty key: {:?}", e);
    }
    // The line shown holds the key (or is the header of the table that lacks it).
    if let (Some(line), Some(key)) = (e.line, &e.key) {
        let written = text.lines().nth(line - 1).unwrap_or_default();
        let last = key.rsplit(' ').next().unwrap_or_default();
        let base = last
            .trim_matches(['[', ']'])
            .split('.')
            .next()
            .unwrap_or_default();
        let header = written.trim_start().starts_with('[');
        // The empty key is shown as `""` whether written `""` or `''`.
        let empty = base == "\"\"" && written.contains("''");
        prop_assert!(
            written.contains(base) || header || empty || e.message.contains("missing"),
            "line {} `{}` does not hold key `{}`: {}",
            line,
            written,
            key,
            e
        );
    }
    let shown = e.to_string();
    prop_assert!(!shown.contains(['\n', '\r']), "not one line: {:?}", shown);
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn mutated_scenarios_give_a_scenario_or_one_clean_error() {
    let cases = u32::try_from(env_u64("MAILSIM_FUZZ_CASES", 2_000)).unwrap_or(u32::MAX);
    let seed = env_u64("MAILSIM_FUZZ_SEED", 0);
    let seeds = seeds();
    let last = std::env::var_os("MAILSIM_FUZZ_LAST");
    assert!(seeds.len() >= 10, "seed corpus not found");
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // Crashes found are kept as explicit cases in `regressions` below instead.
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (
        0..seeds.len(),
        // Mostly a few mutations, so that a share of the texts stays valid.
        prop_oneof![
            3 => prop::collection::vec(mutation(), 1..=2),
            1 => prop::collection::vec(mutation(), 3..=8),
        ],
    );
    let mut runner = TestRunner::new(config);
    // The runner takes an `Fn`: count through cells.
    let (ok, err, slowest) = (Cell::new(0u64), Cell::new(0u64), Cell::new(Duration::ZERO));
    let slowest_lines = Cell::new(0usize);
    let result = runner.run(&strategy, |(which, mutations)| {
        let mut text = seeds[which].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        let started = Instant::now();
        let parsed = scenario::parse(&text, "fuzz.toml");
        let took = started.elapsed();
        if took > slowest.get() {
            slowest.set(took);
            slowest_lines.set(text.lines().count());
        }
        match parsed {
            Ok(sc) => {
                ok.set(ok.get() + 1);
                // The guards computed from a valid scenario must not overflow or panic, and
                // the model must take whatever the parser accepts: play the first events.
                let estimate = mailsim::guard::estimate(&sc);
                if estimate.bytes < (256 << 20) as f64 {
                    // An abort (out of memory) cannot be caught: leave the text behind.
                    if let Some(path) = &last {
                        let _ = std::fs::write(path, &text);
                    }
                    let mut series = QueueSeries::default();
                    let limits = Limits {
                        max_events: Some(PLAYED_EVENTS),
                    };
                    let _ = simulate_with(
                        &sc,
                        sc.seed,
                        &mut NullObserver,
                        &mut series,
                        &limits,
                        |_| {},
                    );
                }
            }
            Err(e) => {
                err.set(err.get() + 1);
                check_error(&text, &e)
                    .map_err(|f| TestCaseError::fail(format!("{f}\ntext: {text:?}")))?;
            }
        }
        Ok(())
    });
    let (ok, err, slowest) = (ok.get(), err.get(), slowest.get());
    eprintln!(
        "fuzz_parser: {cases} cases (seed {seed}): {ok} valid, {err} errors; slowest parse {slowest:?} ({} lines)",
        slowest_lines.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // A parse is a few tens of microseconds; seconds would mean a hang-like blow-up.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest parse {slowest:?}"
    );
}
