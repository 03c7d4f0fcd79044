//! Compiler-style diagnostics for the topology language.
//!
//! Every diagnostic names a file, a 1-based line and column, a message, and shows the
//! offending source line with a caret under the column:
//!
//! ```text
//! topology.hcl:12:3: error: unknown attribute "adress" in block "node"; did you mean "address"?
//!    12 |   adress = "10.0.0.1"
//!       |   ^^^^^^
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is. Errors make the configuration invalid; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One source file of the topology, kept for positions and source lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A leading UTF-8 byte order mark is dropped: it is not part of the text, and positions
    /// count from the first character after it.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let mut text = text.into();
        if text.starts_with(BOM) {
            text.drain(..BOM.len_utf8());
        }
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        let end = self
            .line_starts
            .get(line)
            .map(|e| e.saturating_sub(1))
            .unwrap_or(self.text.len());
        slice(&self.text, start..end).trim_end_matches('\r')
    }
}

/// The UTF-8 byte order mark some editors put at the start of a file.
pub const BOM: char = '\u{feff}';

/// The largest char boundary of `s` at or before `i` (`s.len()` when `i` is past the end).
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s[range]` that never panics: both ends are moved back to char boundaries and clamped to
/// the text (spans come from parsers and arithmetic such as `offset..offset + 1`, which may
/// end inside a multi-byte character).
pub fn slice(s: &str, range: Range<usize>) -> &str {
    let start = floor_char_boundary(s, range.start);
    let end = floor_char_boundary(s, range.end).max(start);
    &s[start..end]
}

/// Longest value quoted in full in a diagnostic, in characters; longer ones are cut.
pub const QUOTE_MAX_CHARS: usize = 60;

/// `s` in double quotes, for a diagnostic message: control characters (and the quote) escaped
/// so the value cannot break the line or the terminal, and a value longer than
/// [`QUOTE_MAX_CHARS`] cut to its start with its size: `"aaaa…" (52428800 bytes)`. Every value
/// a diagnostic quotes goes through here (or [`code`]), so no input is echoed at length.
pub fn quote(s: &str) -> String {
    quote_with(s, Some('"'), QUOTE_MAX_CHARS, true)
}

/// Like [`quote`], in backticks: for names and expressions taken from the source.
pub fn code(s: &str) -> String {
    quote_with(s, Some('`'), QUOTE_MAX_CHARS, true)
}

/// Like [`quote`], without quotes: for names in running text (`cycle: local.a → local.b`).
pub fn shown(s: &str) -> String {
    quote_with(s, None, QUOTE_MAX_CHARS, true)
}

/// Longest message a diagnostic keeps, in characters: the last guard against a message that
/// embeds a value some library formatted in full.
const MESSAGE_MAX_CHARS: usize = 1000;

fn clip(message: String) -> String {
    if message.len() <= MESSAGE_MAX_CHARS {
        return message;
    }
    quote_with(&message, None, MESSAGE_MAX_CHARS, false)
}

fn quote_with(s: &str, q: Option<char>, max: usize, escape: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max * 2) + 2);
    out.extend(q);
    let mut cut = false;
    for (shown, c) in s.chars().enumerate() {
        if shown == max {
            cut = true;
            break;
        }
        if Some(c) == q {
            out.push('\\');
            out.push(c);
        } else if escape && c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push('…');
        out.extend(q);
        out.push_str(&format!(" ({} bytes)", s.len()));
    } else {
        out.extend(q);
    }
    out
}

/// Longest source line shown under a diagnostic, in characters; a longer one is shown as a
/// window around the column.
const SOURCE_MAX_CHARS: usize = 120;

/// The part of `line` to show for a caret at 1-based `col` of `width` characters: the text,
/// and the caret's column and width in it.
fn source_window(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let len = line.chars().count();
    if len <= SOURCE_MAX_CHARS {
        return (line.to_string(), col, width);
    }
    let start = col.saturating_sub(1).saturating_sub(SOURCE_MAX_CHARS / 3);
    let mut text = String::new();
    let mut shift = start;
    if start > 0 {
        text.push('…');
        shift -= 1;
    }
    text.extend(line.chars().skip(start).take(SOURCE_MAX_CHARS));
    if start + SOURCE_MAX_CHARS < len {
        text.push('…');
    }
    let col = col.saturating_sub(shift).max(1);
    let room = text.chars().count().saturating_sub(col - 1).max(1);
    (text, col, width.clamp(1, room))
}

