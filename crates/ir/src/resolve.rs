//! Resolution: the syntax tree to a verified [`Kernel`], by driving the
//! [`KernelBuilder`] with source spans.
//!
//! This pass owns what only the text form can get wrong: names (unknown,
//! used before definition, of the wrong kind), function-call shapes
//! (unknown function, argument counts, axis arguments), the front-end
//! sugar (`var`, `std`, `repeat`), and the warnings about the source
//! (unused names, `inout` reads after the store, reused random seeds).
//! Typing and axis rules are the builder's.

use crate::builder::{KernelBuilder, Symbol};
use crate::diag::{line_of, Diagnostic, Diagnostics};
use crate::dtype::DType;
use crate::hints::{spelling, ALL_FNS};
use crate::kernel::*;
use crate::parser::{BinOp, Expr, ExprKind, File, Ident, Item};
use crate::span::Span;
use std::collections::{HashMap, HashSet};

/// Resolves a parsed file into a verified kernel and the warnings about
/// its source (computed only when there is no error).
pub fn resolve(file: &File, src: &str) -> Result<(Kernel, Vec<Diagnostic>), Diagnostics> {
    let mut b = KernelBuilder::new(&file.name.name);
    b.set_name_span(file.name.span);
    // Every name some statement binds, so a use before that statement can
    // be told apart from a name never defined.
    let mut later = HashSet::new();
    let mut taken = HashSet::new();
    taken.insert(file.name.name.clone());
    for item in &file.items {
        targets(item, &mut later);
        idents(item, &mut taken);
    }
    let mut r = Resolver {
        b,
        src,
        later,
        taken,
        versions: HashMap::new(),
        bindings: Vec::new(),
        scope: HashMap::new(),
        bind_at: HashMap::new(),
        stored: HashMap::new(),
        warned_reads: HashSet::new(),
        warnings: Vec::new(),
        draws: Vec::new(),
        repeat: None,
        stochastic: Vec::new(),
    };
    for item in &file.items {
        r.item(item);
    }
    // After every declaration, so the seed param may come later.
    for (t, seed, typed) in std::mem::take(&mut r.stochastic) {
        match r.b.lookup(&seed.name) {
            Some(Symbol::Param(p)) => {
                r.mark_used(&seed.name);
                if typed {
                    r.b.at(seed.span).stochastic(t, p);
                }
            }
            Some(other) => {
                let k = other.kind();
                r.b.at(seed.span)
                    .error(format!("the seed of `stochastic` must be a u32 param, but `{}` is {k}", seed.name));
            }
            None => {
                r.b.at(seed.span).error(format!("unknown name `{}`", seed.name));
            }
        }
    }
    let Resolver { b, bindings, mut warnings, draws, .. } = r;
    let k = b.finish()?;
    unused_warnings(&bindings, src, &mut warnings);
    seed_warnings(&k, &draws, src, &mut warnings);
    warnings.sort_by_key(|d| d.span.lo);
    Ok((k, warnings))
}

/// Names assigned by `item` (and inside it, for `repeat`).
fn targets<'a>(item: &'a Item, out: &mut HashSet<&'a str>) {
    match item {
        Item::Assign { target, .. } => {
            out.insert(target.name.as_str());
        }
        Item::Repeat { body, .. } => body.iter().for_each(|i| targets(i, out)),
        _ => {}
    }
}

/// Every identifier written in `item`, so generated names avoid them.
fn idents(item: &Item, out: &mut HashSet<String>) {
    fn expr(e: &Expr, out: &mut HashSet<String>) {
        match &e.kind {
            ExprKind::Num(_) => {}
            ExprKind::Name(n) => {
                out.insert(n.clone());
            }
            ExprKind::Neg(a) => expr(a, out),
            ExprKind::Bin(_, a, b) => {
                expr(a, out);
                expr(b, out);
            }
            ExprKind::Call(f, args) => {
                out.insert(f.name.clone());
                args.iter().for_each(|a| expr(a, out));
            }
        }
    }
    match item {
        Item::Dims(ds) => out.extend(ds.iter().map(|d| d.name.clone())),
        Item::Tensor { name, dims, .. } => {
            out.insert(name.name.clone());
            out.extend(dims.iter().map(|d| d.name.clone()));
        }
        Item::Params(ps) => out.extend(ps.iter().map(|p| p.name.name.clone())),
        Item::Assign { target, value, .. } => {
            out.insert(target.name.clone());
            expr(value, out);
        }
        Item::Repeat { body, .. } => body.iter().for_each(|i| idents(i, out)),
    }
}

