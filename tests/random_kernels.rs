//! Random kernels through every engine: lowering (with plan verification),
//! the loop-IR interpreter, the Cranelift JIT (native ISA, 1–3 threads), and
//! the reference interpreter in f32 and f64, on random inputs with NaN, ±Inf,
//! subnormals and ±3e38 mixed in. The generator, the oracle and the exact
//! rules are documented in the `normjit-testkit` crate (`crates/testkit`);
//! in short:
//! - JIT == loop IR bit for bit (NaN == NaN), always;
//! - NaN where the oracle says NaN is certain, no NaN where it is impossible
//!   (the f32 reference must agree: it is checked against the same oracle);
//!   NaN-ness may differ from the f32 reference only where the oracle says
//!   "maybe" (order-dependent overflow, overlapping comparisons, signed
//!   zeros), and those elements are counted and printed;
//! - finite results inside the oracle's interval, which is within
//!   `C·eps32·Σ|terms|` per reduction (propagated) of the exact result; the
//!   f64 reference must lie in the same interval wherever nothing overflowed;
//! - the same again at each case's second sizes (small, with 0, 1 and odd
//!   sizes, drawn from the case's seed), where the JIT runs the code
//!   compiled at the first sizes whenever the schedule is the same (most
//!   cases; counted and printed), and code compiled anew otherwise.
//!
//! Cases: 10,000 by default, every one through lowering, the loop IR, both
//! reference interpreters and the oracle, and through the JIT too
//! (`NORMJIT_JIT_EVERY=N` sends only every Nth); about 15 s on 2 cores in
//! the dev profile. `NORMJIT_LONG=1` runs 100,000 (a few minutes);
//! `NORMJIT_RANDOM_CASES=N` overrides the count, `NORMJIT_RANDOM_SEED=S` the
//! seed. Nothing is skipped. A failure is shrunk, printed as a `.nj` file
//! whose comments hold the sizes, params, input seed, chunk and threads, and
//! saved under the cargo target tmpdir; rerun one with
//! `NORMJIT_REPRO=path/to/case.nj cargo test --test random_kernels repro --
//! --ignored --nocapture`.

