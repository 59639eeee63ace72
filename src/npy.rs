//! Reading and writing arrays as `.npy` files (NumPy's format), through
//! the `npyz` crate.
//!
//! What `normjit run` needs: C-order arrays in a tensor's storage type, in
//! and out.
//! - f32: `<f4` (the big-endian `>f4` is converted on reading).
//! - f16: `<f2` (`>f2` converted).
//! - bf16: NumPy has no bfloat16; `ml_dtypes.bfloat16` arrays are saved by
//!   `np.save` with the descr `'<V2'` (2 raw bytes per element, the bf16
//!   bits in little-endian order), and `np.load` gives them back as `V2`
//!   arrays, viewed again with `.view(ml_dtypes.bfloat16)`. So a bf16 file
//!   is `<V2` (also `|V2`, what NumPy writes for a loaded `V2` array, and
//!   `>V2`, big-endian bits), and bf16 is written as `<V2`. Behind an
//!   explicit choice ([`Bf16Format::RawU2`], the CLI's `--bf16-as-u2`),
//!   bf16 is read from and written as `<u2`: the raw bits as uint16. A
//!   2-byte void is trusted to be bfloat16 only where a bf16 tensor is
//!   expected.
//!
//! A file whose type is not the tensor's is refused ([`NpyError::Mismatch`])
//! with the fix: no silent conversion, so what a tensor holds is what the
//! file holds, bit for bit. Every problem with a file is an [`NpyError`]
//! naming the file and what is wrong with it; nothing here panics, whatever
//! the bytes. The f32-only functions ([`read_f32`], [`decode_f32`], ...)
//! remain for callers that want f32 only.
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
//! directory, which is then renamed over the destination. [`stage`] exposes
//! the two steps, so that a caller writing several files can write them all
//! before renaming any.

use crate::storage::{Elements, View};
use normjit::half::{bf16, f16};
use normjit::ir::DType as Storage;
use npyz::{DType, Endianness, FixedSizeBytes, Order, TypeChar, TypeStr, WriterBuilder};
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

/// A C-order array in a tensor's storage type: its shape (empty for a
/// 0-dim array) and its elements in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct TypedArray {
    /// The size of each axis, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major, exactly as the file holds them.
    pub data: Elements,
}

