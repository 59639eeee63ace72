//! Hand-fused kernels compiled by rustc: what the JIT has to beat.
//!
//! One function per library pipeline, computing the same math as its file
//! under `ir/` (same formulas, conventions and f32 arithmetic; rounding may
//! differ, e.g. by FMA), written the way a good engineer writes it by hand:
//! two-pass statistics a row (or channel) at a time, so that the later
//! passes find it in cache; eight vector registers of independent
//! accumulators in every reduction (fewer each when one sweep makes
//! several); scalars hoisted out of the loops; FMA where the ISA has it;
//! plain loops that LLVM vectorizes for AVX-512, AVX2 or the baseline
//! target, picked at run time. Each also has a `_par` variant that splits
//! rows, channels or elements across a rayon pool, on the calling thread's
//! [`Isa`]; the split never changes a bit of the result. (The sums over
//! rows of [`layer_norm_grad`], `dgamma` and `dbeta`, go by blocks of rows
//! fixed by the shape alone, in parallel or not, and the blocks' sums are
//! added up in block order.)
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

// ------------------------------------------------------- layer_norm_grad

/// `ir/grad/layer_norm_grad.nj`, the backward of [`layer_norm`] (its
/// vector-Jacobian product for a cotangent `dy` of `y`). For each row of
/// `x` and `dy` (`N x D`, `D = gamma.len()`), with the forward's `mu`,
/// `xc = x - mu`, `rstd = rsqrt(var + eps)` (the biased variance
/// `mean(xc^2)`, from `mu` in a second pass, as in [`layer_norm`]) and `g =
/// dy * gamma`: `dx = rstd * (g - mean(g) - xc * rstd^2 * mean(g * xc))`.
/// Over all rows: `dgamma = sum(dy * xc * rstd)`, `dbeta = sum(dy)`.
/// `dgamma` and `dbeta` are overwritten (all zeros when there are no
/// rows).
///
/// The file computes `t = sum(g * xc) * rstd^3 / D`, `dxc = g * rstd - t *
/// xc`, then `dx = dxc - (rstd * sum(g) - t * sum(xc)) / D` (`sum(dxc)` by
/// linearity). This kernel also drops `t * sum(xc)`: `sum(xc) = 0` holds
/// exactly in real arithmetic and up to rounding in f32 (the f32
/// `sum(xc)` is a few ulps of `D * |x|`), so the results agree with the
/// file's to within f32 rounding, not bit for bit.
///
/// Fused a row at a time, so that the row of `x`, `dy` and `dx` stays in
/// cache across three sweeps (and `gamma` and the sums over rows across
/// all rows): the mean of `x`; `sum(xc^2)`, `sum(g * xc)` and `sum(g)`
/// together (none of them needs `rstd`); and `dx`, while adding the row's
/// terms into the sums over rows. The three sums of the second sweep get
/// four vector registers of accumulators each (two on the baseline).
///
/// The sums over rows go by blocks of rows whose size depends only on `N`
/// and `D` (about 2^15 elements, at least a row; more when that would make
/// over 128 blocks): each block sums its rows in order into its own
/// zeroed partial, and the partials are added up in block order. That is
/// how [`layer_norm_grad_par`] splits the work, so the two agree bit for
/// bit.
///
/// # Panics
/// If `x.len()` is not a multiple of `D` (or not 0 when `D` is), or `dy`,
/// `dx`, `dgamma` or `dbeta` does not fit.
pub fn layer_norm_grad(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    eps: f32,
) {
    let d = gamma.len();
    let n = layer_norm_grad_check(x, gamma, dy, dx, dgamma, dbeta);
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    if n == 0 {
        return;
    }
    let chunk = layer_norm_grad_block_rows(n, d) * d;
    // One block's partial at a time, added into the totals as it is done:
    // the same additions in the same order as `layer_norm_grad_par` makes.
    let mut buf = Vec::new();
    let (partial, stride) = layer_norm_grad_partials(&mut buf, 1, d);
    let (pg, pb) = partial.split_at_mut(stride);
    let (pg, pb) = (&mut pg[..d], &mut pb[..d]);
    for ((x, dy), dx) in x.chunks(chunk).zip(dy.chunks(chunk)).zip(dx.chunks_mut(chunk)) {
        layer_norm_grad_block(x, gamma, dy, dx, pg, pb, eps);
        add_into(dgamma, pg);
        add_into(dbeta, pb);
    }
}

