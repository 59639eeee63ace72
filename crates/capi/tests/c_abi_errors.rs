//! The bad-input catalogue of the C ABI, called directly from Rust: each
//! case asserts the status code, that the `nj_error` carries the same code
//! and a message naming the fault, and, for runs, that no output buffer was
//! touched (they are filled with a sentinel first).
#![allow(clippy::undocumented_unsafe_blocks)] // Every call here passes live, correctly sized buffers unless noted.

use normjit_capi::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};

/// What output buffers hold before a call that must not write them.
const SENTINEL: f32 = -7777.25;

fn untouched(buf: &[f32]) -> bool {
    buf.iter().all(|v| v.to_bits() == SENTINEL.to_bits())
}

/// Calls `f` with an error out-pointer; returns the status and the error
/// message (empty on success), checking the error object's consistency
/// and freeing it.
fn outcome(f: impl FnOnce(*mut *mut nj_error) -> i32) -> (i32, String) {
    let mut err: *mut nj_error = null_mut();
    let code = f(&mut err);
    if code == NJ_OK {
        assert!(err.is_null(), "success must leave *err NULL");
        return (code, String::new());
    }
    assert!(!err.is_null(), "a failure must give an nj_error");
    unsafe {
        assert_eq!(nj_error_code(err), code, "the error object carries the returned code");
        let msg = CStr::from_ptr(nj_error_message(err)).to_str().expect("messages are UTF-8").to_string();
        assert_eq!(nj_error_free(err), NJ_OK);
        (code, msg)
    }
}

#[track_caller]
fn expect(got: (i32, String), code: i32, needle: &str) {
    let name = |c| unsafe { CStr::from_ptr(nj_status_name(c)) }.to_str().unwrap().to_string();
    assert_eq!(got.0, code, "expected {} but got {} with message: {}", name(code), name(got.0), got.1);
    assert!(got.1.contains(needle), "the message of {} lacks {needle:?}: {}", name(code), got.1);
}

fn compiler() -> *mut nj_compiler {
    let mut opts = std::mem::MaybeUninit::<nj_compiler_options>::uninit();
    let mut c = null_mut();
    unsafe {
        assert_eq!(nj_compiler_options_default(opts.as_mut_ptr(), null_mut()), NJ_OK);
        let mut opts = opts.assume_init();
        opts.threads = 1;
        assert_eq!(nj_compiler_new(&opts, &mut c, null_mut()), NJ_OK);
    }
    c
}

fn ir_root() -> CString {
    CString::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ir")).unwrap()
}

fn load(c: *mut nj_compiler, name: &str) -> *mut nj_kernel {
    let name = CString::new(name).unwrap();
    let mut k = null_mut();
    let r = outcome(|e| unsafe { nj_kernel_load_library(c, ir_root().as_ptr(), name.as_ptr(), &mut k, e) });
    assert_eq!(r.0, NJ_OK, "{}", r.1);
    k
}

/// A compiler with layer_norm and adamw loaded; freed on drop.
struct Fixture {
    compiler: *mut nj_compiler,
    ln: *mut nj_kernel,
    aw: *mut nj_kernel,
}

impl Fixture {
    fn new() -> Fixture {
        let compiler = compiler();
        Fixture { compiler, ln: load(compiler, "norm/layer_norm"), aw: load(compiler, "optim/adamw") }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        unsafe {
            nj_kernel_free(self.ln, null_mut());
            nj_kernel_free(self.aw, null_mut());
            nj_compiler_free(self.compiler, null_mut());
        }
    }
}

const N: usize = 3;
const D: usize = 5;

/// LayerNorm arguments: x [N, D], gamma [D], beta [D], y [N, D] (sentinel).
struct Ln {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    y: Vec<f32>,
    nd: [i64; 2],
    d: [i64; 1],
}

impl Ln {
    fn new() -> Ln {
        Ln {
            x: (0..N * D).map(|i| i as f32 * 0.5 - 3.0).collect(),
            gamma: vec![1.5; D],
            beta: vec![0.25; D],
            y: vec![SENTINEL; N * D],
            nd: [N as i64, D as i64],
            d: [D as i64],
        }
    }