/// How bf16 arrays are spelled in files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bf16Format {
    /// As `np.save` writes `ml_dtypes.bfloat16` arrays: `<V2`.
    #[default]
    MlDtypes,
    /// The raw bits as uint16, `<u2` (the CLI's `--bf16-as-u2`). Reading
    /// also accepts `V2` then.
    RawU2,
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
    /// The array's dtype is none that normjit reads.
    #[error(
        "{path}: the array has dtype {found}, but normjit reads {reads} only; convert it first, e.g. with {convert}"
    )]
    DType {
        /// The file.
        path: String,
        /// The dtype found, as its type string and NumPy name, e.g.
        /// `'<f8' (float64)`.
        found: String,
        /// The dtypes the reader takes, e.g. `float32 ('<f4')`.
        reads: &'static str,
        /// The NumPy conversion to the type wanted, e.g.
        /// `a.astype(numpy.float32)`.
        convert: &'static str,
    },
    /// The array's type is a storage type, but not the tensor's.
    #[error(
        "{path}: the array is {found}, but tensor `{tensor}` is stored as {want}; \
         pass --dtype {tensor}={have} to store `{tensor}` as {have}, or convert the array first, e.g. with {convert}",
        want = want.name(), have = have.name()
    )]
    Mismatch {
        /// The file.
        path: String,
        /// What the file holds, e.g. `float16 ('<f2')`.
        found: String,
        /// The storage type that is.
        have: Storage,
        /// The tensor.
        tensor: String,
        /// Its storage type.
        want: Storage,
        /// The NumPy conversion to the tensor's type, e.g.
        /// `a.astype(numpy.float32)`.
        convert: &'static str,
    },
    /// uint16 data for a bf16 tensor, without the choice to read it as raw
    /// bfloat16 bits.
    #[error(
        "{path}: the array has dtype {found} (uint16), but tensor `{tensor}` is stored as bf16; \
         if it holds raw bfloat16 bits, pass --bf16-as-u2; otherwise save it as ml_dtypes.bfloat16, e.g. with a.astype(ml_dtypes.bfloat16)"
    )]
    Uint16 {
        /// The file.
        path: String,
        /// The type string, e.g. `'<u2'`.
        found: String,
        /// The tensor.
        tensor: String,
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
    #[error("{path}: truncated data: shape {shape} needs {expected} bytes of {elem} data, but the file has {found}")]
    TruncatedData {
        /// The file.
        path: String,
        /// The element type, e.g. `float32`.
        elem: &'static str,
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
    let bytes = read_bytes(path)?;
    decode_f32(&bytes, &path.display().to_string())
}

/// Reads the C-order array in `path` as the entry value of tensor `tensor`
/// (named in messages), stored as `want`: the file must hold that type
/// (see the module doc for how each is spelled).
pub fn read_as(path: &Path, want: Storage, tensor: &str, bf16: Bf16Format) -> Result<TypedArray, NpyError> {
    let bytes = read_bytes(path)?;
    decode_as(&bytes, &path.display().to_string(), want, tensor, bf16)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, NpyError> {
    std::fs::read(path).map_err(|err| {
        let path = path.display().to_string();
        match err.kind() {
            io::ErrorKind::NotFound => NpyError::Missing { path },
            _ => NpyError::Read { path, err },
        }
    })
}

/// What [`decode_f32`] reads.
const READS_F32: &str = "float32 ('<f4')";
/// What [`decode_as`] reads.
const READS_ALL: &str = "float32 ('<f4'), float16 ('<f2') and bfloat16 ('<V2', as np.save writes ml_dtypes.bfloat16)";

/// Decodes the bytes of an npy file holding an f32 C-order array; `path` is
/// only used in messages.
pub fn decode_f32(bytes: &[u8], path: &str) -> Result<Array, NpyError> {
    let (npy, data_len) = open(bytes, path)?;
    let dtype = npy.header().dtype();
    if !matches!(kind(&dtype), Some((Kind::F32, _))) {
        return Err(NpyError::DType {
            path: path.to_string(),
            found: describe(&dtype),
            reads: READS_F32,
            convert: convert_to(Storage::F32, Bf16Format::default()),
        });
    }
    let (shape, count) = layout(&npy, data_len, 4, "float32", path)?;
    let data: Vec<f32> = elements(npy, count, 4, "float32", path)?;
    Ok(Array { shape, data })
}

/// Decodes the bytes of an npy file as the entry value of tensor `tensor`,
/// stored as `want`; `path` and `tensor` are only used in messages.
pub fn decode_as(
    bytes: &[u8],
    path: &str,
    want: Storage,
    tensor: &str,
    bf16: Bf16Format,
) -> Result<TypedArray, NpyError> {
    let (npy, data_len) = open(bytes, path)?;
    let dtype = npy.header().dtype();
    let convert = convert_to(want, bf16);
    let unreadable = || NpyError::DType { path: path.to_string(), found: describe(&dtype), reads: READS_ALL, convert };
    let Some((kind, order)) = kind(&dtype) else {
        return Err(unreadable());
    };
    let ts = format!("'{}'", dtype.descr().trim_matches('\''));
    let (have, found) = match kind {
        Kind::F32 => (Storage::F32, format!("float32 ({ts})")),
        Kind::F16 => (Storage::F16, format!("float16 ({ts})")),
        Kind::Void2 => (Storage::BF16, format!("bfloat16 ({ts}, as np.save writes ml_dtypes.bfloat16)")),
        Kind::U16 if bf16 == Bf16Format::RawU2 => {
            (Storage::BF16, format!("raw bfloat16 bits ({ts}, under --bf16-as-u2)"))
        }
        Kind::U16 if want == Storage::BF16 => {
            return Err(NpyError::Uint16 { path: path.to_string(), found: ts, tensor: tensor.to_string() })
        }
        Kind::U16 => return Err(unreadable()),
    };
    if have != want {
        return Err(NpyError::Mismatch {
            path: path.to_string(),
            found,
            have,
            tensor: tensor.to_string(),
            want,
            convert,
        });
    }
    let elem = match kind {
        Kind::F32 => "float32",
        Kind::F16 => "float16",
        Kind::Void2 => "bfloat16",
        Kind::U16 => "uint16",
    };
    let size = have.size_bytes() as u64;
    let (shape, count) = layout(&npy, data_len, size, elem, path)?;
    let data = match kind {
        Kind::F32 => Elements::F32(elements(npy, count, size, elem, path)?),
        Kind::F16 => Elements::F16(elements::<f16>(npy, count, size, elem, path)?),
        Kind::U16 => {
            Elements::BF16(elements::<u16>(npy, count, size, elem, path)?.into_iter().map(bf16::from_bits).collect())
        }
        Kind::Void2 => {
            // Raw bytes: their order is the writer's, which the type
            // string's byte-order mark states (`|`: NumPy's own void,
            // written on a little-endian host as ml_dtypes' `<V2` is).
            let raw: Vec<FixedSizeBytes<2>> = elements(npy, count, size, elem, path)?;
            let big = order == Endianness::Big;
            Elements::BF16(
                raw.into_iter()
                    .map(|b| bf16::from_bits(if big { u16::from_be_bytes(b.0) } else { u16::from_le_bytes(b.0) }))
                    .collect(),
            )
        }
    };
    Ok(TypedArray { shape, data })
}

/// The NumPy expression that converts an array `a` to what a tensor stored
/// as `want` reads.
fn convert_to(want: Storage, bf16: Bf16Format) -> &'static str {
    match want {
        Storage::BF16 if bf16 == Bf16Format::RawU2 => "a.astype(ml_dtypes.bfloat16).view(numpy.uint16)",
        Storage::BF16 => "a.astype(ml_dtypes.bfloat16)",
        Storage::F16 => "a.astype(numpy.float16)",
        _ => "a.astype(numpy.float32)",
    }
}

/// The element types read, by how the file spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `f4`.
    F32,
    /// `f2`.
    F16,
    /// `V2`: bfloat16, as `np.save` writes `ml_dtypes.bfloat16`.
    Void2,
    /// `u2`: raw bfloat16 bits, when asked for.
    U16,
}

