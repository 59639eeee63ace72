//! Reading and writing f32 arrays as `.npy` files (NumPy's format), through
//! the `npyz` crate.
//!
//! Only what `normjit run` needs: a C-order `float32` array (`<f4`, or the
//! big-endian `>f4`, which is converted) in, a little-endian C-order `<f4`
//! array out. Every problem with a file is an [`NpyError`] naming the file
//! and what is wrong with it; nothing here panics, whatever the bytes.
//!
//! Before `npyz` parses a header, the header is checked here for what could
//! make a parser misbehave on hostile input: its length (at most
//! [`MAX_HEADER_LEN`] bytes, and present in the file), how deeply its
//! brackets nest, and that the numbers in it multiply without overflow.
//! The data's length is checked against the shape before any element is
//! decoded, so a corrupt shape cannot make the reader allocate more than
//! the file holds.
//!
//! Writes are atomic: the array goes to a temporary file in the destination
//! directory, which is then renamed over the destination. [`stage_f32`]
//! exposes the two steps, so that a caller writing several files can write
//! them all before renaming any.

use npyz::{DType, Order, TypeChar, WriterBuilder};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest header accepted, in bytes. NumPy itself refuses headers over
/// 10 000 bytes by default; a float32 array's header is under 200 bytes
/// plus 21 per dim.
pub const MAX_HEADER_LEN: usize = 65_536;

/// The deepest bracket nesting accepted in a header (a plain array's header
/// nests 2 deep: the dict and the shape tuple).
const MAX_HEADER_DEPTH: usize = 16;

/// The magic string every npy file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A C-order f32 array: its shape (empty for a 0-dim array) and its
/// elements in row-major order (`data.len()` is the product of `shape`).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The size of each axis, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

/// Why an npy file could not be read or written. Every message starts with
/// the file's path and says what is wrong and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    Missing {
        /// The file.
        path: String,
    },
    /// The file exists but could not be read.
    #[error("{path}: cannot read: {err}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        err: io::Error,
    },
    /// The file does not start with the npy magic string.
    #[error("{path}: not an npy file (it does not start with the npy magic string \\x93NUMPY)")]
    NotNpy {
        /// The file.
        path: String,
    },
    /// A format version this reader does not know.
    #[error("{path}: unsupported npy format version {major}.{minor} (versions 1.0, 2.0 and 3.0 are supported)")]
    Version {
        /// The file.
        path: String,
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends inside its preamble or header.
    #[error("{path}: truncated header: {why}")]
    TruncatedHeader {
        /// The file.
        path: String,
        /// What is missing.
        why: String,
    },
    /// The header length field is larger than any real header.
    #[error(
        "{path}: the header claims to be {len} bytes long, over the limit of {MAX_HEADER_LEN}; the file is corrupt"
    )]
    HugeHeader {
        /// The file.
        path: String,
        /// The claimed length.
        len: u64,
    },
    /// The header is not a valid npy header dict.
    #[error("{path}: corrupt header: {why}")]
    BadHeader {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The array's dtype is not float32.
    #[error("{path}: the array has dtype {found}, but normjit reads float32 ('<f4') only; convert it first, e.g. with a.astype(numpy.float32)")]
    DType {
        /// The file.
        path: String,
        /// The dtype found, as its type string and NumPy name, e.g.
        /// `'<f8' (float64)`.
        found: String,
    },
    /// The array is stored in Fortran (column-major) order.
    #[error("{path}: the array of shape {shape} is stored in Fortran order; normjit reads C order only (save numpy.ascontiguousarray(a))")]
    Fortran {
        /// The file.
        path: String,
        /// The shape, as a Python tuple.
        shape: String,
    },
    /// The shape's element count does not fit in memory.
    #[error("{path}: the shape {shape} has more elements than this machine can address; the file is corrupt")]
    TooLarge {
        /// The file.
        path: String,
        /// The shape, as a Python tuple.
        shape: String,
    },
    /// The file ends before the data the shape calls for.
    #[error("{path}: truncated data: shape {shape} needs {expected} bytes of float32 data, but the file has {found}")]
    TruncatedData {
        /// The file.
        path: String,
        /// The shape, as a Python tuple.
        shape: String,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes after the data the shape calls for.
    #[error(
        "{path}: {extra} unexpected bytes after the data of shape {shape}; the file is corrupt or its header is wrong"
    )]
    TrailingData {
        /// The file.
        path: String,
        /// The shape, as a Python tuple.
        shape: String,
        /// How many bytes follow the data.
        extra: u64,
    },
    /// A write was asked for with data that does not match its shape.
    #[error("{path}: cannot write: the shape {shape} needs {expected} elements but {found} were given")]
    Length {
        /// The file.
        path: String,
        /// The shape, as a Python tuple.
        shape: String,
        /// Elements the shape needs.
        expected: u128,
        /// Elements given.
        found: usize,
    },
    /// A path that cannot be written to.
    #[error("{path}: cannot write here: {why}")]
    BadDestination {
        /// The file.
        path: String,
        /// Why not.
        why: String,
    },
    /// Writing failed.
    #[error("{path}: cannot write: {err}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        err: io::Error,
    },
}

