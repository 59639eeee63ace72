//! Parser: tokens to a syntax tree ([`File`]), with error recovery per
//! statement so one run reports several mistakes.
//!
//! The syntax tree is untyped and unresolved; [`crate::resolve`] turns it
//! into a [`Kernel`](crate::Kernel). Expression trees are capped at
//! [`MAX_DEPTH`] levels, which bounds every recursive walk over them (here,
//! in resolution and in `Drop`), so no input can overflow the stack.

use crate::diag::{Diagnostic, Diagnostics};
use crate::kernel::{Cmp, Role};
use crate::lexer::{lex, Tok, Token};
use crate::span::Span;

/// Deepest expression tree accepted.
pub const MAX_DEPTH: u32 = 256;
/// Errors reported before giving up on a file (random bytes would
/// otherwise produce one per byte).
const MAX_ERRORS: usize = 20;

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
    Tensor { role: Role, name: Ident, dtype: Ident, dims: Vec<Ident>, span: Span },
    Params(Vec<ParamDecl>),
    Assign { target: Ident, value: Expr, span: Span },
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
    let mut p = Parser { toks, pos: 0, errors, nest: 0, lex_errors, stmt_start: 0 };
    let file = p.file();
    if p.errors.is_empty() {
        Ok(file.expect("a file without errors has a kernel"))
    } else {
        p.errors.sort_by_key(|d| d.span.lo);
        p.errors.truncate(MAX_ERRORS);
        Err(Diagnostics(p.errors))
    }
}

struct Parser {
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
}

/// Marker for "an error was reported; skip to the next statement".
struct Bail;
type PResult<T> = Result<T, Bail>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
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
        let follows_lex_error = self.lex_errors.iter().any(|&l| l >= self.stmt_start && l <= span.lo);
        if !follows_lex_error {
            self.errors.push(Diagnostic::new(span, msg));
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
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            if self.too_many_errors() {
                return None;
            }
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    break;
                }
                Tok::Eof => {
                    let _ = self
                        .err::<()>(self.span(), "unexpected end of file: the kernel body is missing its closing `}`");
                    return None;
                }
                _ => {}
            }
            match self.item() {
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

    fn item(&mut self) -> PResult<Item> {
        let start = self.span();
        self.stmt_start = start.lo;
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => return self.expected("a declaration or `name = expression`"),
        };
        // `word = ...` is always an assignment, even if `word` is a keyword,
        // so the resolver can say why assigning it is wrong.
        if self.toks.get(self.pos + 1).map(|t| &t.tok) == Some(&Tok::Assign) {
            let target = self.ident("a name")?;
            self.bump();
            let value = self.expr()?;
            let span = start.to(value.span);
            return Ok(Item::Assign { target, value, span });
        }
        let role = match word.as_str() {
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
                    "`=` after `{word}` (or a declaration: `dims`, `in`, `out`, `inout`, `param`)"
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
        let span = start.to(self.toks[self.pos.saturating_sub(1)].span);
        Ok(Item::Tensor { role, name, dtype, dims, span })
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
                let end = self.expect(Tok::RParen, "`)`")?;
                let depth = inner.depth;
                self.mk(inner.kind, s0.to(end), depth)
            }
            _ => self.expected("an expression"),
        }
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