/// The kind of a plain dtype read here, and its byte order.
fn kind(dtype: &DType) -> Option<(Kind, Endianness)> {
    let DType::Plain(ts) = dtype else { return None };
    let k = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Kind::F32,
        (TypeChar::Float, 2) => Kind::F16,
        (TypeChar::RawData, 2) => Kind::Void2,
        (TypeChar::Uint, 2) => Kind::U16,
        _ => return None,
    };
    Some((k, ts.endianness()))
}

/// Checks the preamble and the header of an npy file, and parses the
/// header; gives the parsed file and the number of bytes after the header.
fn open<'a>(bytes: &'a [u8], path: &str) -> Result<(npyz::NpyFile<&'a [u8]>, u64), NpyError> {
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
    Ok((npy, (bytes.len() - header_end) as u64))
}

/// The shape and element count of a C-order array of `size`-byte
/// elements, checked against the `data_len` bytes the file has after its
/// header.
fn layout(
    npy: &npyz::NpyFile<&[u8]>,
    data_len: u64,
    size: u64,
    elem: &'static str,
    path: &str,
) -> Result<(Vec<usize>, usize), NpyError> {
    let path = path.to_string();
    let header = npy.header();
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
    let expected = (count as u64).checked_mul(size).ok_or_else(too_large)?;
    if data_len < expected {
        return Err(NpyError::TruncatedData { path, elem, shape: shape_s, expected, found: data_len });
    }
    if data_len > expected {
        return Err(NpyError::TrailingData { path, shape: shape_s, extra: data_len - expected });
    }
    Ok((shape, count))
}

