//! Hand-fused kernels compiled by rustc: what the JIT has to beat.
//!
//! One function per library pipeline, computing the same math as its file
//! under `ir/` (same formulas, conventions and f32 arithmetic; rounding may
//! differ, e.g. by FMA), written the way a good engineer writes it by hand:
//! two-pass statistics a row (or channel) at a time, so that the later
//! passes find it in cache; eight vector registers of independent
//! accumulators in every reduction; scalars hoisted out of the loops; FMA
//! where the ISA has it; plain loops that LLVM vectorizes for AVX-512, AVX2
//! or the baseline target, picked at run time. Each also has a `_par`
//! variant that splits rows, channels or elements across a rayon pool, on
//! the calling thread's [`Isa`]; the split never changes a bit
//! of the result.
//!
//! Shapes come from the slice lengths (`D` is `gamma.len()`, and so on). A
//! length that does not fit is a bug in the caller: the functions panic,
//! naming it. [`Reference`] binds one to a library kernel, so callers can
//! run it on the kernel's own [`Buffers`] with the kernel's dims and params.

use super::{fmadd, multiversion, piece, with_isa, Buffers, Isa, Lanes};
use normjit_ir::{Kernel, TensorId};
use rayon::prelude::*;
use rayon::ThreadPool;

// ------------------------------------------------------------ layer_norm

multiversion! {
    /// `ir/norm/layer_norm.nj`: for each row of `x` (`N x D`, `D =
    /// gamma.len()`), `mu = mean(x)`, `var = mean((x - mu)^2)` (biased, two
    /// passes), `y = (x - mu) * rsqrt(var + eps) * gamma + beta`.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of `D` (or not 0 when `D` is), or
    /// `beta` or `y` does not fit.
    pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], eps: f32) => layer_norm_body
}

#[inline(always)]
fn layer_norm_body<const FMA: bool, const L: usize>(x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], eps: f32) {
    let d = gamma.len();
    rows(x, d, "x", "gamma");
    same_len(beta, gamma, "beta", "gamma");
    same_len(y, x, "y", "x");
    if d == 0 {
        return;
    }
    let count = d as f32;
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mut acc = Lanes::<L>::new();
        acc.feed(xr, |a, v| a + v);
        let mu = acc.total() / count;
        let mut acc = Lanes::<L>::new();
        acc.feed(xr, |a, v| {
            let c = v - mu;
            fmadd::<FMA>(c, c, a)
        });
        let var = acc.total() / count;
        let rstd = 1.0 / (var + eps).sqrt();
        for (((yv, &xv), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
            *yv = fmadd::<FMA>((xv - mu) * rstd, g, b);
        }
    }
}

/// [`layer_norm`] with the rows split into one contiguous piece per thread
/// of `pool`. Results do not depend on the pool.
pub fn layer_norm_par(pool: &ThreadPool, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], eps: f32) {
    let n = rows(x, gamma.len(), "x", "gamma");
    same_len(y, x, "y", "x");
    if n == 0 {
        return layer_norm(x, gamma, beta, y, eps);
    }
    let chunk = piece(n, pool.current_num_threads(), 1) * gamma.len();
    let isa = Isa::current();
    pool.install(|| {
        x.par_chunks(chunk)
            .zip(y.par_chunks_mut(chunk))
            .for_each(|(x, y)| with_isa(isa, || layer_norm(x, gamma, beta, y, eps)))
    });
}

// -------------------------------------------------------------- rms_norm

multiversion! {
    /// `ir/norm/rms_norm.nj`: for each row of `x` (`N x D`, `D =
    /// gamma.len()`), `y = x * rsqrt(mean(x^2) + eps) * gamma`.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of `D` (or not 0 when `D` is), or `y`
    /// does not fit.
    pub fn rms_norm(x: &[f32], gamma: &[f32], y: &mut [f32], eps: f32) => rms_norm_body
}

#[inline(always)]
fn rms_norm_body<const FMA: bool, const L: usize>(x: &[f32], gamma: &[f32], y: &mut [f32], eps: f32) {
    let d = gamma.len();
    rows(x, d, "x", "gamma");
    same_len(y, x, "y", "x");
    if d == 0 {
        return;
    }
    let count = d as f32;
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mut acc = Lanes::<L>::new();
        acc.feed(xr, |a, v| fmadd::<FMA>(v, v, a));
        let rstd = 1.0 / (acc.total() / count + eps).sqrt();
        for ((yv, &xv), &g) in yr.iter_mut().zip(xr).zip(gamma) {
            *yv = xv * rstd * g;
        }
    }
}

