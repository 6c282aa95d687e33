//! Errors and their exit codes: 2 for bad input, 1 for a run that failed, 130 for a run
//! stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).

use std::fmt;

/// Bad input: a scenario or command line the user must fix. Always names the file, and the
/// line and key where they are known.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(file: &str, line: Option<usize>, key: Option<&str>, message: String) -> Self {
        InputError {
            file: file.to_string(),
            line,
            key: key.map(str::to_string),
            message,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", one_line(&self.file))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{}`: ", one_line(key))?;
        }
        write!(f, "{}", one_line(&self.message))
    }
}

/// `s` with control characters escaped, so that an error is always one line even when it
/// quotes a key or value that holds a newline.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong (exit code 2).
    #[error("error: {0}")]
    Input(InputError),
    /// The run itself failed: an I/O error, a broken invariant (exit code 1).
    #[error("error: {0}")]
    Runtime(String),
    /// The run was stopped by SIGINT or SIGTERM (exit code 130); says what was kept.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Runtime(_) => 1,
            Error::Interrupted(_) => 130,
        }
    }

    pub fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Error::Runtime(format!("{what} {}: {err}", path.display()))
    }
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input(e)
    }
}