/// What a source name was bound as, for the unused-name warnings.
#[derive(Clone, Copy, PartialEq)]
enum BindKind {
    Value,
    Param,
    InTensor,
    /// Written tensors and dims: never warned about.
    Other,
}

struct Binding {
    name: String,
    span: Span,
    kind: BindKind,
    used: bool,
    /// The header of a `repeat` that rebound the name while this binding
    /// was still unread.
    rebound_in: Option<Span>,
}

/// The `repeat` being expanded.
struct RepeatCtx {
    count: u32,
    header: Span,
    iter: u32,
    /// Names assigned in the body.
    targets: HashSet<String>,
}

/// A `uniform` draw: its seed, where it was written, and the `repeat`
/// (count, header) around it.
struct Draw {
    seed: ParamId,
    span: Span,
    repeat: Option<(u32, Span)>,
}

struct Resolver<'a> {
    b: KernelBuilder,
    src: &'a str,
    later: HashSet<&'a str>,
    /// Every identifier of the source, plus generated names.
    taken: HashSet<String>,
    /// Last generated version number per source name.
    versions: HashMap<String, u32>,
    bindings: Vec<Binding>,
    /// Source name to its current binding.
    scope: HashMap<String, usize>,
    /// A value binding by the span of its target, so the iterations of a
    /// `repeat` share one binding per source statement.
    bind_at: HashMap<(u32, u32), usize>,
    /// Stored tensors: the span of the storing statement and the text of
    /// its value.
    stored: HashMap<TensorId, (Span, Option<String>)>,
    warned_reads: HashSet<(u32, u32)>,
    warnings: Vec<Diagnostic>,
    draws: Vec<Draw>,
    repeat: Option<RepeatCtx>,
    /// `stochastic(SEED)` declarations, resolved after every declaration
    /// (tensor, seed name, whether the dtype was valid).
    stochastic: Vec<(TensorId, Ident, bool)>,
}

const UNARY_FNS: [(&str, Unary); 11] = [
    ("neg", Unary::Neg),
    ("abs", Unary::Abs),
    ("sign", Unary::Sign),
    ("sqrt", Unary::Sqrt),
    ("rsqrt", Unary::Rsqrt),
    ("exp", Unary::Exp),
    ("log", Unary::Log),
    ("recip", Unary::Recip),
    ("tanh", Unary::Tanh),
    ("sigmoid", Unary::Sigmoid),
    ("erf", Unary::Erf),
];

/// Longest source text quoted in a suggestion.
const MAX_QUOTE: usize = 50;