/// [`rms_norm`] with the rows split into one contiguous piece per thread of
/// `pool`. Results do not depend on the pool.
pub fn rms_norm_par(pool: &ThreadPool, x: &[f32], gamma: &[f32], y: &mut [f32], eps: f32) {
    let n = rows(x, gamma.len(), "x", "gamma");
    same_len(y, x, "y", "x");
    if n == 0 {
        return rms_norm(x, gamma, y, eps);
    }
    let chunk = piece(n, pool.current_num_threads(), 1) * gamma.len();
    let isa = Isa::current();
    pool.install(|| {
        x.par_chunks(chunk).zip(y.par_chunks_mut(chunk)).for_each(|(x, y)| with_isa(isa, || rms_norm(x, gamma, y, eps)))
    });
}

// ------------------------------------------------------ batch_norm_train

/// The params of [`batch_norm_train`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    /// Added to the variance inside the root.
    pub eps: f32,
    /// Weight of the batch statistics in the running ones.
    pub momentum: f32,
}

impl Default for BatchNormParams {
    /// The file's defaults: `eps = 1e-5`, `momentum = 0.1`.
    fn default() -> Self {
        BatchNormParams { eps: 1e-5, momentum: 0.1 }
    }
}

/// The channels `c_lo..c_lo + gamma.len()` of a batch-norm call.
struct BnJob<'a> {
    /// All of `x`, `N x C x hw`.
    x: &'a [f32],
    /// `C`.
    channels: usize,
    c_lo: usize,
    hw: usize,
    /// `N * hw`, the count each statistic is over.
    nhw: usize,
    /// Per image, its planes of these channels in `y`.
    y: Vec<&'a mut [f32]>,
    gamma: &'a [f32],
    beta: &'a [f32],
    running_mean: &'a mut [f32],
    running_var: &'a mut [f32],
    p: BatchNormParams,
}

multiversion! {
    fn batch_norm_job(job: BnJob<'_>) => batch_norm_body
}

#[inline(always)]
fn batch_norm_body<const FMA: bool, const L: usize>(job: BnJob<'_>) {
    let BnJob { x, channels, c_lo, hw, nhw, mut y, gamma, beta, running_mean, running_var, p } = job;
    let count = nhw as f32;
    for (ci, (((&g, &b), rm), rv)) in gamma.iter().zip(beta).zip(running_mean).zip(running_var).enumerate() {
        let c = c_lo + ci;
        let planes = (0..y.len()).map(|n| &x[(n * channels + c) * hw..][..hw]);
        let mut acc = Lanes::<L>::new();
        for plane in planes.clone() {
            acc.feed(plane, |a, v| a + v);
        }
        let mu = acc.total() / count;
        let mut acc = Lanes::<L>::new();
        for plane in planes.clone() {
            acc.feed(plane, |a, v| {
                let d = v - mu;
                fmadd::<FMA>(d, d, a)
            });
        }
        let var = acc.total() / count;
        let rstd = 1.0 / (var + p.eps).sqrt();
        for (plane, yi) in planes.zip(y.iter_mut()) {
            for (yv, &xv) in yi[ci * hw..][..hw].iter_mut().zip(plane) {
                *yv = fmadd::<FMA>((xv - mu) * rstd, g, b);
            }
        }
        *rm = (1.0 - p.momentum) * *rm + p.momentum * mu;
        *rv = (1.0 - p.momentum) * *rv + p.momentum * var * count / (count - 1.0);
    }
}

/// `ir/norm/batch_norm_train.nj`, NCHW: `x` and `y` are `N x C x hw`
/// (`C = gamma.len()`, `hw = H * W`). Per channel over its `n = N * hw`
/// elements: `mu = mean(x)`, `var = mean((x - mu)^2)` (two passes);
/// `y = (x - mu) * rsqrt(var + eps) * gamma + beta`;
/// `running_mean = (1 - momentum) * running_mean + momentum * mu`;
/// `running_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)`.
/// The channel's data is swept three times back to back, so for a
/// per-channel working set that fits in cache the last two sweeps hit it.
///
/// # Panics
/// If `x.len()` is not a multiple of `C * hw` (or not 0 when that is), or
/// `beta`, the running statistics or `y` do not fit.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
pub fn batch_norm_train(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
    hw: usize,
    p: BatchNormParams,
) {
    for job in batch_norm_jobs(x, gamma, beta, running_mean, running_var, y, hw, p, 1) {
        batch_norm_job(job);
    }
}

/// [`batch_norm_train`] with the channels split into one contiguous group
/// per thread of `pool`. Results do not depend on the pool.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
pub fn batch_norm_train_par(
    pool: &ThreadPool,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
    hw: usize,
    p: BatchNormParams,
) {
    let jobs = batch_norm_jobs(x, gamma, beta, running_mean, running_var, y, hw, p, pool.current_num_threads());
    let isa = Isa::current();
    pool.install(|| jobs.into_par_iter().for_each(|job| with_isa(isa, || batch_norm_job(job))));
}

/// Checks the lengths and splits the channels into up to `parts` groups.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
fn batch_norm_jobs<'a>(
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    running_mean: &'a mut [f32],
    running_var: &'a mut [f32],
    y: &'a mut [f32],
    hw: usize,
    p: BatchNormParams,
    parts: usize,
) -> Vec<BnJob<'a>> {
    let c = gamma.len();
    let image = c.checked_mul(hw).expect("C * hw overflows");
    let n = rows(x, image, "x", "C * hw");
    same_len(beta, gamma, "beta", "gamma");
    same_len(running_mean, gamma, "running_mean", "gamma");
    same_len(running_var, gamma, "running_var", "gamma");
    same_len(y, x, "y", "x");
    if c == 0 {
        return Vec::new();
    }
    let nhw = x.len() / c;
    let group = piece(c, parts, 1);
    let mut ys: Vec<Vec<&mut [f32]>> = (0..c.div_ceil(group)).map(|_| Vec::with_capacity(n)).collect();
    if image > 0 {
        for img in y.chunks_mut(image) {
            for (g, part) in ys.iter_mut().zip(img.chunks_mut(group * hw)) {
                g.push(part);
            }
        }
    }
    ys.into_iter()
        .zip(gamma.chunks(group).zip(beta.chunks(group)))
        .zip(running_mean.chunks_mut(group).zip(running_var.chunks_mut(group)))
        .enumerate()
        .map(|(i, ((y, (gamma, beta)), (running_mean, running_var)))| BnJob {
            x,
            channels: c,
            c_lo: i * group,
            hw,
            nhw,
            y,
            gamma,
            beta,
            running_mean,
            running_var,
            p,
        })
        .collect()
}

