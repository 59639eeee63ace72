//! Arguments and their validation: the positional [`Tensor`] views a call
//! takes, the named [`Bindings`] built on them, and the one binder both
//! paths (and the CLI's `NAME=VALUE` lists) go through. Every mistake is an
//! [`Error`] that names the tensor, dim or param, found before anything is
//! written. The positional path allocates nothing for kernels of ordinary
//! size (see [`Small`]).

use crate::signature::Signature;
use crate::Error;
use normjit_ir::{DType, Kernel, ParamType, Role};
use std::marker::PhantomData;

/// One tensor argument of a call: a view of the caller's buffer.
///
/// Safe constructors borrow a slice; [`Tensor::raw`] takes a pointer for
/// foreign callers. A shape, when given, is checked against the kernel's
/// dims (rank, and agreement with every other tensor); without one, sizes
/// are inferred from the lengths.
pub struct Tensor<'a> {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) writable: bool,
    pub(crate) dtype: DType,
    pub(crate) dtype_name: &'static str,
    pub(crate) shape: Option<&'a [usize]>,
    _borrow: PhantomData<&'a mut [u8]>,
}

/// An element type a [`Tensor`] can borrow: `f32`, and the 16-bit storage
/// types as the `half` crate's [`half::bf16`] and [`half::f16`] (bit
/// layouts identical to normjit's `bf16` and `f16`). Sealed.
pub trait Element: sealed::Sealed + Copy + 'static {
    /// The storage type of this element type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
}

// SAFETY: a `Tensor` is a shared or exclusive borrow of f32s (or, from
// `raw`, a pointer the caller promised to be one), so sending or sharing it
// across threads is like sending or sharing that borrow.
unsafe impl Send for Tensor<'_> {}
unsafe impl Sync for Tensor<'_> {}

impl<'a> Tensor<'a> {
    /// An input (`in`) tensor: `f32`, [`half::bf16`] or [`half::f16`]
    /// elements, which must be the tensor's storage type.
    pub fn input<T: Element>(data: &'a [T]) -> Self {
        Tensor::new(data.as_ptr() as *mut u8, data.len(), false, T::DTYPE)
    }

    /// An `out` tensor, or an `inout` tensor holding its entry value, which
    /// the call updates in place.
    pub fn output<T: Element>(data: &'a mut [T]) -> Self {
        Tensor::new(data.as_mut_ptr() as *mut u8, data.len(), true, T::DTYPE)
    }

    /// A tensor over a raw buffer of `len` elements of `dtype` (for foreign
    /// callers). `dtype_name` names the caller's type in errors when it is
    /// not one normjit stores (`dtype` is `None`).
    ///
    /// # Safety
    /// Unless `ptr` is null or `len` is 0, `ptr` must be valid for reads of
    /// `len` elements of `dtype` (and for writes, if `writable`) until the
    /// call returns, and not be accessed by anything else meanwhile if
    /// `writable`. A null `ptr` with elements is refused
    /// ([`Error::Null`]), and so is overlap with another argument, before
    /// anything is written.
    pub unsafe fn raw(
        ptr: *mut std::ffi::c_void,
        len: usize,
        writable: bool,
        dtype: Option<DType>,
        dtype_name: &'static str,
    ) -> Self {
        let mut t = Tensor::new(ptr as *mut u8, len, writable, dtype.unwrap_or(DType::F32));
        if dtype.is_none() {
            t.dtype_name = dtype_name;
        }
        t
    }

    fn new(ptr: *mut u8, len: usize, writable: bool, dtype: DType) -> Self {
        Tensor { ptr, len, writable, dtype, dtype_name: "", shape: None, _borrow: PhantomData }
    }

    /// Bytes the view spans.
    fn bytes(&self) -> usize {
        self.len.saturating_mul(self.dtype.size_bytes())
    }

    /// The same view with a shape (outermost dim first), checked against
    /// the kernel's declaration.
    pub fn shaped(mut self, shape: &'a [usize]) -> Self {
        self.shape = Some(shape);
        self
    }
}

/// A small buffer on the stack, on the heap only past `N` elements: what
/// keeps a positional call free of allocations.
pub(crate) enum Small<T: Copy, const N: usize> {
    Inline([T; N], usize),
    Heap(Vec<T>),
}