impl Resolver<'_> {
    /// The source text of `span`, if short and on one line.
    fn quote(&self, span: Span) -> Option<String> {
        let t = self.src.get(span.lo as usize..span.hi as usize)?;
        (t.len() <= MAX_QUOTE && !t.contains('\n')).then(|| t.to_string())
    }

    /// A name not written anywhere in the source: `base` followed by the
    /// first of `suffixes` that is free, or a numbered one.
    fn suggest(&self, base: &str, suffixes: &[&str]) -> String {
        for s in suffixes {
            let n = format!("{base}{s}");
            if !self.taken.contains(&n) {
                return n;
            }
        }
        (2..).map(|i| format!("{base}_{i}")).find(|n| !self.taken.contains(n)).unwrap_or_default()
    }

    /// A fresh kernel-level name for the next version of `name` in a
    /// `repeat`: `name_1`, `name_2`, ... skipping names in use.
    fn version(&mut self, name: &str) -> String {
        let mut n = self.versions.get(name).copied().unwrap_or(0);
        loop {
            n += 1;
            let cand = format!("{name}_{n}");
            if self.taken.insert(cand.clone()) {
                self.versions.insert(name.to_string(), n);
                return cand;
            }
        }
    }

    fn declare(&mut self, name: &Ident, kind: BindKind) {
        self.bindings.push(Binding { name: name.name.clone(), span: name.span, kind, used: false, rebound_in: None });
        self.scope.insert(name.name.clone(), self.bindings.len() - 1);
    }

    /// Records that the value statement with target `t` binds `t.name`.
    fn bind_value(&mut self, t: &Ident) {
        if let (Some(r), Some(&old)) = (&self.repeat, self.scope.get(&t.name)) {
            let b = &mut self.bindings[old];
            if !b.used && b.rebound_in.is_none() && b.span != t.span {
                b.rebound_in = Some(r.header);
            }
        }
        let key = (t.span.lo, t.span.hi);
        let i = match self.bind_at.get(&key) {
            Some(&i) => i,
            None => {
                self.bindings.push(Binding {
                    name: t.name.clone(),
                    span: t.span,
                    kind: BindKind::Value,
                    used: false,
                    rebound_in: None,
                });
                self.bind_at.insert(key, self.bindings.len() - 1);
                self.bindings.len() - 1
            }
        };
        self.scope.insert(t.name.clone(), i);
    }

    fn mark_used(&mut self, name: &str) {
        if let Some(&i) = self.scope.get(name) {
            self.bindings[i].used = true;
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Dims(names) => {
                for n in names {
                    self.b.at(n.span).dim(&n.name);
                }
            }
            Item::Tensor { role, name, dtype, dims, stochastic, span } => {
                let dt = self.dtype(dtype);
                let ids: Vec<DimId> = dims.iter().filter_map(|d| self.dim(d)).collect();
                let t = self.b.at(*span).tensor(&name.name, *role, dt.unwrap_or(DType::F32), &ids);
                if let Some(seed) = stochastic {
                    self.stochastic.push((t, seed.clone(), dt.is_some()));
                }
                self.declare(name, if *role == Role::In { BindKind::InTensor } else { BindKind::Other });
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
                    self.declare(&p.name, BindKind::Param);
                }
            }
            Item::Assign { target, value, span } => self.assign(target, value, *span),
            Item::Repeat { count, header, body } => self.repeat(*count, *header, body),
        }
    }

    fn assign(&mut self, target: &Ident, value: &Expr, span: Span) {
        let sym = self.b.lookup(&target.name);
        let v = self.expr(value);
        self.b.at(span);
        match sym {
            Some(Symbol::Tensor(t)) if self.repeat.is_some() && self.b.kernel().tensors[t].role.is_written() => {
                let tensor = &self.b.kernel().tensors[t];
                let (n, role) = (tensor.name.clone(), tensor.role);
                let m = self.suggest(&n, &["1", "_new"]);
                let help = if role == Role::InOut {
                    format!(
                        "carry the value in a name: `{m} = {n}` before the loop, update `{m}` in the body, \
                         and store `{n} = {m}` after it"
                    )
                } else {
                    format!("bind the value to a name in the body (`{m} = ...`) and store `{n} = {m}` after the loop")
                };
                self.b.push_diagnostic(
                    Diagnostic::new(
                        span,
                        format!(
                            "cannot assign `{n}` inside `repeat`: an `{}` tensor is stored exactly once",
                            role.keyword()
                        ),
                    )
                    .help(help),
                );
                // Count it as stored, so "never assigned" does not follow.
                if !self.stored.contains_key(&t) {
                    let p = self.b.poison_value();
                    self.b.store(t, p);
                    self.stored.insert(t, (span, None));
                }
            }
            Some(Symbol::Tensor(t)) => {
                self.b.store(t, v);
                let text = self.quote(value.span);
                self.stored.entry(t).or_insert((span, text));
            }
            Some(Symbol::Param(_)) => {
                self.b.at(target.span).error(format!("cannot assign `{}`: params are read-only scalars", target.name))
            }
            Some(Symbol::Dim(_)) => {
                self.b.at(target.span).error(format!("cannot assign `{}`: it is a dim", target.name))
            }
            Some(Symbol::Value(_)) | None if self.repeat.is_some() => {
                // Inside `repeat`, an assignment makes a new version of the
                // name: the kernel gets a fresh `Let`, the source name
                // points at it from here on.
                let kname = self.version(&target.name);
                self.b.at(target.span).let_(&kname, v);
                self.b.rebind(&target.name, v);
                self.bind_value(target);
            }
            Some(Symbol::Value(_)) | None => {
                self.b.at(target.span);
                self.b.let_(&target.name, v);
                self.bind_value(target);
            }
        }
    }

    /// Unrolls `repeat count { body }`: the body's statements run `count`
    /// times; each assignment rebinds its name, so a name bound before the
    /// loop is carried from one iteration to the next.
    fn repeat(&mut self, count: u32, header: Span, body: &[Item]) {
        if self.repeat.is_some() {
            // The parser reports nested loops; nothing to expand.
            return;
        }
        let mut names = HashSet::new();
        body.iter().for_each(|i| targets(i, &mut names));
        let targets: HashSet<String> = names.into_iter().map(str::to_string).collect();
        let mut carried: Vec<(String, ValueId)> = targets
            .iter()
            .filter_map(|n| match self.b.lookup(n) {
                Some(Symbol::Value(v)) => Some((n.clone(), v)),
                _ => None,
            })
            .collect();
        carried.sort();
        self.repeat = Some(RepeatCtx { count, header, iter: 0, targets: targets.clone() });
        for iter in 1..=count {
            if let Some(r) = self.repeat.as_mut() {
                r.iter = iter;
            }
            let at_start: Vec<Option<ValueId>> = carried
                .iter()
                .map(|(n, _)| match self.b.lookup(n) {
                    Some(Symbol::Value(v)) => Some(v),
                    _ => None,
                })
                .collect();
            let before = self.b.error_count();
            for item in body {
                self.item(item);
            }
            if self.b.error_count() == before {
                continue;
            }
            if iter > 1 {
                let note = self.iteration_note(iter, count, header, &carried, &at_start);
                for d in self.b.errors_since(before) {
                    d.notes.push(note.clone());
                }
            }
            // Later iterations would repeat these errors; stop, and make the
            // body's names unusable so later statements stay quiet.
            for n in &targets {
                if matches!(self.b.lookup(n), Some(Symbol::Value(_)) | None) {
                    let p = self.b.poison_value();
                    self.b.rebind(n, p);
                }
            }
            break;
        }
        self.repeat = None;
    }

    /// The note on an error that first shows in iteration `iter` (> 1):
    /// only carried values differ from iteration 1, so name the ones whose
    /// axes or type changed.
    fn iteration_note(
        &self,
        iter: u32,
        count: u32,
        header: Span,
        carried: &[(String, ValueId)],
        at_start: &[Option<ValueId>],
    ) -> String {
        let k = self.b.kernel();
        let describe = |v: ValueId| {
            let n = &k.nodes[v];
            let axes = format!("{{{}}}", k.axis_names(n.axes));
            if n.ty == ValueType::Bool {
                format!("bool {axes}")
            } else {
                axes
            }
        };
        let mut changed = Vec::new();
        for ((name, v0), v) in carried.iter().zip(at_start) {
            let Some(v) = *v else { continue };
            if k.nodes.get(v).is_none() || k.nodes.get(*v0).is_none() {
                continue;
            }
            let (a, b) = (describe(*v0), describe(v));
            if a != b {
                changed.push(format!("`{name}` from {a} to {b}"));
            }
        }
        let line = line_of(self.src, header.lo);
        let mut note = format!("in iteration {iter} of {count} of the `repeat` on line {line}");
        if !changed.is_empty() {
            let prev = iter - 1;
            let which = if prev == 1 { "iteration 1".to_string() } else { format!("iterations 1 to {prev}") };
            note.push_str(&format!("; {which} changed {}", changed.join(", ")));
        }
        note
    }

    fn dtype(&mut self, t: &Ident) -> Option<DType> {
        if let Some(d) = DType::from_name(&t.name) {
            return Some(d);
        }
        let msg = match t.name.as_str() {
            "u32" => "`u32` is a param type, not a tensor element type; expected `f32`, `bf16` or `f16`".to_string(),
            other => format!("unknown element type `{other}`; expected `f32`, `bf16` or `f16`"),
        };
        self.b.at(t.span).error(msg);
        None
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
            Some(Symbol::Value(v)) => {
                self.mark_used(n);
                v
            }
            Some(Symbol::Tensor(t)) => {
                self.mark_used(n);
                self.read_after_store(t, n, e.span);
                self.b.at(e.span).load(t)
            }
            Some(Symbol::Param(p)) => {
                self.mark_used(n);
                self.b.at(e.span).param_value(p)
            }
            Some(Symbol::Dim(_)) => {
                self.b.push_diagnostic(
                    Diagnostic::new(e.span, format!("`{n}` is a dim, not a value"))
                        .note(format!("use `count({n})` for its size")),
                );
                self.poison(e)
            }
            None if self.later.contains(n) => {
                let mut d = Diagnostic::new(e.span, format!("`{n}` is used before it is defined"))
                    .note("statements run in order, so a value cannot depend on itself or on a later one");
                if self.repeat.as_ref().is_some_and(|r| r.targets.contains(n)) {
                    d = d.help(format!(
                        "a name first bound inside `repeat` does not carry over between iterations; \
                         bind `{n}` before the loop to carry it"
                    ));
                }
                self.b.push_diagnostic(d);
                self.poison(e)
            }
            None => {
                self.b.push_diagnostic(Diagnostic::new(e.span, format!("unknown name `{n}`")));
                self.poison(e)
            }
        }
    }

    /// Warns about a read of an `inout` tensor after the statement that
    /// stores it: the read sees the entry value, not the stored one.
    fn read_after_store(&mut self, t: TensorId, n: &str, at: Span) {
        if self.b.kernel().tensors.get(t).map(|t| t.role) != Some(Role::InOut) {
            return;
        }
        let Some((store, text)) = self.stored.get(&t).cloned() else { return };
        if !self.warned_reads.insert((at.lo, at.hi)) {
            return;
        }
        let line = line_of(self.src, store.lo);
        let fresh = self.suggest(n, &["1", "_new"]);
        let entry = self.suggest(n, &["0", "_old"]);
        let rhs = text.unwrap_or_else(|| "...".into());
        self.warnings.push(
            Diagnostic::warning(at, format!("`{n}` is read after it is stored (line {line}), but this read sees its entry value"))
                .note("every read of an `inout` tensor sees its value at kernel entry; the store does not change later reads")
                .help(format!("to use the new value, bind it to a name: `{fresh} = {rhs}`, then `{n} = {fresh}`, and read `{fresh}` here"))
                .help(format!("to use the entry value on purpose, name it before the store (`{entry} = {n}`) and read `{entry}` here")),
        );
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
            "var" | "std" => {
                if args.len() < 2 {
                    self.b
                        .at(e.span)
                        .error(format!("`{name}` needs a value and at least one axis, as in `{name}(x, D)`"));
                    return self.poison(e);
                }
                let a = self.expr(&args[0]);
                let Some(axes) = self.axes(&args[1..]) else { return self.poison(e) };
                // Two-pass biased variance, the inner mean computed once:
                // mean((a - mean(a)) * (a - mean(a))). The printer knows
                // this shape and prints it back as `var(a, AXES)`.
                self.b.at(e.span);
                let m = self.b.reduce(Reduce::Mean, a, &axes);
                let d = self.b.sub(a, m);
                let sq = self.b.mul(d, d);
                let var = self.b.reduce(Reduce::Mean, sq, &axes);
                if name == "std" {
                    self.b.sqrt(var)
                } else {
                    var
                }
            }
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
            "uniform" => self.uniform(args, e),
            _ => {
                let d = Diagnostic::new(f.span, format!("unknown function `{name}`"));
                let d = match spelling(name) {
                    Some(how) => d.help(how),
                    None => d.note(format!("the functions are: {ALL_FNS}")),
                };
                self.b.push_diagnostic(d);
                self.poison(e)
            }
        }
    }

    fn uniform(&mut self, args: &[Expr], e: &Expr) -> ValueId {
        if args.len() < 2 {
            self.b.at(e.span).error("`uniform` needs a seed param and at least one axis, as in `uniform(seed, N)`");
            return self.poison(e);
        }
        let seed = match &args[0].kind {
            ExprKind::Name(n) => match self.b.lookup(n) {
                Some(Symbol::Param(p)) => {
                    self.mark_used(n);
                    Some(p)
                }
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
            (Some(s), Some(axes)) => {
                let v = self.b.at(e.span).uniform(s, &axes);
                if !self.b.is_poisoned(v) {
                    let repeat = self.repeat.as_ref().map(|r| (r.count, r.header));
                    if self.repeat.as_ref().is_none_or(|r| r.iter == 1) {
                        self.draws.push(Draw { seed: s, span: e.span, repeat });
                    }
                }
                v
            }
            _ => self.poison(e),
        }
    }
}

