//! Parser: tokens to a syntax tree ([`File`]), with error recovery per
//! statement so one run reports several mistakes.
//!
//! The syntax tree is untyped and unresolved; [`crate::resolve`] turns it
//! into a [`Kernel`](crate::Kernel). Expression trees are capped at
//! [`MAX_DEPTH`] levels, which bounds every recursive walk over them (here,
//! in resolution and in `Drop`), so no input can overflow the stack.
//! Statement blocks nest at most two deep (the kernel body and one `repeat`
//! body): a nested `repeat` is parsed, to stay in step, but reported.

use crate::diag::{line_of, Diagnostic, Diagnostics};
use crate::kernel::{Cmp, Role};
use crate::lexer::{lex, Tok, Token};
use crate::span::Span;

/// Deepest expression tree accepted.
pub const MAX_DEPTH: u32 = 256;
/// Errors reported before giving up on a file (random bytes would
/// otherwise produce one per byte).
const MAX_ERRORS: usize = 20;
/// Largest `repeat` count: the body is unrolled that many times.
pub const MAX_REPEAT: u32 = 64;

/// A name and where it was written.
#[derive(Clone, Debug)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// Binary operators of the surface syntax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Cmp(Cmp),
}

/// An expression.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    depth: u32,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Num(f64),
    Name(String),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Ident, Vec<Expr>),
}

/// A `param` entry.
#[derive(Clone, Debug)]
pub struct ParamDecl {
    pub name: Ident,
    pub ty: Option<Ident>,
    pub default: Option<(f64, Span)>,
    pub span: Span,
}

/// One line of a kernel body.
#[derive(Clone, Debug)]
pub enum Item {
    Dims(Vec<Ident>),
    Tensor {
        role: Role,
        name: Ident,
        dtype: Ident,
        dims: Vec<Ident>,
        /// `stochastic(SEED)` after the dims: the seed param's name.
        stochastic: Option<Ident>,
        span: Span,
    },
    Params(Vec<ParamDecl>),
    Assign {
        target: Ident,
        value: Expr,
        span: Span,
    },
    /// `repeat COUNT { body }`; `header` covers `repeat COUNT`.
    Repeat {
        count: u32,
        header: Span,
        body: Vec<Item>,
    },
}

/// A parsed file: one kernel.
#[derive(Clone, Debug)]
pub struct File {
    pub name: Ident,
    pub items: Vec<Item>,
}

/// Parses `src` into a syntax tree.
pub fn parse(src: &str) -> Result<File, Diagnostics> {
    let mut errors = Vec::new();
    if src.len() > u32::MAX as usize / 2 {
        return Err(Diagnostics(vec![Diagnostic::new(Span::DUMMY, "source is larger than 2 GiB")]));
    }
    let toks = lex(src, &mut errors);
    let lex_errors = errors.iter().map(|d| d.span.lo).collect();
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        errors,
        nest: 0,
        lex_errors,
        stmt_start: 0,
        eof_reported: false,
        last_repeat: None,
    };
    let file = p.file();
    if p.errors.is_empty() {
        Ok(file.expect("a file without errors has a kernel"))
    } else {
        p.errors.sort_by_key(|d| d.span.lo);
        p.errors.truncate(MAX_ERRORS);
        Err(Diagnostics(p.errors))
    }
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    pos: usize,
    errors: Vec<Diagnostic>,
    /// Current recursion depth of the expression parser.
    nest: u32,
    /// Where the lexer reported errors: a parse error in the same statement
    /// is a consequence of the skipped bad token, so it is not reported.
    lex_errors: Vec<u32>,
    /// Byte offset of the statement being parsed.
    stmt_start: u32,
    /// The "missing `}`" error was reported (by an inner block).
    eof_reported: bool,
    /// The last `repeat` parsed: its keyword and closing `}`.
    last_repeat: Option<(Span, Span)>,
}

