//! Resolution: the syntax tree to a verified [`Kernel`], by driving the
//! [`KernelBuilder`] with source spans.
//!
//! This pass owns what only the text form can get wrong: names (unknown,
//! used before definition, of the wrong kind) and function-call shapes
//! (unknown function, argument counts, axis arguments). Typing and axis
//! rules are the builder's.

use crate::builder::{KernelBuilder, Symbol};
use crate::diag::{Diagnostic, Diagnostics};
use crate::kernel::*;
use crate::parser::{BinOp, Expr, ExprKind, File, Ident, Item};
use std::collections::HashMap;

/// Resolves a parsed file into a verified kernel.
pub fn resolve(file: &File) -> Result<Kernel, Diagnostics> {
    let mut b = KernelBuilder::new(&file.name.name);
    b.set_name_span(file.name.span);
    // Every name some statement binds, with its statement index, so a use
    // before that statement can be told apart from a name never defined.
    let mut later: HashMap<&str, usize> = HashMap::new();
    for (i, item) in file.items.iter().enumerate() {
        if let Item::Assign { target, .. } = item {
            later.entry(target.name.as_str()).or_insert(i);
        }
    }
    let mut r = Resolver { b, later };
    for item in &file.items {
        r.item(item);
    }
    r.b.finish()
}

struct Resolver<'a> {
    b: KernelBuilder,
    later: HashMap<&'a str, usize>,
}

const UNARY_FNS: [(&str, Unary); 8] = [
    ("neg", Unary::Neg),
    ("abs", Unary::Abs),
    ("sign", Unary::Sign),
    ("sqrt", Unary::Sqrt),
    ("rsqrt", Unary::Rsqrt),
    ("exp", Unary::Exp),
    ("log", Unary::Log),
    ("recip", Unary::Recip),
];

const ALL_FNS: &str = "sqrt rsqrt abs sign exp log neg recip pow min max select sum mean count uniform";

