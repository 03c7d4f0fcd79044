//! The functions available to expressions: `env()` and `file()`.
//!
//! hcl-rs only calls plain `fn` pointers, which cannot carry a load's file system and
//! environment. So calls are resolved in a pre-pass ([`resolve_calls`]): each `env(…)` or
//! `file(…)` call whose argument evaluates to a string is replaced by its result, or, when the
//! call fails, by a call whose argument carries the failure; the functions declared in the
//! evaluation context ([`base_context`]) only raise that failure. hcl-rs reports it as it
//! reports any failing function (`ErrorKind::FuncCall`), at the same place in the evaluation.
//!
//! Guarantees: nothing is read but through the load's [`SourceFs`] and [`EnvSource`]; no
//! global or thread-local state. Caveat: an argument that is only known inside a `for`
//! expression (its iteration variable) cannot be resolved beforehand; such a call is refused
//! with an error that says so.

use std::path::{Path, PathBuf};

use hcl::Value;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl_edit::Decorated;
use hcl_edit::expr::Expression as EditExpr;
use hcl_edit::visit_mut::{VisitMut, visit_expr_mut};

use super::sources::{EnvSource, FileMeta, ReadRegularError, SourceFs};
use crate::config::diag::{quote, shown};

/// The largest file `file("…")` reads: a secret, a certificate or a short text. Anything
/// bigger is a mistake (a device, a log, an image), refused before it can exhaust memory.
pub const FILE_MAX_BYTES: u64 = 1 << 20;

/// Marks an argument that carries the failure of a call resolved by [`resolve_calls`].
const FAILED: char = '\u{0}';

/// What the functions read through during one load.
#[derive(Clone, Copy)]
pub(super) struct FnSources<'a> {
    pub(super) fs: &'a dyn SourceFs,
    pub(super) env: &'a EnvSource,
    /// Directory relative `file()` paths start from.
    pub(super) base_dir: &'a Path,
}

/// Why `file("…")` could not read a file.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {0}; file() reads only regular files")]
    NotRegular(&'static str),
    #[error("it is larger than {FILE_MAX_BYTES} bytes (1 MiB){}, the limit of file()", .claimed.map(|n| format!(": {n} bytes")).unwrap_or_default())]
    TooLarge { claimed: Option<u64> },
    #[error("it was replaced while being read")]
    Replaced,
    #[error(
        "it is not UTF-8 text: byte 0x{byte:02X} at line {line}, column {column} is not part of a UTF-8 character"
    )]
    NotUtf8 {
        byte: u8,
        line: usize,
        column: usize,
    },
}

impl From<ReadRegularError> for FileReadError {
    fn from(e: ReadRegularError) -> Self {
        match e {
            ReadRegularError::Io(e) => FileReadError::Io(e),
            ReadRegularError::Replaced => FileReadError::Replaced,
        }
    }
}

/// Why a call to `env()` or `file()` failed (the message after "NAME(): ").
#[derive(Debug, thiserror::Error)]
pub(super) enum FnError {
    #[error("environment variable {} is not set", shown(.0))]
    EnvUnset(String),
    #[error("cannot read {} (relative to the configuration directory): {source}", quote(.name))]
    File {
        name: String,
        #[source]
        source: FileReadError,
    },
}

