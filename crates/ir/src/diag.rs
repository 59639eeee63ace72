//! User-facing diagnostics: what went wrong, where, and how it renders.
//!
//! Every error a user can cause in the IR is a [`Diagnostic`] with a span;
//! rendering follows the compiler convention
//! `file:line:col: error: message`, then the source line and a caret
//! underline, then notes.

use crate::span::Span;
use std::fmt;

/// One error about the user's kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where; [`Span::DUMMY`] when there is no source (builder kernels).
    pub span: Span,
    /// What is wrong, in one line.
    pub message: String,
    /// Extra lines of help, printed as `= note: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), notes: Vec::new() }
    }
    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The errors found in one kernel, in source order. Never empty when
/// returned as an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders every diagnostic against `source`, naming the file `file`.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        for d in &self.0 {
            render_one(&mut out, d, file, source);
        }
        out
    }
    /// The diagnostics.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    /// Without a source: one `error: message` line per diagnostic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {}", d.message)?;
            for n in &d.notes {
                write!(f, "\n  = note: {n}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of byte `pos`, with the line's
/// byte range.
fn locate(source: &str, pos: usize) -> (usize, usize, usize, usize) {
    let pos = floor_char_boundary(source, pos.min(source.len()));
    let line_start = source[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[pos..].find('\n').map_or(source.len(), |i| pos + i);
    let line_no = source[..line_start].bytes().filter(|&b| b == b'\n').count() + 1;
    let col = source[line_start..pos].chars().count() + 1;
    (line_no, col, line_start, line_end)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Longest source line shown; a 1 MB line is cut around the caret.
const MAX_SHOWN: usize = 120;

fn render_one(out: &mut String, d: &Diagnostic, file: &str, source: &str) {
    use std::fmt::Write;
    if d.span.is_dummy() {
        let _ = writeln!(out, "{file}: error: {}", d.message);
    } else {
        let lo = d.span.lo as usize;
        let (line, col, ls, le) = locate(source, lo);
        let _ = writeln!(out, "{file}:{line}:{col}: error: {}", d.message);
        // Characters of the line, tabs widened so the caret lines up.
        let text: Vec<char> =
            source[ls..le].trim_end_matches('\r').chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
        let start = col - 1;
        let hi = floor_char_boundary(source, (d.span.hi as usize).clamp(lo, le));
        let width = source[floor_char_boundary(source, lo.min(le))..hi].chars().count().max(1);
        // Window around the caret for very long lines.
        let (from, ellipsis) =
            if text.len() > MAX_SHOWN && start > MAX_SHOWN / 2 { (start - MAX_SHOWN / 2, true) } else { (0, false) };
        let to = (from + MAX_SHOWN).min(text.len());
        let shown: String = text[from.min(to)..to].iter().collect();
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let prefix = if ellipsis { "..." } else { "" };
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line} | {prefix}{shown}{}", if to < text.len() { "..." } else { "" });
        let caret_col = start - from + prefix.len();
        let caret_w = width.min(MAX_SHOWN);
        let _ = writeln!(out, "{pad} | {}{}", " ".repeat(caret_col), "^".repeat(caret_w));
    }
    for n in &d.notes {
        let _ = writeln!(out, "  = note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_col_and_caret() {
        let src = "kernel k {\n  y = foo + 1\n}\n";
        let d = Diagnostics(vec![Diagnostic::new(Span::new(17, 20), "unknown name `foo`").note("declare it")]);
        assert_eq!(
            d.render("k.nj", src),
            "k.nj:2:7: error: unknown name `foo`\n  |\n2 |   y = foo + 1\n  |       ^^^\n  = note: declare it\n"
        );
    }

    #[test]
    fn long_lines_are_windowed() {
        let src = format!("{}bad{}", "a".repeat(1_000_000), "b".repeat(10));
        let d = Diagnostics(vec![Diagnostic::new(Span::new(1_000_000, 1_000_003), "bad")]);
        let r = d.render("f.nj", &src);
        assert!(r.starts_with("f.nj:1:1000001: error: bad\n"));
        assert!(r.len() < 600, "rendered {} bytes", r.len());
        let lines: Vec<&str> = r.lines().collect();
        let caret = lines[3].find('^').unwrap();
        assert_eq!(&lines[2][caret..caret + 3], "bad");
    }
}
