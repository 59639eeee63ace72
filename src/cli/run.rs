//! `normjit run FILE`: runs a kernel once on given or generated inputs and
//! reports, per output, its accuracy against the f64 reference, plus the
//! time per call; optionally saves outputs as `.npy` files.
//!
//! The engines (`--engine`) are the JIT, the reference interpreter in f32
//! ("interp") and the loop-IR interpreter ("loop", which runs the JIT's own
//! plan in scalar Rust and must equal the JIT bit for bit); by default the
//! JIT and interp. The accuracy reference is the interpreter in f64 on the
//! same inputs, widened.
//!
//! `--dtype x=bf16,y=bf16` stores tensors in 16-bit types (f32 compute).
//! The JIT then runs on buffers of those types; the interpreters take every
//! tensor as f32 values and round their stores to its type. Inputs are
//! values of their tensor's type (generated ones are rounded to it; a file
//! must hold that type), so every engine reads the same values. A narrow
//! output's accuracy is also stated in units in the last place of its
//! type: with round-to-nearest-even stores it is within 1 ulp of the f64
//! reference, which rounds its own stores to the type.
//!
//! Nothing is written unless everything succeeds: names, params, dims,
//! every input file and every output destination are checked, the kernel
//! is run, every output is written to a temporary file next to its
//! destination, and only then are the temporary files renamed into place.

use crate::cli::fail;
use normjit::ir::{DType, Kernel, Role, Rounding, TensorId};
use normjit::SourceFile;
use normjit_cli::bind::{parse_pairs, resolve_dims, resolve_params, BindError};
use normjit_cli::npy::{self, Bf16Format};
use normjit_cli::storage::{self, ulp_distance, Elements};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `run`.
#[derive(clap::Args)]
#[command(after_help = "\
Inputs not given with --input are generated from --seed.

Each output's error is that of the f32 engine against the interpreter in f64
on the same inputs: max_abs_err = max |a - b|, and
max_rel_err = max |a - b| / max(|b|, rel_err_floor), where rel_err_floor is the
RMS of the output's finite reference values. Elements that are NaN in both, or
the same infinity in both, agree; NaN in only one makes both errors NaN, an
infinity in only one makes them inf (null in --json output).

With --dtype, tensors are stored in bf16 or f16 (compute stays f32). For such
an output, ulp is the largest distance, in units in the last place of its type,
from the f64 reference (which rounds its own stores to the type); with
round-to-nearest-even stores the tolerance is 1 ulp. Between two engines,
`differ` counts the elements stored as different bits (jit and loop must not
differ at all).")]
pub struct Args {
    /// The kernel file.
    file: PathBuf,
    /// Sizes, as `N=64,D=1000`; dims may also come from input shapes.
    #[arg(long, default_value = "", value_name = "NAME=SIZE,...")]
    dims: String,
    /// Param values, as `lr=0.01,t=10` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE,...")]
    params: Vec<String>,
    /// Store tensors as bf16 or f16 instead of as declared, as
    /// `x=bf16,y=bf16`; `p=bf16:stochastic(seed)` rounds a bf16 output
    /// stochastically, seeded by the u32 param `seed`.
    #[arg(long, default_value = "", value_name = "TENSOR=DTYPE,...")]
    dtype: String,
    /// Read an `in`/`inout` tensor's entry value from a C-order .npy file
    /// of its storage type: float32 ('<f4'), float16 ('<f2'), or bfloat16
    /// as np.save writes ml_dtypes.bfloat16 ('<V2') (repeatable).
    #[arg(long = "input", value_name = "NAME=PATH.npy")]
    inputs: Vec<String>,
    /// Write an `out` tensor, or an `inout` tensor's final value, to a .npy
    /// file in its storage type (repeatable).
    #[arg(long = "output", value_name = "NAME=PATH.npy")]
    outputs: Vec<String>,
    /// bf16 files hold the raw bits as uint16 ('<u2'): read them so, and
    /// write bf16 outputs so (instead of ml_dtypes' '<V2').
    #[arg(long)]
    bf16_as_u2: bool,
    /// Seed for generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Which engines run: the JIT, the interpreter (f32), the loop-IR
    /// interpreter, both (JIT and interpreter) or all three; each is
    /// compared with the f64 reference and the JIT with the others.
    #[arg(long, value_enum, default_value_t = Engine::Both)]
    engine: Engine,
    /// Threads for the JIT (default: all cores). Results are bit-identical
    /// for every thread count.
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    schedule: crate::cli::ScheduleArg,
}

