//! The topology language: HCL files → validated [`Topology`].
//!
//! [`load_path`] reads a file or a directory of `*.hcl`, checks it against the schema and the
//! semantic rules, and returns every diagnostic at once with the [`Topology`] when there is
//! no error. Loading does no network access.
pub mod diag;
pub mod fmt;
pub mod load;
pub mod model;
pub mod schema;

pub use diag::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use load::{
    EnvSource, LoadError, LoadOptions, Loaded, config_files, load_path, load_sources, load_str,
};
pub use model::*;