impl Resolver<'_> {
    fn item(&mut self, item: &Item) {
        match item {
            Item::Dims(names) => {
                for n in names {
                    self.b.at(n.span).dim(&n.name);
                }
            }
            Item::Tensor { role, name, dtype, dims, span } => {
                let dt = self.dtype(dtype);
                let ids: Vec<DimId> = dims.iter().filter_map(|d| self.dim(d)).collect();
                self.b.at(*span).tensor(&name.name, *role, dt.unwrap_or(DType::F32), &ids);
            }
            Item::Params(ps) => {
                for p in ps {
                    let ty = match &p.ty {
                        None => ParamType::F32,
                        Some(t) if t.name == "f32" => ParamType::F32,
                        Some(t) if t.name == "u32" => ParamType::U32,
                        Some(t) => {
                            self.b
                                .at(t.span)
                                .error(format!("unknown param type `{}`; expected `f32` or `u32`", t.name));
                            ParamType::F32
                        }
                    };
                    self.b.at(p.span).typed_param(&p.name.name, ty, p.default.map(|d| d.0));
                }
            }
            Item::Assign { target, value, span } => {
                let sym = self.b.lookup(&target.name);
                let v = self.expr(value);
                self.b.at(*span);
                match sym {
                    Some(Symbol::Tensor(t)) => self.b.store(t, v),
                    Some(Symbol::Param(_)) => self
                        .b
                        .at(target.span)
                        .error(format!("cannot assign `{}`: params are read-only scalars", target.name)),
                    Some(Symbol::Dim(_)) => {
                        self.b.at(target.span).error(format!("cannot assign `{}`: it is a dim", target.name))
                    }
                    Some(Symbol::Value(_)) | None => {
                        self.b.at(target.span);
                        self.b.let_(&target.name, v)
                    }
                }
            }
        }
    }

    fn dtype(&mut self, t: &Ident) -> Option<DType> {
        match t.name.as_str() {
            "f32" => Some(DType::F32),
            "bf16" | "f16" => {
                self.b.at(t.span).error(format!("`{}` storage is not supported yet; only `f32` tensors are", t.name));
                None
            }
            other => {
                self.b.at(t.span).error(format!("unknown element type `{other}`; expected `f32`"));
                None
            }
        }
    }

    /// Resolves a name that must be a dim.
    fn dim(&mut self, d: &Ident) -> Option<DimId> {
        match self.b.lookup(&d.name) {
            Some(Symbol::Dim(id)) => Some(id),
            Some(other) => {
                let kind = other.kind();
                self.b.at(d.span).error(format!("expected a dim, but `{}` is {kind}", d.name));
                None
            }
            None => {
                self.b.at(d.span).push_diagnostic(
                    Diagnostic::new(d.span, format!("unknown dim `{}`", d.name)).note("declare it with `dims`"),
                );
                None
            }
        }
    }

    /// Resolves call arguments that must all be dims.
    fn axes(&mut self, args: &[Expr]) -> Option<Vec<DimId>> {
        let mut out = Vec::new();
        let mut ok = true;
        for a in args {
            match &a.kind {
                ExprKind::Name(n) => match self.dim(&Ident { name: n.clone(), span: a.span }) {
                    Some(d) => out.push(d),
                    None => ok = false,
                },
                _ => {
                    self.b.at(a.span).error("expected a dim name as an axis");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn is_dim(&self, e: &Expr) -> bool {
        matches!(&e.kind, ExprKind::Name(n) if matches!(self.b.lookup(n), Some(Symbol::Dim(_))))
    }

    fn expr(&mut self, e: &Expr) -> ValueId {
        match &e.kind {
            ExprKind::Num(v) => self.b.at(e.span).constant(*v),
            ExprKind::Name(n) => self.name(n, e),
            ExprKind::Neg(a) => {
                let a = self.expr(a);
                self.b.at(e.span).neg(a)
            }
            ExprKind::Bin(op, l, r) => {
                let (l, r) = (self.expr(l), self.expr(r));
                self.b.at(e.span);
                match op {
                    BinOp::Add => self.b.add(l, r),
                    BinOp::Sub => self.b.sub(l, r),
                    BinOp::Mul => self.b.mul(l, r),
                    BinOp::Div => self.b.div(l, r),
                    BinOp::Pow => self.b.pow(l, r),
                    BinOp::Cmp(c) => self.b.compare(*c, l, r),
                }
            }
            ExprKind::Call(f, args) => self.call(f, args, e),
        }
    }

    fn poison(&mut self, e: &Expr) -> ValueId {
        // An always-failing builder call gives a poisoned value without a new
        // message: the error was already reported.
        self.b.at(e.span);
        let before = self.b.has_errors();
        debug_assert!(before);
        self.b.poison_value()
    }

    fn name(&mut self, n: &str, e: &Expr) -> ValueId {
        match self.b.lookup(n) {
            Some(Symbol::Value(v)) => v,
            Some(Symbol::Tensor(t)) => self.b.at(e.span).load(t),
            Some(Symbol::Param(p)) => self.b.at(e.span).param_value(p),
            Some(Symbol::Dim(_)) => {
                self.b.push_diagnostic(
                    Diagnostic::new(e.span, format!("`{n}` is a dim, not a value"))
                        .note(format!("use `count({n})` for its size")),
                );
                self.poison(e)
            }
            None if self.later.contains_key(n) => {
                self.b.push_diagnostic(
                    Diagnostic::new(e.span, format!("`{n}` is used before it is defined"))
                        .note("statements run in order, so a value cannot depend on itself or on a later one"),
                );
                self.poison(e)
            }
            None => {
                self.b.push_diagnostic(Diagnostic::new(e.span, format!("unknown name `{n}`")));
                self.poison(e)
            }
        }
    }

    fn arity(&mut self, f: &Ident, args: &[Expr], want: usize, e: &Expr) -> bool {
        if args.len() == want {
            return true;
        }
        let s = if want == 1 { "" } else { "s" };
        self.b.at(e.span).error(format!("`{}` takes {want} argument{s}, found {}", f.name, args.len()));
        false
    }

    fn call(&mut self, f: &Ident, args: &[Expr], e: &Expr) -> ValueId {
        let name = f.name.as_str();
        if let Some(&(_, op)) = UNARY_FNS.iter().find(|(n, _)| *n == name) {
            if !self.arity(f, args, 1, e) {
                return self.poison(e);
            }
            let a = self.expr(&args[0]);
            return self.b.at(e.span).unary(op, a);
        }
        let reduce = match name {
            "sum" => Some(Reduce::Sum),
            "mean" => Some(Reduce::Mean),
            "max" | "min" if args.len() >= 2 && args[1..].iter().all(|a| self.is_dim(a)) => {
                Some(if name == "max" { Reduce::Max } else { Reduce::Min })
            }
            _ => None,
        };
        if let Some(op) = reduce {
            if args.len() < 2 {
                self.b.at(e.span).error(format!("`{name}` needs a value and at least one axis, as in `{name}(x, D)`"));
                return self.poison(e);
            }
            let a = self.expr(&args[0]);
            let Some(axes) = self.axes(&args[1..]) else { return self.poison(e) };
            return self.b.at(e.span).reduce(op, a, &axes);
        }
        match name {
            "pow" | "min" | "max" => {
                if !self.arity(f, args, 2, e) {
                    return self.poison(e);
                }
                let (a, c) = (self.expr(&args[0]), self.expr(&args[1]));
                let op = match name {
                    "pow" => Binary::Pow,
                    "min" => Binary::Min,
                    _ => Binary::Max,
                };
                self.b.at(e.span).binary(op, a, c)
            }
            "select" => {
                if !self.arity(f, args, 3, e) {
                    return self.poison(e);
                }
                let (c, a, d) = (self.expr(&args[0]), self.expr(&args[1]), self.expr(&args[2]));
                self.b.at(e.span).select(c, a, d)
            }
            "count" => {
                let Some(axes) = self.axes(args) else { return self.poison(e) };
                self.b.at(e.span).count(&axes)
            }
            "uniform" => {
                if args.len() < 2 {
                    self.b
                        .at(e.span)
                        .error("`uniform` needs a seed param and at least one axis, as in `uniform(seed, N)`");
                    return self.poison(e);
                }
                let seed = match &args[0].kind {
                    ExprKind::Name(n) => match self.b.lookup(n) {
                        Some(Symbol::Param(p)) => Some(p),
                        Some(other) => {
                            let k = other.kind();
                            self.b
                                .at(args[0].span)
                                .error(format!("the seed of `uniform` must be a u32 param, but `{n}` is {k}"));
                            None
                        }
                        None => {
                            self.b.at(args[0].span).error(format!("unknown name `{n}`"));
                            None
                        }
                    },
                    _ => {
                        self.b.at(args[0].span).error("the seed of `uniform` must be the name of a u32 param");
                        None
                    }
                };
                let axes = self.axes(&args[1..]);
                match (seed, axes) {
                    (Some(s), Some(axes)) => self.b.at(e.span).uniform(s, &axes),
                    _ => self.poison(e),
                }
            }
            _ => {
                self.b.push_diagnostic(
                    Diagnostic::new(f.span, format!("unknown function `{name}`"))
                        .note(format!("the functions are: {ALL_FNS}")),
                );
                self.poison(e)
            }
        }
    }
}
