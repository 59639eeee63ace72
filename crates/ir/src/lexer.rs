//! Tokens of the `.nj` text format.
//!
//! Newlines are tokens (they end statements) except inside `()` and `[]`,
//! where expressions may wrap. Comments run from `#` to the end of the line.
//! Number literals follow Rust's float syntax and are checked against the
//! f32 range here, so no later stage sees an infinite literal.

use crate::diag::Diagnostic;
use crate::span::Span;

/// Kinds of token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Number(f64),
    Newline,
    Semi,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Assign,
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    Eof,
}

impl Tok {
    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Number(v) => format!("number `{v}`"),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of file".into(),
            t => format!("`{}`", t.symbol()),
        }
    }
    fn symbol(&self) -> &'static str {
        match self {
            Tok::Semi => ";",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Caret => "^",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            _ => "",
        }
    }
}

/// A token and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Lexing stops after this many errors.
const MAX_LEX_ERRORS: usize = 20;

/// Splits `src` into tokens (always ending with `Eof`), reporting bad
/// characters and malformed literals into `errors` and skipping them.
pub fn lex(src: &str, errors: &mut Vec<Diagnostic>) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut depth = 0usize; // () and [] nesting: newlines inside are not tokens
    while i < bytes.len() {
        if errors.len() >= MAX_LEX_ERRORS {
            // Random bytes would give one error per byte; the first few say it all.
            break;
        }
        let c = bytes[i];
        let start = i;
        let single = |t: Tok| (t, 1);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\n' => {
                i += 1;
                if depth == 0 {
                    toks.push(Token { tok: Tok::Newline, span: Span::new(start, start + 1) });
                }
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let ident_end = |mut j: usize| {
                    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                        j += 1;
                    }
                    j
                };
                let mut j = ident_end(i);
                // `torch.rsqrt`, `x.mean`: Python paths are a common first
                // attempt; say how normjit writes them, and keep the last
                // name as the token so the statement still parses.
                let mut last = i;
                while j + 1 < bytes.len()
                    && bytes[j] == b'.'
                    && (bytes[j + 1].is_ascii_alphabetic() || bytes[j + 1] == b'_')
                {
                    last = j + 1;
                    j = ident_end(j + 1);
                }
                if last != i {
                    errors.push(dotted_path(&src[i..j], &src[last..j], Span::new(i, j)));
                    (Tok::Ident(src[last..j].to_string()), j - i)
                } else {
                    (Tok::Ident(src[i..j].to_string()), j - i)
                }
            }
            b'0'..=b'9' => {
                let (end, result) = number(src, i);
                match result {
                    Ok(v) => (Tok::Number(v), end - i),
                    Err(msg) => {
                        // Keep a placeholder number so the parser does not
                        // report the gap as a second error.
                        errors.push(Diagnostic::new(Span::new(i, end), msg));
                        (Tok::Number(0.0), end - i)
                    }
                }
            }
            b'{' => single(Tok::LBrace),
            b'}' => single(Tok::RBrace),
            b'(' => {
                depth += 1;
                single(Tok::LParen)
            }
            b')' => {
                depth = depth.saturating_sub(1);
                single(Tok::RParen)
            }
            b'[' => {
                depth += 1;
                single(Tok::LBracket)
            }
            b']' => {
                depth = depth.saturating_sub(1);
                single(Tok::RBracket)
            }
            b',' => single(Tok::Comma),
            b';' => single(Tok::Semi),
            b':' => single(Tok::Colon),
            b'+' => single(Tok::Plus),
            b'-' => single(Tok::Minus),
            b'*' => single(Tok::Star),
            b'/' => single(Tok::Slash),
            b'^' => single(Tok::Caret),
            b'<' if bytes.get(i + 1) == Some(&b'=') => (Tok::Le, 2),
            b'<' => single(Tok::Lt),
            b'>' if bytes.get(i + 1) == Some(&b'=') => (Tok::Ge, 2),
            b'>' => single(Tok::Gt),
            b'=' if bytes.get(i + 1) == Some(&b'=') => (Tok::EqEq, 2),
            b'=' => single(Tok::Assign),
            b'!' if bytes.get(i + 1) == Some(&b'=') => (Tok::Ne, 2),
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                let n = ch.len_utf8();
                let shown = if ch.is_control() || ch.is_whitespace() { format!("{:?}", ch) } else { format!("`{ch}`") };
                errors.push(Diagnostic::new(Span::new(i, i + n), format!("unexpected character {shown}")));
                i += n;
                continue;
            }
        };
        toks.push(Token { tok, span: Span::new(start, start + len) });
        i += len;
    }
    toks.push(Token { tok: Tok::Eof, span: Span::new(src.len(), src.len()) });
    toks
}

