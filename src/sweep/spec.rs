//! What a sweep varies: `--set NAME=V1,V2` on the command line and the `[sweep]` table of
//! the scenario file, expanded into points (the Cartesian product of the sets), each a
//! scenario text checked by the same validator as `mailsim run`.
//!
//! NAME is a path into the scenario file: `postfix.maximal_backoff_time` (or just
//! `maximal_backoff_time` for any `[postfix]` parameter), `traffic.0.rate`,
//! `destination.1.latency`, `fault.0.for`, or a top-level key such as `stop`.

use crate::error::InputError;
use crate::scenario::{self, Scenario};

/// One swept name and its values, as TOML values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The path as written (for CSV headers and plot legends).
    pub name: String,
    path: Vec<PathPart>,
    pub values: Vec<toml::Value>,
}

#[derive(Clone, Debug, PartialEq)]
enum PathPart {
    Key(String),
    Index(usize),
}

/// A sweep: axes, replications, and the scenario text they apply to.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    pub axes: Vec<Axis>,
    pub replications: u32,
    base: toml::Table,
    pub base_scenario: Scenario,
    file: String,
}

/// One point of the sweep: a value per axis, and the scenario they make.
#[derive(Clone, Debug)]
pub struct Point {
    pub values: Vec<toml::Value>,
    pub scenario: Scenario,
}

/// The text of a value for CSV cells and labels (strings without quotes).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `NAME=V1,V2,…`: values that read as TOML (numbers, booleans, quoted strings, inline
/// tables) are taken as such, anything else as a string (`300s`).
pub fn parse_set(arg: &str) -> Result<(String, Vec<toml::Value>), String> {
    let Some((name, values)) = arg.split_once('=') else {
        return Err(format!(
            "--set `{arg}`: write NAME=V1,V2,… e.g. --set maximal_backoff_time=1000s,4000s"
        ));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("--set `{arg}`: the name is missing"));
    }
    let values: Vec<toml::Value> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(literal)
        .collect();
    if values.is_empty() {
        return Err(format!("--set `{arg}`: no values"));
    }
    Ok((name.to_string(), values))
}

