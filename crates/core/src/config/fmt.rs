//! Canonical formatting of topology files (`k3splan fmt`), in the manner of `terraform fmt`.
//!
//! The rules: two-space indentation by nesting depth; one space around `=`; the `=` of
//! consecutive one-line attributes at the same depth aligned; block headers as
//! `ident "label" {`; no trailing whitespace; runs of blank lines collapsed to one; no blank
//! lines at the start or the end; one final newline. Comments are kept where they are, and
//! heredoc bodies are left untouched.
//!
//! Guarantee: formatting never changes meaning. The result is parsed again and compared
//! with the input (comments and layout aside); on any difference the input is returned as an
//! error instead of a rewrite.

use hcl_edit::parser::parse_body;

/// Why a file could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FmtError {
    #[error("{line}:{col}: syntax error: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    #[error(
        "formatting would change the meaning of the file (a k3splan bug); the file was left as it is"
    )]
    Changed,
}

/// Formats HCL source canonically.
pub fn format_source(src: &str) -> Result<String, FmtError> {
    // A UTF-8 byte order mark is kept as it is, in front of the formatted text.
    if let Some(rest) = src.strip_prefix(super::diag::BOM) {
        return format_source(rest).map(|out| format!("{}{out}", super::diag::BOM));
    }
    let before = parse_body(src).map_err(|e| FmtError::Syntax {
        line: e.location().line(),
        col: e.location().column(),
        message: e.message().to_string(),
    })?;
    let out = format_lines(src);
    let after = parse_body(&out).map_err(|_| FmtError::Changed)?;
    let a: hcl::Body = before.into();
    let b: hcl::Body = after.into();
    if a != b {
        return Err(FmtError::Changed);
    }
    Ok(out)
}

#[derive(Debug)]
struct Line {
    /// Indentation depth, or `None` for verbatim lines (heredoc bodies, block comments).
    depth: Option<usize>,
    text: String,
    /// For one-line attributes: the byte length of the key (for alignment).
    attr_key: Option<usize>,
    /// The attribute's value continues on the next lines.
    opens: bool,
}

impl Line {
    /// A line kept as written (heredoc bodies, block comments), trailing space trimmed.
    fn verbatim(raw: &str) -> Self {
        Line {
            depth: None,
            text: raw.trim_end().to_string(),
            attr_key: None,
            opens: false,
        }
    }
}

/// Formats `src` line by line: indent by nesting depth, align `=` in runs of attributes,
/// collapse blank lines.
fn format_lines(src: &str) -> String {
    let mut lines = indent_lines(src);
    align_attributes(&mut lines);
    emit(&lines)
}

/// Each line with its nesting depth (`None`: verbatim, inside a heredoc or a block comment).
fn indent_lines(src: &str) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let mut depth: usize = 0;
    let mut heredoc: Option<String> = None;
    let mut in_block_comment = false;

    for raw in src.lines() {
        if let Some(tag) = &heredoc {
            if raw.trim() == tag {
                let t = raw.trim().to_string();
                heredoc = None;
                lines.push(Line {
                    depth: Some(depth),
                    text: t,
                    attr_key: None,
                    opens: false,
                });
            } else {
                lines.push(Line::verbatim(raw));
            }
            continue;
        }
        if in_block_comment {
            if raw.contains("*/") {
                in_block_comment = false;
            }
            lines.push(Line::verbatim(raw));
            continue;
        }
        let t = raw.trim();
        if t.is_empty() {
            lines.push(Line {
                depth: Some(0),
                text: String::new(),
                attr_key: None,
                opens: false,
            });
            continue;
        }
        let scan = scan(t);
        let indent = depth.saturating_sub(scan.leading_closers);
        let mut text = t.to_string();
        let mut attr_key = None;
        if let Some((key, rest)) = split_attr(t) {
            text = format!("{key} = {rest}");
            attr_key = Some(key.len());
        } else if let Some(h) = normalize_block_header(t) {
            text = h;
        }
        let opens = scan.opens > scan.closes;
        depth = (depth + scan.opens).saturating_sub(scan.closes);
        if let Some(tag) = scan.heredoc {
            heredoc = Some(tag);
        }
        if scan.block_comment_open {
            in_block_comment = true;
        }
        lines.push(Line {
            depth: Some(indent),
            text,
            attr_key,
            opens,
        });
    }
    lines
}

/// Aligns `=` in runs of one-line attributes at the same depth.
fn align_attributes(lines: &mut [Line]) {
    let mut i = 0;
    while i < lines.len() {
        if lines[i].attr_key.is_none() {
            i += 1;
            continue;
        }
        let d = lines[i].depth;
        let mut j = i;
        while j < lines.len() && lines[j].attr_key.is_some() && lines[j].depth == d {
            j += 1;
            if lines[j - 1].opens {
                break;
            }
        }
        let width = lines[i..j]
            .iter()
            .filter_map(|l| l.attr_key)
            .max()
            .unwrap_or(0);
        for l in &mut lines[i..j] {
            if let Some(k) = l.attr_key {
                let (key, rest) = l.text.split_at(k);
                l.text = format!("{key}{}{rest}", " ".repeat(width - k));
            }
        }
        i = j.max(i + 1);
    }
}

