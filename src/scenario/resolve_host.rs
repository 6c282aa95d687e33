//! Resolving what describes our own host: the queue file system (`[disk]`) and message
//! sizes (§7.1).

use super::remote::DiskSpec;
use super::{At, Resolver, did_you_mean, raw, units};
use crate::error::InputError;

/// A message-size distribution, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeDist {
    Fixed(u64),
    Uniform { min: u64, max: u64 },
    Exponential { mean: u64 },
    LogNormal { mean: u64, sd: u64 },
}

impl Resolver<'_> {
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
