//! The interval oracle: a kernel evaluated over *sets* of f32 results.
//!
//! The engines legitimately disagree: the loop IR and the JIT sum in the
//! plan's order (slots, tails, chunks), the reference interpreter pairwise.
//! Different orders round differently, may overflow in one order and not in
//! another (`3e38 + 3e38 - 3e38`), and a rounding difference flips every
//! discontinuous function downstream (`select`, `sign`, `sqrt` of a value
//! near 0, `x / y` for `y` near 0). A tolerance on the output alone cannot be
//! both strict and free of false alarms. So [`Oracle`] evaluates the kernel
//! over *sets*: each element is an [`Av`], a real interval (on the f32 grid,
//! or empty) plus flags for +Inf, -Inf and NaN, which contains every result
//! any f32 engine can produce that rounds each operation once (to nearest)
//! and sums in **any** order. Rules, all sound:
//! - elementwise ops: interval arithmetic on the exact results, rounded
//!   outward on the f32 grid plus one ulp (4 for the libm functions `exp`,
//!   `log`, `pow`); results beyond the overflow threshold 2^128 - 2^103 add
//!   ±Inf; operations involving an infinity are evaluated on representatives
//!   of the other operand's sign classes (their result only depends on it);
//!   zero is unsigned (`x / 0` may give either infinity), since the engines
//!   are allowed to disagree on the sign of a zero sum;
//! - `sum` of n elements: `[Σlo - γ·A, Σhi + γ·A]` with `A = Σmax|x|` and
//!   `γ = (n+2)u / (1 - (n+2)u)`, `u = 2^-24` (the error bound of recursive
//!   summation, valid for every summation tree); +Inf is possible only if
//!   an element may be +Inf or the positive mass plus `γ·A` reaches the
//!   overflow threshold (any partial sum is bounded by it), likewise -Inf;
//!   NaN if an element may be NaN or both infinities are possible; `mean` is
//!   that sum divided by the count;
//! - `max`/`min` (elementwise and reductions) and `select`: hulls; a
//!   comparison is "maybe true" and "maybe false" when the intervals overlap;
//! - `a / b`: also `a * (1 / b)` with the reciprocal rounded, which is
//!   how the lowering divides by a per-call scalar;
//! - `a * b ± c` and `c - a * b`: also the fused result (the exact product
//!   plus `c`, rounded once), since plans for ISAs with FMA contract them;
//!   `a / s ± c` and `x ^ n ± c` (n = 2, 3, 4) likewise, as the products
//!   the lowering turns them into: `a * (1 / s)` with the reciprocal
//!   rounded (division by a per-call scalar), `x * x`, `(x * x) * x`,
//!   `s * s`.

use normjit_ir::{rng, AxisSet, Binary, Cmp, DType, DimId, Kernel, Op, Reduce, Stmt, Unary, ValueId};
use std::fmt;

const MAX32: f64 = f32::MAX as f64;
/// The smallest real that rounds to +Inf in f32: 2^128 - 2^103.
const OVF: f64 = 3.402_823_567_797_336_6e38;
const OVF_LO: f64 = OVF * (1.0 - 1e-12);
const OVF_HI: f64 = OVF * (1.0 + 1e-12);

/// A set of f32 values: the reals in `[lo, hi]` (when `fin`; both bounds on
/// the f32 grid), and/or +Inf, -Inf, NaN. Zero is unsigned. `ovf`: some value
/// this one depends on (or this one) may be infinite in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Av {
    /// Lower bound of the finite values (when `fin`).
    pub lo: f64,
    /// Upper bound of the finite values (when `fin`).
    pub hi: f64,
    /// Finite values in `[lo, hi]` are possible.
    pub fin: bool,
    /// +Inf is possible.
    pub pinf: bool,
    /// -Inf is possible.
    pub ninf: bool,
    /// NaN is possible.
    pub nan: bool,
    /// Some value this one depends on (or this one) may be infinite in f32.
    pub ovf: bool,
}

impl Av {
    const EMPTY: Av = Av { lo: 0.0, hi: 0.0, fin: false, pinf: false, ninf: false, nan: false, ovf: false };
    const NAN: Av = Av { nan: true, ..Av::EMPTY };
    const TOP: Av = Av { lo: -MAX32, hi: MAX32, fin: true, pinf: true, ninf: true, nan: true, ovf: true };

    /// The values a store to storage type `d` can leave from this set:
    /// every value rounds (to nearest, or stochastically) to one of its two
    /// neighbours in `d`, so the bounds widen to the neighbours outside
    /// them, and a bound past `d`'s largest finite value adds an infinity.
    fn stored(self, d: DType) -> Av {
        if !d.is_narrow() || !self.fin {
            return self;
        }
        let (lo, hi) = (neighbour(d, self.lo, false), neighbour(d, self.hi, true));
        let max = f64::from(d.decode(if d == DType::BF16 { 0x7F7F } else { 0x7BFF }));
        let mut r = self;
        r.pinf |= hi > max;
        r.ninf |= lo < -max;
        r.lo = lo.max(-max);
        r.hi = hi.min(max);
        r.fin = r.lo <= r.hi;
        r
    }

    /// Exactly the value `v` (an f32 value, possibly widened to f64).
    fn point(v: f64) -> Av {
        if v.is_nan() {
            Av::NAN
        } else if v == f64::INFINITY {
            Av { pinf: true, ovf: true, ..Av::EMPTY }
        } else if v == f64::NEG_INFINITY {
            Av { ninf: true, ovf: true, ..Av::EMPTY }
        } else {
            Av { lo: v, hi: v, fin: true, ..Av::EMPTY }
        }
    }

