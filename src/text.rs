//! Decimal text for output files without `core::fmt`.
//!
//! `write!` costs a few hundred instructions per number (formatter set-up, padding, dynamic
//! dispatch), which made `deliveries.csv` a third of a run's time (see BENCHMARKS.md). These
//! helpers write the same text directly, into a `String` or into a byte buffer.

/// Something text can be appended to.
pub trait Ascii {
    /// Appends `text`, which must be ASCII (digits, punctuation).
    fn push_ascii(&mut self, text: &[u8]);
    /// Appends any text (names, addresses).
    fn push_text(&mut self, text: &str);
}

impl Ascii for Vec<u8> {
    fn push_ascii(&mut self, text: &[u8]) {
        self.extend_from_slice(text);
    }
    fn push_text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
}

impl Ascii for String {
    fn push_ascii(&mut self, text: &[u8]) {
        debug_assert!(text.is_ascii());
        self.extend(text.iter().map(|&b| char::from(b)));
    }
    fn push_text(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// Two-digit groups, so each division by 100 yields two characters.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two digits of `n` (< 100).
pub fn two_digits(n: u64) -> [u8; 2] {
    let i = (n % 100) as usize * 2;
    [PAIRS[i], PAIRS[i + 1]]
}

/// Appends `v` in decimal, as `write!(out, "{v}")` would.
pub fn push_decimal<S: Ascii + ?Sized>(out: &mut S, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.push_ascii(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_the_formatter() {
        for v in [
            0,
            7,
            10,
            42,
            99,
            100,
            101,
            999,
            1_000,
            12_345,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
            let mut b = Vec::new();
            push_decimal(&mut b, v);
            assert_eq!(b, v.to_string().into_bytes());
        }
    }
}
