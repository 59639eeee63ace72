//! The C ABI used correctly, from Rust: signature queries, runs by position
//! and by name against the reference interpreter, zero-size tensors,
//! kernels outliving their compiler, and concurrent runs on one kernel.
#![allow(clippy::undocumented_unsafe_blocks)] // Every call here passes live, correctly sized buffers.

use normjit_capi::*;
use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

fn ok(code: i32, err: *mut nj_error) {
    if code != NJ_OK {
        let msg = unsafe { CStr::from_ptr(nj_error_message(err)) }.to_string_lossy().into_owned();
        panic!("status {code}: {msg}");
    }
}

/// Runs `f` with an error out-pointer and panics with the message on failure.
fn check(f: impl FnOnce(*mut *mut nj_error) -> i32) {
    let mut err = null_mut();
    let code = f(&mut err);
    ok(code, err);
}

fn compiler(threads: usize) -> *mut nj_compiler {
    let mut opts = std::mem::MaybeUninit::<nj_compiler_options>::uninit();
    let mut c = null_mut();
    check(|e| unsafe { nj_compiler_options_default(opts.as_mut_ptr(), e) });
    let mut opts = unsafe { opts.assume_init() };
    opts.threads = threads;
    check(|e| unsafe { nj_compiler_new(&opts, &mut c, e) });
    c
}

fn ir_root() -> CString {
    CString::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ir")).unwrap()
}

fn load(c: *mut nj_compiler, name: &CStr) -> *mut nj_kernel {
    let mut k = null_mut();
    check(|e| unsafe { nj_kernel_load_library(c, ir_root().as_ptr(), name.as_ptr(), &mut k, e) });
    k
}

fn ir(file: &str) -> normjit_ir::Kernel {
    let path = format!("{}/../../ir/{file}", env!("CARGO_MANIFEST_DIR"));
    normjit_ir::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

/// One f32 tensor descriptor.
fn desc(data: *mut f32, shape: &[i64]) -> nj_tensor {
    nj_tensor { data: data.cast(), dtype: NJ_DTYPE_F32, rank: shape.len() as i32, shape: shape.as_ptr() }
}

#[test]
fn signature_queries_describe_the_kernel() {
    let c = compiler(1);
    let k = load(c, c"optim/adamw");
    let (mut nt, mut np, mut nd) = (0, 0, 0);
    let mut name = null();
    unsafe {
        check(|e| nj_kernel_name(k, &mut name, e));
        check(|e| nj_kernel_num_tensors(k, &mut nt, e));
        check(|e| nj_kernel_num_params(k, &mut np, e));
        check(|e| nj_kernel_num_dims(k, &mut nd, e));
    }
    assert_eq!((text(name).as_str(), nt, np, nd), ("adamw", 4, 6, 1));
    let mut tensors = Vec::new();
    for i in 0..nt {
        let mut t = std::mem::MaybeUninit::<nj_tensor_info>::uninit();
        check(|e| unsafe { nj_kernel_tensor_info(k, i, t.as_mut_ptr(), e) });
        let t = unsafe { t.assume_init() };
        let dims = unsafe { std::slice::from_raw_parts(t.dims, t.rank as usize) }.to_vec();
        tensors.push((text(t.name), t.role, t.dtype, dims));
    }
    assert_eq!(
        tensors,
        [
            ("p".to_string(), NJ_ROLE_INOUT, NJ_DTYPE_F32, vec![0]),
            ("m".to_string(), NJ_ROLE_INOUT, NJ_DTYPE_F32, vec![0]),
            ("v".to_string(), NJ_ROLE_INOUT, NJ_DTYPE_F32, vec![0]),
            ("g".to_string(), NJ_ROLE_IN, NJ_DTYPE_F32, vec![0]),
        ]
    );
    let mut params = Vec::new();
    for i in 0..np {
        let mut p = std::mem::MaybeUninit::<nj_param_info>::uninit();
        check(|e| unsafe { nj_kernel_param_info(k, i, p.as_mut_ptr(), e) });
        let p = unsafe { p.assume_init() };
        assert_eq!(p.param_type, NJ_PARAM_F32);
        params.push((text(p.name), p.has_default.then_some(p.default_value)));
    }
    let want: Vec<(String, Option<f64>)> = [
        ("lr", Some(1e-3)),
        ("beta1", Some(0.9)),
        ("beta2", Some(0.999)),
        ("eps", Some(1e-8)),
        ("wd", Some(0.01)),
        ("t", None),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), *d))
    .collect();
    assert_eq!(params, want);
    let mut dim = null();
    check(|e| unsafe { nj_kernel_dim_name(k, 0, &mut dim, e) });
    assert_eq!(text(dim), "P");
    let mut i = 99;
    check(|e| unsafe { nj_kernel_tensor_index(k, c"g".as_ptr(), &mut i, e) });
    assert_eq!(i, 3);
    check(|e| unsafe { nj_kernel_param_index(k, c"t".as_ptr(), &mut i, e) });
    assert_eq!(i, 5);
    unsafe {
        assert_eq!(text(nj_status_name(NJ_ERR_SHAPE)), "NJ_ERR_SHAPE");
        assert_eq!(text(nj_status_name(-3)), "NJ_ERR_UNKNOWN_CODE");
        assert_eq!(text(nj_version()), env!("CARGO_PKG_VERSION"));
        nj_kernel_free(k, null_mut());
        nj_compiler_free(c, null_mut());
    }
}