    /// Every f32 rounding (to nearest, then `ulps` more) of an exact result
    /// in `[lo, hi]` (extended reals).
    fn real(lo: f64, hi: f64, ulps: u32) -> Av {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Av::TOP;
        }
        let mut r = Av::EMPTY;
        r.pinf = hi >= OVF_LO;
        r.ninf = lo <= -OVF_LO;
        if lo < OVF_HI && hi > -OVF_HI {
            r.fin = true;
            r.lo = down32(lo.max(-MAX32), ulps);
            r.hi = up32(hi.min(MAX32), ulps);
        }
        r.ovf = r.pinf || r.ninf;
        r
    }

    /// The hull `[lo, hi]` of extended reals, exactly.
    fn hull_set(lo: f64, hi: f64) -> Av {
        let mut r = Av::EMPTY;
        r.ninf = lo == f64::NEG_INFINITY;
        r.pinf = hi == f64::INFINITY;
        if lo <= MAX32 && hi >= -MAX32 {
            r.fin = true;
            r.lo = lo.max(-MAX32);
            r.hi = hi.min(MAX32);
        }
        r.ovf = r.pinf || r.ninf;
        r
    }

    /// The hull of the non-NaN values, over the extended reals.
    fn hull(&self) -> Option<(f64, f64)> {
        if !(self.fin || self.pinf || self.ninf) {
            return None;
        }
        let lo = if self.ninf {
            f64::NEG_INFINITY
        } else if self.fin {
            self.lo
        } else {
            f64::INFINITY
        };
        let hi = if self.pinf {
            f64::INFINITY
        } else if self.fin {
            self.hi
        } else {
            f64::NEG_INFINITY
        };
        Some((lo, hi))
    }

    fn union(self, o: Av) -> Av {
        let (lo, hi, fin) = match (self.fin, o.fin) {
            (true, true) => (self.lo.min(o.lo), self.hi.max(o.hi), true),
            (true, false) => (self.lo, self.hi, true),
            (false, true) => (o.lo, o.hi, true),
            (false, false) => (0.0, 0.0, false),
        };
        Av {
            lo,
            hi,
            fin,
            pinf: self.pinf || o.pinf,
            ninf: self.ninf || o.ninf,
            nan: self.nan || o.nan,
            ovf: self.ovf || o.ovf,
        }
    }

    fn with_ovf(mut self, ovf: bool) -> Av {
        self.ovf |= ovf || self.pinf || self.ninf;
        self
    }

    fn pieces(&self) -> impl Iterator<Item = Piece> {
        let p = [
            self.fin.then_some(Piece::Fin(self.lo, self.hi)),
            self.pinf.then_some(Piece::Pinf),
            self.ninf.then_some(Piece::Ninf),
            self.nan.then_some(Piece::Nan),
        ];
        p.into_iter().flatten()
    }

    /// True when `v` (an f32 result) is in the set.
    pub fn contains(&self, v: f32) -> bool {
        if v.is_nan() {
            self.nan
        } else if v == f32::INFINITY {
            self.pinf
        } else if v == f32::NEG_INFINITY {
            self.ninf
        } else {
            self.fin && self.lo <= v as f64 && v as f64 <= self.hi
        }
    }

    /// True when the f64 result `v` is in the set, up to f64's own rounding.
    pub fn contains64(&self, v: f64) -> bool {
        if v.is_nan() {
            self.nan
        } else if v.is_infinite() {
            if v > 0.0 {
                self.pinf
            } else {
                self.ninf
            }
        } else {
            let slack = 1e-12 * self.lo.abs().max(self.hi.abs()) + 1e-300;
            self.fin && self.lo - slack <= v && v <= self.hi + slack
        }
    }

    /// Only NaN is possible.
    pub fn must_nan(&self) -> bool {
        self.nan && !(self.fin || self.pinf || self.ninf)
    }
    /// NaN is possible, and so is something else.
    pub fn maybe_nan(&self) -> bool {
        self.nan && (self.fin || self.pinf || self.ninf)
    }
}

impl fmt::Display for Av {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![];
        if self.fin {
            parts.push(format!("[{:e}, {:e}]", self.lo, self.hi));
        }
        if self.pinf {
            parts.push("+inf".into());
        }
        if self.ninf {
            parts.push("-inf".into());
        }
        if self.nan {
            parts.push("NaN".into());
        }
        write!(f, "{{{}}}", parts.join(" ∪ "))
    }
}

#[derive(Clone, Copy, Debug)]
enum Piece {
    Fin(f64, f64),
    Pinf,
    Ninf,
    Nan,
}

fn next_up32(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        x
    } else if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}
fn next_down32(x: f32) -> f32 {
    -next_up32(-x)
}
/// The f32 `ulps` steps below the largest f32 ≤ `x` (`x` in f32 range).
fn down32(x: f64, ulps: u32) -> f64 {
    let mut f = x as f32;
    if f as f64 > x {
        f = next_down32(f);
    }
    for _ in 0..ulps {
        f = next_down32(f);
    }
    (f as f64).max(-MAX32)
}
/// The f32 `ulps` steps above the smallest f32 ≥ `x` (`x` in f32 range).
fn up32(x: f64, ulps: u32) -> f64 {
    let mut f = x as f32;
    if (f as f64) < x {
        f = next_up32(f);
    }
    for _ in 0..ulps {
        f = next_up32(f);
    }
    (f as f64).min(MAX32)
}