/// The `--engine` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Cranelift-compiled code.
    Jit,
    /// The reference interpreter in f32.
    Interp,
    /// The loop-IR interpreter on the JIT's plan (scalar, single-threaded;
    /// slow at large sizes).
    Loop,
    /// The JIT and the interpreter.
    Both,
    /// The JIT, the interpreter and the loop-IR interpreter.
    All,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Jit => "jit",
            Engine::Interp => "interp",
            Engine::Loop => "loop",
            Engine::Both => "both",
            Engine::All => "all",
        }
    }
    fn jit(self) -> bool {
        matches!(self, Engine::Jit | Engine::Both | Engine::All)
    }
    fn interp(self) -> bool {
        matches!(self, Engine::Interp | Engine::Both | Engine::All)
    }
    fn loop_ir(self) -> bool {
        matches!(self, Engine::Loop | Engine::All)
    }
}

pub fn main(a: Args) -> ExitCode {
    match run(&a) {
        Ok(report) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report.json()).expect("JSON values serialize"));
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Wall-clock time the repetitions of the f32 run aim for.
const TIME_TARGET: Duration = Duration::from_millis(200);
/// Most f32 runs timed.
const MAX_REPS: usize = 50;

/// Where each `in`/`inout` tensor's entry value came from.
enum Source {
    File(PathBuf),
    Generated,
}