/// The formatted text, blank lines collapsed to one.
fn emit(lines: &[Line]) -> String {
    let mut out = String::new();
    let mut blank = false;
    for l in lines {
        if l.depth.is_some() && l.text.is_empty() {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push('\n');
        }
        blank = false;
        match l.depth {
            Some(d) => {
                out.push_str(&"  ".repeat(d));
                out.push_str(&l.text);
            }
            None => out.push_str(&l.text),
        }
        out.push('\n');
    }
    out
}

#[derive(Default)]
struct Scan {
    opens: usize,
    closes: usize,
    leading_closers: usize,
    heredoc: Option<String>,
    block_comment_open: bool,
}

/// Counts brackets outside strings and comments.
fn scan(t: &str) -> Scan {
    let mut s = Scan::default();
    let b = t.as_bytes();
    let mut i = 0;
    let mut seen_other = false;
    let mut net_before_other: isize = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                seen_other = true;
                i += 1;
                let mut interp = 0usize;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 1,
                        b'$' | b'%' if b.get(i + 1) == Some(&b'{') => {
                            interp += 1;
                            i += 1;
                        }
                        b'}' if interp > 0 => interp -= 1,
                        b'"' if interp == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'#' => break,
            b'/' if b.get(i + 1) == Some(&b'/') => break,
            b'/' if b.get(i + 1) == Some(&b'*') => match t[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 1,
                None => {
                    s.block_comment_open = true;
                    break;
                }
            },
            b'<' if b.get(i + 1) == Some(&b'<') => {
                let rest = t[i + 2..].trim_start_matches('-');
                let tag: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !tag.is_empty() {
                    s.heredoc = Some(tag);
                    break;
                }
                seen_other = true;
            }
            b'{' | b'[' | b'(' => {
                seen_other = true;
                s.opens += 1;
            }
            b'}' | b']' | b')' => {
                s.closes += 1;
                if !seen_other {
                    net_before_other += 1;
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => seen_other = true,
        }
        i += 1;
    }
    s.leading_closers = net_before_other as usize;
    s
}

/// `key = value` (not `==`), with the key an identifier.
fn split_attr(t: &str) -> Option<(&str, &str)> {
    if let Some(rest) = t.strip_prefix('"') {
        // A quoted object key: `"topology.kubernetes.io/zone" = "a"`.
        let close = rest.find('"')? + 2;
        let after = t[close..].trim_start().strip_prefix('=')?;
        if after.starts_with('=') {
            return None;
        }
        return Some((&t[..close], after.trim_start()));
    }
    let key_end = t
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|(i, _)| i)?;
    if key_end == 0 || t.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let rest = t[key_end..].trim_start();
    let rest = rest.strip_prefix('=')?;
    if rest.starts_with('=') {
        return None;
    }
    Some((&t[..key_end], rest.trim_start()))
}

/// `ident  "label"   {` → `ident "label" {`.
fn normalize_block_header(t: &str) -> Option<String> {
    let body = t.strip_suffix('{')?.trim_end();
    let mut parts = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.starts_with('"') {
            let end = rest[1..].find('"')? + 2;
            parts.push(&rest[..end]);
            rest = &rest[end..];
        } else {
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            let word = &rest[..end];
            if !word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return None;
            }
            parts.push(word);
            rest = &rest[end..];
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("{} {{", parts.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_aligns_and_keeps_comments() {
        let src = "\n\n# head\nnode   \"a\"{\naddress=\"10.0.0.1\" # ip\n    roles = [\"server\"]\n\n\n\n  primary = true\n}\n\n";
        let out = format_source(src).unwrap();
        assert_eq!(
            out,
            "# head\nnode \"a\" {\n  address = \"10.0.0.1\" # ip\n  roles   = [\"server\"]\n\n  primary = true\n}\n"
        );
        assert_eq!(
            format_source(&out).unwrap(),
            out,
            "formatting is idempotent"
        );
    }

    #[test]
    fn multi_line_values_and_heredocs() {
        let src = "locals {\nx = [\n\"a\",\n\"b\",\n]\ny = <<EOT\n  keep   me\nEOT\nz = { a = \"}\" }\n}\n";
        let out = format_source(src).unwrap();
        assert_eq!(
            out,
            "locals {\n  x = [\n    \"a\",\n    \"b\",\n  ]\n  y = <<EOT\n  keep   me\n  EOT\n  z = { a = \"}\" }\n}\n"
        );
    }

    #[test]
    fn refuses_invalid_input() {
        assert!(matches!(
            format_source("node \"a\" {\n  x = \n}\n"),
            Err(FmtError::Syntax { line: 2 | 3, .. })
        ));
    }
}