/// LayerNorm at N x D through the C ABI by position.
fn layer_norm_c(k: *mut nj_kernel, x: &[f32], gamma: &[f32], beta: &[f32], n: usize, threads: i32) -> Vec<f32> {
    let d = gamma.len();
    let mut y = vec![0.0f32; n * d];
    let (nd, dd) = ([n as i64, d as i64], [d as i64]);
    let t = [
        desc(x.as_ptr().cast_mut(), &nd),
        desc(gamma.as_ptr().cast_mut(), &dd),
        desc(beta.as_ptr().cast_mut(), &dd),
        desc(y.as_mut_ptr(), &nd),
    ];
    check(|e| unsafe { nj_kernel_run(k, t.as_ptr(), 4, [1e-5].as_ptr(), 1, threads, e) });
    y
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0)
        .collect()
}

#[test]
fn runs_match_the_reference_interpreter() {
    let c = compiler(2);
    let k = load(c, c"norm/layer_norm");
    let ir = ir("norm/layer_norm.nj");
    let (n, d) = (64, 300);
    let (x, gamma, beta) = (data(n * d, 1), data(d, 2), data(d, 3));
    let y = layer_norm_c(k, &x, &gamma, &beta, n, NJ_THREADS_DEFAULT);
    let want = normjit_interp::run::<f32>(&ir, &[n, d], &[1e-5], &[&x, &gamma, &beta, &[]]).unwrap();
    let want = want.get(ir.tensor("y").unwrap()).unwrap();
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = y.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5 * scale, "max abs error {worst} (scale {scale})");

    // By name, on the calling thread, with eps from its default: the same bits.
    let mut y2 = vec![0.0f32; n * d];
    let (nd, dd) = ([n as i64, d as i64], [d as i64]);
    let t = [
        desc(y2.as_mut_ptr(), &nd),
        desc(gamma.as_ptr().cast_mut(), &dd),
        desc(x.as_ptr().cast_mut(), &nd),
        desc(beta.as_ptr().cast_mut(), &dd),
    ];
    let names = [c"y".as_ptr(), c"gamma".as_ptr(), c"x".as_ptr(), c"beta".as_ptr()];
    check(|e| unsafe {
        nj_kernel_run_named(k, names.as_ptr(), t.as_ptr(), 4, null(), null(), 0, NJ_THREADS_CALLING, e)
    });
    assert!(y.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()));
    unsafe {
        nj_kernel_free(k, null_mut());
        nj_compiler_free(c, null_mut());
    }
}

