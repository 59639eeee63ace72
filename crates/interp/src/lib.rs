//! `normjit-interp`: the reference interpreter, which defines what every
//! normjit kernel means.
//!
//! It evaluates a verified [`Kernel`] eagerly, the way an unfused framework
//! runs it: one IR node at a time over whole tensors, each node
//! materializing a dense temporary over its axes, then the stores. It is
//! the correctness oracle the JIT is tested against, in `f64` (the accuracy
//! reference), and the "interpreted" throughput baseline users compare the
//! JIT with, in `f32` (every op computed and rounded in f32, as PyTorch
//! eager does). Both come from one generic [`run`].
//!
//! **Architecture invariant:** this crate depends on `normjit-ir` only. It
//! never imports the lowering or code generation crates, so that it stays an
//! independent definition of the semantics they are checked against.
//!
//! # Semantics
//!
//! Beyond the typing rules and per-op definitions documented on
//! [`normjit_ir::Op`], the interpreter fixes these details:
//! - **Layout.** A value with axis set A is a dense row-major array over A's
//!   dims in dim declaration order. Tensors are row-major in their own
//!   declared dim order (e.g. `x: f32[N, H, W, C]` under `dims N, C, H, W`),
//!   so loads and stores transpose. A store broadcasts its value along the
//!   tensor dims the value lacks.
//! - **Broadcasting** is by name: an elementwise result has the union of its
//!   operands' axes, and an operand is repeated along the axes it lacks.
//! - **Numbers.** `Const` and `f32` params are rounded once to the element
//!   type. `rsqrt(x)` is `1 / sqrt(x)` with a correctly rounded root;
//!   `sign(±0) = +0`, `sign(NaN) = NaN`; comparisons are IEEE (false with a
//!   NaN operand, except `!=`).
//! - **`max`/`min`**, elementwise and as reductions, are IEEE 754-2019
//!   `maximum`/`minimum`: NaN if any operand is NaN, and `-0 < +0`. That
//!   makes them commutative, so a reduction's result does not depend on the
//!   order it visits elements in. Over an empty domain `max` is `-inf` and
//!   `min` is `+inf`.
//! - **`sum`** is pairwise (cascade) summation in the element type over the
//!   reduced elements in row-major order, with numpy's tree (blocks of 128
//!   summed with 8 interleaved accumulators; see the `reduce` module). Its
//!   f32 error grows with `log n` rather than `n`, as in numpy and PyTorch,
//!   which keeps the f32 baseline honest. The sum over an empty domain is
//!   `+0`.
//! - **`mean`** is `sum / count`, computed in the element type. Over an empty
//!   domain it is NaN (`0 / 0`), as in PyTorch.
//! - **`count(AXES)`** is the product of the bound sizes, rounded to the
//!   element type.
//! - **`uniform(seed, AXES)`** gives the element at row-major index `i` over
//!   AXES (declaration order) the value [`normjit_ir::rng::uniform`]`(seed,
//!   i)`, an f32, widened exactly in f64 mode: both modes see the same
//!   numbers. The seed param must be a whole number in `0..=u32::MAX`.
//! - **Storage types.** Tensors are passed as values of `T` whatever their
//!   [`normjit_ir::DType`]. A `bf16`/`f16` tensor holds values of its
//!   type: a load reads each entry value rounded to the type (the identity
//!   for values of the type), and a store rounds each element once, from
//!   the `T` value, to nearest even ([`normjit_ir::DType::round_f64`] in
//!   f64 mode, so the reference has no double rounding) or stochastically
//!   ([`normjit_ir::Rounding::Stochastic`]: element `i` in row-major order
//!   over the tensor's axes in dim declaration order draws
//!   [`normjit_ir::rng::rounding_bits`]`(seed, tensor index, i)`).
//! - **`inout`** tensors: every read sees the value at entry. Inputs are
//!   never mutated; every `out`/`inout` result is a fresh buffer.
//! - **Zero-size dims** are allowed everywhere: values over them are empty.
//!
//! # Example
//!
//! ```
//! let k = normjit_ir::parse("kernel rms {
//!     dims N, D
//!     in x: f32[N, D]
//!     out y: f32[N, D]
//!     param eps = 1e-6
//!     y = x * rsqrt(mean(x * x, D) + eps)
//! }").unwrap();
//! let x = [3.0f32, 4.0, 0.0, 0.0];
//! let out = normjit_interp::run::<f32>(&k, &[2, 2], &[1e-6], &[&x, &[]]).unwrap();
//! let y = out.get(k.tensor("y").unwrap()).unwrap();
//! assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
//! assert_eq!(y[2], 0.0);
//! ```
//!
//! Every argument is checked before anything is computed; a bad call is an
//! [`Error`] naming what is wrong, never a panic.
#![warn(missing_docs)]

mod error;
mod eval;
mod layout;
mod real;
mod reduce;

pub use error::{Error, Result};
pub use real::Real;

