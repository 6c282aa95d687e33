//! The scenario file as serde reads it: names exactly as users write them, unknown keys
//! rejected, nothing interpreted yet.

use super::locate;
use crate::error::InputError;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub sample: Option<String>,
    pub stop: Option<String>,
    pub qmgr_start: Option<String>,
    #[serde(default)]
    pub postfix: BTreeMap<String, ParamValue>,
    #[serde(default)]
    pub master: BTreeMap<String, ParamValue>,
    #[serde(default)]
    pub traffic: Vec<Traffic>,
    #[serde(default)]
    pub destination: Vec<Destination>,
    pub notices: Option<Notices>,
    #[serde(default)]
    pub fault: Vec<Fault>,
    #[serde(default)]
    pub admin: Vec<Admin>,
    pub disk: Option<Disk>,
    pub kernel: Option<Kernel>,
    pub host: Option<Host>,
    /// Read by `mailsim sweep` (sweep/spec.rs); a plain run ignores it.
    #[serde(rename = "sweep")]
    pub _sweep: Option<toml::Value>,
    pub filter: Option<Filter>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    pub to: toml::Value,
    pub messages: Option<u64>,
    pub rate: Option<String>,
    pub arrivals: Option<String>,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub recipients: Option<u32>,
    pub submit: Option<String>,
    pub from: Option<String>,
    pub size: Option<toml::Value>,
    pub sender_retry: Option<String>,
    pub sender_lifetime: Option<String>,
    pub receive: Option<toml::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub domain: String,
    pub transport: Option<String>,
    pub latency: Option<toml::Value>,
    pub tempfail: Option<f64>,
    pub permfail: Option<f64>,
    // The remote world (`remote.rs`). Inline tables stay `toml::Value` so that their unknown
    // keys get the same "did you mean" error, naming the destination, as `latency`.
    pub dns: Option<toml::Value>,
    pub connect: Option<toml::Value>,
    pub greeting: Option<toml::Value>,
    pub rcpt: Option<toml::Value>,
    pub mx: Option<toml::Value>,
    pub greylist: Option<toml::Value>,
    pub rate_limit: Option<toml::Value>,
    pub max_connections: Option<toml::Value>,
    pub spam: Option<toml::Value>,
    pub unknown_recipients: Option<f64>,
}

/// One `[[fault]]`. Required keys are optional here so that a missing one is reported by
/// the resolver, with what it accepts, rather than as serde's bare "missing field".
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub at: Option<String>,
    #[serde(rename = "for")]
    pub duration: Option<String>,
    pub kind: Option<String>,
    pub target: Option<String>,
    pub stage: Option<String>,
    pub lookup: Option<String>,
    pub fill: Option<ParamValue>,
    pub factor: Option<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Notices {
    pub to: Option<String>,
    pub latency: Option<toml::Value>,
}

/// How the content filter behaves (an SMTP server on our host).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub latency: Option<toml::Value>,
    pub connect: Option<toml::Value>,
    pub greeting: Option<toml::Value>,
    pub tempfail: Option<f64>,
    pub permfail: Option<f64>,
    pub max_connections: Option<toml::Value>,
}

/// The queue file system.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub size: ParamValue,
    pub used: Option<ParamValue>,
}

/// Our host's TCP stack (`[kernel]`, the sysctls `net.ipv4.tcp_syn_*`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub tcp_syn_retries: Option<i64>,
    pub tcp_syn_linear_timeouts: Option<i64>,
}

/// How fast our host runs Postfix's own hand-offs, and the agents' own CPU work (what a
/// `load` fault slows) (`[host]`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub agent_handoff: Option<String>,
    pub agent_report: Option<String>,
    pub agent_cpu: Option<String>,
}

/// An administrator's command on the timeline.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub at: String,
    pub command: String,
}

/// A main.cf-style value: users write `qmgr_message_active_limit = 200` or `"200"`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Text(String),
    Float(f64),
    Bool(bool),
}

impl ParamValue {
    pub fn as_text(&self) -> String {
        match self {
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Text(s) => s.clone(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        }
    }
}

/// Reads `text` with serde; a syntax error or an unknown key becomes an [`InputError`] with
/// the line, the key and, for a near miss, a suggestion.
pub fn read(text: &str, file: &str) -> Result<Scenario, InputError> {
    toml::from_str::<Scenario>(text).map_err(|e| {
        // An error at the very end (an unterminated string) points past the last line.
        let last = text.lines().count().max(1);
        let line = e
            .span()
            .map(|s| locate::line_of_offset(text, s.start).min(last));
        let message = e.message().trim().to_string();
        let header = line.and_then(|l| header_on_line(text, l));
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            let hint = match locate::near_miss(&field, expected.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            };
            // `"" = 1` is a valid TOML key: show it as written.
            let field = if field.is_empty() {
                "\"\"".into()
            } else {
                field
            };
            let shown = match header {
                Some(_) => field.clone(),
                None => qualified(text, line, &field),
            };
            return InputError::new(
                file,
                line,
                Some(&shown),
                format!("unknown key{hint} (accepted here: {})", expected.join(", ")),
            );
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            let shown = qualified(text, line, &field);
            let place = if shown == field {
                "at the top of the file"
            } else {
                "to this table"
            };
            return InputError::new(
                file,
                line,
                Some(&shown),
                format!("is required but missing: add `{field} = …` {place}"),
            );
        }
        if let Some(h) = header {
            return InputError::new(file, line, Some(&h), header_message(&h, &message));
        }
        let key = line.and_then(|l| key_on_line(text, l));
        let shown = key.as_deref().map(|k| qualified(text, line, k));
        InputError::new(file, line, shown.as_deref(), plain_message(&message))
    })
}

