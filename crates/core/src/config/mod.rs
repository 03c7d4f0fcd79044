//! The topology language: HCL files → validated [`Topology`].
//!
//! [`load_path_with`] reads a file or a directory of `*.hcl` through a [`SourceFs`], checks it
//! against the schema and the semantic rules, and returns every diagnostic at once with the
//! [`Topology`] when there is no error. Loading does no network access, and reads files and
//! environment variables only through the [`SourceFs`] and [`EnvSource`] it is given.
pub mod diag;
pub mod fmt;
pub mod load;
pub mod model;
pub mod schema;

pub use diag::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use load::{
    EnvSource, Environment, LoadError, LoadOptions, Loaded, MemFs, SourceFs, config_files_with,
    load_path_with, load_sources_with, load_str,
};
pub use model::*;