fn literal(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

impl SweepSpec {
    /// Reads the sweep of scenario `text` (its `[sweep]` table), with `cli_sets` and
    /// `cli_replications` from the command line taking precedence.
    pub fn new(
        text: &str,
        file: &str,
        cli_sets: &[(String, Vec<toml::Value>)],
        cli_replications: Option<u32>,
    ) -> Result<SweepSpec, InputError> {
        let base_scenario = scenario::parse(text, file)?;
        let mut base: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            InputError::new(file, None, None, e.message().to_string())
        })?;
        let err = |key: &str, message: String| {
            let line = scenario::locate::key_line(text, "sweep", None, Some(key));
            InputError::new(file, line, Some(&format!("[sweep] {key}")), message)
        };
        let mut sets: Vec<(String, Vec<toml::Value>)> = Vec::new();
        let mut replications = None;
        if let Some(sweep) = base.remove("sweep") {
            let toml::Value::Table(sweep) = sweep else {
                return Err(err("sweep", "must be a table".into()));
            };
            for (key, v) in sweep {
                match (key.as_str(), v) {
                    ("replications", toml::Value::Integer(n)) => {
                        replications =
                            Some(u32::try_from(n).ok().filter(|&n| n >= 1).ok_or_else(|| {
                                err("replications", format!("`{n}`: give 1 to {}", u32::MAX))
                            })?);
                    }
                    ("replications", _) => {
                        return Err(err("replications", "must be a positive integer".into()));
                    }
                    ("set", toml::Value::Table(t)) => {
                        for (name, values) in t {
                            let values = match values {
                                toml::Value::Array(a) if !a.is_empty() => a,
                                toml::Value::Array(_) => {
                                    return Err(err(&name, "lists no values".into()));
                                }
                                single => vec![single],
                            };
                            sets.push((name, values));
                        }
                    }
                    ("set", _) => {
                        return Err(err(
                            "set",
                            "is a table of NAME = [values], e.g. set = { maximal_backoff_time = [\"1000s\", \"4000s\"] }".into(),
                        ));
                    }
                    (other, _) => {
                        return Err(err(
                            other,
                            format!(
                                "unknown key{} (accepted: set, replications)",
                                match crate::scenario::locate::near_miss(
                                    other,
                                    ["set", "replications"]
                                ) {
                                    Some(c) => format!("; did you mean `{c}`?"),
                                    None => String::new(),
                                }
                            ),
                        ));
                    }
                }
            }
        }
        let from_file = sets.len();
        for (name, values) in cli_sets {
            sets.retain(|(n, _)| n != name);
            sets.push((name.clone(), values.clone()));
        }
        let mut axes = Vec::new();
        for (k, (name, values)) in sets.into_iter().enumerate() {
            let path = resolve_path(&base, &name).map_err(|m| {
                if k < from_file && !cli_sets.iter().any(|(n, _)| *n == name) {
                    err("set", m)
                } else {
                    InputError::new(file, None, Some(&format!("--set {name}")), m)
                }
            })?;
            axes.push(Axis { name, path, values });
        }
        let spec = SweepSpec {
            axes,
            replications: cli_replications.or(replications).unwrap_or(1),
            base,
            base_scenario,
            file: file.to_string(),
        };
        Ok(spec)
    }

    /// Number of points (1 for a sweep of replications only).
    pub fn point_count(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Point `i` (axes vary fastest from the last one), checked like a scenario file.
    pub fn point(&self, i: usize) -> Result<Point, InputError> {
        let mut rest = i;
        let mut chosen = vec![toml::Value::Boolean(false); self.axes.len()];
        for (k, axis) in self.axes.iter().enumerate().rev() {
            let n = axis.values.len();
            chosen[k] = axis.values[rest % n].clone();
            rest /= n;
        }
        let mut table = self.base.clone();
        for (axis, v) in self.axes.iter().zip(&chosen) {
            set_path(&mut table, &axis.path, v.clone());
        }
        let label = self.label(&chosen);
        let text = toml::to_string(&table).map_err(|e| {
            InputError::new(&self.file, None, None, format!("sweep point {label}: {e}"))
        })?;
        let scenario = scenario::parse(&text, &self.file).map_err(|e| {
            InputError::new(
                &self.file,
                None,
                e.key.as_deref(),
                format!("sweep point {label}: {}", e.message),
            )
        })?;
        Ok(Point {
            values: chosen,
            scenario,
        })
    }

    /// `name=value, …` for messages and legends.
    pub fn label(&self, values: &[toml::Value]) -> String {
        self.axes
            .iter()
            .zip(values)
            .map(|(a, v)| format!("{}={}", a.name, value_text(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Turns NAME into a path that exists (or can be created) in the scenario table.
fn resolve_path(base: &toml::Table, name: &str) -> Result<Vec<PathPart>, String> {
    let parts: Vec<&str> = name
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty())
        .collect();
    let is_postfix_param = |p: &str| {
        scenario::params::GLOBAL.iter().any(|(n, _, _)| *n == p)
            || scenario::params::PER_TRANSPORT_TAILS
                .iter()
                .any(|t| p.ends_with(t))
    };
    let parts: Vec<&str> = match parts.as_slice() {
        [single] if is_postfix_param(single) => vec!["postfix", single],
        _ => parts,
    };
    let Some((&head, rest)) = parts.split_first() else {
        return Err("an empty name".into());
    };
    const HEADS: [&str; 10] = [
        "postfix",
        "master",
        "traffic",
        "destination",
        "fault",
        "admin",
        "disk",
        "filter",
        "stop",
        "qmgr_start",
    ];
    if !HEADS.contains(&head) {
        let candidates: Vec<&str> = HEADS
            .iter()
            .copied()
            .chain(scenario::params::GLOBAL.iter().map(|(n, _, _)| *n))
            .collect();
        return Err(format!(
            "`{name}`: a sweep sets a [postfix] parameter (`maximal_backoff_time`) or a path into the scenario file such as traffic.0.rate, destination.0.latency, fault.0.for, postfix.NAME, master.NAME, stop{}",
            match scenario::locate::near_miss(head, candidates) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            }
        ));
    }
    let mut path = vec![PathPart::Key(head.to_string())];
    let mut node = base.get(head);
    for part in rest {
        match part.parse::<usize>() {
            Ok(i) => {
                let len = node.and_then(|n| n.as_array()).map(Vec::len);
                match len {
                    Some(len) if i < len => {}
                    Some(len) => {
                        return Err(format!(
                            "`{name}`: the scenario has {len} [[{head}]] entries, numbered from 0"
                        ));
                    }
                    None => return Err(format!("`{name}`: `{head}` is not a list here")),
                }
                node = node.and_then(|n| n.as_array()).and_then(|a| a.get(i));
                path.push(PathPart::Index(i));
            }
            Err(_) => {
                if node.is_some_and(|n| n.is_array()) {
                    return Err(format!(
                        "`{name}`: [[{head}]] is a list; name an entry by its number, e.g. {head}.0.{part}"
                    ));
                }
                node = node.and_then(|n| n.get(*part));
                path.push(PathPart::Key(part.to_string()));
            }
        }
    }
    Ok(path)
}

/// Sets `value` at `path`, creating tables on the way.
fn set_path(table: &mut toml::Table, path: &[PathPart], value: toml::Value) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut node: &mut toml::Value = match init.first() {
        Some(PathPart::Key(k)) => table
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        _ => return,
    };
    for part in init.iter().skip(1) {
        node = match part {
            PathPart::Key(k) => {
                let Some(t) = node.as_table_mut() else { return };
                t.entry(k.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            PathPart::Index(i) => {
                let Some(a) = node.as_array_mut() else { return };
                let Some(entry) = a.get_mut(*i) else { return };
                entry
            }
        };
    }
    match (last, init.is_empty()) {
        (PathPart::Key(k), true) => {
            table.insert(k.clone(), value);
        }
        (PathPart::Key(k), false) => {
            if let Some(t) = node.as_table_mut() {
                t.insert(k.clone(), value);
            }
        }
        (PathPart::Index(i), _) => {
            if let Some(slot) = node.as_array_mut().and_then(|a| a.get_mut(*i)) {
                *slot = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "s"
[postfix]
queue_run_delay = "300s"
[[traffic]]
to = "d.test"
messages = 10
rate = "1/s"
[[destination]]
domain = "d.test"
"#;

    #[test]
    fn values_read_as_toml_or_as_strings() {
        let (name, v) = parse_set("maximal_backoff_time=1000s, 4000s").expect("parses");
        assert_eq!(name, "maximal_backoff_time");
        assert_eq!(
            v,
            [
                toml::Value::String("1000s".into()),
                toml::Value::String("4000s".into())
            ]
        );
        let (_, v) = parse_set("traffic.0.messages=5,10").expect("parses");
        assert_eq!(v, [toml::Value::Integer(5), toml::Value::Integer(10)]);
        assert!(parse_set("novalue").is_err());
    }

    #[test]
    fn points_are_the_cartesian_product_last_axis_fastest() {
        let sets = vec![
            parse_set("maximal_backoff_time=1000s,4000s").expect("parses"),
            parse_set("traffic.0.messages=5,6,7").expect("parses"),
        ];
        let spec = SweepSpec::new(TEXT, "s.toml", &sets, Some(3)).expect("valid");
        assert_eq!(spec.point_count(), 6);
        let p = spec.point(4).expect("valid point");
        assert_eq!(p.scenario.postfix.maximal_backoff_time, 4000);
        assert_eq!(p.scenario.traffic[0].messages, Some(6));
        assert_eq!(spec.replications, 3);
    }

    #[test]
    fn unknown_names_and_bad_values_are_input_errors() {
        let bad = vec![parse_set("traffic.3.rate=1/s").expect("parses")];
        let e = SweepSpec::new(TEXT, "s.toml", &bad, None).expect_err("no traffic 3");
        assert!(e.message.contains("1 [[traffic]] entries"), "{e}");
        let bad = vec![parse_set("postfx.x=1").expect("parses")];
        let e = SweepSpec::new(TEXT, "s.toml", &bad, None).expect_err("unknown head");
        assert!(e.message.contains("did you mean `postfix`"), "{e}");
        let bad = vec![parse_set("queue_run_delay=fast").expect("parses")];
        let spec = SweepSpec::new(TEXT, "s.toml", &bad, None).expect("names are fine");
        let e = spec.point(0).expect_err("bad value");
        assert!(
            e.message
                .contains("sweep point postfix.queue_run_delay=fast")
                || e.message.contains("queue_run_delay=fast"),
            "{e}"
        );
    }
}