/// Tables that appear once (`[postfix]`) and lists of tables (`[[traffic]]`).
const SINGLE_TABLES: &[&str] = &[
    "postfix", "master", "notices", "disk", "kernel", "host", "filter", "sweep",
];
const TABLE_LISTS: &[&str] = &["traffic", "destination", "fault", "admin"];

/// What went wrong with a `[table]` or `[[table]]` header line.
fn header_message(header: &str, message: &str) -> String {
    let name = header.trim_matches(['[', ']', ' ']);
    let double = header.starts_with("[[");
    if SINGLE_TABLES.contains(&name) {
        if double {
            return format!("[{name}] is a single table: write [{name}], not [[{name}]]");
        }
        if message.contains("duplicate") {
            return format!("[{name}] appears twice; put all its keys under one [{name}] header");
        }
    }
    if TABLE_LISTS.contains(&name) && !double {
        return format!(
            "[[{name}]] is a list of tables: write [[{name}]] (two brackets) before each one"
        );
    }
    plain_message(message)
}

/// The TOML parser's and serde's wording, in terms of the file rather than of Rust types.
fn plain_message(message: &str) -> String {
    let known = [
        (
            "duplicate key",
            "is set twice in the same table; TOML allows each key once",
        ),
        (
            "invalid basic string, expected `\"`",
            "unterminated string: the closing `\"` is missing (a string that spans lines is written \"\"\"…\"\"\")",
        ),
        (
            "invalid multi-line basic string, expected `\"`",
            "unterminated multi-line string: the closing `\"\"\"` is missing",
        ),
        (
            "string values must be quoted, expected literal string",
            "string values must be quoted, e.g. \"200ms\"",
        ),
        (
            "key with no value, expected `=`",
            "a key needs `= value`, e.g. rate = \"5/s\"",
        ),
        (
            "unexpected key or value, expected newline, `#`",
            "unexpected text after the value: one `key = value` per line",
        ),
        (
            "unclosed table, expected `]`",
            "the [table] header lacks its closing `]`",
        ),
        (
            "unclosed array table, expected `]`",
            "the [[table]] header lacks its closing `]]`",
        ),
        (
            "data did not match any variant of untagged enum ParamValue",
            "a parameter value is a number, a string or a boolean (yes/no as a string), not a table, list or date",
        ),
    ];
    if let Some((_, plain)) = known.iter().find(|(raw, _)| message == *raw) {
        return plain.to_string();
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let numeric = matches!(expected, "u64" | "u32" | "i64" | "f64");
        let quoted = found.starts_with("string ");
        return format!(
            "expected {}, found {}{}",
            expected_text(expected),
            found_text(found),
            if numeric && quoted {
                " (numbers are written without quotes)"
            } else {
                ""
            }
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "{} is out of range: expected {}",
            found_text(found),
            expected_text(expected)
        );
    }
    message.to_string()
}

fn expected_text(rust: &str) -> String {
    match rust {
        "u64" => "a whole number from 0 to 18446744073709551615".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "i64" => "a whole number".into(),
        "f64" => "a number such as 0.5".into(),
        "a string" => "a string in double quotes".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.to_string(),
    }
}

fn found_text(serde: &str) -> String {
    if let Some(s) = serde.strip_prefix("string ") {
        return format!("the string {s}");
    }
    if let Some(f) = serde.strip_prefix("floating point ") {
        return format!("the decimal number {f} (a whole number has no decimal point or exponent)");
    }
    if let Some(i) = serde.strip_prefix("integer ") {
        return format!("the number {i}");
    }
    match serde {
        "map" => "a table".into(),
        "sequence" => "a list".into(),
        other => other.to_string(),
    }
}

/// `key` as the resolver names it: `name`, `[postfix] key`, `[[traffic]] #2 key`.
fn qualified(text: &str, line: Option<usize>, key: &str) -> String {
    match line.and_then(|l| locate::table_at(text, l)) {
        None => key.to_string(),
        Some((table, None)) => format!("[{table}] {key}"),
        Some((table, Some(i))) => format!("[[{table}]] #{} {key}", i + 1),
    }
}

/// The header written on `line`, if the line is a `[table]` or `[[table]]` header.
fn header_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    let l = l.split('#').next().unwrap_or_default().trim_end();
    l.starts_with('[').then(|| l.to_string())
}

/// The key of a `key = value` line (or the first word of a line that lacks its `=`), to
/// name it in syntax and type errors.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let key = match l.split_once('=') {
        Some((key, _)) => key,
        None => l.split_whitespace().next()?,
    };
    let key = key.trim().trim_matches(['"', '\'']);
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    (!key.is_empty() && key.chars().all(bare)).then(|| key.to_string())
}