/// [`layer_norm_grad`] with its blocks of rows spread over the threads of
/// `pool`, each into its own partial sums over rows, which are then added
/// up in block order (by columns, across the pool). Results do not depend
/// on the pool: they are [`layer_norm_grad`]'s bit for bit. With fewer
/// blocks than threads (`N * D` under about `2^15` times the thread
/// count), some threads idle.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
pub fn layer_norm_grad_par(
    pool: &ThreadPool,
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    eps: f32,
) {
    let d = gamma.len();
    let n = layer_norm_grad_check(x, gamma, dy, dx, dgamma, dbeta);
    if n == 0 {
        return layer_norm_grad(x, gamma, dy, dx, dgamma, dbeta, eps);
    }
    let chunk = layer_norm_grad_block_rows(n, d) * d;
    let mut buf = Vec::new();
    let (partials, stride) = layer_norm_grad_partials(&mut buf, x.len().div_ceil(chunk), d);
    let isa = Isa::current();
    pool.install(|| {
        x.par_chunks(chunk)
            .zip(dy.par_chunks(chunk))
            .zip(dx.par_chunks_mut(chunk))
            .zip(partials.par_chunks_mut(2 * stride))
            .for_each(|(((x, dy), dx), p)| {
                let (pg, pb) = p.split_at_mut(stride);
                with_isa(isa, || layer_norm_grad_block(x, gamma, dy, dx, &mut pg[..d], &mut pb[..d], eps))
            });
        // Each column from 0 through the blocks in order, as the serial
        // function adds them; the columns split across the pool.
        let cols = piece(d, pool.current_num_threads(), 16);
        dgamma.par_chunks_mut(cols).zip(dbeta.par_chunks_mut(cols)).enumerate().for_each(|(i, (g, b))| {
            g.fill(0.0);
            b.fill(0.0);
            let lo = i * cols;
            for p in partials.chunks_exact(2 * stride) {
                add_into(g, &p[lo..][..g.len()]);
                add_into(b, &p[stride + lo..][..b.len()]);
            }
        });
    });
}

/// Checks the lengths of a [`layer_norm_grad`] call; returns `N`.
fn layer_norm_grad_check(x: &[f32], gamma: &[f32], dy: &[f32], dx: &[f32], dgamma: &[f32], dbeta: &[f32]) -> usize {
    let n = rows(x, gamma.len(), "x", "gamma");
    same_len(dy, x, "dy", "x");
    same_len(dx, x, "dx", "x");
    same_len(dgamma, gamma, "dgamma", "gamma");
    same_len(dbeta, gamma, "dbeta", "gamma");
    n
}

/// Rows per block of [`layer_norm_grad`] for `n` rows of `d > 0`: enough
/// for `2^15` elements, so that a block's partial sums (`2 * d` to zero and
/// to add up) are small next to its rows, and for at most 128 blocks, so
/// that all the partials are small next to `x`.
fn layer_norm_grad_block_rows(n: usize, d: usize) -> usize {
    const ELEMS: usize = 1 << 15;
    const MAX_BLOCKS: usize = 128;
    ELEMS.div_ceil(d).max(n.div_ceil(MAX_BLOCKS))
}