#[test]
fn zero_element_tensors_may_have_null_data() {
    let c = compiler(1);
    let k = load(c, c"norm/layer_norm");
    let (gamma, beta) = (data(5, 1), data(5, 2));
    let (nd, dd) = ([0i64, 5], [5i64]);
    let t = [
        desc(null_mut(), &nd),
        desc(gamma.as_ptr().cast_mut(), &dd),
        desc(beta.as_ptr().cast_mut(), &dd),
        desc(null_mut(), &nd),
    ];
    check(|e| unsafe { nj_kernel_run(k, t.as_ptr(), 4, [1e-5].as_ptr(), 1, NJ_THREADS_DEFAULT, e) });
    unsafe {
        nj_kernel_free(k, null_mut());
        nj_compiler_free(c, null_mut());
    }
}

#[test]
fn compiled_and_file_kernels_outlive_their_compiler() {
    let c = compiler(1);
    let src = CString::new("kernel scale {\n dims N\n in x: f32[N]\n out y: f32[N]\n param a = 2.0\n y = a * x\n}\n")
        .unwrap();
    let mut k = null_mut();
    check(|e| unsafe { nj_kernel_compile(c, src.as_ptr(), c"scale.nj".as_ptr(), &mut k, e) });
    let path = CString::new(format!("{}/../../ir/norm/rms_norm.nj", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut rms = null_mut();
    check(|e| unsafe { nj_kernel_load_file(c, path.as_ptr(), &mut rms, e) });
    check(|e| unsafe { nj_compiler_free(c, e) });

    let x = [1.0f32, 2.0, 3.0];
    let mut y = [0.0f32; 3];
    let shape = [3i64];
    let t = [desc(x.as_ptr().cast_mut(), &shape), desc(y.as_mut_ptr(), &shape)];
    check(|e| unsafe { nj_kernel_run(k, t.as_ptr(), 2, [3.0].as_ptr(), 1, NJ_THREADS_DEFAULT, e) });
    assert_eq!(y, [3.0, 6.0, 9.0]);
    let names = [c"x".as_ptr(), c"y".as_ptr()];
    check(|e| unsafe {
        nj_kernel_run_named(k, names.as_ptr(), t.as_ptr(), 2, null(), null(), 0, NJ_THREADS_DEFAULT, e)
    });
    assert_eq!(y, [2.0, 4.0, 6.0]);
    let mut n = 0;
    check(|e| unsafe { nj_kernel_num_tensors(rms, &mut n, e) });
    assert!(n >= 2);
    unsafe {
        check(|e| nj_kernel_free(k, e));
        check(|e| nj_kernel_free(rms, e));
    }
}

#[test]
fn concurrent_runs_on_one_kernel() {
    let c = compiler(2);
    let k = load(c, c"norm/layer_norm");
    let (n, d) = (8, 96);
    let (gamma, beta) = (data(d, 7), data(d, 8));
    let inputs: Vec<Vec<f32>> = (0..4).map(|s| data(n * d, 100 + s)).collect();
    let serial: Vec<Vec<f32>> =
        inputs.iter().map(|x| layer_norm_c(k, x, &gamma, &beta, n, NJ_THREADS_CALLING)).collect();
    // Handles are tokens; passing one to other threads is what the API allows.
    let token = k as usize;
    std::thread::scope(|s| {
        for (i, x) in inputs.iter().enumerate() {
            let (gamma, beta, want) = (&gamma, &beta, &serial[i]);
            s.spawn(move || {
                let k = token as *mut nj_kernel;
                for round in 0..25 {
                    let threads = if round % 2 == 0 { NJ_THREADS_DEFAULT } else { NJ_THREADS_CALLING };
                    let y = layer_norm_c(k, x, gamma, beta, n, threads);
                    assert!(y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "thread {i} round {round}");
                }
            });
        }
    });
    unsafe {
        check(|e| nj_compiler_free(c, e));
        check(|e| nj_kernel_free(k, e));
    }
}

/// Storage overrides through the C ABI: LayerNorm with bf16 `x` and `y`
/// (`uint16_t` buffers) gives the reference interpreter's bits, the
/// derived kernel describes its dtypes, and the original kernel is
/// unchanged; bad specs are refused with the reason.
#[test]
fn storage_overrides_run_bf16_buffers() {
    let c = compiler(2);
    let k = load(c, c"norm/layer_norm");
    let mut h = null_mut();
    check(|e| unsafe { nj_kernel_with_storage(k, c"x=bf16,y=bf16".as_ptr(), &mut h, e) });
    let info = |kern: *mut nj_kernel, i: usize| {
        let mut t = std::mem::MaybeUninit::<nj_tensor_info>::uninit();
        check(|e| unsafe { nj_kernel_tensor_info(kern, i, t.as_mut_ptr(), e) });
        let t = unsafe { t.assume_init() };
        (text(t.name), t.dtype)
    };
    assert_eq!(info(h, 0), ("x".to_string(), NJ_DTYPE_BF16));
    assert_eq!(info(h, 1), ("gamma".to_string(), NJ_DTYPE_F32));
    assert_eq!(info(k, 0), ("x".to_string(), NJ_DTYPE_F32), "the kernel it derives from is unchanged");

    let (n, d) = (16, 300);
    let bits = |v: &[f32]| v.iter().map(|&x| normjit_ir::DType::BF16.encode(x) as u16).collect::<Vec<u16>>();
    let x = data(n * d, 5);
    let xb = bits(&x);
    let (gamma, beta) = (data(d, 6), data(d, 7));
    let mut yb = vec![0u16; n * d];
    let (nd, dd) = ([n as i64, d as i64], [d as i64]);
    let t = [
        nj_tensor { data: xb.as_ptr().cast_mut().cast(), dtype: NJ_DTYPE_BF16, rank: 2, shape: nd.as_ptr() },
        desc(gamma.as_ptr().cast_mut(), &dd),
        desc(beta.as_ptr().cast_mut(), &dd),
        nj_tensor { data: yb.as_mut_ptr().cast(), dtype: NJ_DTYPE_BF16, rank: 2, shape: nd.as_ptr() },
    ];
    check(|e| unsafe { nj_kernel_run(h, t.as_ptr(), 4, [1e-5].as_ptr(), 1, NJ_THREADS_DEFAULT, e) });
    let ir = ir("norm/layer_norm.nj").with_storage(&normjit_ir::parse_storage("x=bf16,y=bf16").unwrap()).unwrap();
    let xv: Vec<f32> = xb.iter().map(|&b| normjit_ir::DType::BF16.decode(u32::from(b))).collect();
    let want = normjit_interp::run::<f64>(
        &ir,
        &[n, d],
        &[1e-5],
        &[
            &xv.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &gamma.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &beta.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &[],
        ],
    )
    .unwrap();
    let want = want.get(ir.tensor("y").unwrap()).unwrap();
    // Within one bf16 ulp of the f64 reference's bf16 result.
    let far = yb
        .iter()
        .zip(want)
        .filter(|(&g, &w)| (i32::from(g) - normjit_ir::DType::BF16.encode(w as f32) as i32).abs() > 1)
        .count();
    assert_eq!(far, 0);

    // A bf16 buffer given to the f32 kernel, and bad specs.
    let mut err = null_mut();
    let code = unsafe { nj_kernel_run(k, t.as_ptr(), 4, [1e-5].as_ptr(), 1, NJ_THREADS_DEFAULT, &mut err) };
    assert_eq!(code, NJ_ERR_DTYPE);
    let msg = text(unsafe { nj_error_message(err) });
    assert!(msg.contains("`x` is declared f32 but a bf16 buffer was given"), "{msg}");
    unsafe { nj_error_free(err) };
    for (spec, want) in [
        (c"x=f64", "`f64` storage is not supported"),
        (c"eps=bf16", "`eps` is a param"),
        (c"q=f16", "has no tensor `q`"),
        (c"y=f16:stochastic(s)", "stochastic rounding is for bf16 storage"),
    ] {
        let mut out = null_mut();
        let mut err = null_mut();
        let code = unsafe { nj_kernel_with_storage(k, spec.as_ptr(), &mut out, &mut err) };
        assert_eq!(code, NJ_ERR_DTYPE, "{spec:?}");
        assert!(out.is_null());
        let msg = text(unsafe { nj_error_message(err) });
        assert!(msg.contains(want) && msg.starts_with("nj_kernel_with_storage"), "{spec:?}: {msg}");
        unsafe { nj_error_free(err) };
    }
    unsafe {
        nj_kernel_free(h, null_mut());
        nj_kernel_free(k, null_mut());
        nj_compiler_free(c, null_mut());
    }
}