/// A diagnostic with its position resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: PathBuf,
    /// 1-based; 0 when the diagnostic is about the configuration as a whole.
    pub line: usize,
    pub col: usize,
    /// Width of the caret underline, in characters (at least 1).
    pub width: usize,
    pub message: String,
    /// The source line the diagnostic points at.
    pub source_line: String,
    /// Extra notes ("first declared at …").
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic pointing at a byte range of a file.
    pub fn at(
        severity: Severity,
        file: &SourceFile,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = file.line_col(span.start);
        let source_line = file.line_text(line).to_string();
        let rest = source_line.chars().count().saturating_sub(col - 1).max(1);
        let width = slice(&file.text, span)
            .split('\n')
            .next()
            .map(|s| s.chars().count())
            .unwrap_or(1)
            .clamp(1, rest);
        Diagnostic {
            severity,
            path: file.path.clone(),
            line,
            col,
            width,
            message: clip(message.into()),
            source_line,
            notes: Vec::new(),
        }
    }

    /// A diagnostic about a file (or the configuration) as a whole.
    pub fn global(severity: Severity, path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            width: 0,
            message: clip(message.into()),
            source_line: String::new(),
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(clip(note.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `path:line:col` (or just the path for global diagnostics).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.path.display().to_string()
        } else {
            format!("{}:{}:{}", self.path.display(), self.line, self.col)
        }
    }

    /// Renders the diagnostic, optionally with ANSI colours ([`styles`]).
    pub fn render(&self, color: bool) -> String {
        let paint = |style: anstyle::Style, text: String| {
            if color {
                format!("{style}{text}{style:#}")
            } else {
                text
            }
        };
        let sev_style = match self.severity {
            Severity::Error => styles::ERROR,
            Severity::Warning => styles::WARNING,
        };
        let mut out = format!(
            "{}: {}: {}\n",
            paint(styles::LOCATION, self.location()),
            paint(sev_style, self.severity.to_string()),
            self.message
        );
        if self.line > 0 {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len().max(4));
            let (line, col, width) = source_window(&self.source_line, self.col, self.width);
            out.push_str(&format!("{num:>4} | {line}\n"));
            let indent: String = line
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{pad} | {indent}{}\n", "^".repeat(width.max(1))));
        }
        for n in &self.notes {
            out.push_str(&format!("  = note: {n}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// The styles of a rendered diagnostic, when colour is on.
pub mod styles {
    use anstyle::{AnsiColor, Color, Style};

    /// `path:line:col`.
    pub const LOCATION: Style = Style::new().bold();
    /// The word `error`.
    pub const ERROR: Style = Style::new()
        .bold()
        .fg_color(Some(Color::Ansi(AnsiColor::Red)));
    /// The word `warning`.
    pub const WARNING: Style = Style::new()
        .bold()
        .fg_color(Some(Color::Ansi(AnsiColor::Yellow)));
}

/// All diagnostics of one load, in source order (file, line, column).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.0.len() - self.errors()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    /// Sorts by file, line, column, keeping the order of diagnostics at the same place.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col)));
        self.0.dedup();
    }
    /// Renders every diagnostic, then a summary line when there is anything to report.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(color));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `name` among `candidates`, if it is close enough to suggest.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let f = SourceFile::new("t.hcl", "a = 1\nnode \"é\" {\n  x = 2\n}\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        let x = f.text.find('x').unwrap();
        assert_eq!(f.line_col(x), (3, 3));
        assert_eq!(f.line_text(3), "  x = 2");
    }

    #[test]
    fn renders_location_message_and_caret() {
        let f = SourceFile::new("t.hcl", "node \"a\" {\n  adress = \"x\"\n}\n");
        let start = f.text.find("adress").unwrap();
        let d = Diagnostic::at(Severity::Error, &f, start..start + 6, "unknown attribute");
        assert_eq!(
            d.render(false),
            "t.hcl:2:3: error: unknown attribute\n   2 |   adress = \"x\"\n     |   ^^^^^^\n"
        );
    }

    #[test]
    fn issue13_quoted_values_are_cut_and_escaped() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\"b\nc\u{1b}"), "\"a\\\"b\\nc\\u{1b}\"");
        let long = "é".repeat(100);
        assert_eq!(
            quote(&long),
            format!("\"{}…\" (200 bytes)", "é".repeat(QUOTE_MAX_CHARS))
        );
        assert_eq!(code("x`y"), "`x\\`y`");
        assert_eq!(shown("local.a"), "local.a");
    }

    #[test]
    fn issue13_long_source_lines_are_a_window_around_the_column() {
        let line = format!("  address = \"{}\"", "x".repeat(100_000));
        let f = SourceFile::new("t.hcl", line.clone());
        let start = line.len() - 5;
        let d = Diagnostic::at(Severity::Error, &f, start..start + 3, "bad");
        let out = d.render(false);
        assert!(out.len() < 600, "{out}");
        assert!(out.starts_with(&format!("t.hcl:1:{}: error: bad\n", start + 1)));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains(" | …xxx"), "{out}");
        let caret = lines[2].find('^').unwrap();
        let shown: Vec<char> = lines[1].chars().collect();
        assert_eq!(lines[2][caret..].trim_end(), "^^^");
        let under: String = shown[caret..].iter().collect();
        assert_eq!(
            under, "xxxx\"",
            "the caret is under the span's first character"
        );
        // Spans ending inside a character are not a panic.
        let f = SourceFile::new("t.hcl", "\u{feff}é😀\n");
        let d = Diagnostic::at(Severity::Error, &f, 1..3, "bad");
        assert_eq!((d.line, d.col), (1, 1));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("adress", ["address", "roles"]),
            Some("address")
        );
        assert_eq!(did_you_mean("zzz", ["address", "roles"]), None);
    }

    #[test]
    fn colour_is_styled_only_when_asked() {
        let f = SourceFile::new("t.hcl", "a = 1\n");
        let d = Diagnostic::at(Severity::Error, &f, 0..1, "bad");
        assert_eq!(
            d.render(false).lines().next(),
            Some("t.hcl:1:1: error: bad")
        );
        let coloured = d.render(true);
        assert!(
            coloured.starts_with("\x1b[1mt.hcl:1:1\x1b[0m: \x1b[1m\x1b[31merror\x1b[0m: bad\n"),
            "{coloured:?}"
        );
    }
}
