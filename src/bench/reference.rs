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
//! rows of [`layer_norm_grad`], `dgamma` and `dbeta`, and the per-channel
//! statistics of [`batch_norm_train_nhwc`] go by blocks of rows fixed by
//! the shape alone, in parallel or not, and the blocks' sums are added up
//! in block order.)
//!
//! Shapes come from the slice lengths (`D` is `gamma.len()`, and so on). A
//! length that does not fit is a bug in the caller: the functions panic,
//! naming it. [`Reference`] binds one to a library kernel, so callers can
//! run it on the kernel's own [`Buffers`] with the kernel's dims and params.

use super::{fmadd, multiversion, piece, with_isa, Buffers, Isa, Lanes};
use normjit_ir::{rng, Kernel, TensorId};
use normjit_lower::vmath;
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
        p.update_running(rm, rv, mu, var, count);
    }
}

impl BatchNormParams {
    /// The running statistics' update from one channel's batch mean `mu`
    /// and biased variance `var` over `count` elements:
    /// `running_mean = (1 - momentum) * running_mean + momentum * mu`,
    /// `running_var = (1 - momentum) * running_var + momentum * var * count
    /// / (count - 1)`.
    fn update_running(&self, rm: &mut f32, rv: &mut f32, mu: f32, var: f32, count: f32) {
        *rm = (1.0 - self.momentum) * *rm + self.momentum * mu;
        *rv = (1.0 - self.momentum) * *rv + self.momentum * var * count / (count - 1.0);
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

// ------------------------------------------------- batch_norm_train_nhwc

/// `ir/norm/batch_norm_train_nhwc.nj`, NHWC: `x` and `y` are `rows x C`
/// (`rows = N * H * W`, `C = gamma.len()`, the channels innermost). The
/// math of [`batch_norm_train`], per channel over its `n = rows` elements:
/// `mu = mean(x)`, `var = mean((x - mu)^2)` (two passes); `y = (x - mu) *
/// rsqrt(var + eps) * gamma + beta`; the same running statistics. The
/// channel's two factors are multiplied first, `s = rsqrt(var + eps) *
/// gamma` (once per channel), so that `y = (x - mu) * s + beta` (one
/// rounding apart from the file's order).
///
/// Three sweeps over all of `x`, each a row of `C` contiguous channels at a
/// time into per-channel arrays, so that the loops vectorize across the
/// channels: the sums of `x`, then of `(x - mu)^2`, then `y`. The sums keep
/// `C * ceil(L / C)` lanes (a whole number of rows, at least eight vector
/// registers' worth; lane `j` is channel `j % C`), so that a small `C`
/// still gets independent accumulators; the per-channel arrays of the last
/// two sweeps are repeated to that width likewise.
///
/// The sums go by the blocks of rows of [`layer_norm_grad`] (fixed by `N *
/// H * W` and `C` alone): each block's lanes are added up per channel, in
/// lane order, into its own partial, and the partials are added up in
/// block order. That is how [`batch_norm_train_nhwc_par`] splits the work,
/// so the two agree bit for bit.
///
/// # Panics
/// If `x.len()` is not a multiple of `C` (or not 0 when `C` is), or
/// `beta`, the running statistics or `y` do not fit.
pub fn batch_norm_train_nhwc(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
    p: BatchNormParams,
) {
    bn_nhwc(None, x, gamma, beta, running_mean, running_var, y, p);
}

/// [`batch_norm_train_nhwc`] with the blocks of rows of its sums spread
/// over the threads of `pool`, and its last sweep split into one
/// contiguous piece of rows per thread. Results do not depend on the pool:
/// they are [`batch_norm_train_nhwc`]'s bit for bit. With fewer blocks than
/// threads (`x` under about `2^15` elements a thread), some threads idle in
/// the sums.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
pub fn batch_norm_train_nhwc_par(
    pool: &ThreadPool,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
    p: BatchNormParams,
) {
    bn_nhwc(Some(pool), x, gamma, beta, running_mean, running_var, y, p);
}

/// [`batch_norm_train_nhwc`], on `pool` if given.
#[allow(clippy::too_many_arguments)] // one slice per tensor of the pipeline
fn bn_nhwc(
    pool: Option<&ThreadPool>,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    y: &mut [f32],
    p: BatchNormParams,
) {
    let c = gamma.len();
    let n = rows(x, c, "x", "gamma");
    same_len(beta, gamma, "beta", "gamma");
    same_len(running_mean, gamma, "running_mean", "gamma");
    same_len(running_var, gamma, "running_var", "gamma");
    same_len(y, x, "y", "x");
    if c == 0 {
        return;
    }
    let count = n as f32;
    let mut mu = vec![0.0; c];
    bn_nhwc_sums(pool, x, None, &mut mu);
    mu.iter_mut().for_each(|m| *m /= count);
    let mut var = vec![0.0; c];
    bn_nhwc_sums(pool, x, Some(&mu), &mut var);
    var.iter_mut().for_each(|v| *v /= count);
    let scale: Vec<f32> = var.iter().zip(gamma).map(|(&v, &g)| 1.0 / (v + p.eps).sqrt() * g).collect();
    match pool {
        None => bn_nhwc_write(x, &mu, &scale, beta, y),
        Some(pool) => {
            let chunk = piece(n, pool.current_num_threads(), 1) * c;
            let isa = Isa::current();
            pool.install(|| {
                x.par_chunks(chunk)
                    .zip(y.par_chunks_mut(chunk))
                    .for_each(|(x, y)| with_isa(isa, || bn_nhwc_write(x, &mu, &scale, beta, y)))
            });
        }
    }
    let stats = running_mean.iter_mut().zip(running_var.iter_mut()).zip(mu.iter().zip(&var));
    for ((rm, rv), (&mu, &var)) in stats {
        p.update_running(rm, rv, mu, var, count);
    }
}

/// The per-channel sums over all rows of `x` (`rows x C`, `C = out.len() >
/// 0`) of [`batch_norm_train_nhwc`] into `out`: of `x`, or of `(x - mu)^2`
/// given `mu`. By blocks of [`block_rows`], each into its own zeroed
/// partial, added into `out` (zeroed first) in block order; the blocks
/// spread over `pool` when given.
fn bn_nhwc_sums(pool: Option<&ThreadPool>, x: &[f32], mu: Option<&[f32]>, out: &mut [f32]) {
    let c = out.len();
    out.fill(0.0);
    let n = x.len() / c;
    if n == 0 {
        return;
    }
    let chunk = block_rows(n, c) * c;
    let mut buf = Vec::new();
    match pool {
        // One block's partial at a time, added into `out` as it is done:
        // the same additions in the same order as on a pool.
        None => {
            let (partial, _) = partials(&mut buf, 1, c);
            let partial = &mut partial[..c];
            for x in x.chunks(chunk) {
                bn_nhwc_block(x, mu, partial);
                add_into(out, partial);
            }
        }
        Some(pool) => {
            let (all, stride) = partials(&mut buf, x.len().div_ceil(chunk), c);
            let isa = Isa::current();
            pool.install(|| {
                x.par_chunks(chunk)
                    .zip(all.par_chunks_mut(stride))
                    .for_each(|(x, p)| with_isa(isa, || bn_nhwc_block(x, mu, &mut p[..c])))
            });
            // `C` adds a block: small next to the block's rows.
            for p in all.chunks_exact(stride) {
                add_into(out, &p[..c]);
            }
        }
    }
}

/// The lanes of [`batch_norm_train_nhwc`]'s loops for `c > 0` channels
/// and `l` lanes of accumulators: `c * ceil(l / c)`, whole rows, at least
/// `l`.
fn bn_nhwc_width(c: usize, l: usize) -> usize {
    c * l.div_ceil(c)
}

/// `v` (one value per channel) repeated to `width`, a multiple of its
/// length: lane `j` gets channel `j % v.len()`.
fn repeat_to(v: &[f32], width: usize) -> Vec<f32> {
    v.iter().copied().cycle().take(width).collect()
}

multiversion! {
    /// One block of whole rows of [`batch_norm_train_nhwc`]'s sums:
    /// overwrites `out` (`C = out.len() > 0`) with the per-channel sums of
    /// the block's `x`, or of `(x - mu)^2` given `mu`.
    fn bn_nhwc_block(x: &[f32], mu: Option<&[f32]>, out: &mut [f32]) => bn_nhwc_block_body
}

#[inline(always)]
fn bn_nhwc_block_body<const FMA: bool, const L: usize>(x: &[f32], mu: Option<&[f32]>, out: &mut [f32]) {
    let c = out.len();
    let width = bn_nhwc_width(c, L);
    let mut acc = vec![0.0f32; width];
    // Rows of `width` lanes (the last chunk shorter, still whole rows):
    // lane `j` always sums channel `j % C`.
    match mu {
        None => {
            for xs in x.chunks(width) {
                for (a, &v) in acc.iter_mut().zip(xs) {
                    *a += v;
                }
            }
        }
        Some(mu) => {
            let mu = repeat_to(mu, width);
            for xs in x.chunks(width) {
                for ((a, &v), &m) in acc.iter_mut().zip(xs).zip(&mu) {
                    let d = v - m;
                    *a = fmadd::<FMA>(d, d, *a);
                }
            }
        }
    }
    out.fill(0.0);
    for lanes in acc.chunks_exact(c) {
        add_into(out, lanes);
    }
}

multiversion! {
    /// The last sweep of [`batch_norm_train_nhwc`] over whole rows of `x`
    /// and `y` (`C = mu.len() > 0`): `y = (x - mu) * scale + beta`, per
    /// channel.
    fn bn_nhwc_write(x: &[f32], mu: &[f32], scale: &[f32], beta: &[f32], y: &mut [f32]) => bn_nhwc_write_body
}

#[inline(always)]
fn bn_nhwc_write_body<const FMA: bool, const L: usize>(
    x: &[f32],
    mu: &[f32],
    scale: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    let width = bn_nhwc_width(mu.len(), L);
    let (mu, scale, beta) = (repeat_to(mu, width), repeat_to(scale, width), repeat_to(beta, width));
    for (xs, ys) in x.chunks(width).zip(y.chunks_mut(width)) {
        for ((((yv, &xv), &m), &s), &b) in ys.iter_mut().zip(xs).zip(&mu).zip(&scale).zip(&beta) {
            *yv = fmadd::<FMA>(xv - m, s, b);
        }
    }
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
    let chunk = block_rows(n, d) * d;
    // One block's partial at a time, added into the totals as it is done:
    // the same additions in the same order as `layer_norm_grad_par` makes.
    let mut buf = Vec::new();
    let (partial, stride) = partials(&mut buf, 2, d);
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
    let chunk = block_rows(n, d) * d;
    let mut buf = Vec::new();
    let (partials, stride) = partials(&mut buf, 2 * x.len().div_ceil(chunk), d);
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

/// Rows per block of the sums over rows of [`layer_norm_grad`] and
/// [`batch_norm_train_nhwc`] for `n` rows of `d > 0`: enough for `2^15`
/// elements, so that a block's partial sums (`2 * d` or `d` to zero and to
/// add up) are small next to its rows, and for at most 128 blocks, so that
/// all the partials are small next to `x`.
fn block_rows(n: usize, d: usize) -> usize {
    const ELEMS: usize = 1 << 15;
    const MAX_BLOCKS: usize = 128;
    ELEMS.div_ceil(d).max(n.div_ceil(MAX_BLOCKS))
}

/// `count` zeroed partial sums over rows of `d` columns, in `buf`, and
/// their `stride`: partial `i` is the first `d` of the `stride` f32s from
/// `i * stride` ([`layer_norm_grad`] takes two a block, `dgamma`'s then
/// `dbeta`'s; [`batch_norm_train_nhwc`] one). Each starts a cache line, so
/// that vector accesses do not straddle two and blocks on different threads
/// do not share one.
fn partials(buf: &mut Vec<f32>, count: usize, d: usize) -> (&mut [f32], usize) {
    let stride = d.next_multiple_of(16);
    let len = count * stride;
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

// --------------------------------------------------------------- dropout

/// The params of [`dropout`], as the kernel gets them: `p` in f64, since
/// normjit computes `scale = 1 / (1 - p)` in f64 (a per-call scalar,
/// rounded to f32 once) while the per-element comparison sees `p` rounded
/// to f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutParams {
    /// Drop probability.
    pub p: f64,
    /// The seed of the `uniform` stream (a `u32` param).
    pub seed: u32,
}

impl Default for DropoutParams {
    /// The file's defaults: `p = 0.1`, `seed = 0`.
    fn default() -> Self {
        DropoutParams { p: 0.1, seed: 0 }
    }
}

/// `ir/reg/dropout.nj`, elementwise over `x`: `y[i] = uniform(seed, i) >=
/// p ? x[i] * scale : 0`, with `scale = 1 / (1 - p)` computed in f64 and
/// rounded to f32, and the comparison in f32 (`p` rounded to f32), as in
/// normjit (`normjit_lower::exec` is the definition). Dropped entries are
/// exactly 0, also where `x` is inf or NaN.
///
/// The mask is normjit's bit for bit: `uniform` is
/// [`normjit_ir::rng::uniform`], with its keys ([`normjit_ir::rng::keys`])
/// computed once per `2^32` elements and its per-element hash
/// ([`normjit_ir::rng::bits`], two lowbias32 rounds: u32 multiplies,
/// shifts and xors) inlined into the loop, which LLVM vectorizes over a
/// vector of indices.
///
/// # Panics
/// If `y` differs in length from `x`.
pub fn dropout(x: &[f32], y: &mut [f32], d: DropoutParams) {
    same_len(y, x, "y", "x");
    dropout_from(x, y, 0, d.p as f32, dropout_scale(d.p), d.seed);
}

/// [`dropout`] with the elements split into one contiguous piece per
/// thread of `pool`, each drawing the uniforms of its own indices.
pub fn dropout_par(pool: &ThreadPool, x: &[f32], y: &mut [f32], d: DropoutParams) {
    same_len(y, x, "y", "x");
    let chunk = piece(x.len(), pool.current_num_threads(), 16);
    let (p, scale) = (d.p as f32, dropout_scale(d.p));
    let isa = Isa::current();
    pool.install(|| {
        x.par_chunks(chunk)
            .zip(y.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(i, (x, y))| with_isa(isa, || dropout_from(x, y, (i * chunk) as u64, p, scale, d.seed)))
    });
}

/// `1 / (1 - p)` in f64, rounded to f32: the file's `scale`, computed as
/// normjit computes per-call scalars.
fn dropout_scale(p: f64) -> f32 {
    (1.0 / (1.0 - p)) as f32
}

multiversion! {
    /// [`dropout`] on elements `start..start + x.len()` of the tensor
    /// (`y` as long as `x`), with `p` already in f32.
    fn dropout_from(x: &[f32], y: &mut [f32], start: u64, p: f32, scale: f32, seed: u32) => dropout_body
}

#[inline(always)]
fn dropout_body<const FMA: bool, const L: usize>(x: &[f32], y: &mut [f32], start: u64, p: f32, scale: f32, seed: u32) {
    let (mut x, mut y, mut index) = (x, y, start);
    while !x.is_empty() {
        // A run of indices with the same high half: one pair of keys.
        let lo = index as u32;
        let run = ((1u64 << 32) - u64::from(lo)).min(x.len() as u64) as usize;
        let (k1, k2) = rng::keys(seed, (index >> 32) as u32);
        let (xs, rest_x) = x.split_at(run);
        let (ys, rest_y) = std::mem::take(&mut y).split_at_mut(run);
        for (j, (yv, &xv)) in ys.iter_mut().zip(xs).enumerate() {
            let h = rng::bits(lo.wrapping_add(j as u32), k1, k2);
            // rng::uniform: 24 random bits times 2^-24 (exact; the bits fit
            // an i32, whose conversion vectorizes on every ISA).
            let u = ((h >> 8) as i32) as f32 * (1.0 / 16_777_216.0);
            *yv = if u >= p { xv * scale } else { 0.0 };
        }
        (x, y, index) = (rest_x, rest_y, index + run as u64);
    }
}

// --------------------------------------------------------------- softmax

multiversion! {
    /// `ir/norm/softmax.nj`: for each row of `x` (`N x D`), `y = e /
    /// sum(e)`, `e = exp(x - m)`, `m = max(x)`.
    ///
    /// `exp` is normjit's: [`normjit_lower::vmath::exp`] on scalar lanes
    /// ([`vmath::Scalar`], fused multiply-adds where this variant has FMA,
    /// like the JIT's plan for the ISA), inlined into the loop, which LLVM
    /// vectorizes (it is branch-free: integer tricks and selects). So each
    /// `e` equals normjit's bit for bit when the FMA use matches (AVX2+FMA
    /// and AVX-512 fuse; the baseline does not).
    ///
    /// Three sweeps a row, which stays in cache: the maximum (eight vector
    /// registers of lanes; a NaN is skipped there, but it still makes every
    /// `y` of its row NaN through `e` and the sum, as in the file); `e`,
    /// stored into `y` while summed (two vector registers of lanes: the
    /// exp's latency hides the adds'), so that exp runs once an element;
    /// and `y *= 1 / sum(e)`, a multiply by the row's reciprocal instead of
    /// the file's divide (within 1.5 ulp of it).
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of `d` (or not 0 when `d` is), or `y`
    /// differs in length from `x`.
    pub fn softmax(x: &[f32], y: &mut [f32], d: usize) => softmax_body
}

#[inline(always)]
fn softmax_body<const FMA: bool, const L: usize>(x: &[f32], y: &mut [f32], d: usize) {
    rows(x, d, "x", "D");
    same_len(y, x, "y", "x");
    if d == 0 {
        return;
    }
    let max = |a: f32, v: f32| if v > a { v } else { a };
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mut acc = Lanes::<L>::splat(f32::NEG_INFINITY);
        acc.feed(xr, max);
        let m = acc.reduce(max);
        // Two vector registers of lanes. Spelled out: stable Rust cannot
        // compute a const generic from `L`.
        let sum = match (FMA, L) {
            (true, 128) => softmax_exp_sum::<FMA, 32>(xr, yr, m),
            (true, 64) => softmax_exp_sum::<FMA, 16>(xr, yr, m),
            (false, 32) => softmax_exp_sum::<FMA, 8>(xr, yr, m),
            _ => unreachable!("multiversion! gives 128 or 64 lanes with FMA, 32 without"),
        };
        let r = 1.0 / sum;
        for yv in yr.iter_mut() {
            *yv *= r;
        }
    }
}

/// The second sweep of [`softmax`] over a row: `y = exp(x - m)`, returning
/// `sum(y)`, element `i` into lane `i % W`, as [`Lanes::feed`] does.
#[inline(always)]
fn softmax_exp_sum<const FMA: bool, const W: usize>(x: &[f32], y: &mut [f32], m: f32) -> f32 {
    let mut acc = Lanes::<W>::new();
    let exp = |v: f32| vmath::exp(&mut vmath::Scalar { fused: FMA }, v - m);
    let (xs, mut ys) = (x.chunks_exact(W), y.chunks_exact_mut(W));
    let xt = xs.remainder();
    for (xc, yc) in xs.zip(&mut ys) {
        for ((a, yv), &xv) in acc.0.iter_mut().zip(yc).zip(xc) {
            *yv = exp(xv);
            *a += *yv;
        }
    }
    for ((a, yv), &xv) in acc.0.iter_mut().zip(ys.into_remainder()).zip(xt) {
        *yv = exp(xv);
        *a += *yv;
    }
    acc.total()
}

/// [`softmax`] with the rows split into one contiguous piece per thread of
/// `pool`. Results do not depend on the pool.
pub fn softmax_par(pool: &ThreadPool, x: &[f32], y: &mut [f32], d: usize) {
    let n = rows(x, d, "x", "D");
    same_len(y, x, "y", "x");
    if n == 0 {
        return softmax(x, y, d);
    }
    let chunk = piece(n, pool.current_num_threads(), 1) * d;
    let isa = Isa::current();
    pool.install(|| {
        x.par_chunks(chunk).zip(y.par_chunks_mut(chunk)).for_each(|(x, y)| with_isa(isa, || softmax(x, y, d)))
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
    /// [`layer_norm_grad`].
    LayerNormGrad,
    /// [`batch_norm_train_nhwc`].
    BatchNormTrainNhwc,
    /// [`dropout`].
    Dropout,
    /// [`softmax`].
    Softmax,
}

impl Pipeline {
    /// Every pipeline with a reference kernel.
    pub const ALL: [Pipeline; 10] = [
        Pipeline::LayerNorm,
        Pipeline::RmsNorm,
        Pipeline::BatchNormTrain,
        Pipeline::AdamW,
        Pipeline::Sgd,
        Pipeline::ProxL1,
        Pipeline::LayerNormGrad,
        Pipeline::BatchNormTrainNhwc,
        Pipeline::Dropout,
        Pipeline::Softmax,
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
            Pipeline::BatchNormTrainNhwc => "norm/batch_norm_train_nhwc.nj",
            Pipeline::Dropout => "reg/dropout.nj",
            Pipeline::Softmax => "norm/softmax.nj",
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
            Pipeline::BatchNormTrainNhwc => include_str!("../../ir/norm/batch_norm_train_nhwc.nj"),
            Pipeline::Dropout => include_str!("../../ir/reg/dropout.nj"),
            Pipeline::Softmax => include_str!("../../ir/norm/softmax.nj"),
        }
    }

    /// The kernel's tensors in the order the function takes them.
    fn tensors(self) -> &'static [&'static str] {
        match self {
            Pipeline::LayerNorm => &["x", "gamma", "beta", "y"],
            Pipeline::RmsNorm => &["x", "gamma", "y"],
            Pipeline::BatchNormTrain | Pipeline::BatchNormTrainNhwc => {
                &["x", "gamma", "beta", "running_mean", "running_var", "y"]
            }
            Pipeline::AdamW => &["p", "m", "v", "g"],
            Pipeline::Sgd => &["p", "buf", "g"],
            Pipeline::ProxL1 => &["p", "g"],
            Pipeline::LayerNormGrad => &["x", "gamma", "dy", "dx", "dgamma", "dbeta"],
            Pipeline::Dropout | Pipeline::Softmax => &["x", "y"],
        }
    }

    /// The kernel's params in the order the function (or its params
    /// struct) takes them.
    fn params(self) -> &'static [&'static str] {
        match self {
            Pipeline::LayerNorm | Pipeline::RmsNorm | Pipeline::LayerNormGrad => &["eps"],
            Pipeline::BatchNormTrain | Pipeline::BatchNormTrainNhwc => &["eps", "momentum"],
            Pipeline::AdamW => &["lr", "beta1", "beta2", "eps", "wd", "t"],
            Pipeline::Sgd => &["lr", "momentum", "dampening", "wd"],
            Pipeline::ProxL1 => &["lr", "lam"],
            Pipeline::Dropout => &["p", "seed"],
            Pipeline::Softmax => &[],
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
            (Pipeline::BatchNormTrainNhwc, [x, gamma, beta, rm, rv, y]) => {
                let p = BatchNormParams { eps: q[0], momentum: q[1] };
                match pool {
                    Some(pool) => batch_norm_train_nhwc_par(pool, x, gamma, beta, rm, rv, y, p),
                    None => batch_norm_train_nhwc(x, gamma, beta, rm, rv, y, p),
                }
            }
            (Pipeline::Dropout, [x, y]) => {
                // Not through `q`: `scale` is computed from `p` in f64, and
                // the seed is a u32, which f32 would round above 2^24.
                let d = DropoutParams { p: params[self.params[0]], seed: params[self.params[1]] as u32 };
                match pool {
                    Some(pool) => dropout_par(pool, x, y, d),
                    None => dropout(x, y, d),
                }
            }
            (Pipeline::Softmax, [x, y]) => {
                // x is [N, D]: rows of D.
                let d = dims[self.shapes[0][1]];
                match pool {
                    Some(pool) => softmax_par(pool, x, y, d),
                    None => softmax(x, y, d),
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

    /// Asserts every element of `got` within `1e-4` of the largest finite
    /// magnitude of `want`, and NaN exactly where `want` is NaN.
    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().filter(|w| w.is_finite()).fold(0.0f64, |m, w| m.max(w.abs())).max(f64::MIN_POSITIVE);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let g = g as f64;
            if g.is_nan() || w.is_nan() {
                assert!(g.is_nan() && w.is_nan(), "{what}[{i}]: got {g}, want {w}");
                continue;
            }
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
        assert_eq!(block_rows(256, 1024), 32);
        assert_eq!(block_rows(7, 37), 886);
        assert_eq!(block_rows(3, 40000), 1);
        assert_eq!(block_rows(1 << 13, 1 << 12), 64); // 128 blocks of 2^18
        assert_eq!(block_rows(1_500_000, 3), 11719); // not 10923: 128 blocks
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

    /// Runs `r`, bound to `k`, on one buffer per tensor (`data` by name),
    /// at `dims` and `params` by name (the others 0); returns the buffers.
    fn run_bound(
        k: &Kernel,
        r: &Reference,
        dims: &[(&str, usize)],
        params: &[(&str, f64)],
        data: &[(&str, &[f32])],
    ) -> Buffers {
        let mut tensors = vec![Vec::new(); k.tensors.len()];
        for (name, v) in data {
            tensors[k.tensor(name).unwrap().index()] = v.to_vec();
        }
        let mut bufs = Buffers::from_data(tensors, crate::bench::Placement::Staggered);
        let mut d = vec![0; k.dims.len()];
        for (id, dim) in k.dims.iter() {
            d[id.index()] = dims.iter().find(|(n, _)| *n == dim.name).unwrap().1;
        }
        let mut q = vec![0.0; k.params.len()];
        for (name, v) in params {
            q[k.param(name).unwrap().index()] = *v;
        }
        r.run(&d, &q, &mut bufs, None);
        bufs
    }

    // ------------------------------------------ batch_norm_train_nhwc

    /// BatchNorm training over `rows x C` in f64, the file's formulas:
    /// `(y, running_mean, running_var)`.
    fn batch_norm_nhwc_f64(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        rm: &[f32],
        rv: &[f32],
        p: BatchNormParams,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let c = gamma.len();
        let n = x.len() / c;
        let count = n as f64;
        let (eps, mom) = (p.eps as f64, p.momentum as f64);
        let col = |ch: usize| x.iter().skip(ch).step_by(c).map(|&v| v as f64);
        let mu: Vec<f64> = (0..c).map(|ch| col(ch).sum::<f64>() / count).collect();
        let var: Vec<f64> = (0..c).map(|ch| col(ch).map(|v| (v - mu[ch]).powi(2)).sum::<f64>() / count).collect();
        let y = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i % c;
                (v as f64 - mu[ch]) / (var[ch] + eps).sqrt() * gamma[ch] as f64 + beta[ch] as f64
            })
            .collect();
        let rm = (0..c).map(|ch| (1.0 - mom) * rm[ch] as f64 + mom * mu[ch]).collect();
        let rv = (0..c).map(|ch| (1.0 - mom) * rv[ch] as f64 + mom * var[ch] * count / (count - 1.0)).collect();
        (y, rm, rv)
    }

    /// Serial and on pools of 2 and 3, on every ISA this CPU has, at odd
    /// shapes (`rows x C`: no rows, one (`running_var` NaN, as in the
    /// file), one channel, channels fewer than a vector and more than the
    /// lanes, several register groups and a tail, several blocks of rows
    /// with the last one short, no channels), against the file in f64; the
    /// pools agree with the serial run bit for bit. Channel means far from
    /// 0, so a one-pass variance would show; the output starts as NaN.
    #[test]
    fn batch_norm_train_nhwc_matches_the_formulas_in_f64() {
        let pools: Vec<ThreadPool> =
            (2..=3).map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).collect();
        let shapes = [(0usize, 5usize), (1, 3), (100, 1), (5, 3), (37, 5), (3, 37), (126, 64), (50, 200), (2000, 37)];
        for (n, c) in shapes.into_iter().chain([(4, 0)]) {
            for p in [BatchNormParams::default(), BatchNormParams { eps: 0.01, momentum: 0.3 }] {
                let x: Vec<f32> = (0..n * c)
                    .map(|i| {
                        2.0 * (i as f32 * 0.37).sin() + (i % c.max(1)) as f32 * 3.0 - 20.0 + (i / c.max(1) % 5) as f32
                    })
                    .collect();
                let gamma: Vec<f32> = (0..c).map(|i| 1.0 + 0.5 * (i as f32 * 0.9).cos()).collect();
                let beta: Vec<f32> = (0..c).map(|i| 0.25 * (i as f32 * 1.3).sin()).collect();
                let rm0: Vec<f32> = (0..c).map(|i| 0.1 * i as f32).collect();
                let rv0: Vec<f32> = (0..c).map(|i| 1.0 + 0.2 * i as f32).collect();
                let (want_y, want_rm, want_rv) =
                    if c > 0 { batch_norm_nhwc_f64(&x, &gamma, &beta, &rm0, &rv0, p) } else { Default::default() };
                for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                    let case = format!("rows {n} C {c} {p:?} on {}", isa.name());
                    let run = |pool: Option<&ThreadPool>| {
                        let (mut y, mut rm, mut rv) = (vec![f32::NAN; n * c], rm0.clone(), rv0.clone());
                        with_isa(isa, || match pool {
                            Some(pool) => {
                                batch_norm_train_nhwc_par(pool, &x, &gamma, &beta, &mut rm, &mut rv, &mut y, p)
                            }
                            None => batch_norm_train_nhwc(&x, &gamma, &beta, &mut rm, &mut rv, &mut y, p),
                        });
                        (y, rm, rv)
                    };
                    let serial = run(None);
                    assert_close(&format!("{case}: y"), &serial.0, &want_y);
                    assert_close(&format!("{case}: running_mean"), &serial.1, &want_rm);
                    assert_close(&format!("{case}: running_var"), &serial.2, &want_rv);
                    for pool in &pools {
                        let par = run(Some(pool));
                        let case = format!("{case}, {} threads", pool.current_num_threads());
                        assert_eq!(bits(&serial.0), bits(&par.0), "{case}: y differs");
                        assert_eq!(bits(&serial.1), bits(&par.1), "{case}: running_mean differs");
                        assert_eq!(bits(&serial.2), bits(&par.2), "{case}: running_var differs");
                    }
                }
            }
        }
    }

    /// The binding recognizes the library file (not the NCHW one's
    /// reference: same names, other layout) and runs the kernel on its
    /// buffers, `C` innermost.
    #[test]
    fn batch_norm_train_nhwc_is_bound_to_its_file() {
        let k = normjit_ir::parse(Pipeline::BatchNormTrainNhwc.source()).unwrap();
        let r = Reference::for_kernel(&k).expect("the library's batch_norm_train_nhwc is recognized");
        assert_eq!(r.pipeline(), Pipeline::BatchNormTrainNhwc);
        let (n, h, w, c) = (2, 3, 5, 7);
        let x: Vec<f32> = (0..n * h * w * c).map(|i| (i as f32 * 0.7).sin() + (i % c) as f32).collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * -0.2).collect();
        let (rm0, rv0) = (vec![0.5; c], vec![2.0; c]);
        let p = BatchNormParams { eps: 0.01, momentum: 0.3 };
        let (mut y, mut rm, mut rv) = (vec![0.0; x.len()], rm0.clone(), rv0.clone());
        batch_norm_train_nhwc(&x, &gamma, &beta, &mut rm, &mut rv, &mut y, p);
        let nan = vec![f32::NAN; x.len()];
        let data = [
            ("x", &x[..]),
            ("gamma", &gamma),
            ("beta", &beta),
            ("running_mean", &rm0),
            ("running_var", &rv0),
            ("y", &nan),
        ];
        let dims = [("N", n), ("H", h), ("W", w), ("C", c)];
        let bufs = run_bound(&k, &r, &dims, &[("eps", 0.01), ("momentum", 0.3)], &data);
        for (name, v) in [("y", &y), ("running_mean", &rm), ("running_var", &rv)] {
            assert_eq!(bufs.get(k.tensor(name).unwrap().index()), &v[..], "{name}");
        }
    }

