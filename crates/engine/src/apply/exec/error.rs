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
    /// Issue 15: the unit's `ExecStart=` could not be read, or holds an argument install.sh
    /// cannot carry back unchanged, so re-running the installer would drop or change it.
    /// Raised before the upgrade step cordons the node.
    #[error(
        "{path} on {node}: {detail}; the installer rewrites this unit from INSTALL_K3S_EXEC, so upgrading now would drop or change its arguments: fix the unit, or move its flags to config.yaml"
    )]
    UnitArgs {
        node: String,
        path: String,
        detail: String,
    },
    /// Joining needs the cluster's join token.
    #[error("joining {node} needs the join token from {source_name}, which is not set")]
    NoJoinToken { node: String, source_name: String },
    /// A node without a known address.
    #[error("no address known for {node}")]
    NoAddress { node: String },
    #[error(
        "learner {node} not promoted after {}: last seen {last}; check the leader's k3s log for \"Promoted etcd learner\" (k3s promotes a learner from a 15 s loop once it caught up), etcd's --max-learners, or raise `timeouts.learner_promoted`",
        human_secs(*secs)
    )]
    NotPromoted {
        node: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{node}'s etcd member not healthy again after {}: last seen {last}; check `journalctl -u k3s` on {node}, or raise `timeouts.node_ready`",
        human_secs(*secs)
    )]
    MemberNotHealthy {
        node: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{node} not healthy after {}: last seen {last}; it runs no agent, so its health is its etcd member and its supervisor port :6443; check `journalctl -u k3s` on {node}, or raise `timeouts.node_ready`",
        human_secs(*secs)
    )]
    ServerNotHealthy {
        node: String,
        secs: u64,
        last: String,
    },
    #[error(
        "Node {node} not Ready after {}: last seen {last}; check `journalctl -u k3s` (or `-u k3s-agent`) on {node}, or raise `timeouts.node_ready`",
        human_secs(*secs)
    )]
    NodeNotReady {
        node: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{namespace}/{pvc} was not recreated and bound on a live node after {}: last seen {last}; check `kubectl -n {namespace} describe pvc {pvc}` and its pod's events, or raise `timeouts.pod_rescheduled`",
        human_secs(*secs)
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
    /// Issue 15: an upgraded node did not come back at its new version in time.
    #[error(
        "{node} not back at {version} after {}: last seen {last}; check `journalctl -u k3s` (or `-u k3s-agent`) on {node}, or raise `timeouts.node_ready`",
        human_secs(*secs)
    )]
    NotUpgraded {
        node: String,
        version: String,
        secs: u64,
        last: String,
    },
    /// Issue 17: `k3s certificate rotate` on a server failed, or did not finish in time (k3s
    /// was started again either way when the sequence ran to its end).
    #[error(
        "certificate rotation on {node}: {what}; see {log} on {node}, and `k3s certificate check` there"
    )]
    RotationFailed {
        node: String,
        what: String,
        log: String,
    },
}

impl From<HostError> for ExecError {
    fn from(e: HostError) -> Self {
        ExecError::Host(Box::new(e))
    }
}

/// A wait's bound as the topology writes it: `3m`, `1m30s`, `45s`, `1h`.
pub fn human_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_bounds_read_as_the_topology_writes_them() {
        assert_eq!(human_secs(180), "3m");
        assert_eq!(human_secs(90), "1m30s");
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(3600), "1h");
        assert_eq!(human_secs(0), "0s");
    }

    #[test]
    fn a_learner_not_promoted_says_what_was_seen_and_what_to_check() {
        let e = ExecError::NotPromoted {
            node: "server-2".into(),
            secs: 180,
            last: "learner server-2-1a2b3c4d, healthy, not in sync (raft index 120 of 4500)".into(),
        };
        assert_eq!(
            e.to_string(),
            "learner server-2 not promoted after 3m: last seen learner server-2-1a2b3c4d, healthy, not in sync (raft index 120 of 4500); check the leader's k3s log for \"Promoted etcd learner\" (k3s promotes a learner from a 15 s loop once it caught up), etcd's --max-learners, or raise `timeouts.learner_promoted`"
        );
    }
}
