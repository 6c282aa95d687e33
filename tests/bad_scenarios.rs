//! The bad-scenarios corpus: every `tests/bad-scenarios/NAME.toml` is a broken scenario and
//! `NAME.expect` says what `mailsim check` must answer: exit code 2 and exactly one error
//! line naming the file, the line (`line: N` or `line: none`), the key (`key: …` or
//! `key: none`) and containing every `says: …` text (what is accepted, the near miss).
//!
//! Cases that cannot be committed as text (a binary file, a directory, a missing file) are
//! made here in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::Command;

const CORPUS: &str = "tests/bad-scenarios";

struct Expect {
    line: Option<usize>,
    key: Option<String>,
    says: Vec<String>,
}

fn read_expect(path: &Path) -> Expect {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (every case needs one)", path.display()));
    let mut expect = Expect {
        line: None,
        key: None,
        says: Vec::new(),
    };
    let (mut has_line, mut has_key) = (false, false);
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let (field, value) = l
            .split_once(": ")
            .unwrap_or_else(|| panic!("{}: `{l}` is not `field: value`", path.display()));
        match field {
            "line" => {
                has_line = true;
                expect.line = (value != "none").then(|| {
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("{}: bad line `{value}`", path.display()))
                });
            }
            "key" => {
                has_key = true;
                expect.key = (value != "none").then(|| value.to_string());
            }
            "says" => expect.says.push(value.to_string()),
            other => panic!("{}: unknown field `{other}`", path.display()),
        }
    }
    assert!(
        has_line && has_key && !expect.says.is_empty(),
        "{}: needs line, key and at least one says",
        path.display()
    );
    expect
}

/// Runs `mailsim check path`; returns the single error line, after checking the exit code,
/// that nothing went to stdout and that stderr is exactly one line.
fn check_fails(path: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .arg("check")
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mailsim runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: exit code {:?}, stderr: {stderr}",
        path.display(),
        out.status.code()
    );
    assert!(
        out.stdout.is_empty(),
        "{}: stdout: {}",
        path.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}: not one line: {stderr}", path.display());
    assert!(
        !stderr.contains("panicked"),
        "{}: panicked: {stderr}",
        path.display()
    );
    lines[0].to_string()
}

fn assert_matches(path: &Path, shown: &str, error: &str, expect: &Expect) {
    let at = match expect.line {
        Some(l) => format!("error: {shown}:{l}: "),
        None => format!("error: {shown}: "),
    };
    assert!(
        error.starts_with(&at),
        "{}: wanted `{at}…`, got: {error}",
        path.display()
    );
    let rest = &error[at.len()..];
    match &expect.key {
        Some(k) => assert!(
            rest.starts_with(&format!("`{k}`: ")),
            "{}: wanted key `{k}`, got: {error}",
            path.display()
        ),
        None => assert!(
            !rest.starts_with('`'),
            "{}: wanted no key, got: {error}",
            path.display()
        ),
    }
    for s in &expect.says {
        assert!(
            error.contains(s.as_str()),
            "{}: lacks `{s}`: {error}",
            path.display()
        );
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_broken_scenario_gets_its_one_clear_error() {
    let cases = corpus();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned());
        let shown = format!("{CORPUS}/{}", name.unwrap_or_default());
        let expect = read_expect(&case.with_extension("expect"));
        // Collect every mismatch, so one run lists them all.
        let result = std::panic::catch_unwind(|| {
            let error = check_fails(Path::new(&shown));
            assert_matches(case, &shown, &error, &expect);
        });
        if let Err(e) = result {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expect_file_has_its_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    for entry in std::fs::read_dir(&dir).expect("the corpus folder") {
        let path = entry.expect("entry").path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("expect") => assert!(
                path.with_extension("toml").exists(),
                "{} has no scenario",
                path.display()
            ),
            Some("toml") => {}
            _ => panic!(
                "{}: the corpus holds only .toml and .expect",
                path.display()
            ),
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailsim-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn files_that_are_not_scenarios_get_one_clear_error() {
    let dir = temp_dir("not-scenarios");
    let binary = dir.join("binary.toml");
    // Invalid UTF-8, like an image or a compressed file given by mistake.
    std::fs::write(&binary, [0x89, b'P', b'N', b'G', 0xff, 0xfe, 0x00, 0x01]).expect("write");
    let zeros = dir.join("zeros.toml");
    // Valid UTF-8 but NUL bytes: a file truncated by a full disk, or a sparse file.
    std::fs::write(&zeros, [0u8; 64]).expect("write");
    let folder = dir.join("folder.toml");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let missing = dir.join("missing.toml");
    let cases: [(&Path, &[&str]); 4] = [
        (&binary, &["not a text file", "not valid UTF-8"]),
        (&zeros, &["not a text file", "NUL"]),
        (&folder, &["is a directory", "give a .toml file"]),
        (&missing, &["cannot read the scenario file"]),
    ];
    for (path, says) in cases {
        let error = check_fails(path);
        let expect = Expect {
            line: None,
            key: None,
            says: says.iter().map(|s| s.to_string()).collect(),
        };
        assert_matches(path, &path.display().to_string(), &error, &expect);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