    /// Positional descriptors (x, gamma, beta, y).
    fn tensors(&mut self) -> [nj_tensor; 4] {
        let t = |data: &mut Vec<f32>, shape: &[i64]| nj_tensor {
            data: data.as_mut_ptr().cast(),
            dtype: NJ_DTYPE_F32,
            rank: shape.len() as i32,
            shape: shape.as_ptr(),
        };
        [t(&mut self.x, &self.nd), t(&mut self.gamma, &self.d), t(&mut self.beta, &self.d), t(&mut self.y, &self.nd)]
    }

    fn intact(&self) -> bool {
        untouched(&self.y) && self.x == Ln::new().x && self.gamma == Ln::new().gamma && self.beta == Ln::new().beta
    }
}

fn run(k: *mut nj_kernel, tensors: &[nj_tensor], params: &[f64]) -> (i32, String) {
    outcome(|e| unsafe {
        nj_kernel_run(k, tensors.as_ptr(), tensors.len(), params.as_ptr(), params.len(), NJ_THREADS_DEFAULT, e)
    })
}

fn run_named(k: *mut nj_kernel, names: &[&str], tensors: &[nj_tensor], params: &[(&str, f64)]) -> (i32, String) {
    let names: Vec<CString> = names.iter().map(|n| CString::new(*n).unwrap()).collect();
    let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let pnames: Vec<CString> = params.iter().map(|(n, _)| CString::new(*n).unwrap()).collect();
    let pname_ptrs: Vec<*const c_char> = pnames.iter().map(|n| n.as_ptr()).collect();
    let values: Vec<f64> = params.iter().map(|p| p.1).collect();
    outcome(|e| unsafe {
        nj_kernel_run_named(
            k,
            name_ptrs.as_ptr(),
            tensors.as_ptr(),
            tensors.len(),
            pname_ptrs.as_ptr(),
            values.as_ptr(),
            values.len(),
            NJ_THREADS_CALLING,
            e,
        )
    })
}

const LN_NAMES: [&str; 4] = ["x", "gamma", "beta", "y"];

#[test]
fn a_good_call_succeeds_and_writes() {
    // The baseline the other cases break one thing of.
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(f.ln, &t, &[1e-5]), NJ_OK, "");
    assert!(a.y.iter().all(|v| v.is_finite() && *v != SENTINEL));
    let mut b = Ln::new();
    let t = b.tensors();
    expect(run_named(f.ln, &LN_NAMES, &t, &[]), NJ_OK, "");
    assert_eq!(a.y, b.y);
}

#[test]
fn null_data_with_elements() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let mut t = a.tensors();
    t[0].data = null_mut();
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_BUFFER, "tensor `x` has a null data pointer");
    assert!(a.intact());
}

#[test]
fn null_tensor_array() {
    let f = Fixture::new();
    let a = Ln::new();
    let r = outcome(|e| unsafe { nj_kernel_run(f.ln, null(), 4, [1e-5].as_ptr(), 1, NJ_THREADS_DEFAULT, e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_kernel_run: tensors is NULL");
    assert!(a.intact());
}

#[test]
fn wrong_buffer_dtype() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let mut t = a.tensors();
    t[1].dtype = NJ_DTYPE_F64;
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_DTYPE, "tensor `gamma` is declared f32 but a f64 buffer was given");
    let mut t = a.tensors();
    t[0].dtype = 77;
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_DTYPE, "unknown dtype code");
    assert!(a.intact());
}

#[test]
fn wrong_rank() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let flat = [(N * D) as i64];
    let mut t = a.tensors();
    t[0].rank = 1;
    t[0].shape = flat.as_ptr();
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_SHAPE, "tensor `x` is declared f32[N, D] but the given array has shape [15]");
    assert!(a.intact());
}

#[test]
fn shapes_that_contradict_each_other() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let four = [4i64];
    let mut t = a.tensors();
    t[1].shape = four.as_ptr();
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_SHAPE, "dim `D` is 5 from the shape of `x` but 4 from the shape of `gamma`");
    assert!(a.intact());
}

#[test]
fn negative_shape_entry_and_rank() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let neg = [3i64, -5];
    let mut t = a.tensors();
    t[3].shape = neg.as_ptr();
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_NEGATIVE_SHAPE, "tensor `y` has shape [3, -5]: size -5 is negative");
    let mut t = a.tensors();
    t[2].rank = -1;
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_NEGATIVE_SHAPE, "tensor `beta` has a negative rank (-1)");
    assert!(a.intact());
}

