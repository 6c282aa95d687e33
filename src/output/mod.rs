//! Writers for a run's results, one per format, each fed by observation types only
//! (`observe`), the way hyperfine's `export/` is laid out. Files are written under a
//! temporary name and renamed when complete, so a file that exists is a whole file.

pub mod deliveries;
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

/// A file written under `<name>.partial` and renamed to `<name>` by [`AtomicFile::commit`].
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: BufWriter<File>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self, Error> {
        let mut name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".partial");
        let temp_path = path.with_file_name(name);
        let file =
            File::create(&temp_path).map_err(|e| Error::io("cannot create", &temp_path, e))?;
        Ok(AtomicFile {
            final_path: path.to_path_buf(),
            temp_path,
            writer: BufWriter::with_capacity(1 << 16, file),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer
            .write_all(bytes)
            .map_err(|e| Error::io("cannot write", &self.temp_path, e))
    }

    pub fn commit(mut self) -> Result<(), Error> {
        self.writer
            .flush()
            .map_err(|e| Error::io("cannot write", &self.temp_path, e))?;
        drop(self.writer);
        std::fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| Error::io("cannot rename into place", &self.final_path, e))
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}
