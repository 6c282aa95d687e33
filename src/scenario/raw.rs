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
        let line = e.span().map(|s| locate::line_of_offset(text, s.start));
        let message = e.message().trim().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            let hint = match locate::near_miss(&field, expected.iter().copied()) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            };
            return InputError::new(
                file,
                line,
                Some(&field),
                format!("unknown key{hint} (accepted here: {})", expected.join(", ")),
            );
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            return InputError::new(
                file,
                line,
                Some(&field),
                "is required here but missing".into(),
            );
        }
        let key = line.and_then(|l| key_on_line(text, l));
        InputError::new(file, line, key.as_deref(), message)
    })
}

/// The key of a `key = value` line, to name it in syntax and type errors.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim().trim_matches(['"', '\'']);
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}
