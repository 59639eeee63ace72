//! What `normjit bench` reports, and how: the readable table, the JSON
//! document and the SVG bar chart, all from one [`Report`].
//!
//! Measuring is the CLI's business (`src/cli/bench.rs`); this module only
//! turns measurements into text, so that every output says the same thing.
//!
//! Every figure is a median over repeated calls. Effective bandwidth
//! (`gbs`) is the kernel's minimal traffic (`min_bytes`: each tensor it
//! reads counted once, each it writes once, from the lowering's traffic
//! model) over the median time, for every engine that computes the kernel.
//! The roofline's bandwidth is the bytes its own streams move over its own
//! time; both are bandwidths, so their ratio says how close a kernel gets
//! to what the machine can stream with the same reads and writes.
//!
//! Bytes are real bytes: a tensor stored as bf16 or f16 counts 2 per
//! element, and its roofline streams move 2-byte elements too. A kernel's
//! storage (`--dtype` overrides) is part of its table line; elements per
//! second (of the kernel's largest tensor) compare the same kernel across
//! storage types, where bytes do not ([`Comparison`]).

use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// What ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// The JIT through the safe API (`Kernel::run`), compiled beforehand.
    Jit,
    /// The hand-fused rustc reference kernel ([`super::reference`]).
    Rustc,
    /// The reference interpreter in f32: eager, one node at a time,
    /// allocating its intermediates and outputs on every call.
    Interp,
    /// The stream kernel with the pipeline's streams ([`super::roofline`]).
    Roofline,
}

impl Engine {
    /// Its name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Jit => "jit",
            Engine::Rustc => "rustc",
            Engine::Interp => "interp",
            Engine::Roofline => "roofline",
        }
    }
}

/// The machine the run was on.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// CPU model name, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// The ISA flags the JIT compiles for.
    pub jit_isa_flags: String,
    /// The ISA variant the rustc kernels and the roofline run.
    pub rustc_isa: String,
    /// Per-core L2 cache, in bytes.
    pub l2_bytes: usize,
    /// Last-level cache, in bytes, when sysfs says.
    pub l3_bytes: Option<usize>,
    /// Physical memory, in bytes, when `/proc/meminfo` says.
    pub memory_bytes: Option<u64>,
}

/// One measurement: one engine on one kernel (in one storage) at one size,
/// thread count and buffer placement.
#[derive(Clone, Debug)]
pub struct Row {
    /// The kernel's name.
    pub kernel: String,
    /// Its tensors not stored as f32, as a `--dtype` spec
    /// (`x=bf16,y=bf16`), or `f32`.
    pub storage: String,
    /// True for the kernel as its file declares it; false with `--dtype`
    /// overrides applied.
    pub as_written: bool,
    /// Elements of its largest tensor: the unit of elements per second.
    pub elements: u64,
    /// The file it came from.
    pub file: String,
    /// `small`, `large` or `custom` (sizes given with `--dims`).
    pub size: String,
    /// Every dim and its size, in declaration order.
    pub dims: Vec<(String, usize)>,
    /// Threads it ran on.
    pub threads: usize,
    /// What ran.
    pub engine: Engine,
    /// `staggered` or `page_aligned`.
    pub placement: &'static str,
    /// Median seconds per call.
    pub median_s: f64,
    /// Calls timed (after one warm-up call).
    pub reps: usize,
    /// The kernel's minimal traffic per call, in bytes.
    pub min_bytes: u64,
    /// The bytes `gbs` is computed from: `min_bytes`, except for the
    /// roofline, whose streams move their own count.
    pub bytes: u64,
    /// Lowering plus code generation, median microseconds (JIT rows).
    pub compile_us: Option<f64>,
    /// The roofline's streams: (read, in-place, written).
    pub streams: Option<(usize, usize, usize)>,
    /// The roofline's streams' element types: read, in-place, written.
    pub stream_dtypes: Option<[Vec<&'static str>; 3]>,
    /// True if every value the engine wrote was finite (non-finite values
    /// would make the timing suspect: NaN and subnormals can be slow).
    pub finite: bool,
}

impl Row {
    /// Effective bandwidth, in GB/s (10^9 bytes per second).
    pub fn gbs(&self) -> f64 {
        self.bytes as f64 / self.median_s / 1e9
    }