// ----------------------------------------------------------------- adamw

/// The params of [`adamw`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the bias-corrected root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay.
    pub wd: f32,
    /// The step, 1-based.
    pub t: f32,
}

multiversion! {
    /// `ir/optim/adamw.nj`, elementwise: `p' = p * (1 - lr * wd)` (old
    /// `p`); `m = beta1 * m + (1 - beta1) * g`; `v = beta2 * v + (1 - beta2)
    /// * g * g`; `p = p' - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 -
    /// beta2^t) + eps)`, with the new `m` and `v`. The bias corrections are
    /// computed once per call, in f32.
    ///
    /// # Panics
    /// If `m`, `v` or `g` differs in length from `p`.
    pub fn adamw(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], a: AdamWParams) => adamw_body
}

#[inline(always)]
fn adamw_body<const FMA: bool, const L: usize>(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], a: AdamWParams) {
    same_len(m, p, "m", "p");
    same_len(v, p, "v", "p");
    same_len(g, p, "g", "p");
    let decay = 1.0 - a.lr * a.wd;
    let step = a.lr / (1.0 - a.beta1.powf(a.t));
    let bc2 = (1.0 - a.beta2.powf(a.t)).sqrt();
    let (c1, c2) = (1.0 - a.beta1, 1.0 - a.beta2);
    for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
        let m1 = fmadd::<FMA>(a.beta1, *m, c1 * g);
        let v1 = fmadd::<FMA>(a.beta2, *v, c2 * g * g);
        *m = m1;
        *v = v1;
        *p = fmadd::<FMA>(*p, decay, -(step * m1 / (v1.sqrt() / bc2 + a.eps)));
    }
}