#[test]
fn null_shape_with_a_rank() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let mut t = a.tensors();
    t[0].shape = null();
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_NULL_ARGUMENT, "tensor `x` has a NULL shape but rank 2");
    assert!(a.intact());
}

#[test]
fn overlapping_outputs() {
    let f = Fixture::new();
    // p and m overlap in one buffer: p = buf[0..7], m = buf[4..11].
    let mut buf = vec![SENTINEL; 16];
    let mut v = vec![SENTINEL; 7];
    let mut g = vec![0.5f32; 7];
    let shape = [7i64];
    let base = buf.as_mut_ptr();
    let t = |data: *mut f32| nj_tensor { data: data.cast(), dtype: NJ_DTYPE_F32, rank: 1, shape: shape.as_ptr() };
    let tensors = [t(base), t(unsafe { base.add(4) }), t(v.as_mut_ptr()), t(g.as_mut_ptr())];
    let params = [1e-3, 0.9, 0.999, 1e-8, 0.01, 1.0];
    expect(run(f.aw, &tensors, &params), NJ_ERR_ALIAS, "output `p` overlaps `m` in memory");
    assert!(untouched(&buf) && untouched(&v));
    assert!(g.iter().all(|&x| x == 0.5));
}

#[test]
fn output_aliasing_an_input() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let mut t = a.tensors();
    t[3].data = t[0].data;
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_ALIAS, "output `y` overlaps `x` in memory");
    assert!(a.intact());
}

#[test]
fn nan_param() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(f.ln, &t, &[f64::NAN]), NJ_ERR_PARAM, "param `eps` = NaN: must be finite");
    expect(run_named(f.ln, &LN_NAMES, &t, &[("eps", f64::NAN)]), NJ_ERR_PARAM, "param `eps` = NaN");
    assert!(a.intact());
}

#[test]
fn infinite_param() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(f.ln, &t, &[f64::INFINITY]), NJ_ERR_PARAM, "param `eps` = inf: must be finite");
    expect(run(f.ln, &t, &[1e300]), NJ_ERR_PARAM, "out of range for f32");
    assert!(a.intact());
}

#[test]
fn wrong_param_count() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(f.ln, &t, &[1e-5, 2.0]), NJ_ERR_ARITY, "kernel `layer_norm` takes 1 params, 2 given");
    expect(run(f.ln, &t, &[]), NJ_ERR_ARITY, "kernel `layer_norm` takes 1 params, 0 given");
    let r = outcome(|e| unsafe { nj_kernel_run(f.ln, t.as_ptr(), 4, null(), 1, NJ_THREADS_DEFAULT, e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "params is NULL but its length is 1");
    assert!(a.intact());
}

#[test]
fn wrong_tensor_count() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(f.ln, &t[..3], &[1e-5]), NJ_ERR_ARITY, "kernel `layer_norm` takes 4 tensors, 3 given");
    assert!(a.intact());
}

#[test]
fn unknown_tensor_name() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(
        run_named(f.ln, &["x", "gamma", "beta", "z"], &t, &[]),
        NJ_ERR_UNKNOWN_NAME,
        "kernel `layer_norm` has no tensor `z` (it has: x, gamma, beta, y)",
    );
    assert!(a.intact());
}

#[test]
fn unknown_param_name() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(
        run_named(f.ln, &LN_NAMES, &t, &[("epsilon", 1e-5)]),
        NJ_ERR_UNKNOWN_NAME,
        "kernel `layer_norm` has no param `epsilon` (it has: eps)",
    );
    assert!(a.intact());
}

#[test]
fn duplicate_tensor_name() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    let twice = [t[0], t[1], t[2], t[3], t[0]];
    expect(
        run_named(f.ln, &["x", "gamma", "beta", "y", "x"], &twice, &[]),
        NJ_ERR_BINDING,
        "tensor `x` is given twice",
    );
    assert!(a.intact());
}

#[test]
fn missing_tensor() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    expect(
        run_named(f.ln, &["x", "gamma", "y"], &[t[0], t[1], t[3]], &[]),
        NJ_ERR_BINDING,
        "tensor `beta` is not bound",
    );
    assert!(a.intact());
}