/// `blocks` zeroed partials of [`layer_norm_grad`] for rows of `d`, in
/// `buf`, and their `stride`: partial `i`'s `dgamma` is the first `d` of
/// the `stride` f32s from `2 * i * stride`, its `dbeta` the first `d` of the
/// next `stride`. Each starts a cache line, so that vector accesses do not
/// straddle two and blocks on different threads do not share one.
fn layer_norm_grad_partials(buf: &mut Vec<f32>, blocks: usize, d: usize) -> (&mut [f32], usize) {
    let stride = d.next_multiple_of(16);
    let len = blocks * 2 * stride;
    *buf = vec![0.0; len + 15];
    let skip = buf.as_ptr().align_offset(64).min(15);
    (&mut buf[skip..][..len], stride)
}

/// `acc += v`, elementwise.
fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

multiversion! {
    /// One block of rows of [`layer_norm_grad`] (`D = gamma.len() > 0`):
    /// writes its `dx` and overwrites `dgamma` and `dbeta` with its rows'
    /// sums, added row after row.
    fn layer_norm_grad_block(
        x: &[f32],
        gamma: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        eps: f32,
    ) => layer_norm_grad_body
}

#[inline(always)]
fn layer_norm_grad_body<const FMA: bool, const L: usize>(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    eps: f32,
) {
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    let d = gamma.len();
    let count = d as f32;
    for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        let mut acc = Lanes::<L>::new();
        acc.feed(xr, |a, v| a + v);
        let mu = acc.total() / count;
        // Four vector registers a sum with FMA (twelve in all); two on the
        // baseline, whose sixteen registers (and two-operand instructions,
        // without FMA) leave too few for temporaries otherwise. Spelled out:
        // stable Rust cannot compute a const generic from `L`.
        let (sum_xc2, sum_gxc, sum_g) = match (FMA, L) {
            (true, 128) => layer_norm_grad_sums::<FMA, 64>(xr, gamma, dyr, mu),
            (true, 64) => layer_norm_grad_sums::<FMA, 32>(xr, gamma, dyr, mu),
            (false, 32) => layer_norm_grad_sums::<FMA, 8>(xr, gamma, dyr, mu),
            _ => unreachable!("multiversion! gives 128 or 64 lanes with FMA, 32 without"),
        };
        let rstd = 1.0 / (sum_xc2 / count + eps).sqrt();
        // dx = rstd * (g - mean(g) - xc * s), `mean(dxc)` by the identity
        // above (without the file's `t * sum(xc)` term). `g` is rounded
        // as in `sum(g)`, not fused into `g - mean(g)`, so that where all
        // of a row's `g` are equal (`D = 1`, say) that is exactly 0.
        let mean_g = sum_g / count;
        let s = rstd * rstd * sum_gxc / count;
        let sweep = dxr.iter_mut().zip(xr).zip(dyr).zip(gamma).zip(dgamma.iter_mut()).zip(dbeta.iter_mut());
        for (((((o, &xv), &dyv), &gv), dg), db) in sweep {
            let xc = xv - mu;
            *o = rstd * fmadd::<FMA>(-xc, s, dyv * gv - mean_g);
            *dg = fmadd::<FMA>(dyv, xc * rstd, *dg);
            *db += dyv;
        }
    }
}

