//! User-facing diagnostics: what went wrong, where, and how it renders.
//!
//! Every error a user can cause in the IR is a [`Diagnostic`] with a span;
//! rendering follows the compiler convention
//! `file:line:col: error: message` (or `warning: message`), then the source
//! line and a caret underline, then `= note:` and `= help:` lines.

use crate::span::Span;
use std::fmt;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The kernel is rejected.
    #[default]
    Error,
    /// The kernel is valid, but probably not what was meant.
    Warning,
}

impl Severity {
    /// `error` or `warning`, as rendered.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One error or warning about the user's kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where; [`Span::DUMMY`] when there is no source (builder kernels).
    pub span: Span,
    /// What is wrong, in one line.
    pub message: String,
    /// Extra lines of explanation, printed as `= note: ...`.
    pub notes: Vec<String>,
    /// Suggested fixes, printed as `= help: ...` after the notes.
    pub help: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, span, message: message.into(), notes: Vec::new(), help: Vec::new() }
    }
    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::new(span, message) }
    }
    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
    /// Adds a help line (a suggested fix).
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }
    /// True for an error (the kernel is rejected).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    /// True for a warning.
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

/// The diagnostics found in one kernel, in source order. Never empty when
/// returned as an error; then every entry is an error. [`crate::check`] and
/// [`crate::parse_with_warnings`] also return warnings in this type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when there is no diagnostic.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_warning()).count()
    }
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
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
    /// Without a source: one `error: message` (or `warning: message`) line
    /// per diagnostic, then its notes and help.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", d.severity.label(), d.message)?;
            for n in &d.notes {
                write!(f, "\n  = note: {n}")?;
            }
            for h in &d.help {
                write!(f, "\n  = help: {h}")?;
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
    let label = d.severity.label();
    if d.span.is_dummy() {
        let _ = writeln!(out, "{file}: {label}: {}", d.message);
    } else {
        let lo = d.span.lo as usize;
        let (line, col, ls, le) = locate(source, lo);
        let _ = writeln!(out, "{file}:{line}:{col}: {label}: {}", d.message);
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
    for h in &d.help {
        let _ = writeln!(out, "  = help: {h}");
    }
}

/// 1-based line of byte `pos` in `source` (for messages that name a line).
pub(crate) fn line_of(source: &str, pos: u32) -> usize {
    let pos = floor_char_boundary(source, (pos as usize).min(source.len()));
    source[..pos].bytes().filter(|&b| b == b'\n').count() + 1
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
    fn renders_warnings_and_help() {
        let src = "kernel k {\n  t = 1\n}\n";
        let d = Diagnostics(vec![Diagnostic::warning(Span::new(13, 14), "value `t` is never used")
            .note("n")
            .help("name it `_t`")]);
        assert_eq!(
            d.render("k.nj", src),
            "k.nj:2:3: warning: value `t` is never used\n  |\n2 |   t = 1\n  |   ^\n  = note: n\n  = help: name it `_t`\n"
        );
        assert_eq!(d.to_string(), "warning: value `t` is never used\n  = note: n\n  = help: name it `_t`");
        assert_eq!((d.error_count(), d.warning_count(), d.has_errors()), (0, 1, false));
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
