//! `normjit explain FILE --dims ...`: the lowering's plan — phases, loops,
//! hoisting, accumulators, parallel split and memory traffic — and each
//! tensor's storage type (with `--dtype` overrides applied) and traffic in
//! real bytes (elements times the type's size: 2 for bf16 and f16).

use crate::cli::fail;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `explain`.
#[derive(clap::Args)]
pub struct Args {
    /// The kernel file.
    file: PathBuf,
    /// Sizes, as `N=64,D=1000`.
    #[arg(long, default_value = "")]
    dims: String,
    /// Store tensors as bf16 or f16 instead of as declared, as
    /// `x=bf16,y=bf16` (see `normjit run --help`).
    #[arg(long, default_value = "", value_name = "TENSOR=DTYPE,...")]
    dtype: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Cache bytes assumed to hold a group iteration between passes
    /// (default: the per-core L2 size).
    #[arg(long)]
    cache_bytes: Option<usize>,
    #[command(flatten)]
    schedule: crate::cli::ScheduleArg,
}

pub fn main(a: Args) -> ExitCode {
    if let Err(e) = a.schedule.set() {
        return fail(e);
    }
    let (kernel, dims) = match crate::cli::kernel_and_dims(&a.file, &a.dtype, &a.dims) {
        Ok(kd) => kd,
        Err(code) => return code,
    };
    let isa = match normjit::unstable::codegen::Isa::new(normjit::unstable::codegen::IsaChoice::Native) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let mut opts = normjit_cli::target::lower_options(&isa);
    if let Some(c) = a.cache_bytes {
        opts.cache_bytes = c;
    }
    let plan = match normjit_lower::lower(&kernel, &dims, &opts) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::cli::plan_json::plan_json(&plan)).expect("JSON values serialize")
        );
    } else {
        print!("{plan}{}", storage_text(&plan));
    }
    ExitCode::SUCCESS
}

/// Each tensor's role, storage type, shape and traffic per call in bytes,
/// as a table under the plan.
fn storage_text(plan: &normjit_lower::Plan) -> String {
    let k = &plan.kernel;
    let bytes = normjit_cli::bench::report::bytes_text;
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (id, t) in k.tensors.iter() {
        let tr = &plan.traffic.tensors[id.index()];
        let elems: u64 = t.dims.iter().map(|d| plan.dims[d.index()] as u64).product();
        let size = t.dtype.size_bytes() as u64;
        let shape: Vec<String> = t.dims.iter().map(|d| plan.dims[d.index()].to_string()).collect();
        let moved = |n: usize, what: &str| {
            if n == 0 {
                String::new()
            } else {
                format!("{what} {n}x {}", bytes(n as u64 * elems * size))
            }
        };
        let traffic: Vec<String> =
            [moved(tr.reads, "read"), moved(tr.writes, "written")].into_iter().filter(|s| !s.is_empty()).collect();
        rows.push([
            t.name.clone(),
            t.role.keyword().to_string(),
            normjit_cli::storage::tensor_storage(k, id),
            format!("[{}]", shape.join(", ")),
            format!("{size} B"),
            if traffic.is_empty() { "-".to_string() } else { traffic.join(", ") },
        ]);
    }
    let mut w = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::from("  tensors (storage, bytes per element, traffic per call):\n");
    for r in &rows {
        let line = format!(
            "    {:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
        s += line.trim_end();
        s.push('\n');
    }
    s
}
