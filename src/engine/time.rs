//! Simulated time: one integer unit everywhere, the microsecond.
//!
//! Integers keep the event order exact and identical on every machine; a microsecond is fine
//! enough for SMTP phase timings and coarse enough for 290 000 years of `i64`.

use crate::text::{Ascii, push_decimal, two_digits};

/// Simulated time in microseconds since the start of the run (may be negative for instants
/// before the run started, such as a qmgr that was started earlier).
pub type Time = i64;

/// One simulated second.
pub const SECOND: Time = 1_000_000;
/// One simulated millisecond.
pub const MILLISECOND: Time = 1_000;

/// Whole seconds of `t`, rounded down: Postfix's qmgr sees time only as `time_t`.
pub fn whole_seconds(t: Time) -> i64 {
    t.div_euclid(SECOND)
}

/// `t` in seconds as a float, for output only (never for ordering).
pub fn as_seconds_f64(t: Time) -> f64 {
    t as f64 / SECOND as f64
}

/// Writes `t` as seconds with no trailing zeros (`12`, `12.5`, `0.000001`): deterministic text
/// for CSV files, without going through floating point (or `core::fmt`: see [`crate::text`]).
pub fn write_seconds<S: Ascii + ?Sized>(out: &mut S, t: Time) {
    if t < 0 {
        out.push_ascii(b"-");
    }
    let abs = t.unsigned_abs();
    push_decimal(out, abs / SECOND as u64);
    let frac = abs % SECOND as u64;
    if frac != 0 {
        let mut digits = *b".000000";
        digits[1..3].copy_from_slice(&two_digits(frac / 10_000));
        digits[3..5].copy_from_slice(&two_digits(frac / 100));
        digits[5..7].copy_from_slice(&two_digits(frac));
        let mut len = digits.len();
        while digits[len - 1] == b'0' {
            len -= 1;
        }
        out.push_ascii(&digits[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds_text(t: Time) -> String {
        let mut s = String::new();
        write_seconds(&mut s, t);
        s
    }

    #[test]
    fn whole_seconds_rounds_down_also_before_zero() {
        assert_eq!(whole_seconds(2_500_000), 2);
        assert_eq!(whole_seconds(-2_500_000), -3);
        assert_eq!(whole_seconds(0), 0);
    }

    #[test]
    fn seconds_text_has_no_trailing_zeros() {
        assert_eq!(seconds_text(12 * SECOND), "12");
        assert_eq!(seconds_text(12 * SECOND + 500_000), "12.5");
        assert_eq!(seconds_text(1), "0.000001");
        assert_eq!(seconds_text(-2_500_000), "-2.5");
        assert_eq!(seconds_text(0), "0");
        assert_eq!(seconds_text(-1), "-0.000001");
        assert_eq!(seconds_text(3 * SECOND + 120_000), "3.12");
        assert_eq!(seconds_text(Time::MIN), "-9223372036854.775808");
        assert_eq!(seconds_text(Time::MAX), "9223372036854.775807");
    }

    #[test]
    fn seconds_text_is_the_same_in_bytes() {
        let mut b = Vec::new();
        write_seconds(&mut b, -12_500_000);
        assert_eq!(b, b"-12.5");
    }
}