/// [`adamw`] with the elements split into one contiguous piece per thread
/// of `pool`.
pub fn adamw_par(pool: &ThreadPool, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], a: AdamWParams) {
    same_len(m, p, "m", "p");
    same_len(v, p, "v", "p");
    same_len(g, p, "g", "p");
    let chunk = piece(p.len(), pool.current_num_threads(), 16);
    let isa = Isa::current();
    pool.install(|| {
        p.par_chunks_mut(chunk)
            .zip(m.par_chunks_mut(chunk))
            .zip(v.par_chunks_mut(chunk))
            .zip(g.par_chunks(chunk))
            .for_each(|(((p, m), v), g)| with_isa(isa, || adamw(p, m, v, g, a)))
    });
}

// ------------------------------------------------------------------- sgd

/// The params of [`sgd`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f32,
    /// Momentum of the buffer.
    pub momentum: f32,
    /// Dampening of the gradient into the buffer.
    pub dampening: f32,
    /// L2 weight decay, coupled into the gradient.
    pub wd: f32,
}

multiversion! {
    /// `ir/optim/sgd.nj` (a step after the first), elementwise: `g1 = g +
    /// wd * p`; `buf = momentum * buf + (1 - dampening) * g1`; `p = p - lr
    /// * buf`, with the new `buf`.
    ///
    /// # Panics
    /// If `buf` or `g` differs in length from `p`.
    pub fn sgd(p: &mut [f32], buf: &mut [f32], g: &[f32], s: SgdParams) => sgd_body
}

#[inline(always)]
fn sgd_body<const FMA: bool, const L: usize>(p: &mut [f32], buf: &mut [f32], g: &[f32], s: SgdParams) {
    same_len(buf, p, "buf", "p");
    same_len(g, p, "g", "p");
    let keep = 1.0 - s.dampening;
    for ((p, b), &g) in p.iter_mut().zip(buf).zip(g) {
        let g1 = fmadd::<FMA>(s.wd, *p, g);
        let b1 = fmadd::<FMA>(s.momentum, *b, keep * g1);
        *b = b1;
        *p = fmadd::<FMA>(-s.lr, b1, *p);
    }
}

/// [`sgd`] with the elements split into one contiguous piece per thread of
/// `pool`.
pub fn sgd_par(pool: &ThreadPool, p: &mut [f32], buf: &mut [f32], g: &[f32], s: SgdParams) {
    same_len(buf, p, "buf", "p");
    same_len(g, p, "g", "p");
    let chunk = piece(p.len(), pool.current_num_threads(), 16);
    let isa = Isa::current();
    pool.install(|| {
        p.par_chunks_mut(chunk)
            .zip(buf.par_chunks_mut(chunk))
            .zip(g.par_chunks(chunk))
            .for_each(|((p, buf), g)| with_isa(isa, || sgd(p, buf, g, s)))
    });
}

// --------------------------------------------------------------- prox_l1

/// The params of [`prox_l1`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProxL1Params {
    /// Step size.
    pub lr: f32,
    /// L1 weight; the threshold is `lr * lam`.
    pub lam: f32,
}

multiversion! {
    /// `ir/optim/prox_l1.nj`, elementwise: `z = p - lr * g`; `p = sign(z) *
    /// max(|z| - lr * lam, 0)`. NaN propagates as in the file; a
    /// thresholded negative `z` gives `-0.0`, as in the file.
    ///
    /// # Panics
    /// If `g` differs in length from `p`.
    pub fn prox_l1(p: &mut [f32], g: &[f32], q: ProxL1Params) => prox_l1_body
}

#[inline(always)]
fn prox_l1_body<const FMA: bool, const L: usize>(p: &mut [f32], g: &[f32], q: ProxL1Params) {
    same_len(g, p, "g", "p");
    let threshold = q.lr * q.lam;
    for (p, &g) in p.iter_mut().zip(g) {
        let z = fmadd::<FMA>(-q.lr, g, *p);
        let shrunk = z.abs() - threshold;
        // Not `max`, which would turn NaN into 0.
        let kept = if shrunk < 0.0 { 0.0 } else { shrunk };
        *p = kept.copysign(z);
    }
}

/// [`prox_l1`] with the elements split into one contiguous piece per thread
/// of `pool`.
pub fn prox_l1_par(pool: &ThreadPool, p: &mut [f32], g: &[f32], q: ProxL1Params) {
    same_len(g, p, "g", "p");
    let chunk = piece(p.len(), pool.current_num_threads(), 16);
    let isa = Isa::current();
    pool.install(|| {
        p.par_chunks_mut(chunk).zip(g.par_chunks(chunk)).for_each(|(p, g)| with_isa(isa, || prox_l1(p, g, q)))
    });
}

// --------------------------------------------------------------- binding

