//! The text printer: `Display for Kernel` writes the `.nj` format.
//!
//! Output parses back to an equal kernel for every kernel the parser makes.
//! Builder-made kernels may share an unnamed value between several users or
//! nest expressions very deeply; the printer then names such values with
//! fresh `_tN` bindings (so sharing is kept and no printed expression nests
//! more than [`MAX_INLINE`] levels), and the reparsed kernel differs from the
//! original only by those extra bindings.
//!
//! Front-end sugar is printed expanded, except `var`: the node shape the
//! front end makes for `var(a, AXES)` (an inner mean shared by both factors
//! of the square) is printed back as `var(a, AXES)`, so kernels using it
//! round-trip exactly. `std(a, AXES)` prints as `sqrt(var(a, AXES))`, and a
//! `repeat` prints as its unrolled statements, with the generated names
//! (`v_1`, `v_2`, ...) of the values it binds.

use crate::dtype::Rounding;
use crate::kernel::*;
use std::collections::HashSet;
use std::fmt::{self, Write};

/// Deepest expression printed inline before a temporary name is introduced.
const MAX_INLINE: u32 = 64;

// Precedence levels, loosest first; mirrors the parser.
const CMP: u8 = 1;
const ADD: u8 = 2;
const MUL: u8 = 3;
const UNARY: u8 = 4;
const PRIMARY: u8 = 6;

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        Printer::new(self).kernel(&mut out);
        f.write_str(&out)
    }
}

struct Printer<'k> {
    k: &'k Kernel,
    /// The name by which each node is referred to, once it has one.
    names: Vec<Option<String>>,
    /// Nodes that must be named before use (shared or too deep).
    want_name: Vec<bool>,
    /// For a node printed as `var(a, AXES)`: `a`.
    var_of: Vec<Option<ValueId>>,
    taken: HashSet<String>,
}

impl<'k> Printer<'k> {
    fn new(k: &'k Kernel) -> Self {
        let n = k.nodes.len();
        let mut uses = vec![0u32; n];
        for (_, node) in k.nodes.iter() {
            for o in node.op.operands() {
                uses[o.index()] += 1;
            }
        }
        let mut let_named = vec![false; n];
        for s in &k.stmts {
            match *s {
                Stmt::Let { value, .. } => let_named[value.index()] = true,
                Stmt::Store { value, .. } => uses[value.index()] += 1,
            }
        }
        let var_of = var_patterns(k, &uses, &let_named);
        let mut inner = vec![false; n];
        for (r, a) in var_of.iter().enumerate() {
            if let Some(a) = a {
                // The inner mean, difference and square are printed inside
                // `var(...)`, and `a` is written once there.
                inner[r - 3..r].fill(true);
                uses[a.index()] -= 1;
            }
        }
        let mut want_name = vec![false; n];
        let mut depth = vec![0u32; n];
        for (id, node) in k.nodes.iter() {
            let i = id.index();
            let ops: Vec<ValueId> = match var_of[i] {
                Some(a) => vec![a],
                None => node.op.operands().collect(),
            };
            let d = 1 + ops
                .into_iter()
                .map(|o| if want_name[o.index()] || let_named[o.index()] { 0 } else { depth[o.index()] })
                .max()
                .unwrap_or(0);
            let leaf = matches!(node.op, Op::Const(_) | Op::Param(_) | Op::Load(_));
            want_name[i] = !let_named[i] && !leaf && !inner[i] && (uses[i] > 1 || d > MAX_INLINE);
            depth[i] = d;
        }
        let mut taken: HashSet<String> = HashSet::new();
        taken.extend(k.dims.iter().map(|(_, d)| d.name.clone()));
        taken.extend(k.tensors.iter().map(|(_, t)| t.name.clone()));
        taken.extend(k.params.iter().map(|(_, p)| p.name.clone()));
        for s in &k.stmts {
            if let Stmt::Let { name, .. } = s {
                taken.insert(name.clone());
            }
        }
        Printer { k, names: vec![None; n], want_name, var_of, taken }
    }

