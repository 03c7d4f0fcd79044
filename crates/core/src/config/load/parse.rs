//! Parsing and the schema checks: HCL text → raw blocks with spans.

use super::*;

impl Loader<'_> {
    /// Parses every file and checks it against the schema: the top-level blocks, and whether
    /// every file parsed. `None` when no file parsed at all.
    pub(super) fn parse_files(&mut self) -> Option<(Vec<RawBlock>, bool)> {
        let mut top: Vec<RawBlock> = Vec::new();
        let mut parse_ok = true;
        for (i, f) in self.files.iter().enumerate() {
            match hcl_edit::parser::parse_body(&f.text) {
                Ok(body) => top.extend(self.walk_body(i, &body, &schema::ROOT)),
                Err(e) => {
                    parse_ok = false;
                    let loc = e.location();
                    // The byte offset is exact; the column hcl-edit derives from it is not
                    // when the error is at a multi-byte character. At the end of the input
                    // the offset is clamped to the last byte: use the column there.
                    let offset = if loc.offset() + 1 >= f.text.len() {
                        offset_of(f, loc.line(), loc.column())
                    } else {
                        loc.offset()
                    };
                    let (span, msg) = match number_out_of_range(&f.text, offset) {
                        Some(found) => found,
                        None => {
                            let (span, msg) = explain_syntax_error(&f.text, offset, e.message());
                            (span, format!("syntax error: {msg}"))
                        }
                    };
                    self.err(i, span, msg);
                }
            }
        }
        if !parse_ok && top.is_empty() {
            return None;
        }
        // Non-repeatable top-level blocks across all files.
        for ident in [schema::CLUSTER.ident, schema::BACKEND.ident] {
            let found: Vec<&RawBlock> = top.iter().filter(|b| b.schema.ident == ident).collect();
            if found.len() > 1 {
                let first = self.note_at(found[0].file, &found[0].ident_span);
                let dups: Vec<(usize, Range<usize>)> = found[1..]
                    .iter()
                    .map(|b| (b.file, b.ident_span.clone()))
                    .collect();
                for (file, span) in dups {
                    let d = Diagnostic::at(
                        Severity::Error,
                        &self.files[file],
                        span,
                        format!("duplicate `{ident}` block: a topology has exactly one"),
                    )
                    .with_note(format!("first `{ident}` block at {first}"));
                    self.diags.push(d);
                }
            }
        }
        Some((top, parse_ok))
    }

    pub(super) fn walk_body(
        &mut self,
        file: usize,
        body: &Body,
        schema: &'static BlockSchema,
    ) -> Vec<RawBlock> {
        let mut out = Vec::new();
        let mut seen_attrs: HashMap<String, Range<usize>> = HashMap::new();
        let mut seen_blocks: HashMap<&'static str, Range<usize>> = HashMap::new();
        for st in body.iter() {
            match st {
                Structure::Attribute(attr) => {
                    let name = attr.key.as_str().to_string();
                    let key_span = span_of(&attr.key);
                    if !schema.any_attrs && schema.attr(&name).is_none() {
                        let mut msg = if schema.ident == "(top level)" {
                            format!(
                                "unexpected attribute {name_c} at the top level: only blocks are allowed here",
                                name_c = code(&name)
                            )
                        } else {
                            format!(
                                "unknown attribute {name_c} in `{}` block",
                                schema.ident,
                                name_c = code(&name)
                            )
                        };
                        if let Some(s) = did_you_mean(&name, schema.attrs.iter().map(|a| a.name)) {
                            msg.push_str(&format!("; did you mean `{s}`?"));
                        }
                        self.err(file, key_span, msg);
                        continue;
                    }
                    if let Some(first) = seen_attrs.get(&name) {
                        let note = self.note_at(file, first);
                        let d = Diagnostic::at(
                            Severity::Error,
                            &self.files[file],
                            key_span,
                            format!(
                                "attribute {name_c} is set twice in `{}` block",
                                schema.ident,
                                name_c = code(&name)
                            ),
                        )
                        .with_note(format!("first set at {note}"));
                        self.diags.push(d);
                        continue;
                    }
                    seen_attrs.insert(name.clone(), key_span.clone());
                    out.push(RawBlock {
                        // Attributes are carried in a pseudo-block and collected by the parent.
                        schema: &ATTR_CARRIER,
                        file,
                        ident_span: key_span.clone(),
                        labels: Vec::new(),
                        attrs: vec![RawAttr {
                            file,
                            name,
                            key_span,
                            expr_span: span_of(&attr.value),
                            expr: attr.value.clone(),
                        }],
                        blocks: Vec::new(),
                    });
                }
                Structure::Block(block) => {
                    if let Some(b) = self.walk_block(file, block, schema, &mut seen_blocks) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }

    pub(super) fn walk_block(
        &mut self,
        file: usize,
        block: &Block,
        parent: &'static BlockSchema,
        seen: &mut HashMap<&'static str, Range<usize>>,
    ) -> Option<RawBlock> {
        let ident = block.ident.as_str();
        let ident_span = span_of(&block.ident);
        if std::ptr::eq(parent, &schema::ROOT) {
            *self.seen_idents.entry(ident.to_string()).or_default() += 1;
        } else if std::ptr::eq(parent, &schema::CLUSTER) {
            *self
                .seen_idents
                .entry(format!("{}.{ident}", schema::CLUSTER.ident))
                .or_default() += 1;
        }
        let Some(schema) = parent.block(ident) else {
            self.unknown_block(file, ident, ident_span, parent);
            return None;
        };
        if parent.attr(ident).is_some() {
            // unreachable with the current schema; kept for clarity
            return None;
        }
        if !schema.repeatable && parent.ident != "(top level)" {
            if let Some(first) = seen.get(schema.ident) {
                let note = self.note_at(file, first);
                let d = Diagnostic::at(
                    Severity::Error,
                    &self.files[file],
                    ident_span,
                    format!("duplicate `{ident}` block in `{}` block", parent.ident),
                )
                .with_note(format!("first `{ident}` block at {note}"));
                self.diags.push(d);
                return None;
            }
            seen.insert(schema.ident, ident_span.clone());
        }
        let labels = self.block_labels(file, block, schema)?;
        let children = self.walk_body(file, &block.body, schema);
        let mut attrs = Vec::new();
        let mut blocks = Vec::new();
        for c in children {
            if std::ptr::eq(c.schema, &ATTR_CARRIER) {
                attrs.extend(c.attrs);
            } else {
                blocks.push(c);
            }
        }
        let raw = RawBlock {
            schema,
            file,
            ident_span: ident_span.clone(),
            labels,
            attrs,
            blocks,
        };
        self.report_missing_required(&raw);
        Some(raw)
    }

    /// Reports a block `ident` its `parent` does not have, with a suggestion.
    fn unknown_block(
        &mut self,
        file: usize,
        ident: &str,
        ident_span: Range<usize>,
        parent: &'static BlockSchema,
    ) {
        let mut msg = if parent.ident == "(top level)" {
            format!("unknown block type {ident_c}", ident_c = code(ident))
        } else {
            format!(
                "unknown block {ident_c} in `{}` block",
                parent.ident,
                ident_c = code(ident)
            )
        };
        let candidates = parent
            .blocks
            .iter()
            .map(|b| b.ident)
            .chain(parent.attrs.iter().map(|a| a.name));
        if let Some(s) = did_you_mean(ident, candidates) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        } else if parent.ident == "(top level)" {
            msg.push_str(
                "; expected one of `cluster`, `node`, `storage`, `addon`, `variable`, `locals`, `backend`",
            );
        }
        self.err(file, ident_span, msg);
    }

    /// The block's labels, when there are as many as its schema names and none is empty.
    fn block_labels(
        &mut self,
        file: usize,
        block: &Block,
        schema: &'static BlockSchema,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let ident = block.ident.as_str();
        let ident_span = span_of(&block.ident);
        let labels: Vec<(String, Range<usize>)> = block
            .labels
            .iter()
            .map(|l| (l.as_str().to_string(), span_of(l)))
            .collect();
        if labels.len() != schema.labels.len() {
            let msg = match schema.labels.len() {
                0 => format!("`{ident}` block takes no label"),
                1 => format!(
                    "`{ident}` block needs exactly one label, its {}: {ident} \"…\" {{ … }}",
                    schema.labels[0]
                ),
                n => format!("`{ident}` block needs {n} labels"),
            };
            let span = labels
                .get(schema.labels.len())
                .map(|l| l.1.clone())
                .unwrap_or(ident_span.clone());
            self.err(file, span, msg);
            return None;
        }
        for (l, span) in &labels {
            if l.is_empty() {
                self.err(
                    file,
                    span.clone(),
                    format!("`{ident}` block label must not be empty"),
                );
                return None;
            }
        }
        Some(labels)
    }

    /// Reports each required attribute `raw` does not set.
    fn report_missing_required(&mut self, raw: &RawBlock) {
        let (file, ident, ident_span) = (raw.file, raw.schema.ident, raw.ident_span.clone());
        for a in raw.schema.attrs.iter().filter(|a| a.required) {
            if !raw.attrs.iter().any(|x| x.name == a.name) {
                let what = if raw.labels.is_empty() {
                    format!("`{ident}` block")
                } else {
                    format!("`{ident} {}`", quote(raw.label()))
                };
                self.err(
                    file,
                    ident_span.clone(),
                    format!(
                        "{what} is missing the required attribute `{}` ({})",
                        a.name,
                        a.ty.describe()
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

pub(super) fn offset_of(f: &SourceFile, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in f.text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map(|(o, _)| o)
                    .unwrap_or(l.trim_end_matches('\n').len());
        }
        off += l.len();
    }
    f.text.len()
}

/// Turns the parser's error into something an operator can act on: an unterminated string or
/// an unclosed block is reported where it starts, not where the parser gave up.
pub(super) fn explain_syntax_error(text: &str, offset: usize, raw: &str) -> (Range<usize>, String) {
    let mut stack: Vec<(usize, u8)> = Vec::new();
    let mut line_start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    let mut heredoc: Option<String> = None;
    while i < b.len() {
        if let Some(tag) = &heredoc {
            let end = text[i..].find('\n').map(|e| i + e).unwrap_or(b.len());
            if text[i..end].trim() == tag {
                heredoc = None;
            }
            i = end + 1;
            line_start = i;
            continue;
        }
        match b[i] {
            b'\n' => line_start = i + 1,
            b'#' => {
                i = text[i..].find('\n').map(|e| i + e).unwrap_or(b.len());
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map(|e| i + e).unwrap_or(b.len());
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map(|e| i + 2 + e + 2)
                    .unwrap_or(b.len());
                continue;
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                let rest = text[i + 2..].trim_start_matches('-');
                let tag: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !tag.is_empty() {
                    heredoc = Some(tag);
                    i = text[i..].find('\n').map(|e| i + e + 1).unwrap_or(b.len());
                    line_start = i;
                    continue;
                }
            }
            b'"' => match string_end(b, i, offset, line_start) {
                Some(end) => i = end,
                None => {
                    return (
                        i..i + 1,
                        "unterminated string: a quoted string must end on the same line".into(),
                    );
                }
            },
            c @ (b'{' | b'[' | b'(') => stack.push((i, c)),
            b'}' | b']' | b')' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    unclosed_or_parser_message(text, offset, &stack, raw)
}

/// Where the quoted string starting at `start` ends (its closing quote, or the end of its line
/// when it is unterminated but the error is elsewhere); `None` when the string is unterminated
/// and is the error at `offset`.
fn string_end(b: &[u8], start: usize, offset: usize, line_start: usize) -> Option<usize> {
    let mut i = start + 1;
    let mut interp = 0usize;
    loop {
        match b.get(i) {
            None | Some(b'\n') => {
                if start <= offset || offset >= line_start {
                    return None;
                }
                break;
            }
            Some(b'\\') => i += 1,
            Some(b'$') | Some(b'%') if b.get(i + 1) == Some(&b'{') => {
                interp += 1;
                i += 1;
            }
            Some(b'}') if interp > 0 => interp -= 1,
            Some(b'"') if interp == 0 => break,
            _ => {}
        }
        i += 1;
    }
    Some(i)
}

/// At the end of the input, the first bracket never closed; otherwise the parser's message.
fn unclosed_or_parser_message(
    text: &str,
    offset: usize,
    stack: &[(usize, u8)],
    raw: &str,
) -> (Range<usize>, String) {
    if offset >= text.trim_end().len()
        && let Some((pos, c)) = stack.first()
    {
        let close = match c {
            b'{' => '}',
            b'[' => ']',
            _ => ')',
        };
        return (
            *pos..pos + 1,
            format!(
                "`{}` is never closed: the file ends before its `{close}`",
                *c as char
            ),
        );
    }
    let m = raw.trim();
    let msg = if m.contains("redefined attribute") {
        "this attribute is already set in this block".to_string()
    } else if m.is_empty() {
        "invalid HCL".to_string()
    } else {
        m.to_string()
    };
    (offset..offset + 1, msg)
}

/// A numeric literal no number can hold (`1e400`, a 400-digit integer) on the line of a syntax
/// error at `offset`: the parser only says "expected newline or eof"; say what is wrong,
/// naming the attribute.
pub(super) fn number_out_of_range(text: &str, offset: usize) -> Option<(Range<usize>, String)> {
    let b = text.as_bytes();
    let line_start = b[..offset.min(b.len())]
        .iter()
        .rposition(|c| *c == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = b[line_start..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |i| line_start + i);
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
    let mut i = line_start;
    while i < line_end {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
        let starts = b[i].is_ascii_digit() && (i == line_start || !word(b[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let start = if i > line_start && b[i - 1] == b'-' {
            i - 1
        } else {
            i
        };
        let mut end = i;
        let digits = |mut j: usize| {
            while j < line_end && b[j].is_ascii_digit() {
                j += 1;
            }
            j
        };
        end = digits(end);
        if end + 1 < line_end && b[end] == b'.' && b[end + 1].is_ascii_digit() {
            end = digits(end + 1);
        }
        if end < line_end && (b[end] == b'e' || b[end] == b'E') {
            let mut j = end + 1;
            if j < line_end && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            if j < line_end && b[j].is_ascii_digit() {
                end = digits(j);
            }
        }
        let literal = &text[start..end];
        // The parser stops inside the literal (`1e400`) or, having backtracked, at the start of
        // the attribute (a 400-digit integer): any literal on the line from there on counts.
        if end >= offset && !literal.parse::<f64>().is_ok_and(f64::is_finite) {
            let before = text[line_start..start].trim();
            let what = before
                .strip_suffix('=')
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.bytes().all(ident))
                .map(|k| format!(" for {}", code(k)))
                .unwrap_or_default();
            return Some((
                start..end,
                format!(
                    "number {} is out of range{what}: numbers must be between -1.7976931348623157e308 and 1.7976931348623157e308",
                    code(literal)
                ),
            ));
        }
        i = end.max(i + 1);
    }
    None
}