/// Accuracy of one output tensor: of the primary engine (the JIT when it
/// runs) against f64, and per engine.
struct OutputReport {
    name: String,
    /// Its storage type, and stochastic rounding's seed param.
    dtype: DType,
    stochastic: Option<String>,
    shape: Vec<usize>,
    acc: Accuracy,
    /// (engine, accuracy against f64), for each engine run.
    per_engine: Vec<(&'static str, Accuracy)>,
    /// The JIT against the other engines run (`jit_vs_interp`,
    /// `jit_vs_loop`), or the interpreter against the loop IR without the
    /// JIT.
    agreements: Vec<(&'static str, Accuracy)>,
    path: Option<PathBuf>,
}

/// Timing of one engine.
struct EngineTime {
    name: &'static str,
    time: Duration,
    reps: usize,
}

/// Everything `run` reports.
struct Report {
    kernel: String,
    file: PathBuf,
    /// Every tensor's storage, as `--dtype` spells it.
    dtypes: Vec<(String, String)>,
    dims: Vec<(String, usize)>,
    params: Vec<(String, f64)>,
    seed: u64,
    sources: Vec<(String, Source)>,
    engine: Engine,
    /// Per engine run, primary first.
    times: Vec<EngineTime>,
    /// Lowering and compiling, when the JIT ran.
    compile_us: Option<f64>,
    threads: usize,
    outputs: Vec<OutputReport>,
}

/// Parses `NAME=PATH` as given to `--input`/`--output`.
fn name_path<'a>(flag: &str, spec: &'a str) -> Result<(&'a str, PathBuf), String> {
    match spec.split_once('=') {
        Some((n, p)) if !n.trim().is_empty() && !p.is_empty() => Ok((n.trim(), PathBuf::from(p))),
        _ => Err(format!("{flag} `{spec}`: expected NAME=PATH.npy")),
    }
}

/// The tensor named `name`, or an error listing the ones `flag` accepts.
fn tensor_named(k: &Kernel, flag: &str, name: &str) -> Result<TensorId, String> {
    k.tensor(name).ok_or_else(|| {
        let ok: Vec<&str> = k
            .tensors
            .iter()
            .filter(|(_, t)| if flag == "--input" { t.role != Role::Out } else { t.role.is_written() })
            .map(|(_, t)| t.name.as_str())
            .collect();
        format!("{flag} {name}: kernel `{}` has no tensor `{name}` ({flag} takes: {})", k.name, ok.join(", "))
    })
}

/// A dims-binding error, with the files the shapes came from named.
fn dims_error(e: BindError, inputs: &[(TensorId, PathBuf)], k: &Kernel) -> String {
    let file_of =
        |tensor: &str| inputs.iter().find(|(t, _)| k.tensors[*t].name == tensor).map(|(_, p)| p.display().to_string());
    let src = |s: String| {
        for (t, p) in inputs {
            let name = &k.tensors[*t].name;
            if s == format!("the shape of `{name}`") {
                return format!("{s} in {}", p.display());
            }
        }
        s
    };
    match e {
        BindError::Bind(normjit::Error::DimConflict { dim, a, a_src, b, b_src }) => {
            normjit::Error::DimConflict { dim, a, a_src: src(a_src), b, b_src: src(b_src) }.to_string()
        }
        BindError::Bind(normjit::Error::Rank { ref tensor, .. }) => match file_of(tensor) {
            Some(p) => format!("--input {tensor}={p}: {e}"),
            None => e.to_string(),
        },
        e @ BindError::Syntax { .. } => format!("--dims: {e}"),
        e => e.to_string(),
    }
}

fn run(a: &Args) -> Result<Report, String> {
    a.schedule.set()?;
    let k = SourceFile::read(&a.file).and_then(|s| s.kernel()).map_err(|e| e.to_string())?;
    // Storage overrides first: a stochastic seed is a param they add.
    let k = storage::apply(&k, &a.dtype)?;
    let bf16_format = if a.bf16_as_u2 { Bf16Format::RawU2 } else { Bf16Format::MlDtypes };

    // Names and values given on the command line.
    let dims_given = parse_pairs(&a.dims).map_err(|e| format!("--dims: {e}"))?;
    let mut params_given = Vec::new();
    for p in &a.params {
        params_given.extend(parse_pairs(p).map_err(|e| format!("--param: {e}"))?);
    }
    let params = resolve_params(&k, &params_given).map_err(|e| e.to_string())?;

    let mut inputs: Vec<(TensorId, PathBuf)> = Vec::new();
    for spec in &a.inputs {
        let (name, path) = name_path("--input", spec)?;
        let t = tensor_named(&k, "--input", name)?;
        if k.tensors[t].role == Role::Out {
            return Err(format!(
                "--input {name}: `{name}` is an `out` tensor, so it has no value at entry to read; \
                 use --output {name}=PATH.npy to save it"
            ));
        }
        if inputs.iter().any(|(u, _)| *u == t) {
            return Err(format!("--input {name}: tensor `{name}` is given twice"));
        }
        inputs.push((t, path));
    }
    let mut outputs: Vec<(TensorId, PathBuf)> = Vec::new();
    for spec in &a.outputs {
        let (name, path) = name_path("--output", spec)?;
        let t = tensor_named(&k, "--output", name)?;
        if !k.tensors[t].role.is_written() {
            return Err(format!(
                "--output {name}: `{name}` is an `in` tensor, which the kernel does not write; \
                 only `out` and `inout` tensors can be saved"
            ));
        }
        if outputs.iter().any(|(u, _)| *u == t) {
            return Err(format!("--output {name}: tensor `{name}` is given twice"));
        }
        if let Some((u, _)) = outputs.iter().find(|(_, p)| *p == path) {
            return Err(format!(
                "--output {name}: {} is also the destination of `{}`",
                path.display(),
                k.tensors[*u].name
            ));
        }
        npy::check_destination(&path).map_err(|e| format!("--output {name}: {e}"))?;
        outputs.push((t, path));
    }

    // Input files, each in its tensor's storage type, then dims from
    // --dims and their shapes.
    let mut given: Vec<Option<Elements>> = vec![None; k.tensors.len()];
    let mut shapes = Vec::new();
    for (t, path) in &inputs {
        let tensor = &k.tensors[*t];
        let arr = npy::read_as(path, tensor.dtype, &tensor.name, bf16_format)
            .map_err(|e| format!("--input {}: {e}", tensor.name))?;
        shapes.push((*t, arr.shape));
        given[t.index()] = Some(arr.data);
    }
    let dims = resolve_dims(&k, &dims_given, &shapes).map_err(|e| dims_error(e, &inputs, &k))?;
    check_memory(&k, &dims, a.engine)?;

    // Entry values: the files, and generated values for the rest; each
    // tensor both in its storage type (for the JIT) and as f32 values (for
    // the interpreters), which are the same numbers.
    let missing = k.tensors.iter().any(|(t, tensor)| tensor.role != Role::Out && given[t.index()].is_none());
    let mut generated = if missing { normjit_cli::inputs::generate(&k, &dims, &params, a.seed) } else { Vec::new() };
    let mut sources = Vec::new();
    let mut entry: Vec<Elements> = Vec::with_capacity(k.tensors.len());
    for (t, tensor) in k.tensors.iter() {
        let len = tensor.dims.iter().map(|d| dims[d.index()]).product();
        if tensor.role == Role::Out {
            entry.push(Elements::zeros(tensor.dtype, len));
            continue;
        }
        match given[t.index()].take() {
            Some(v) => {
                let p = inputs.iter().find(|(u, _)| *u == t).map(|(_, p)| p.clone()).unwrap_or_default();
                sources.push((tensor.name.clone(), Source::File(p)));
                entry.push(v);
            }
            None => {
                sources.push((tensor.name.clone(), Source::Generated));
                // Generated values are values of the type: encoding is exact.
                entry.push(Elements::encode(tensor.dtype, &std::mem::take(&mut generated[t.index()])));
            }
        }
    }
    drop(generated);
    let entry32: Vec<Vec<f32>> = entry.iter().map(Elements::values).collect();

    // The engines (timed) and the reference (f64).
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let mut times = Vec::new();
    let mut compile_us = None;
    let mut jit_out: Option<Vec<Elements>> = None;
    let mut plan = None;
    if a.engine.jit() {
        let compiler = normjit::Compiler::with_options(normjit::CompilerOptions {
            threads,
            ..normjit_cli::target::compiler_options()
        })
        .map_err(|e| e.to_string())?;
        let kernel = compiler.kernel(k.clone());
        let (code, us) = kernel.prepare(&dims).map_err(|e| e.to_string())?;
        compile_us = Some(us);
        // The loop IR runs the very plan the code was generated from.
        plan = Some(code.plan().clone());
        // Each timed call starts from the entry values (inout tensors are
        // updated in place); the copy is outside the timed region.
        let mut work = entry.clone();
        let mut jit_times = Vec::new();
        let budget = Instant::now();
        loop {
            for (w, e) in work.iter_mut().zip(&entry) {
                w.view_mut().copy_from(e.view());
            }
            let t = Instant::now();
            jit_call(&k, &kernel, &mut work, &params, &dims)?;
            jit_times.push(t.elapsed());
            if jit_times.len() >= MAX_REPS || budget.elapsed() >= TIME_TARGET {
                break;
            }
        }
        let reps = jit_times.len();
        times.push(EngineTime { name: "jit", time: median(&mut jit_times), reps });
        jit_out = Some(work);
    }
    let slices32: Vec<&[f32]> = entry32.iter().map(Vec::as_slice).collect();
    let mut out32 = None;
    if a.engine.interp() {
        let start = Instant::now();
        let first_out = normjit_interp::run::<f32>(&k, &dims, &params, &slices32).map_err(|e| e.to_string())?;
        let first = start.elapsed();
        let reps = if first.is_zero() {
            MAX_REPS
        } else {
            (TIME_TARGET.as_secs_f64() / first.as_secs_f64()).ceil().clamp(1.0, MAX_REPS as f64) as usize
        };
        let mut t = vec![first];
        for _ in 1..reps {
            let start = Instant::now();
            let r = normjit_interp::run::<f32>(&k, &dims, &params, &slices32);
            t.push(start.elapsed());
            drop(r);
        }
        times.push(EngineTime { name: "interp", time: median(&mut t), reps });
        out32 = Some(first_out);
    }
    let mut loop_out = None;
    if a.engine.loop_ir() {
        let plan = match plan.take() {
            Some(p) => p,
            None => {
                let opts = normjit_cli::target::compiler_options();
                let isa = normjit::unstable::codegen::Isa::new(opts.isa)?;
                normjit_lower::lower(&k, &dims, &opts.lower_options(&isa)).map_err(|e| e.to_string())?
            }
        };
        // Scalar and slow: run once.
        let mut bufs = entry32.clone();
        let start = Instant::now();
        normjit_lower::exec(&plan, &dims, &params, &mut bufs).map_err(|e| e.to_string())?;
        times.push(EngineTime { name: "loop", time: start.elapsed(), reps: 1 });
        loop_out = Some(bufs);
    }
    drop(slices32);
    let entry64: Vec<Vec<f64>> = entry32.iter().map(|v| v.iter().map(|&x| f64::from(x)).collect()).collect();
    drop(entry32);
    let slices64: Vec<&[f64]> = entry64.iter().map(Vec::as_slice).collect();
    let out64 = normjit_interp::run::<f64>(&k, &dims, &params, &slices64).map_err(|e| e.to_string())?;
    drop(slices64);
    drop(entry64);

    // Accuracy per written tensor, and the files (the primary engine's
    // results: the JIT's when it ran), staged then committed.
    let mut reports = Vec::new();
    let mut staged = Vec::new();
    for (t, tensor) in k.tensors.iter().filter(|(_, t)| t.role.is_written()) {
        let shape: Vec<usize> = tensor.dims.iter().map(|d| dims[d.index()]).collect();
        let dt = tensor.dtype;
        let Some(want) = out64.get(t) else {
            return Err(format!("the interpreter returned no value for `{}`", tensor.name));
        };
        let jit = jit_out.as_ref().map(|o| o[t.index()].values());
        let interp = match &out32 {
            Some(o) => {
                Some(o.get(t).ok_or_else(|| format!("the interpreter returned no value for `{}`", tensor.name))?)
            }
            None => None,
        };
        let looped = loop_out.as_ref().map(|o| o[t.index()].as_slice());
        let mut runs: Vec<(&'static str, &[f32])> = Vec::new();
        if let Some(j) = &jit {
            runs.push(("jit", j));
        }
        if let Some(i) = interp {
            runs.push(("interp", i));
        }
        if let Some(l) = looped {
            runs.push(("loop", l));
        }
        let per_engine: Vec<(&'static str, Accuracy)> =
            runs.iter().map(|&(e, got)| (e, compare(dt, got, want, true))).collect();
        // The first engine (the JIT when it ran) against each other one.
        let agreements: Vec<(&'static str, Accuracy)> = runs
            .iter()
            .skip(1)
            .map(|&(e, other)| {
                let name = match (runs[0].0, e) {
                    ("jit", "interp") => "jit_vs_interp",
                    ("jit", _) => "jit_vs_loop",
                    _ => "interp_vs_loop",
                };
                let other: Vec<f64> = other.iter().map(|&x| f64::from(x)).collect();
                (name, compare(dt, runs[0].1, &other, false))
            })
            .collect();
        let path = outputs.iter().find(|(u, _)| *u == t).map(|(_, p)| p.clone());
        if let Some(p) = &path {
            // The JIT's buffer as it is; an interpreter's values, which are
            // values of the type, encoded exactly.
            let data = match &jit_out {
                Some(o) => o[t.index()].clone(),
                None => Elements::encode(dt, runs[0].1),
            };
            staged.push(
                npy::stage(p, &shape, data.view(), bf16_format)
                    .map_err(|e| format!("--output {}: {e}", tensor.name))?,
            );
        }
        let stochastic = match tensor.rounding {
            Rounding::Stochastic(p) => Some(k.params[p].name.clone()),
            _ => None,
        };
        reports.push(OutputReport {
            name: tensor.name.clone(),
            dtype: dt,
            stochastic,
            shape,
            acc: per_engine[0].1,
            per_engine,
            agreements,
            path,
        });
    }
    for s in staged {
        s.commit().map_err(|e| e.to_string())?;
    }

    Ok(Report {
        kernel: k.name.clone(),
        file: a.file.clone(),
        dtypes: k.tensors.iter().map(|(id, t)| (t.name.clone(), storage::tensor_storage(&k, id))).collect(),
        dims: k.dims.iter().map(|(d, dim)| (dim.name.clone(), dims[d.index()])).collect(),
        params: k.params.iter().map(|(p, param)| (param.name.clone(), params[p.index()])).collect(),
        seed: a.seed,
        sources,
        engine: a.engine,
        times,
        compile_us,
        threads,
        outputs: reports,
    })
}

/// One JIT call on `bufs` (all tensors, by index, in their storage types;
/// updated in place).
fn jit_call(
    k: &Kernel,
    kernel: &normjit::Kernel,
    bufs: &mut [Elements],
    params: &[f64],
    dims: &[usize],
) -> Result<(), String> {
    let mut b = normjit::Bindings::new();
    for ((_, tensor), buf) in k.tensors.iter().zip(bufs.iter_mut()) {
        b = b.tensor(&tensor.name, buf.tensor(tensor.role != Role::In));
    }
    for (p, param) in k.params.iter() {
        b = b.param(&param.name, params[p.index()]);
    }
    for (d, dim) in k.dims.iter() {
        b = b.dim(&dim.name, dims[d.index()]);
    }
    kernel.run(b).map(|_| ()).map_err(|e| e.to_string())
}

/// Refuses sizes whose tensors could not be allocated, before anything is
/// generated or run: per element, the entry and result buffers in the
/// storage type (the JIT's), f32 values at entry and from the interpreter
/// and the loop IR, and f64 values at entry and from the reference.
fn check_memory(k: &Kernel, dims: &[usize], engine: Engine) -> Result<(), String> {
    let describe =
        || k.dims.iter().map(|(d, dim)| format!("{}={}", dim.name, dims[d.index()])).collect::<Vec<_>>().join(", ");
    let per_f32 = 4 * (1 + usize::from(engine.interp()) + usize::from(engine.loop_ir())) + 2 * 8;
    let mut bytes: Option<usize> = Some(0);
    for (_, t) in k.tensors.iter() {
        let n = t.dims.iter().try_fold(1usize, |a, d| a.checked_mul(dims[d.index()])).ok_or_else(|| {
            format!("tensor `{}` has more elements than this machine can address with dims {}", t.name, describe())
        })?;
        let per = per_f32 + 3 * t.dtype.size_bytes();
        bytes = bytes.and_then(|b| n.checked_mul(per).and_then(|x| b.checked_add(x)));
    }
    let ok = bytes.is_some_and(|b| Vec::<u8>::new().try_reserve_exact(b).is_ok());
    if !ok {
        let total = k
            .tensors
            .iter()
            .map(|(_, t)| t.dims.iter().map(|d| dims[d.index()] as u128).product::<u128>())
            .sum::<u128>();
        return Err(format!(
            "the tensors need {} elements for dims {}, more memory than can be allocated",
            total,
            describe()
        ));
    }
    Ok(())
}

/// The median of `times` (the mean of the middle two for an even count).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    let n = times.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2
    }
}

/// Error of an f32 result against the f64 reference (or another engine's
/// result, widened).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Accuracy {
    max_abs: f64,
    max_rel: f64,
    /// The denominator's floor: the RMS of the finite reference values.
    floor: f64,
    /// Elements stored as different bits in the output's type, the
    /// reference rounded to it (every NaN counts as one value).
    mismatches: usize,
    /// The largest distance in ulps of the output's type (reported for the
    /// 16-bit types and between engines).
    max_ulp: Ulps,
}

/// The largest distance in ulps over a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ulps {
    /// Not reported (an f32 output against f64: the rule there is the
    /// relative error).
    Unreported,
    /// This many.
    Max(u64),
    /// NaN in one and a number in the other somewhere: no distance.
    Nan,
}