/// The error for a dotted path `a.b.c` whose last name is `last`.
fn dotted_path(path: &str, last: &str, span: Span) -> Diagnostic {
    let first = path.split('.').next().unwrap_or(path);
    let shown = shorten(path);
    let d = if crate::hints::is_module(first) {
        Diagnostic::new(span, format!("`{shown}`: normjit functions have no module prefix"))
    } else {
        let d = Diagnostic::new(span, format!("`{shown}`: normjit values have no methods or attributes"));
        if matches!(last, "shape" | "size" | "numel") {
            return d.help("write the number of elements in some dims as `count(D, ...)`");
        }
        if crate::hints::is_function(last) || crate::hints::spelling(last).is_some() {
            let recv = shorten(&path[..path.len() - last.len() - 1]);
            return match crate::hints::spelling(last) {
                Some(how) => d.help(how),
                None => d.help(format!("call the function on it: `{last}({recv}, ...)`")),
            };
        }
        return d.note(format!("the functions are: {}", crate::hints::ALL_FNS));
    };
    if crate::hints::is_function(last) {
        d.help(format!("write `{last}(...)`"))
    } else if let Some(how) = crate::hints::spelling(last) {
        d.help(how)
    } else {
        d.note(format!("the functions are: {}", crate::hints::ALL_FNS))
    }
}

/// Lexes a number starting at byte `i`: `digits[_digits][.digits][e[+-]digits]`.
/// Returns the end and the value, or a message for a malformed or
/// out-of-range literal (the end then covers the whole bad word).
fn number(src: &str, i: usize) -> (usize, Result<f64, String>) {
    let b = src.as_bytes();
    let digits = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    let mut j = digits(i);
    let mut ok = true;
    // A `.` is part of the number unless an identifier follows (`1.max`
    // is not syntax here either, so only digits may follow a dot).
    if j < b.len() && b[j] == b'.' {
        j += 1;
        if j < b.len() && b[j].is_ascii_digit() {
            j = digits(j);
        }
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        j += 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let e0 = j;
        j = digits(j);
        if j == e0 {
            ok = false;
        }
    }
    // Trailing letters, digits or dots make the whole word malformed (`1.2.3`, `3x`).
    let mut end = j;
    while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b'.') {
        end += 1;
        ok = false;
    }
    let text = &src[i..end];
    if !ok {
        return (end, Err(format!("malformed number `{}`", shorten(text))));
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    match clean.parse::<f64>() {
        Ok(v) if v.is_finite() && v <= f32::MAX as f64 => (end, Ok(v)),
        Ok(_) => (end, Err(format!("number `{}` is out of range for f32", shorten(text)))),
        Err(_) => (end, Err(format!("malformed number `{}`", shorten(text)))),
    }
}

fn shorten(s: &str) -> String {
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> (Vec<Tok>, usize) {
        let mut e = Vec::new();
        let t = lex(s, &mut e).into_iter().map(|t| t.tok).collect();
        (t, e.len())
    }

    #[test]
    fn numbers_follow_rust() {
        assert_eq!(
            toks("1e-5 0.999 3 1_000 2.").0[..5],
            [Tok::Number(1e-5), Tok::Number(0.999), Tok::Number(3.0), Tok::Number(1000.0), Tok::Number(2.0)]
        );
        assert_eq!(toks("1e").1, 1);
        assert_eq!(toks("1.2.3").1, 1);
        assert_eq!(toks("1e400").1, 1);
        assert_eq!(toks("1e39").1, 1);
    }

    #[test]
    fn dotted_paths_are_one_error_and_keep_the_last_name() {
        let mut e = Vec::new();
        let t: Vec<Tok> = lex("torch.nn.functional.rsqrt(x) x.mean", &mut e).into_iter().map(|t| t.tok).collect();
        assert_eq!(t[0], Tok::Ident("rsqrt".into()));
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("no module prefix"), "{:?}", e[0]);
        assert_eq!(e[0].help, ["write `rsqrt(...)`"]);
        assert!(e[1].message.contains("no methods"), "{:?}", e[1]);
        assert_eq!(e[1].help, ["call the function on it: `mean(x, ...)`"]);
        // A number after the dot is not a path.
        let mut e = Vec::new();
        lex("x.5", &mut e);
        assert!(e[0].message.contains("unexpected character"));
    }

    #[test]
    fn newlines_inside_parens_are_skipped() {
        let (t, _) = toks("(a\n+ b)\nc");
        assert_eq!(t.iter().filter(|t| **t == Tok::Newline).count(), 1);
    }
}