impl<T: Copy, const N: usize> Small<T, N> {
    pub fn filled(v: T, len: usize) -> Self {
        if len <= N {
            Small::Inline([v; N], len)
        } else {
            Small::Heap(vec![v; len])
        }
    }
}

impl<T: Copy, const N: usize> std::ops::Deref for Small<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Small::Inline(a, n) => &a[..*n],
            Small::Heap(v) => v,
        }
    }
}

impl<T: Copy, const N: usize> std::ops::DerefMut for Small<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Small::Inline(a, n) => &mut a[..*n],
            Small::Heap(v) => v,
        }
    }
}

/// A validated call: sizes, one pointer per tensor, one word per param.
pub(crate) struct Bound {
    pub dims: Small<usize, 16>,
    pub ptrs: Small<*mut u8, 32>,
    pub words: Small<u64, 32>,
}

// SAFETY: a `Bound`'s pointers come from `Tensor`s (which are `Send`: each
// is a borrow of its buffer) and are only dereferenced by the generated
// code during the call those borrows outlive, so moving one to another
// thread is like moving the borrows.
unsafe impl Send for Bound {}

/// "it has: a, b" or "it has none".
fn known<'k>(it: impl Iterator<Item = &'k str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "it has none".into()
    } else {
        format!("it has: {}", v.join(", "))
    }
}

/// Checks a param value against its type; gives the word the generated
/// code reads (f64 bits: per-call scalars are f64; or the u32 seed).
pub(crate) fn check_param(name: &str, ty: ParamType, v: f64) -> Result<u64, Error> {
    let bad = |why: &str| Error::BadParam { name: name.to_string(), value: v, why: why.to_string() };
    match ty {
        ParamType::F32 if !v.is_finite() => {
            Err(bad(&format!("must be finite: a NaN or infinite `{name}` would poison every output")))
        }
        ParamType::F32 if v.abs() > f32::MAX as f64 => Err(bad("out of range for f32")),
        ParamType::F32 => Ok(v.to_bits()),
        ParamType::U32 if !(v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0) => {
            Err(bad("must be a whole number in 0..=4294967295"))
        }
        ParamType::U32 => Ok(v as u32 as u64),
    }
}

/// Where a dim's size came from, for conflict messages.
#[derive(Clone, Copy)]
enum Src {
    Given,
    Shape(usize),
}

fn src_text(sig: &Signature, s: Src, given: &str) -> String {
    match s {
        Src::Given => given.to_string(),
        Src::Shape(t) => format!("the shape of `{}`", sig.tensors[t].name),
    }
}

/// Records `n` as the size of dim `d` from `src`, or reports a conflict.
fn set_dim(
    sig: &Signature,
    size: &mut [Option<(usize, Src)>],
    d: usize,
    n: usize,
    src: Src,
    given: &str,
) -> Result<(), Error> {
    match size[d] {
        Some((m, from)) if m != n => Err(Error::DimConflict {
            dim: sig.dims[d].clone(),
            a: m,
            a_src: src_text(sig, from, given),
            b: n,
            b_src: src_text(sig, src, given),
        }),
        Some(_) => Ok(()),
        None => {
            size[d] = Some((n, src));
            Ok(())
        }
    }
}

