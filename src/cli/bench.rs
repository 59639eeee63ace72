//! `normjit bench [FILE...]`: the JIT against the reference interpreter,
//! the hand-fused rustc kernels and the stream roofline, on the same
//! buffers, at an in-cache and a DRAM size, on one thread and on all cores.
//!
//! What is timed, per kernel, size and thread count (each engine on its
//! own: warm-up call, then calls until the time target, median reported):
//! - `jit`: `Kernel::run` through the safe API, binding every tensor by
//!   name on every call, with code compiled beforehand;
//! - `rustc`: the hand-fused reference kernel, where the library has one;
//! - `interp`: the reference interpreter in f32 (single-threaded, so at 1
//!   thread only), which allocates its intermediates and outputs on every
//!   call, as an unfused eager framework does;
//! - `roofline`: the stream kernel with the pipeline's large streams, on
//!   the same buffers (an f16 tensor's stream, or one shorter than the
//!   largest tensor, on a buffer of its own).
//!
//! `jit`, `rustc`, `interp` and `roofline` share one set of buffers, so
//! that they see the same physical memory (two sets of buffers once gave
//! the roofline 21.7 GB/s in one run and 26.1 in the next, and put kernels
//! "above the roofline"), staggered within
//! the 4 KiB page; `inout` tensors get their entry values back before each
//! engine, and every value an engine wrote is checked to be finite after
//! it (NaN, infinities and subnormals can slow a CPU down and would make
//! the figure meaningless). The optimizers (files under `optim/`) also run
//! at the large size on exact page-aligned buffers, JIT only.
//!
//! Storage (`--dtype x=bf16,y=bf16,...`): the overrides apply to every
//! kernel benched that has tensors of those names. Buffers are then in the
//! tensors' types, the roofline streams the same types, and bytes are real
//! bytes; the rustc kernels are f32 only, and the interpreter computes from
//! f32 copies of the values. With `--compare-dtypes`, each kernel the
//! overrides change is benched both as written and with them, the two
//! taking turns in the same rounds, and the report compares their elements
//! per second.

use crate::cli::fail;
use normjit::ir::{DType, Kernel, Role};
use normjit::{collect_nj_files, SourceFile};
use normjit::{Compiler, CompilerOptions, Tensor, Threads};
use normjit_cli::bench::reference::Reference;
use normjit_cli::bench::report::{self, CallOverhead, Engine, Failure, Load, Machine, Report, Row};
use normjit_cli::bench::{roofline, Buffers, Isa, Placement};
use normjit_cli::bind::{example_params, parse_pairs, resolve_dims, resolve_params};
use normjit_cli::storage::{Elements, View, ViewMut};
use std::hint::black_box;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `bench`.
#[derive(clap::Args)]
#[command(after_help = "\
Sizes (without --dims), by the kernel's dims, so that its largest tensor holds
about 2^18 f32 elements (1 MiB, small: in cache) or 2^25 (128 MiB, large: DRAM):
  N, D (layer_norm, rms_norm, ...)  D = 1024 (small) or 4096 (large), N = elements / D
  N, C, H, W (batch_norm_*)         N = 32, C = 64, H = W = floor(sqrt(elements / (N * C)))
  N, G, K, S (group_norm)           N = 4 (small) or 32 (large), G = 32, K = 8, S = elements / (N * G * K)
  N, C, S (instance_norm)           N = 4 (small) or 32 (large), C = 64, S = elements / (N * C)
  M, K (spectral_norm)              M = 2^floor(log2(elements) / 2), K = elements / M
  anything else (optimizers, ...)   every dim 32, then the first dim of the largest tensor
                                    scaled to give the elements (1-D kernels: P = elements)

GB/s is the kernel's minimal traffic (each tensor read once, each written once,
from the lowering's traffic model) over the median time per call. The roofline
streams one buffer per large tensor of the pipeline (reads for `in`, in-place
for `inout`, writes for `out`), each as long as the largest tensor; its GB/s
is its own bytes over its own time. The machine is shared: compare ratios
within one run, not absolute times across runs.

--dtype stores tensors as bf16 or f16 (2 bytes per element; compute stays f32)
in every kernel benched that has tensors of those names, e.g. bf16 activations
for the norms and bf16 params and grads for AdamW:
  normjit bench ir/norm/rms_norm.nj ir/norm/layer_norm.nj ir/optim/adamw.nj \
      --size large --threads 1 --dtype x=bf16,y=bf16,p=bf16,g=bf16 --compare-dtypes
--compare-dtypes benches each kernel both as written (f32) and with the
overrides, in the same rounds, and prints their elements per second (of the
largest tensor) side by side, each against its own roofline (same streams, same
types).")]
pub struct Args {
    /// Kernel files or directories (searched for .nj files).
    #[arg(default_value = "ir")]
    paths: Vec<PathBuf>,
    /// Sizes for every kernel benched, as `N=64,D=1000` (replaces the small
    /// and large sizes; every dim of each kernel must be given).
    #[arg(long, value_name = "NAME=SIZE,...")]
    dims: Option<String>,
    /// Which of the default sizes to run.
    #[arg(long, value_enum, default_value_t = SizeChoice::Both, conflicts_with = "dims")]
    size: SizeChoice,
    /// Run at this thread count only (default: 1 and all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Fewer repetitions: the whole default run takes a few minutes.
    #[arg(long)]
    quick: bool,
    /// Write every measurement as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write an SVG bar chart of the bandwidths to this file.
    #[arg(long, value_name = "PATH")]
    plot: Option<PathBuf>,
    /// Store tensors as bf16 or f16 instead of as declared, in each kernel
    /// benched that has tensors of those names, as `x=bf16,y=bf16`;
    /// `p=bf16:stochastic(seed)` rounds stochastically (seed 42).
    #[arg(long, value_name = "TENSOR=DTYPE,...")]
    dtype: Option<String>,
    /// With --dtype: bench each kernel both as written and with the
    /// overrides, side by side, and compare their elements per second.
    #[arg(long)]
    compare_dtypes: bool,
    /// Instead of the table: LayerNorm (D = 4096) called this many times
    /// with N drawn at random from 1..=16384, reporting compilations, and
    /// runtime-sized vs size-specialized throughput at N = 256 and 16384.
    #[arg(long, value_name = "CALLS", num_args = 0..=1, default_missing_value = "10000")]
    runtime_shapes: Option<usize>,
    #[command(flatten)]
    schedule: crate::cli::ScheduleArg,
}