use normjit::ir::{Op, ValueId};
use normjit_testkit::{
    cases, inout_store_cycle, run_case, Case, Choices, Engines, Env, Failure, Stats, CHUNKS, SPECIALS,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Every `JIT_EVERY`-th case also goes through the JIT.
const JIT_EVERY: usize = 1;
/// Shrinking steps per failure, and failures shrunk (the rest are reported
/// as found).
const SHRINK_STEPS: usize = 400;
const SHRUNK_FAILURES: usize = 8;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Runs one case (with the JIT when `jit`).
fn run(case: &Case, env: &Env, jit: bool) -> Result<Stats, Failure> {
    // Lowering such kernels once looped forever; a hang must be a failure,
    // not a stuck test run.
    if inout_store_cycle(&case.kernel) {
        lowering_terminates(case)?;
    }
    check(case, env, if jit { Engines::All } else { Engines::NoJit })
}

/// Lowers `case` at both its sizes in a child process (this test binary,
/// running `lower_child`), killed if the lowering itself takes over 2 s (it
/// takes milliseconds): a lowering that does not terminate cannot be
/// stopped in-process.
fn lowering_terminates(case: &Case) -> Result<(), Failure> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("random_kernels");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("child_{}_{}.nj", std::process::id(), CHILDREN.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, case.to_string()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["lower_child", "--exact", "--ignored", "--test-threads=1", "--nocapture", "-q"])
        .env("NORMJIT_LOWER_CHILD", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    // Wait for the child to start lowering, then give it 2 s. A child that
    // exits without starting (the test was not found, the case did not
    // load) proves nothing: that is a failure too.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut output = vec![];
    let started = loop {
        match lines.next() {
            Some(Ok(l)) if l == CHILD_MARKER => break true,
            Some(Ok(l)) => output.push(l),
            _ => break false,
        }
    };
    if !started {
        let _ = child.wait();
        let _ = std::fs::remove_file(&path);
        return Err(Failure {
            kind: "lowering child did not start",
            msg: format!("the `lower_child` test process exited without lowering:\n{}", output.join("\n")),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let done = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = std::fs::remove_file(&path);
    if done {
        Ok(())
    } else {
        Err(Failure { kind: "lowering does not terminate", msg: "killed after 2 s of lowering".into() })
    }
}

/// Child processes `lowering_terminates` started.
static CHILDREN: AtomicUsize = AtomicUsize::new(0);

const CHILD_MARKER: &str = "normjit: lowering starts";

/// Reads a saved case: a `.nj` file with a `# case:` comment line.
fn read_case(var: &str) -> Case {
    let path = std::env::var_os(var).unwrap_or_else(|| panic!("set {var} to the path of a saved case (`.nj` file)"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Case::from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The child process of `lowering_terminates`, which runs it as
/// `NORMJIT_LOWER_CHILD=case.nj random_kernels lower_child --exact --ignored`;
/// not a test of its own.
#[test]
#[ignore = "the child process of the random-kernel test; needs NORMJIT_LOWER_CHILD"]
fn lower_child() {
    let case = read_case("NORMJIT_LOWER_CHILD");
    let opts = normjit_lower::Options { chunk_elems: case.chunk, verify: true, ..Default::default() };
    eprintln!("{CHILD_MARKER}");
    let _ = normjit_testkit::lower_case(&case, &case.dims, &opts);
    let _ = normjit_testkit::lower_case(&case, &case.dims2, &opts);
}

/// Runs one case, turning a panic into a failure, and checks that the
/// kernel's printed text parses.
fn check(case: &Case, env: &Env, engines: Engines) -> Result<Stats, Failure> {
    let text = case.kernel.to_string();
    if let Err(d) = normjit::ir::parse(&text) {
        return Err(Failure { kind: "printed kernel does not parse", msg: d.render("case.nj", &text).to_string() });
    }
    match catch_unwind(AssertUnwindSafe(|| run_case(case, env, engines))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            Err(Failure { kind: "panic", msg })
        }
    }
}

/// The deterministic runner of case `i` of a run seeded `seed`.
fn runner(seed: u64, i: usize) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    let config = Config { failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

#[derive(Default)]
struct Worker {
    stats: Stats,
    found: Vec<Found>,
    /// Cases by size class: volume 0, ≤ 1k, ≤ 10k, larger.
    sizes: [usize; 4],
}

struct Found {
    index: usize,
    case: Case,
    failure: Failure,
    shrunk: bool,
    reproduces_from_text: Option<bool>,
}

fn shrink(mut tree: impl ValueTree<Value = Case>, first: Failure, env: &Env, jit: bool) -> (Case, Failure) {
    let mut best = (tree.current(), first);
    if !tree.simplify() {
        return best;
    }
    for _ in 0..SHRINK_STEPS {
        let c = tree.current();
        match run(&c, env, jit) {
            Err(f) if f.kind == best.1.kind => {
                best = (c, f);
                if !tree.simplify() {
                    break;
                }
            }
            _ => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    best
}

/// Reparses the printed kernel and runs the same case from it.
fn reproduces_from_text(case: &Case, kind: &str, env: &Env, jit: bool) -> bool {
    let Ok(k) = normjit::ir::parse(&case.kernel.to_string()) else { return false };
    let c = Case { kernel: k, ..case.clone() };
    matches!(run(&c, env, jit), Err(f) if f.kind == kind)
}

#[test]
fn random_kernels_agree_across_engines() {
    let long = std::env::var_os("NORMJIT_LONG").is_some_and(|v| v != "0");
    let n = env_usize("NORMJIT_RANDOM_CASES").unwrap_or(if long { 100_000 } else { 10_000 });
    let seed = env_usize("NORMJIT_RANDOM_SEED").map_or(0x6e6a_7261_6e64_0001, |s| s as u64);
    let jit_every = env_usize("NORMJIT_JIT_EVERY").unwrap_or(JIT_EVERY).max(1);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    // Panics are caught and reported as failures; keep shrinking quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let strategy = cases();
    let results: Vec<Worker> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let strategy = &strategy;
                s.spawn(move || {
                    let env = Env::new();
                    let mut out = Worker::default();
                    let Worker { stats, found, sizes } = &mut out;
                    for i in (w..n).step_by(workers) {
                        let mut r = runner(seed, i);
                        let tree = strategy.new_tree(&mut r).expect("the strategy never rejects");
                        let case = tree.current();
                        let vol = if case.dims.contains(&0) { 0 } else { case.volume() };
                        sizes[match vol {
                            0 => 0,
                            1..=1000 => 1,
                            1001..=10_000 => 2,
                            _ => 3,
                        }] += 1;
                        let jit = i % jit_every == 0;
                        match run(&case, &env, jit) {
                            Ok(st) => stats.add(&st),
                            Err(f) => {
                                stats.cases += 1;
                                let do_shrink = found.len() < SHRUNK_FAILURES;
                                let (case, failure) = if do_shrink { shrink(tree, f, &env, jit) } else { (case, f) };
                                let rep = do_shrink.then(|| reproduces_from_text(&case, failure.kind, &env, jit));
                                found.push(Found {
                                    index: i,
                                    case,
                                    failure,
                                    shrunk: do_shrink,
                                    reproduces_from_text: rep,
                                });
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker panicked outside a case")).collect()
    });
    let _ = std::panic::take_hook();
    let elapsed = start.elapsed();
    let mut stats = Stats::default();
    let mut found = vec![];
    let mut sizes = [0usize; 4];
    for r in results {
        stats.add(&r.stats);
        found.extend(r.found);
        for (total, n) in sizes.iter_mut().zip(r.sizes) {
            *total += n;
        }
    }
    found.sort_by_key(|f| f.index);
    assert_eq!(stats.cases, n, "every case ran, passed or failed");
    println!(
        "random kernels: {} cases ({} through the JIT, {} failed) in {:.1?} on {workers} threads, seed {seed:#x}",
        stats.cases,
        stats.jit_cases,
        found.len(),
        elapsed
    );
    println!(
        "  sizes: {} with a zero dim, {} with ≤ 1k elements, {} with ≤ 10k, {} larger",
        sizes[0], sizes[1], sizes[2], sizes[3]
    );
    println!(
        "  lowered first in a child process (`inout` stores reading each other): {} times",
        CHILDREN.load(Ordering::Relaxed)
    );
    println!(
        "  second sizes: {} cases rerun at other sizes, {} of them with the code compiled at the first sizes \
         (same schedule), {} recompiled",
        stats.second_sizes,
        stats.reused,
        stats.second_sizes - stats.reused
    );
    println!(
        "  output elements checked: {}; NaN certain (strict): {}; NaN possible but not certain (relaxed): {}, \
         of which NaN-ness differs from the f32 reference: {}",
        stats.elements, stats.must_nan, stats.maybe_nan, stats.nan_disagree
    );
    println!(
        "  f64 check skipped where an upstream value may be infinite in f32: {} elements; zeros of opposite sign \
         to the f32 reference: {}",
        stats.f64_skipped, stats.zero_sign
    );
    println!(
        "  well-conditioned elements (set narrower than 1e-3 of |f64| + mean|f64|): {}, largest error there \
         vs f64: {:.3e}; others (set membership only): {}",
        stats.tight, stats.tight_max_err, stats.loose
    );
    let t = &stats.secs;
    println!(
        "  time (summed over threads): lowering {:.1}s, loop IR {:.1}s, JIT compile+run {:.1}s, reference \
         interpreters {:.1}s, oracle {:.1}s",
        t[0], t[1], t[2], t[3], t[4]
    );
    if found.is_empty() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("random_kernels");
    let _ = std::fs::create_dir_all(&dir);
    let mut report = String::new();
    for f in &found {
        let path = dir.join(format!("case_{}.nj", f.index));
        let text = format!("# {}\n{}", f.failure.to_string().replace('\n', "\n# "), f.case);
        let _ = std::fs::write(&path, &text);
        report.push_str(&format!(
            "\n=== case {} ({}; reproduces from the printed text: {}) saved to {}\n{}\n",
            f.index,
            if f.shrunk { "shrunk" } else { "not shrunk" },
            f.reproduces_from_text.map_or("not tried".into(), |b| b.to_string()),
            path.display(),
            text
        ));
    }
    panic!("{} of {} random cases failed:{report}", found.len(), stats.cases);
}

/// Reruns a saved case (the `.nj` file a failure report prints or saves;
/// its `# case:` comment line holds the rest):
/// `NORMJIT_REPRO=case.nj cargo test --test random_kernels repro -- --ignored --nocapture`.
#[test]
#[ignore = "reruns the saved case named by NORMJIT_REPRO"]
fn repro() {
    let case = read_case("NORMJIT_REPRO");
    println!("{case}");
    let env = Env::new();
    match run_case(&case, &env, Engines::All) {
        Ok(s) => println!("passes: {s:?}"),
        Err(f) => panic!("{f}"),
    }
}

/// The generator covers what it promises: counts of each feature over 3000
/// generated kernels (printed), each of which must appear.
#[test]
fn generator_coverage() {
    use normjit::ir::{AxisSet, Binary, Cmp, Reduce, Stmt, Unary};
    use std::collections::BTreeMap;
    let strategy = cases();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut hit = |what: String| *seen.entry(what).or_default() += 1;
    let mut words_used = vec![];
    for i in 0..3000 {
        let mut r = runner(0xC0FE, i);
        let case = strategy.new_tree(&mut r).unwrap().current();
        let k = &case.kernel;
        // How many choice words a full-length sequence needs.
        let mut ch =
            Choices::new((0..2000u32).map(|j| (j.wrapping_mul(2_654_435_761) ^ i as u32).rotate_left(7)).collect());
        let _ = Case::decode(&mut ch, 0);
        words_used.push(ch.used());
        hit(format!("dims: {}", k.dims.len()));
        if case.dims.contains(&0) {
            hit("size: a zero dim".into());
        }
        if case.dims.contains(&1) {
            hit("size: a dim of 1".into());
        }
        if case.dims.iter().any(|&d| d >= 1000) {
            hit("size: a dim ≥ 1000".into());
        }
        assert_ne!(case.dims, case.dims2, "second sizes equal to the first");
        if case.dims2.contains(&0) {
            hit("second size: a zero dim".into());
        }
        if case.dims2.contains(&1) {
            hit("second size: a dim of 1".into());
        }
        if case.dims2.iter().any(|&d| d > 1 && d % 2 == 1) {
            hit("second size: an odd dim > 1".into());
        }
        if case.dims.iter().zip(&case.dims2).any(|(&a, &b)| (a == 0) != (b == 0)) {
            hit("second size: a zero dim where the first is not, or the reverse".into());
        }
        // The plan shapes the kernel lowers to.
        let opts = normjit_lower::Options { chunk_elems: case.chunk, ..Default::default() };
        if let Ok(plan) = normjit_testkit::lower_case(&case, &case.dims, &opts) {
            let chosen = normjit_lower::schedule(k, &case.dims, &opts).expect("it lowered");
            let s = &plan.schedule;
            if case.sched != 0 {
                hit("schedule: random".into());
            }
            if s.order != chosen.order {
                hit("schedule: another loop order".into());
            }
            if s.group != chosen.group {
                hit(format!("schedule: {} group than chosen", if s.group.is_empty() { "no" } else { "another" }));
            }
            for (on, what) in
                [(s.hoist, "hoist"), (s.flatten, "flatten"), (s.vectorize, "vectorize"), (s.prefetch, "prefetch")]
            {
                if !on {
                    hit(format!("schedule: no {what}"));
                }
            }
            hit(format!("schedule: reduce unroll {}", s.reduce_unroll));
            hit(format!("schedule: stream unroll {}", s.stream_unroll));
            if plan.prefetch.is_some() {
                hit("plan: prefetch".into());
            }
            if plan.block.is_some() {
                hit("plan: column blocking".into());
            }
            if plan.nodes.iter().any(|n| matches!(n.op, normjit_lower::LOp::Pivot(..))) {
                hit("plan: one-pass statistics".into());
            }
            if plan.phases.iter().any(|p| p.flat > 1) {
                hit("plan: flattened inner loops".into());
            }
            if plan.accums.iter().any(|a| a.reduced.is_empty()) {
                hit("plan: hoisted values (scratch arrays)".into());
            }
            if plan.has_cross() {
                hit("plan: cross-group reductions".into());
            } else if !plan.group().is_empty() {
                hit("plan: a group".into());
            } else {
                hit("plan: no group".into());
            }
        }
        hit(format!("chunk: {}", case.chunk));
        hit(format!("threads: {}", case.threads));
        hit(format!("specials: 1 in {}", case.specials));
        for (_, t) in k.tensors.iter() {
            hit(format!("tensor: {}", t.role.keyword()));
            if t.dims.is_empty() {
                hit("tensor: 0-dim".into());
            }
            if t.dims.windows(2).any(|w| w[0] > w[1]) {
                hit("tensor: transposed layout".into());
            }
        }
        for (_, p) in k.params.iter() {
            hit(format!(
                "param: {} {}",
                p.ty.name(),
                if p.default.is_some() { "with default" } else { "bound at call" }
            ));
        }
        for s in &k.stmts {
            match s {
                Stmt::Let { .. } => hit("stmt: let".into()),
                Stmt::Store { tensor, value } => {
                    hit("stmt: store".into());
                    if k.nodes[*value].axes != k.tensors[*tensor].axes() {
                        hit("stmt: broadcasting store".into());
                    }
                }
            }
        }
        let has_reduce = |v: ValueId| -> bool {
            let mut todo = vec![v];
            while let Some(v) = todo.pop() {
                if matches!(k.nodes[v].op, Op::Reduce(..)) {
                    return true;
                }
                todo.extend(k.nodes[v].op.operands());
            }
            false
        };
        let mut uses = vec![0usize; k.nodes.len()];
        for (_, n) in k.nodes.iter() {
            for o in n.op.operands() {
                uses[o.index()] += 1;
            }
        }
        if uses.iter().any(|&u| u > 1) {
            hit("value used twice (shared)".into());
        }
        for (_, n) in k.nodes.iter() {
            let name = match &n.op {
                Op::Const(_) => "const".to_string(),
                Op::Param(_) => "param value".into(),
                Op::Load(_) => "load".into(),
                Op::Unary(u, _) => format!("unary {}", u.name()),
                Op::Binary(b, x, y) => {
                    let (ax, ay) = (k.nodes[*x].axes, k.nodes[*y].axes);
                    if ax != ay && (has_reduce(*x) || has_reduce(*y)) {
                        hit("reduced value broadcast into a bigger expression".into());
                    }
                    format!("binary {}", b.name())
                }
                Op::Compare(c, ..) => format!("compare {}", c.name()),
                Op::Select(..) => "select".into(),
                Op::Reduce(r, a, axes) => {
                    if has_reduce(*a) {
                        hit("reduction of a reduction".into());
                    }
                    if *axes != k.nodes[*a].axes {
                        hit("partial reduction (keeps axes)".into());
                    } else {
                        hit("full reduction".into());
                    }
                    if axes.len() > 1 {
                        hit("reduction over several axes".into());
                    }
                    format!("reduce {}", r.name())
                }
                Op::Count(_) => "count".into(),
                Op::Uniform(..) => "uniform".into(),
            };
            hit(name);
        }
        let _ = AxisSet::EMPTY;
    }
    let mut expected: Vec<String> = vec![];
    expected.extend(Unary::ALL.iter().map(|u| format!("unary {}", u.name())));
    expected.extend(
        [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Pow, Binary::Min, Binary::Max]
            .iter()
            .map(|b| format!("binary {}", b.name())),
    );
    expected
        .extend([Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge, Cmp::Eq, Cmp::Ne].iter().map(|c| format!("compare {}", c.name())));
    expected
        .extend([Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min].iter().map(|r| format!("reduce {}", r.name())));
    expected.extend((1..=4).map(|n| format!("dims: {n}")));
    expected.extend(CHUNKS.iter().map(|c| format!("chunk: {c}")));
    let max_unroll = normjit_lower::schedule::MAX_UNROLL;
    expected.extend((1..=max_unroll).map(|u| format!("schedule: reduce unroll {u}")));
    expected.extend((1..=max_unroll).map(|u| format!("schedule: stream unroll {u}")));
    expected.extend((1..=3).map(|t| format!("threads: {t}")));
    expected.extend(SPECIALS.iter().map(|s| format!("specials: 1 in {s}")));
    for s in [
        "const",
        "param value",
        "load",
        "select",
        "count",
        "uniform",
        "size: a zero dim",
        "size: a dim of 1",
        "size: a dim ≥ 1000",
        "second size: a zero dim",
        "second size: a dim of 1",
        "second size: an odd dim > 1",
        "second size: a zero dim where the first is not, or the reverse",
        "tensor: in",
        "tensor: out",
        "tensor: inout",
        "tensor: 0-dim",
        "tensor: transposed layout",
        "param: f32 with default",
        "param: f32 bound at call",
        "param: u32 with default",
        "param: u32 bound at call",
        "stmt: let",
        "stmt: store",
        "stmt: broadcasting store",
        "value used twice (shared)",
        "reduction of a reduction",
        "partial reduction (keeps axes)",
        "full reduction",
        "reduction over several axes",
        "reduced value broadcast into a bigger expression",
        "plan: a group",
        "plan: no group",
        "plan: cross-group reductions",
        "plan: flattened inner loops",
        "plan: hoisted values (scratch arrays)",
        "plan: prefetch",
        "plan: column blocking",
        "plan: one-pass statistics",
        "schedule: random",
        "schedule: another loop order",
        "schedule: no group than chosen",
        "schedule: another group than chosen",
        "schedule: no hoist",
        "schedule: no flatten",
        "schedule: no vectorize",
        "schedule: no prefetch",
    ] {
        expected.push(s.to_string());
    }
    words_used.sort();
    println!(
        "choice words a kernel consumes: median {}, 90th percentile {}, max {} (the strategy draws 0..=400)",
        words_used[words_used.len() / 2],
        words_used[words_used.len() * 9 / 10],
        words_used.last().unwrap()
    );
    for (k, v) in &seen {
        println!("{v:>7}  {k}");
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !seen.contains_key(*e)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}