    /// Elements of the largest tensor per second.
    pub fn elements_per_s(&self) -> f64 {
        self.elements as f64 / self.median_s
    }
}

/// Time per call of a tiny kernel through the safe API: the fixed cost a
/// user pays per call.
#[derive(Clone, Debug)]
pub struct CallOverhead {
    /// The kernel.
    pub kernel: String,
    /// Its dims.
    pub dims: Vec<(String, usize)>,
    /// Calls timed.
    pub calls: usize,
    /// Median microseconds per JIT call (binding by name, checks, and the
    /// generated code), one thread.
    pub jit_us: f64,
    /// Median microseconds per call of the rustc kernel on the same
    /// buffers: the work itself, without any API.
    pub rustc_us: Option<f64>,
    /// The dims of a tiny call (one short row), where the work is next to
    /// nothing.
    pub tiny_dims: Vec<(String, usize)>,
    /// Median microseconds per JIT call at `tiny_dims`: the fixed cost of
    /// a call.
    pub tiny_us: f64,
}

/// How busy the machine was with other work during the run.
#[derive(Clone, Debug, Default)]
pub struct Load {
    /// The 1-minute load average when the run started.
    pub loadavg_start: Option<f64>,
    /// The 1-minute load average when it ended.
    pub loadavg_end: Option<f64>,
    /// The share of all CPUs' time during the run that other processes
    /// (and, in a virtual machine, the hypervisor's other guests) took.
    pub others_cpu_share: Option<f64>,
}

/// Above this share of the CPUs taken by others, the report warns that
/// its figures are unreliable.
pub const BUSY_SHARE: f64 = 0.1;

/// A failure that kept a kernel (or part of its measurements) out of the
/// report.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The kernel's name or file.
    pub kernel: String,
    /// What went wrong.
    pub error: String,
}

/// Everything one `normjit bench` run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Every measurement, in the order taken.
    pub rows: Vec<Row>,
    /// The per-call overhead, when measured.
    pub overhead: Option<CallOverhead>,
    /// Failures, per kernel.
    pub failures: Vec<Failure>,
    /// Other load on the machine during the run.
    pub load: Option<Load>,
    /// Whether `--quick` cut the repetitions.
    pub quick: bool,
    /// Wall-clock seconds each engine's timed calls aim to fill.
    pub time_target_s: f64,
    /// The `--dtype` overrides, if given.
    pub dtype_overrides: Option<String>,
    /// The `--schedule` overrides, if given.
    pub schedule_overrides: Option<String>,
    /// Turns the engines take, each with its share of the time.
    pub rounds: usize,
    /// Total wall-clock seconds of the run.
    pub wall_s: f64,
}

/// One kernel's JIT as written (`base`, f32 in the library) and with
/// `--dtype` overrides (`other`), at one size and thread count, measured
/// in the same run. Elements per second is the common unit: the overrides
/// change the bytes, not the work.
#[derive(Clone, Copy, Debug)]
pub struct Comparison<'a> {
    /// The kernel as written.
    pub base: &'a Row,
    /// With the overrides.
    pub other: &'a Row,
    /// The roofline with `base`'s streams.
    pub base_roofline: Option<&'a Row>,
    /// The roofline with `other`'s streams, in its types.
    pub other_roofline: Option<&'a Row>,
}

impl Comparison<'_> {
    /// How many times more elements per second `other` processes.
    pub fn ratio(&self) -> f64 {
        self.other.elements_per_s() / self.base.elements_per_s()
    }
    /// The ratio the bytes allow: `base`'s minimal traffic over `other`'s.
    pub fn byte_ratio(&self) -> f64 {
        self.base.min_bytes as f64 / self.other.min_bytes as f64
    }
    /// `other`'s bandwidth over its own roofline's.
    pub fn vs_roofline(&self) -> Option<f64> {
        Some(self.other.gbs() / self.other_roofline?.gbs())
    }
    /// `base`'s bandwidth over its own roofline's.
    pub fn base_vs_roofline(&self) -> Option<f64> {
        Some(self.base.gbs() / self.base_roofline?.gbs())
    }
    fn json(&self) -> Value {
        json!({
            "kernel": self.other.kernel,
            "file": self.other.file,
            "size": self.other.size,
            "threads": self.other.threads,
            "elements": self.other.elements,
            "storage": self.other.storage,
            "base_storage": self.base.storage,
            "elements_per_s": self.other.elements_per_s(),
            "base_elements_per_s": self.base.elements_per_s(),
            "ratio": self.ratio(),
            "byte_ratio": self.byte_ratio(),
            "vs_roofline": self.vs_roofline(),
            "base_vs_roofline": self.base_vs_roofline(),
            "roofline_elements_per_s": self.other_roofline.map(Row::elements_per_s),
            "base_roofline_elements_per_s": self.base_roofline.map(Row::elements_per_s),
        })
    }
}

/// What every report says about how to read it.
pub const NOTES: [&str; 6] = [
    "Medians of repeated calls; per thread count the engines take turns in rounds (a warm-up call opening each turn), so that load from other processes falls on all alike. The machine is shared and virtualized: absolute times are noisy; compare engines within one run.",
    "GB/s = the kernel's minimal traffic (each tensor read once, written once) / median time; the roofline's GB/s = the bytes its own streams move / its time.",
    "roofline: a stream kernel with one stream per large tensor of the pipeline (in = read, inout = in-place, out = written), each as long as the largest tensor; small per-row/per-channel vectors stay in cache and are not streams.",
    "interp: the reference interpreter in f32, eager and single-threaded, allocating its intermediates and outputs on every call (what an unfused framework does; at the large size that includes faulting in fresh pages); measured at 1 thread only.",
    "Buffers are staggered within the 4 KiB page (no 4K aliasing) unless placement is page_aligned; jit, rustc, interp and the roofline run on the same buffers (the roofline on its own for f16 tensors and tensors shorter than the largest).",
    "storage: tensors stored as bf16/f16 (--dtype) move 2 bytes per element, in the kernel's buffers and in its roofline's streams; rustc kernels are f32 only (`-` elsewhere); interp computes from f32 copies of the values.",
];