/// A shape as NumPy prints it: `()`, `(5,)`, `(2, 3)`.
pub fn shape_str(shape: &[impl std::fmt::Display]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let mut s = String::from("(");
            for (i, n) in shape.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{n}");
            }
            s.push(')');
            s
        }
    }
}

/// Reads the f32 C-order array in `path`.
pub fn read_f32(path: &Path) -> Result<Array, NpyError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => NpyError::Missing { path: p.clone() },
        _ => NpyError::Read { path: p.clone(), err },
    })?;
    decode_f32(&bytes, &p)
}

/// Decodes the bytes of an npy file holding an f32 C-order array; `path` is
/// only used in messages.
pub fn decode_f32(bytes: &[u8], path: &str) -> Result<Array, NpyError> {
    let path = path.to_string();
    // Preamble: magic, version, header length.
    if bytes.len() < MAGIC.len() + 2 {
        return Err(if !bytes.is_empty() && MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
            NpyError::TruncatedHeader { path, why: format!("the file is only {} bytes long", bytes.len()) }
        } else {
            NpyError::NotNpy { path }
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy { path });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::Version { path, major, minor }),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err(NpyError::TruncatedHeader {
            path,
            why: format!("the file ends inside the header length field ({} bytes)", bytes.len()),
        });
    }
    let header_len = bytes[8..start].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    if header_len > MAX_HEADER_LEN as u64 {
        return Err(NpyError::HugeHeader { path, len: header_len });
    }
    let header_end = start + header_len as usize;
    if bytes.len() < header_end {
        return Err(NpyError::TruncatedHeader {
            path,
            why: format!("the header is {header_len} bytes but only {} follow the preamble", bytes.len() - start),
        });
    }
    prescreen_header(&bytes[start..header_end]).map_err(|why| NpyError::BadHeader { path: path.clone(), why })?;

    // The header proper, parsed by npyz.
    let npy = npyz::NpyFile::new(bytes).map_err(|e| NpyError::BadHeader { path: path.clone(), why: e.to_string() })?;
    let header = npy.header();
    check_dtype(&header.dtype()).map_err(|found| NpyError::DType { path: path.clone(), found })?;
    let shape_u64 = header.shape().to_vec();
    let shape_s = shape_str(&shape_u64);
    // A Fortran-order array of at most one axis has the same bytes as in C order.
    if header.order() == Order::Fortran && shape_u64.len() > 1 {
        return Err(NpyError::Fortran { path, shape: shape_s });
    }
    let too_large = || NpyError::TooLarge { path: path.clone(), shape: shape_s.clone() };
    let shape: Vec<usize> =
        shape_u64.iter().map(|&n| usize::try_from(n)).collect::<Result<_, _>>().map_err(|_| too_large())?;
    let count = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(too_large)?;
    let expected = count.checked_mul(4).ok_or_else(too_large)? as u64;
    let found = (bytes.len() - header_end) as u64;
    if found < expected {
        return Err(NpyError::TruncatedData { path, shape: shape_s, expected, found });
    }
    if found > expected {
        return Err(NpyError::TrailingData { path, shape: shape_s, extra: found - expected });
    }
    // The length is checked, so this fails only for a float32 in a byte
    // order npyz cannot convert.
    let descr = header.dtype().descr();
    let data: Vec<f32> =
        npy.into_vec().map_err(|e| NpyError::DType { path: path.clone(), found: format!("{descr} ({e})") })?;
    if data.len() != count {
        // Unreachable if npyz reads what its header says; kept as an error, not a panic.
        return Err(NpyError::TruncatedData { path, shape: shape_s, expected, found: data.len() as u64 * 4 });
    }
    Ok(Array { shape, data })
}