/// The whole validation of a call: arity, dtypes, roles, null buffers,
/// sizes (given, from shapes, inferred from lengths), lengths, overflow,
/// random domains, aliasing, params. `given` holds sizes the caller fixed
/// (by dim index; empty for none).
pub(crate) fn validate(
    k: &Kernel,
    sig: &Signature,
    tensors: &[Tensor<'_>],
    params: &[f64],
    given: &[Option<usize>],
) -> Result<Bound, Error> {
    let arity = |what, expected, found| Error::Arity { kernel: sig.name.clone(), what, expected, found };
    if tensors.len() != sig.tensors.len() {
        return Err(arity("tensors", sig.tensors.len(), tensors.len()));
    }
    if params.len() != sig.params.len() {
        return Err(arity("params", sig.params.len(), params.len()));
    }
    for (t, (ts, a)) in sig.tensors.iter().zip(tensors).enumerate() {
        if a.dtype_name.is_empty() && a.dtype != ts.dtype || !a.dtype_name.is_empty() {
            let found = if a.dtype_name.is_empty() { a.dtype.name().to_string() } else { a.dtype_name.to_string() };
            return Err(Error::DType { tensor: ts.name.clone(), expected: ts.dtype.name(), found });
        }
        if ts.role.is_written() && !a.writable {
            let want = if ts.role == Role::Out {
                "it is written, so give it as a writable output"
            } else {
                "it is updated in place, so give it as a writable output holding its entry value"
            };
            return Err(Error::WrongRole { name: ts.name.clone(), role: ts.role.keyword(), want });
        }
        if let Some(shape) = a.shape {
            if shape.len() != ts.dims.len() {
                return Err(Error::Rank { tensor: ts.name.clone(), declared: sig.declared(t), shape: shape.to_vec() });
            }
        }
    }
    // Sizes: given ones, then shapes, then tensors with one unknown dim.
    let nd = sig.dims.len();
    let mut size: Small<Option<(usize, Src)>, 16> = Small::filled(None, nd);
    for (d, g) in given.iter().enumerate() {
        if let Some(n) = *g {
            size[d] = Some((n, Src::Given));
        }
    }
    for (t, (ts, a)) in sig.tensors.iter().zip(tensors).enumerate() {
        if let Some(shape) = a.shape {
            for (&d, &n) in ts.dims.iter().zip(shape) {
                set_dim(sig, &mut size, d, n, Src::Shape(t), "the sizes given")?;
            }
        }
    }
    loop {
        let mut progress = false;
        for (ts, a) in sig.tensors.iter().zip(tensors) {
            let mut unknown = None;
            let mut count = 0;
            let mut known = 1usize;
            for &d in &ts.dims {
                match size[d] {
                    None if unknown != Some(d) => {
                        unknown = Some(d);
                        count += 1;
                    }
                    None => count += 1,
                    Some((n, _)) => known = known.saturating_mul(n),
                }
            }
            let Some(d) = unknown.filter(|_| count == 1) else { continue };
            if known == 0 {
                continue;
            }
            if a.len % known != 0 {
                return Err(Error::NotMultiple { tensor: ts.name.clone(), found: a.len, known });
            }
            size[d] = Some((a.len / known, Src::Given));
            progress = true;
        }
        if !progress {
            break;
        }
    }
    let mut dims: Small<usize, 16> = Small::filled(0, nd);
    for d in 0..nd {
        match size[d] {
            Some((n, _)) => dims[d] = n,
            None => {
                let missing: Vec<&str> = (0..nd).filter(|&d| size[d].is_none()).map(|d| sig.dims[d].as_str()).collect();
                return Err(Error::UninferredDims(missing.join(", ")));
            }
        }
    }
    // The whole iteration domain must fit the generated code's 64-bit
    // index arithmetic (counts multiply every reduced size).
    dims.iter().try_fold(1i64, |n, &d| i64::try_from(d).ok().and_then(|d| n.checked_mul(d))).ok_or_else(|| {
        Error::Overflow(format!("kernel `{}`'s iteration domain (the product of all its dims)", sig.name))
    })?;
    for (ts, a) in sig.tensors.iter().zip(tensors) {
        let expected: usize = ts.dims.iter().map(|&d| dims[d]).product();
        if a.len != expected {
            let shape: Vec<String> = ts.dims.iter().map(|&d| format!("{}={}", sig.dims[d], dims[d])).collect();
            return Err(Error::Length {
                tensor: ts.name.clone(),
                expected,
                found: a.len,
                shape: if shape.is_empty() { "a 0-dim tensor".into() } else { shape.join(", ") },
            });
        }
        if a.ptr.is_null() && expected > 0 {
            return Err(Error::Null(ts.name.clone()));
        }
    }
    // The generated code numbers random elements in 32 bits (`uniform`,
    // and the noise of stochastic rounding).
    let rounded = k.tensors.iter().filter(|(_, t)| t.rounding != normjit_ir::Rounding::NearestEven);
    let domains = k
        .nodes
        .iter()
        .filter_map(|(_, n)| if let normjit_ir::Op::Uniform(_, axes) = n.op { Some(axes) } else { None })
        .chain(rounded.map(|(_, t)| t.axes()));
    for axes in domains {
        let elements: u128 = axes.iter().map(|d| dims[d.index()] as u128).product();
        if elements > 1 << 32 {
            return Err(Error::RandomDomain { axes: k.axis_names(axes), elements });
        }
    }
    // No output may overlap any other binding.
    let span = |a: &Tensor<'_>| (a.ptr as usize, (a.ptr as usize).wrapping_add(a.bytes()));
    for (t, a) in tensors.iter().enumerate() {
        if !sig.tensors[t].role.is_written() || a.len == 0 {
            continue;
        }
        let (s, e) = span(a);
        for (u, b) in tensors.iter().enumerate() {
            let (s2, e2) = span(b);
            if u != t && b.len > 0 && s < e2 && s2 < e {
                return Err(Error::Alias { a: sig.tensors[t].name.clone(), b: sig.tensors[u].name.clone() });
            }
        }
    }
    let mut words: Small<u64, 32> = Small::filled(0, params.len());
    for (i, (ps, &v)) in sig.params.iter().zip(params).enumerate() {
        words[i] = check_param(&ps.name, ps.ty, v)?;
    }
    let mut ptrs: Small<*mut u8, 32> = Small::filled(std::ptr::null_mut(), tensors.len());
    for (i, a) in tensors.iter().enumerate() {
        ptrs[i] = a.ptr;
    }
    Ok(Bound { dims, ptrs, words })
}

/// A named call resolved to positions: tensors, params, given sizes.
pub(crate) type Positional<'a> = (Vec<Tensor<'a>>, Vec<f64>, Vec<Option<usize>>);