#[test]
fn missing_param_without_default() {
    let f = Fixture::new();
    let mut p = vec![SENTINEL; 7];
    let mut m = vec![SENTINEL; 7];
    let mut v = vec![SENTINEL; 7];
    let mut g = vec![0.5f32; 7];
    let shape = [7i64];
    let t = |b: &mut Vec<f32>| nj_tensor {
        data: b.as_mut_ptr().cast(),
        dtype: NJ_DTYPE_F32,
        rank: 1,
        shape: shape.as_ptr(),
    };
    let tensors = [t(&mut p), t(&mut m), t(&mut v), t(&mut g)];
    expect(
        run_named(f.aw, &["p", "m", "v", "g"], &tensors, &[("lr", 0.1)]),
        NJ_ERR_PARAM,
        "param `t` has no default and is not given",
    );
    assert!(untouched(&p) && untouched(&m) && untouched(&v));
}

#[test]
fn dims_whose_product_overflows() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let huge = [1i64 << 62, 4];
    let mut t = a.tensors();
    t[0].shape = huge.as_ptr();
    t[3].shape = huge.as_ptr();
    expect(
        run(f.ln, &t, &[1e-5]),
        NJ_ERR_OVERFLOW,
        "the size of tensor `x` (shape [4611686018427387904, 4], f32) overflows",
    );
    assert!(a.intact());
}

#[test]
fn misaligned_data() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let mut t = a.tensors();
    t[3].data = unsafe { t[3].data.cast::<u8>().add(1) }.cast::<c_void>();
    // (Never dereferenced: the call is refused first.)
    expect(run(f.ln, &t, &[1e-5]), NJ_ERR_BUFFER, "tensor `y`'s data");
    assert!(a.intact());
}

#[test]
fn invalid_threads_code() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    let r = outcome(|e| unsafe { nj_kernel_run(f.ln, t.as_ptr(), 4, [1e-5].as_ptr(), 1, 7, e) });
    expect(r, NJ_ERR_INVALID_ARGUMENT, "threads 7 is neither NJ_THREADS_DEFAULT (0) nor NJ_THREADS_CALLING (1)");
    assert!(a.intact());
}

#[test]
fn call_on_a_freed_kernel() {
    let c = compiler();
    let k = load(c, "norm/layer_norm");
    unsafe {
        assert_eq!(nj_kernel_free(k, null_mut()), NJ_OK);
    }
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(k, &t, &[1e-5]), NJ_ERR_INVALID_HANDLE, "nj_kernel_run: invalid nj_kernel handle");
    expect(run(k, &t, &[1e-5]), NJ_ERR_INVALID_HANDLE, "this nj_kernel was already freed");
    let mut n = 0usize;
    expect(outcome(|e| unsafe { nj_kernel_num_tensors(k, &mut n, e) }), NJ_ERR_INVALID_HANDLE, "already freed");
    assert!(a.intact());
    unsafe { nj_compiler_free(c, null_mut()) };
}

#[test]
fn double_free_is_detected() {
    let c = compiler();
    let k = load(c, "optim/adamw");
    expect(outcome(|e| unsafe { nj_kernel_free(k, e) }), NJ_OK, "");
    expect(
        outcome(|e| unsafe { nj_kernel_free(k, e) }),
        NJ_ERR_INVALID_HANDLE,
        "nj_kernel_free: invalid nj_kernel handle",
    );
    expect(outcome(|e| unsafe { nj_kernel_free(k, e) }), NJ_ERR_INVALID_HANDLE, "already freed");
    expect(outcome(|e| unsafe { nj_compiler_free(c, e) }), NJ_OK, "");
    expect(outcome(|e| unsafe { nj_compiler_free(c, e) }), NJ_ERR_INVALID_HANDLE, "this nj_compiler was already freed");
    // An error object too.
    let mut err = null_mut();
    let code = unsafe { nj_compiler_free(c, &mut err) };
    assert_eq!(code, NJ_ERR_INVALID_HANDLE);
    unsafe {
        assert_eq!(nj_error_free(err), NJ_OK);
        assert_eq!(nj_error_free(err), NJ_ERR_INVALID_HANDLE);
        assert_eq!(nj_error_code(err), NJ_ERR_INVALID_HANDLE);
        let msg = CStr::from_ptr(nj_error_message(err)).to_str().unwrap();
        assert!(msg.contains("invalid nj_error"), "{msg}");
    }
    // Freeing NULL is a no-op.
    unsafe {
        assert_eq!(nj_kernel_free(null_mut(), null_mut()), NJ_OK);
        assert_eq!(nj_compiler_free(null_mut(), null_mut()), NJ_OK);
        assert_eq!(nj_error_free(null_mut()), NJ_OK);
    }
}