/// The second sweep of [`layer_norm_grad`] over a row: `(sum(xc^2), sum(g
/// * xc), sum(g))`, with `xc = x - mu` and `g = dy * gamma`. Each sum gets
/// `W` lanes, element `i` into lane `i % W`, as [`Lanes::feed`] does.
#[inline(always)]
fn layer_norm_grad_sums<const FMA: bool, const W: usize>(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    mu: f32,
) -> (f32, f32, f32) {
    let (mut v, mut p, mut q) = (Lanes::<W>::new(), Lanes::<W>::new(), Lanes::<W>::new());
    let step = |v: &mut f32, p: &mut f32, q: &mut f32, xv: f32, gv: f32, dyv: f32| {
        let xc = xv - mu;
        let g = dyv * gv;
        *v = fmadd::<FMA>(xc, xc, *v);
        *p = fmadd::<FMA>(g, xc, *p);
        *q += g;
    };
    let (xs, gs, dys) = (x.chunks_exact(W), gamma.chunks_exact(W), dy.chunks_exact(W));
    let (xt, gt, dyt) = (xs.remainder(), gs.remainder(), dys.remainder());
    for ((xc, gc), dyc) in xs.zip(gs).zip(dys) {
        let lanes = v.0.iter_mut().zip(&mut p.0).zip(&mut q.0).zip(xc).zip(gc).zip(dyc);
        for (((((v, p), q), &xv), &gv), &dyv) in lanes {
            step(v, p, q, xv, gv, dyv);
        }
    }
    let lanes = v.0.iter_mut().zip(&mut p.0).zip(&mut q.0).zip(xt).zip(gt).zip(dyt);
    for (((((v, p), q), &xv), &gv), &dyv) in lanes {
        step(v, p, q, xv, gv, dyv);
    }
    (v.total(), p.total(), q.total())
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
    /// [`layer_norm_grad`].
    LayerNormGrad,
}

