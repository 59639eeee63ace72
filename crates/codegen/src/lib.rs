//! `normjit-codegen`: loop IR to machine code with Cranelift, and the
//! executor that runs it.
//!
//! This crate owns generating code and keeping its memory alive exactly as
//! long as a [`Compiled`] kernel lives. The runtime above it (the `normjit`
//! crate) calls the generated functions through the convention in
//! [`layout`]: a [`Frame`] with tensor pointers, param words, sizes and
//! scratch offsets.
//!
//! Code generation follows the plan literally (see `normjit_lower::loopir`):
//! a vectorized phase's innermost loop runs F32X4 vectors, unrolled with one
//! accumulator per unroll slot, then a scalar tail; every value is computed
//! at its planned loop depth. Arithmetic is f32 whatever a tensor's storage
//! type: bf16 and f16 elements are widened exactly on load and rounded to
//! nearest even (or stochastically, for bf16 tensors that ask for it) on
//! store, by integer sequences (Cranelift has no f16 conversions). Sizes
//! are read from the frame at run time, so one compilation serves every
//! shape whose plan has the same [`normjit_lower::Plan::schedule_key`] (or
//! baked in as constants, with [`CodegenOptions::specialize`]). The result
//! matches the loop-IR interpreter bit for bit.
#![warn(missing_docs)]

mod emit;
mod isa;
pub mod layout;
mod ops;

pub use emit::Unit;
pub use isa::{Isa, IsaChoice};
pub use layout::{EntryFn, Frame, Layout};

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use normjit_lower::{Plan, Step};
use std::sync::Mutex;

thread_local! {
    /// Cranelift's per-function contexts, kept between compilations on a
    /// thread: a fresh context re-grows every buffer of lowering and
    /// register allocation (5% of a LayerNorm compile).
    static CONTEXTS: std::cell::RefCell<Option<(Context, FunctionBuilderContext)>> =
        const { std::cell::RefCell::new(None) };
}

/// Why code generation failed. Always a bug in normjit (or an unsupported
/// host), never a user error: every plan the lowering makes is supported.
#[derive(Debug, Clone, PartialEq)]
pub struct CodegenError(pub String);

impl std::fmt::Display for CodegenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code generation failed: {}", self.0)
    }
}

impl std::error::Error for CodegenError {}

/// Options of one compilation.
#[derive(Clone, Debug, Default)]
pub struct CodegenOptions {
    /// Keep the CLIF text and disassembly of each function (for `normjit asm`).
    pub listing: bool,
    /// Bake the plan's sizes into the code as constants: the code then runs
    /// only at those sizes. Off by default (sizes are read at run time).
    pub specialize: bool,
}

/// The text of one compiled function.
#[derive(Clone, Debug)]
pub struct Listing {
    /// What the function runs.
    pub unit: Unit,
    /// Cranelift IR before optimization.
    pub clif: String,
    /// Machine code disassembly.
    pub asm: String,
}

/// A compiled plan: machine code and what is needed to run it.
pub struct Compiled {
    plan: Plan,
    specialized: bool,
    units: Vec<(Unit, EntryFn)>,
    listings: Vec<Listing>,
    /// Owns the code memory; freed on drop. Behind a mutex only so that
    /// `Compiled` is `Sync` without unsafe: nothing locks it but `drop`.
    module: Mutex<Option<JITModule>>,
}

// Imported math: `pow` per element (f32), and the functions of per-call
// scalars (f64): the same Rust functions (and so the same libm) the loop-IR
// interpreter uses. (`exp`, `log`, `tanh`, `sigmoid` and `erf` per element
// are inline vector sequences: `normjit_lower::vmath`.)
extern "C" fn nj_powf(a: f32, b: f32) -> f32 {
    a.powf(b)
}
extern "C" fn nj_pow(a: f64, b: f64) -> f64 {
    a.powf(b)
}
extern "C" fn nj_exp(a: f64) -> f64 {
    a.exp()
}
extern "C" fn nj_log(a: f64) -> f64 {
    a.ln()
}
extern "C" fn nj_tanh(a: f64) -> f64 {
    a.tanh()
}
extern "C" fn nj_sigmoid(a: f64) -> f64 {
    normjit_ir::math::sigmoid(a)
}
extern "C" fn nj_erf(a: f64) -> f64 {
    normjit_ir::math::erf(a)
}

