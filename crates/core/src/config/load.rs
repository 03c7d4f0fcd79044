//! Loading a topology: HCL source → parse → schema checks → evaluation → semantic rules →
//! [`Topology`].
//!
//! Loading does no network access. It reads the configuration files, the files named by
//! `file("…")`, and the environment variables named by `env("…")` and `K3SPLAN_VAR_<name>`.
//! Every problem found is reported at once, in source order.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Value};
use hcl_edit::Span;
use hcl_edit::structure::{Block, Body, Structure};

use super::diag::{
    Diagnostic, Diagnostics, Severity, SourceFile, code, did_you_mean, quote, shown, slice,
};
use super::model::*;
use super::schema::{self, BlockSchema, Ty};

/// Where `env("…")` and `K3SPLAN_VAR_*` values come from.
#[derive(Debug, Clone, Default)]
pub enum EnvSource {
    /// The process environment.
    #[default]
    Process,
    /// A fixed map (tests).
    Map(BTreeMap<String, String>),
}

impl EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(name).ok(),
            EnvSource::Map(m) => m.get(name).cloned(),
        }
    }
}

/// Options of one load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory `file("…")` paths are relative to (default: the directory of the files).
    pub base_dir: Option<PathBuf>,
    pub env: EnvSource,
}

/// The result of a load: the topology when there was no error, and every diagnostic.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub topology: Option<Topology>,
    pub diagnostics: Diagnostics,
    pub files: Vec<SourceFile>,
}

/// Failure to find or read the configuration files themselves.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no *.hcl files in this directory")]
    NoFiles { path: PathBuf },
}

/// The `*.hcl` files a `-c PATH` designates: the file itself, or the directory's `*.hcl`
/// files sorted by name.
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let rd = std::fs::read_dir(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "hcl") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

/// Loads the topology at `path` (a file or a directory of `*.hcl`).
///
/// A file that is not UTF-8 is reported at the line and column of its first invalid byte;
/// nothing else is checked then (the rest of the text cannot be trusted).
pub fn load_path(path: &Path, env: EnvSource) -> Result<Loaded, LoadError> {
    let files = config_files(path)?;
    let mut sources = Vec::new();
    let mut not_utf8 = Diagnostics::default();
    for f in &files {
        let bytes = std::fs::read(f).map_err(|source| LoadError::Read {
            path: f.clone(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => sources.push(SourceFile::new(f.clone(), text)),
            Err(e) => {
                let (file, d) = not_utf8_diagnostic(f, e.as_bytes(), e.utf8_error());
                not_utf8.push(d);
                sources.push(file);
            }
        }
    }
    if !not_utf8.is_empty() {
        return Ok(Loaded {
            topology: None,
            diagnostics: not_utf8,
            files: sources,
        });
    }
    let base_dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    Ok(load_sources(
        sources,
        &LoadOptions {
            base_dir: Some(base_dir),
            env,
        },
    ))
}

/// The error for a configuration file that is not UTF-8, at its first invalid byte, with the
/// file as text (invalid bytes replaced) to show the line.
fn not_utf8_diagnostic(
    path: &Path,
    bytes: &[u8],
    err: std::str::Utf8Error,
) -> (SourceFile, Diagnostic) {
    let valid = err.valid_up_to();
    let bad = bytes.get(valid).copied().unwrap_or(0);
    // The lossy text keeps the valid prefix byte for byte, so `valid` is an offset into it
    // (less the byte order mark SourceFile drops).
    let text = String::from_utf8_lossy(bytes).into_owned();
    let bom = if text.starts_with(super::diag::BOM) {
        super::diag::BOM.len_utf8()
    } else {
        0
    };
    let file = SourceFile::new(path, text);
    let offset = valid - bom.min(valid);
    let d = Diagnostic::at(
        Severity::Error,
        &file,
        offset..offset + 1,
        format!(
            "the file is not UTF-8 text: byte 0x{bad:02X} here is not part of a UTF-8 character; save the file as UTF-8"
        ),
    );
    (file, d)
}

/// Loads one in-memory file (tests, `fmt`).
pub fn load_str(name: &str, src: &str) -> Loaded {
    load_sources(vec![SourceFile::new(name, src)], &LoadOptions::default())
}

/// Loads already-read files.
pub fn load_sources(files: Vec<SourceFile>, opts: &LoadOptions) -> Loaded {
    let mut cx = Loader {
        files: &files,
        diags: Diagnostics::default(),
        opts,
        seen_idents: HashMap::new(),
        bad_vars: Vec::new(),
        bad_locals: Vec::new(),
    };
    let topology = cx.run();
    let mut diagnostics = cx.diags;
    diagnostics.sort();
    let topology = if diagnostics.has_errors() {
        None
    } else {
        topology
    };
    Loaded {
        topology,
        diagnostics,
        files,
    }
}

// ---------------------------------------------------------------------------------------
// Raw structure with spans, after schema checks.

#[derive(Debug, Clone)]
struct RawAttr {
    file: usize,
    name: String,
    key_span: Range<usize>,
    expr: hcl_edit::expr::Expression,
    expr_span: Range<usize>,
}

#[derive(Debug, Clone)]
struct RawBlock {
    schema: &'static BlockSchema,
    file: usize,
    ident_span: Range<usize>,
    labels: Vec<(String, Range<usize>)>,
    attrs: Vec<RawAttr>,
    blocks: Vec<RawBlock>,
}

impl RawBlock {
    fn label(&self) -> &str {
        self.labels.first().map(|l| l.0.as_str()).unwrap_or("")
    }
    fn label_span(&self) -> Range<usize> {
        self.labels
            .first()
            .map(|l| l.1.clone())
            .unwrap_or(self.ident_span.clone())
    }
    fn child(&self, ident: &str) -> Option<&RawBlock> {
        self.blocks.iter().find(|b| b.schema.ident == ident)
    }
}

/// An evaluated, type-checked attribute.
#[derive(Debug, Clone)]
struct Val {
    value: Value,
    attr: RawAttr,
}

type Evaluated = HashMap<String, Val>;

fn span_of(s: &impl Span) -> Range<usize> {
    s.span().unwrap_or(0..0)
}

// ---------------------------------------------------------------------------------------
// Functions available to expressions.

struct FnEnv {
    base_dir: PathBuf,
    env: EnvSource,
}

thread_local! {
    static FN_ENV: RefCell<Option<FnEnv>> = const { RefCell::new(None) };
}

fn fn_env(args: FuncArgs) -> Result<Value, String> {
    let name = args[0].as_str().unwrap_or_default().to_string();
    FN_ENV.with(|e| {
        let e = e.borrow();
        let e = e.as_ref().ok_or("no environment")?;
        e.env
            .get(&name)
            .map(Value::from)
            .ok_or_else(|| format!("environment variable {} is not set", shown(&name)))
    })
}

/// The largest file `file("…")` reads: a secret, a certificate or a short text. Anything
/// bigger is a mistake (a device, a log, an image), refused before it can exhaust memory.
pub const FILE_MAX_BYTES: u64 = 1 << 20;

fn fn_file(args: FuncArgs) -> Result<Value, String> {
    let name = args[0].as_str().unwrap_or_default().to_string();
    FN_ENV.with(|e| {
        let e = e.borrow();
        let e = e.as_ref().ok_or("no environment")?;
        let path = resolve_path(&e.base_dir, &name);
        read_small_file(&path)
            .map(|s| Value::from(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|why| {
                format!(
                    "cannot read {} (relative to the configuration directory): {why}",
                    quote(&name)
                )
            })
    })
}

/// Reads a regular file of at most [`FILE_MAX_BYTES`] bytes as UTF-8 text. A FIFO, a device, a
/// socket or a directory is refused without being opened (opening a FIFO would block), and
/// never more than the limit plus one byte is read, whatever the file claims its size is.
fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(kind) = kind {
        return Err(format!("it is {kind}; file() reads only regular files"));
    }
    let too_big = |n: String| {
        format!(
            "it is larger than {} bytes (1 MiB){n}, the limit of file()",
            FILE_MAX_BYTES
        )
    };
    if meta.len() > FILE_MAX_BYTES {
        return Err(too_big(format!(": {} bytes", meta.len())));
    }
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let opened = f.metadata().map_err(|e| e.to_string())?;
    if !opened.is_file() || opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err("it was replaced while being read".into());
    }
    let mut buf = Vec::new();
    f.take(FILE_MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > FILE_MAX_BYTES {
        return Err(too_big(String::new()));
    }
    String::from_utf8(buf).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1;
        let start = bytes[..valid]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&bytes[start..valid]).chars().count() + 1;
        format!(
            "it is not UTF-8 text: byte 0x{:02X} at line {line}, column {col} is not part of a UTF-8 character",
            bytes[valid]
        )
    })
}

fn resolve_path(base: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else if let Some(rest) = name.strip_prefix("~/") {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| p.to_path_buf())
    } else {
        base.join(p)
    }
}