/// A library pipeline that has a reference kernel here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pipeline {
    /// [`layer_norm`].
    LayerNorm,
    /// [`rms_norm`].
    RmsNorm,
    /// [`batch_norm_train`].
    BatchNormTrain,
    /// [`adamw`].
    AdamW,
    /// [`sgd`].
    Sgd,
    /// [`prox_l1`].
    ProxL1,
}

impl Pipeline {
    /// Every pipeline with a reference kernel.
    pub const ALL: [Pipeline; 6] = [
        Pipeline::LayerNorm,
        Pipeline::RmsNorm,
        Pipeline::BatchNormTrain,
        Pipeline::AdamW,
        Pipeline::Sgd,
        Pipeline::ProxL1,
    ];

    /// Its file, relative to the library root `ir/`.
    pub fn path(self) -> &'static str {
        match self {
            Pipeline::LayerNorm => "norm/layer_norm.nj",
            Pipeline::RmsNorm => "norm/rms_norm.nj",
            Pipeline::BatchNormTrain => "norm/batch_norm_train.nj",
            Pipeline::AdamW => "optim/adamw.nj",
            Pipeline::Sgd => "optim/sgd.nj",
            Pipeline::ProxL1 => "optim/prox_l1.nj",
        }
    }

    /// The text of its file, as built into this binary.
    fn source(self) -> &'static str {
        match self {
            Pipeline::LayerNorm => include_str!("../../ir/norm/layer_norm.nj"),
            Pipeline::RmsNorm => include_str!("../../ir/norm/rms_norm.nj"),
            Pipeline::BatchNormTrain => include_str!("../../ir/norm/batch_norm_train.nj"),
            Pipeline::AdamW => include_str!("../../ir/optim/adamw.nj"),
            Pipeline::Sgd => include_str!("../../ir/optim/sgd.nj"),
            Pipeline::ProxL1 => include_str!("../../ir/optim/prox_l1.nj"),
        }
    }

    /// The kernel's tensors in the order the function takes them.
    fn tensors(self) -> &'static [&'static str] {
        match self {
            Pipeline::LayerNorm => &["x", "gamma", "beta", "y"],
            Pipeline::RmsNorm => &["x", "gamma", "y"],
            Pipeline::BatchNormTrain => &["x", "gamma", "beta", "running_mean", "running_var", "y"],
            Pipeline::AdamW => &["p", "m", "v", "g"],
            Pipeline::Sgd => &["p", "buf", "g"],
            Pipeline::ProxL1 => &["p", "g"],
        }
    }

    /// The kernel's params in the order the function (or its params
    /// struct) takes them.
    fn params(self) -> &'static [&'static str] {
        match self {
            Pipeline::LayerNorm | Pipeline::RmsNorm => &["eps"],
            Pipeline::BatchNormTrain => &["eps", "momentum"],
            Pipeline::AdamW => &["lr", "beta1", "beta2", "eps", "wd", "t"],
            Pipeline::Sgd => &["lr", "momentum", "dampening", "wd"],
            Pipeline::ProxL1 => &["lr", "lam"],
        }
    }
}

/// A reference kernel bound to a kernel of the library: it runs on one
/// buffer per tensor of that kernel (by tensor index, as
/// [`Buffers::for_kernel`] makes them) with the kernel's dims and params by
/// index (as `bind::resolve_dims` / `bind::resolve_params` give them).
#[derive(Clone, Debug)]
pub struct Reference {
    pipeline: Pipeline,
    /// Tensor index of each argument, in [`Pipeline::tensors`] order.
    tensors: Vec<usize>,
    /// Dim indices of each argument's tensor.
    shapes: Vec<Vec<usize>>,
    /// Param index of each of [`Pipeline::params`].
    params: Vec<usize>,
}

impl Reference {
    /// The reference for `k`, if `k` is one of the library pipelines of
    /// [`Pipeline::ALL`]: the same kernel (declarations and statements; the
    /// comments and spacing may differ) as the file built into this binary.
    /// A kernel that differs in anything else gets `None`, so a reference
    /// never runs in place of different math.
    pub fn for_kernel(k: &Kernel) -> Option<Reference> {
        let pipeline = Pipeline::ALL.into_iter().find(|p| normjit_ir::parse(p.source()).is_ok_and(|lib| lib == *k))?;
        let ids: Vec<TensorId> = pipeline.tensors().iter().map(|n| k.tensor(n)).collect::<Option<_>>()?;
        let tensors = ids.iter().map(|t| t.index()).collect();
        let shapes = ids.iter().map(|&t| k.tensors[t].dims.iter().map(|d| d.index()).collect()).collect();
        let params = pipeline.params().iter().map(|n| k.param(n).map(|p| p.index())).collect::<Option<_>>()?;
        Some(Reference { pipeline, tensors, shapes, params })
    }