impl Pipeline {
    /// Every pipeline with a reference kernel.
    pub const ALL: [Pipeline; 7] = [
        Pipeline::LayerNorm,
        Pipeline::RmsNorm,
        Pipeline::BatchNormTrain,
        Pipeline::AdamW,
        Pipeline::Sgd,
        Pipeline::ProxL1,
        Pipeline::LayerNormGrad,
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
            Pipeline::LayerNormGrad => "grad/layer_norm_grad.nj",
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
            Pipeline::LayerNormGrad => include_str!("../../ir/grad/layer_norm_grad.nj"),
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
            Pipeline::LayerNormGrad => &["x", "gamma", "dy", "dx", "dgamma", "dbeta"],
        }
    }

    /// The kernel's params in the order the function (or its params
    /// struct) takes them.
    fn params(self) -> &'static [&'static str] {
        match self {
            Pipeline::LayerNorm | Pipeline::RmsNorm | Pipeline::LayerNormGrad => &["eps"],
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
            (Pipeline::LayerNormGrad, [x, gamma, dy, dx, dgamma, dbeta]) => match pool {
                Some(pool) => layer_norm_grad_par(pool, x, gamma, dy, dx, dgamma, dbeta, q[0]),
                None => layer_norm_grad(x, gamma, dy, dx, dgamma, dbeta, q[0]),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{with_isa, Isa};

    /// The LayerNorm backward in f64, in the form `dxc`, then `dx = dxc -
    /// sum(dxc) / D` (what `ir/grad/layer_norm_grad.nj` computes, up to
    /// rounding): `(dx, dgamma, dbeta)`.
    fn layer_norm_grad_f64(x: &[f32], gamma: &[f32], dy: &[f32], eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = gamma.len();
        let count = d as f64;
        let (mut dx, mut dgamma, mut dbeta) = (Vec::with_capacity(x.len()), vec![0.0; d], vec![0.0; d]);
        for (xr, dyr) in x.chunks(d).zip(dy.chunks(d)) {
            let mu = xr.iter().map(|&v| v as f64).sum::<f64>() / count;
            let xc: Vec<f64> = xr.iter().map(|&v| v as f64 - mu).collect();
            let var = xc.iter().map(|c| c * c).sum::<f64>() / count;
            let rsqrt1 = 1.0 / (var + eps).sqrt();
            let dmul1: Vec<f64> = dyr.iter().zip(gamma).map(|(&a, &g)| a as f64 * g as f64).collect();
            let a: f64 = dmul1.iter().zip(&xc).map(|(g, c)| g * c).sum();
            let dxc: Vec<f64> =
                dmul1.iter().zip(&xc).map(|(g, c)| g * rsqrt1 - a * rsqrt1.powi(3) / count * c).collect();
            let mean = dxc.iter().sum::<f64>() / count;
            dx.extend(dxc.iter().map(|v| v - mean));
            for (i, (&dyv, c)) in dyr.iter().zip(&xc).enumerate() {
                dgamma[i] += dyv as f64 * (c * rsqrt1);
                dbeta[i] += dyv as f64;
            }
        }
        (dx, dgamma, dbeta)
    }

    /// Asserts every element of `got` within `1e-4` of the largest
    /// magnitude of `want`.
    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(f64::MIN_POSITIVE);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let g = g as f64;
            assert!((g - w).abs() <= 1e-4 * scale, "{what}[{i}]: got {g}, want {w} (scale {scale})");
        }
    }

    /// Serial and on a pool of 2, on every ISA this CPU has, at odd shapes
    /// (a partial register group only; several full ones and a tail on
    /// every ISA; several blocks of rows, the last one short; no rows),
    /// against the file in f64. The outputs start as NaN, so a sum that is
    /// not zeroed first shows.
    #[test]
    fn layer_norm_grad_matches_the_formulas_in_f64() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (n, d, eps) in [(7usize, 37usize, 1e-5f32), (5, 300, 0.1), (70, 1000, 1e-5), (0, 5, 1e-5)] {
            let x: Vec<f32> = (0..n * d).map(|i| 2.0 * (i as f32 * 0.37).sin() + (i / d) as f32 * 0.5 - 1.0).collect();
            let gamma: Vec<f32> = (0..d).map(|i| 1.0 + 0.5 * (i as f32 * 0.9).cos()).collect();
            let dy: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.13 + 0.2).cos()).collect();
            let (want_dx, want_dgamma, want_dbeta) = layer_norm_grad_f64(&x, &gamma, &dy, eps as f64);
            // The gradients are not trivially small: the check has teeth.
            if n > 0 {
                assert!(want_dx.iter().any(|v| v.abs() > 0.1) && want_dgamma.iter().any(|v| v.abs() > 0.1));
            }
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let case = format!("N {n} D {d} eps {eps} on {}", isa.name());
                let run = |pool: Option<&ThreadPool>| {
                    let (mut dx, mut dgamma, mut dbeta) = (vec![f32::NAN; n * d], vec![f32::NAN; d], vec![f32::NAN; d]);
                    with_isa(isa, || match pool {
                        Some(pool) => layer_norm_grad_par(pool, &x, &gamma, &dy, &mut dx, &mut dgamma, &mut dbeta, eps),
                        None => layer_norm_grad(&x, &gamma, &dy, &mut dx, &mut dgamma, &mut dbeta, eps),
                    });
                    (dx, dgamma, dbeta)
                };
                let serial = run(None);
                let par = run(Some(&pool));
                for (how, (dx, dgamma, dbeta)) in [("serial", &serial), ("pool", &par)] {
                    assert_close(&format!("{case} {how}: dx"), dx, &want_dx);
                    assert_close(&format!("{case} {how}: dgamma"), dgamma, &want_dgamma);
                    assert_close(&format!("{case} {how}: dbeta"), dbeta, &want_dbeta);
                }
                assert_eq!(bits(&serial.0), bits(&par.0), "{case}: dx differs");
                assert_eq!(bits(&serial.1), bits(&par.1), "{case}: dgamma differs");
                assert_eq!(bits(&serial.2), bits(&par.2), "{case}: dbeta differs");
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The blocks of rows the sums over rows go by: about 2^15 elements,
    /// at least a row, at most 128 blocks.
    #[test]
    fn layer_norm_grad_blocks_depend_on_the_shape_alone() {
        assert_eq!(layer_norm_grad_block_rows(256, 1024), 32);
        assert_eq!(layer_norm_grad_block_rows(7, 37), 886);
        assert_eq!(layer_norm_grad_block_rows(3, 40000), 1);
        assert_eq!(layer_norm_grad_block_rows(1 << 13, 1 << 12), 64); // 128 blocks of 2^18
        assert_eq!(layer_norm_grad_block_rows(1_500_000, 3), 11719); // not 10923: 128 blocks
    }

    /// Serial and on pools of 1, 2 and 3 threads, on every ISA this CPU
    /// has, the outputs agree bit for bit: with one block, three (the last
    /// one short), a row a block, and 128 blocks (the most there are).
    #[test]
    fn layer_norm_grad_does_not_depend_on_the_pool() {
        let pools: Vec<ThreadPool> =
            (1..=3).map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
        for (n, d) in [(7usize, 37usize), (70, 1000), (5, 40000), (1_500_000, 3)] {
            let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin() + (i / d % 7) as f32 * 0.5).collect();
            let gamma: Vec<f32> = (0..d).map(|i| 1.0 + 0.5 * (i as f32 * 0.9).cos()).collect();
            let dy: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.13 + 0.2).cos()).collect();
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let run = |pool: Option<&ThreadPool>| {
                    let (mut dx, mut dgamma, mut dbeta) = (vec![f32::NAN; n * d], vec![f32::NAN; d], vec![f32::NAN; d]);
                    with_isa(isa, || match pool {
                        Some(pool) => {
                            layer_norm_grad_par(pool, &x, &gamma, &dy, &mut dx, &mut dgamma, &mut dbeta, 1e-5)
                        }
                        None => layer_norm_grad(&x, &gamma, &dy, &mut dx, &mut dgamma, &mut dbeta, 1e-5),
                    });
                    (bits(&dx), bits(&dgamma), bits(&dbeta))
                };
                let serial = run(None);
                for pool in &pools {
                    let case = format!("N {n} D {d} on {}, {} threads", isa.name(), pool.current_num_threads());
                    let par = run(Some(pool));
                    assert!(serial.0 == par.0, "{case}: dx differs");
                    assert!(serial.1 == par.1, "{case}: dgamma differs");
                    assert!(serial.2 == par.2, "{case}: dbeta differs");
                }
            }
        }
    }

    /// The binding recognizes the library file and runs the kernel on its
    /// buffers, with the file's default `eps`.
    #[test]
    fn layer_norm_grad_is_bound_to_its_file() {
        let k = normjit_ir::parse(Pipeline::LayerNormGrad.source()).unwrap();
        let r = Reference::for_kernel(&k).expect("the library's layer_norm_grad is recognized");
        assert_eq!(r.pipeline(), Pipeline::LayerNormGrad);
        let (n, d) = (3, 20);
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.7).sin()).collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.3).cos()).collect();
        let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; n * d], vec![0.0; d], vec![0.0; d]);
        layer_norm_grad(&x, &gamma, &dy, &mut dx, &mut dgamma, &mut dbeta, 1e-5);
        // Inputs by name, outputs NaN: a tensor bound out of order shows.
        let mut data = vec![Vec::new(); k.tensors.len()];
        for (name, v) in
            [("x", &x), ("gamma", &gamma), ("dy", &dy), ("dx", &dx), ("dgamma", &dgamma), ("dbeta", &dbeta)]
        {
            let input = ["x", "gamma", "dy"].contains(&name);
            data[k.tensor(name).unwrap().index()] = if input { v.clone() } else { vec![f32::NAN; v.len()] };
        }
        let mut bufs = Buffers::from_data(data, crate::bench::Placement::Staggered);
        let mut dims = vec![0; k.dims.len()];
        for (id, dim) in k.dims.iter() {
            dims[id.index()] = if dim.name == "N" { n } else { d };
        }
        let mut params = vec![0.0; k.params.len()];
        params[k.param("eps").unwrap().index()] = 1e-5;
        r.run(&dims, &params, &mut bufs, None);
        for (name, v) in [("dx", &dx), ("dgamma", &dgamma), ("dbeta", &dbeta)] {
            assert_eq!(bufs.get(k.tensor(name).unwrap().index()), &v[..], "{name}");
        }
    }
}