/// One unit for the group-level stores among `steps`, if any.
fn stores_unit(steps: &[Step]) -> Option<Unit> {
    let list: Vec<_> =
        steps.iter().filter_map(|s| if let Step::Store(t, v) = s { Some((*t, *v)) } else { None }).collect();
    (!list.is_empty()).then_some(Unit::Stores(list))
}

impl Compiled {
    /// Compiles `plan` for `isa`.
    pub fn new(plan: &Plan, isa: &Isa, opts: &CodegenOptions) -> Result<Compiled, CodegenError> {
        let err = |e: &dyn std::fmt::Display| CodegenError(e.to_string());
        let mut jb = JITBuilder::with_isa(isa.target.clone(), default_libcall_names());
        jb.symbol("nj_powf", nj_powf as *const u8);
        jb.symbol("nj_pow", nj_pow as *const u8);
        jb.symbol("nj_exp", nj_exp as *const u8);
        jb.symbol("nj_log", nj_log as *const u8);
        jb.symbol("nj_tanh", nj_tanh as *const u8);
        jb.symbol("nj_sigmoid", nj_sigmoid as *const u8);
        jb.symbol("nj_erf", nj_erf as *const u8);
        jb.symbol(ops::TABLE_SYMBOL, ops::table_address());
        let mut module = JITModule::new(jb);
        let ptr = types::I64;
        let mut sig = Signature::new(module.isa().default_call_conv());
        for _ in 0..5 {
            sig.params.push(AbiParam::new(ptr));
        }
        let mut f1 = Signature::new(module.isa().default_call_conv());
        f1.params.push(AbiParam::new(types::F32));
        f1.returns.push(AbiParam::new(types::F32));
        let mut f2 = f1.clone();
        f2.params.push(AbiParam::new(types::F32));
        let powf = module.declare_function("nj_powf", Linkage::Import, &f2).map_err(|e| err(&e))?;
        let mut d1 = Signature::new(module.isa().default_call_conv());
        d1.params.push(AbiParam::new(types::F64));
        d1.returns.push(AbiParam::new(types::F64));
        let mut d2 = d1.clone();
        d2.params.push(AbiParam::new(types::F64));
        let pow = module.declare_function("nj_pow", Linkage::Import, &d2).map_err(|e| err(&e))?;
        let exp = module.declare_function("nj_exp", Linkage::Import, &d1).map_err(|e| err(&e))?;
        let log = module.declare_function("nj_log", Linkage::Import, &d1).map_err(|e| err(&e))?;
        let tanh = module.declare_function("nj_tanh", Linkage::Import, &d1).map_err(|e| err(&e))?;
        let sigmoid = module.declare_function("nj_sigmoid", Linkage::Import, &d1).map_err(|e| err(&e))?;
        let erf = module.declare_function("nj_erf", Linkage::Import, &d1).map_err(|e| err(&e))?;
        let table = module.declare_data(ops::TABLE_SYMBOL, Linkage::Import, false, false).map_err(|e| err(&e))?;

        let units: Vec<Unit> = if plan.group().is_empty() {
            let mut units: Vec<Unit> = plan
                .steps
                .iter()
                .filter_map(|s| if let Step::Phase(p) = s { Some(Unit::Phase(*p)) } else { None })
                .collect();
            units.extend(stores_unit(&plan.steps));
            units
        } else {
            // The group body, then the steps after the group loop.
            let mut units = vec![Unit::Group];
            units.extend(plan.after.iter().filter_map(|s| {
                if let Step::Phase(p) = s {
                    Some(Unit::Phase(*p))
                } else {
                    None
                }
            }));
            units.extend(stores_unit(&plan.after));
            units
        };
        // This thread's contexts from its last compilation, if any: their
        // allocations (the register allocator's above all) are reused.
        let (mut ctx, mut fctx) =
            CONTEXTS.with(|c| c.borrow_mut().take()).unwrap_or_else(|| (Context::new(), FunctionBuilderContext::new()));
        module.clear_context(&mut ctx);
        let mut ids = Vec::new();
        let mut listings = Vec::new();
        for (n, unit) in units.iter().enumerate() {
            ctx.func.signature = sig.clone();
            ctx.func.name = UserFuncName::user(0, n as u32);
            ctx.set_disasm(opts.listing);
            {
                let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                let libm = ops::Libm {
                    powf: module.declare_func_in_func(powf, b.func),
                    pow: module.declare_func_in_func(pow, b.func),
                    exp: module.declare_func_in_func(exp, b.func),
                    log: module.declare_func_in_func(log, b.func),
                    tanh: module.declare_func_in_func(tanh, b.func),
                    sigmoid: module.declare_func_in_func(sigmoid, b.func),
                    erf: module.declare_func_in_func(erf, b.func),
                };
                let entry = b.create_block();
                b.append_block_params_for_function_params(entry);
                b.switch_to_block(entry);
                let v = b.block_params(entry).to_vec();
                let args = emit::Args { frame: v[0], scratch: v[1], partial: v[2], lo: v[3], hi: v[4] };
                let table = module.declare_data_in_func(table, b.func);
                let mut fx = emit::Fx::new(plan, &mut b, args, libm, table, opts.specialize);
                fx.preload();
                match unit {
                    Unit::Group => fx.group(),
                    Unit::Phase(p) => {
                        let (lo, hi) = (fx.a.lo, fx.a.hi);
                        fx.phase(*p, Some((lo, hi)), false)
                    }
                    Unit::Stores(list) => fx.stores(list),
                }
                b.ins().return_(&[]);
                b.seal_all_blocks();
                b.finalize(module.target_config());
            }
            let clif = if opts.listing { ctx.func.display().to_string() } else { String::new() };
            let id = module.declare_function(&format!("nj_unit{n}"), Linkage::Local, &sig).map_err(|e| err(&e))?;
            module.define_function(id, &mut ctx).map_err(|e| CodegenError(format!("{e:?}")))?;
            if opts.listing {
                let asm = match (ctx.compiled_code(), module.isa().to_capstone()) {
                    (Some(cc), Ok(cs)) => cc.disassemble(Some(&ctx.func.params), &cs).unwrap_or_else(|e| e.to_string()),
                    _ => String::from("(no disassembly)"),
                };
                listings.push(Listing { unit: unit.clone(), clif, asm });
            }
            module.clear_context(&mut ctx);
            ids.push(id);
        }
        CONTEXTS.with(|c| *c.borrow_mut() = Some((ctx, fctx)));
        module.finalize_definitions().map_err(|e| err(&e))?;
        let fns = ids
            .iter()
            .zip(&units)
            .map(|(&id, u)| {
                let p = module.get_finalized_function(id);
                // SAFETY: the function was defined with `sig`, which is the
                // C ABI of `EntryFn` (five 64-bit integer arguments, no
                // result) on this host's default calling convention.
                let f = unsafe { std::mem::transmute::<*const u8, EntryFn>(p) };
                (u.clone(), f)
            })
            .collect();
        Ok(Compiled {
            plan: plan.clone(),
            specialized: opts.specialize,
            units: fns,
            listings,
            module: Mutex::new(Some(module)),
        })
    }

    /// The plan this code was compiled from. Its sizes are those the code
    /// was first compiled for; it runs any sizes with the same schedule key
    /// (only those sizes, if [`Compiled::specialized`]).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the sizes are baked into the code.
    pub fn specialized(&self) -> bool {
        self.specialized
    }

    /// The generated functions, in the order the plan runs them: the group
    /// body, or one per phase plus one for the group-level stores.
    pub fn units(&self) -> &[(Unit, EntryFn)] {
        &self.units
    }

    /// CLIF and disassembly per function (empty unless requested).
    pub fn listings(&self) -> &[Listing] {
        &self.listings
    }

    /// Number of generated functions.
    pub fn functions(&self) -> usize {
        self.units.len()
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        let module = self.module.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(m) = module {
            // SAFETY: the function pointers into this module live only in
            // `self.units`, which is being dropped; no call can be running,
            // since running needs `&self`.
            unsafe { m.free_memory() };
        }
    }
}