    /// Which pipeline it is.
    pub fn pipeline(&self) -> Pipeline {
        self.pipeline
    }

    /// Runs the reference kernel once on `bufs`, on `pool` if given (the
    /// `_par` variant), else on this thread. `out` buffers are overwritten
    /// and `inout` ones updated, as the kernel does.
    ///
    /// # Panics
    /// If `bufs` has too few buffers or one's length is not its tensor's
    /// size at `dims`, or `dims`/`params` are too short.
    pub fn run(&self, dims: &[usize], params: &[f64], bufs: &mut Buffers, pool: Option<&ThreadPool>) {
        let mut all = bufs.slices_mut();
        let mut args: Vec<&mut [f32]> = Vec::with_capacity(self.tensors.len());
        for (&t, shape) in self.tensors.iter().zip(&self.shapes) {
            let buf = std::mem::take(&mut all[t]);
            let size: usize = shape.iter().map(|&d| dims[d]).product();
            assert_eq!(buf.len(), size, "buffer {t} does not fit its tensor at these dims");
            args.push(buf);
        }
        let q: Vec<f32> = self.params.iter().map(|&i| params[i] as f32).collect();
        match (self.pipeline, args.as_mut_slice()) {
            (Pipeline::LayerNorm, [x, gamma, beta, y]) => match pool {
                Some(pool) => layer_norm_par(pool, x, gamma, beta, y, q[0]),
                None => layer_norm(x, gamma, beta, y, q[0]),
            },
            (Pipeline::RmsNorm, [x, gamma, y]) => match pool {
                Some(pool) => rms_norm_par(pool, x, gamma, y, q[0]),
                None => rms_norm(x, gamma, y, q[0]),
            },
            (Pipeline::BatchNormTrain, [x, gamma, beta, rm, rv, y]) => {
                let p = BatchNormParams { eps: q[0], momentum: q[1] };
                // x is [N, C, H, W]: a plane is H * W.
                let hw = self.shapes[0][2..].iter().map(|&d| dims[d]).product();
                match pool {
                    Some(pool) => batch_norm_train_par(pool, x, gamma, beta, rm, rv, y, hw, p),
                    None => batch_norm_train(x, gamma, beta, rm, rv, y, hw, p),
                }
            }
            (Pipeline::AdamW, [p, m, v, g]) => {
                let a = AdamWParams { lr: q[0], beta1: q[1], beta2: q[2], eps: q[3], wd: q[4], t: q[5] };
                match pool {
                    Some(pool) => adamw_par(pool, p, m, v, g, a),
                    None => adamw(p, m, v, g, a),
                }
            }
            (Pipeline::Sgd, [p, buf, g]) => {
                let s = SgdParams { lr: q[0], momentum: q[1], dampening: q[2], wd: q[3] };
                match pool {
                    Some(pool) => sgd_par(pool, p, buf, g, s),
                    None => sgd(p, buf, g, s),
                }
            }
            (Pipeline::ProxL1, [p, g]) => {
                let q = ProxL1Params { lr: q[0], lam: q[1] };
                match pool {
                    Some(pool) => prox_l1_par(pool, p, g, q),
                    None => prox_l1(p, g, q),
                }
            }
            _ => unreachable!("one argument per tensor of Pipeline::tensors"),
        }
    }
}

// --------------------------------------------------------------- helpers

/// The number of rows of length `d` in `x`, checking that `x` is whole
/// rows (none when `d` is 0).
fn rows(x: &[f32], d: usize, x_name: &str, d_name: &str) -> usize {
    if d == 0 {
        assert!(x.is_empty(), "{x_name} has {} elements but {d_name} is 0", x.len());
        return 0;
    }
    assert!(x.len().is_multiple_of(d), "{x_name} has {} elements, not a multiple of {d_name} = {d}", x.len());
    x.len() / d
}

/// Checks that `a` is as long as `b`.
fn same_len(a: &[f32], b: &[f32], a_name: &str, b_name: &str) {
    assert_eq!(a.len(), b.len(), "{a_name} and {b_name} differ in length");
}