#[test]
fn handles_of_the_wrong_type_or_made_up() {
    let f = Fixture::new();
    let src = CString::new("kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n y = x\n}\n").unwrap();
    let mut k = null_mut();
    // A kernel passed as a compiler.
    let r = outcome(|e| unsafe { nj_kernel_compile(f.ln.cast(), src.as_ptr(), null(), &mut k, e) });
    expect(r, NJ_ERR_INVALID_HANDLE, "it is an nj_kernel handle, not an nj_compiler");
    assert!(k.is_null());
    // A compiler passed as a kernel to free: refused, and the compiler lives on.
    let r = outcome(|e| unsafe { nj_kernel_free(f.compiler.cast(), e) });
    expect(r, NJ_ERR_INVALID_HANDLE, "it is an nj_compiler handle, not an nj_kernel");
    let r = outcome(|e| unsafe { nj_kernel_compile(f.compiler, src.as_ptr(), null(), &mut k, e) });
    expect(r, NJ_OK, "");
    // A pointer normjit never returned.
    let bogus = 0x1000_0007usize as *mut nj_kernel;
    let r = outcome(|e| unsafe { nj_kernel_free(bogus, e) });
    expect(r, NJ_ERR_INVALID_HANDLE, "it is not an nj_kernel handle returned by normjit");
    let mut a = Ln::new();
    let t = a.tensors();
    expect(run(null_mut(), &t, &[1e-5]), NJ_ERR_NULL_ARGUMENT, "nj_kernel_run: the nj_kernel handle is NULL");
    assert!(a.intact());
    unsafe { nj_kernel_free(k, null_mut()) };
}

