//! Loading `.nj` files: reading, parsing and rendering diagnostics against
//! the file's own text.

use normjit_ir::Kernel;
use std::path::{Path, PathBuf};

/// A kernel source file as read from disk.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as given.
    pub path: PathBuf,
    /// The raw bytes (may not be UTF-8).
    pub bytes: Vec<u8>,
}

/// Why a kernel file could not be loaded. The message is ready to print.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {err}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The file was read but is not a valid kernel; the rendered
    /// diagnostics (`file:line:col: error: ...` with source lines).
    #[error("{0}")]
    Invalid(String),
}

impl SourceFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<SourceFile, LoadError> {
        let bytes = std::fs::read(path).map_err(|err| LoadError::Io { path: path.display().to_string(), err })?;
        Ok(SourceFile { path: path.to_path_buf(), bytes })
    }

    /// Parses and verifies the kernel, rendering any diagnostics against
    /// this file.
    pub fn kernel(&self) -> Result<Kernel, LoadError> {
        normjit_ir::parse_bytes(&self.bytes).map_err(|d| {
            LoadError::Invalid(d.render(&self.path.display().to_string(), &String::from_utf8_lossy(&self.bytes)))
        })
    }
}

/// Reads, parses and verifies the kernel in `path`.
pub fn load_kernel(path: &Path) -> Result<Kernel, LoadError> {
    SourceFile::read(path)?.kernel()
}

/// Every `.nj` file under `path` (itself if it is a file), sorted, so
/// commands accept directories such as `ir/`.
pub fn collect_nj_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir() {
                out.extend(collect_nj_files(&e)?);
            } else if e.extension().is_some_and(|x| x == "nj") {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(out)
}
