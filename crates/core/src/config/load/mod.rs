//! Loading a topology: HCL source → parse → schema checks → evaluation → semantic rules →
//! [`Topology`].
//!
//! Loading does no network access. It reads the configuration files, the files named by
//! `file("…")`, and the environment variables named by `env("…")` and `K3SPLAN_VAR_<name>`.
//! Every problem found is reported at once, in source order.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Value};
use hcl_edit::Span;
use hcl_edit::structure::{Block, Body, Structure};

use super::diag::{
    Diagnostic, Diagnostics, Severity, SourceFile, code, did_you_mean, quote, shown, slice,
};
use super::model::*;
use super::schema::{self, BlockSchema, Ty};

mod build;
mod checks;
mod cluster;
mod discover;
mod evaluate;
mod functions;
mod node;
mod parse;
mod rules;
pub mod sources;
#[cfg(test)]
mod tests;
mod typecheck;

use build::*;
use checks::*;
pub use discover::{config_files_with, load_path_with};
use evaluate::*;
pub use functions::FILE_MAX_BYTES;
use functions::{FnSources, base_context, resolve_calls};
use parse::*;
pub use sources::{EnvSource, Environment, FileKind, FileMeta, MemFs, ReadRegularError, SourceFs};
use typecheck::*;

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

/// Loads one in-memory file (tests, `fmt`).
///
/// Reads nothing else: `file()` finds no file and `env()` no variable.
pub fn load_str(name: &str, src: &str) -> Loaded {
    load_sources_with(
        &MemFs::new(),
        vec![SourceFile::new(name, src)],
        &LoadOptions::default(),
    )
}

/// Loads already-read files; `file()` reads through `fs`.
pub fn load_sources_with(fs: &dyn SourceFs, files: Vec<SourceFile>, opts: &LoadOptions) -> Loaded {
    let mut cx = Loader {
        fs,
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
    /// The attribute `name`, when set.
    fn attr(&self, name: &str) -> Option<&RawAttr> {
        self.attrs.iter().find(|a| a.name == name)
    }
    /// The span of attribute `name`'s key, or of the block's label when it is not set.
    fn key_span_of(&self, name: &str) -> Range<usize> {
        self.attr(name)
            .map(|a| a.key_span.clone())
            .unwrap_or(self.label_span())
    }
    /// The span of attribute `name`'s value, or of the block's label when it is not set.
    fn expr_span_of(&self, name: &str) -> Range<usize> {
        self.attr(name)
            .map(|a| a.expr_span.clone())
            .unwrap_or(self.label_span())
    }
    /// Whether this is a block of `schema`.
    fn is(&self, schema: &'static BlockSchema) -> bool {
        std::ptr::eq(self.schema, schema)
    }
    /// The first child block of `schema`.
    fn child(&self, schema: &'static BlockSchema) -> Option<&RawBlock> {
        self.blocks.iter().find(|b| b.is(schema))
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

struct Loader<'a> {
    fs: &'a dyn SourceFs,
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
    /// What `env()` and `file()` read through.
    fn fn_sources(&self) -> FnSources<'_> {
        FnSources {
            fs: self.fs,
            env: &self.opts.env,
            base_dir: self.opts.base_dir.as_deref().unwrap_or(Path::new("")),
        }
    }

    /// Evaluates `expr` in `ctx`, its `env()` and `file()` calls read through this load's
    /// sources.
    fn evaluate(
        &self,
        expr: &hcl_edit::expr::Expression,
        ctx: &Context,
    ) -> Result<Value, hcl::eval::Error> {
        resolve_calls(expr, ctx, self.fn_sources()).evaluate(ctx)
    }

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

        // 2. Variables and locals.
        let ctx = self.variables_and_locals(&top);

        // 3. Evaluate everything else and build the model.
        let topo = self.build(&top, &ctx);
        if parse_ok { topo } else { None }
    }
}

/// The key of `seen_idents` for a `child` block seen in a `parent` block.
fn nested_ident(parent: &BlockSchema, child: &BlockSchema) -> String {
    format!("{}.{}", parent.ident, child.ident)
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