#[test]
fn null_compiler_handle() {
    let src = CString::new("kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n y = x\n}\n").unwrap();
    let mut k = 0x10usize as *mut nj_kernel;
    let r = outcome(|e| unsafe { nj_kernel_compile(null(), src.as_ptr(), null(), &mut k, e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_kernel_compile: the nj_compiler handle is NULL");
    assert!(k.is_null(), "*out is set to NULL on failure");
    let r = outcome(|e| unsafe {
        nj_kernel_load_library(null(), ir_root().as_ptr(), c"norm/layer_norm".as_ptr(), &mut k, e)
    });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_kernel_load_library: the nj_compiler handle is NULL");
    let r = outcome(|e| unsafe { nj_compiler_new(null(), null_mut(), e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_compiler_new: out is NULL");
}

#[test]
fn bad_utf8_source() {
    let c = compiler();
    let src = CString::new(b"kernel k {\n dims N\n in x\xff: f32[N]\n}\n".to_vec()).unwrap();
    let mut k = null_mut();
    let r = outcome(|e| unsafe { nj_kernel_compile(c, src.as_ptr(), null(), &mut k, e) });
    expect(r, NJ_ERR_INVALID_UTF8, "nj_kernel_compile: source is not valid UTF-8");
    assert!(k.is_null());
    let r = outcome(|e| unsafe { nj_kernel_compile(c, null(), null(), &mut k, e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_kernel_compile: source is NULL");
    unsafe { nj_compiler_free(c, null_mut()) };
}

#[test]
fn source_with_a_syntax_error() {
    let c = compiler();
    let src = CString::new("kernel k {\n  dims N\n  in x: f32[N]\n  out y: f32[N]\n  y = x + * 2\n}\n").unwrap();
    let name = CString::new("bad.nj").unwrap();
    let mut k = null_mut();
    let r = outcome(|e| unsafe { nj_kernel_compile(c, src.as_ptr(), name.as_ptr(), &mut k, e) });
    expect(r.clone(), NJ_ERR_SOURCE, "bad.nj:5:11: error: expected an expression, found `*`");
    assert!(r.1.contains("  y = x + * 2"), "the source line is quoted: {}", r.1);
    assert!(r.1.contains("          ^"), "a caret marks the column: {}", r.1);
    assert!(k.is_null());
    // Unnamed source.
    let r = outcome(|e| unsafe { nj_kernel_compile(c, src.as_ptr(), null(), &mut k, e) });
    expect(r, NJ_ERR_SOURCE, "<source>:5:11:");
    unsafe { nj_compiler_free(c, null_mut()) };
}

#[test]
fn nonexistent_file_path() {
    let c = compiler();
    let path = CString::new("/nonexistent/normjit/kernel.nj").unwrap();
    let mut k = null_mut();
    let r = outcome(|e| unsafe { nj_kernel_load_file(c, path.as_ptr(), &mut k, e) });
    expect(r, NJ_ERR_IO, "/nonexistent/normjit/kernel.nj: cannot read");
    assert!(k.is_null());
    let r =
        outcome(|e| unsafe { nj_kernel_load_library(c, ir_root().as_ptr(), c"norm/no_such_norm".as_ptr(), &mut k, e) });
    expect(r, NJ_ERR_IO, "no_such_norm.nj: cannot read");
    unsafe { nj_compiler_free(c, null_mut()) };
}

#[test]
fn malformed_library_names() {
    let c = compiler();
    let mut k = null_mut();
    for name in [c"../ir/norm/layer_norm", c"/etc/passwd", c"", c"norm/./layer_norm"] {
        let r = outcome(|e| unsafe { nj_kernel_load_library(c, ir_root().as_ptr(), name.as_ptr(), &mut k, e) });
        expect(r, NJ_ERR_INVALID_ARGUMENT, "must be a relative path such as `norm/layer_norm`");
    }
    unsafe { nj_compiler_free(c, null_mut()) };
}

#[test]
fn signature_queries_out_of_range() {
    let f = Fixture::new();
    let mut info = std::mem::MaybeUninit::<nj_tensor_info>::uninit();
    let r = outcome(|e| unsafe { nj_kernel_tensor_info(f.ln, 4, info.as_mut_ptr(), e) });
    expect(r, NJ_ERR_INVALID_ARGUMENT, "nj_kernel_tensor_info: tensor index 4 is out of range (the kernel has 4)");
    let mut p = std::mem::MaybeUninit::<nj_param_info>::uninit();
    let r = outcome(|e| unsafe { nj_kernel_param_info(f.ln, 1, p.as_mut_ptr(), e) });
    expect(r, NJ_ERR_INVALID_ARGUMENT, "param index 1 is out of range (the kernel has 1)");
    let mut name = null();
    let r = outcome(|e| unsafe { nj_kernel_dim_name(f.ln, 2, &mut name, e) });
    expect(r, NJ_ERR_INVALID_ARGUMENT, "dim index 2 is out of range (the kernel has 2)");
    let r = outcome(|e| unsafe { nj_kernel_num_dims(f.ln, null_mut(), e) });
    expect(r, NJ_ERR_NULL_ARGUMENT, "nj_kernel_num_dims: out is NULL");
    let mut i = 0usize;
    let r = outcome(|e| unsafe { nj_kernel_tensor_index(f.ln, c"z".as_ptr(), &mut i, e) });
    expect(r, NJ_ERR_UNKNOWN_NAME, "kernel `layer_norm` has no tensor `z`");
    let r = outcome(|e| unsafe { nj_kernel_param_index(f.ln, c"epsilon".as_ptr(), &mut i, e) });
    expect(r, NJ_ERR_UNKNOWN_NAME, "kernel `layer_norm` has no param `epsilon`");
}

#[test]
fn bad_compiler_options() {
    let mut opts = std::mem::MaybeUninit::<nj_compiler_options>::uninit();
    let mut c = null_mut();
    unsafe {
        assert_eq!(nj_compiler_options_default(opts.as_mut_ptr(), null_mut()), NJ_OK);
        let mut opts = opts.assume_init();
        opts.isa = 9;
        let r = outcome(|e| nj_compiler_new(&opts, &mut c, e));
        expect(r, NJ_ERR_INVALID_ARGUMENT, "isa 9 is neither NJ_ISA_NATIVE (0) nor NJ_ISA_BASELINE (1)");
        assert!(c.is_null());
        let r = outcome(|e| nj_compiler_options_default(null_mut(), e));
        expect(r, NJ_ERR_NULL_ARGUMENT, "options is NULL");
    }
}

#[test]
fn errors_are_reported_without_an_error_out_pointer() {
    let f = Fixture::new();
    let mut a = Ln::new();
    let t = a.tensors();
    let code = unsafe { nj_kernel_run(f.ln, t.as_ptr(), 4, [f64::NAN].as_ptr(), 1, NJ_THREADS_DEFAULT, null_mut()) };
    assert_eq!(code, NJ_ERR_PARAM);
    assert!(a.intact());
}