/// The key rows of one table line share.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct LineKey {
    kernel: String,
    storage: String,
    size: String,
    threads: usize,
    placement: &'static str,
}

/// One line of the table: the rows of every engine at one configuration.
struct Line<'a> {
    key: LineKey,
    jit: Option<&'a Row>,
    rustc: Option<&'a Row>,
    interp: Option<&'a Row>,
    roofline: Option<&'a Row>,
    /// The staggered JIT row, for a page-aligned line.
    jit_staggered: Option<&'a Row>,
}

impl Line<'_> {
    fn any(&self) -> &Row {
        self.jit.or(self.rustc).or(self.interp).or(self.roofline).expect("a line has some row")
    }
    /// JIT bandwidth over the roofline's.
    fn vs_roofline(&self) -> Option<f64> {
        Some(self.jit?.gbs() / self.roofline?.gbs())
    }
    /// How many times faster the JIT is than rustc.
    fn vs_rustc(&self) -> Option<f64> {
        Some(self.rustc?.median_s / self.jit?.median_s)
    }
    /// How many times faster the JIT is than the interpreter.
    fn vs_interp(&self) -> Option<f64> {
        Some(self.interp?.median_s / self.jit?.median_s)
    }
}

impl Report {
    /// The rows grouped into table lines, in the order first measured.
    fn lines(&self) -> Vec<Line<'_>> {
        let mut order: Vec<LineKey> = Vec::new();
        for r in &self.rows {
            let k = key(r);
            if !order.contains(&k) {
                order.push(k);
            }
        }
        let find = |k: &LineKey, e: Engine, placement: &str, threads: usize| {
            self.rows.iter().find(|r| {
                r.engine == e
                    && r.kernel == k.kernel
                    && r.storage == k.storage
                    && r.size == k.size
                    && r.threads == threads
                    && r.placement == placement
            })
        };
        order
            .into_iter()
            .map(|k| {
                let aligned = k.placement != "staggered";
                let jit = find(&k, Engine::Jit, k.placement, k.threads);
                // Baselines always come from the staggered buffers; the
                // single-threaded interpreter serves every thread count
                // only at 1 thread.
                let rustc = find(&k, Engine::Rustc, k.placement, k.threads);
                let interp = find(&k, Engine::Interp, k.placement, k.threads);
                let roofline = find(&k, Engine::Roofline, "staggered", k.threads);
                let jit_staggered = if aligned { find(&k, Engine::Jit, "staggered", k.threads) } else { None };
                Line { key: k, jit, rustc, interp, roofline, jit_staggered }
            })
            .collect()
    }

    /// The JSON document: `{"machine": {..}, "results": [..], ..}`. Each
    /// result has `kernel`, `dims`, `threads`, `engine`, `median_s`, `gbs`,
    /// `min_bytes` and `compile_us` (null but for the JIT), plus `file`,
    /// `size`, `placement`, `reps`, `bytes`, `finite`, `storage` (the
    /// tensors not stored as f32, or `f32`), `elements` (of the largest
    /// tensor) and `elements_per_s`, and on JIT rows the ratios
    /// `vs_roofline` (bandwidth over the roofline's with the same streams
    /// in the same types), `vs_rustc` and `vs_interp` (speedups), null
    /// where the baseline was not measured. With `--compare-dtypes`,
    /// `storage_comparison` pairs each kernel's JIT rows across storage.
    pub fn json(&self) -> Value {
        let m = &self.machine;
        let machine = json!({
            "cpu": m.cpu,
            "cores": m.cores,
            "jit_isa_flags": m.jit_isa_flags,
            "rustc_isa": m.rustc_isa,
            "l2_bytes": m.l2_bytes,
            "l3_bytes": m.l3_bytes,
            "memory_bytes": m.memory_bytes,
            "note": "shared virtual machine: timings are noisy; compare ratios within one run",
        });
        let lines = self.lines();
        let results: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let dims: Map<String, Value> = r.dims.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
                let mut v = json!({
                    "kernel": r.kernel,
                    "file": r.file,
                    "size": r.size,
                    "dims": dims,
                    "threads": r.threads,
                    "engine": r.engine.name(),
                    "placement": r.placement,
                    "median_s": r.median_s,
                    "reps": r.reps,
                    "gbs": r.gbs(),
                    "min_bytes": r.min_bytes,
                    "bytes": r.bytes,
                    "compile_us": r.compile_us,
                    "finite": r.finite,
                    "storage": r.storage,
                    "as_written": r.as_written,
                    "elements": r.elements,
                    "elements_per_s": r.elements_per_s(),
                });
                if let Some((reads, inouts, writes)) = r.streams {
                    v["streams"] = json!({"read": reads, "inout": inouts, "write": writes});
                }
                if let Some([reads, inouts, writes]) = &r.stream_dtypes {
                    v["stream_dtypes"] = json!({"read": reads, "inout": inouts, "write": writes});
                }
                if r.engine == Engine::Jit {
                    if let Some(l) = lines.iter().find(|l| l.key == key(r)) {
                        v["vs_roofline"] = json!(l.vs_roofline());
                        v["vs_rustc"] = json!(l.vs_rustc());
                        v["vs_interp"] = json!(l.vs_interp());
                        if let Some(s) = l.jit_staggered {
                            v["vs_staggered"] = json!(s.median_s / r.median_s);
                        }
                    }
                }
                v
            })
            .collect();
        let overhead = self.overhead.as_ref().map(|o| {
            let dims: Map<String, Value> = o.dims.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
            let tiny: Map<String, Value> = o.tiny_dims.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
            json!({
                "kernel": o.kernel, "dims": dims, "threads": 1, "calls": o.calls, "jit_us": o.jit_us,
                "rustc_us": o.rustc_us, "tiny_dims": tiny, "tiny_jit_us": o.tiny_us,
            })
        });
        let failures: Vec<Value> =
            self.failures.iter().map(|f| json!({"kernel": f.kernel, "error": f.error})).collect();
        json!({
            "machine": machine,
            "results": results,
            "call_overhead": overhead,
            "summary": self.summary_json(),
            "dtype_overrides": self.dtype_overrides,
            "schedule_overrides": self.schedule_overrides,
            "storage_comparison": self.comparisons().iter().map(Comparison::json).collect::<Vec<_>>(),
            "failures": failures,
            "load": self.load.as_ref().map(|l| json!({
                "loadavg_start": l.loadavg_start,
                "loadavg_end": l.loadavg_end,
                "others_cpu_share": l.others_cpu_share,
            })),
            "quick": self.quick,
            "time_target_s": self.time_target_s,
            "rounds": self.rounds,
            "wall_s": self.wall_s,
            "notes": NOTES,
        })
    }

    /// The JIT rows of each kernel with `--dtype` overrides next to the
    /// same kernel as written, at the same size and thread count
    /// (staggered buffers), with both rooflines.
    pub fn comparisons(&self) -> Vec<Comparison<'_>> {
        let lines = self.lines();
        let roof = |r: &Row| lines.iter().find(|l| l.key == key(r)).and_then(|l| l.roofline);
        let mut out = Vec::new();
        for r in self.rows.iter().filter(|r| r.engine == Engine::Jit && !r.as_written && r.placement == "staggered") {
            let base = self.rows.iter().find(|b| {
                b.engine == Engine::Jit
                    && b.as_written
                    && b.kernel == r.kernel
                    && b.file == r.file
                    && b.size == r.size
                    && b.threads == r.threads
                    && b.placement == r.placement
            });
            if let Some(base) = base {
                out.push(Comparison { base, other: r, base_roofline: roof(base), other_roofline: roof(r) });
            }
        }
        out
    }

    /// Geometric means of the JIT ratios per (size, threads), staggered
    /// buffers only.
    fn summary(&self) -> Vec<Summary> {
        let lines = self.lines();
        let mut out: Vec<Summary> = Vec::new();
        for l in lines.iter().filter(|l| l.key.placement == "staggered") {
            let i = match out.iter().position(|s| s.size == l.key.size && s.threads == l.key.threads) {
                Some(i) => i,
                None => {
                    out.push(Summary { size: l.key.size.clone(), threads: l.key.threads, ..Default::default() });
                    out.len() - 1
                }
            };
            let s = &mut out[i];
            if let Some(c) = l.jit.and_then(|r| r.compile_us) {
                s.compile_us.push(c);
            }
            s.vs_roofline.extend(l.vs_roofline());
            s.vs_rustc.extend(l.vs_rustc());
            s.vs_interp.extend(l.vs_interp());
        }
        out
    }

    fn summary_json(&self) -> Value {
        let v: Vec<Value> = self
            .summary()
            .iter()
            .map(|s| {
                json!({
                    "size": s.size,
                    "threads": s.threads,
                    "geomean_vs_roofline": geomean(&s.vs_roofline),
                    "geomean_vs_rustc": geomean(&s.vs_rustc),
                    "geomean_vs_interp": geomean(&s.vs_interp),
                    "median_compile_us": median(&s.compile_us),
                })
            })
            .collect();
        Value::Array(v)
    }

    /// The readable report: the machine, one line per kernel, size, thread
    /// count and placement with every engine's GB/s and the JIT's ratios,
    /// then summaries, the call overhead and the notes.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let l3 = m.l3_bytes.map_or(String::new(), |b| format!(", L3 {}", bytes_text(b as u64)));
        let _ = writeln!(s, "machine  {} ({} cores, L2 {}{l3})", m.cpu, m.cores, bytes_text(m.l2_bytes as u64));
        let _ = writeln!(s, "jit      Cranelift, ISA flags: {}", m.jit_isa_flags);
        let _ = writeln!(s, "rustc    reference kernels and roofline built for {}", m.rustc_isa);
        let _ = writeln!(
            s,
            "timing   median per call; per engine ~{:.2} s of calls in {} turns (at least 3 calls){}",
            self.time_target_s,
            self.rounds,
            if self.quick { ", --quick" } else { "" }
        );
        if let Some(d) = &self.dtype_overrides {
            let _ = writeln!(s, "storage  --dtype {d} (applied to each kernel with tensors of those names)");
        }
        if let Some(o) = &self.schedule_overrides {
            let _ = writeln!(s, "schedule --schedule {o} (the JIT's; applied to every kernel benched)");
        }
        s.push('\n');

        let head = [
            "kernel",
            "storage",
            "size",
            "dims",
            "thr",
            "traffic",
            "jit/call",
            "jit",
            "rustc",
            "interp",
            "roofline",
            "jit/roof",
            "jit/rustc",
            "jit/interp",
            "compile",
        ];
        let mut rows: Vec<[String; 15]> = Vec::new();
        let dash = || "-".to_string();
        for l in self.lines() {
            let any = l.any();
            let dims = any.dims.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(",");
            let name = if l.key.placement == "staggered" {
                l.key.kernel.clone()
            } else {
                format!("{} [{}]", l.key.kernel, l.key.placement)
            };
            let g =
                |r: Option<&Row>| r.map_or_else(dash, |r| format!("{:.1}{}", r.gbs(), if r.finite { "" } else { "!" }));
            let x = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.2}x"));
            rows.push([
                name,
                l.key.storage.clone(),
                l.key.size.clone(),
                dims,
                l.key.threads.to_string(),
                bytes_text(any.min_bytes),
                l.jit.map_or_else(dash, |r| time_text(r.median_s)),
                g(l.jit),
                g(l.rustc),
                g(l.interp),
                g(l.roofline),
                x(l.vs_roofline()),
                x(l.vs_rustc()),
                x(l.vs_interp()),
                l.jit.and_then(|r| r.compile_us).map_or_else(dash, |us| format!("{us:.0} us")),
            ]);
        }
        s += &format_table(
            &head,
            &rows,
            &[false, false, false, false, true, true, true, true, true, true, true, true, true, true, true],
        );
        let _ = writeln!(
            s,
            "(GB/s columns: jit, rustc, interp, roofline. storage: tensors not stored as f32. traffic: minimal bytes per call, \
             in real bytes. jit/roof: bandwidth ratio (the roofline streams the same types); \
             jit/rustc, jit/interp: speedups. compile: lowering + codegen, median. `!`: non-finite values were written.)"
        );
        let comparisons = self.comparisons();
        if !comparisons.is_empty() {
            s.push('\n');
            let head = [
                "kernel",
                "size",
                "thr",
                "storage",
                "elements",
                "Gel/s",
                "base Gel/s",
                "vs base",
                "bytes",
                "jit/roof",
                "base jit/roof",
            ];
            let x = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}x"));
            let rows: Vec<[String; 11]> = comparisons
                .iter()
                .map(|c| {
                    [
                        c.other.kernel.clone(),
                        c.other.size.clone(),
                        c.other.threads.to_string(),
                        c.other.storage.clone(),
                        c.other.elements.to_string(),
                        format!("{:.3}", c.other.elements_per_s() / 1e9),
                        format!("{:.3}", c.base.elements_per_s() / 1e9),
                        x(Some(c.ratio())),
                        x(Some(c.byte_ratio())),
                        x(c.vs_roofline()),
                        x(c.base_vs_roofline()),
                    ]
                })
                .collect();
            s += "storage comparison, jit, each kernel with --dtype against the same kernel as written (base), measured in the same rounds:\n";
            s += &format_table(&head, &rows, &[false, false, true, false, true, true, true, true, true, true, true]);
            let _ = writeln!(
                s,
                "(Gel/s: 10^9 elements of the largest tensor per second. vs base: elements/s ratio. bytes: the ratio the \
                 minimal traffic allows (base bytes / these bytes). jit/roof: against the roofline with the same streams in \
                 the same types; base jit/roof: the base against its own.)"
            );
        }
        let summary = self.summary();
        if !summary.is_empty() {
            s.push('\n');
            let head = ["size", "thr", "jit/roof", "jit/rustc", "jit/interp", "compile"];
            let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}x"));
            let rows: Vec<[String; 6]> = summary
                .iter()
                .map(|x| {
                    [
                        x.size.clone(),
                        x.threads.to_string(),
                        f(geomean(&x.vs_roofline)),
                        f(geomean(&x.vs_rustc)),
                        f(geomean(&x.vs_interp)),
                        median(&x.compile_us).map_or_else(|| "-".to_string(), |us| format!("{us:.0} us")),
                    ]
                })
                .collect();
            s += "geometric means over kernels (compile: median over kernels):\n";
            s += &format_table(&head, &rows, &[false, true, true, true, true, true]);
        }
        if let Some(o) = &self.overhead {
            let dims = o.dims.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(",");
            let tiny = o.tiny_dims.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(",");
            let rustc = o.rustc_us.map_or(String::new(), |r| format!(" (rustc kernel alone: {r:.2} us)"));
            let _ = writeln!(
                s,
                "\ncall     {} {dims}, 1 thread, through the safe API: {:.2} us per call, median of {}{rustc}",
                o.kernel, o.jit_us, o.calls
            );
            let _ = writeln!(s, "         at {tiny} (next to no work, the fixed cost of a call): {:.2} us", o.tiny_us);
        }
        if !self.failures.is_empty() {
            s.push('\n');
            for f in &self.failures {
                let _ = writeln!(s, "FAILED   {}: {}", f.kernel, f.error);
            }
        }
        if let Some(l) = &self.load {
            let f = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.1}"));
            let share =
                l.others_cpu_share.map_or_else(|| "an unknown share".to_string(), |v| format!("{:.0}%", v * 100.0));
            let _ = writeln!(
                s,
                "\nload     other processes took {share} of the CPUs' time during the run (1-min load average {} at start, {} at end)",
                f(l.loadavg_start),
                f(l.loadavg_end)
            );
            if l.others_cpu_share.is_some_and(|v| v > BUSY_SHARE) {
                let _ = writeln!(s, "WARNING  the machine was busy with other work: these figures are unreliable; rerun on a quiet machine");
            }
        }
        s.push('\n');
        for n in NOTES {
            let _ = writeln!(s, "note     {n}");
        }
        let _ = writeln!(s, "wall     {:.1} s", self.wall_s);
        s
    }

    /// An SVG bar chart: one panel per (size, threads); per kernel a group
    /// of bars, one per engine, effective GB/s on a linear axis; the
    /// roofline as a black line across the group, with the JIT's fraction
    /// of it written above.
    pub fn svg(&self) -> String {
        let lines = self.lines();
        // Panels in the order first measured.
        let mut panels: Vec<(String, usize)> = Vec::new();
        for l in &lines {
            let p = (l.key.size.clone(), l.key.threads);
            if !panels.contains(&p) {
                panels.push(p);
            }
        }
        let series: [(&str, &str); 4] = [
            ("jit", "#1f77b4"),
            ("jit, page-aligned buffers", "#9ecae1"),
            ("rustc (hand-fused)", "#ff7f0e"),
            ("interp (f32, eager)", "#8c8c8c"),
        ];
        const GROUP_W: f64 = 66.0;
        const LEFT: f64 = 78.0;
        const PLOT_H: f64 = 230.0;
        const PANEL_H: f64 = PLOT_H + 150.0;
        const TOP: f64 = 92.0;
        let kernels_max = panels
            .iter()
            .map(|p| {
                lines
                    .iter()
                    .filter(|l| (l.key.size.clone(), l.key.threads) == *p && l.key.placement == "staggered")
                    .count()
            })
            .max()
            .unwrap_or(0)
            .max(4);
        let width = LEFT + GROUP_W * kernels_max as f64 + 30.0;
        let height = TOP + PANEL_H * panels.len() as f64 + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="24" font-size="17" font-weight="bold">normjit bench: effective bandwidth per kernel (higher is better)</text>"#
        );
        let m = &self.machine;
        let load = match self.load.as_ref().and_then(|l| l.others_cpu_share) {
            Some(v) => format!(" · other processes took {:.0}% of the CPUs", v * 100.0),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="42" font-size="11" fill="#444">{} · {} cores · JIT {} · medians on a shared, noisy machine{}</text>"##,
            esc(&m.cpu),
            m.cores,
            esc(&short_flags(&m.jit_isa_flags)),
            esc(&load)
        );
        // Legend.
        let mut x = LEFT;
        for (name, color) in series {
            let _ = writeln!(s, r#"<rect x="{x}" y="55" width="14" height="14" fill="{color}"/>"#);
            let _ = writeln!(s, r#"<text x="{}" y="67" font-size="12">{}</text>"#, x + 19.0, esc(name));
            x += 26.0 + 7.0 * name.len() as f64;
        }
        let _ = writeln!(s, r#"<line x1="{x}" y1="62" x2="{}" y2="62" stroke="black" stroke-width="3"/>"#, x + 22.0);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="67" font-size="12">stream roofline (same streams); label: jit / roofline</text>"#,
            x + 27.0
        );

        for (pi, (size, threads)) in panels.iter().enumerate() {
            let y0 = TOP + PANEL_H * pi as f64 + 28.0;
            let in_panel: Vec<&Line> =
                lines.iter().filter(|l| &l.key.size == size && l.key.threads == *threads).collect();
            // One bar group per kernel and storage.
            let mut kernels: Vec<String> = Vec::new();
            for l in &in_panel {
                if !kernels.contains(&l.key.label()) {
                    kernels.push(l.key.label());
                }
            }
            let aligned = |k: &str| in_panel.iter().find(|l| l.key.label() == k && l.key.placement != "staggered");
            let stag = |k: &str| in_panel.iter().find(|l| l.key.label() == k && l.key.placement == "staggered");
            let present = [
                in_panel.iter().any(|l| l.key.placement == "staggered" && l.jit.is_some()),
                in_panel.iter().any(|l| l.key.placement != "staggered" && l.jit.is_some()),
                in_panel.iter().any(|l| l.rustc.is_some()),
                in_panel.iter().any(|l| l.interp.is_some()),
            ];
            let nser = present.iter().filter(|p| **p).count().max(1);
            let mut ymax: f64 = 0.0;
            for l in &in_panel {
                for r in [l.jit, l.rustc, l.interp, l.roofline].into_iter().flatten() {
                    ymax = ymax.max(r.gbs());
                }
            }
            let (ymax, step) = nice_axis(ymax * 1.12);
            let title = match size.as_str() {
                "small" => "small: ~1 MiB per largest tensor (in cache)".to_string(),
                "large" => "large: 128 MiB per largest tensor (DRAM)".to_string(),
                other => format!("{other} sizes"),
            };
            let _ = writeln!(
                s,
                r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{} · {} thread{}</text>"#,
                y0 - 10.0,
                esc(&title),
                threads,
                if *threads == 1 { "" } else { "s" }
            );
            let plot_w = GROUP_W * kernels.len().max(1) as f64;
            let ypix = |v: f64| y0 + PLOT_H - v / ymax * PLOT_H;
            // Grid and y axis.
            let mut t = 0.0;
            while t <= ymax + 1e-9 {
                let y = ypix(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
                    LEFT + plot_w
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                    LEFT - 6.0,
                    y + 4.0,
                    tick_text(t)
                );
                t += step;
            }
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">GB/s (min bytes / median time)</text>"#,
                LEFT - 50.0,
                y0 + PLOT_H / 2.0
            );
            let _ = writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{y0:.1}" x2="{LEFT}" y2="{:.1}" stroke="black"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
                y0 + PLOT_H,
                y0 + PLOT_H,
                LEFT + plot_w,
                y0 + PLOT_H
            );
            for (ki, k) in kernels.iter().enumerate() {
                let gx = LEFT + GROUP_W * ki as f64;
                let bar_w = (GROUP_W - 14.0) / nser as f64;
                let st = stag(k);
                let al = aligned(k);
                let vals = [
                    st.and_then(|l| l.jit),
                    al.and_then(|l| l.jit),
                    st.and_then(|l| l.rustc),
                    st.and_then(|l| l.interp),
                ];
                let mut slot = 0;
                for (si, (name, color)) in series.iter().enumerate() {
                    if !present[si] {
                        continue;
                    }
                    if let Some(r) = vals[si] {
                        let bx = gx + 7.0 + bar_w * slot as f64;
                        let h = r.gbs() / ymax * PLOT_H;
                        let _ = writeln!(
                            s,
                            r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{color}"><title>{} {}: {:.1} GB/s</title></rect>"#,
                            y0 + PLOT_H - h,
                            (bar_w - 1.0).max(1.0),
                            esc(k),
                            esc(name),
                            r.gbs()
                        );
                    }
                    slot += 1;
                }
                if let Some(roof) = st.and_then(|l| l.roofline).or_else(|| al.and_then(|l| l.roofline)) {
                    let y = ypix(roof.gbs());
                    let _ = writeln!(
                        s,
                        r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black" stroke-width="3"><title>{} roofline: {:.1} GB/s</title></line>"#,
                        gx + 4.0,
                        gx + GROUP_W - 4.0,
                        esc(k),
                        roof.gbs()
                    );
                    if let Some(ratio) = st.and_then(|l| l.vs_roofline()) {
                        let _ = writeln!(
                            s,
                            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{ratio:.2}x</text>"#,
                            gx + GROUP_W / 2.0,
                            y - 4.0
                        );
                    }
                }
                let _ = writeln!(
                    s,
                    r#"<text transform="translate({:.1},{:.1}) rotate(-35)" font-size="11" text-anchor="end">{}</text>"#,
                    gx + GROUP_W / 2.0 + 4.0,
                    y0 + PLOT_H + 14.0,
                    esc(k)
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.0}" font-size="11" fill="#444">GB/s: each tensor read once and written once, over the median time per call. Roofline: a stream kernel with the same large streams.</text>"##,
            height - 16.0
        );
        s.push_str("</svg>\n");
        s
    }
}