use layout::{axes_count, element_count};
use normjit_ir::{DimId, Kernel, ParamType, Role, Stmt, TensorId, ValueId};

/// The result of a [`run`]: the final value of every `out` and `inout`
/// tensor, row-major in the tensor's declared dim order.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs<T> {
    tensors: Vec<Option<Vec<T>>>,
}

impl<T> Outputs<T> {
    /// The final value of `tensor`; `None` for an `in` tensor or an id from
    /// another kernel.
    pub fn get(&self, tensor: TensorId) -> Option<&[T]> {
        self.tensors.get(tensor.index())?.as_deref()
    }

    /// Takes the final value of `tensor` out of the result.
    pub fn take(&mut self, tensor: TensorId) -> Option<Vec<T>> {
        self.tensors.get_mut(tensor.index())?.take()
    }

    /// All results by tensor index; `None` for `in` tensors.
    pub fn into_vec(self) -> Vec<Option<Vec<T>>> {
        self.tensors
    }
}

/// Evaluates `kernel` eagerly in element type `T` (`f32` or `f64`).
///
/// - `dims`: the size of each dim, by [`DimId`] index;
/// - `params`: the value of each param, by [`ParamId`](normjit_ir::ParamId)
///   index, defaults already applied (a `u32` param's value must be a whole
///   number in `0..=u32::MAX`);
/// - `tensors`: one slice per tensor, by [`TensorId`] index: the entry value
///   of each `in`/`inout` tensor, row-major in its declared dim order; the
///   slice of an `out` tensor is ignored (pass `&[]`).
///
/// Validates everything (counts, every `in`/`inout` length, sizes that
/// overflow `usize`, seeds, and the kernel's own invariants) before
/// computing anything.
pub fn run<T: Real>(kernel: &Kernel, dims: &[usize], params: &[f64], tensors: &[&[T]]) -> Result<Outputs<T>> {
    validate(kernel, dims, params, tensors)?;
    let eval = eval::Eval { k: kernel, sizes: dims, params, tensors };
    Ok(Outputs { tensors: eval.run()? })
}

fn validate<T>(k: &Kernel, dims: &[usize], params: &[f64], tensors: &[&[T]]) -> Result<()> {
    normjit_ir::verify(k).map_err(Error::InvalidKernel)?;
    let names = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(", ");
    if dims.len() != k.dims.len() {
        return Err(Error::DimCount {
            kernel: k.name.clone(),
            expected: k.dims.len(),
            found: dims.len(),
            names: names(&mut k.dims.iter().map(|(_, d)| d.name.as_str())),
        });
    }
    if params.len() != k.params.len() {
        return Err(Error::ParamCount {
            kernel: k.name.clone(),
            expected: k.params.len(),
            found: params.len(),
            names: names(&mut k.params.iter().map(|(_, p)| p.name.as_str())),
        });
    }
    if tensors.len() != k.tensors.len() {
        return Err(Error::TensorCount {
            kernel: k.name.clone(),
            expected: k.tensors.len(),
            found: tensors.len(),
            names: names(&mut k.tensors.iter().map(|(_, t)| t.name.as_str())),
        });
    }
    let describe = |ds: &mut dyn Iterator<Item = DimId>| {
        ds.map(|d| format!("{}={}", k.dims[d].name, dims[d.index()])).collect::<Vec<_>>().join(", ")
    };
    for (id, t) in k.tensors.iter() {
        let Some(expected) = element_count(t.dims.iter().map(|d| dims[d.index()])) else {
            return Err(Error::SizeOverflow {
                what: format!("tensor `{}`", t.name),
                dims: describe(&mut t.dims.iter().copied()),
            });
        };
        let found = tensors[id.index()].len();
        if t.role != Role::Out && found != expected {
            let shape = describe(&mut t.dims.iter().copied());
            return Err(Error::TensorLength { tensor: t.name.clone(), shape, expected, found });
        }
    }
    for (id, p) in k.params.iter() {
        let v = params[id.index()];
        if p.ty == ParamType::U32 && !(v >= 0.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0) {
            return Err(Error::BadSeed { param: p.name.clone(), value: v });
        }
    }
    for (id, node) in k.nodes.iter() {
        if axes_count(node.axes, dims).is_none() {
            return Err(Error::SizeOverflow { what: value_name(k, id), dims: describe(&mut node.axes.iter()) });
        }
    }
    Ok(())
}

/// How messages name a value: by its `let` name, or the tensor it is stored to.
fn value_name(k: &Kernel, id: ValueId) -> String {
    for s in &k.stmts {
        match s {
            Stmt::Let { name, value } if *value == id => return format!("value `{name}`"),
            Stmt::Store { tensor, value } if *value == id => {
                return format!("the value stored to `{}`", k.tensors[*tensor].name)
            }
            _ => {}
        }
    }
    format!("an intermediate value over {{{}}}", k.axis_names(k.nodes[id].axes))
}
