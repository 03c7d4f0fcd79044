//! The command line's errors: one variant per kind of failure, each carrying its source
//! (the loader's, the state backend's, the apply's…), so that nothing is flattened to a
//! string on the way to the operator. `cli::run` prints `Error: <Display>` on stderr and
//! exits 1.

use std::io;
use std::path::PathBuf;

use crate::apply::ApplyError;
use crate::config::LoadError;
use crate::config::fmt::FmtError;
use crate::state::StateError;

/// Errors of the command line layer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the configuration is invalid: {errors} error(s), {warnings} warning(s)")]
    Invalid { errors: usize, warnings: usize },
    #[error("`k3splan {0}` is not implemented yet")]
    NotImplemented(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{source}")]
    Fmt {
        path: PathBuf,
        #[source]
        source: FmtError,
    },
    #[error("{0} file(s) are not formatted")]
    Unformatted(usize),
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
    /// A command line that parses but names something that does not exist, or combines
    /// what cannot be combined.
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no state at {0}")]
    NoState(String),
    #[error("no object at address {0} in the state")]
    NoSuchAddress(String),
    #[error("invalid etcd backend block")]
    EtcdBackendBlock,
    #[error(transparent)]
    SavedPlan(#[from] SavedPlanError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The connections to the cluster could not be prepared (credentials, addresses).
    #[error(transparent)]
    Live(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Boxed: an apply error carries the failed operation's typed error, which is large.
    #[error(transparent)]
    Apply(Box<ApplyError>),
    #[error("the plan is incomplete (declared sources could not be read); nothing was changed")]
    IncompletePlan,
    #[error("k3splan refuses to plan: {0} safety violation(s); nothing was changed")]
    Refused(usize),
    /// `graph -format=svg` needs Graphviz's `dot` (issue 18).
    #[error("{0}")]
    Graphviz(String),
    /// `import` cannot write the topology or the state (issue 18).
    #[error("{0}")]
    Import(String),
}

/// Command lines that parse but cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(
        "invalid -replace address \"{address}\": expected node.NAME (e.g. -replace=node.{example})"
    )]
    ReplaceAddress { address: String, example: String },
    #[error(
        "invalid -replace address \"{address}\": no node \"{name}\" is declared in the topology (declared: {declared})"
    )]
    ReplaceUnknownNode {
        address: String,
        name: String,
        declared: String,
    },
    #[error(
        "-replace cannot be combined with a saved plan: the plan file records its replacements; pass -replace to `k3splan plan -out=FILE` instead"
    )]
    ReplaceWithSavedPlan,
    #[error(
        "usage: --allow-unreachable {names}: no declared or observed node, and no etcd member, has that name (nodes: {known})"
    )]
    AllowUnreachable { names: String, known: String },
    #[error(
        "usage: apply --json cannot ask for approval: add --auto-approve, or apply a saved plan (plan -out=FILE)"
    )]
    JsonNeedsApproval,
    #[error(
        "usage: --recover cannot be combined with a saved plan (plan -out=FILE / apply FILE): the recovery is planned and applied in one `k3splan apply --recover`"
    )]
    RecoverWithSavedPlan,
}

/// A saved plan that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("{path}: not a k3splan saved plan: {source}")]
    NotAPlan {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: saved plan format {found} is not supported (expected {expected})")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "Saved plan is stale: the configuration changed since the plan was made; nothing was changed. Run `k3splan plan` again."
    )]
    ConfigChanged,
    #[error(
        "Saved plan is stale: the state changed since the plan was made (another apply ran); nothing was changed. Run `k3splan plan` again."
    )]
    StateChanged,
    #[error(
        "Saved plan is stale: the cluster changed since the plan was made, and planning again gives different steps; nothing was changed. Run `k3splan plan` again."
    )]
    ClusterChanged,
}

/// An observation no plan may be made from.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Kubernetes API or etcd could not be read (`apply`: nothing was changed).
    #[error(
        "the cluster could not be read, so no plan can be trusted: {reasons}{}",
        if *.applying { "; nothing was changed" } else { "" }
    )]
    Unread { reasons: String, applying: bool },
    /// A host offered a host key other than the one known_hosts records.
    #[error("refusing to continue, nothing was changed: {0}")]
    HostKeyChanged(String),
}

impl From<ApplyError> for CliError {
    fn from(e: ApplyError) -> Self {
        CliError::Apply(Box::new(e))
    }
}