#[derive(Default)]
struct Summary {
    size: String,
    threads: usize,
    vs_roofline: Vec<f64>,
    vs_rustc: Vec<f64>,
    vs_interp: Vec<f64>,
    compile_us: Vec<f64>,
}

fn key(r: &Row) -> LineKey {
    LineKey {
        kernel: r.kernel.clone(),
        storage: r.storage.clone(),
        size: r.size.clone(),
        threads: r.threads,
        placement: r.placement,
    }
}

impl LineKey {
    /// The kernel's name, with its storage unless f32: one bar group per
    /// storage in the chart.
    fn label(&self) -> String {
        if self.storage == "f32" {
            self.kernel.clone()
        } else {
            format!("{} ({})", self.kernel, self.storage)
        }
    }
}

/// The geometric mean, or `None` of nothing.
pub fn geomean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some((v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
    }
}

/// The median (the mean of the middle two for an even count), or `None`
/// of nothing.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A byte count in binary units.
pub fn bytes_text(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Seconds in a readable unit.
pub fn time_text(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} us", s * 1e6)
    }
}

/// Columns padded to their widest cell, numbers right-aligned.
fn format_table<const N: usize>(head: &[&str; N], rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut w = [0usize; N];
    for (i, h) in head.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i > 0 {
                l.push_str("  ");
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    s += &line(head.to_vec());
    for r in rows {
        s += &line(r.iter().map(String::as_str).collect());
    }
    s
}

/// A round axis maximum and tick step for values up to `v`.
fn nice_axis(v: f64) -> (f64, f64) {
    let v = if v.is_finite() && v > 0.0 { v } else { 1.0 };
    let raw = v / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    ((v / step).ceil() * step, step)
}

fn tick_text(t: f64) -> String {
    if t == t.round() {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
    }
}

/// The notable vector extensions among Cranelift's flags, for a subtitle.
fn short_flags(flags: &str) -> String {
    let want = ["has_avx512f", "has_avx2", "has_fma", "has_avx", "has_sse42"];
    let v: Vec<&str> = flags.split(',').filter(|f| want.contains(f)).map(|f| f.trim_start_matches("has_")).collect();
    if v.is_empty() {
        "baseline".to_string()
    } else {
        v.join("+")
    }
}

/// Text escaped for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kernel: &str, engine: Engine, threads: usize, median_s: f64) -> Row {
        Row {
            kernel: kernel.into(),
            storage: "f32".into(),
            as_written: true,
            elements: 2000,
            file: format!("ir/{kernel}.nj"),
            size: "small".into(),
            dims: vec![("P".into(), 1000)],
            threads,
            engine,
            placement: "staggered",
            median_s,
            reps: 3,
            min_bytes: 8000,
            bytes: if engine == Engine::Roofline { 16000 } else { 8000 },
            compile_us: (engine == Engine::Jit).then_some(300.0),
            streams: (engine == Engine::Roofline).then_some((1, 1, 0)),
            stream_dtypes: (engine == Engine::Roofline).then(|| [vec!["f32"], vec!["f32"], vec![]]),
            finite: true,
        }
    }

    #[test]
    fn ratios_and_outputs() {
        let rep = Report {
            rows: vec![
                row("a<b", Engine::Jit, 1, 1e-6),
                row("a<b", Engine::Rustc, 1, 2e-6),
                row("a<b", Engine::Interp, 1, 10e-6),
                row("a<b", Engine::Roofline, 1, 1e-6),
                row("a<b", Engine::Jit, 2, 1e-6),
            ],
            ..Default::default()
        };
        let v = rep.json();
        let r = &v["results"][0];
        assert_eq!(r["engine"], "jit");
        let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9 * want;
        assert!(close(&r["gbs"], 8.0), "{r}");
        assert!(close(&r["vs_rustc"], 2.0), "{r}");
        assert!(close(&r["vs_interp"], 10.0), "{r}");
        assert!(close(&r["vs_roofline"], 0.5), "{r}");
        assert_eq!(v["results"][4]["vs_interp"], Value::Null);
        let t = rep.table();
        assert!(t.contains("2.00x") && t.contains("10.00x"), "{t}");
        let svg = rep.svg();
        assert!(svg.starts_with("<svg") && svg.contains("a&lt;b") && !svg.contains("a<b"), "{svg}");
    }

    #[test]
    fn helpers() {
        assert_eq!(nice_axis(43.0), (50.0, 10.0));
        assert_eq!(nice_axis(0.9), (1.0, 0.2));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(bytes_text(3 << 20), "3.0 MiB");
    }
}
