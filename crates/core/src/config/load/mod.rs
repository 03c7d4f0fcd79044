//! Loading a topology, as a pipeline of stages (the order is stated once, in `Loader::run`):
//! `discover` the files → `parse` them with the schema checks → `evaluate` variables,
//! locals and expressions (`functions` for `env()`/`file()`) → `typecheck` each block's
//! attributes → build the model (`build`, `cluster`, `node`, single values in
//! `checks`) → the whole-topology `rules` → [`Topology`].
//!
//! Guarantees: loading does no network access and reads only through the [`SourceFs`] and
//! [`EnvSource`] it is given ([`sources`]): the configuration files, the files named by
//! `file("…")`, and the environment variables named by `env("…")`, `K3SPLAN_VAR_<name>` and
//! `HOME`. Every problem found is reported at once, in source order; the topology is returned
//! only when there is no error.

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
mod check_block;
mod checks;
mod cluster;
mod discover;
mod evaluate;
mod functions;
mod k3s_config;
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

    /// The pipeline, in order: discover (done by the caller: [`load_path_with`] or the files
    /// given), parse with the schema checks, evaluate variables and locals, then evaluate and
    /// type-check each block while building the model, and last the whole-topology rules
    /// (called by `build`). A stage goes on after errors of an earlier one where it can, so that
    /// every problem is reported at once.
    fn run(&mut self) -> Option<Topology> {
        let (top, parse_ok) = self.parse_files()?;
        let ctx = self.variables_and_locals(&top);
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