    fn kernel(&mut self, out: &mut String) {
        let k = self.k;
        let _ = writeln!(out, "kernel {} {{", k.name);
        if !k.dims.is_empty() {
            let names: Vec<&str> = k.dims.iter().map(|(_, d)| d.name.as_str()).collect();
            let _ = writeln!(out, "  dims {}", names.join(", "));
        }
        for (_, t) in k.tensors.iter() {
            let dims: Vec<&str> = t.dims.iter().map(|&d| k.dims[d].name.as_str()).collect();
            let _ = write!(out, "  {} {}: {}[{}]", t.role.keyword(), t.name, t.dtype.name(), dims.join(", "));
            if let Rounding::Stochastic(p) = t.rounding {
                let _ = write!(out, " stochastic({})", k.params[p].name);
            }
            out.push('\n');
        }
        for (_, p) in k.params.iter() {
            let _ = write!(out, "  param {}", p.name);
            if p.ty != ParamType::F32 {
                let _ = write!(out, ": {}", p.ty.name());
            }
            if let Some(v) = p.default {
                let _ = write!(out, " = {}", number(v));
            }
            out.push('\n');
        }
        if !k.stmts.is_empty() {
            out.push('\n');
        }
        for s in &k.stmts {
            let (target, value) = match s {
                Stmt::Let { name, value } => (name.as_str(), *value),
                Stmt::Store { tensor, value } => (k.tensors[*tensor].name.as_str(), *value),
            };
            self.temps(out, value);
            let mut rhs = String::new();
            match &self.names[value.index()] {
                Some(n) => rhs.push_str(n),
                None => self.expr(&mut rhs, value, 0, true),
            }
            let _ = writeln!(out, "  {target} = {rhs}");
            if let Stmt::Let { name, value } = s {
                if self.names[value.index()].is_none() {
                    self.names[value.index()] = Some(name.clone());
                }
            }
        }
        out.push_str("}\n");
    }

    /// Emits `_tN = ...` for every not-yet-named node under `root` that
    /// must be named, operands first (node order is a topological order).
    fn temps(&mut self, out: &mut String, root: ValueId) {
        let mut todo = vec![root];
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        while let Some(v) = todo.pop() {
            if !seen.insert(v) || self.names[v.index()].is_some() {
                continue;
            }
            if self.want_name[v.index()] {
                found.push(v);
            }
            match self.var_of[v.index()] {
                Some(a) => todo.push(a),
                None => todo.extend(self.k.nodes[v].op.operands()),
            }
        }
        found.sort();
        for v in found {
            let mut name = format!("_t{}", v.index());
            while self.taken.contains(&name) {
                name.push('_');
            }
            self.taken.insert(name.clone());
            let mut rhs = String::new();
            self.expr(&mut rhs, v, 0, true);
            let _ = writeln!(out, "  {name} = {rhs}");
            self.names[v.index()] = Some(name);
        }
    }

    fn axes(&self, out: &mut String, axes: AxisSet) {
        for d in axes.iter() {
            let _ = write!(out, ", {}", self.k.dims[d].name);
        }
    }