impl Ulps {
    fn json(self) -> Value {
        match self {
            Ulps::Max(n) => json!(n),
            _ => Value::Null,
        }
    }
    fn text(self) -> String {
        match self {
            Ulps::Max(n) => format!("{n}ulp"),
            Ulps::Nan => "nan-ulp".to_string(),
            Ulps::Unreported => String::new(),
        }
    }
}

/// The largest ulp distance a 16-bit output rounded to nearest even may
/// have from the f64 reference rounded to its type: the tolerance.
const ULP_TOLERANCE: u64 = 1;

/// [`accuracy`] of `got` (values of `dtype`) against `want`, plus how many
/// elements differ from `want` rounded to `dtype` and by how many ulps at
/// most. `against_reference`: `want` is the f64 reference, for which ulps
/// are reported for 16-bit types only; between engines they always are.
fn compare(dtype: DType, got: &[f32], want: &[f64], against_reference: bool) -> Accuracy {
    let mut acc = accuracy(got, want);
    let mut max = Some(0u64);
    for (&a, &b) in got.iter().zip(want) {
        // The reference's stores are rounded to the type already (and an
        // engine's values are of it): this is exact.
        let b = dtype.round_f64(b) as f32;
        if !storage::same_bits(dtype, a, b) {
            acc.mismatches += 1;
        }
        max = match (max, ulp_distance(dtype, a, b)) {
            (Some(m), Some(d)) => Some(m.max(d)),
            _ => None,
        };
    }
    acc.max_ulp =
        if against_reference && !dtype.is_narrow() { Ulps::Unreported } else { max.map_or(Ulps::Nan, Ulps::Max) };
    acc
}