/// The `count` elements of a file whose layout is checked.
fn elements<T: npyz::Deserialize>(
    npy: npyz::NpyFile<&[u8]>,
    count: usize,
    size: u64,
    elem: &'static str,
    path: &str,
) -> Result<Vec<T>, NpyError> {
    let descr = npy.header().dtype().descr();
    let shape = shape_str(npy.header().shape());
    // The length is checked, so this fails only for a type in a byte
    // order npyz cannot convert.
    let data: Vec<T> = npy.into_vec().map_err(|e| NpyError::DType {
        path: path.to_string(),
        found: format!("{descr} ({e})"),
        reads: READS_ALL,
        convert: "a.astype(numpy.float32)",
    })?;
    if data.len() != count {
        // Unreachable if npyz reads what its header says; kept as an error, not a panic.
        return Err(NpyError::TruncatedData {
            path: path.to_string(),
            elem,
            shape,
            expected: count as u64 * size,
            found: data.len() as u64 * size,
        });
    }
    Ok(data)
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

/// A dtype for messages: its type string and NumPy name, e.g.
/// `'<f8' (float64)`.
fn describe(dtype: &DType) -> String {
    let DType::Plain(ts) = dtype else {
        return format!("{} (a structured dtype)", dtype.descr());
    };
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
    format!("'{ts}' ({name})")
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
    encode(shape, View::F32(data), Bf16Format::default())
}

/// Encodes an array in its storage type as the bytes of a little-endian
/// C-order npy file: `<f4`, `<f2`, or bf16 as `bf16` says (`<V2` or `<u2`).
pub fn encode(shape: &[usize], data: View<'_>, bf16: Bf16Format) -> Result<Vec<u8>, NpyError> {
    let mut out = Vec::with_capacity(128 + data.len() * data.dtype().size_bytes());
    encode_into(&mut out, shape, data, bf16, "<memory>")
        .map_err(|err| NpyError::Write { path: "<memory>".into(), err })??;
    Ok(out)
}

/// Writes the npy encoding to `w`. The outer error is I/O, the inner a
/// shape/length mismatch.
fn encode_into(
    w: impl io::Write,
    shape: &[usize],
    data: View<'_>,
    bf16: Bf16Format,
    path: &str,
) -> io::Result<Result<(), NpyError>> {
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
    match (data, bf16) {
        (View::F32(v), _) => write_elements(w, "<f4", &shape, v.iter().copied())?,
        (View::F16(v), _) => write_elements(w, "<f2", &shape, v.iter().copied())?,
        // What `np.save` writes for an `ml_dtypes.bfloat16` array: the
        // bits' bytes, little-endian, as a 2-byte void.
        (View::BF16(v), Bf16Format::MlDtypes) => {
            write_elements(w, "<V2", &shape, v.iter().map(|h| FixedSizeBytes(h.to_bits().to_le_bytes())))?
        }
        (View::BF16(v), Bf16Format::RawU2) => write_elements(w, "<u2", &shape, v.iter().map(|h| h.to_bits()))?,
    }
    Ok(Ok(()))
}

/// Writes a C-order array of `shape` with the type string `descr` (which
/// `T` serializes as) and the given elements.
fn write_elements<T: npyz::Serialize>(
    w: impl io::Write,
    descr: &str,
    shape: &[u64],
    items: impl IntoIterator<Item = T>,
) -> io::Result<()> {
    let ts: TypeStr = descr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut writer = npyz::WriteOptions::<T>::new().dtype(DType::Plain(ts)).shape(shape).writer(w).begin_nd()?;
    writer.extend(items)?;
    writer.finish()
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

/// Writes the f32 array to a new temporary file in `path`'s directory, to
/// be renamed over `path` by [`Staged::commit`].
pub fn stage_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<Staged, NpyError> {
    stage(path, shape, View::F32(data), Bf16Format::default())
}

/// Writes the array, in its storage type (bf16 as `bf16` says), to a new
/// temporary file in `path`'s directory, to be renamed over `path` by
/// [`Staged::commit`].
pub fn stage(path: &Path, shape: &[usize], data: View<'_>, bf16: Bf16Format) -> Result<Staged, NpyError> {
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
    encode_into(&mut w, shape, data, bf16, &p).map_err(|err| NpyError::Write { path: p.clone(), err })??;
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

/// Writes an array in its storage type to `path` (see [`encode`]),
/// atomically.
pub fn write(path: &Path, shape: &[usize], data: View<'_>, bf16: Bf16Format) -> Result<(), NpyError> {
    stage(path, shape, data, bf16)?.commit()
}
