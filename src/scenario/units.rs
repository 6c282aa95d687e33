//! Units in scenario files: Postfix time values, simulator durations, rates and sizes.
//!
//! Postfix parameters follow Postfix's own parser (`conv_time.c`, `mail_conf_time.c`): an
//! integer with an optional one-letter unit `s m h d w`; a bare number takes the parameter's
//! default unit; no fractions and no compound values. Postfix silently reads `1h30m` as `1h`;
//! we reject it instead, because a silent truncation is exactly the mistake a user wants
//! caught before touching a server. Simulator settings (latencies, sample step, …) accept
//! decimals and `us`/`ms` too.

use crate::engine::time::{SECOND, Time};

/// The longest duration or instant a scenario may give: 100 years. Simulated time is an
/// `i64` of microseconds (292 000 years); keeping every input three orders of magnitude below
/// that lets the model add lifetimes, backoffs and latencies without overflowing the clock.
pub const MAX_DURATION: Time = 100 * 365 * 86_400 * SECOND;

/// [`MAX_DURATION`] as users read it.
pub const MAX_DURATION_TEXT: &str = "100 years (5214w)";

/// Parses a Postfix time value (`300s`, `5d`, `300` with `default_unit`), in seconds;
/// values beyond `i64` saturate to `i64::MAX` (every caller checks a range).
pub fn parse_postfix_time(text: &str, default_unit: char) -> Result<i64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits_end == 0 {
        return Err(format!(
            "`{t}` is not a Postfix time value: expected an integer with an optional unit s, m, h, d or w (e.g. `300s`, `5d`)"
        ));
    }
    // Too many digits for an i64 is simply very large: saturate, and let the caller's range
    // check say what is accepted.
    let number: i64 = t[..digits_end].parse().unwrap_or(i64::MAX);
    let unit_text = &t[digits_end..];
    let unit = match unit_text.len() {
        0 => default_unit,
        1 => unit_text.chars().next().unwrap_or(default_unit),
        _ => {
            return Err(format!(
                "`{t}`: Postfix accepts a single unit letter (s, m, h, d, w) and no fractions or compound values"
            ));
        }
    };
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        other => {
            return Err(format!(
                "`{t}`: unknown time unit `{other}` (Postfix accepts s, m, h, d, w)"
            ));
        }
    };
    Ok(number.saturating_mul(factor))
}

/// Parses a simulator duration such as `200ms`, `1.5s`, `10m`, `2d`; a unit is required.
/// `allow_negative` admits a leading `-` (instants before the run starts).
pub fn parse_duration(text: &str, allow_negative: bool) -> Result<Time, String> {
    let t = text.trim();
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) if allow_negative => (true, rest),
        Some(_) => return Err(format!("`{t}`: a negative duration is not allowed here")),
        None => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(num_end);
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(format!(
            "`{t}` is not a duration: expected a number and a unit (us, ms, s, m, h, d, w), e.g. `200ms` or `5m`"
        ));
    }
    let scale: Time = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => SECOND,
        "m" | "min" => 60 * SECOND,
        "h" => 3_600 * SECOND,
        "d" => 86_400 * SECOND,
        "w" => 604_800 * SECOND,
        "" => {
            return Err(format!(
                "`{t}` has no unit: write e.g. `{num}s` or `{num}ms` (accepted units: us, ms, s, m, h, d, w)"
            ));
        }
        other => {
            return Err(format!(
                "`{t}`: unknown unit `{other}` (accepted units: us, ms, s, m, h, d, w)"
            ));
        }
    };
    let too_long = || format!("`{t}` is too long: durations go up to {MAX_DURATION_TEXT}");
    let value = decimal_times(num, scale).ok_or_else(too_long)?;
    if value > MAX_DURATION {
        return Err(too_long());
    }
    Ok(if negative { -value } else { value })
}