/// The error rule, per element pair `a` (f32 result, widened exactly) and
/// `b` (f64 reference):
/// - if both are NaN, or both are the same infinity, they agree: error 0;
/// - if exactly one is NaN, both errors are NaN, and a NaN error makes the
///   maximum NaN (it is never hidden by a larger finite error);
/// - otherwise, if either is infinite, both errors are +inf;
/// - otherwise `abs = |a - b|` and `rel = abs / max(|b|, floor)`, where
///   `floor` is the root mean square of the tensor's finite reference values
///   (or the smallest positive f64 if there are none, or all are 0). The
///   floor keeps elements that are tiny through cancellation (a normalized
///   value near 0) from reporting huge relative errors that only restate the
///   absolute error of the terms they cancel from; elements at or above the
///   typical magnitude are measured elementwise.
///
/// Over no elements both errors are 0.
fn accuracy(got: &[f32], want: &[f64]) -> Accuracy {
    let (mut sq, mut n) = (0.0f64, 0usize);
    for &b in want.iter().filter(|b| b.is_finite()) {
        sq += b * b;
        n += 1;
    }
    let rms = if n == 0 { 0.0 } else { (sq / n as f64).sqrt() };
    let floor = if rms.is_finite() && rms > 0.0 { rms } else { f64::MIN_POSITIVE };
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for (&a, &b) in got.iter().zip(want) {
        let a = f64::from(a);
        let (abs, rel) = if (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b) {
            (0.0, 0.0)
        } else if a.is_nan() || b.is_nan() {
            (f64::NAN, f64::NAN)
        } else if a.is_infinite() || b.is_infinite() {
            (f64::INFINITY, f64::INFINITY)
        } else {
            let abs = (a - b).abs();
            (abs, abs / b.abs().max(floor))
        };
        // NaN is sticky: `f64::max` would drop it.
        max_abs = if abs.is_nan() || max_abs.is_nan() { f64::NAN } else { max_abs.max(abs) };
        max_rel = if rel.is_nan() || max_rel.is_nan() { f64::NAN } else { max_rel.max(rel) };
    }
    Accuracy { max_abs, max_rel, floor, mismatches: 0, max_ulp: Ulps::Unreported }
}