/// Unused values, params and `in` tensors; a leading `_` silences them.
fn unused_warnings(bindings: &[Binding], src: &str, out: &mut Vec<Diagnostic>) {
    for b in bindings {
        if b.used || b.name.starts_with('_') {
            continue;
        }
        let n = &b.name;
        let d = match b.kind {
            BindKind::Value => {
                let mut d = Diagnostic::warning(b.span, format!("value `{n}` is never used"));
                if let Some(h) = b.rebound_in {
                    let line = line_of(src, h.lo);
                    d = d.note(format!("the `repeat` on line {line} assigns `{n}` before reading it"));
                }
                d.help(format!("remove the statement, or name the value `_{n}` if it is meant to be unused"))
            }
            BindKind::Param => Diagnostic::warning(b.span, format!("param `{n}` is never used")).help(format!(
                "remove it, or name it `_{n}` if the kernel's signature needs it (callers bind params by name)"
            )),
            BindKind::InTensor => {
                Diagnostic::warning(b.span, format!("`in` tensor `{n}` is never read")).help(format!(
                    "remove it, or name it `_{n}` if the kernel's signature needs it (callers bind tensors by name)"
                ))
            }
            BindKind::Other => continue,
        };
        out.push(d);
    }
}

/// `uniform` is a pure function of its seed and the element index: two
/// draws with one seed, or one draw inside `repeat`, repeat their numbers.
fn seed_warnings(k: &Kernel, draws: &[Draw], src: &str, out: &mut Vec<Diagnostic>) {
    let pure = "`uniform(seed, AXES)` is a pure function of the seed and each element's index, \
                unlike `torch.rand`, which advances a generator";
    let mut first: HashMap<ParamId, Span> = HashMap::new();
    for d in draws {
        let seed = &k.params[d.seed].name;
        match first.get(&d.seed) {
            Some(&f) if f != d.span => {
                let line = line_of(src, f.lo);
                out.push(
                    Diagnostic::warning(
                        d.span,
                        format!("this `uniform` reuses the seed `{seed}` of the draw on line {line}, so the two draws repeat the same numbers"),
                    )
                    .note(pure)
                    .help(format!("to reuse the same numbers, bind the first draw to a name; for independent numbers, declare another `u32` param (e.g. `{seed}2`) for this draw")),
                );
            }
            Some(_) => {}
            None => {
                first.insert(d.seed, d.span);
            }
        }
        if let Some((count, header)) = d.repeat {
            if count > 1 {
                let line = line_of(src, header.lo);
                out.push(
                    Diagnostic::warning(
                        d.span,
                        format!("this `uniform` draws the same numbers in each of the {count} iterations of the `repeat` on line {line}"),
                    )
                    .note(pure)
                    .help("if that is meant, draw once before the loop (`u = uniform(...)`) and use `u` in the body"),
                );
            }
        }
    }
}
