//! Finding where a key sits in a scenario file, for error messages, and "did you mean".
//!
//! Semantic checks run on parsed values that no longer carry positions; rather than thread
//! spans through every type, we find the key's line again in the text (the `[table]` or the
//! n-th `[[array]]` header, then the `key =` line below it).

/// 1-based line of `key` inside `table` (`""` = top level; `index` selects the n-th
/// `[[table]]`). Falls back to the table's header line, then to `None`.
pub fn key_line(text: &str, table: &str, index: Option<usize>, key: Option<&str>) -> Option<usize> {
    let mut current = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut current_index: Option<usize> = None;
    let mut header_line = if table.is_empty() { Some(0) } else { None };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = name.trim().to_string();
            let n = counts.entry(current.clone()).or_insert(0);
            current_index = Some(*n);
            *n += 1;
            if current == table && index == current_index {
                header_line = Some(i + 1);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = name.trim().to_string();
            current_index = None;
            if current == table && index.is_none() {
                header_line = Some(i + 1);
            }
            continue;
        }
        let in_table = current == table && (index.is_none() || index == current_index);
        if let (true, Some(key)) = (in_table, key) {
            let unquoted = line.trim_start_matches(['"', '\'']);
            if let Some(rest) = unquoted.strip_prefix(key) {
                let rest = rest.trim_start_matches(['"', '\'']).trim_start();
                // `key.sub = …` (a dotted key) sets part of the same key.
                if rest.starts_with('=') || rest.starts_with('.') {
                    return Some(i + 1);
                }
            }
        }
    }
    header_line.filter(|&l| l > 0)
}

/// The table that holds the keys on `line` (1-based): `None` at the top level, else the
/// table name and, for the n-th `[[table]]`, its index.
pub fn table_at(text: &str, line: usize) -> Option<(String, Option<usize>)> {
    let mut current: Option<(String, Option<usize>)> = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for raw in text.lines().take(line) {
        let l = raw.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            current = Some((name, Some(*n)));
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = Some((name.trim().to_string(), None));
        }
    }
    current
}

/// 1-based line of byte offset `offset`.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Edit distance with adjacent transpositions (optimal string alignment), for "did you
/// mean" suggestions: `maen` is one typo away from `mean`, not two.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous is needed for transpositions.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(a[i] != b[j]);
            let mut d = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(before[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn near_miss<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 4);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"x\"\n[postfix]\nqueue_run_delay = \"10s\"\n[[destination]]\ndomain = \"a\"\n[[destination]]\ndomain = \"b\"\ntempfail = 2\n";

    #[test]
    fn finds_keys_in_tables_and_array_elements() {
        assert_eq!(key_line(TEXT, "", None, Some("name")), Some(1));
        assert_eq!(
            key_line(TEXT, "postfix", None, Some("queue_run_delay")),
            Some(3)
        );
        assert_eq!(
            key_line(TEXT, "destination", Some(1), Some("tempfail")),
            Some(8)
        );
        assert_eq!(
            key_line(TEXT, "destination", Some(1), Some("latency")),
            Some(6)
        );
        assert_eq!(
            key_line(TEXT, "destination", Some(0), Some("domain")),
            Some(5)
        );
        let dotted = "[[destination]]\ndomain = \"a\"\ngreylist.delay = \"5m\"\n";
        assert_eq!(
            key_line(dotted, "destination", Some(0), Some("greylist")),
            Some(3)
        );
    }

    #[test]
    fn near_misses() {
        assert_eq!(
            near_miss("tempfial", ["tempfail", "permfail"]),
            Some("tempfail")
        );
        assert_eq!(
            near_miss("queue_run_dleay", ["queue_run_delay"]),
            Some("queue_run_delay")
        );
        assert_eq!(near_miss("zzz", ["tempfail"]), None);
        assert_eq!(near_miss("maen", ["mean", "min", "max"]), Some("mean"));
        assert_eq!(near_miss("smpt", ["smtp", "local"]), Some("smtp"));
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