/// Representatives of a piece's sign classes, for operations with an
/// infinite operand (whose result depends only on the other's sign class).
fn reps(p: Piece) -> Vec<f64> {
    match p {
        Piece::Fin(lo, hi) => {
            let mut v = vec![];
            if lo < 0.0 {
                v.push(-1.0);
            }
            if lo <= 0.0 && hi >= 0.0 {
                v.extend([0.0, -0.0]);
            }
            if hi > 0.0 {
                v.push(1.0);
            }
            v
        }
        Piece::Pinf => vec![f64::INFINITY],
        Piece::Ninf => vec![f64::NEG_INFINITY],
        Piece::Nan => vec![f64::NAN],
    }
}

fn union_all(it: impl IntoIterator<Item = Av>) -> Av {
    it.into_iter().fold(Av::EMPTY, Av::union)
}

fn apply_arith(op: Binary, x: f64, y: f64) -> f64 {
    match op {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        _ => unreachable!("arith only"),
    }
}

/// `+ - * /`.
fn arith(op: Binary, a: Av, b: Av) -> Av {
    let mut r = Av::EMPTY;
    for pa in a.pieces() {
        for pb in b.pieces() {
            let x = match (pa, pb) {
                (Piece::Nan, _) | (_, Piece::Nan) => Av::NAN,
                (Piece::Fin(al, ah), Piece::Fin(bl, bh)) => fin_arith(op, al, ah, bl, bh),
                _ => union_all(
                    reps(pa)
                        .into_iter()
                        .flat_map(|x| reps(pb).into_iter().map(move |y| Av::point(apply_arith(op, x, y)))),
                ),
            };
            r = r.union(x);
        }
    }
    r.with_ovf(a.ovf || b.ovf)
}

