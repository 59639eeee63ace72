//! The npy module: round trips (including 0-dim and zero-length shapes),
//! hand-written files in every supported variant, a specific error for
//! every kind of bad file, atomic writes, and no panic on mangled bytes;
//! the 16-bit storage types (f16 as `<f2`, bf16 as ml_dtypes' `<V2` or raw
//! `<u2` bits) bit-exactly, with an error naming both types and the fix
//! when a file's type is not the tensor's; and interoperability with NumPy
//! (f16) and ml_dtypes (bf16) themselves.

mod common;

use common::python;
use normjit::ir::DType;
use normjit_cli::npy::{self, decode_as, decode_f32, encode_f32, read_f32, write_f32, Bf16Format, NpyError};
use normjit_cli::storage::Elements;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test.
fn tmpdir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("normjit-npy-io-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes of an npy file with the given version and header dict text,
/// padded as NumPy pads it, followed by `data`.
fn npy_file(version: (u8, u8), dict: &str, data: &[u8]) -> Vec<u8> {
    let pre = if version.0 == 1 { 10 } else { 12 };
    let mut header = dict.as_bytes().to_vec();
    while !(pre + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version.0, version.1]);
    if version.0 == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header);
    out.extend(data);
    out
}

fn le(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn dict(descr: &str, fortran: bool, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}", if fortran { "True" } else { "False" })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Only the given names are in `dir` (no temporary files left behind).
fn assert_dir_has(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    found.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn round_trips_every_shape_bit_exactly() {
    let dir = tmpdir("round-trip");
    let specials =
        [0.0, -0.0, 1.5, -2.25, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE / 8.0, f32::MAX, 1e-30];
    let shapes: Vec<Vec<usize>> =
        vec![vec![], vec![5], vec![2, 3], vec![0], vec![3, 0, 2], vec![1, 1, 1, 4], vec![7, 11], vec![0, 0]];
    for (i, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<f32> =
            (0..n).map(|j| if j < specials.len() { specials[j] } else { j as f32 * 0.37 - 3.0 }).collect();
        let path = dir.join(format!("a{i}.npy"));
        write_f32(&path, shape, &data).unwrap();
        let back = read_f32(&path).unwrap();
        assert_eq!(&back.shape, shape);
        assert_eq!(bits(&back.data), bits(&data), "shape {shape:?}");
        // In memory too, and the file is exactly the encoding.
        let bytes = encode_f32(shape, &data).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let back = decode_f32(&bytes, "mem").unwrap();
        assert_eq!((back.shape, bits(&back.data)), (shape.clone(), bits(&data)));
    }
}

#[test]
fn writes_standard_little_endian_c_order_files() {
    let bytes = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "data is 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    assert!(header.contains("'shape': (2, 3"), "{header}");
    assert!(header.ends_with('\n'));
    assert_eq!(&bytes[10 + hlen..], le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).as_slice());
    // A 0-dim array has shape () and one element.
    let bytes = encode_f32(&[], &[7.5]).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'shape': ()"), "{header}");
    assert_eq!(&bytes[10 + hlen..], 7.5f32.to_le_bytes());
}

#[test]
fn reads_hand_written_files() {
    // Version 1, 2 and 3 headers.
    for v in [(1, 0), (2, 0), (3, 0)] {
        let f = npy_file(v, &dict("<f4", false, "(2, 2)"), &le(&[1.0, -2.0, 3.5, 4.0]));
        let a = decode_f32(&f, "v.npy").unwrap();
        assert_eq!((a.shape, a.data), (vec![2, 2], vec![1.0, -2.0, 3.5, 4.0]), "version {v:?}");
    }
    // Big-endian float32 is converted.
    let be: Vec<u8> = [1.0f32, 2.5, -3.0].iter().flat_map(|x| x.to_be_bytes()).collect();
    let a = decode_f32(&npy_file((1, 0), &dict(">f4", false, "(3,)"), &be), "be.npy").unwrap();
    assert_eq!((a.shape, a.data), (vec![3], vec![1.0, 2.5, -3.0]));
    // Fortran order with at most one axis is the same bytes as C order.
    let a = decode_f32(&npy_file((1, 0), &dict("<f4", true, "(3,)"), &le(&[1.0, 2.0, 3.0])), "f1.npy").unwrap();
    assert_eq!((a.shape, a.data), (vec![3], vec![1.0, 2.0, 3.0]));
    let a = decode_f32(&npy_file((1, 0), &dict("<f4", true, "()"), &le(&[9.0])), "f0.npy").unwrap();
    assert_eq!((a.shape, a.data), (vec![], vec![9.0]));
    // Keys in another order, a list for the shape, double quotes.
    let f = npy_file((1, 0), "{\"shape\": [1, 2], \"fortran_order\": False, \"descr\": \"<f4\"}", &le(&[5.0, 6.0]));
    let a = decode_f32(&f, "keys.npy").unwrap();
    assert_eq!((a.shape, a.data), (vec![1, 2], vec![5.0, 6.0]));
    // Zero-length data.
    let a = decode_f32(&npy_file((1, 0), &dict("<f4", false, "(4, 0)"), &[]), "z.npy").unwrap();
    assert_eq!((a.shape, a.data.len()), (vec![4, 0], 0));
}

/// Decodes `bytes` as file `bad.npy`, expecting an error whose message
/// names the file and contains `want`.
fn bad(bytes: &[u8], want: &str) -> NpyError {
    let e = decode_f32(bytes, "dir/bad.npy").expect_err(want);
    let msg = e.to_string();
    assert!(msg.starts_with("dir/bad.npy: "), "{msg}");
    assert!(msg.contains(want), "expected `{want}` in: {msg}");
    e
}

#[test]
fn missing_and_unreadable_files() {
    let dir = tmpdir("missing");
    let p = dir.join("nope.npy");
    let e = read_f32(&p).unwrap_err();
    assert!(matches!(e, NpyError::Missing { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("{}: no such file", p.display()));
    // A directory is not a file.
    let e = read_f32(&dir).unwrap_err();
    assert!(matches!(e, NpyError::Read { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("{}: cannot read", dir.display())), "{e}");
}

#[test]
fn not_npy_and_bad_versions() {
    assert!(matches!(bad(b"", "not an npy file"), NpyError::NotNpy { .. }));
    assert!(matches!(bad(b"hello world, this is text", "not an npy file"), NpyError::NotNpy { .. }));
    assert!(matches!(bad(b"PK\x03\x04 an npz is a zip", "not an npy file"), NpyError::NotNpy { .. }));
    let mut f = npy_file((1, 0), &dict("<f4", false, "(1,)"), &le(&[1.0]));
    f[6] = 9;
    f[7] = 9;
    let e = bad(&f, "unsupported npy format version 9.9");
    assert!(matches!(e, NpyError::Version { major: 9, minor: 9, .. }));
}

#[test]
fn truncated_headers() {
    let full = npy_file((1, 0), &dict("<f4", false, "(2,)"), &le(&[1.0, 2.0]));
    // Inside the magic, the version, the length field, the header text.
    for cut in [3, 7, 9, 10, 40, 127] {
        let e = bad(&full[..cut], "truncated header");
        assert!(matches!(e, NpyError::TruncatedHeader { .. }), "cut {cut}: {e:?}");
    }
    let e = bad(&full[..40], "the header is 118 bytes but only 30 follow");
    assert!(matches!(e, NpyError::TruncatedHeader { .. }));
}

#[test]
fn huge_and_corrupt_headers() {
    // A v2 header length of 4 GiB - 1.
    let mut f = b"\x93NUMPY\x02\x00".to_vec();
    f.extend(u32::MAX.to_le_bytes());
    f.extend(b"{'descr': '<f4'");
    assert!(matches!(bad(&f, "claims to be 4294967295 bytes long"), NpyError::HugeHeader { len: 4294967295, .. }));
    // Corrupt dicts, each a BadHeader with its reason.
    let cases = [
        ("not a dict at all", "corrupt header"),
        ("{'descr': '<f4', 'fortran_order': False}", "shape"),
        ("{'descr': '<f4', 'shape': (2,)}", "fortran_order"),
        ("{'fortran_order': False, 'shape': (2,)}", "descr"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", "corrupt header"),
        ("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}", "fortran_order"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "negative"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", "must be an integer"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': 'abc'}", "shape"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,)}", "0x10"),
        ("{'descr': '<q9', 'fortran_order': False, 'shape': (2,)}", "type"),
        ("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "corrupt header"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776)}", "overflows"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", "not a valid size"),
    ];
    for (d, want) in cases {
        let e = bad(&npy_file((1, 0), d, &le(&[1.0, 2.0])), want);
        assert!(matches!(e, NpyError::BadHeader { .. }), "{d}: {e:?}");
        assert!(e.to_string().contains("corrupt header"), "{e}");
    }
    // Deep nesting is refused before any parser recurses on it.
    let deep =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}2{}}}", "(".repeat(20_000), ",)".repeat(20_000));
    let mut f = b"\x93NUMPY\x02\x00".to_vec();
    f.extend((deep.len() as u32).to_le_bytes());
    f.extend(deep.as_bytes());
    assert!(matches!(bad(&f, "nest more than"), NpyError::BadHeader { .. }));
    // Invalid UTF-8.
    assert!(matches!(
        bad(&npy_file((1, 0), "{'descr': '<f4\u{0}', \u{7f}", &[]), "corrupt header"),
        NpyError::BadHeader { .. }
    ));
    let mut f = npy_file((1, 0), &dict("<f4", false, "(1,)"), &le(&[1.0]));
    f[12] = 0xff;
    assert!(matches!(bad(&f, "corrupt header"), NpyError::BadHeader { .. }));
}

#[test]
fn dtypes_other_than_float32_are_named() {
    let cases = [
        ("<f8", 8, "'<f8' (float64)"),
        (">f8", 8, "'>f8' (float64)"),
        ("<f2", 2, "'<f2' (float16)"),
        ("<i4", 4, "'<i4' (int32)"),
        ("<i8", 8, "'<i8' (int64)"),
        ("<u2", 2, "'<u2' (uint16)"),
        ("|b1", 1, "'|b1' (bool)"),
        ("<c8", 8, "'<c8' (complex64)"),
        ("|u1", 1, "'|u1' (uint8)"),
    ];
    for (descr, size, want) in cases {
        let f = npy_file((1, 0), &dict(descr, false, "(3,)"), &vec![0u8; 3 * size]);
        let e = bad(&f, want);
        assert!(matches!(e, NpyError::DType { .. }), "{descr}: {e:?}");
        assert!(e.to_string().contains("float32"), "{e}");
    }
    let f =
        npy_file((1, 0), "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,)}", &[0; 16]);
    assert!(matches!(bad(&f, "structured"), NpyError::DType { .. }));
}

#[test]
fn fortran_order_is_refused() {
    let f = npy_file((1, 0), &dict("<f4", true, "(2, 3)"), &le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let e = bad(&f, "Fortran order");
    assert!(matches!(e, NpyError::Fortran { .. }), "{e:?}");
    assert!(e.to_string().contains("(2, 3)"), "{e}");
}

#[test]
fn truncated_and_trailing_data() {
    let data = le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let e = bad(&npy_file((1, 0), &dict("<f4", false, "(2, 3)"), &data[..20]), "truncated data");
    assert!(matches!(e, NpyError::TruncatedData { expected: 24, found: 20, .. }), "{e:?}");
    assert!(e.to_string().contains("shape (2, 3) needs 24 bytes"), "{e}");
    let e = bad(&npy_file((1, 0), &dict("<f4", false, "()"), &[]), "truncated data");
    assert!(matches!(e, NpyError::TruncatedData { expected: 4, found: 0, .. }), "{e:?}");
    // A shape far larger than the file is refused without allocating it.
    let e = bad(&npy_file((1, 0), &dict("<f4", false, "(2305843009213693951,)"), &data), "truncated data");
    assert!(matches!(e, NpyError::TruncatedData { found: 24, .. }), "{e:?}");
    let mut with_extra = data.clone();
    with_extra.extend([0, 0, 0]);
    let e = bad(&npy_file((1, 0), &dict("<f4", false, "(2, 3)"), &with_extra), "3 unexpected bytes");
    assert!(matches!(e, NpyError::TrailingData { extra: 3, .. }), "{e:?}");
}

#[test]
fn writes_are_checked_and_atomic() {
    let dir = tmpdir("atomic");
    let p = dir.join("a.npy");
    // Data that does not match the shape: an error, and no file.
    let e = write_f32(&p, &[2, 3], &[1.0; 5]).unwrap_err();
    assert!(matches!(e, NpyError::Length { expected: 6, found: 5, .. }), "{e:?}");
    assert!(e.to_string().contains("a.npy"), "{e}");
    assert_dir_has(&dir, &[]);
    // A missing directory, a directory as the destination.
    let e = write_f32(&dir.join("no/such/dir/a.npy"), &[1], &[1.0]).unwrap_err();
    assert!(matches!(e, NpyError::BadDestination { .. }) && e.to_string().contains("does not exist"), "{e}");
    let e = write_f32(&dir, &[1], &[1.0]).unwrap_err();
    assert!(matches!(e, NpyError::BadDestination { .. }), "{e:?}");
    assert_dir_has(&dir, &[]);
    // Replacing an existing file leaves only the new content.
    write_f32(&p, &[3], &[1.0, 2.0, 3.0]).unwrap();
    write_f32(&p, &[2, 2], &[4.0, 5.0, 6.0, 7.0]).unwrap();
    let a = read_f32(&p).unwrap();
    assert_eq!((a.shape, a.data), (vec![2, 2], vec![4.0, 5.0, 6.0, 7.0]));
    assert_dir_has(&dir, &["a.npy"]);
    // A staged write is invisible until committed, and vanishes if dropped.
    let s = npy::stage_f32(&dir.join("b.npy"), &[1], &[8.0]).unwrap();
    assert!(!dir.join("b.npy").exists());
    drop(s);
    assert_dir_has(&dir, &["a.npy"]);
    let s = npy::stage_f32(&dir.join("b.npy"), &[1], &[8.0]).unwrap();
    assert_eq!(s.dest(), dir.join("b.npy"));
    s.commit().unwrap();
    assert_eq!(read_f32(&dir.join("b.npy")).unwrap().data, vec![8.0]);
    assert_dir_has(&dir, &["a.npy", "b.npy"]);
    // A bare file name goes to the current directory's check.
    npy::check_destination(Path::new("x.npy")).unwrap();
}

#[test]
fn mangled_files_give_errors_not_panics() {
    let good = npy_file((1, 0), &dict("<f4", false, "(3, 2)"), &le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(decode_f32(&good, "g").unwrap().shape, vec![3, 2]);
    // Every truncation.
    for cut in 0..good.len() {
        assert!(decode_f32(&good[..cut], "g").is_err(), "cut {cut}");
    }
    // Every single-byte change in the preamble and header, to a few values.
    let mut errors = 0;
    for i in 0..128 {
        for v in [0u8, b'(', b'[', b'9', b'\'', 0xff, good[i] ^ 0x20] {
            let mut f = good.clone();
            f[i] = v;
            if decode_f32(&f, "g").is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 500, "{errors}");
    // Pseudo-random garbage behind a valid preamble.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..300 {
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((len as u16).to_le_bytes());
        for _ in 0..len + 8 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            f.push(b"{}()[],:' 0123456789descrshapefortran_orderTrueFalse<f4"[(s % 55) as usize]);
        }
        let _ = decode_f32(&f, "g");
    }
}

/// 16-bit bit patterns covering every class: zeros, normals, subnormals,
/// infinities, NaNs with payloads and signs, the extremes.
const BITS16: [u16; 14] =
    [0x0000, 0x8000, 0x3F80, 0xBFC0, 0x0001, 0x8003, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7C01, 0x7F7F, 0x0400, 0x3C00];

fn bf16s(bits: &[u16]) -> Elements {
    Elements::BF16(bits.iter().map(|&b| normjit::half::bf16::from_bits(b)).collect())
}

fn f16s(bits: &[u16]) -> Elements {
    Elements::F16(bits.iter().map(|&b| normjit::half::f16::from_bits(b)).collect())
}

/// The header text of an encoded file.
fn header(bytes: &[u8]) -> String {
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "data is 64-byte aligned");
    String::from_utf8(bytes[10..10 + hlen].to_vec()).unwrap()
}

#[test]
fn sixteen_bit_types_round_trip_bit_exactly() {
    let dir = tmpdir("round-trip-16");
    let cases = [
        (bf16s(&BITS16), Bf16Format::MlDtypes, "'<V2'"),
        (bf16s(&BITS16), Bf16Format::RawU2, "'<u2'"),
        (f16s(&BITS16), Bf16Format::MlDtypes, "'<f2'"),
        (f16s(&BITS16), Bf16Format::RawU2, "'<f2'"),
    ];
    for (i, (data, fmt, descr)) in cases.iter().enumerate() {
        let dt = data.dtype();
        for shape in [vec![14], vec![2, 7], vec![7, 1, 2]] {
            let bytes = npy::encode(&shape, data.view(), *fmt).unwrap();
            assert!(header(&bytes).contains(&format!("'descr': {descr}")), "{}", header(&bytes));
            // Little-endian bits, as they are.
            let hlen = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let bits: Vec<u16> = bytes[hlen..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            assert_eq!(bits, BITS16, "case {i}");
            let back = decode_as(&bytes, "mem", dt, "t", *fmt).unwrap();
            assert_eq!((&back.shape, &back.data), (&shape, data), "case {i} {shape:?}");
        }
        // Through a file, and empty arrays.
        let p = dir.join(format!("a{i}.npy"));
        npy::write(&p, &[2, 7], data.view(), *fmt).unwrap();
        let back = npy::read_as(&p, dt, "t", *fmt).unwrap();
        assert_eq!(back.data, *data);
        let empty = Elements::zeros(dt, 0);
        let bytes = npy::encode(&[0, 3], empty.view(), *fmt).unwrap();
        assert_eq!(decode_as(&bytes, "e", dt, "t", *fmt).unwrap().shape, vec![0, 3]);
    }
    // f32 through the typed path: what the f32 functions write and read.
    let f = Elements::F32(vec![1.5, -0.0, f32::NAN, f32::INFINITY]);
    let bytes = npy::encode(&[4], f.view(), Bf16Format::MlDtypes).unwrap();
    assert_eq!(bytes, encode_f32(&[4], &[1.5, -0.0, f32::NAN, f32::INFINITY]).unwrap());
    let back = decode_as(&bytes, "f", DType::F32, "t", Bf16Format::MlDtypes).unwrap();
    assert_eq!(back.data.values().iter().map(|x| x.to_bits()).collect::<Vec<_>>(), bits(&f.values()));
    // A length that does not fit the shape is refused, nothing written.
    let e = npy::write(&dir.join("bad.npy"), &[3], bf16s(&[1, 2]).view(), Bf16Format::MlDtypes).unwrap_err();
    assert!(matches!(e, NpyError::Length { expected: 3, found: 2, .. }), "{e:?}");
    assert!(!dir.join("bad.npy").exists());
}

#[test]
fn reads_sixteen_bit_files_in_every_byte_order() {
    let le16 = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let be16 = |v: &[u16]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    let bits = [0x3F80u16, 0xC000, 0x0001];
    let ml = Bf16Format::MlDtypes;
    let cases: [(&str, Vec<u8>, DType, Bf16Format); 7] = [
        ("<V2", le16(&bits), DType::BF16, ml),
        // NumPy's own 2-byte void (a loaded `<V2` array saved again).
        ("|V2", le16(&bits), DType::BF16, ml),
        (">V2", be16(&bits), DType::BF16, ml),
        ("<u2", le16(&bits), DType::BF16, Bf16Format::RawU2),
        (">u2", be16(&bits), DType::BF16, Bf16Format::RawU2),
        ("<f2", le16(&bits), DType::F16, ml),
        (">f2", be16(&bits), DType::F16, ml),
    ];
    for (descr, data, dt, fmt) in cases {
        let f = npy_file((1, 0), &dict(descr, false, "(3,)"), &data);
        let a = decode_as(&f, "x.npy", dt, "x", fmt).unwrap_or_else(|e| panic!("{descr}: {e}"));
        let want = if dt == DType::BF16 { bf16s(&bits) } else { f16s(&bits) };
        assert_eq!((a.shape, a.data), (vec![3], want), "{descr}");
    }
    // With --bf16-as-u2, ml_dtypes' files are still read.
    let f = npy_file((1, 0), &dict("<V2", false, "(3,)"), &le16(&bits));
    assert_eq!(decode_as(&f, "x", DType::BF16, "x", Bf16Format::RawU2).unwrap().data, bf16s(&bits));
}

/// Decodes `bytes` as tensor `x`'s file `dir/x.npy`, expecting an error
/// whose message is exactly `want` after the path.
fn bad_as(bytes: &[u8], dt: DType, fmt: Bf16Format, want: &str) -> NpyError {
    let e = decode_as(bytes, "dir/x.npy", dt, "x", fmt).expect_err(want);
    assert_eq!(e.to_string(), format!("dir/x.npy: {want}"));
    e
}

#[test]
fn a_file_of_another_storage_type_names_both_and_the_fix() {
    let f = |descr: &str, size: usize| npy_file((1, 0), &dict(descr, false, "(3,)"), &vec![0u8; 3 * size]);
    let ml = Bf16Format::MlDtypes;
    let e = bad_as(
        &f("<f2", 2),
        DType::F32,
        ml,
        "the array is float16 ('<f2'), but tensor `x` is stored as f32; pass --dtype x=f16 to store `x` as f16, \
         or convert the array first, e.g. with a.astype(numpy.float32)",
    );
    assert!(matches!(e, NpyError::Mismatch { have: DType::F16, want: DType::F32, .. }), "{e:?}");
    bad_as(
        &f("<V2", 2),
        DType::F16,
        ml,
        "the array is bfloat16 ('<V2', as np.save writes ml_dtypes.bfloat16), but tensor `x` is stored as f16; \
         pass --dtype x=bf16 to store `x` as bf16, or convert the array first, e.g. with a.astype(numpy.float16)",
    );
    bad_as(
        &f("<f4", 4),
        DType::BF16,
        ml,
        "the array is float32 ('<f4'), but tensor `x` is stored as bf16; pass --dtype x=f32 to store `x` as f32, \
         or convert the array first, e.g. with a.astype(ml_dtypes.bfloat16)",
    );
    bad_as(
        &f(">f4", 4),
        DType::BF16,
        Bf16Format::RawU2,
        "the array is float32 ('>f4'), but tensor `x` is stored as bf16; pass --dtype x=f32 to store `x` as f32, \
         or convert the array first, e.g. with a.astype(ml_dtypes.bfloat16).view(numpy.uint16)",
    );
    bad_as(
        &f("<u2", 2),
        DType::F32,
        Bf16Format::RawU2,
        "the array is raw bfloat16 bits ('<u2', under --bf16-as-u2), but tensor `x` is stored as f32; \
         pass --dtype x=bf16 to store `x` as bf16, or convert the array first, e.g. with a.astype(numpy.float32)",
    );
    // uint16 for bf16 without the flag: the flag is the fix.
    let e = bad_as(
        &f("<u2", 2),
        DType::BF16,
        ml,
        "the array has dtype '<u2' (uint16), but tensor `x` is stored as bf16; if it holds raw bfloat16 bits, \
         pass --bf16-as-u2; otherwise save it as ml_dtypes.bfloat16, e.g. with a.astype(ml_dtypes.bfloat16)",
    );
    assert!(matches!(e, NpyError::Uint16 { .. }), "{e:?}");
    // uint16 for f32 is no storage type at all.
    let e = bad_as(
        &f("<u2", 2),
        DType::F32,
        ml,
        "the array has dtype '<u2' (uint16), but normjit reads float32 ('<f4'), float16 ('<f2') and bfloat16 \
         ('<V2', as np.save writes ml_dtypes.bfloat16) only; convert it first, e.g. with a.astype(numpy.float32)",
    );
    assert!(matches!(e, NpyError::DType { .. }), "{e:?}");
    let e = bad_as(
        &f("<f8", 8),
        DType::F16,
        ml,
        "the array has dtype '<f8' (float64), but normjit reads float32 ('<f4'), float16 ('<f2') and bfloat16 \
         ('<V2', as np.save writes ml_dtypes.bfloat16) only; convert it first, e.g. with a.astype(numpy.float16)",
    );
    assert!(matches!(e, NpyError::DType { .. }), "{e:?}");
    // Other voids are not bfloat16.
    bad_as(
        &f("<V4", 4),
        DType::BF16,
        ml,
        "the array has dtype '<V4' (void), but normjit reads float32 ('<f4'), float16 ('<f2') and bfloat16 \
         ('<V2', as np.save writes ml_dtypes.bfloat16) only; convert it first, e.g. with a.astype(ml_dtypes.bfloat16)",
    );
    // Lengths are checked in the file's element size.
    let short = npy_file((1, 0), &dict("<V2", false, "(3,)"), &[0u8; 5]);
    let e = bad_as(
        &short,
        DType::BF16,
        ml,
        "truncated data: shape (3,) needs 6 bytes of bfloat16 data, but the file has 5",
    );
    assert!(matches!(e, NpyError::TruncatedData { expected: 6, found: 5, .. }), "{e:?}");
    let long = npy_file((1, 0), &dict("<f2", false, "(3,)"), &[0u8; 7]);
    bad_as(
        &long,
        DType::F16,
        ml,
        "1 unexpected bytes after the data of shape (3,); the file is corrupt or its header is wrong",
    );
    // And the f32-only reader still reads float32 only.
    let e = decode_f32(&f("<f2", 2), "dir/x.npy").unwrap_err();
    assert!(e.to_string().contains("'<f2' (float16), but normjit reads float32 ('<f4') only"), "{e}");
}

/// Runs `script` with [`python`]; panics with its stderr if it fails.
fn run_python(script: &str) {
    let out = Command::new(python()).args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        python(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// NumPy reads our float16 files as float16 and we read its.
#[test]
fn numpy_reads_and_writes_float16() {
    let has_numpy = Command::new(python()).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    assert!(has_numpy, "numpy is needed for this test (CI installs it); {} has none", python());
    let dir = tmpdir("numpy-f16");
    let ours = dir.join("ours.npy");
    npy::write(&ours, &[2, 7], f16s(&BITS16).view(), Bf16Format::MlDtypes).unwrap();
    let theirs = dir.join("theirs.npy");
    run_python(&format!(
        r#"
import numpy as np
a = np.load({ours:?})
assert a.dtype == np.float16 and a.shape == (2, 7), (a.dtype, a.shape)
assert a.view(np.uint16).ravel().tolist() == {bits:?}, a.view(np.uint16)
np.save({theirs:?}, np.array([[1.5, -2.0, 65504.0], [6e-8, np.inf, 0.1]], dtype=np.float16))
"#,
        ours = s(&ours),
        theirs = s(&theirs),
        bits = BITS16.to_vec(),
    ));
    let a = npy::read_as(&theirs, DType::F16, "x", Bf16Format::MlDtypes).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    let want: Vec<f32> =
        [1.5, -2.0, 65504.0, 6e-8, f32::INFINITY, 0.1].iter().map(|&x| DType::F16.round_f32(x)).collect();
    assert_eq!(a.data.values(), want);
}

/// ml_dtypes reads our bfloat16 files (`np.load(p).view(ml_dtypes.bfloat16)`)
/// and we read what `np.save` writes for its bfloat16 arrays. Needs
/// ml_dtypes in [`python`]: without it the test prints a note and passes,
/// unless `NORMJIT_REQUIRE_ML_DTYPES=1` (CI), where it fails.
#[test]
fn ml_dtypes_reads_and_writes_bfloat16() {
    let has = Command::new(python()).args(["-c", "import numpy, ml_dtypes"]).output().is_ok_and(|o| o.status.success());
    if !has {
        let required = std::env::var("NORMJIT_REQUIRE_ML_DTYPES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "NORMJIT_REQUIRE_ML_DTYPES=1 but {} cannot import numpy and ml_dtypes (set NORMJIT_PYTHON to a Python that can)",
            python()
        );
        eprintln!(
            "note: bf16 interoperability NOT checked: {} cannot import numpy and ml_dtypes \
             (set NORMJIT_PYTHON, or NORMJIT_REQUIRE_ML_DTYPES=1 to make this a failure)",
            python()
        );
        return;
    }
    let dir = tmpdir("ml-dtypes");
    let (ours, raw, theirs) = (dir.join("ours.npy"), dir.join("raw.npy"), dir.join("theirs.npy"));
    npy::write(&ours, &[2, 7], bf16s(&BITS16).view(), Bf16Format::MlDtypes).unwrap();
    npy::write(&raw, &[14], bf16s(&BITS16).view(), Bf16Format::RawU2).unwrap();
    run_python(&format!(
        r#"
import numpy as np, ml_dtypes
a = np.load({ours:?})
assert a.dtype == np.dtype('V2') and a.shape == (2, 7), (a.dtype, a.shape)
b = a.view(ml_dtypes.bfloat16)
assert b.view(np.uint16).ravel().tolist() == {bits:?}, b.view(np.uint16)
assert b[0, 2] == 1.0 and b[0, 3] == -1.5 and np.isinf(b[0, 6]) and np.isnan(b[1, 1]), b
r = np.load({raw:?})
assert r.dtype == np.uint16 and r.tolist() == {bits:?}, r
x = np.array([[1.0, -2.5, 3.140625], [1e-40, -np.inf, 3.3895314e38]], dtype=np.float32)
np.save({theirs:?}, x.astype(ml_dtypes.bfloat16))
with open({theirs:?}, 'rb') as f:
    head = f.read(128)
assert b"'descr': '<V2'" in head, head
"#,
        ours = s(&ours),
        raw = s(&raw),
        theirs = s(&theirs),
        bits = BITS16.to_vec(),
    ));
    let a = npy::read_as(&theirs, DType::BF16, "x", Bf16Format::MlDtypes).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    // ml_dtypes rounds to nearest even, as normjit does.
    let want: Vec<f32> = [1.0, -2.5, 3.140625, 1e-40, f32::NEG_INFINITY, 3.3895314e38]
        .iter()
        .map(|&x| DType::BF16.round_f32(x))
        .collect();
    assert_eq!(a.data.values(), want);
}

fn s(p: &Path) -> String {
    p.display().to_string()
}
