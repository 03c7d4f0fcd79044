//! Errors of the host provider. Every message names the host and, where relevant, the
//! address, the command (by a label that never holds secrets) or the file.

use std::path::PathBuf;
use std::time::Duration;

/// An error talking to one host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host name is not part of the pool.
    #[error("host {0}: not configured in this host pool")]
    UnknownHost(String),
    /// TCP connect + handshake + authentication did not finish in time.
    #[error("ssh {host}: connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Host name.
        host: String,
        /// `address:port`.
        addr: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// TCP or SSH protocol failure (refused, reset, no route, …).
    #[error("ssh {host}: cannot connect to {addr}: {detail}")]
    Connect {
        /// Host name.
        host: String,
        /// `address:port`.
        addr: String,
        /// Cause.
        detail: String,
    },
    /// The host offered a key that known_hosts does not list (and accept-new is off).
    #[error(
        "ssh {host}: host key for {host_port} is not known ({fingerprint}); it is not in {known_hosts}. \
         Verify the fingerprint out of band and add it (ssh-keyscan), or run with --accept-new-host-keys"
    )]
    UnknownHostKey {
        /// Host name.
        host: String,
        /// The known_hosts name (`addr` or `[addr]:port`).
        host_port: String,
        /// Algorithm and SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file consulted.
        known_hosts: PathBuf,
    },
    /// The host offered a key different from the recorded one: refused, always.
    #[error(
        "ssh {host}: HOST KEY CHANGED for {host_port}: expected {expected} ({} line {line}), \
         the host offers {fingerprint}. Possible man-in-the-middle, or the host was reinstalled; \
         refusing to connect. Remove the stale line only after verifying the new key",
        known_hosts.display()
    )]
    HostKeyChanged {
        /// Host name.
        host: String,
        /// The known_hosts name (`addr` or `[addr]:port`).
        host_port: String,
        /// Algorithm and SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// Algorithm and SHA256 fingerprint of the key known_hosts records.
        expected: String,
        /// The known_hosts file consulted (boxed: keeps `HostError` small).
        known_hosts: Box<std::path::Path>,
        /// 1-based line of the recorded key.
        line: usize,
    },
    /// known_hosts could not be read or written, or the host key is of an unsupported kind.
    #[error("ssh {host}: known_hosts {path}: {detail}")]
    KnownHosts {
        /// Host name.
        host: String,
        /// The known_hosts file.
        path: PathBuf,
        /// Cause.
        detail: String,
    },
    /// The private key file could not be loaded.
    #[error("ssh {host}: cannot load private key {path}: {detail} (encrypted keys: use ssh-agent)")]
    PrivateKey {
        /// Host name.
        host: String,
        /// The key file.
        path: PathBuf,
        /// Cause.
        detail: String,
    },
    /// No offered identity was accepted.
    #[error("ssh {host}: authentication as {user} failed (tried {tried})")]
    AuthFailed {
        /// Host name.
        host: String,
        /// Remote user.
        user: String,
        /// What was offered.
        tried: String,
    },
    /// Channel-level failure while running a command (connection dropped, …).
    #[error("ssh {host}: running {command}: {detail}")]
    Channel {
        /// Host name.
        host: String,
        /// Command label.
        command: String,
        /// Cause.
        detail: String,
    },
    /// A command did not finish in time.
    #[error("ssh {host}: {command} did not finish within {timeout:?}")]
    CommandTimeout {
        /// Host name.
        host: String,
        /// Command label.
        command: String,
        /// The configured command timeout.
        timeout: Duration,
    },
    /// A command exited unsuccessfully.
    #[error("ssh {host}: {command} failed with {status}: {stderr}")]
    CommandFailed {
        /// Host name.
        host: String,
        /// Command label.
        command: String,
        /// `status N` or a note that it died by a signal.
        status: String,
        /// Its stderr (truncated).
        stderr: String,
    },
    /// A command's output was not what the provider expects.
    #[error("ssh {host}: unexpected output from {command}: {detail}")]
    Output {
        /// Host name.
        host: String,
        /// Command label.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The provider refused an action because the host is not in a safe state for it.
    #[error("host {host}: refusing to {action}: {reason}")]
    Refused {
        /// Host name.
        host: String,
        /// The action.
        action: String,
        /// Why.
        reason: String,
    },
    /// An argument cannot be passed safely (NUL byte, bad env var name, …).
    #[error("host {host}: invalid {what}: {detail}")]
    InvalidArgument {
        /// Host name.
        host: String,
        /// Which argument.
        what: String,
        /// Why.
        detail: String,
    },
}

impl HostError {
    /// Whether this error means "could not reach / authenticate / trust the host" (as opposed
    /// to a command that ran and failed).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            HostError::ConnectTimeout { .. }
                | HostError::Connect { .. }
                | HostError::UnknownHostKey { .. }
                | HostError::HostKeyChanged { .. }
                | HostError::KnownHosts { .. }
                | HostError::PrivateKey { .. }
                | HostError::AuthFailed { .. }
        )
    }
}