/// The `--size` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SizeChoice {
    /// About 1 MiB per largest tensor: in cache.
    Small,
    /// 128 MiB per largest tensor: from DRAM.
    Large,
    /// Both.
    Both,
}

/// Elements of the largest tensor at the small size (1 MiB of f32).
const SMALL_ELEMS: usize = 1 << 18;
/// Elements of the largest tensor at the large size (128 MiB of f32).
const LARGE_ELEMS: usize = 1 << 25;
/// Fewest timed calls per measurement.
const MIN_REPS: usize = 3;
/// Calls timed for the per-call overhead.
const OVERHEAD_CALLS: usize = 10_000;

/// How long to measure.
struct Timing {
    /// Timed calls stop once they have taken this long in total...
    target: Duration,
    /// ...or at this many.
    max_reps: usize,
    /// Fresh compiles per kernel and size for the compile time.
    compiles: usize,
    /// Turns the engines take (see [`bench_case`]).
    rounds: usize,
}

pub fn main(a: Args) -> ExitCode {
    match run(&a) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// One kernel at one size, in one or two storages.
struct Case {
    file: PathBuf,
    /// The kernel as its file declares it.
    kernel: Kernel,
    /// What is benched: the kernel with the `--dtype` overrides, or (with
    /// `--compare-dtypes`, when they change it) the kernel as written and
    /// then with them; each with its params by index (an override may add
    /// a stochastic rounding seed).
    variants: Vec<Variant>,
    size: &'static str,
    dims: Vec<usize>,
    /// Also run the JIT on page-aligned buffers.
    page_aligned: bool,
}

/// A kernel in one storage.
#[derive(Clone)]
struct Variant {
    kernel: Kernel,
    params: Vec<f64>,
    /// The kernel as written (no overrides).
    as_written: bool,
}

impl Case {
    fn dim_pairs(&self) -> Vec<(String, usize)> {
        self.kernel.dims.iter().map(|(d, dim)| (dim.name.clone(), self.dims[d.index()])).collect()
    }

    /// Elements of each tensor, by index; `None` if one overflows. (Every
    /// variant has the same tensors and dims.)
    fn lens(&self) -> Option<Vec<usize>> {
        self.kernel
            .tensors
            .iter()
            .map(|(_, t)| t.dims.iter().try_fold(1usize, |n, d| n.checked_mul(self.dims[d.index()])))
            .collect()
    }
}

/// What every case is measured with.
struct Ctx {
    timing: Timing,
    /// Per thread count: the JIT compiler and a pool for the other engines
    /// (none at 1 thread).
    engines: Vec<(usize, Compiler, Option<rayon::ThreadPool>)>,
}

fn run(a: &Args) -> Result<ExitCode, String> {
    a.schedule.set()?;
    if let Some(calls) = a.runtime_shapes {
        crate::cli::shapes::run(calls, a.threads.unwrap_or(1))?;
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = match a.threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(t) => vec![t],
        None if cores > 1 => vec![1, cores],
        None => vec![1],
    };
    let given = match &a.dims {
        Some(d) => Some(parse_pairs(d).map_err(|e| format!("--dims: {e}"))?),
        None => None,
    };

    if a.compare_dtypes && a.dtype.is_none() {
        return Err("--compare-dtypes compares each kernel with its --dtype overrides: pass --dtype too".into());
    }

    // Every file, storage override, dim and param is checked before
    // anything runs.
    let mut kernels: Vec<(PathBuf, Kernel)> = Vec::new();
    for p in &a.paths {
        let files = collect_nj_files(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
        for f in files {
            let k = SourceFile::read(&f).and_then(|s| s.kernel()).map_err(|e| e.to_string())?;
            kernels.push((f, k));
        }
    }
    let overridden: Vec<Kernel> = match &a.dtype {
        Some(spec) => {
            let refs: Vec<(&Path, &Kernel)> = kernels.iter().map(|(f, k)| (f.as_path(), k)).collect();
            normjit_cli::storage::apply_to_each(&refs, spec)?
        }
        None => kernels.iter().map(|(_, k)| k.clone()).collect(),
    };
    let mut cases = Vec::new();
    for ((f, k), over) in kernels.into_iter().zip(overridden) {
        let variant = |kernel: Kernel, as_written: bool| -> Result<Variant, String> {
            let params =
                resolve_params(&kernel, &example_params(&kernel)).map_err(|e| format!("{}: {e}", f.display()))?;
            Ok(Variant { kernel, params, as_written })
        };
        let variants = if over == k {
            vec![variant(k.clone(), true)?]
        } else if a.compare_dtypes {
            vec![variant(k.clone(), true)?, variant(over, false)?]
        } else {
            vec![variant(over, false)?]
        };
        let optim = f.components().any(|c| c.as_os_str() == "optim");
        let sizes: Vec<(&'static str, Vec<usize>)> = match &given {
            Some(g) => {
                vec![("custom", resolve_dims(&k, g, &[]).map_err(|e| format!("{}: --dims: {e}", f.display()))?)]
            }
            None => {
                let mut v = Vec::new();
                if a.size != SizeChoice::Large {
                    v.push(("small", default_dims(&k, SMALL_ELEMS, false)));
                }
                if a.size != SizeChoice::Small {
                    v.push(("large", default_dims(&k, LARGE_ELEMS, true)));
                }
                v
            }
        };
        for (size, dims) in sizes {
            let page_aligned = optim && size == "large";
            cases.push(Case {
                file: f.clone(),
                kernel: k.clone(),
                variants: variants.clone(),
                size,
                dims,
                page_aligned,
            });
        }
    }
    if cases.is_empty() {
        return Err("no .nj files found".into());
    }
    for c in &cases {
        if c.lens().is_none() {
            return Err(format!("{}: the sizes {:?} overflow", c.file.display(), c.dim_pairs()));
        }
    }
    // Destinations are opened first, so that a bad path fails before the
    // minutes of measuring.
    let open = |p: &Option<PathBuf>, flag: &str| -> Result<Option<(PathBuf, std::fs::File)>, String> {
        p.as_ref()
            .map(|p| {
                std::fs::File::create(p).map(|f| (p.clone(), f)).map_err(|e| format!("{flag} {}: {e}", p.display()))
            })
            .transpose()
    };
    let json_out = open(&a.json, "--json")?;
    let plot_out = open(&a.plot, "--plot")?;

    let timing = if a.quick {
        Timing { target: Duration::from_millis(90), max_reps: 300, compiles: 5, rounds: 3 }
    } else {
        Timing { target: Duration::from_millis(400), max_reps: 3000, compiles: 9, rounds: 5 }
    };
    let mut engines = Vec::new();
    for &t in &threads {
        let compiler =
            Compiler::with_options(CompilerOptions { threads: t, ..normjit_cli::target::compiler_options() })
                .map_err(|e| e.to_string())?;
        let pool = if t > 1 {
            Some(rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?)
        } else {
            None
        };
        engines.push((t, compiler, pool));
    }
    let machine = machine(&engines[0].1, cores);
    let ctx = Ctx { timing, engines };

    let mut report = Report {
        machine,
        dtype_overrides: a.dtype.clone(),
        schedule_overrides: Some(a.schedule.schedule.clone()).filter(|s| !s.is_empty()),
        quick: a.quick,
        time_target_s: ctx.timing.target.as_secs_f64(),
        rounds: ctx.timing.rounds,
        ..Default::default()
    };
    let total = cases.iter().map(|c| steps(&ctx, c)).sum();
    let load_start = loadavg();
    let cpu_start = CpuTimes::now();
    let mut progress = Progress::new(total);
    for c in &cases {
        if let Err(e) = bench_case(&ctx, c, &mut report, &mut progress) {
            report
                .failures
                .push(Failure { kernel: format!("{} ({}, {})", c.kernel.name, c.file.display(), c.size), error: e });
        }
    }
    if let Some(c) = cases.iter().find(|c| c.kernel.name == "layer_norm") {
        progress.show("layer_norm 8x4096: per-call overhead");
        match call_overhead(&c.kernel) {
            Ok(o) => report.overhead = o,
            Err(e) => report.failures.push(Failure { kernel: "layer_norm (call overhead)".into(), error: e }),
        }
    }
    progress.clear();
    report.wall_s = start.elapsed().as_secs_f64();
    report.load = Some(Load {
        loadavg_start: load_start,
        loadavg_end: loadavg(),
        others_cpu_share: cpu_start.zip(CpuTimes::now()).and_then(|(a, b)| a.others_share(&b)),
    });

    print!("{}", report.table());
    if let Some((p, mut f)) = json_out {
        let text = serde_json::to_string_pretty(&report.json()).expect("JSON values serialize");
        f.write_all(text.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .map_err(|e| format!("--json {}: {e}", p.display()))?;
    }
    if let Some((p, mut f)) = plot_out {
        f.write_all(report.svg().as_bytes()).map_err(|e| format!("--plot {}: {e}", p.display()))?;
    }
    Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The sizes of `k`'s dims (by index) that give its largest tensor about
/// `elems` elements: the rules in the command's help.
fn default_dims(k: &Kernel, elems: usize, large: bool) -> Vec<usize> {
    let isqrt = |n: usize| (n as f64).sqrt().floor() as usize;
    let batch = if large { 32 } else { 4 };
    let mut names: Vec<&str> = k.dims.iter().map(|(_, d)| d.name.as_str()).collect();
    names.sort_unstable();
    let rule: Option<Vec<(&str, usize)>> = match names.as_slice() {
        // Rows: LayerNorm, RMSNorm and their variants.
        ["D", "N"] => {
            let d = if large { 4096 } else { 1024 };
            Some(vec![("N", elems / d), ("D", d)])
        }
        // Images: BatchNorm, NCHW or NHWC.
        ["C", "H", "N", "W"] => {
            let hw = isqrt(elems / (32 * 64));
            Some(vec![("N", 32), ("C", 64), ("H", hw), ("W", hw)])
        }
        ["G", "K", "N", "S"] => Some(vec![("N", batch), ("G", 32), ("K", 8), ("S", elems / (batch * 32 * 8))]),
        ["C", "N", "S"] => Some(vec![("N", batch), ("C", 64), ("S", elems / (batch * 64))]),
        // A matrix: spectral norm.
        ["K", "M"] => {
            let m = 1usize << (elems.ilog2() / 2);
            Some(vec![("M", m), ("K", elems / m)])
        }
        _ => None,
    };
    // Sizes by dim index from the rule, which names every dim.
    if let Some(rule) = rule {
        if rule.len() == k.dims.len() {
            let dims: Option<Vec<usize>> =
                k.dims.iter().map(|(_, d)| rule.iter().find(|(n, _)| *n == d.name).map(|&(_, v)| v.max(1))).collect();
            if let Some(d) = dims {
                return d;
            }
        }
    }
    // Generic: every dim 32, then the first dim of the largest tensor
    // scaled to give it `elems` elements.
    let mut dims = vec![32usize; k.dims.len()];
    let size = |t: &normjit::ir::Tensor, dims: &[usize]| t.dims.iter().map(|d| dims[d.index()]).product::<usize>();
    let largest =
        k.tensors.iter().map(|(_, t)| t).filter(|t| !t.dims.is_empty()).max_by_key(|t| (size(t, &dims), t.dims.len()));
    if let Some(t) = largest {
        let rest: usize = t.dims[1..].iter().map(|d| dims[d.index()]).product();
        dims[t.dims[0].index()] = (elems / rest.max(1)).max(1);
    }
    dims
}

/// Measurements one case takes, for the progress line.
fn steps(ctx: &Ctx, c: &Case) -> usize {
    c.variants.len() + ctx.engines.len()
}

/// A progress line on stderr, when it is a terminal.
struct Progress {
    on: bool,
    total: usize,
    done: usize,
    start: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress { on: std::io::stderr().is_terminal(), total, done: 0, start: Instant::now() }
    }
    /// Shows what runs next, as the next step.
    fn step(&mut self, what: &str) {
        self.done += 1;
        self.show(what);
    }
    fn show(&self, what: &str) {
        if self.on {
            let secs = self.start.elapsed().as_secs();
            eprint!("\r\x1b[2K[{}/{} {}:{:02}] {what}", self.done.min(self.total), self.total, secs / 60, secs % 60);
            let _ = std::io::stderr().flush();
        }
    }
    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// A JIT call through the safe API: a positional call (what a runtime
/// embedding normjit makes) on views of the buffers, in their storage
/// types, with the code compiled beforehand.
struct JitCall<'k> {
    k: &'k Kernel,
    kernel: normjit::Kernel,
    params: Vec<f64>,
    dims: Vec<usize>,
}

impl<'k> JitCall<'k> {
    fn new(k: &'k Kernel, compiler: &Compiler, dims: &[usize], params: &[f64]) -> Result<JitCall<'k>, String> {
        let kernel = compiler.kernel(k.clone());
        kernel.prepare(dims).map_err(|e| e.to_string())?;
        Ok(JitCall { k, kernel, params: params.to_vec(), dims: dims.to_vec() })
    }

    /// One positional call.
    fn call(&self, bufs: &mut [ViewMut<'_>]) -> Result<(), normjit::Error> {
        let tensors: Vec<Tensor> =
            self.k.tensors.iter().zip(bufs.iter_mut()).map(|((_, t), s)| s.tensor(t.role != Role::In)).collect();
        black_box(self.kernel.call_with(&tensors, &self.params, Some(&self.dims), Threads::Default)).map(|_| ())
    }

    fn first(&mut self, bufs: &mut [ViewMut<'_>]) -> Result<(), String> {
        self.call(bufs).map_err(|e| e.to_string())
    }
}

/// The `inout` tensors' entry values, in their storage types, to put back
/// before each engine.
struct Entry(Vec<(usize, Elements)>);

impl Entry {
    fn save(k: &Kernel, bufs: &Buffers) -> Entry {
        Entry(
            k.tensors
                .iter()
                .filter(|(_, t)| t.role == Role::InOut)
                .map(|(t, _)| (t.index(), bufs.view(t.index()).to_elements()))
                .collect(),
        )
    }
    fn restore(&self, bufs: &mut Buffers) {
        for (i, v) in &self.0 {
            bufs.view_mut(*i).copy_from(v.view());
        }
    }
}

/// True if every tensor `k` writes holds only finite values.
fn written_finite(k: &Kernel, bufs: &Buffers) -> bool {
    k.tensors.iter().filter(|(_, t)| t.role.is_written()).all(|(t, _)| bufs.view(t.index()).all_finite())
}

/// The roofline's streams for a kernel: the element type of each stream
/// read, updated in place and written, and their one length; and per
/// stream (reads, in-place, writes), the kernel tensor whose buffer it
/// runs on, where that tensor is as long as the streams and f32 or bf16
/// (the roofline's 16-bit conversions are bf16's; an f16 tensor's bits
/// would make subnormals). The others get buffers of their own.
#[derive(Clone, Debug, PartialEq)]
struct Streams {
    read: Vec<DType>,
    inout: Vec<DType>,
    write: Vec<DType>,
    len: usize,
    tensors: Vec<Option<usize>>,
}

impl Streams {
    fn count(&self) -> usize {
        self.read.len() + self.inout.len() + self.write.len()
    }
    /// Bytes one pass moves: an in-place stream is read and written.
    fn bytes(&self) -> u64 {
        let b = |v: &[DType]| v.iter().map(|d| (d.size_bytes() * self.len) as u64).sum::<u64>();
        b(&self.read) + 2 * b(&self.inout) + b(&self.write)
    }
    /// Bytes of the buffers of the streams' own (not the kernel's).
    fn buffer_bytes(&self) -> u64 {
        self.own_specs().iter().map(|&(n, d)| (d.size_bytes() * n) as u64).sum()
    }
    /// The type of each stream without a kernel tensor, in order: reads,
    /// in-place, writes.
    fn own_specs(&self) -> Vec<(usize, DType)> {
        let all = self.read.iter().chain(&self.inout).chain(&self.write);
        all.zip(&self.tensors).filter(|(_, t)| t.is_none()).map(|(&d, _)| (self.len, d)).collect()
    }
    /// The streams' buffers, in order (reads, in-place, writes): the
    /// kernel's `kernel` where [`Streams::tensors`] says, else the next of
    /// `own`.
    fn views<'b>(&self, kernel: &'b mut Buffers, own: &'b mut Buffers) -> Vec<ViewMut<'b>> {
        let mut tensors: Vec<Option<ViewMut<'b>>> = kernel.views_mut().into_iter().map(Some).collect();
        let mut own = own.views_mut().into_iter();
        self.tensors
            .iter()
            .map(|t| match t {
                Some(i) => tensors[*i].take().expect("one stream per tensor"),
                None => own.next().expect("a buffer per stream without a tensor"),
            })
            .collect()
    }
    fn names(&self) -> [Vec<&'static str>; 3] {
        let n = |v: &[DType]| v.iter().map(|d| d.name()).collect();
        [n(&self.read), n(&self.inout), n(&self.write)]
    }
}

/// The roofline's streams for `k`: one per tensor at least 1/16 as large
/// as the largest (smaller ones, such as per-row scales, stay in cache), by
/// role and in the tensor's storage type; each `largest` elements long; at
/// most what [`roofline::stream_typed`] takes of each kind (the first ones).
fn roofline_streams(lens: &[usize], k: &Kernel) -> Streams {
    let largest = lens.iter().copied().max().unwrap_or(0);
    let mut s = Streams { read: Vec::new(), inout: Vec::new(), write: Vec::new(), len: largest, tensors: Vec::new() };
    // Per kind, the tensor each stream runs on (if any).
    let mut on: [Vec<Option<usize>>; 3] = Default::default();
    for ((id, t), &n) in k.tensors.iter().zip(lens) {
        if n == 0 || n.saturating_mul(16) < largest {
            continue;
        }
        let (v, kind, max) = match t.role {
            Role::In => (&mut s.read, 0, roofline::MAX_READS),
            Role::InOut => (&mut s.inout, 1, roofline::MAX_INOUTS),
            Role::Out => (&mut s.write, 2, roofline::MAX_WRITES),
        };
        if v.len() < max {
            v.push(t.dtype);
            on[kind].push((n == largest && t.dtype != DType::F16).then_some(id.index()));
        }
    }
    s.tensors = on.concat();
    s
}

/// Bytes of memory the system says are available, if it says.
fn mem_available() -> Option<u64> {
    meminfo("MemAvailable:")
}

fn meminfo(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// The engines of one case, in the order each round runs them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Jit,
    JitAligned,
    Rustc,
    Roofline,
    Interp,
}

/// Timed calls of one engine, gathered over the rounds.
#[derive(Default)]
struct Samples {
    times: Vec<f64>,
    finite: bool,
}

impl Samples {
    /// One batch: a warm-up call (caches and predictors, after the other
    /// engines ran), then calls until `budget` has passed, at least `min`
    /// and at most `max`.
    fn batch(
        &mut self,
        budget: Duration,
        min: usize,
        max: usize,
        mut f: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        f()?;
        let start = Instant::now();
        let mut n = 0;
        while n < min || (n < max && start.elapsed() < budget) {
            let t0 = Instant::now();
            f()?;
            self.times.push(t0.elapsed().as_secs_f64());
            n += 1;
        }
        Ok(())
    }
    fn result(&self) -> (f64, usize) {
        (report::median(&self.times).unwrap_or(0.0), self.times.len())
    }
}

/// One variant of a case, set up to be measured: its buffers, entry
/// values, baselines and roofline streams.
struct Setup<'c> {
    v: &'c Variant,
    storage: String,
    min_bytes: u64,
    compile_us: Option<f64>,
    bufs: Buffers,
    entry: Entry,
    abufs: Option<Buffers>,
    reference: Option<Reference>,
    streams: Streams,
    rbufs: Buffers,
    /// f32 copies of the entry values, for the interpreter, when some
    /// tensor is stored in a 16-bit type (the interpreter reads f32 values).
    holders: Option<Vec<Vec<f32>>>,
}

/// Measures every engine on one case and appends the rows.
///
/// Per thread count, the engines take turns: `rounds` rounds, each running
/// every engine for a slice of the time target (after a warm-up call), so
/// that load from other processes on a shared machine falls on all of them
/// alike; each engine's median is over the calls of all its batches. With
/// two variants (as written, with overrides), the engines of both take
/// turns in the same rounds, so their ratio sees the same machine.
fn bench_case(ctx: &Ctx, c: &Case, report: &mut Report, progress: &mut Progress) -> Result<(), String> {
    let label = format!("{} {}", c.kernel.name, c.size);
    let lens = c.lens().expect("checked before running");
    let elements = lens.iter().copied().max().unwrap_or(0) as u64;
    // Per variant: the buffers (twice with page-aligned ones), the saved
    // entry values, the interpreter's intermediates (about one more set,
    // in f32, plus f32 copies of 16-bit tensors) and the roofline's
    // streams.
    let sets = if c.page_aligned { 4 } else { 3 };
    let mut need = 0u64;
    for v in &c.variants {
        let k = &v.kernel;
        let bytes: u64 = k.tensors.iter().zip(&lens).map(|((_, t), &n)| (n * t.dtype.size_bytes()) as u64).sum();
        let f32s: u64 = 4 * lens.iter().sum::<usize>() as u64;
        let narrow = if normjit_cli::storage::has_narrow(k) { f32s } else { 0 };
        let streams = roofline_streams(&lens, k);
        need += sets * bytes + f32s + narrow + streams.buffer_bytes();
    }
    if let Some(avail) = mem_available() {
        if need > avail {
            return Err(format!(
                "needs about {} of memory, {} available",
                report::bytes_text(need),
                report::bytes_text(avail)
            ));
        }
    }
    let mut setups = Vec::new();
    for v in &c.variants {
        let k = &v.kernel;
        let storage = normjit_cli::storage::label(k);
        progress.step(&format!("{label} ({storage}): lowering and compiling"));
        let opts =
            normjit_lower::Options { schedule: normjit_cli::target::compiler_options().schedule, ..Default::default() };
        let plan = normjit_lower::lower(k, &c.dims, &opts).map_err(|e| e.to_string())?;
        let min_bytes = plan.traffic.min_bytes;
        drop(plan);
        let mut compiles = Vec::new();
        for _ in 0..ctx.timing.compiles {
            let compiler =
                Compiler::with_options(CompilerOptions { threads: 1, ..normjit_cli::target::compiler_options() })
                    .map_err(|e| e.to_string())?;
            let (_, us) = compiler.kernel(k.clone()).prepare(&c.dims).map_err(|e| e.to_string())?;
            compiles.push(us);
        }
        let bufs = Buffers::for_kernel(k, &c.dims, &v.params, 0, Placement::Staggered);
        let entry = Entry::save(k, &bufs);
        let abufs = c.page_aligned.then(|| Buffers::for_kernel(k, &c.dims, &v.params, 0, Placement::PageAligned));
        let holders = normjit_cli::storage::has_narrow(k).then(|| (0..bufs.len()).map(|i| bufs.values(i)).collect());
        let streams = roofline_streams(&lens, k);
        let rbufs = Buffers::new_typed(&streams.own_specs(), Placement::Staggered);
        setups.push(Setup {
            v,
            storage,
            min_bytes,
            compile_us: report::median(&compiles),
            bufs,
            entry,
            abufs,
            // None for a kernel with overrides: the rustc kernels are f32.
            reference: Reference::for_kernel(k),
            streams,
            rbufs,
            holders,
        });
    }

    let t = &ctx.timing;
    let budget = t.target / t.rounds as u32;
    let min = MIN_REPS.div_ceil(t.rounds);
    let max = t.max_reps.div_ceil(t.rounds);
    for (threads, compiler, pool) in &ctx.engines {
        let threads = *threads;
        let thr = format!("{threads} thread{}", if threads == 1 { "" } else { "s" });
        // (variant, engine), in the order each round runs them.
        let mut slots: Vec<(usize, Slot)> = Vec::new();
        for (vi, su) in setups.iter().enumerate() {
            slots.push((vi, Slot::Jit));
            if su.abufs.is_some() {
                slots.push((vi, Slot::JitAligned));
            }
            if su.reference.is_some() {
                slots.push((vi, Slot::Rustc));
            }
            if su.streams.count() > 0 {
                slots.push((vi, Slot::Roofline));
            }
            // The interpreter is single-threaded.
            if threads == 1 {
                slots.push((vi, Slot::Interp));
            }
        }
        progress.step(&format!(
            "{label}, {thr}: {}",
            slots
                .iter()
                .map(|(vi, s)| {
                    let s = format!("{s:?}").to_lowercase();
                    if setups.len() > 1 {
                        format!("{s} ({})", setups[*vi].storage)
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut jits = Vec::new();
        for su in &mut setups {
            let mut jit = JitCall::new(&su.v.kernel, compiler, &c.dims, &su.v.params)?;
            {
                let mut sl = su.bufs.views_mut();
                jit.first(&mut sl)?;
            }
            jits.push(jit);
        }
        let mut samples: Vec<Samples> = slots.iter().map(|_| Samples { finite: true, ..Default::default() }).collect();
        for round in 0..t.rounds {
            let last = round + 1 == t.rounds;
            for (&(vi, slot), s) in slots.iter().zip(&mut samples) {
                let su = &mut setups[vi];
                let k = &su.v.kernel;
                let params = &su.v.params;
                match slot {
                    Slot::Jit | Slot::JitAligned => {
                        let b = if slot == Slot::Jit {
                            &mut su.bufs
                        } else {
                            su.abufs.as_mut().expect("page-aligned buffers")
                        };
                        su.entry.restore(b);
                        let mut sl = b.views_mut();
                        let jit = &jits[vi];
                        s.batch(budget, min, max, || jit.call(&mut sl).map_err(|e| e.to_string()))?;
                        drop(sl);
                        s.finite &= !last || written_finite(k, b);
                    }
                    Slot::Rustc => {
                        let reference = su.reference.as_ref().expect("a reference kernel");
                        su.entry.restore(&mut su.bufs);
                        let bufs = &mut su.bufs;
                        s.batch(budget, min, max, || {
                            reference.run(&c.dims, params, bufs, pool.as_ref());
                            black_box(&mut *bufs);
                            Ok(())
                        })?;
                        s.finite &= !last || written_finite(k, &su.bufs);
                    }
                    Slot::Roofline => {
                        // On the kernel's buffers (their values are
                        // restored before the other engines run).
                        let (nr, nu) = (su.streams.read.len(), su.streams.inout.len());
                        let (streams, bufs, rbufs) = (&su.streams, &mut su.bufs, &mut su.rbufs);
                        s.batch(budget, min, max, || {
                            let mut all = streams.views(bufs, rbufs).into_iter();
                            let rs: Vec<View> = all.by_ref().take(nr).map(ViewMut::into_view).collect();
                            let us: Vec<ViewMut> = all.by_ref().take(nu).collect();
                            let ws: Vec<ViewMut> = all.collect();
                            let sum = match pool {
                                Some(p) => roofline::stream_typed_par(p, &rs, us, ws),
                                None => roofline::stream_typed(&rs, us, ws),
                            };
                            black_box(sum);
                            Ok(())
                        })?;
                    }
                    Slot::Interp => {
                        su.entry.restore(&mut su.bufs);
                        let slices: Vec<&[f32]> = match &su.holders {
                            Some(h) => h.iter().map(Vec::as_slice).collect(),
                            None => su.bufs.slices(),
                        };
                        // The last output is kept to be checked after
                        // the batch; each call drops its predecessor's,
                        // so every timed call pays for one drop.
                        let mut out = None;
                        s.batch(budget, min, max, || {
                            let o =
                                normjit_interp::run::<f32>(k, &c.dims, params, &slices).map_err(|e| e.to_string())?;
                            out = Some(black_box(o));
                            Ok(())
                        })?;
                        if last {
                            let out = out.expect("a call ran");
                            s.finite &= k
                                .tensors
                                .iter()
                                .all(|(t, _)| out.get(t).is_none_or(|v| v.iter().all(|x| x.is_finite())));
                        }
                    }
                }
            }
        }
        for (&(vi, slot), s) in slots.iter().zip(&samples) {
            let su = &setups[vi];
            let (median_s, reps) = s.result();
            let (engine, placement) = match slot {
                Slot::Jit => (Engine::Jit, "staggered"),
                Slot::JitAligned => (Engine::Jit, "page_aligned"),
                Slot::Rustc => (Engine::Rustc, "staggered"),
                Slot::Roofline => (Engine::Roofline, "staggered"),
                Slot::Interp => (Engine::Interp, "staggered"),
            };
            let roof = slot == Slot::Roofline;
            let st = &su.streams;
            report.rows.push(Row {
                kernel: c.kernel.name.clone(),
                storage: su.storage.clone(),
                as_written: su.v.as_written,
                elements,
                file: c.file.display().to_string(),
                size: c.size.to_string(),
                dims: c.dim_pairs(),
                threads,
                engine,
                placement,
                median_s,
                reps,
                min_bytes: su.min_bytes,
                bytes: if roof { st.bytes() } else { su.min_bytes },
                compile_us: if engine == Engine::Jit { su.compile_us } else { None },
                streams: roof.then_some((st.read.len(), st.inout.len(), st.write.len())),
                stream_dtypes: roof.then(|| st.names()),
                finite: s.finite,
            });
        }
    }
    Ok(())
}

/// Times a call repeatedly; gives microseconds per call.
type PerCall<'f> = dyn Fn(&mut dyn FnMut() -> Result<(), String>) -> Result<f64, String> + 'f;

/// Per-call time of `layer_norm` at 8 x 4096 on one thread through the
/// safe API, next to the rustc kernel alone on the same buffers.
fn call_overhead(k: &Kernel) -> Result<Option<CallOverhead>, String> {
    let given = [("N".to_string(), "8".to_string()), ("D".to_string(), "4096".to_string())];
    let Ok(dims) = resolve_dims(k, &given, &[]) else { return Ok(None) };
    let params = resolve_params(k, &[]).map_err(|e| e.to_string())?;
    let compiler = Compiler::with_options(CompilerOptions { threads: 1, ..normjit_cli::target::compiler_options() })
        .map_err(|e| e.to_string())?;
    let mut bufs = Buffers::for_kernel(k, &dims, &params, 0, Placement::Staggered);
    let per_call = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        for _ in 0..100 {
            f()?;
        }
        let mut times = Vec::with_capacity(OVERHEAD_CALLS);
        for _ in 0..OVERHEAD_CALLS {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(report::median(&times).unwrap_or(0.0) * 1e6)
    };
    // Positional calls on views made once, as a runtime's steady state.
    let positional = |bufs: &mut Buffers, dims: &[usize], per_call: &PerCall| -> Result<f64, String> {
        let kernel = compiler.kernel(k.clone());
        let mut sl = bufs.slices_mut();
        let tensors: Vec<Tensor> = k
            .tensors
            .iter()
            .zip(sl.iter_mut())
            .map(|((_, t), s)| if t.role == Role::In { Tensor::input(s) } else { Tensor::output(s) })
            .collect();
        kernel.call_with(&tensors, &params, Some(dims), Threads::Default).map_err(|e| e.to_string())?;
        per_call(&mut || {
            kernel
                .call_with(black_box(&tensors), &params, Some(dims), Threads::Default)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let jit_us = positional(&mut bufs, &dims, &per_call)?;
    let rustc_us = match Reference::for_kernel(k) {
        Some(r) => Some(per_call(&mut || {
            r.run(&dims, &params, &mut bufs, None);
            black_box(&mut bufs);
            Ok(())
        })?),
        None => None,
    };
    let pairs = |dims: &[usize]| k.dims.iter().map(|(d, dim)| (dim.name.clone(), dims[d.index()])).collect();
    // The same at one row of 16: what a call costs beyond the work.
    let tiny = [("N".to_string(), "1".to_string()), ("D".to_string(), "16".to_string())];
    let tiny = resolve_dims(k, &tiny, &[]).map_err(|e| e.to_string())?;
    let mut tbufs = Buffers::for_kernel(k, &tiny, &params, 0, Placement::Staggered);
    let tiny_us = positional(&mut tbufs, &tiny, &per_call)?;
    Ok(Some(CallOverhead {
        kernel: k.name.clone(),
        dims: pairs(&dims),
        calls: OVERHEAD_CALLS,
        jit_us,
        rustc_us,
        tiny_dims: pairs(&tiny),
        tiny_us,
    }))
}

/// The 1-minute load average.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU time so far, in clock ticks: of the whole machine, busy and in
/// total, and of this process.
struct CpuTimes {
    busy: u64,
    total: u64,
    own: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user). Steal is time other virtual machines took.
        let get = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
        let total = busy + get(3) + get(4);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime: fields 14 and 15, counting from 1 with the
        // command name as field 2.
        let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTimes { busy, total, own })
    }

    /// The share of all CPUs' time since `self` that other processes (and
    /// other virtual machines) used.
    fn others_share(&self, later: &CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.saturating_sub(self.busy);
        let own = later.own.saturating_sub(self.own);
        (total > 0).then(|| (busy.saturating_sub(own) as f64 / total as f64).clamp(0.0, 1.0))
    }
}

/// The machine: CPU model, cores, caches, memory, and the ISAs in use.
fn machine(compiler: &Compiler, cores: usize) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    Machine {
        cpu,
        cores,
        jit_isa_flags: compiler.isa().flags.clone(),
        rustc_isa: Isa::current().name().to_string(),
        l2_bytes: normjit::host::l2_bytes(),
        l3_bytes: normjit::host::cache_level_bytes(3),
        memory_bytes: meminfo("MemTotal:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(rel: &str) -> Kernel {
        normjit::load_kernel(&Path::new(env!("CARGO_MANIFEST_DIR")).join("ir").join(rel)).unwrap()
    }

    fn largest(k: &Kernel, dims: &[usize]) -> usize {
        k.tensors.iter().map(|(_, t)| t.dims.iter().map(|d| dims[d.index()]).product::<usize>()).max().unwrap()
    }

    #[test]
    fn default_sizes_hit_their_targets() {
        for dir in ["norm", "optim", "reg"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir").join(dir);
            for f in collect_nj_files(&dir).unwrap() {
                let k = normjit::load_kernel(&f).unwrap();
                for (elems, large) in [(SMALL_ELEMS, false), (LARGE_ELEMS, true)] {
                    let n = largest(&k, &default_dims(&k, elems, large));
                    assert!(n <= elems && n * 10 >= elems * 9, "{}: {n} elements for {elems}", k.name);
                }
            }
        }
        let ln = lib("norm/layer_norm.nj");
        assert_eq!(default_dims(&ln, LARGE_ELEMS, true), vec![8192, 4096]);
        let sn = lib("reg/spectral_norm.nj");
        assert_eq!(default_dims(&sn, SMALL_ELEMS, false), vec![512, 512]);
        assert_eq!(default_dims(&lib("optim/adamw.nj"), SMALL_ELEMS, false), vec![SMALL_ELEMS]);
    }

    #[test]
    fn roofline_streams_skip_small_tensors() {
        let ln = lib("norm/layer_norm.nj");
        let s = roofline_streams(&[1 << 20, 1024, 1024, 1 << 20], &ln);
        assert_eq!((s.read.len(), s.inout.len(), s.write.len(), s.len), (1, 0, 1, 1 << 20));
        assert_eq!(s.bytes(), 2 * (4 << 20));
        let adamw = lib("optim/adamw.nj");
        let s = roofline_streams(&[100; 4], &adamw);
        assert_eq!((s.read.len(), s.inout.len(), s.write.len(), s.len), (1, 3, 0, 100));
        assert_eq!(s.bytes(), 4 * 100 * (1 + 2 * 3));
    }

    #[test]
    fn roofline_streams_have_the_tensors_types() {
        // bf16 activations: x read and y written as 2-byte streams.
        let ln = normjit_cli::storage::apply(&lib("norm/layer_norm.nj"), "x=bf16,y=bf16").unwrap();
        let s = roofline_streams(&[1 << 20, 1024, 1024, 1 << 20], &ln);
        assert_eq!((s.read.clone(), s.write.clone()), (vec![DType::BF16], vec![DType::BF16]));
        assert_eq!(s.bytes(), 2 * (2 << 20));
        assert_eq!(s.names(), [vec!["bf16"], vec![], vec!["bf16"]]);
        // AdamW with bf16 p and g, f32 m and v: 2 + 2 * (2 + 4 + 4) = 22
        // bytes per element, against 28 in f32.
        let adamw = normjit_cli::storage::apply(&lib("optim/adamw.nj"), "p=bf16,g=bf16").unwrap();
        let s = roofline_streams(&[100; 4], &adamw);
        assert_eq!(s.inout, vec![DType::BF16, DType::F32, DType::F32]);
        assert_eq!(s.read, vec![DType::BF16]);
        assert_eq!(s.bytes(), 22 * 100);
        // Every stream runs on its tensor's buffer: none of its own.
        assert_eq!(s.tensors.iter().filter(|t| t.is_some()).count(), 4);
        assert_eq!((s.buffer_bytes(), s.own_specs().len()), (0, 0));
        // An f16 tensor's stream gets a buffer of its own (the roofline
        // converts 16-bit elements as bf16), and so does a tensor shorter
        // than the largest.
        let adamw = normjit_cli::storage::apply(&lib("optim/adamw.nj"), "p=f16").unwrap();
        let s = roofline_streams(&[100; 4], &adamw);
        assert_eq!((s.buffer_bytes(), s.own_specs()), (2 * 100, vec![(100, DType::F16)]));
        let s = roofline_streams(&[1 << 20, 1024, 1024, 1 << 19], &ln);
        assert_eq!((s.tensors.iter().filter(|t| t.is_none()).count(), s.buffer_bytes()), (1, 2 << 20));
    }
}
