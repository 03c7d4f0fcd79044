//! Host provider for k3splan: inspects and changes k3s hosts over SSH (russh).
//!
//! This crate knows SSH hosts and nothing of plans. The caller maps its configuration to
//! plain [`SshSettings`] per host and a [`K3sLayout`] (paths, service commands, installer).
//!
//! - [`HostPool`] opens connections lazily, at most `parallelism` (16) at once, each within
//!   a connect timeout (10 s), reuses them for the run, and verifies host keys against
//!   known_hosts (unknown or changed keys are errors naming host and fingerprint; the
//!   `accept_new_host_keys` setting behaves like OpenSSH `accept-new`).
//! - [`HostPool::observe_all`] returns one [`HostObservation`] per host: `Reachable(facts)`
//!   gathered by ONE remote exec per host, or `Unreachable { reason, kind }`, never "absent".
//! - [`HostSession`] acts: [`HostSession::write_file`] (atomic, backup, diff),
//!   [`HostSession::install_k3s`] (secrets on stdin), [`HostSession::service`],
//!   [`HostSession::uninstall_k3s`], [`HostSession::move_etcd_data_aside`],
//!   [`HostSession::etcd_snapshot_save`].
//! - Every value reaching a remote shell goes through [`quote::sh_quote`].

pub mod act;
pub mod check;
pub mod error;
pub mod keepalived;
pub mod observe;
pub mod quote;
pub mod recovery;
pub mod ssh;
pub mod unit;

pub use act::{
    FileWrite, InstallOutcome, InstallRequest, K3sRole, RemoteFile, Secret, UnitStatus,
    WriteOutcome, unified_diff,
};
pub use error::HostError;
pub use keepalived::{KeepalivedConfig, KeepalivedSpec, parse_manifest, render_manifest};
pub use observe::{
    ConfigFile, DiskSpace, EnvFile, EtcdDataDir, HostFacts, HostObservation, K3sBinary, K3sConfig,
    K3sLayout, ManifestFile, ObserveSpec, RawText, ServiceAction, ServiceManager, ServiceState,
    UnreachableKind, env_assignment_value, observe_command,
};
pub use ssh::{ExecOutput, HostPool, HostSession, SshSettings};
