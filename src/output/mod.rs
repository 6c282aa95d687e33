//! Writers for a run's results, one per format, each fed by observation types only
//! (`observe`), the way hyperfine's `export/` is laid out.
//!
//! Files are written under a temporary name (`queues.partial.csv`) and renamed when complete,
//! so a file under its real name is always a whole file. A run's files are renamed together
//! at the end, after which a `complete` marker lists them ([`commit_set`]); an error or an
//! interruption before that removes the temporary files and leaves the folder as it was.

pub mod deliveries;
pub mod explain;
pub mod histogram;
pub mod maillog;
pub mod mailq;
pub mod qshape;
pub mod queues;
pub mod stall;
pub mod summary;
pub mod timeline;

use crate::error::Error;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The marker a complete set of result files is listed in.
pub const COMPLETE_MARKER: &str = "complete";

/// Every file a run may write, so that files of an earlier run that this one does not
/// write (say `deliveries.csv` with `--no-deliveries`) are not left beside the new set.
pub const RESULT_FILES: &[&str] = &[
    "queues.csv",
    "deliveries.csv",
    "summary.json",
    "stall.csv",
    "qshape.csv",
    "timeline.csv",
    "delay-cdf.csv",
    "deferred-by-destination.csv",
    "queues.png",
    "queues.svg",
    "delays.png",
    "delays.svg",
    "deferred-by-destination.png",
    "deferred-by-destination.svg",
    "stall.png",
    "stall.svg",
];

/// The temporary name of `path`: `.partial` before the extension (`queues.partial.png`),
/// because the PNG encoder picks its format from the extension.
pub fn partial_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    let mut name = stem;
    name.push(".partial");
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// A file written under its [`partial_path`] and renamed to its real name by
/// [`AtomicFile::commit`]. Dropped before that, it removes its temporary file.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self, Error> {
        let temp_path = partial_path(path);
        let file =
            File::create(&temp_path).map_err(|e| Error::io("cannot create", &temp_path, e))?;
        Ok(AtomicFile {
            final_path: path.to_path_buf(),
            temp_path,
            writer: Some(BufWriter::with_capacity(1 << 16, file)),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.writer {
            Some(w) => w
                .write_all(bytes)
                .map_err(|e| Error::io("cannot write", &self.temp_path, e)),
            None => Err(Error::Runtime(format!(
                "{} was already closed",
                self.temp_path.display()
            ))),
        }
    }

    /// Closes the temporary file, complete, without renaming it yet.
    pub fn finish(mut self) -> Result<Staged, Error> {
        let temp_path = std::mem::take(&mut self.temp_path);
        let final_path = std::mem::take(&mut self.final_path);
        let staged = Staged::external(temp_path, final_path);
        if let Some(mut w) = self.writer.take() {
            w.flush()
                .map_err(|e| Error::io("cannot write", &staged.temp, e))?;
        }
        Ok(staged)
    }

    pub fn commit(self) -> Result<(), Error> {
        self.finish()?.rename()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// A complete file under its temporary name, waiting to be renamed. Dropped before that, it
/// removes the temporary file.
pub struct Staged {
    temp: PathBuf,
    final_path: PathBuf,
    renamed: bool,
}

impl Staged {
    /// A file some other writer (the plotting library) finished at `temp`.
    pub fn external(temp: PathBuf, final_path: PathBuf) -> Self {
        Staged {
            temp,
            final_path,
            renamed: false,
        }
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    pub fn rename(mut self) -> Result<(), Error> {
        std::fs::rename(&self.temp, &self.final_path)
            .map_err(|e| Error::io("cannot rename into place", &self.final_path, e))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Puts a run's staged files in place as one set: removes the `complete` marker, renames
/// every file, removes result files of an earlier run that this set lacks, and writes the
/// marker listing the set. A folder whose marker exists holds exactly that set; a crash in
/// the middle leaves no marker. `about` is the marker's first line.
pub fn commit_set(dir: &Path, files: Vec<Staged>, about: &str) -> Result<(), Error> {
    let marker = dir.join(COMPLETE_MARKER);
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot remove", &marker, e)),
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.final_path().file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for f in files {
        f.rename()?;
    }
    for stale in RESULT_FILES
        .iter()
        .filter(|n| !names.iter().any(|m| m == *n))
    {
        let path = dir.join(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove the earlier run's", &path, e)),
        }
    }
    let mut text = format!("# {about}\n");
    for n in &names {
        text.push_str(n);
        text.push('\n');
    }
    write_file(&marker, text.as_bytes())
}

/// The files the `complete` marker in `dir` lists, if there is one.
pub fn complete_set(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(COMPLETE_MARKER)).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    )
}