/// `num` (a decimal string) × `scale`, exactly, rounded to the nearest integer unit.
fn decimal_times(num: &str, scale: i64) -> Option<i64> {
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let int: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut value = int.checked_mul(scale)?;
    let mut place = scale;
    for (i, c) in frac_part.chars().enumerate() {
        let digit = i64::from(c.to_digit(10)?);
        if place >= 10 {
            place /= 10;
            value = value.checked_add(digit * place)?;
        } else if i < 19 {
            // Below the resolution: round half up on the first dropped digit.
            if digit >= 5 && place == 1 {
                value = value.checked_add(1)?;
            }
            break;
        }
    }
    Some(value)
}

/// A rate `N/unit` (`50/s`, `3000/h`, `1/10s`), as events per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let Some((count, per)) = t.split_once('/') else {
        return Err(format!(
            "`{t}` is not a rate: write a count per period, e.g. `50/s`, `3000/h` or `1/10s`"
        ));
    };
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{t}`: `{count}` is not a number"))?;
    if !count.is_finite() || count <= 0.0 {
        return Err(format!("`{t}`: the rate must be positive"));
    }
    let per = per.trim();
    let period = if per.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        parse_duration(per, false)?
    } else {
        parse_duration(&format!("1{per}"), false)?
    };
    if period <= 0 {
        return Err(format!("`{t}`: the period must be positive"));
    }
    let rate = count * SECOND as f64 / period as f64;
    // One message per MAX_DURATION at least: a slower stream would never send anything, and
    // its gaps would overflow the clock.
    if rate * (MAX_DURATION / SECOND) as f64 <= 1.0 {
        return Err(format!(
            "`{t}` is too slow: a stream sends at least one message per {MAX_DURATION_TEXT}"
        ));
    }
    if !rate.is_finite() {
        return Err(format!("`{t}`: the rate is too large"));
    }
    Ok(rate)
}

/// A size in bytes: `10240000`, `10KB`, `2.5MB`, `1GB` (decimal), `1KiB`, `1MiB`, `1GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "`{t}`: unknown size unit `{other}` (accepted: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let value = i64::try_from(scale)
        .ok()
        .and_then(|s| decimal_times(num, s))
        .filter(|_| !num.is_empty())
        .ok_or_else(|| format!("`{t}` is not a size, e.g. `10MB` or `10240000`"))?;
    u64::try_from(value).map_err(|_| format!("`{t}` is not a size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_times_follow_postfix_units() {
        assert_eq!(parse_postfix_time("300s", 's'), Ok(300));
        assert_eq!(parse_postfix_time("300", 's'), Ok(300));
        assert_eq!(parse_postfix_time("5", 'd'), Ok(432_000));
        assert_eq!(parse_postfix_time("2w", 's'), Ok(1_209_600));
        assert!(parse_postfix_time("1h30m", 's').is_err());
        assert!(parse_postfix_time("1.5h", 's').is_err());
        assert!(parse_postfix_time("5 dayz", 'd').is_err());
        assert!(parse_postfix_time("-5s", 's').is_err());
    }

    #[test]
    fn durations_are_exact_microseconds() {
        assert_eq!(parse_duration("200ms", false), Ok(200_000));
        assert_eq!(parse_duration("1.5s", false), Ok(1_500_000));
        assert_eq!(parse_duration("2.5s", true), Ok(2_500_000));
        assert_eq!(parse_duration("-2.5s", true), Ok(-2_500_000));
        assert_eq!(parse_duration("0.1ms", false), Ok(100));
        assert_eq!(parse_duration("6h", false), Ok(6 * 3600 * SECOND));
        assert!(parse_duration("-1s", false).is_err());
        assert!(parse_duration("10", false).is_err());
        assert!(parse_duration("10 parsecs", false).is_err());
        assert!(parse_duration("9999999999999999d", false).is_err());
    }

    #[test]
    fn rates_and_sizes() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert_eq!(parse_rate("1/10s"), Ok(0.1));
        assert!(parse_rate("-5/s").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5").is_err());
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("10240000"), Ok(10_240_000));
        assert!(parse_size("ten").is_err());
    }
}