fn fin_arith(op: Binary, al: f64, ah: f64, bl: f64, bh: f64) -> Av {
    let ends = |f: fn(f64, f64) -> f64| {
        let c = [f(al, bl), f(al, bh), f(ah, bl), f(ah, bh)];
        (c.iter().copied().fold(f64::INFINITY, f64::min), c.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    };
    match op {
        Binary::Add => Av::real(al + bl, ah + bh, 1),
        Binary::Sub => Av::real(al - bh, ah - bl, 1),
        Binary::Mul => {
            let (lo, hi) = ends(|x, y| x * y);
            Av::real(lo, hi, 1)
        }
        Binary::Div => {
            if bl <= 0.0 && bh >= 0.0 {
                let a_zero = al <= 0.0 && ah >= 0.0;
                let a_nonzero = al < 0.0 || ah > 0.0;
                let mut r = Av::EMPTY;
                r.nan = a_zero;
                if a_nonzero {
                    r.pinf = true;
                    r.ninf = true;
                    if !(bl == 0.0 && bh == 0.0) {
                        r = r.union(Av { lo: -MAX32, hi: MAX32, fin: true, ..Av::EMPTY });
                    }
                }
                if a_zero && !(bl == 0.0 && bh == 0.0) {
                    r = r.union(Av::point(0.0));
                }
                r
            } else {
                let (lo, hi) = ends(|x, y| x / y);
                Av::real(lo, hi, 1)
            }
        }
        _ => unreachable!("arith only"),
    }
}

/// How an operand of `+`/`-` is a product after lowering (see
/// [`fused`]).
#[derive(Clone, Copy)]
enum Product {
    /// `a * b`.
    Plain,
    /// `a / s`, as `a * (1 / s)`.
    Quotient,
    /// `x ^ n` for n in 2..=4, as multiplications.
    Power(u8),
}

/// `±(a * b) ± c` rounded once (a fused multiply-add; `neg_ab`, `neg_c`
/// negate): the exact product of finite pieces (exact in f64) plus `c`,
/// then one rounding; pieces with an infinity or NaN on representatives,
/// as [`arith`] does.
fn fused(neg_ab: bool, a: Av, b: Av, c: Av, neg_c: bool) -> Av {
    let a = if neg_ab { unary(Unary::Neg, a) } else { a };
    let c = if neg_c { unary(Unary::Neg, c) } else { c };
    let mut r = Av::EMPTY;
    for pa in a.pieces() {
        for pb in b.pieces() {
            for pc in c.pieces() {
                let x = match (pa, pb, pc) {
                    (Piece::Nan, _, _) | (_, Piece::Nan, _) | (_, _, Piece::Nan) => Av::NAN,
                    (Piece::Fin(al, ah), Piece::Fin(bl, bh), Piece::Fin(cl, ch)) => {
                        let p = [al * bl, al * bh, ah * bl, ah * bh];
                        let lo = p.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        Av::real(lo + cl, hi + ch, 1)
                    }
                    _ => union_all(reps(pa).into_iter().flat_map(|x| {
                        reps(pb)
                            .into_iter()
                            .flat_map(move |y| reps(pc).into_iter().map(move |z| Av::point(x.mul_add(y, z))))
                    })),
                };
                r = r.union(x);
            }
        }
    }
    r.with_ovf(a.ovf || b.ovf || c.ovf)
}

/// Elementwise `min`/`max` (NaN-propagating): hulls.
fn minmax(is_max: bool, a: Av, b: Av) -> Av {
    let mut r = Av::EMPTY;
    if let (Some((al, ah)), Some((bl, bh))) = (a.hull(), b.hull()) {
        r = if is_max { Av::hull_set(al.max(bl), ah.max(bh)) } else { Av::hull_set(al.min(bl), ah.min(bh)) };
    }
    r.nan = a.nan || b.nan;
    r.with_ovf(a.ovf || b.ovf)
}

/// `pow(a, c)`; exact sets only for a point exponent `c`.
fn pow(a: Av, b: Av) -> Av {
    let c = match b {
        Av { fin: true, pinf: false, ninf: false, nan: false, lo, hi, .. } if lo == hi => lo,
        _ => return Av::TOP,
    };
    let mut r = Av::EMPTY;
    for p in a.pieces() {
        let x = match p {
            Piece::Nan => Av::point(f32::NAN.powf(c as f32) as f64),
            Piece::Pinf => Av::point(f32::INFINITY.powf(c as f32) as f64),
            Piece::Ninf => Av::point(f32::NEG_INFINITY.powf(c as f32) as f64),
            Piece::Fin(mut lo, hi) => {
                let mut s = Av::EMPTY;
                if lo < 0.0 && c.fract() != 0.0 {
                    s.nan = true;
                    if hi < 0.0 {
                        r = r.union(s);
                        continue;
                    }
                    lo = 0.0;
                }
                let mut cands = vec![lo.powf(c), hi.powf(c)];
                if lo <= 0.0 && hi >= 0.0 {
                    cands.extend([0.0f64.powf(c), (-0.0f64).powf(c)]);
                }
                let mn = cands.iter().copied().fold(f64::INFINITY, f64::min);
                let mx = cands.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                // `x ^ -n` (n = 2, 3, 4) lowers to `1 / x^n` with `x^n` as
                // f32 multiplications: 0 once `x^n` overflows f32.
                if (-4.0..=-2.0).contains(&c) && c.fract() == 0.0 && lo.abs().max(hi.abs()).powf(-c) >= OVF_LO {
                    s = s.union(Av::point(0.0));
                }
                s.union(Av::real(mn, mx, 4))
            }
        };
        r = r.union(x);
    }
    r.with_ovf(a.ovf)
}

/// A monotone non-decreasing function on its domain `[dom_lo, inf)`; below
/// the domain it gives NaN.
fn monotone(a: Av, f: fn(f64) -> f64, f32f: fn(f32) -> f32, dom_lo: Option<f64>, ulps: u32) -> Av {
    let mut r = Av::EMPTY;
    for p in a.pieces() {
        let x = match p {
            Piece::Nan => Av::NAN,
            Piece::Pinf => Av::point(f32f(f32::INFINITY) as f64),
            Piece::Ninf => Av::point(f32f(f32::NEG_INFINITY) as f64),
            Piece::Fin(mut lo, hi) => {
                let mut s = Av::EMPTY;
                if let Some(d) = dom_lo {
                    if lo < d {
                        s.nan = true;
                        if hi < d {
                            r = r.union(s);
                            continue;
                        }
                        lo = d;
                    }
                }
                s.union(Av::real(f(lo), f(hi), ulps))
            }
        };
        r = r.union(x);
    }
    r.with_ovf(a.ovf)
}

fn unary(op: Unary, a: Av) -> Av {
    match op {
        Unary::Neg => Av { lo: -a.hi, hi: -a.lo, pinf: a.ninf, ninf: a.pinf, ..a },
        Unary::Abs => {
            let mut r = Av { pinf: a.pinf || a.ninf, ninf: false, ..a };
            if a.fin {
                (r.lo, r.hi) = if a.lo >= 0.0 {
                    (a.lo, a.hi)
                } else if a.hi <= 0.0 {
                    (-a.hi, -a.lo)
                } else {
                    (0.0, a.hi.max(-a.lo))
                };
            }
            r
        }
        Unary::Sign => {
            let mut r = Av { nan: a.nan, ovf: a.ovf, ..Av::EMPTY };
            if a.pinf || (a.fin && a.hi > 0.0) {
                r = r.union(Av::point(1.0));
            }
            if a.ninf || (a.fin && a.lo < 0.0) {
                r = r.union(Av::point(-1.0));
            }
            if a.fin && a.lo <= 0.0 && a.hi >= 0.0 {
                r = r.union(Av::point(0.0));
            }
            r
        }
        Unary::Sqrt => monotone(a, f64::sqrt, f32::sqrt, Some(0.0), 1),
        Unary::Rsqrt => arith(Binary::Div, Av::point(1.0), unary(Unary::Sqrt, a)),
        Unary::Recip => arith(Binary::Div, Av::point(1.0), a),
        Unary::Exp => monotone(a, f64::exp, f32::exp, None, 4),
        Unary::Log => monotone(a, f64::ln, f32::ln, Some(0.0), 4),
        Unary::Tanh => monotone(a, f64::tanh, f32::tanh, None, 4),
        Unary::Sigmoid => monotone(a, normjit_ir::math::sigmoid, normjit_ir::math::sigmoid_f32, None, 4),
        Unary::Erf => monotone(a, normjit_ir::math::erf, normjit_ir::math::erf_f32, None, 4),
    }
}

/// The f64 value of a per-call scalar.
#[derive(Clone, Copy)]
enum PerCall {
    Real(f64),
    Bool(bool),
}

/// Every per-call scalar of `k` (`Kernel::per_call_scalars`) in f64, as
/// the engines compute it: NaN-propagating min/max that return `a < b ? a :
/// b` (the engines' rule; only the sign of a zero differs from IEEE).
fn per_call_values(k: &Kernel, sizes: &[usize], params: &[f64]) -> Vec<Option<PerCall>> {
    let which = k.per_call_scalars();
    let mut out: Vec<Option<PerCall>> = vec![None; k.nodes.len()];
    for (id, node) in k.nodes.iter() {
        if !which[id.index()] {
            continue;
        }
        let r = |v: ValueId| match out[v.index()] {
            Some(PerCall::Real(x)) => x,
            _ => f64::NAN,
        };
        let mm = |x: f64, y: f64, max: bool| {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else if (max && x > y) || (!max && x < y) {
                x
            } else {
                y
            }
        };
        out[id.index()] = Some(match node.op {
            Op::Const(c) => PerCall::Real(c),
            Op::Param(p) => PerCall::Real(params[p.index()]),
            Op::Count(ax) => PerCall::Real(ax.iter().map(|d| sizes[d.index()] as f64).product()),
            Op::Unary(u, a) => {
                let x = r(a);
                PerCall::Real(u.eval64(x))
            }
            Op::Binary(b, a, c) => {
                let (x, y) = (r(a), r(c));
                PerCall::Real(match b {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Pow => x.powf(y),
                    Binary::Min => mm(x, y, false),
                    Binary::Max => mm(x, y, true),
                })
            }
            Op::Compare(cmp, a, c) => {
                let (x, y) = (r(a), r(c));
                PerCall::Bool(match cmp {
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                    Cmp::Eq => x == y,
                    Cmp::Ne => x != y,
                })
            }
            Op::Select(c, a, b) => {
                let c = matches!(out[c.index()], Some(PerCall::Bool(true)));
                PerCall::Real(if c { r(a) } else { r(b) })
            }
            Op::Load(_) | Op::Reduce(..) | Op::Uniform(..) => continue,
        });
    }
    out
}

/// A comparison's possible outcomes.
#[derive(Clone, Copy, Debug, Default)]
struct Cond {
    t: bool,
    f: bool,
    ovf: bool,
}

fn compare(op: Cmp, a: Av, b: Av) -> Cond {
    let mut c = Cond { ovf: a.ovf || b.ovf, ..Cond::default() };
    if a.nan || b.nan {
        if op == Cmp::Ne {
            c.t = true;
        } else {
            c.f = true;
        }
    }
    if let (Some((al, ah)), Some((bl, bh))) = (a.hull(), b.hull()) {
        let overlap = al <= bh && bl <= ah;
        let same_point = al == ah && bl == bh && al == bl;
        let (t, f) = match op {
            Cmp::Lt => (al < bh, ah >= bl),
            Cmp::Le => (al <= bh, ah > bl),
            Cmp::Gt => (ah > bl, al <= bh),
            Cmp::Ge => (ah >= bl, al < bh),
            Cmp::Eq => (overlap, !same_point),
            Cmp::Ne => (!same_point, overlap),
        };
        c.t |= t;
        c.f |= f;
    }
    c
}

/// Accumulates a `sum` over a set of elements (see the module docs).
#[derive(Clone, Copy, Default)]
struct SumAcc {
    n: usize,
    l: f64,
    h: f64,
    abs: f64,
    pos: f64,
    neg: f64,
    all_fin: bool,
    all_fin_or_pinf: bool,
    all_fin_or_ninf: bool,
    any_pinf: bool,
    any_ninf: bool,
    any_nan: bool,
    must_nan: bool,
    ovf: bool,
}

impl SumAcc {
    fn new() -> Self {
        SumAcc { all_fin: true, all_fin_or_pinf: true, all_fin_or_ninf: true, ..Default::default() }
    }
    fn add(&mut self, a: &Av) {
        self.n += 1;
        self.ovf |= a.ovf;
        self.any_nan |= a.nan;
        self.must_nan |= a.must_nan();
        self.any_pinf |= a.pinf;
        self.any_ninf |= a.ninf;
        self.all_fin &= a.fin;
        self.all_fin_or_pinf &= a.fin || a.pinf;
        self.all_fin_or_ninf &= a.fin || a.ninf;
        if a.fin {
            self.l += a.lo;
            self.h += a.hi;
            self.abs += a.lo.abs().max(a.hi.abs());
            self.pos += a.hi.max(0.0);
            self.neg += (-a.lo).max(0.0);
        }
    }
    fn finish(&self) -> Av {
        if self.n == 0 {
            return Av::point(0.0);
        }
        if self.must_nan {
            return Av::NAN.with_ovf(self.ovf);
        }
        let k = (self.n + 2) as f64 * f64::powi(2.0, -24);
        let gamma = k / (1.0 - k);
        let err = gamma * self.abs * (1.0 + 1e-12);
        let pos_reach = self.any_pinf || self.pos + err >= OVF_LO;
        let neg_reach = self.any_ninf || self.neg + err >= OVF_LO;
        let mut r = Av::EMPTY;
        r.pinf = self.all_fin_or_pinf && pos_reach;
        r.ninf = self.all_fin_or_ninf && neg_reach;
        r.nan = self.any_nan || (pos_reach && neg_reach);
        if self.all_fin {
            let slack = 1e-12 * self.abs;
            let fin = Av::real(self.l - err - slack, self.h + err + slack, 1);
            r = r.union(Av { pinf: false, ninf: false, ovf: false, ..fin });
        }
        r.with_ovf(self.ovf)
    }
}

/// Element values of one node.
enum Vals {
    F(Vec<Av>),
    B(Vec<Cond>),
}

/// Strides of the dense row-major layout of `axes` (declaration order), by
/// dim index; 0 for dims not in `axes`.
fn strides(axes: AxisSet, sizes: &[usize]) -> Vec<usize> {
    let mut s = vec![0; sizes.len()];
    let mut acc = 1;
    for d in (0..sizes.len()).rev() {
        if axes.contains(DimId::from_raw(d as u32)) {
            s[d] = acc;
            acc *= sizes[d];
        }
    }
    s
}

fn dims_of(axes: AxisSet) -> Vec<usize> {
    axes.iter().map(|d| d.index()).collect()
}

/// Calls `f` with the index (by dim index) of every element over `order`
/// (outermost first), in row-major order.
fn odometer(order: &[usize], sizes: &[usize], mut f: impl FnMut(&[usize])) {
    let total: usize = order.iter().map(|&d| sizes[d]).product();
    let mut idx = vec![0usize; sizes.len()];
    for _ in 0..total {
        f(&idx);
        for &d in order.iter().rev() {
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn dot(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).map(|(i, s)| i * s).sum()
}

/// Evaluates a kernel over [`Av`] sets (see the module docs).
pub struct Oracle;

impl Oracle {
    /// The set of possible final values of every written tensor, by tensor
    /// index, in the tensor's memory order.
    pub fn eval(k: &Kernel, sizes: &[usize], params: &[f64], inputs: &[Vec<f32>]) -> Vec<Option<Vec<Av>>> {
        let mut vals: Vec<Vals> = Vec::with_capacity(k.nodes.len());
        // Per-call scalars are exact: evaluated once in f64, rounded once.
        let per_call = per_call_values(k, sizes, params);
        for (id, node) in k.nodes.iter() {
            match per_call[id.index()] {
                Some(PerCall::Real(x)) => {
                    // f32 engines see it rounded once; the f64 reference as is.
                    vals.push(Vals::F(vec![Av::point(x as f32 as f64).union(Av::point(x))]));
                    continue;
                }
                Some(PerCall::Bool(b)) => {
                    vals.push(Vals::B(vec![Cond { t: b, f: !b, ovf: false }]));
                    continue;
                }
                None => {}
            }
            let axes = node.axes;
            let n: usize = axes.iter().map(|d| sizes[d.index()]).product();
            let order = dims_of(axes);
            fn f<'v>(k: &Kernel, sizes: &[usize], vals: &'v [Vals], v: ValueId) -> (&'v [Av], Vec<usize>) {
                match &vals[v.index()] {
                    Vals::F(x) => (x, strides(k.nodes[v].axes, sizes)),
                    Vals::B(_) => unreachable!("f32 operand expected"),
                }
            }
            let out = match &node.op {
                Op::Const(c) => Vals::F(vec![Av::point(*c as f32 as f64)]),
                Op::Param(p) => Vals::F(vec![Av::point(params[p.index()] as f32 as f64)]),
                Op::Count(ax) => {
                    let c: usize = ax.iter().map(|d| sizes[d.index()]).product();
                    Vals::F(vec![Av::point(c as f32 as f64)])
                }
                Op::Uniform(p, _) => {
                    let seed = params[p.index()] as u32;
                    Vals::F((0..n).map(|i| Av::point(rng::uniform(seed, i as u64) as f64)).collect())
                }
                Op::Load(t) => {
                    let tensor = &k.tensors[*t];
                    let mut ts = vec![0; sizes.len()];
                    let mut acc = 1;
                    for d in tensor.dims.iter().rev() {
                        ts[d.index()] = acc;
                        acc *= sizes[d.index()];
                    }
                    let buf = &inputs[t.index()];
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(Av::point(buf[dot(idx, &ts)] as f64)));
                    Vals::F(v)
                }
                Op::Unary(u, a) => {
                    let (x, s) = f(k, sizes, &vals, *a);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(unary(*u, x[dot(idx, &s)])));
                    Vals::F(v)
                }
                Op::Binary(b, a, c) => {
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *c);
                    // `a * b ± c` may run fused (one rounding): the factors
                    // of each operand that is a product, or a quotient (the
                    // lowering divides by a per-call scalar as a product with
                    // its rounded reciprocal).
                    let fusing = matches!(b, Binary::Add | Binary::Sub);
                    // How an operand is a product `a * b` after lowering:
                    // `a * b`; `a / s` as `a * (1 / s)`; `x ^ 2`, `x ^ 3`
                    // and `x ^ 4` as `x * x`, `(x * x) * x`, `s * s`.
                    let factors = |v: ValueId| match k.nodes[v].op {
                        Op::Binary(op @ (Binary::Mul | Binary::Div), p, q) if fusing => {
                            let ((pv, sp), (qv, sq)) = (f(k, sizes, &vals, p), f(k, sizes, &vals, q));
                            Some((pv, sp, qv, sq, if op == Binary::Div { Product::Quotient } else { Product::Plain }))
                        }
                        Op::Binary(Binary::Pow, p, q) if fusing => match k.nodes[q].op {
                            Op::Const(n) if n == 2.0 || n == 3.0 || n == 4.0 => {
                                let (pv, sp) = f(k, sizes, &vals, p);
                                Some((pv, sp.clone(), pv, sp, Product::Power(n as u8)))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    let (fx, fy) = (factors(*a), factors(*c));
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| {
                        let (p, q) = (x[dot(idx, &sx)], y[dot(idx, &sy)]);
                        let mut r = match b {
                            Binary::Add | Binary::Sub | Binary::Mul => arith(*b, p, q),
                            // Or times the rounded reciprocal, as the lowering
                            // divides by a per-call scalar (`0 * inf` = NaN when
                            // `1 / q` overflows f32).
                            Binary::Div => {
                                arith(*b, p, q).union(arith(Binary::Mul, p, arith(Binary::Div, Av::point(1.0), q)))
                            }
                            Binary::Min => minmax(false, p, q),
                            Binary::Max => minmax(true, p, q),
                            Binary::Pow => pow(p, q),
                        };
                        let neg_sub = *b == Binary::Sub;
                        let pair = |(pv, sp, qv, sq, how): &(&[Av], Vec<usize>, &[Av], Vec<usize>, Product)| {
                            let (u, w) = (pv[dot(idx, sp)], qv[dot(idx, sq)]);
                            match how {
                                Product::Plain => (u, w),
                                Product::Quotient => (u, arith(Binary::Div, Av::point(1.0), w)),
                                Product::Power(2) => (u, u),
                                Product::Power(3) => (arith(Binary::Mul, u, u), u),
                                Product::Power(_) => (arith(Binary::Mul, u, u), arith(Binary::Mul, u, u)),
                            }
                        };
                        if let Some(fx) = &fx {
                            // x * y ± q
                            let (u, w) = pair(fx);
                            r = r.union(fused(false, u, w, q, neg_sub));
                        }
                        if let Some(fy) = &fy {
                            // p ± x * y
                            let (u, w) = pair(fy);
                            r = r.union(fused(neg_sub, u, w, p, false));
                        }
                        v.push(r)
                    });
                    Vals::F(v)
                }
                Op::Compare(cmp, a, c) => {
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *c);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(compare(*cmp, x[dot(idx, &sx)], y[dot(idx, &sy)])));
                    Vals::B(v)
                }
                Op::Select(c, a, b) => {
                    let (cv, sc) = match &vals[c.index()] {
                        Vals::B(x) => (x, strides(k.nodes[*c].axes, sizes)),
                        Vals::F(_) => unreachable!("condition expected"),
                    };
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *b);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| {
                        let c = cv[dot(idx, &sc)];
                        let mut r = Av::EMPTY;
                        if c.t {
                            r = r.union(x[dot(idx, &sx)]);
                        }
                        if c.f {
                            r = r.union(y[dot(idx, &sy)]);
                        }
                        v.push(r.with_ovf(c.ovf));
                    });
                    Vals::F(v)
                }
                Op::Reduce(r, a, red) => {
                    let (x, _) = f(k, sizes, &vals, *a);
                    let in_axes = k.nodes[*a].axes;
                    let so = strides(axes, sizes);
                    let in_order = dims_of(in_axes);
                    let cnt: usize = red.iter().map(|d| sizes[d.index()]).product();
                    match r {
                        Reduce::Sum | Reduce::Mean => {
                            let mut acc = vec![SumAcc::new(); n];
                            let mut i = 0;
                            odometer(&in_order, sizes, |idx| {
                                acc[dot(idx, &so)].add(&x[i]);
                                i += 1;
                            });
                            let count = Av::point(cnt as f32 as f64);
                            Vals::F(
                                acc.iter()
                                    .map(|a| {
                                        let s = a.finish();
                                        if *r == Reduce::Mean {
                                            arith(Binary::Div, s, count)
                                        } else {
                                            s
                                        }
                                    })
                                    .collect(),
                            )
                        }
                        Reduce::Max | Reduce::Min => {
                            let is_max = *r == Reduce::Max;
                            let id = Av::point(if is_max { f64::NEG_INFINITY } else { f64::INFINITY });
                            let mut acc = vec![Av { ovf: false, ..id }; n];
                            let mut i = 0;
                            odometer(&in_order, sizes, |idx| {
                                let o = dot(idx, &so);
                                acc[o] = minmax(is_max, acc[o], x[i]);
                                i += 1;
                            });
                            Vals::F(acc)
                        }
                    }
                }
            };
            debug_assert!(match &out {
                Vals::F(v) => v.len() == n || matches!(node.op, Op::Const(_) | Op::Param(_) | Op::Count(_)),
                Vals::B(v) => v.len() == n,
            });
            vals.push(out);
        }
        let mut outs: Vec<Option<Vec<Av>>> = k.tensors.iter().map(|_| None).collect();
        for s in &k.stmts {
            if let Stmt::Store { tensor, value } = s {
                let t = &k.tensors[*tensor];
                let Vals::F(x) = &vals[value.index()] else { unreachable!("stores are f32") };
                let sv = strides(k.nodes[*value].axes, sizes);
                let order: Vec<usize> = t.dims.iter().map(|d| d.index()).collect();
                let mut v = Vec::new();
                odometer(&order, sizes, |idx| v.push(x[dot(idx, &sv)].stored(t.dtype)));
                outs[tensor.index()] = Some(v);
            }
        }
        outs
    }
}