/// A number for JSON: non-finite values become `null` (JSON has no NaN or
/// infinity).
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// An error for text: `nan`, `inf` or 3 significant digits.
fn err_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.2e}")
    }
}

/// A param value as written in a kernel file: `1e-5`, not `0.00001`.
fn param_text(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-3..1e7).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// A time per call, in a readable unit.
fn time_text(t: Duration) -> String {
    let s = t.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.3} us", s * 1e6)
    }
}

impl Accuracy {
    /// The JSON of an engine against the reference (`errors` only) or
    /// against another engine (with `mismatches`, `identical`, `max_ulp`).
    fn json(&self, narrow: bool, agreement: bool) -> Value {
        let mut v = json!({"max_abs_err": num(self.max_abs), "max_rel_err": num(self.max_rel)});
        if narrow || agreement {
            v["max_ulp"] = self.max_ulp.json();
            v["mismatches"] = json!(self.mismatches);
        }
        if agreement {
            v["identical"] = json!(self.mismatches == 0);
        }
        v
    }
}

impl Report {
    /// The JSON object; `time_s` is seconds per call. Non-finite errors are
    /// `null`, and so is `max_ulp` where an element is NaN in one result
    /// only.
    fn json(&self) -> Value {
        let dims: Map<String, Value> = self.dims.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        let params: Map<String, Value> = self.params.iter().map(|(n, v)| (n.clone(), num(*v))).collect();
        let dtypes: Map<String, Value> = self.dtypes.iter().map(|(n, d)| (n.clone(), json!(d))).collect();
        let dtype_of = |n: &str| self.dtypes.iter().find(|(t, _)| t == n).map_or("f32", |(_, d)| d.as_str());
        let inputs: Map<String, Value> = self
            .sources
            .iter()
            .map(|(n, s)| {
                let mut v = match s {
                    Source::File(p) => json!({ "path": p.display().to_string() }),
                    Source::Generated => json!({ "generated": true }),
                };
                v["dtype"] = json!(dtype_of(n));
                (n.clone(), v)
            })
            .collect();
        let outputs: Map<String, Value> = self
            .outputs
            .iter()
            .map(|o| {
                let narrow = o.dtype.is_narrow();
                let mut v = json!({
                    "dtype": o.dtype.name(),
                    "shape": o.shape,
                    "max_abs_err": num(o.acc.max_abs),
                    "max_rel_err": num(o.acc.max_rel),
                    "rel_err_floor": num(o.acc.floor),
                });
                if let Some(seed) = &o.stochastic {
                    v["rounding"] = json!(format!("stochastic({seed})"));
                }
                if narrow {
                    v["max_ulp"] = o.acc.max_ulp.json();
                    v["ulp_tolerance"] = json!(ULP_TOLERANCE);
                    v["within_tolerance"] = json!(matches!(o.acc.max_ulp, Ulps::Max(n) if n <= ULP_TOLERANCE));
                }
                for (e, acc) in &o.per_engine {
                    v[*e] = acc.json(narrow, false);
                }
                for (e, acc) in &o.agreements {
                    v[*e] = acc.json(narrow, true);
                }
                if let Some(p) = &o.path {
                    v["path"] = json!(p.display().to_string());
                }
                (o.name.clone(), v)
            })
            .collect();
        let mut v = json!({
            "kernel": self.kernel,
            "file": self.file.display().to_string(),
            "dtypes": dtypes,
            "dims": dims,
            "params": params,
            "seed": self.seed,
            "inputs": inputs,
            "engine": self.engine.name(),
            "reference": "interp-f64",
            "time_s": self.times[0].time.as_secs_f64(),
            "reps": self.times[0].reps,
            "threads": self.threads,
            "outputs": outputs,
        });
        for t in &self.times {
            v[format!("time_s_{}", t.name)] = json!(t.time.as_secs_f64());
        }
        if let Some(us) = self.compile_us {
            v["compile_us"] = json!(us);
        }
        v
    }