/// Tensors, params and dims bound by name for one call: the convenient
/// path, built on the positional one ([`crate::Kernel::call`]).
#[derive(Default)]
pub struct Bindings<'a> {
    pub(crate) tensors: Vec<(&'a str, Tensor<'a>)>,
    pub(crate) params: Vec<(&'a str, f64)>,
    pub(crate) dims: Vec<(&'a str, usize)>,
}

impl<'a> Bindings<'a> {
    /// No bindings yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Binds an `in` tensor.
    pub fn input<T: Element>(mut self, name: &'a str, data: &'a [T]) -> Self {
        self.tensors.push((name, Tensor::input(data)));
        self
    }
    /// Binds an `out` tensor, or an `inout` tensor (holding its entry
    /// value, updated in place).
    pub fn output<T: Element>(mut self, name: &'a str, data: &'a mut [T]) -> Self {
        self.tensors.push((name, Tensor::output(data)));
        self
    }
    /// Binds a tensor view (raw buffers, shapes).
    pub fn tensor(mut self, name: &'a str, t: Tensor<'a>) -> Self {
        self.tensors.push((name, t));
        self
    }
    /// Binds a param (overriding its default).
    pub fn param(mut self, name: &'a str, value: f64) -> Self {
        self.params.push((name, value));
        self
    }
    /// Gives a dim's size, for dims the lengths do not determine.
    pub fn dim(mut self, name: &'a str, size: usize) -> Self {
        self.dims.push((name, size));
        self
    }

    /// Resolves the names to positions: tensors in signature order, params
    /// over their defaults, given dims by index.
    pub(crate) fn positional(self, sig: &Signature) -> Result<Positional<'a>, Error> {
        let unknown = |what, name: &str, it: Vec<&str>| Error::Unknown {
            kernel: sig.name.clone(),
            what,
            name: name.to_string(),
            known: known(it.into_iter()),
        };
        let mut slots: Vec<Option<Tensor<'a>>> = (0..sig.tensors.len()).map(|_| None).collect();
        for (name, t) in self.tensors {
            let i = sig
                .tensor(name)
                .ok_or_else(|| unknown("tensor", name, sig.tensors.iter().map(|t| t.name.as_str()).collect()))?;
            let ts = &sig.tensors[i];
            if ts.role == Role::In && t.writable {
                return Err(Error::WrongRole { name: name.to_string(), role: "in", want: "bind it with `input`" });
            }
            if ts.role.is_written() && !t.writable {
                return Err(Error::WrongRole {
                    name: name.to_string(),
                    role: ts.role.keyword(),
                    want: "bind it with `output`",
                });
            }
            if slots[i].replace(t).is_some() {
                return Err(Error::Duplicate { what: "tensor", name: name.to_string() });
            }
        }
        let mut tensors = Vec::with_capacity(slots.len());
        for (i, s) in slots.into_iter().enumerate() {
            tensors.push(s.ok_or_else(|| Error::Unbound(sig.tensors[i].name.clone()))?);
        }
        let mut params: Vec<Option<f64>> = sig.params.iter().map(|p| p.default).collect();
        let mut seen = vec![false; params.len()];
        for (name, v) in self.params {
            let i = sig
                .param(name)
                .ok_or_else(|| unknown("param", name, sig.params.iter().map(|p| p.name.as_str()).collect()))?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(Error::Duplicate { what: "param", name: name.to_string() });
            }
            params[i] = Some(v);
        }
        let params = params
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| Error::MissingParam(sig.params[i].name.clone())))
            .collect::<Result<Vec<f64>, Error>>()?;
        let mut dims = vec![None; sig.dims.len()];
        for (name, n) in self.dims {
            let d = sig
                .dims
                .iter()
                .position(|d| d == name)
                .ok_or_else(|| unknown("dim", name, sig.dims.iter().map(|d| d.as_str()).collect()))?;
            if dims[d].replace(n).is_some() {
                return Err(Error::Duplicate { what: "dim", name: name.to_string() });
            }
        }
        Ok((tensors, params, dims))
    }
}