fn base_context() -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "env",
        FuncDef::builder().param(ParamType::String).build(fn_env),
    );
    ctx.declare_func(
        "file",
        FuncDef::builder().param(ParamType::String).build(fn_file),
    );
    ctx
}

// ---------------------------------------------------------------------------------------

struct Loader<'a> {
    files: &'a [SourceFile],
    diags: Diagnostics,
    opts: &'a LoadOptions,
    /// Block idents seen, including blocks rejected for their own errors (to avoid
    /// follow-on diagnostics such as "no cluster block").
    seen_idents: HashMap<String, usize>,
    /// Variables that have no value (already reported).
    bad_vars: Vec<String>,
    /// Locals that have no value (already reported).
    bad_locals: Vec<String>,
}

impl Loader<'_> {
    fn err(&mut self, file: usize, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::at(
            Severity::Error,
            &self.files[file],
            span,
            msg,
        ));
    }

    fn warn(&mut self, file: usize, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::at(
            Severity::Warning,
            &self.files[file],
            span,
            msg,
        ));
    }

    /// Reports `key` as declared twice when `seen` has it (pointing at `b`'s label, with a
    /// note where it was first declared); otherwise records it. True when it was a duplicate.
    fn duplicate(
        &mut self,
        seen: &mut HashMap<String, (usize, Range<usize>)>,
        key: String,
        b: &RawBlock,
        message: String,
    ) -> bool {
        if let Some((f, s)) = seen.get(&key) {
            let note = self.note_at(*f, s);
            let d = Diagnostic::at(
                Severity::Error,
                &self.files[b.file],
                b.label_span(),
                message,
            )
            .with_note(format!("first declared at {note}"));
            self.diags.push(d);
            return true;
        }
        seen.insert(key, (b.file, b.label_span()));
        false
    }

    fn note_at(&self, file: usize, span: &Range<usize>) -> String {
        let f = &self.files[file];
        let (l, c) = f.line_col(span.start);
        format!("{}:{l}:{c}", f.path.display())
    }

    fn run(&mut self) -> Option<Topology> {
        // 1. Parse and check against the schema.
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
        for ident in ["cluster", "backend"] {
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

        // 2. Variables and locals.
        FN_ENV.with(|e| {
            *e.borrow_mut() = Some(FnEnv {
                base_dir: self.opts.base_dir.clone().unwrap_or_default(),
                env: self.opts.env.clone(),
            })
        });
        let ctx = self.variables_and_locals(&top);

        // 3. Evaluate everything else and build the model.
        let topo = self.build(&top, &ctx);
        FN_ENV.with(|e| *e.borrow_mut() = None);
        if parse_ok { topo } else { None }
    }

    fn walk_body(
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

    fn walk_block(
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
                .entry(format!("cluster.{ident}"))
                .or_default() += 1;
        }
        let Some(schema) = parent.block(ident) else {
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
        for a in schema.attrs.iter().filter(|a| a.required) {
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
        Some(raw)
    }

    // -- variables and locals ------------------------------------------------------------

    fn variables_and_locals(&mut self, top: &[RawBlock]) -> Context<'static> {
        let base = base_context();
        let mut vars = hcl::Map::new();
        for b in top.iter().filter(|b| b.schema.ident == "variable") {
            let name = b.label().to_string();
            if vars.contains_key(&name) {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("variable {} is declared twice", code(&name)),
                );
                continue;
            }
            let env_name = format!("K3SPLAN_VAR_{name}");
            let value = if let Some(v) = self.opts.env.get(&env_name) {
                Value::from(v)
            } else if let Some(def) = b.attrs.iter().find(|a| a.name == "default") {
                // A default is a constant: it is evaluated before any variable or local.
                let refs = expr_refs(&def.expr);
                let value = match refs.refs.first() {
                    Some(r) if r.root == "var" && r.name == name => {
                        let me = shown(&format!("var.{name}"));
                        self.err(
                            def.file,
                            r.span.clone(),
                            format!(
                                "cycle: {me} → {me}: the default of variable {} refers to itself",
                                code(&name)
                            ),
                        );
                        None
                    }
                    Some(r) => {
                        self.err(
                            def.file,
                            r.span.clone(),
                            format!(
                                "the default of variable {} cannot refer to {}: a default is a constant; derive values from variables in a `locals` block",
                                code(&name),
                                code(&format!("{}.{}", r.root, r.name))
                            ),
                        );
                        None
                    }
                    None => self.eval_expr(def, &base),
                };
                match value {
                    Some(v) => v,
                    None => {
                        // Reported; uses of the variable are not reported again.
                        self.bad_vars.push(name.clone());
                        Value::Null
                    }
                }
            } else {
                self.err(
                    b.file,
                    b.label_span(),
                    format!(
                        "variable {} has no value: give it a `default` or set {}",
                        code(&name),
                        shown(&env_name)
                    ),
                );
                self.bad_vars.push(name.clone());
                Value::Null
            };
            vars.insert(name, value);
        }
        let mut ctx = base_context();
        ctx.declare_var("var", Value::Object(vars.clone()));

        // Locals may refer to each other: evaluate until nothing more resolves.
        let mut pending: Vec<RawAttr> = top
            .iter()
            .filter(|b| b.schema.ident == "locals")
            .flat_map(|b| b.attrs.iter().cloned())
            .collect();
        let mut locals = hcl::Map::new();
        loop {
            let mut lctx = base_context();
            lctx.declare_var("var", Value::Object(vars.clone()));
            lctx.declare_var("local", Value::Object(locals.clone()));
            let before = pending.len();
            let mut still = Vec::new();
            for a in pending {
                let expr: Expression = a.expr.clone().into();
                match expr.evaluate(&lctx) {
                    Ok(v) => {
                        if locals.contains_key(&a.name) {
                            self.err(
                                a.file,
                                a.key_span.clone(),
                                format!("local {} is defined twice", code(&a.name)),
                            );
                        } else {
                            locals.insert(a.name.clone(), v);
                        }
                    }
                    Err(_) => still.push(a),
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let mut lctx = base_context();
        lctx.declare_var("var", Value::Object(vars.clone()));
        lctx.declare_var("local", Value::Object(locals.clone()));
        self.report_pending_locals(&pending, &lctx);
        ctx.declare_var("local", Value::Object(locals));
        ctx
    }

    /// Reports the locals that could not be evaluated. Each one is in a cycle (reported as
    /// the chain of references), uses a local that failed (not reported again: its error is
    /// the cause), or has an error of its own (reported as evaluation found it).
    fn report_pending_locals(&mut self, pending: &[RawAttr], lctx: &Context) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, a) in pending.iter().enumerate() {
            index.entry(a.name.as_str()).or_insert(i);
        }
        // The references of each pending local to pending locals: (target, span).
        let succ: Vec<Vec<(usize, Range<usize>)>> = pending
            .iter()
            .map(|a| {
                expr_refs(&a.expr)
                    .refs
                    .into_iter()
                    .filter(|r| r.root == "local")
                    .filter_map(|r| index.get(r.name.as_str()).map(|j| (*j, r.span)))
                    .collect()
            })
            .collect();
        let mut in_cycle = vec![false; pending.len()];
        for i in 0..pending.len() {
            if in_cycle[i] || index.get(pending[i].name.as_str()) != Some(&i) {
                continue;
            }
            let Some(path) = shortest_cycle(i, &succ) else {
                continue;
            };
            for &j in &path {
                in_cycle[j] = true;
            }
            let chain: Vec<String> = path
                .iter()
                .chain(std::iter::once(&i))
                .map(|&j| shown(&format!("local.{}", pending[j].name)))
                .collect();
            let span_of_edge = |from: usize, to: usize| {
                succ[from]
                    .iter()
                    .find(|(j, _)| *j == to)
                    .map(|(_, s)| s.clone())
                    .unwrap_or(pending[from].expr_span.clone())
            };
            let next = |k: usize| path.get(k + 1).copied().unwrap_or(i);
            let a = &pending[i];
            let mut d = Diagnostic::at(
                Severity::Error,
                &self.files[a.file],
                span_of_edge(i, next(0)),
                format!(
                    "cycle: {}: these locals refer to each other, so none has a value",
                    chain.join(" → ")
                ),
            );
            if path.len() == 1 {
                d.message = format!("cycle: {}: this local refers to itself", chain.join(" → "));
            }
            for k in 1..path.len() {
                let from = path[k];
                let to = next(k);
                let note = self.note_at(pending[from].file, &span_of_edge(from, to));
                d = d.with_note(format!("{} refers to {} at {note}", chain[k], chain[k + 1]));
            }
            self.diags.push(d);
        }
        for (i, a) in pending.iter().enumerate() {
            self.bad_locals.push(a.name.clone());
            if !in_cycle[i] && succ[i].is_empty() {
                // The real error (an undefined variable, a failing function…).
                self.eval_expr(a, lctx);
            }
        }
    }

    fn eval_expr(&mut self, a: &RawAttr, ctx: &Context) -> Option<Value> {
        let expr: Expression = a.expr.clone().into();
        match expr.evaluate(ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                let refs = expr_refs(&a.expr);
                if refs.refs.iter().any(|r| match r.root {
                    "var" => self.bad_vars.contains(&r.name),
                    _ => self.bad_locals.contains(&r.name),
                }) {
                    // Reported where that variable or local is defined.
                    return None;
                }
                let mut span = a.expr_span.clone();
                let attr = code(&a.name);
                use hcl::eval::ErrorKind as K;
                let msg = match e.kind() {
                    K::UndefinedVar(v) => format!(
                        "undefined variable {} in {attr}; variables are `var.NAME` and `local.NAME`",
                        code(v)
                    ),
                    K::NoSuchKey(k) => {
                        if refs.refs.iter().any(|r| r.root == "var" && r.name == *k) {
                            format!(
                                "undefined variable {}: there is no `variable {}` block",
                                code(&format!("var.{k}")),
                                quote(k)
                            )
                        } else if refs.refs.iter().any(|r| r.root == "local" && r.name == *k) {
                            format!(
                                "undefined local {}: no `locals` block defines {}",
                                code(&format!("local.{k}")),
                                code(k)
                            )
                        } else {
                            format!("no such key {} in {attr}", code(k))
                        }
                    }
                    K::UndefinedFunc(f) => format!(
                        "unknown function {} in {attr}; available: env(), file()",
                        code(&f.to_string())
                    ),
                    K::FuncCall(f, m) => {
                        // At the call itself, which may be inside a larger expression.
                        let name = f.to_string();
                        // Of several calls, the one whose literal argument the message names.
                        let named = |arg: &Option<String>| {
                            arg.as_ref().is_some_and(|x| {
                                m.contains(&quote(x)) || m.contains(&format!(" {} ", shown(x)))
                            })
                        };
                        let calls = || refs.calls.iter().filter(|(n, ..)| *n == name);
                        if let Some((.., s)) = calls()
                            .find(|(_, arg, _)| named(arg))
                            .or_else(|| calls().next())
                        {
                            span = s.clone();
                        }
                        format!("{}(): {m}", shown(&name))
                    }
                    K::Unexpected(v, expected) => format!(
                        "cannot evaluate {attr}: unexpected value {}, expected {expected}",
                        code(&v.to_string())
                    ),
                    K::UnaryOp(op, v) => format!(
                        "cannot evaluate {attr}: operator `{op}` does not apply to {}",
                        code(&v.to_string())
                    ),
                    K::BinaryOp(l, op, r) => format!(
                        "cannot evaluate {attr}: operator `{op}` does not apply to {} and {}",
                        code(&l.to_string()),
                        code(&r.to_string())
                    ),
                    K::KeyExists(k) => {
                        format!("cannot evaluate {attr}: key {} is set twice", code(k))
                    }
                    other => format!("cannot evaluate {attr}: {other}"),
                };
                self.err(a.file, span, msg);
                None
            }
        }
    }

    /// Evaluates and type-checks every attribute of a block.
    fn eval_block(&mut self, b: &RawBlock, ctx: &Context) -> Evaluated {
        let mut out = HashMap::new();
        for a in &b.attrs {
            let Some(sch) = b.schema.attr(&a.name) else {
                continue;
            };
            if sch.ty == Ty::Secret {
                if let Some(v) = self.eval_secret(a, ctx) {
                    out.insert(a.name.clone(), v);
                }
                continue;
            }
            let Some(value) = self.eval_expr(a, ctx) else {
                continue;
            };
            if let Some(value) = self.check_type(a, value, sch.ty) {
                out.insert(
                    a.name.clone(),
                    Val {
                        value,
                        attr: a.clone(),
                    },
                );
            }
        }
        out
    }

    /// Secrets: `env("X")` may be unset at validation time; `file("…")` must be readable;
    /// a literal is accepted with a warning.
    fn eval_secret(&mut self, a: &RawAttr, ctx: &Context) -> Option<Val> {
        let expr: Expression = a.expr.clone().into();
        let (source, value) = match &expr {
            Expression::FuncCall(call) if call.args.len() == 1 => {
                let fname = call.name.name.as_str();
                match (fname, &call.args[0]) {
                    ("env", Expression::String(var)) => {
                        (format!("env(\"{var}\")"), self.opts.env.get(var))
                    }
                    _ => {
                        let v = self.eval_expr(a, ctx)?;
                        let v = self.check_type(a, v, Ty::String)?;
                        (format!("{fname}(…)"), v.as_str().map(str::to_string))
                    }
                }
            }
            Expression::String(s) => {
                let what = a.name.as_str();
                let hint = if what == "token" {
                    "K3S_TOKEN"
                } else {
                    "VRRP_PASSWORD"
                };
                self.warn(
                    a.file,
                    a.expr_span.clone(),
                    format!(
                        "`{what}` is written as a literal: it will end up in version control; use env(\"{hint}\") or file(\"…\")"
                    ),
                );
                ("literal".to_string(), Some(s.clone()))
            }
            _ => {
                let v = self.eval_expr(a, ctx)?;
                let v = self.check_type(a, v, Ty::String)?;
                ("expression".to_string(), v.as_str().map(str::to_string))
            }
        };
        // Carry the secret through a Value: source and value joined by NUL; decoded in build.
        let packed = match &value {
            Some(v) => format!("{source}\u{0}{v}"),
            None => source,
        };
        Some(Val {
            value: Value::from(packed),
            attr: a.clone(),
        })
    }

    fn check_type(&mut self, a: &RawAttr, value: Value, ty: Ty) -> Option<Value> {
        let found = value_kind(&value);
        if value.is_null()
            && expr_refs(&a.expr).refs.iter().any(|r| match r.root {
                "var" => self.bad_vars.contains(&r.name),
                _ => self.bad_locals.contains(&r.name),
            })
        {
            return None; // already reported at the variable
        }
        let bad = |me: &mut Self, span: Range<usize>, what: &str, found: &str| {
            me.err(
                a.file,
                span,
                format!("`{}` must be {what}, found {found}", a.name),
            );
        };
        match ty {
            Ty::Any | Ty::Secret => Some(value),
            Ty::String => match value {
                Value::String(_) => Some(value),
                _ => {
                    bad(self, a.expr_span.clone(), &ty.describe(), found);
                    None
                }
            },
            Ty::Bool => match value {
                Value::Bool(_) => Some(value),
                Value::String(ref s) if s == "true" || s == "false" => {
                    Some(Value::Bool(s == "true"))
                }
                _ => {
                    bad(self, a.expr_span.clone(), &ty.describe(), found);
                    None
                }
            },
            Ty::Int(lo, hi) => {
                // An integer too large for i64 (`1e20`, `99999999999999999999`) is out of range
                // like any other, shown as written: never saturated to i64::MAX.
                let huge = |f: f64| f.fract() == 0.0 && !(-9.2e18..9.2e18).contains(&f);
                let (n, shown_n) = match &value {
                    Value::Number(num) => match num.as_i64() {
                        Some(i) => (Some(i), i.to_string()),
                        None => match num.as_f64() {
                            Some(f) if huge(f) => {
                                let written = match &a.expr {
                                    hcl_edit::expr::Expression::Number(_) => {
                                        slice(&self.files[a.file].text, a.expr_span.clone())
                                            .to_string()
                                    }
                                    _ => num.to_string(),
                                };
                                (None, written)
                            }
                            Some(f) if f.fract() == 0.0 => (Some(f as i64), num.to_string()),
                            _ => (None, String::new()),
                        },
                    },
                    Value::String(s) => match s.parse::<i64>() {
                        Ok(i) => (Some(i), i.to_string()),
                        Err(_) if s.parse::<f64>().is_ok_and(huge) => (None, s.clone()),
                        Err(_) => (None, String::new()),
                    },
                    _ => (None, String::new()),
                };
                match n {
                    Some(n) if (lo..=hi).contains(&n) => Some(Value::from(n)),
                    None if shown_n.is_empty() => {
                        bad(self, a.expr_span.clone(), &ty.describe(), found);
                        None
                    }
                    _ => {
                        self.err(
                            a.file,
                            a.expr_span.clone(),
                            format!(
                                "`{}` must be from {lo} to {hi}, found {}",
                                a.name,
                                shown(&shown_n)
                            ),
                        );
                        None
                    }
                }
            }
            Ty::StringList => match value {
                Value::Array(ref items) => {
                    let mut ok = true;
                    for (i, it) in items.iter().enumerate() {
                        if !matches!(it, Value::String(_)) {
                            ok = false;
                            let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                            self.err(
                                a.file,
                                span,
                                format!(
                                    "`{}` must be a list of strings, element {} is {}",
                                    a.name,
                                    i + 1,
                                    value_kind(it)
                                ),
                            );
                        }
                    }
                    ok.then_some(value)
                }
                Value::String(_) => {
                    bad(
                        self,
                        a.expr_span.clone(),
                        "a list of strings (write it in brackets: [\"…\"])",
                        found,
                    );
                    None
                }
                _ => {
                    bad(self, a.expr_span.clone(), &ty.describe(), found);
                    None
                }
            },
            Ty::StringMap => match value {
                Value::Object(ref m) => {
                    if let Some((k, v)) = m.iter().find(|(_, v)| !matches!(v, Value::String(_))) {
                        self.err(
                            a.file,
                            a.expr_span.clone(),
                            format!(
                                "`{}` must be a map of strings, {k_c} is {}",
                                a.name,
                                value_kind(v),
                                k_c = code(k)
                            ),
                        );
                        None
                    } else {
                        Some(value)
                    }
                }
                _ => {
                    bad(self, a.expr_span.clone(), &ty.describe(), found);
                    None
                }
            },
        }
    }

    // -- building the model ---------------------------------------------------------------

    fn build(&mut self, top: &[RawBlock], ctx: &Context) -> Option<Topology> {
        let clusters: Vec<&RawBlock> = top.iter().filter(|b| b.schema.ident == "cluster").collect();
        let cluster_block = match clusters.first() {
            Some(c) => Some(*c),
            None if self.seen_idents.contains_key("cluster") => None,
            None => {
                let path = self
                    .files
                    .first()
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                self.diags.push(Diagnostic::global(
                    Severity::Error,
                    &path,
                    "no `cluster` block: a topology needs exactly one `cluster \"NAME\" { … }`",
                ));
                None
            }
        };
        let cluster = cluster_block.and_then(|b| self.build_cluster(b, ctx));

        // Nodes.
        let node_block_count = self.seen_idents.get("node").copied().unwrap_or(0);
        let mut nodes = Vec::new();
        let mut node_blocks = Vec::new();
        let mut names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut addrs: HashMap<IpAddr, (usize, Range<usize>, String)> = HashMap::new();
        for b in top.iter().filter(|b| b.schema.ident == "node") {
            let name = b.label().to_string();
            let msg = format!("duplicate node name {name_q}", name_q = quote(&name));
            if self.duplicate(&mut names, name.clone(), b, msg) {
                continue;
            }
            if !is_dns_name(&name) {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("node name {name_q} is not a valid Kubernetes node name (lowercase letters, digits, '-' and '.')", name_q = quote(&name)),
                );
            }
            let ssh_default = cluster.as_ref().map(|c| c.ssh.clone()).unwrap_or_default();
            if let Some(node) = self.build_node(b, ctx, &ssh_default) {
                if let Some((f, s, other)) = addrs.get(&node.address) {
                    let note = self.note_at(*f, s);
                    let span = b
                        .attrs
                        .iter()
                        .find(|a| a.name == "address")
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(b.label_span());
                    let d = Diagnostic::at(
                        Severity::Error,
                        &self.files[b.file],
                        span,
                        format!(
                            "address {} is already used by node {other_q}",
                            node.address,
                            other_q = quote(other)
                        ),
                    )
                    .with_note(format!(
                        "{other_q} declared at {note}",
                        other_q = quote(other)
                    ));
                    self.diags.push(d);
                } else {
                    let span = b
                        .attrs
                        .iter()
                        .find(|a| a.name == "address")
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(b.label_span());
                    addrs.insert(node.address, (b.file, span, node.name.clone()));
                }
                nodes.push(node);
                node_blocks.push(b);
            }
        }

        // Storage.
        let mut storage = Vec::new();
        let mut seen_storage: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        for b in top.iter().filter(|b| b.schema.ident == "storage") {
            let key = b.label().to_string();
            let msg = format!("duplicate storage binding {key_q}", key_q = quote(&key));
            if self.duplicate(&mut seen_storage, key, b, msg) {
                continue;
            }
            if let Some(s) = self.build_storage(b, ctx, &nodes) {
                storage.push(s);
            }
        }

        // Add-ons.
        let mut addons = Vec::new();
        let mut seen_addons: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        for b in top.iter().filter(|b| b.schema.ident == "addon") {
            let v = self.eval_block(b, ctx);
            let namespace = str_of(&v, "namespace").unwrap_or_else(|| "kube-system".into());
            let key = format!("{namespace}/{}", b.label());
            let msg = format!(
                "duplicate addon {} in namespace {}",
                quote(b.label()),
                quote(&namespace)
            );
            if self.duplicate(&mut seen_addons, key, b, msg) {
                continue;
            }
            let spread = str_of(&v, "spread");
            if let (Some(s), Some(val)) = (&spread, v.get("spread"))
                && (s.is_empty() || s.contains(char::is_whitespace))
            {
                self.err(
                        b.file,
                        val.attr.expr_span.clone(),
                        format!("`spread` must be a node label key such as \"kubernetes.io/hostname\", found {s_q}", s_q = quote(s)),
                    );
            }
            let Some(replicas) = int_of(&v, "replicas") else {
                continue;
            };
            addons.push(Addon {
                name: b.label().to_string(),
                namespace,
                replicas: replicas as u32,
                spread,
            });
        }

        let backend = top
            .iter()
            .find(|b| b.schema.ident == "backend")
            .and_then(|b| self.build_backend(b, ctx));

        // Whole-topology rules.
        if let (Some(cb), Some(cluster)) = (cluster_block, cluster.as_ref()) {
            let complete = nodes.len() == node_block_count;
            self.topology_rules(cb, cluster, &nodes, &node_blocks, complete);
        }

        let cluster = cluster?;
        Some(Topology {
            cluster,
            nodes,
            storage,
            addons,
            backend,
        })
    }

    fn build_ssh(
        &mut self,
        b: Option<&RawBlock>,
        ctx: &Context,
        base: &SshSettings,
    ) -> SshSettings {
        let mut ssh = base.clone();
        if let Some(b) = b {
            let v = self.eval_block(b, ctx);
            if let Some(u) = str_of(&v, "user") {
                if u.is_empty() {
                    self.err(
                        b.file,
                        v["user"].attr.expr_span.clone(),
                        "`user` must not be empty",
                    );
                }
                ssh.user = u;
            }
            if let Some(p) = int_of(&v, "port") {
                ssh.port = p as u16;
            }
            if let Some(k) = str_of(&v, "private_key_file") {
                ssh.private_key_file = Some(PathBuf::from(k));
            }
            if let Some(k) = str_of(&v, "known_hosts_file") {
                ssh.known_hosts_file = PathBuf::from(k);
            }
        }
        ssh
    }

    fn build_host(&mut self, b: Option<&RawBlock>, ctx: &Context) -> HostLayout {
        let mut h = HostLayout::default();
        let Some(b) = b else {
            return h;
        };
        let v = self.eval_block(b, ctx);
        for key in ["k3s_binary", "config_path"] {
            if let Some(p) = str_of(&v, key) {
                if !p.starts_with('/') {
                    self.err(
                        b.file,
                        v[key].attr.expr_span.clone(),
                        format!(
                            "`{key}` must be an absolute path, found {p_q}",
                            p_q = quote(&p)
                        ),
                    );
                }
                match key {
                    "k3s_binary" => h.k3s_binary = p,
                    _ => h.config_path = p,
                }
            }
        }
        for key in [
            "service_command",
            "uninstall_command",
            "agent_uninstall_command",
        ] {
            if let Some(list) = list_of(&v, key) {
                if list.is_empty() && key != "service_command" {
                    self.err(
                        b.file,
                        v[key].attr.expr_span.clone(),
                        format!("`{key}` must not be empty"),
                    );
                }
                match key {
                    "service_command" => h.service_command = list,
                    "uninstall_command" => h.uninstall_command = list,
                    _ => h.agent_uninstall_command = list,
                }
            }
        }
        h
    }

    fn build_cluster(&mut self, b: &RawBlock, ctx: &Context) -> Option<Cluster> {
        let v = self.eval_block(b, ctx);
        let data_dir = str_of(&v, "data_dir").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        if let Some(val) = v.get("data_dir")
            && !data_dir.starts_with('/')
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!(
                    "`data_dir` must be an absolute path, found {data_dir_q}",
                    data_dir_q = quote(&data_dir)
                ),
            );
        }
        let api_endpoint = str_of(&v, "api_endpoint");
        if let (Some(ep), Some(val)) = (&api_endpoint, v.get("api_endpoint"))
            && let Err(why) = check_https_url(ep)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!("`api_endpoint` {why}"),
            );
        }
        if let (Some(ver), Some(val)) = (str_of(&v, "k3s_version"), v.get("k3s_version"))
            && !is_k3s_version(&ver)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!(
                    "`k3s_version` must look like \"v1.28.5+k3s1\", found {ver_q}",
                    ver_q = quote(&ver)
                ),
            );
        }
        let ssh = self.build_ssh(b.child("ssh"), ctx, &SshSettings::default());

        let mut etcd = EtcdSettings::default();
        if let Some(eb) = b.child("etcd") {
            let ev = self.eval_block(eb, ctx);
            etcd.ca_file = str_of(&ev, "ca_file").map(PathBuf::from);
            etcd.cert_file = str_of(&ev, "cert_file").map(PathBuf::from);
            etcd.key_file = str_of(&ev, "key_file").map(PathBuf::from);
            let set = [&etcd.ca_file, &etcd.cert_file, &etcd.key_file]
                .iter()
                .filter(|f| f.is_some())
                .count();
            if set != 0 && set != 3 {
                self.err(
                    eb.file,
                    eb.ident_span.clone(),
                    "`ca_file`, `cert_file` and `key_file` go together: k3s's etcd requires a client certificate, so set all three (k3s: server/tls/etcd/server-ca.crt, client.crt, client.key)",
                );
            }
            if let Some(list) = list_of(&ev, "endpoints") {
                for (i, ep) in list.iter().enumerate() {
                    if let Err(why) = check_https_url(ep) {
                        let a = &ev["endpoints"].attr;
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        self.err(eb.file, span, format!("etcd endpoint {why}"));
                    }
                }
                etcd.endpoints = list;
            }
            if let Some(s) = bool_of(&ev, "snapshot_before_apply") {
                etcd.snapshot_before_apply = s;
            }
        }

        let vip = b.child("vip").and_then(|vb| {
            let vv = self.eval_block(vb, ctx);
            let addr_s = str_of(&vv, "address")?;
            let address = match addr_s.parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        vb.file,
                        vv["address"].attr.expr_span.clone(),
                        format!(
                            "invalid IP address {addr_s_q} for the VIP",
                            addr_s_q = quote(&addr_s)
                        ),
                    );
                    return None;
                }
            };
            let interface = str_of(&vv, "interface")?;
            if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
                self.err(
                    vb.file,
                    vv["interface"].attr.expr_span.clone(),
                    format!(
                        "invalid network interface name {interface_q}",
                        interface_q = quote(&interface)
                    ),
                );
            }
            let router_id = int_of(&vv, "router_id")? as u8;
            let manifest_path =
                str_of(&vv, "manifest_path").unwrap_or_else(|| DEFAULT_VIP_MANIFEST.into());
            if !manifest_path.starts_with('/') {
                self.err(
                    vb.file,
                    vv["manifest_path"].attr.expr_span.clone(),
                    "`manifest_path` must be an absolute path",
                );
            }
            Some(Vip {
                address,
                interface,
                router_id,
                password: secret_of(&vv, "password"),
                manifest_path,
            })
        });

        Some(Cluster {
            name: b.label().to_string(),
            k3s_version: str_of(&v, "k3s_version"),
            token: secret_of(&v, "token"),
            api_endpoint,
            kubeconfig: str_of(&v, "kubeconfig").map(PathBuf::from),
            kube_context: str_of(&v, "kube_context"),
            data_dir,
            install_command: str_of(&v, "install_command"),
            host: self.build_host(b.child("host"), ctx),
            etcd,
            vip,
            ssh,
        })
    }

    fn build_node(
        &mut self,
        b: &RawBlock,
        ctx: &Context,
        ssh_default: &SshSettings,
    ) -> Option<Node> {
        let v = self.eval_block(b, ctx);
        let name = b.label().to_string();
        let address = match str_of(&v, "address") {
            Some(s) => match s.parse::<IpAddr>() {
                Ok(a) if a.is_unspecified() => {
                    self.err(
                        b.file,
                        v["address"].attr.expr_span.clone(),
                        format!(
                            "node {name_q}: {s} is not a usable address",
                            name_q = quote(&name)
                        ),
                    );
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        b.file,
                        v["address"].attr.expr_span.clone(),
                        format!(
                            "node {name_q}: invalid IP address {s_q}",
                            name_q = quote(&name),
                            s_q = quote(&s)
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        let mut roles = Roles::default();
        let mut roles_ok = true;
        if let Some(list) = list_of(&v, "roles") {
            let a = v["roles"].attr.clone();
            if list.is_empty() {
                self.err(b.file, a.expr_span.clone(), format!("node {name_q} has no role: give it at least one of \"server\", \"etcd\", \"control-plane\", \"agent\"", name_q = quote(&name)));
                roles_ok = false;
            }
            for (i, r) in list.iter().enumerate() {
                let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                match Role::parse(r) {
                    Some(role) => {
                        if !roles.0.insert(role) {
                            self.warn(
                                b.file,
                                span,
                                format!("role {r_q} is listed twice", r_q = quote(r)),
                            );
                        }
                    }
                    None => {
                        roles_ok = false;
                        let mut msg = format!(
                            "unknown role {r_q}; roles are \"server\", \"etcd\", \"control-plane\", \"agent\"",
                            r_q = quote(r)
                        );
                        if let Some(s) = did_you_mean(r, Role::ALL.iter().map(|r| r.as_str())) {
                            msg = format!(
                                "unknown role {r_q}; did you mean {s_q}?",
                                r_q = quote(r),
                                s_q = quote(s)
                            );
                        } else if r == "master" {
                            msg = format!(
                                "unknown role {r_q}; did you mean \"server\"?",
                                r_q = quote(r)
                            );
                        }
                        self.err(b.file, span, msg);
                    }
                }
            }
            if roles.contains(Role::Agent) && roles.is_server() {
                let other = roles
                    .0
                    .iter()
                    .find(|r| **r != Role::Agent)
                    .map(|r| r.as_str())
                    .unwrap_or("server");
                self.err(
                    b.file,
                    a.expr_span.clone(),
                    format!(
                        "node {name_q} cannot be both \"agent\" and {other_q}: an agent runs no k3s server, so no etcd member and no control plane", name_q = quote(&name), other_q = quote(other)),
                );
                roles_ok = false;
            }
        } else {
            roles_ok = false;
        }
        let primary = bool_of(&v, "primary").unwrap_or(false);
        if primary && roles_ok && !roles.is_server() {
            self.err(
                b.file,
                v["primary"].attr.key_span.clone(),
                format!("node {name_q} is an agent and cannot be the VIP primary: keepalived runs on servers", name_q = quote(&name)),
            );
        }
        let mut taints = Vec::new();
        if let Some(list) = list_of(&v, "taints") {
            let a = v["taints"].attr.clone();
            for (i, t) in list.iter().enumerate() {
                match parse_taint(t) {
                    Ok(t) => taints.push(t),
                    Err(why) => {
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        self.err(
                            b.file,
                            span,
                            format!("invalid taint {t_q}: {why}", t_q = quote(t)),
                        );
                    }
                }
            }
        }
        let labels = v
            .get("labels")
            .and_then(|x| x.value.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        // `replace = true` was a persistent attribute: left in the file, it replaced the node
        // again on every apply (issue 13). A replacement is a one-shot command-line request.
        if let Some(r) = bool_of(&v, "replace") {
            let span = v["replace"].attr.key_span.clone();
            let how = format!(
                "remove it and run `k3splan apply -replace=node.{name}` (one-shot: recorded in the saved plan and the apply journal, never repeated)"
            );
            if r {
                self.err(
                    b.file,
                    span,
                    format!("`replace = true` is no longer supported: as an attribute it stays in the file and replaces node \"{name}\" again on every apply; {how}"),
                );
            } else {
                self.warn(
                    b.file,
                    span,
                    format!("`replace` is deprecated and has no effect; {how} when node \"{name}\" must be rebuilt"),
                );
            }
        }
        let ssh = self.build_ssh(b.child("ssh"), ctx, ssh_default);
        Some(Node {
            name,
            address: address?,
            roles: if roles_ok { roles } else { return None },
            primary,
            vip_priority: int_of(&v, "vip_priority").map(|p| p as u8),
            ssh,
            labels,
            taints,
            replace: false,
        })
    }

    fn build_storage(
        &mut self,
        b: &RawBlock,
        ctx: &Context,
        nodes: &[Node],
    ) -> Option<StorageBinding> {
        let v = self.eval_block(b, ctx);
        let key = b.label();
        let (namespace, name) = match key.split_once('/') {
            Some((ns, n)) if is_dns_label(ns) && is_dns_name(n) && !n.contains('/') => {
                (ns.to_string(), n.to_string())
            }
            _ => {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("storage label must be \"NAMESPACE/NAME\" (a workload's namespace and name), found {key_q}", key_q = quote(key)),
                );
                return None;
            }
        };
        let kind = match str_of(&v, "kind").as_deref() {
            Some("StatefulSet") => WorkloadKind::StatefulSet,
            Some("Deployment") => WorkloadKind::Deployment,
            Some(other) => {
                let mut msg = format!(
                    "unknown workload kind {other_q}; expected \"StatefulSet\" or \"Deployment\"",
                    other_q = quote(other)
                );
                if let Some(s) = did_you_mean(other, ["StatefulSet", "Deployment"]) {
                    msg = format!(
                        "unknown workload kind {other_q}; did you mean {s_q}?",
                        other_q = quote(other),
                        s_q = quote(s)
                    );
                }
                self.err(b.file, v["kind"].attr.expr_span.clone(), msg);
                return None;
            }
            None => return None,
        };
        let on_node_loss = match str_of(&v, "on_node_loss").as_deref() {
            None => OnNodeLoss::Keep,
            Some("rebind") => OnNodeLoss::Rebind,
            Some("recreate") => OnNodeLoss::Recreate,
            Some("keep") => OnNodeLoss::Keep,
            Some(other) => {
                let mut msg = format!(
                    "unknown on_node_loss policy {other_q}; expected \"rebind\", \"recreate\" or \"keep\"",
                    other_q = quote(other)
                );
                if let Some(s) = did_you_mean(other, ["rebind", "recreate", "keep"]) {
                    msg = format!(
                        "unknown on_node_loss policy {other_q}; did you mean {s_q}?",
                        other_q = quote(other),
                        s_q = quote(s)
                    );
                }
                self.err(b.file, v["on_node_loss"].attr.expr_span.clone(), msg);
                return None;
            }
        };
        if on_node_loss == OnNodeLoss::Rebind && kind == WorkloadKind::Deployment {
            self.err(
                b.file,
                v["on_node_loss"].attr.expr_span.clone(),
                "on_node_loss = \"rebind\" needs kind = \"StatefulSet\": a Deployment does not recreate a deleted PVC; use \"recreate\" (delete PVC and Deployment, its operator recreates both) or \"keep\"",
            );
        }
        let mut prefer_nodes = Vec::new();
        if let Some(list) = list_of(&v, "prefer_nodes") {
            let a = v["prefer_nodes"].attr.clone();
            for (i, n) in list.iter().enumerate() {
                match nodes.iter().find(|x| &x.name == n) {
                    Some(node) if node.roles.is_agent() || node.roles.is_server() => {}
                    _ => {
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        let mut msg = format!(
                            "storage {key_q} prefers node {n_q}, which is not declared",
                            key_q = quote(key),
                            n_q = quote(n)
                        );
                        if let Some(s) = did_you_mean(n, nodes.iter().map(|x| x.name.as_str())) {
                            msg.push_str(&format!("; did you mean {s_q}?", s_q = quote(s)));
                        }
                        self.err(b.file, span, msg);
                    }
                }
                prefer_nodes.push(n.clone());
            }
        }
        Some(StorageBinding {
            namespace,
            name,
            kind,
            on_node_loss,
            prefer_nodes,
        })
    }

    fn build_backend(&mut self, b: &RawBlock, ctx: &Context) -> Option<Backend> {
        let v = self.eval_block(b, ctx);
        match b.label() {
            "local" => {
                for k in ["endpoints", "prefix", "ca_file", "cert_file", "key_file"] {
                    if let Some(x) = v.get(k) {
                        self.err(
                            b.file,
                            x.attr.key_span.clone(),
                            format!("`{k}` is not an attribute of the local backend (only `path`)"),
                        );
                    }
                }
                Some(Backend::Local {
                    path: str_of(&v, "path").map(PathBuf::from),
                })
            }
            "etcd" => {
                if let Some(x) = v.get("path") {
                    self.err(
                        b.file,
                        x.attr.key_span.clone(),
                        "`path` is not an attribute of the etcd backend",
                    );
                }
                let endpoints = list_of(&v, "endpoints").unwrap_or_default();
                if endpoints.is_empty() {
                    self.err(
                        b.file,
                        b.ident_span.clone(),
                        "the etcd backend needs `endpoints`",
                    );
                }
                Some(Backend::Etcd {
                    endpoints,
                    prefix: str_of(&v, "prefix").unwrap_or_else(|| "k3splan/".into()),
                    ca_file: str_of(&v, "ca_file").map(PathBuf::from),
                    cert_file: str_of(&v, "cert_file").map(PathBuf::from),
                    key_file: str_of(&v, "key_file").map(PathBuf::from),
                })
            }
            other => {
                let mut msg = format!(
                    "unknown backend {other_q}; expected \"local\" or \"etcd\"",
                    other_q = quote(other)
                );
                if let Some(s) = did_you_mean(other, ["local", "etcd"]) {
                    msg = format!(
                        "unknown backend {other_q}; did you mean {s_q}?",
                        other_q = quote(other),
                        s_q = quote(s)
                    );
                }
                self.err(b.file, b.label_span(), msg);
                None
            }
        }
    }

    /// Rules about the topology as a whole. `complete` is false when some node blocks had
    /// errors of their own: counting rules are skipped then, to avoid follow-on noise.
    fn topology_rules(
        &mut self,
        cb: &RawBlock,
        cluster: &Cluster,
        nodes: &[Node],
        blocks: &[&RawBlock],
        complete: bool,
    ) {
        let voters = nodes.iter().filter(|n| n.roles.runs_etcd()).count();
        if !complete {
        } else if voters == 0 && !nodes.is_empty() {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no node runs etcd: give at least one node the role \"server\" or \"etcd\"",
            );
        } else if voters == 0 {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no nodes: declare at least one `node` with the role \"server\"",
            );
        } else if voters % 2 == 0 {
            self.warn(
                cb.file,
                cb.ident_span.clone(),
                format!(
                    "{voters} etcd members: an even number tolerates no more failures than {} (quorum is {}); use an odd number",
                    voters - 1,
                    voters / 2 + 1
                ),
            );
        }
        if !complete || nodes.iter().any(|n| n.roles.runs_control_plane()) || voters == 0 {
        } else {
            self.err(
                cb.file,
                cb.ident_span.clone(),
                "no node runs the control plane: give at least one node the role \"server\" or \"control-plane\"",
            );
        }
        let primaries: Vec<(&Node, &&RawBlock)> = nodes
            .iter()
            .zip(blocks.iter())
            .filter(|(n, _)| n.primary && n.roles.is_server())
            .collect();
        match &cluster.vip {
            Some(vip) => {
                if primaries.is_empty() && complete {
                    let span = cb
                        .child("vip")
                        .map(|v| v.ident_span.clone())
                        .unwrap_or(cb.ident_span.clone());
                    self.err(
                        cb.file,
                        span,
                        "a `vip` is declared but no node has `primary = true`: mark the server that should hold the VIP",
                    );
                }
                if primaries.len() > 1 {
                    let (first, fb) = primaries[0];
                    let first_span = fb
                        .attrs
                        .iter()
                        .find(|a| a.name == "primary")
                        .map(|a| a.key_span.clone())
                        .unwrap_or(fb.label_span());
                    let note = self.note_at(fb.file, &first_span);
                    for (n, b) in &primaries[1..] {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == "primary")
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        let d = Diagnostic::at(
                            Severity::Error,
                            &self.files[b.file],
                            span,
                            format!("node {} is a second VIP primary: only one node may have `primary = true`", quote(&n.name)),
                        )
                        .with_note(format!("{} is primary at {note}", quote(&first.name)));
                        self.diags.push(d);
                    }
                }
                if let Some((n, b)) = nodes
                    .iter()
                    .zip(blocks.iter())
                    .find(|(n, _)| n.address == vip.address)
                {
                    let vb = cb.child("vip").unwrap_or(cb);
                    let span = vb
                        .attrs
                        .iter()
                        .find(|a| a.name == "address")
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(vb.ident_span.clone());
                    let nspan = b
                        .attrs
                        .iter()
                        .find(|a| a.name == "address")
                        .map(|a| a.expr_span.clone())
                        .unwrap_or(b.label_span());
                    let note = self.note_at(b.file, &nspan);
                    let d = Diagnostic::at(
                        Severity::Error,
                        &self.files[vb.file],
                        span,
                        format!(
                            "the VIP {} is the address of node {}: the VIP must be a free address",
                            vip.address,
                            quote(&n.name)
                        ),
                    )
                    .with_note(format!("{} has that address at {note}", quote(&n.name)));
                    self.diags.push(d);
                }
                if let [(primary, _)] = primaries.as_slice() {
                    let prio = |n: &Node| {
                        n.vip_priority.unwrap_or(if n.primary {
                            PRIMARY_PRIORITY
                        } else {
                            BACKUP_PRIORITY
                        })
                    };
                    let p = prio(primary);
                    for (n, b) in nodes.iter().zip(blocks.iter()) {
                        if n.name == primary.name || !n.roles.is_server() || prio(n) < p {
                            continue;
                        }
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == "vip_priority")
                            .map(|a| a.expr_span.clone())
                            .unwrap_or(b.label_span());
                        self.err(
                            b.file,
                            span,
                            format!(
                                "node {} has VIP priority {}, not below the primary {} ({p}): the primary must have the highest priority",
                                quote(&n.name),
                                prio(n),
                                quote(&primary.name)
                            ),
                        );
                    }
                }
            }
            None if self.seen_idents.contains_key("cluster.vip") => {}
            None => {
                for (n, b) in nodes.iter().zip(blocks.iter()) {
                    if n.primary {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == "primary")
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        self.warn(b.file, span, format!("node {} is `primary`, but the cluster declares no `vip`: it has no effect", quote(&n.name)));
                    }
                    if n.vip_priority.is_some() {
                        let span = b
                            .attrs
                            .iter()
                            .find(|a| a.name == "vip_priority")
                            .map(|a| a.key_span.clone())
                            .unwrap_or(b.label_span());
                        self.warn(b.file, span, format!("node {} sets `vip_priority`, but the cluster declares no `vip`: it has no effect", quote(&n.name)));
                    }
                }
            }
        }
    }
}