/// Checks a header's text for what could make a parser misbehave: deep
/// nesting (recursion), and numbers whose product overflows (npyz multiplies
/// the shape unchecked). Quoted strings are skipped. Numbers must be plain
/// decimals (optionally with Python 2's `L` suffix), as NumPy writes them.
fn prescreen_header(text: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut product: u64 = 1;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        match c {
            b'\'' | b'"' => {
                i += 1;
                while i < text.len() && text[i] != c {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                if i >= text.len() {
                    return Err("unterminated string".into());
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_DEPTH {
                    return Err(format!("brackets nest more than {MAX_HEADER_DEPTH} deep"));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'0'..=b'9' => {
                let s = i;
                while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
                    i += 1;
                }
                let tok = std::str::from_utf8(&text[s..i]).unwrap_or("?");
                let digits = tok.strip_suffix(['L', 'l']).unwrap_or(tok);
                let n: u64 = digits.parse().map_err(|_| format!("`{tok}` is not a valid size"))?;
                product = product.checked_mul(n).ok_or("the shape's element count overflows 64 bits")?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `Ok` for float32 in either byte order; otherwise the dtype for messages,
/// e.g. `'<f8' (float64)`.
fn check_dtype(dtype: &DType) -> Result<(), String> {
    let DType::Plain(ts) = dtype else {
        return Err(format!("{} (a structured dtype)", dtype.descr()));
    };
    if ts.type_char() == TypeChar::Float && ts.size_field() == 4 {
        return Ok(());
    }
    let bits = ts.size_field() * 8;
    let name = match ts.type_char() {
        TypeChar::Float if ts.size_field() == 16 => "longdouble".to_string(),
        TypeChar::Float => format!("float{bits}"),
        TypeChar::Int => format!("int{bits}"),
        TypeChar::Uint => format!("uint{bits}"),
        TypeChar::Complex => format!("complex{bits}"),
        TypeChar::Bool => "bool".to_string(),
        TypeChar::TimeDelta => "timedelta64".to_string(),
        TypeChar::DateTime => "datetime64".to_string(),
        TypeChar::ByteStr => "bytes".to_string(),
        TypeChar::UnicodeStr => "str".to_string(),
        TypeChar::RawData => "void".to_string(),
        _ => "an unknown type".to_string(),
    };
    Err(format!("'{ts}' ({name})"))
}

/// Checks that `path` can be the destination of a write: its directory
/// exists and it is not itself a directory. Does not create anything.
pub fn check_destination(path: &Path) -> Result<(), NpyError> {
    let p = path.display().to_string();
    let bad = |why: String| NpyError::BadDestination { path: p.clone(), why };
    if path.file_name().is_none() {
        return Err(bad("the path does not name a file".into()));
    }
    let dir = parent_dir(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad(format!("{} is not a directory", dir.display()))),
        Err(e) => return Err(bad(format!("directory {} does not exist or cannot be accessed ({e})", dir.display()))),
    }
    if path.is_dir() {
        return Err(bad("it is a directory".into()));
    }
    Ok(())
}

/// The directory a path's file is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Encodes an f32 array as the bytes of a little-endian C-order npy file.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, NpyError> {
    let mut out = Vec::with_capacity(128 + data.len() * 4);
    encode_into(&mut out, shape, data, "<memory>")
        .map_err(|err| NpyError::Write { path: "<memory>".into(), err })??;
    Ok(out)
}

/// Writes the npy encoding to `w`. The outer error is I/O, the inner a
/// shape/length mismatch.
fn encode_into(w: impl io::Write, shape: &[usize], data: &[f32], path: &str) -> io::Result<Result<(), NpyError>> {
    let expected = shape.iter().try_fold(1u128, |a, &n| a.checked_mul(n as u128));
    if expected != Some(data.len() as u128) {
        return Ok(Err(NpyError::Length {
            path: path.to_string(),
            shape: shape_str(shape),
            expected: expected.unwrap_or(u128::MAX),
            found: data.len(),
        }));
    }
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let mut writer = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(w).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    Ok(Ok(()))
}

/// An array written to a temporary file next to its destination, not yet
/// renamed into place. Dropping it without [`Staged::commit`] removes the
/// temporary file.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Staged {
    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<(), NpyError> {
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|err| NpyError::Write { path: self.dest.display().to_string(), err })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes the array to a new temporary file in `path`'s directory, to be
/// renamed over `path` by [`Staged::commit`].
pub fn stage_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<Staged, NpyError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    check_destination(path)?;
    let p = path.display().to_string();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent_dir(path).join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|err| NpyError::Write { path: p.clone(), err })?;
    // From here on, dropping `staged` removes the temporary file.
    let staged = Staged { tmp, dest: path.to_path_buf(), done: false };
    let mut w = io::BufWriter::new(file);
    encode_into(&mut w, shape, data, &p).map_err(|err| NpyError::Write { path: p.clone(), err })??;
    let file = w.into_inner().map_err(|e| NpyError::Write { path: p.clone(), err: e.into_error() })?;
    file.sync_all().map_err(|err| NpyError::Write { path: p.clone(), err })?;
    drop(file);
    Ok(staged)
}

/// Writes an f32 array to `path` as a little-endian C-order npy file,
/// atomically (a temporary file renamed into place).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    stage_f32(path, shape, data)?.commit()
}
