//! The SSH side of [`Live`](super::Live): one connection pool to the hosts, by node name,
//! with the address each host is reached at.
//!
//! Guarantees:
//! - a host is added once: adding a name already known keeps its connection and address
//!   (connections opened by an observation stay open for the apply steps that follow);
//! - a node no longer declared is reached with the cluster's SSH defaults, at the port the
//!   state recorded for it when there is one.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k3splan_host::{HostError, HostObservation, HostPool, HostSession, ObserveSpec};

use super::LiveOptions;
use crate::config::{SshSettings, Topology};

/// SSH connections to the hosts and their addresses.
pub struct Hosts {
    pool: HostPool,
    addresses: BTreeMap<String, IpAddr>,
}

impl Hosts {
    /// The declared nodes of `topology` (nothing is dialled yet).
    pub(super) fn of(topology: &Topology, opts: &LiveOptions) -> Self {
        let mut addresses = BTreeMap::new();
        let mut hosts = Vec::new();
        for n in &topology.nodes {
            addresses.insert(n.name.clone(), n.address);
            hosts.push((
                n.name.clone(),
                ssh_settings(opts, &n.address.to_string(), &n.ssh),
            ));
        }
        Hosts {
            pool: HostPool::new(hosts, opts.ssh_parallelism),
            addresses,
        }
    }

    /// The address `node` is reached at.
    pub fn address(&self, node: &str) -> Option<IpAddr> {
        self.addresses.get(node).copied()
    }

    /// Whether `node` is in the pool.
    pub fn contains(&self, node: &str) -> bool {
        self.addresses.contains_key(node)
    }

    /// Whether some host of the pool has address `ip`.
    pub fn has_address(&self, ip: IpAddr) -> bool {
        self.addresses.values().any(|a| *a == ip)
    }

    /// The names of the hosts in the pool.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pool.names()
    }

    /// An open session to `node` (connecting on first use).
    pub async fn session(&self, node: &str) -> Result<Arc<HostSession>, HostError> {
        self.pool.session(node).await
    }

    /// Closes every open session.
    pub async fn close_all(&self) {
        self.pool.close_all().await
    }

    /// Observes the named hosts (at most `ssh_parallelism` at once, in the order given).
    pub(super) async fn observe_many(
        &self,
        hosts: Vec<(String, ObserveSpec)>,
    ) -> BTreeMap<String, HostObservation> {
        self.pool.observe_many(hosts).await
    }

    /// Adds a host (no-op when the name is known).
    pub(super) fn add(&mut self, name: &str, address: IpAddr, settings: k3splan_host::SshSettings) {
        if self.addresses.contains_key(name) {
            return;
        }
        self.addresses.insert(name.to_string(), address);
        self.pool.add_host(name.to_string(), settings);
    }
}

/// The provider's SSH settings of a host from the topology's `ssh` block.
pub(super) fn ssh_settings(
    opts: &LiveOptions,
    address: &str,
    ssh: &SshSettings,
) -> k3splan_host::SshSettings {
    let mut s = k3splan_host::SshSettings::new(address);
    s.port = ssh.port;
    s.user = ssh.user.clone();
    s.private_key_file = ssh
        .private_key_file
        .as_ref()
        .map(|p| resolve(&opts.base_dir, p));
    s.known_hosts_file = resolve(&opts.base_dir, &ssh.known_hosts_file);
    s.connect_timeout = opts.ssh_connect_timeout;
    s.accept_new_host_keys = opts.accept_new_host_keys;
    s
}

/// Resolves a topology path: `~/` is the home directory, relative paths are relative to the
/// configuration directory.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