/// The value of `d` nearest `x` on the side `up` (or `x` itself if it is
/// one); past the largest finite value, the infinity.
fn neighbour(d: DType, x: f64, up: bool) -> f64 {
    let r = d.round_f64(x);
    if (up && r >= x) || (!up && r <= x) || r.is_infinite() && (r > 0.0) == up {
        return r;
    }
    // One step from `r` toward `x`'s side, on the bit patterns: away from
    // zero adds one to the magnitude bits, toward zero subtracts one (from
    // a zero, the smallest subnormal of the other sign).
    let h = d.encode(r as f32);
    let sign = if d.is_narrow() { 0x8000 } else { 0x8000_0000 };
    let neg = h & sign != 0;
    let mag = h & !sign;
    let bits = match (neg, up) {
        (false, true) | (true, false) => h + 1,
        (false, false) if mag == 0 => sign | 1,
        (true, true) if mag == 0 => 1,
        _ => h - 1,
    };
    f64::from(d.decode(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_widen_to_the_neighbours_in_the_narrow_type() {
        let b = |x: f32| f64::from(x);
        // 1 + 2^-9 lies between bf16's 1 and 1 + 2^-7.
        let a = Av { lo: 1.0 + 2f64.powi(-9), hi: 1.0 + 2f64.powi(-9), fin: true, ..Av::EMPTY }.stored(DType::BF16);
        assert_eq!((a.lo, a.hi), (1.0, 1.0 + 2f64.powi(-7)));
        // Exact values stay points; f32 is untouched.
        let p = Av::point(b(1.5)).stored(DType::F16);
        assert_eq!((p.lo, p.hi, p.pinf), (1.5, 1.5, false));
        let q = Av { lo: 0.1, hi: 0.1, fin: true, ..Av::EMPTY }.stored(DType::F32);
        assert_eq!((q.lo, q.hi), (0.1, 0.1));
        // Past f16's largest finite value: the infinity joins.
        let o = Av { lo: 65000.0, hi: 70000.0, fin: true, ..Av::EMPTY }.stored(DType::F16);
        assert!(o.pinf && o.hi == 65504.0 && o.lo == 64992.0);
        // Around zero: the smallest subnormals of each sign.
        let z = Av { lo: -1e-9, hi: 1e-9, fin: true, ..Av::EMPTY }.stored(DType::F16);
        assert_eq!((z.lo, z.hi), (-(2f64.powi(-24)), 2f64.powi(-24)));
    }

    fn sum_kernel() -> Kernel {
        normjit_ir::parse("kernel s {\n dims N\n in x: f32[N]\n out y: f32[]\n y = sum(x, N)\n}\n").unwrap()
    }

    /// f32 sums of `x` in several orders.
    fn sums(x: &[f32]) -> Vec<f32> {
        fn pairwise(x: &[f32]) -> f32 {
            match x.len() {
                0 => 0.0,
                1 => x[0],
                n => pairwise(&x[..n / 2]) + pairwise(&x[n / 2..]),
            }
        }
        vec![x.iter().sum(), x.iter().rev().sum(), pairwise(x), x.chunks(4).map(|c| c.iter().sum::<f32>()).sum()]
    }

    #[test]
    fn a_sum_contains_every_summation_order() {
        let k = sum_kernel();
        let mut s = 1u32;
        for n in [1usize, 2, 3, 7, 100, 1000] {
            for scale in [1.0f32, 1e-3, 1e30] {
                let x: Vec<f32> = (0..n)
                    .map(|_| {
                        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * scale
                    })
                    .collect();
                let set = Oracle::eval(&k, &[n], &[], &[x.clone(), vec![0.0]]).swap_remove(1).unwrap()[0];
                for v in sums(&x) {
                    assert!(set.contains(v), "n {n} scale {scale}: {v} not in {set}");
                }
                let exact: f64 = x.iter().map(|&v| v as f64).sum();
                assert!(set.contains64(exact), "n {n}: exact {exact} not in {set}");
                assert!(!set.nan && !set.pinf && !set.ninf, "{set}");
            }
        }
    }

    #[test]
    fn overflow_and_nan_rules_of_a_sum() {
        let k = sum_kernel();
        let eval = |x: Vec<f32>| Oracle::eval(&k, &[x.len()], &[], &[x, vec![0.0]]).swap_remove(1).unwrap()[0];
        // 3e38 + 3e38 - 3e38: +inf in one order, 3e38 in another.
        let s = eval(vec![3e38, 3e38, -3e38]);
        assert!(s.pinf && s.contains(3e38) && s.contains(f32::INFINITY), "{s}");
        // A NaN in the set makes NaN certain.
        let s = eval(vec![1.0, f32::NAN, 2.0]);
        assert!(s.must_nan(), "{s}");
        // Both infinities: NaN certain.
        let s = eval(vec![f32::INFINITY, f32::NEG_INFINITY]);
        assert!(s.must_nan(), "{s}");
        // Small values: no infinity, no NaN, a narrow interval around 6.
        let s = eval(vec![1.0, 2.0, 3.0]);
        assert!(s.fin && !s.nan && !s.pinf && !s.ninf && s.lo <= 6.0 && 6.0 <= s.hi && s.hi - s.lo < 1e-5, "{s}");
        assert!(!s.contains(6.1) && !s.contains(f32::NAN));
    }

    #[test]
    fn elementwise_sets() {
        let p = |v: f64| Av::point(v);
        assert!(arith(Binary::Div, p(0.0), p(0.0)).must_nan());
        let d = arith(Binary::Div, p(1.0), p(0.0));
        assert!(d.pinf && d.ninf && !d.nan && !d.fin, "zero is unsigned: {d}");
        assert!(unary(Unary::Sqrt, p(-1.0)).must_nan());
        assert!(!unary(Unary::Sqrt, p(4.0)).nan && unary(Unary::Sqrt, p(4.0)).contains(2.0));
        let e = unary(Unary::Exp, p(100.0));
        assert!(e.pinf && !e.fin, "exp(100) overflows f32: {e}");
        let c = compare(Cmp::Lt, Av::real(0.0, 1.0, 0), p(0.5));
        assert!(c.t && c.f, "overlapping sets compare both ways");
        let c = compare(Cmp::Lt, p(0.0), p(0.5));
        assert!(c.t && !c.f);
    }
}