/// Pseudo-schema carrying attributes up from `walk_body` (never matched by name).
static ATTR_CARRIER: BlockSchema = BlockSchema {
    ident: "",
    labels: &[],
    repeatable: true,
    attrs: &[],
    blocks: &[],
    any_attrs: true,
};

// ---------------------------------------------------------------------------------------
// Helpers.

fn offset_of(f: &SourceFile, line: usize, col: usize) -> usize {
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
fn explain_syntax_error(text: &str, offset: usize, raw: &str) -> (Range<usize>, String) {
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
            b'"' => {
                let start = i;
                i += 1;
                let mut interp = 0usize;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => {
                            if start <= offset || offset >= line_start {
                                return (
                                    start..start + 1,
                                    "unterminated string: a quoted string must end on the same line".into(),
                                );
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
            }
            c @ (b'{' | b'[' | b'(') => stack.push((i, c)),
            b'}' | b']' | b')' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
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
fn number_out_of_range(text: &str, offset: usize) -> Option<(Range<usize>, String)> {
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

/// A reference `var.NAME` or `local.NAME` (also `local["NAME"]`) in an expression.
struct Ref {
    root: &'static str,
    name: String,
    span: Range<usize>,
}

/// The references and the function calls (name, literal first argument, span) of an
/// expression, in source order.
#[derive(Default)]
struct ExprRefs {
    refs: Vec<Ref>,
    calls: Vec<(String, Option<String>, Range<usize>)>,
}

impl hcl_edit::visit::Visit for ExprRefs {
    fn visit_traversal(&mut self, t: &hcl_edit::expr::Traversal) {
        use hcl_edit::expr::{Expression as E, TraversalOperator as Op};
        if let E::Variable(root) = &t.expr
            && let Some(first) = t.operators.first()
        {
            let root = match root.as_str() {
                "var" => Some("var"),
                "local" => Some("local"),
                _ => None,
            };
            let name = match first.value() {
                Op::GetAttr(id) => Some(id.as_str().to_string()),
                Op::Index(E::String(s)) => Some(s.value().clone()),
                _ => None,
            };
            if let (Some(root), Some(name)) = (root, name) {
                let span = span_of(&t.expr).start..span_of(first).end;
                self.refs.push(Ref { root, name, span });
            }
        }
        hcl_edit::visit::visit_traversal(self, t);
    }

    fn visit_func_call(&mut self, c: &hcl_edit::expr::FuncCall) {
        let arg = match c.args.iter().next() {
            Some(hcl_edit::expr::Expression::String(s)) => Some(s.value().clone()),
            _ => None,
        };
        self.calls
            .push((c.name.name.as_str().to_string(), arg, span_of(c)));
        hcl_edit::visit::visit_func_call(self, c);
    }
}

fn expr_refs(expr: &hcl_edit::expr::Expression) -> ExprRefs {
    use hcl_edit::visit::Visit;
    let mut r = ExprRefs::default();
    r.visit_expr(expr);
    r
}

/// The shortest cycle through `start` in the graph `succ` (edges with their spans): the nodes
/// from `start` on, without repeating `start` at the end.
fn shortest_cycle(start: usize, succ: &[Vec<(usize, Range<usize>)>]) -> Option<Vec<usize>> {
    let mut prev: Vec<Option<usize>> = vec![None; succ.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = vec![false; succ.len()];
    while let Some(n) = queue.pop_front() {
        for (m, _) in &succ[n] {
            if *m == start {
                let mut path = vec![n];
                let mut k = n;
                while k != start {
                    k = prev[k]?;
                    path.push(k);
                }
                path.reverse();
                return Some(path);
            }
            if !seen[*m] {
                seen[*m] = true;
                prev[*m] = Some(n);
                queue.push_back(*m);
            }
        }
    }
    None
}

fn elem_span(expr: &hcl_edit::expr::Expression, i: usize) -> Option<Range<usize>> {
    match expr {
        hcl_edit::expr::Expression::Array(arr) => arr.iter().nth(i).and_then(|e| e.span()),
        _ => None,
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn str_of(v: &Evaluated, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.value.as_str().map(str::to_string))
}

fn bool_of(v: &Evaluated, k: &str) -> Option<bool> {
    v.get(k).and_then(|x| x.value.as_bool())
}

fn int_of(v: &Evaluated, k: &str) -> Option<i64> {
    v.get(k).and_then(|x| x.value.as_i64())
}

fn list_of(v: &Evaluated, k: &str) -> Option<Vec<String>> {
    v.get(k).and_then(|x| {
        x.value.as_array().map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
    })
}

fn secret_of(v: &Evaluated, k: &str) -> Option<Secret> {
    let packed = str_of(v, k)?;
    Some(match packed.split_once('\u{0}') {
        Some((src, val)) => Secret::new(src, Some(val.to_string())),
        None => Secret::new(packed, None),
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_k3s_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let (core, _suffix) = rest.split_once('+').unwrap_or((rest, ""));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn check_https_url(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_prefix("https://") else {
        return Err(format!(
            "must be an https:// URL, found {s_q}",
            s_q = quote(s)
        ));
    };
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() {
        return Err(format!("has no host: {s_q}", s_q = quote(s)));
    }
    let (host, port) = if let Some(h) = host_port.strip_prefix('[') {
        match h.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => {
                return Err(format!(
                    "has an unclosed IPv6 bracket: {s_q}",
                    s_q = quote(s)
                ));
            }
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("has no host: {s_q}", s_q = quote(s)));
    }
    if let Some(p) = port
        && p.parse::<u16>().map(|p| p == 0).unwrap_or(true)
    {
        return Err(format!(
            "has an invalid port {p_q}: {s_q}",
            p_q = quote(p),
            s_q = quote(s)
        ));
    }
    Ok(())
}

fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or(
        "expected KEY[=VALUE]:EFFECT, e.g. \"node-role.kubernetes.io/control-plane:NoSchedule\"",
    )?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            return Err(format!(
                "unknown effect {other_q} (NoSchedule, PreferNoSchedule, NoExecute)",
                other_q = quote(other)
            ));
        }
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err("empty key".into());
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_env(src: &str, env: &[(&str, &str)]) -> Loaded {
        let env = EnvSource::Map(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        load_sources(
            vec![SourceFile::new("t.hcl", src)],
            &LoadOptions {
                base_dir: None,
                env,
            },
        )
    }

    fn ok(src: &str) -> Topology {
        let l = load_env(src, &[("K3S_TOKEN", "tok")]);
        assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
        l.topology.unwrap()
    }

    fn errors(src: &str) -> Vec<String> {
        let l = load_env(src, &[("K3S_TOKEN", "tok")]);
        assert!(l.topology.is_none() || !l.diagnostics.has_errors());
        l.diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect()
    }

    const CLUSTER: &str = "cluster \"c\" {\n  token = env(\"K3S_TOKEN\")\n}\n";

    fn node(name: &str, addr: &str, roles: &str, extra: &str) -> String {
        format!("node \"{name}\" {{\n  address = \"{addr}\"\n  roles = [{roles}]\n{extra}}}\n")
    }

    #[test]
    fn defaults_are_applied() {
        let t = ok(&format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"server\"", "")
        ));
        assert_eq!(t.cluster.data_dir, DEFAULT_DATA_DIR);
        assert!(t.cluster.etcd.snapshot_before_apply);
        assert_eq!(t.cluster.ssh.user, "root");
        assert_eq!(t.cluster.ssh.port, 22);
        assert_eq!(t.nodes[0].ssh, t.cluster.ssh);
        assert!(!t.nodes[0].replace && !t.nodes[0].primary);
    }

    #[test]
    fn node_ssh_overrides_merge_with_cluster_defaults() {
        let src = format!(
            "cluster \"c\" {{\n  ssh {{\n    user = \"ops\"\n    port = 2222\n  }}\n}}\n{}",
            node(
                "a",
                "10.0.0.1",
                "\"server\"",
                "  ssh {\n    port = 22022\n  }\n"
            )
        );
        let t = ok(&src);
        assert_eq!(t.nodes[0].ssh.user, "ops");
        assert_eq!(t.nodes[0].ssh.port, 22022);
        assert_eq!(t.cluster.ssh.port, 2222);
    }

    #[test]
    fn token_from_env_is_a_secret_with_its_source() {
        let t = ok(&format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"server\"", "")
        ));
        let tok = t.cluster.token.clone().unwrap();
        assert_eq!(tok.source(), "env(\"K3S_TOKEN\")");
        assert_eq!(tok.expose(), Some("tok"));
        assert!(!format!("{t:?}").contains("tok\""));
    }

    #[test]
    fn unset_env_secret_is_accepted_at_validation_but_has_no_value() {
        let l = load_env(
            &format!("{CLUSTER}{}", node("a", "10.0.0.1", "\"server\"", "")),
            &[],
        );
        assert!(l.diagnostics.is_empty(), "{}", l.diagnostics);
        assert_eq!(l.topology.unwrap().cluster.token.unwrap().expose(), None);
    }

    #[test]
    fn literal_token_is_a_warning_not_an_error() {
        let l = load_env(
            &format!(
                "cluster \"c\" {{\n  token = \"abc\"\n}}\n{}",
                node("a", "10.0.0.1", "\"server\"", "")
            ),
            &[],
        );
        assert_eq!(l.diagnostics.warnings(), 1);
        assert!(l.topology.is_some());
    }

    #[test]
    fn variables_locals_templates_and_env_override() {
        let src = format!(
            "variable \"net\" {{\n  default = \"10.9.0\"\n}}\nlocals {{\n  first = \"${{var.net}}.1\"\n  also = local.first\n}}\n{CLUSTER}node \"a\" {{\n  address = local.also\n  roles = [\"server\"]\n}}\n"
        );
        assert_eq!(ok(&src).nodes[0].address.to_string(), "10.9.0.1");
        let l = load_env(&src, &[("K3SPLAN_VAR_net", "10.7.0")]);
        assert_eq!(l.topology.unwrap().nodes[0].address.to_string(), "10.7.0.1");
    }

    #[test]
    fn role_rules() {
        let t = ok(&format!(
            "{CLUSTER}{}{}{}",
            node("e", "10.0.0.1", "\"etcd\"", ""),
            node("cp", "10.0.0.2", "\"control-plane\"", ""),
            node("w", "10.0.0.3", "\"agent\"", "")
        ));
        assert_eq!(t.etcd_nodes().count(), 1);
        assert_eq!(t.server_nodes().count(), 2);
        let e = errors(&format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"agent\", \"server\"", "")
        ));
        assert!(
            e[0].contains("cannot be both \"agent\" and \"server\""),
            "{e:?}"
        );
        let e = errors(&format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"agent\"", "")
        ));
        assert_eq!(
            e,
            vec!["no node runs etcd: give at least one node the role \"server\" or \"etcd\""]
        );
    }

    #[test]
    fn even_voter_count_is_a_warning() {
        let l = load_env(
            &format!(
                "{CLUSTER}{}{}",
                node("a", "10.0.0.1", "\"server\"", ""),
                node("b", "10.0.0.2", "\"server\"", "")
            ),
            &[],
        );
        assert!(!l.diagnostics.has_errors());
        assert!(
            l.diagnostics
                .iter()
                .any(|d| d.message.starts_with("2 etcd members"))
        );
    }

    /// Issue 13: `replace = true` replaced the node on every apply while it stayed in the
    /// file. It is refused, pointing to the one-shot `-replace=node.NAME`; `replace = false`
    /// is a deprecation warning. On main both were accepted silently.
    #[test]
    fn issue13_replace_attribute_is_refused_pointing_to_the_flag() {
        let l = load_env(
            &format!(
                "{CLUSTER}{}",
                node("a", "10.0.0.1", "\"server\"", "  replace = true\n")
            ),
            &[("K3S_TOKEN", "tok")],
        );
        let errs: Vec<_> = l
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("-replace=node.a"), "{errs:?}");
        assert!(errs[0].contains("every apply"), "{errs:?}");
        let l = load_env(
            &format!(
                "{CLUSTER}{}",
                node("a", "10.0.0.1", "\"server\"", "  replace = false\n")
            ),
            &[("K3S_TOKEN", "tok")],
        );
        assert!(!l.diagnostics.has_errors());
        assert!(
            l.diagnostics
                .iter()
                .any(|d| !d.is_error() && d.message.contains("-replace=node.a")),
            "deprecation warning"
        );
        assert!(!l.topology.unwrap().nodes[0].replace);
    }

    #[test]
    fn vip_priorities() {
        let src = format!(
            "cluster \"c\" {{\n  vip {{\n    address = \"10.0.0.100\"\n    interface = \"eth0\"\n    router_id = 5\n  }}\n}}\n{}{}{}",
            node("a", "10.0.0.1", "\"server\"", "  primary = true\n"),
            node("b", "10.0.0.2", "\"server\"", ""),
            node("c", "10.0.0.3", "\"server\"", "  vip_priority = 95\n")
        );
        let t = ok(&src);
        let p: Vec<Option<u8>> = t.nodes.iter().map(|n| t.vip_priority(n)).collect();
        assert_eq!(p, vec![Some(100), Some(90), Some(95)]);
        assert_eq!(
            t.cluster.vip.as_ref().unwrap().manifest_path,
            DEFAULT_VIP_MANIFEST
        );
        let bad = src.replace("vip_priority = 95", "vip_priority = 120");
        let e = errors(&bad);
        assert!(
            e[0].contains("has VIP priority 120, not below the primary \"a\" (100)"),
            "{e:?}"
        );
    }

    #[test]
    fn storage_policies() {
        let src = format!(
            "{CLUSTER}{}storage \"ns/db\" {{\n  kind = \"StatefulSet\"\n  on_node_loss = \"rebind\"\n  prefer_nodes = [\"a\"]\n}}\nstorage \"ns/vm\" {{\n  kind = \"Deployment\"\n}}\n",
            node("a", "10.0.0.1", "\"server\"", "")
        );
        let t = ok(&src);
        assert_eq!(t.storage[0].on_node_loss, OnNodeLoss::Rebind);
        assert_eq!(t.storage[0].key(), "ns/db");
        assert_eq!(
            t.storage[1].on_node_loss,
            OnNodeLoss::Keep,
            "the default never deletes"
        );
    }

    #[test]
    fn addon_defaults_to_kube_system() {
        let t = ok(&format!(
            "{CLUSTER}{}addon \"coredns\" {{\n  replicas = 3\n  spread = \"kubernetes.io/hostname\"\n}}\n",
            node("a", "10.0.0.1", "\"server\"", "")
        ));
        assert_eq!(t.addons[0].namespace, "kube-system");
        assert_eq!(t.addons[0].replicas, 3);
    }

    #[test]
    fn backend_blocks() {
        let t = ok(&format!(
            "{CLUSTER}{}backend \"etcd\" {{\n  endpoints = [\"https://10.0.0.1:2379\"]\n}}\n",
            node("a", "10.0.0.1", "\"server\"", "")
        ));
        assert!(
            matches!(t.backend, Some(Backend::Etcd { ref prefix, .. }) if prefix == "k3splan/")
        );
        let e = errors(&format!(
            "{CLUSTER}{}backend \"etcd\" {{\n}}\n",
            node("a", "10.0.0.1", "\"server\"", "")
        ));
        assert_eq!(e, vec!["the etcd backend needs `endpoints`"]);
    }

    #[test]
    fn errors_in_several_files_are_all_reported_in_file_order() {
        let files = vec![
            SourceFile::new(
                "b.hcl",
                "node \"x\" {\n  address = \"1.2.3\"\n  roles = [\"server\"]\n}\n",
            ),
            SourceFile::new("a.hcl", "cluster \"c\" {\n  bogus = 1\n}\n"),
        ];
        let l = load_sources(files, &LoadOptions::default());
        let locs: Vec<String> = l.diagnostics.iter().map(|d| d.location()).collect();
        assert_eq!(locs, vec!["a.hcl:2:3", "b.hcl:2:13"]);
    }

    #[test]
    fn https_urls_and_versions() {
        assert!(check_https_url("https://10.0.0.1:6443").is_ok());
        assert!(check_https_url("https://[fd00::1]:6443").is_ok());
        assert!(check_https_url("https://vip.example").is_ok());
        assert!(check_https_url("http://x:1").is_err());
        assert!(check_https_url("https://x:0").is_err());
        assert!(check_https_url("https://:6443").is_err());
        assert!(is_k3s_version("v1.28.5+k3s1"));
        assert!(!is_k3s_version("1.28.5"));
    }

    #[test]
    fn taints_parse() {
        let t = parse_taint("dedicated=db:NoSchedule").unwrap();
        assert_eq!(t.to_string(), "dedicated=db:NoSchedule");
        assert!(parse_taint("k:Nope").is_err());
    }
}