impl FnSources<'_> {
    /// `env(name)`.
    fn env(&self, name: &str) -> Result<String, FnError> {
        self.env
            .get(name)
            .ok_or_else(|| FnError::EnvUnset(name.to_string()))
    }

    /// `file(name)`: the file's text without its final line break.
    fn file(&self, name: &str) -> Result<String, FnError> {
        let path = self.resolve_path(name);
        read_small_file(self.fs, &path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|source| FnError::File {
                name: name.to_string(),
                source,
            })
    }

    /// An absolute path as is, `~/…` under `HOME` (as written when `HOME` is unset), anything
    /// else under the base directory.
    fn resolve_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else if let Some(rest) = name.strip_prefix("~/") {
            self.env
                .get("HOME")
                .map(|h| PathBuf::from(h).join(rest))
                .unwrap_or_else(|| p.to_path_buf())
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Reads a regular file of at most [`FILE_MAX_BYTES`] bytes as UTF-8 text. A FIFO, a device, a
/// socket or a directory is refused without being opened (opening a FIFO would block), and
/// never more than the limit plus one byte is read, whatever the file claims its size is.
fn read_small_file(fs: &dyn SourceFs, path: &Path) -> Result<String, FileReadError> {
    let meta: FileMeta = fs.metadata(path)?;
    if let Some(kind) = meta.kind.refused_as() {
        return Err(FileReadError::NotRegular(kind));
    }
    if meta.len > FILE_MAX_BYTES {
        return Err(FileReadError::TooLarge {
            claimed: Some(meta.len),
        });
    }
    let buf = fs.read_regular(path, &meta, FILE_MAX_BYTES + 1)?;
    if buf.len() as u64 > FILE_MAX_BYTES {
        return Err(FileReadError::TooLarge { claimed: None });
    }
    String::from_utf8(buf).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1;
        let start = bytes[..valid]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&bytes[start..valid])
            .chars()
            .count()
            + 1;
        FileReadError::NotUtf8 {
            byte: bytes[valid],
            line,
            column,
        }
    })
}

/// The declared `env` and `file`: they only raise the failure [`resolve_calls`] put in their
/// argument. (`Result<_, String>` is the signature hcl-rs requires of a function.)
fn raise(args: FuncArgs) -> Result<Value, String> {
    let arg = args[0].as_str().unwrap_or_default();
    match arg.strip_prefix(FAILED) {
        Some(why) => Err(why.to_string()),
        None => Err(
            "the argument must be known before evaluation: a `for` variable cannot be used here"
                .to_string(),
        ),
    }
}

/// An evaluation context with the functions `env` and `file` declared.
pub(super) fn base_context() -> Context<'static> {
    let mut ctx = Context::new();
    for name in ["env", "file"] {
        ctx.declare_func(
            name,
            FuncDef::builder().param(ParamType::String).build(raise),
        );
    }
    ctx
}

/// `expr` for evaluation in `ctx`, its `env()` and `file()` calls resolved through `src`.
pub(super) fn resolve_calls(expr: &EditExpr, ctx: &Context, src: FnSources<'_>) -> hcl::Expression {
    let mut expr = expr.clone();
    Resolver { ctx, src }.visit_expr_mut(&mut expr);
    expr.into()
}

struct Resolver<'c, 's> {
    ctx: &'c Context<'c>,
    src: FnSources<'s>,
}

impl VisitMut for Resolver<'_, '_> {
    fn visit_expr_mut(&mut self, expr: &mut EditExpr) {
        // Innermost calls first: an argument may itself call env() or file().
        visit_expr_mut(self, expr);
        let EditExpr::FuncCall(call) = expr else {
            return;
        };
        if !call.name.namespace.is_empty() || call.args.len() != 1 {
            return;
        }
        let name = call.name.name.as_str();
        if name != "env" && name != "file" {
            return;
        }
        let Some(arg) = call.args.get(0) else {
            return;
        };
        let arg: hcl::Expression = arg.clone().into();
        // Not evaluable here (an undefined variable, a wrong type): hcl-rs reports it.
        let Ok(Value::String(arg)) = arg.evaluate(self.ctx) else {
            return;
        };
        let result = match name {
            "env" => self.src.env(&arg),
            _ => self.src.file(&arg),
        };
        match result {
            Ok(s) => *expr = EditExpr::String(Decorated::new(s)),
            Err(why) => {
                if let Some(a) = call.args.iter_mut().next() {
                    *a = EditExpr::String(Decorated::new(format!("{FAILED}{why}")));
                }
            }
        }
    }
}