    /// Writes node `v` at a position that needs precedence `min`. `root`
    /// means print the definition even if `v` has a name.
    fn expr(&self, out: &mut String, v: ValueId, min: u8, root: bool) {
        if !root {
            if let Some(n) = &self.names[v.index()] {
                out.push_str(n);
                return;
            }
        }
        let k = self.k;
        let node = &k.nodes[v];
        let prec = match &node.op {
            Op::Const(c) if c.is_sign_negative() => UNARY,
            Op::Binary(Binary::Add | Binary::Sub, ..) => ADD,
            Op::Binary(Binary::Mul | Binary::Div, ..) => MUL,
            Op::Binary(Binary::Pow, ..) => PRIMARY - 1,
            Op::Compare(..) => CMP,
            Op::Unary(Unary::Neg, a) if !matches!(k.nodes[*a].op, Op::Const(_)) => UNARY,
            _ => PRIMARY,
        };
        let paren = prec < min;
        if paren {
            out.push('(');
        }
        match &node.op {
            Op::Const(c) => out.push_str(&number(*c)),
            Op::Param(p) => out.push_str(&k.params[*p].name),
            Op::Load(t) => out.push_str(&k.tensors[*t].name),
            Op::Unary(Unary::Neg, a) if prec == UNARY => {
                out.push('-');
                self.expr(out, *a, UNARY, false);
            }
            Op::Unary(u, a) => {
                let _ = write!(out, "{}(", u.name());
                self.expr(out, *a, 0, false);
                out.push(')');
            }
            Op::Binary(b @ (Binary::Min | Binary::Max), a, c) => {
                let _ = write!(out, "{}(", b.name());
                self.expr(out, *a, 0, false);
                out.push_str(", ");
                self.expr(out, *c, 0, false);
                out.push(')');
            }
            Op::Binary(b, a, c) => {
                // Left-associative except `^`, which is right-associative
                // and whose base must be a primary (`(-a)^2`).
                let (lp, rp) = match b {
                    Binary::Add | Binary::Sub => (ADD, MUL),
                    Binary::Mul | Binary::Div => (MUL, UNARY),
                    _ => (PRIMARY, UNARY),
                };
                self.expr(out, *a, lp, false);
                let _ = write!(out, " {} ", b.name());
                self.expr(out, *c, rp, false);
            }
            Op::Compare(c, a, b) => {
                self.expr(out, *a, ADD, false);
                let _ = write!(out, " {} ", c.name());
                self.expr(out, *b, ADD, false);
            }
            Op::Select(c, a, b) => {
                out.push_str("select(");
                self.expr(out, *c, 0, false);
                out.push_str(", ");
                self.expr(out, *a, 0, false);
                out.push_str(", ");
                self.expr(out, *b, 0, false);
                out.push(')');
            }
            Op::Reduce(_, _, axes) if self.var_of[v.index()].is_some() => {
                out.push_str("var(");
                self.expr(out, self.var_of[v.index()].unwrap_or(v), 0, false);
                self.axes(out, *axes);
                out.push(')');
            }
            Op::Reduce(r, a, axes) => {
                let _ = write!(out, "{}(", r.name());
                self.expr(out, *a, 0, false);
                self.axes(out, *axes);
                out.push(')');
            }
            Op::Count(axes) => {
                out.push_str("count(");
                let mut s = String::new();
                self.axes(&mut s, *axes);
                out.push_str(&s[2..]);
                out.push(')');
            }
            Op::Uniform(p, axes) => {
                let _ = write!(out, "uniform({}", k.params[*p].name);
                self.axes(out, *axes);
                out.push(')');
            }
        }
        if paren {
            out.push(')');
        }
    }
}

/// Finds the nodes the front end makes for `var(a, AXES)`: four
/// consecutive nodes `m = mean(a, AXES)`, `d = a - m`, `s = d * d`,
/// `mean(s, AXES)`, where `m`, `d` and `s` have no other use and no name.
/// Returns, per node, `a` if the node is the outer mean of such a shape.
fn var_patterns(k: &Kernel, uses: &[u32], let_named: &[bool]) -> Vec<Option<ValueId>> {
    let mut out = vec![None; k.nodes.len()];
    for (r, node) in k.nodes.iter() {
        let i = r.index();
        let Op::Reduce(Reduce::Mean, s, axes) = node.op else { continue };
        if i < 3 || s.index() != i - 1 {
            continue;
        }
        let (m, d) = (ValueId::from_raw(i as u32 - 3), ValueId::from_raw(i as u32 - 2));
        let Op::Binary(Binary::Mul, d1, d2) = k.nodes[s].op else { continue };
        let Op::Binary(Binary::Sub, a, m1) = k.nodes[d].op else { continue };
        let Op::Reduce(Reduce::Mean, a1, axes1) = k.nodes[m].op else { continue };
        let private = |v: ValueId, n: u32| uses[v.index()] == n && !let_named[v.index()];
        if d1 == d && d2 == d && m1 == m && a1 == a && axes1 == axes && private(m, 1) && private(d, 2) && private(s, 1)
        {
            out[i] = Some(a);
        }
    }
    out
}

/// Shortest text that parses back to exactly `v`.
fn number(v: f64) -> String {
    // `{:?}` is Rust's shortest round-trip form (`1e-5`, `0.999`, `1.0`).
    format!("{v:?}")
}