/// Sizes of every dim, by dim index, from sizes given by name and from the
/// shapes of some tensors (by position), which must agree. What the CLI
/// binds `--dims` and `.npy` inputs with; a dim neither gives is an error.
pub fn resolve_dims(k: &Kernel, given: &[(&str, usize)], shapes: &[(usize, &[usize])]) -> Result<Vec<usize>, Error> {
    let sig = Signature::of(k);
    let mut size: Vec<Option<(usize, Src)>> = vec![None; sig.dims.len()];
    for &(name, n) in given {
        let d = sig.dims.iter().position(|d| d == name).ok_or_else(|| Error::Unknown {
            kernel: sig.name.clone(),
            what: "dim",
            name: name.to_string(),
            known: known(sig.dims.iter().map(|d| d.as_str())),
        })?;
        if size[d].is_some() {
            return Err(Error::Duplicate { what: "dim", name: name.to_string() });
        }
        size[d] = Some((n, Src::Given));
    }
    for &(t, shape) in shapes {
        let ts = &sig.tensors[t];
        if shape.len() != ts.dims.len() {
            return Err(Error::Rank { tensor: ts.name.clone(), declared: sig.declared(t), shape: shape.to_vec() });
        }
        for (&d, &n) in ts.dims.iter().zip(shape) {
            set_dim(&sig, &mut size, d, n, Src::Shape(t), "--dims")?;
        }
    }
    size.iter().enumerate().map(|(d, s)| s.map(|s| s.0).ok_or_else(|| Error::MissingDim(sig.dims[d].clone()))).collect()
}

/// Value of every param, by param index: `given` by name over the
/// defaults, each checked against its type.
pub fn resolve_params(k: &Kernel, given: &[(&str, f64)]) -> Result<Vec<f64>, Error> {
    let sig = Signature::of(k);
    let mut vals: Vec<Option<f64>> = sig.params.iter().map(|p| p.default).collect();
    let mut seen = vec![false; vals.len()];
    for &(name, v) in given {
        let i = sig.param(name).ok_or_else(|| Error::Unknown {
            kernel: sig.name.clone(),
            what: "param",
            name: name.to_string(),
            known: known(sig.params.iter().map(|p| p.name.as_str())),
        })?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(Error::Duplicate { what: "param", name: name.to_string() });
        }
        check_param(name, sig.params[i].ty, v)?;
        vals[i] = Some(v);
    }
    vals.into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| Error::MissingParam(sig.params[i].name.clone())))
        .collect()
}