    // ------------------------------------------------------- dropout

    /// `x` for the dropout tests: varied values, with an inf, a -inf and a
    /// NaN (dropped ones become exactly 0; kept ones stay inf or NaN).
    fn dropout_input(n: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|i| 3.0 * (i as f32 * 0.37).sin() - 0.5).collect();
        for (i, v) in [(3, f32::INFINITY), (17, f32::NEG_INFINITY), (29, f32::NAN)] {
            if i < n {
                x[i] = v;
            }
        }
        x
    }

    /// The mask and the kept values are normjit's bit for bit: against the
    /// loop-IR interpreter (`normjit_lower::exec`, the definition the JIT
    /// is held to) on the library file, and against `rng::uniform` and
    /// `x * scale` in f32, serial and on a pool of 2, on every ISA, at odd
    /// lengths (several register groups and a tail among them) and `p`s
    /// (0.1 and 1/3, which f32 rounds; 0 and 1; 0.5), with seeds beyond
    /// 2^24.
    #[test]
    fn dropout_keeps_normjits_mask() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let k = normjit_ir::parse(Pipeline::Dropout.source()).unwrap();
        let (pi, si) = (k.param("p").unwrap().index(), k.param("seed").unwrap().index());
        for n in [0usize, 1, 3, 5, 37, 1000, 4099] {
            let x = dropout_input(n);
            for (p, seed) in [(0.1, 0u32), (1.0 / 3.0, 7), (0.5, 3_000_000_001), (0.0, 1), (1.0, 2)] {
                let d = DropoutParams { p, seed };
                let case = format!("N {n} p {p} seed {seed}");
                // normjit's definition, on the file.
                let plan = normjit_lower::lower(&k, &[n], &Default::default()).unwrap();
                let mut params = vec![0.0; k.params.len()];
                (params[pi], params[si]) = (p, seed as f64);
                let mut tensors = vec![Vec::new(); k.tensors.len()];
                tensors[k.tensor("x").unwrap().index()] = x.clone();
                tensors[k.tensor("y").unwrap().index()] = vec![f32::NAN; n];
                normjit_lower::exec(&plan, &[n], &params, &mut tensors).unwrap();
                let want = bits(&tensors[k.tensor("y").unwrap().index()]);
                // The same spelled out: `uniform` and `x * scale` in f32.
                let scale = (1.0 / (1.0 - p)) as f32;
                let spelled: Vec<f32> =
                    (0..n).map(|i| if rng::uniform(seed, i as u64) >= p as f32 { x[i] * scale } else { 0.0 }).collect();
                assert_eq!(want, bits(&spelled), "{case}: exec and the spelled-out formula differ");
                if n >= 1000 && p == 0.5 {
                    let kept = spelled.iter().filter(|v| v.to_bits() != 0).count();
                    assert!(kept > n * 2 / 5 && kept < n * 3 / 5, "{case}: kept {kept}");
                }
                for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                    let (mut serial, mut par) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                    with_isa(isa, || {
                        dropout(&x, &mut serial, d);
                        dropout_par(&pool, &x, &mut par, d);
                    });
                    assert_eq!(bits(&serial), want, "{case} on {}: serial", isa.name());
                    assert_eq!(bits(&par), want, "{case} on {}: pool", isa.name());
                }
            }
        }
    }

    /// Indices past `2^32` draw with the next high word's keys: a run that
    /// crosses it, on every ISA.
    #[test]
    fn dropout_draws_across_the_high_index_word() {
        let x = dropout_input(200);
        let start = (1u64 << 32) - 77;
        let (p, seed) = (0.3f32, 11);
        let want: Vec<f32> =
            (0..x.len()).map(|i| if rng::uniform(seed, start + i as u64) >= p { x[i] * 2.0 } else { 0.0 }).collect();
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            let mut y = vec![f32::NAN; x.len()];
            with_isa(isa, || dropout_from(&x, &mut y, start, p, 2.0, seed));
            assert_eq!(bits(&y), bits(&want), "on {}", isa.name());
        }
    }

    /// The binding recognizes the library file and takes the seed from the
    /// f64 param as an integer (through f32 it would round to a
    /// neighbouring seed with another mask) and `scale` from `p` in f64.
    #[test]
    fn dropout_is_bound_to_its_file() {
        let k = normjit_ir::parse(Pipeline::Dropout.source()).unwrap();
        let r = Reference::for_kernel(&k).expect("the library's dropout is recognized");
        assert_eq!(r.pipeline(), Pipeline::Dropout);
        let x = dropout_input(300);
        let d = DropoutParams { p: 0.3, seed: 3_000_000_001 };
        let mut y = vec![0.0; x.len()];
        dropout(&x, &mut y, d);
        let nan = vec![f32::NAN; x.len()];
        let bufs =
            run_bound(&k, &r, &[("N", x.len())], &[("p", d.p), ("seed", d.seed as f64)], &[("x", &x), ("y", &nan)]);
        assert_eq!(bits(bufs.get(k.tensor("y").unwrap().index())), bits(&y));
        let mut rounded = vec![0.0; x.len()];
        dropout(&x, &mut rounded, DropoutParams { seed: d.seed as f32 as u32, ..d });
        assert_ne!(bits(&rounded), bits(&y), "the seed's rounding is not tested");
    }

    // ------------------------------------------------------- softmax

    /// Softmax rows in f64 from the f32 differences `x - max` (rounded as
    /// the file's f32 arithmetic rounds them): `exp`, the sum and the
    /// quotient exact. A NaN anywhere in a row makes all of it NaN, as a
    /// NaN-propagating `max` does in the file.
    fn softmax_f64(x: &[f32], d: usize) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(d) {
            if row.iter().any(|v| v.is_nan()) {
                y.extend(row.iter().map(|_| f64::NAN));
                continue;
            }
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let e: Vec<f64> = row.iter().map(|&v| ((v - m) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            y.extend(e.iter().map(|e| e / s));
        }
        y
    }

    /// Serial and on a pool of 2, on every ISA this CPU has, at odd shapes
    /// (no rows, no columns, one, a partial register group, several and a
    /// tail on every ISA, 4097), against the f64 formula: each element
    /// within `(4 + sqrt(D) / 4) * 2^-24` relative (exp within 1 ulp, the
    /// reciprocal and product half an ulp each, the f32 sum's rounding)
    /// plus `2^-149` absolute (the subnormals `e` underflows to). Rows with
    /// `-inf` entries (0 out), huge and tiny values, all equal, all `-inf`
    /// (NaN, as in the file: `-inf - -inf`) and a NaN.
    #[test]
    fn softmax_matches_the_formulas_in_f64() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (n, d) in [(0usize, 5usize), (3, 0), (1, 1), (4, 3), (5, 5), (7, 37), (6, 300), (3, 1000), (2, 4097)] {
            let mut x: Vec<f32> =
                (0..n * d).map(|i| 3.0 * (i as f32 * 0.37).sin() + (i / d) as f32 * 10.0 - 20.0).collect();
            let rows: Vec<&mut [f32]> = if d > 0 { x.chunks_mut(d).collect() } else { Vec::new() };
            for (r, row) in rows.into_iter().enumerate() {
                match r {
                    1 => row.iter_mut().step_by(3).for_each(|v| *v = f32::NEG_INFINITY),
                    2 => row.iter_mut().enumerate().for_each(|(i, v)| *v = [1e30, 88.5, -1e30, -120.0][i % 4]),
                    3 => row.fill(0.75),
                    4 => row.fill(f32::NEG_INFINITY),
                    5 => row[row.len() / 2] = f32::NAN,
                    _ => {}
                }
                if r == 6 {
                    // A wide range, down to where exp underflows.
                    row.iter_mut().enumerate().for_each(|(i, v)| *v = -((i * 37 % 150) as f32));
                }
            }
            let want = softmax_f64(&x, d.max(1));
            let tol = (4.0 + (d as f64).sqrt() / 4.0) * f64::powi(2.0, -24);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let case = format!("N {n} D {d} on {}", isa.name());
                let (mut serial, mut par) = (vec![f32::NAN; n * d], vec![f32::NAN; n * d]);
                with_isa(isa, || {
                    softmax(&x, &mut serial, d);
                    softmax_par(&pool, &x, &mut par, d);
                });
                assert_eq!(bits(&serial), bits(&par), "{case}: serial and pool differ");
                for (i, (&g, &w)) in serial.iter().zip(&want).enumerate() {
                    let g = g as f64;
                    let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= tol * w + f64::powi(2.0, -149) };
                    assert!(ok, "{case}: y[{i}] (row {}) = {g}, want {w}", i / d);
                }
            }
        }
    }

    /// The binding recognizes the library file and runs the kernel on its
    /// buffers, with `D` from the dims.
    #[test]
    fn softmax_is_bound_to_its_file() {
        let k = normjit_ir::parse(Pipeline::Softmax.source()).unwrap();
        let r = Reference::for_kernel(&k).expect("the library's softmax is recognized");
        assert_eq!(r.pipeline(), Pipeline::Softmax);
        let (n, d) = (3, 20);
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.7).sin() * 4.0).collect();
        let mut y = vec![0.0; x.len()];
        softmax(&x, &mut y, d);
        let nan = vec![f32::NAN; x.len()];
        let bufs = run_bound(&k, &r, &[("N", n), ("D", d)], &[], &[("x", &x), ("y", &nan)]);
        assert_eq!(bufs.get(k.tensor("y").unwrap().index()), &y[..]);
    }
}