/// Marker for "an error was reported; skip to the next statement".
struct Bail;
type PResult<T> = Result<T, Bail>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.pos + 1).map(|t| &t.tok)
    }
    /// The source text of `span`.
    fn text(&self, span: Span) -> &str {
        self.src.get(span.lo as usize..span.hi as usize).unwrap_or("")
    }
    fn span(&self) -> Span {
        self.toks[self.pos].span
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }
    fn err<T>(&mut self, span: Span, msg: impl Into<String>) -> PResult<T> {
        self.report(Diagnostic::new(span, msg))
    }
    /// Reports a prepared diagnostic (unless it follows a lexer error in
    /// the same statement) and bails.
    fn report<T>(&mut self, d: Diagnostic) -> PResult<T> {
        let follows_lex_error = self.lex_errors.iter().any(|&l| l >= self.stmt_start && l <= d.span.lo);
        if !follows_lex_error {
            self.errors.push(d);
        }
        Err(Bail)
    }
    fn expected<T>(&mut self, what: &str) -> PResult<T> {
        let found = self.peek().describe();
        self.err(self.span(), format!("expected {what}, found {found}"))
    }
    fn expect(&mut self, t: Tok, what: &str) -> PResult<Span> {
        if self.peek() == &t {
            Ok(self.bump().span)
        } else {
            self.expected(what)
        }
    }
    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => self.expected(what),
        }
    }
    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Tok::Newline | Tok::Semi) {
            self.bump();
        }
    }
    /// Skips to the end of the current statement after an error.
    fn recover(&mut self) {
        while !matches!(self.peek(), Tok::Newline | Tok::Semi | Tok::RBrace | Tok::Eof) {
            self.bump();
        }
    }
    fn too_many_errors(&self) -> bool {
        self.errors.len() >= MAX_ERRORS
    }

    fn file(&mut self) -> Option<File> {
        self.skip_newlines();
        match self.peek() {
            Tok::Ident(k) if k == "kernel" => {
                self.bump();
            }
            Tok::Eof => {
                let _ = self.err::<()>(self.span(), "no kernel found: expected `kernel NAME { ... }`");
                return None;
            }
            _ => {
                let _ = self.expected::<()>("`kernel NAME { ... }`");
                return None;
            }
        }
        let name = match self.ident("a kernel name") {
            Ok(n) => n,
            Err(Bail) => return None,
        };
        if self.expect(Tok::LBrace, "`{` after the kernel name").is_err() {
            return None;
        }
        let items = self.block(false)?;
        self.skip_newlines();
        match self.peek() {
            Tok::Eof => {}
            Tok::Ident(k) if k == "kernel" => {
                let _ = self.err::<()>(self.span(), "a file holds exactly one kernel; put this one in its own file");
            }
            _ => {
                let _ = self.expected::<()>("end of file after the kernel");
            }
        }
        Some(File { name, items })
    }

    /// Parses statements up to and including the closing `}`. None when
    /// the file ends first or there are too many errors.
    fn block(&mut self, in_repeat: bool) -> Option<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            if self.too_many_errors() {
                return None;
            }
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return Some(items);
                }
                Tok::Eof => {
                    if !self.eof_reported {
                        self.eof_reported = true;
                        let what = if in_repeat { "the `repeat` body" } else { "the kernel body" };
                        let mut d = Diagnostic::new(
                            self.span(),
                            format!("unexpected end of file: {what} is missing its closing `}}`"),
                        );
                        // A `}` forgotten inside: the kernel's `}` closed the loop.
                        let last_close = self.toks.iter().rev().find(|t| t.tok == Tok::RBrace).map(|t| t.span);
                        if let Some((kw, close)) = self.last_repeat.filter(|r| Some(r.1) == last_close && !in_repeat) {
                            d = d.note(format!(
                                "the `}}` on line {} closed the `repeat` on line {}; is that loop missing its `}}`?",
                                line_of(self.src, close.lo),
                                line_of(self.src, kw.lo)
                            ));
                        }
                        let _ = self.report::<()>(d);
                    }
                    return None;
                }
                _ => {}
            }
            match self.item(in_repeat) {
                Ok(item) => {
                    items.push(item);
                    if !matches!(self.peek(), Tok::Newline | Tok::Semi | Tok::RBrace) {
                        let _ = self.expected::<()>("end of line");
                        self.recover();
                    }
                }
                Err(Bail) => self.recover(),
            }
        }
    }

    fn item(&mut self, in_repeat: bool) -> PResult<Item> {
        let start = self.span();
        self.stmt_start = start.lo;
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => return self.expected("a declaration or `name = expression`"),
        };
        // `word = ...` is always an assignment, even if `word` is a keyword,
        // so the resolver can say why assigning it is wrong.
        if self.peek2() == Some(&Tok::Assign) {
            let target = self.ident("a name")?;
            self.bump();
            let value = self.expr()?;
            let span = start.to(value.span);
            return Ok(Item::Assign { target, value, span });
        }
        if word == "repeat" {
            return self.repeat(in_repeat);
        }
        let item = self.declaration(&word, start)?;
        if in_repeat {
            let span = match &item {
                Item::Tensor { span, .. } => *span,
                Item::Dims(ds) => start.to(ds.last().map_or(start, |d| d.span)),
                Item::Params(ps) => start.to(ps.last().map_or(start, |p| p.span)),
                _ => start,
            };
            self.errors.push(
                Diagnostic::new(span, "declarations cannot be inside `repeat`")
                    .help("move the declaration before the `repeat`"),
            );
        }
        Ok(item)
    }

    /// `repeat COUNT { ... }`, after the keyword has been seen.
    fn repeat(&mut self, nested: bool) -> PResult<Item> {
        let kw = self.bump().span;
        let bad_count = |found: &str| {
            format!("the count of `repeat` must be an integer literal from 1 to {MAX_REPEAT}, found {found}")
        };
        let mut count = 1;
        let mut header = kw;
        match self.peek().clone() {
            Tok::Number(v) => {
                let sp = self.bump().span;
                header = kw.to(sp);
                let text = self.text(sp).to_string();
                let integer = text.bytes().all(|b| b.is_ascii_digit() || b == b'_');
                if integer && (1.0..=MAX_REPEAT as f64).contains(&v) {
                    count = v as u32;
                } else {
                    let mut d = Diagnostic::new(sp, bad_count(&format!("`{text}`")));
                    if integer && v > MAX_REPEAT as f64 {
                        d = d.note("the body is unrolled once per iteration when the kernel is parsed");
                    }
                    self.errors.push(d);
                }
            }
            Tok::Ident(n) if n != "repeat" => {
                let sp = self.bump().span;
                header = kw.to(sp);
                self.errors.push(Diagnostic::new(sp, bad_count(&format!("`{n}`"))).note(
                    "the body is unrolled when the kernel is parsed, so the count is fixed in the text; a param or dim cannot set it",
                ));
            }
            Tok::LBrace => {
                let found = self.peek().describe();
                self.errors.push(Diagnostic::new(self.span(), bad_count(&found)));
            }
            _ => return self.expected(&format!("an iteration count (1 to {MAX_REPEAT}) after `repeat`")),
        }
        self.expect(Tok::LBrace, "`{` to open the `repeat` body")?;
        if nested {
            self.errors.push(
                Diagnostic::new(header, "`repeat` cannot be nested")
                    .help("unroll the inner loop by hand, or move it into its own `repeat` before or after this one"),
            );
        }
        let Some(body) = self.block(true) else { return Err(Bail) };
        self.last_repeat = Some((kw, self.toks[self.pos.saturating_sub(1)].span));
        Ok(Item::Repeat { count, header, body })
    }

    /// A declaration (`dims`, `param`, `in`, `out`, `inout`) starting with `word`.
    fn declaration(&mut self, word: &str, start: Span) -> PResult<Item> {
        let role = match word {
            "dims" => {
                self.bump();
                let mut dims = vec![self.ident("a dim name")?];
                while self.eat(&Tok::Comma) {
                    dims.push(self.ident("a dim name")?);
                }
                return Ok(Item::Dims(dims));
            }
            "param" => {
                self.bump();
                let mut ps = vec![self.param()?];
                while self.eat(&Tok::Comma) {
                    ps.push(self.param()?);
                }
                return Ok(Item::Params(ps));
            }
            "in" => Role::In,
            "out" => Role::Out,
            "inout" => Role::InOut,
            _ => {
                self.bump();
                return self.expected(&format!(
                    "`=` after `{word}` (or a declaration: `dims`, `in`, `out`, `inout`, `param`, or a `repeat` block)"
                ));
            }
        };
        self.bump();
        let name = self.ident("a tensor name")?;
        self.expect(Tok::Colon, "`:` and a type such as `f32[N, D]`")?;
        let dtype = self.ident("an element type such as `f32`")?;
        self.expect(Tok::LBracket, "`[` and the tensor's dims (`[]` for a scalar)")?;
        let mut dims = Vec::new();
        if !self.eat(&Tok::RBracket) {
            loop {
                dims.push(self.ident("a dim name")?);
                if self.eat(&Tok::RBracket) {
                    break;
                }
                self.expect(Tok::Comma, "`,` or `]`")?;
            }
        }
        let stochastic = if matches!(self.peek(), Tok::Ident(w) if w == "stochastic") {
            self.bump();
            self.expect(Tok::LParen, "`(` and the seed param, as in `stochastic(seed)`")?;
            let seed = self.ident("the name of a u32 param (the seed)")?;
            self.expect(Tok::RParen, "`)`")?;
            Some(seed)
        } else {
            None
        };
        let span = start.to(self.toks[self.pos.saturating_sub(1)].span);
        Ok(Item::Tensor { role, name, dtype, dims, stochastic, span })
    }

    fn param(&mut self) -> PResult<ParamDecl> {
        let name = self.ident("a param name")?;
        let mut span = name.span;
        let ty = if self.eat(&Tok::Colon) { Some(self.ident("a param type (`f32` or `u32`)")?) } else { None };
        let default = if self.eat(&Tok::Assign) {
            let neg = self.peek() == &Tok::Minus;
            let s0 = self.span();
            if neg {
                self.bump();
            }
            match self.peek().clone() {
                Tok::Number(v) => {
                    let s = s0.to(self.bump().span);
                    span = span.to(s);
                    Some((if neg { -v } else { v }, s))
                }
                _ => return self.expected("a number literal as the default"),
            }
        } else {
            None
        };
        if let Some(t) = &ty {
            span = span.to(t.span);
        }
        Ok(ParamDecl { name, ty, default, span })
    }

    fn mk(&mut self, kind: ExprKind, span: Span, depth: u32) -> PResult<Expr> {
        if depth > MAX_DEPTH {
            return self.err(
                span,
                format!("expression is nested too deeply (over {MAX_DEPTH} levels); split it into named steps"),
            );
        }
        Ok(Expr { kind, span, depth })
    }

    fn enter(&mut self) -> PResult<()> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            let s = self.span();
            return self.err(
                s,
                format!("expression is nested too deeply (over {MAX_DEPTH} levels); split it into named steps"),
            );
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.comparison();
        self.nest -= 1;
        r
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let lhs = self.additive()?;
        let Some(op) = cmp_op(self.peek()) else { return Ok(lhs) };
        self.bump();
        let rhs = self.additive()?;
        if cmp_op(self.peek()).is_some() {
            let s = self.span();
            return self.err(s, "comparisons cannot be chained; combine them with `select`");
        }
        let (span, depth) = (lhs.span.to(rhs.span), 1 + lhs.depth.max(rhs.depth));
        self.mk(ExprKind::Bin(BinOp::Cmp(op), Box::new(lhs), Box::new(rhs)), span, depth)
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.multiplicative()?;
            let (span, depth) = (lhs.span.to(rhs.span), 1 + lhs.depth.max(rhs.depth));
            lhs = self.mk(ExprKind::Bin(op, Box::new(lhs), Box::new(rhs)), span, depth)?;
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.unary()?;
            let (span, depth) = (lhs.span.to(rhs.span), 1 + lhs.depth.max(rhs.depth));
            lhs = self.mk(ExprKind::Bin(op, Box::new(lhs), Box::new(rhs)), span, depth)?;
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.peek() == &Tok::Minus {
            let s0 = self.bump().span;
            self.enter()?;
            let inner = self.unary();
            self.nest -= 1;
            let inner = inner?;
            let span = s0.to(inner.span);
            // `-3` is the literal -3, so printing a negative constant and
            // parsing it back gives the same kernel.
            if let ExprKind::Num(v) = inner.kind {
                return self.mk(ExprKind::Num(-v), span, 1);
            }
            let depth = 1 + inner.depth;
            return self.mk(ExprKind::Neg(Box::new(inner)), span, depth);
        }
        self.power()
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.primary()?;
        if self.peek() != &Tok::Caret {
            return Ok(base);
        }
        self.bump();
        self.enter()?;
        let exp = self.unary();
        self.nest -= 1;
        let exp = exp?;
        let (span, depth) = (base.span.to(exp.span), 1 + base.depth.max(exp.depth));
        self.mk(ExprKind::Bin(BinOp::Pow, Box::new(base), Box::new(exp)), span, depth)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let s0 = self.span();
        match self.peek().clone() {
            Tok::Number(v) => {
                self.bump();
                self.mk(ExprKind::Num(v), s0, 1)
            }
            Tok::Ident(name) => {
                self.bump();
                if self.peek() != &Tok::LParen {
                    return self.mk(ExprKind::Name(name), s0, 1);
                }
                self.bump();
                let mut args = Vec::new();
                if self.peek() != &Tok::RParen {
                    loop {
                        if matches!(self.peek(), Tok::Ident(_)) && self.peek2() == Some(&Tok::Assign) {
                            return self.keyword_args(&name, s0, &args);
                        }
                        args.push(self.expr()?);
                        if self.eat(&Tok::Comma) {
                            continue;
                        }
                        break;
                    }
                }
                let end = self.expect(Tok::RParen, "`,` or `)` in the argument list")?;
                let depth = 1 + args.iter().map(|a| a.depth).max().unwrap_or(0);
                self.mk(ExprKind::Call(Ident { name, span: s0 }, args), s0.to(end), depth)
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr()?;
                if self.peek() == &Tok::Comma {
                    let d = Diagnostic::new(self.span(), "expected `)`, found `,`: there are no tuples")
                        .help("a reduction lists its axes as separate arguments, as in `sum(x, N, D)`");
                    return self.report(d);
                }
                let end = self.expect(Tok::RParen, "`)`")?;
                let depth = inner.depth;
                self.mk(inner.kind, s0.to(end), depth)
            }
            Tok::Star if self.pos > 0 && self.toks[self.pos - 1].tok == Tok::Star => {
                let prev = self.toks[self.pos - 1].span;
                let d = Diagnostic::new(prev.to(s0), "`**` is not an operator")
                    .help("normjit writes powers as `x ^ 2` (or `pow(x, 2)`)");
                self.report(d)
            }
            _ => self.expected("an expression"),
        }
    }

    /// Reports PyTorch-style keyword arguments (`mean(x, dim=D)`), after the
    /// positional `args`, and skips to the end of the call.
    fn keyword_args<T>(&mut self, fname: &str, fspan: Span, args: &[Expr]) -> PResult<T> {
        let start = self.span();
        let mut end = start;
        // (keyword, names written in its value)
        let mut kws: Vec<(String, Vec<String>)> = Vec::new();
        let mut depth = 0u32;
        loop {
            match self.peek().clone() {
                Tok::Ident(k) if depth == 0 && self.peek2() == Some(&Tok::Assign) => {
                    self.bump();
                    end = self.bump().span;
                    kws.push((k, Vec::new()));
                    continue;
                }
                Tok::Ident(n) => {
                    if let Some(kw) = kws.last_mut() {
                        kw.1.push(n);
                    }
                }
                Tok::LParen | Tok::LBracket => depth += 1,
                Tok::RParen | Tok::RBracket if depth == 0 => break,
                Tok::RParen | Tok::RBracket => depth -= 1,
                Tok::Newline | Tok::Semi | Tok::RBrace | Tok::Eof => break,
                _ => {}
            }
            end = self.bump().span;
        }
        if self.peek() == &Tok::RParen {
            self.bump();
        }
        let span = start.to(end);
        let is_kw = |set: &[&str]| kws.iter().any(|(k, _)| set.contains(&k.as_str()));
        let axis_kw = ["dim", "dims", "axis", "axes"];
        let axes: Vec<String> =
            kws.iter().filter(|(k, _)| axis_kw.contains(&k.as_str())).flat_map(|k| k.1.clone()).collect();
        let first = kws.first().map_or("", |k| k.0.as_str());
        let known = crate::hints::is_function(fname);
        let arg0 = match args.first() {
            Some(a) => {
                let t = self.text(a.span);
                if t.len() > 40 || t.contains('\n') {
                    "...".to_string()
                } else {
                    t.to_string()
                }
            }
            None => "x".to_string(),
        };
        let keep = ["keepdim", "keepdims"];
        let biased = ["unbiased", "correction", "ddof"];
        let no_keepdim = "reductions remove the axes they reduce over, and values broadcast by axis name, \
                          so there is no `keepdim`: the result combines with values that have those axes as it is";
        let mut d = if !known {
            let d = Diagnostic::new(fspan, format!("unknown function `{fname}`"));
            let d = match crate::hints::spelling(fname) {
                Some(how) => d.help(how),
                None => d.note(format!("the functions are: {}", crate::hints::ALL_FNS)),
            };
            return self.report(d.note(format!("normjit has no keyword arguments (`{first}=`) either")));
        } else if is_kw(&axis_kw) {
            Diagnostic::new(span, format!("`{fname}` takes its axes as positional dim names, not `{first}=`"))
                .note(no_keepdim)
        } else if is_kw(&keep) {
            Diagnostic::new(span, format!("`{fname}` has no `keepdim`")).note(no_keepdim)
        } else if is_kw(&biased) && matches!(fname, "var" | "std") {
            Diagnostic::new(span, format!("`{fname}` takes no `{first}=`: it is always the biased variance"))
                .note("`var(x, AXES)` is `torch.var(x, AXES, unbiased=False)` (`correction=0`), as the norms use")
                .help("for the unbiased estimate, multiply by `count(AXES) / (count(AXES) - 1)`")
        } else {
            Diagnostic::new(span, format!("keyword argument `{first}=`: `{fname}` takes positional arguments only"))
        };
        if is_kw(&axis_kw) {
            let rest: Vec<&str> = args.iter().skip(1).map(|a| self.text(a.span)).collect();
            let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            all.extend(axes.iter().cloned());
            d = if axes.is_empty() {
                d.help(format!("name the dims: `{fname}({arg0}, D)`, with `D` a declared dim"))
            } else {
                d.help(format!("write `{fname}({arg0}, {})`", all.join(", ")))
            };
        } else if is_kw(&keep) {
            d = d.help("remove `keepdim=...`");
        }
        self.report(d)
    }
}

fn cmp_op(t: &Tok) -> Option<Cmp> {
    Some(match t {
        Tok::Lt => Cmp::Lt,
        Tok::Le => Cmp::Le,
        Tok::Gt => Cmp::Gt,
        Tok::Ge => Cmp::Ge,
        Tok::EqEq => Cmp::Eq,
        Tok::Ne => Cmp::Ne,
        _ => return None,
    })
}