    /// The readable table.
    fn text(&self) -> String {
        let join = |v: Vec<String>| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
        let mut s = String::new();
        s += &format!("kernel   {} ({})\n", self.kernel, self.file.display());
        s += &format!("dims     {}\n", join(self.dims.iter().map(|(n, v)| format!("{n}={v}")).collect()));
        s += &format!(
            "params   {}\n",
            join(self.params.iter().map(|(n, v)| format!("{n}={}", param_text(*v))).collect())
        );
        s += &format!("dtypes   {}\n", join(self.dtypes.iter().map(|(n, d)| format!("{n} {d}")).collect()));
        let inputs: Vec<String> = self
            .sources
            .iter()
            .map(|(n, src)| match src {
                Source::File(p) => format!("{n} from {}", p.display()),
                Source::Generated => format!("{n} generated"),
            })
            .collect();
        s += &format!("inputs   {} (seed {})\n", join(inputs), self.seed);
        s += &format!("engine   {} (threads {}), checked against interp in f64\n", self.engine.name(), self.threads);
        if let Some(us) = self.compile_us {
            s += &format!("compile  {us:.0} us\n");
        }
        for t in &self.times {
            s += &format!("time     {:<6} {} per call (median of {})\n", t.name, time_text(t.time), t.reps);
        }
        s.push('\n');
        let rows: Vec<[String; 4]> = self
            .outputs
            .iter()
            .map(|o| {
                let shape = format!("[{}]", o.shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "));
                let name = match &o.path {
                    Some(p) => format!("{} -> {}", o.name, p.display()),
                    None => o.name.clone(),
                };
                let dtype = match &o.stochastic {
                    Some(seed) => format!("{}:stochastic({seed})", o.dtype.name()),
                    None => o.dtype.name().to_string(),
                };
                let mut errs = Vec::new();
                for (e, acc) in &o.per_engine {
                    let ulp = acc.max_ulp.text();
                    let ulp = if ulp.is_empty() { ulp } else { format!(" {ulp}") };
                    errs.push(format!("{e} {}/{}{ulp}", err_text(acc.max_abs), err_text(acc.max_rel)));
                }
                for (e, acc) in &o.agreements {
                    errs.push(format!(
                        "{} {}/{} {} {} differ",
                        e.replace('_', "-"),
                        err_text(acc.max_abs),
                        err_text(acc.max_rel),
                        acc.max_ulp.text(),
                        acc.mismatches
                    ));
                }
                [name, dtype, shape, errs.join("  ")]
            })
            .collect();
        let head = ["output", "dtype", "shape", "max abs/rel error"].map(String::from);
        let mut w = [0usize; 4];
        for r in std::iter::once(&head).chain(&rows) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        for r in std::iter::once(&head).chain(&rows) {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            );
            s += line.trim_end();
            s.push('\n');
        }
        if !self.outputs.iter().all(|o| o.agreements.is_empty()) {
            s += "(differ: elements stored as different bits; ulp: the largest distance in units in the last place of the output's type)\n";
        }
        if self.outputs.iter().any(|o| o.dtype.is_narrow()) {
            s += &format!(
                "(16-bit outputs: ulp from the f64 reference rounded to the type; tolerance {ULP_TOLERANCE} ulp)\n"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_rule() {
        // Exact agreement.
        assert_eq!(accuracy(&[1.0, -2.0], &[1.0, -2.0]).max_abs, 0.0);
        // NaN in both and the same infinity in both agree.
        let a = accuracy(&[f32::NAN, f32::INFINITY, 3.0], &[f64::NAN, f64::INFINITY, 3.0]);
        assert_eq!((a.max_abs, a.max_rel), (0.0, 0.0));
        // NaN in one is NaN, even next to a larger finite error.
        let a = accuracy(&[f32::NAN, 10.0], &[1.0, 0.0]);
        assert!(a.max_abs.is_nan() && a.max_rel.is_nan());
        let a = accuracy(&[10.0, 1.0], &[0.0, f64::NAN]);
        assert!(a.max_abs.is_nan() && a.max_rel.is_nan());
        // Infinity in one is inf.
        let a = accuracy(&[f32::INFINITY, 1.0], &[1e300, 1.0]);
        assert_eq!((a.max_abs, a.max_rel), (f64::INFINITY, f64::INFINITY));
        // The floor: the RMS of the reference, here sqrt((9 + 16 + 0) / 3).
        let a = accuracy(&[3.0, 4.0, 0.5], &[3.0, 4.0, 0.0]);
        let rms = (25.0f64 / 3.0).sqrt();
        assert_eq!(a.floor, rms);
        assert_eq!(a.max_abs, 0.5);
        assert_eq!(a.max_rel, 0.5 / rms);
        // Large elements are measured elementwise.
        let a = accuracy(&[1.0, 110.0], &[1.0, 100.0]);
        assert!((a.max_rel - 0.1).abs() < 1e-12, "{a:?}");
        // Empty.
        assert_eq!(accuracy(&[], &[]).max_rel, 0.0);
    }

    #[test]
    fn json_nulls_non_finite() {
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(num(f64::INFINITY), Value::Null);
        assert_eq!(num(0.5), json!(0.5));
    }

    #[test]
    fn median_of_times() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&mut [ms(4), ms(1), ms(2), ms(3)]), Duration::from_micros(2500));
    }
}
