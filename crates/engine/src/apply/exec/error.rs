//! Why an operation failed: [`ExecError`]. The messages are the operator's (they end up in
//! the journal and on the terminal); a provider's error is carried as the source, its text
//! shown as it is.

use k3splan_etcd::EtcdError;
use k3splan_host::HostError;
use k3splan_kube::{DrainReport, KubeError};

use crate::live::LiveError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A connection to the cluster could not be made (etcd TLS files, the Kubernetes API).
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// (Boxed: a host error is large, and every result carries the error's size.)
    #[error(transparent)]
    Host(Box<HostError>),
    /// The drain left pods behind (the report names them and what to do).
    #[error("{}", .0.incomplete_message())]
    DrainIncomplete(Box<DrainReport>),
    /// The host of a node to uninstall could not be reached.
    #[error("cannot reach {node} to uninstall k3s: {source}")]
    UninstallUnreachable {
        node: String,
        #[source]
        source: Box<HostError>,
    },
    /// The directory for maintenance-API snapshots could not be created.
    #[error("{}: {source}", path.display())]
    SnapshotDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file on a host could not be parsed, so its secrets cannot be carried over.
    #[error(
        "{path} on {node}: the file on the host could not be parsed, so its content was not shown and cannot be rewritten; fix or remove it by hand"
    )]
    UnparsableFile { node: String, path: String },
    /// A declared secret has no value.
    #[error("{path} on {node} needs `{key}` from {source_name}, which is not set")]
    SecretNotSet {
        node: String,
        path: String,
        key: String,
        source_name: String,
    },
    /// A secret to keep is not in the file on the host.
    #[error(
        "{path} on {node}: `{key}` must keep its current value, but the file on the host has none"
    )]
    NoCurrentValue {
        node: String,
        path: String,
        key: String,
    },
    /// Joining needs the cluster's join token.
    #[error("joining {node} needs the join token from {source_name}, which is not set")]
    NoJoinToken { node: String, source_name: String },
    /// A node without a known address.
    #[error("no address known for {node}")]
    NoAddress { node: String },
    #[error(
        "{node}'s etcd member was not promoted to a healthy voter within {}s: {last}",
        secs
    )]
    NotPromoted {
        node: String,
        secs: u64,
        last: String,
    },
    #[error("{node}'s etcd member was not healthy again within {}s", secs)]
    MemberNotHealthy { node: String, secs: u64 },
    #[error(
        "{node} was not healthy within {}s (last: {last}); it runs no agent, so its health is its etcd member and its supervisor port :6443",
        secs
    )]
    ServerNotHealthy {
        node: String,
        secs: u64,
        last: String,
    },
    #[error("Node {node} was not Ready within {}s (last: {last})", secs)]
    NodeNotReady {
        node: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{namespace}/{pvc} was not recreated and bound on a live node within {}s (last: {last})",
        secs
    )]
    NotRebound {
        namespace: String,
        pvc: String,
        secs: u64,
        last: String,
    },
    /// The final verification still saw these problems when its time ran out.
    #[error("verification failed: {}", problems.join("; "))]
    VerifyFailed { problems: Vec<String> },
}

impl From<HostError> for ExecError {
    fn from(e: HostError) -> Self {
        ExecError::Host(Box::new(e))
    }
}
