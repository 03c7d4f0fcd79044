//! SSH connections: settings, host-key verification, authentication, remote exec, and a pool
//! that reuses connections within a run and bounds parallelism.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::{Mutex, Semaphore};

use crate::error::HostError;

/// Default bound on connections opened (and hosts observed) at once.
pub const DEFAULT_PARALLELISM: usize = 16;
/// Default connect timeout (TCP connect + SSH handshake + authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of one remote command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// How to reach one host. Plain values: the caller maps its configuration to these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSettings {
    /// IP address or DNS name. Also the name looked up in known_hosts (`[address]:port` when
    /// the port is not 22), exactly like OpenSSH.
    pub address: String,
    /// TCP port (22).
    pub port: u16,
    /// Remote user (`root`): k3s management needs root.
    pub user: String,
    /// Private key file (OpenSSH or PEM, unencrypted; use the agent for encrypted keys).
    /// A leading `~/` is expanded. `None`: agent only.
    pub private_key_file: Option<PathBuf>,
    /// known_hosts file used to verify host keys (`~/` expanded).
    pub known_hosts_file: PathBuf,
    /// ssh-agent socket whose identities are offered first; [`SshSettings::new`] takes
    /// `SSH_AUTH_SOCK`. `None`: no agent.
    pub agent_socket: Option<PathBuf>,
    /// Timeout of TCP connect + handshake + authentication.
    pub connect_timeout: Duration,
    /// Timeout of each remote command.
    pub command_timeout: Duration,
    /// Like OpenSSH `StrictHostKeyChecking=accept-new`: a host with NO recorded key is
    /// trusted and its key appended to known_hosts. A changed key is refused regardless.
    pub accept_new_host_keys: bool,
}

impl SshSettings {
    /// Settings with the defaults: port 22, user root, `~/.ssh/known_hosts`, agent when
    /// `SSH_AUTH_SOCK` is set, 10 s connect timeout, strict host keys.
    pub fn new(address: impl Into<String>) -> Self {
        SshSettings {
            address: address.into(),
            port: 22,
            user: "root".into(),
            private_key_file: None,
            known_hosts_file: PathBuf::from("~/.ssh/known_hosts"),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            accept_new_host_keys: false,
        }
    }

    fn host_port(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_tilde(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Output of one remote command.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Exit status; `None` when the remote side sent none (killed by a signal).
    pub status: Option<u32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Serialises appends to known_hosts files within this process.
static KNOWN_HOSTS_LOCK: StdMutex<()> = StdMutex::new(());

struct Verifier {
    host: String,
    settings: SshSettings,
    known_hosts: PathBuf,
    verdict: Arc<StdMutex<Option<HostError>>>,
}

impl Verifier {
    fn refuse(&self, e: HostError) -> Result<bool, russh::Error> {
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        Ok(false)
    }
}

fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return self.refuse(HostError::KnownHosts {
                    host: self.host.clone(),
                    path: self.known_hosts.clone(),
                    detail: "host certificates are not supported; configure a plain host key"
                        .into(),
                });
            }
        };
        let s = &self.settings;
        let _g = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        match russh::keys::check_known_hosts_path(&s.address, s.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if s.accept_new_host_keys => {
                if let Err(e) = russh::keys::known_hosts::learn_known_hosts_path(
                    &s.address,
                    s.port,
                    key,
                    &self.known_hosts,
                ) {
                    return self.refuse(HostError::KnownHosts {
                        host: self.host.clone(),
                        path: self.known_hosts.clone(),
                        detail: format!("cannot add the new host key: {e}"),
                    });
                }
                tracing::warn!(
                    host = %self.host,
                    fingerprint = %fingerprint(key),
                    known_hosts = %self.known_hosts.display(),
                    "accepted and recorded a new host key (--accept-new-host-keys)"
                );
                Ok(true)
            }
            Ok(false) => self.refuse(HostError::UnknownHostKey {
                host: self.host.clone(),
                host_port: s.host_port(),
                fingerprint: fingerprint(key),
                known_hosts: self.known_hosts.clone(),
            }),
            Err(russh::keys::Error::KeyChanged { line }) => {
                // The recorded key's fingerprint, so the operator can compare both out of
                // band (as OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED" does).
                let expected = russh::keys::known_hosts::known_host_keys_path(
                    &s.address,
                    s.port,
                    &self.known_hosts,
                )
                .ok()
                .and_then(|keys| keys.into_iter().find(|(l, _)| *l == line))
                .map(|(_, k)| fingerprint(&k))
                .unwrap_or_else(|| "(unreadable)".into());
                self.refuse(HostError::HostKeyChanged {
                    host: self.host.clone(),
                    host_port: s.host_port(),
                    fingerprint: fingerprint(key),
                    expected,
                    known_hosts: self.known_hosts.clone().into_boxed_path(),
                    line,
                })
            }
            Err(e) => self.refuse(HostError::KnownHosts {
                host: self.host.clone(),
                path: self.known_hosts.clone(),
                detail: e.to_string(),
            }),
        }
    }
}

/// An authenticated SSH connection to one host. Cheap to share (`Arc`); commands may run
/// concurrently on it (one channel each; sshd's `MaxSessions`, 10 by default, bounds them).
pub struct HostSession {
    name: String,
    settings: SshSettings,
    handle: client::Handle<Verifier>,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("name", &self.name)
            .field("address", &self.settings.address)
            .field("port", &self.settings.port)
            .finish()
    }
}

impl HostSession {
    /// Connects and authenticates within `settings.connect_timeout`.
    ///
    /// The host key must be in `known_hosts_file` (or, with `accept_new_host_keys`, the host
    /// must have no key recorded yet); otherwise [`HostError::UnknownHostKey`] or
    /// [`HostError::HostKeyChanged`] names the host and the offered fingerprint.
    /// Authentication tries the agent's identities (when `agent_socket` is set), then the key
    /// file.
    pub async fn connect(name: &str, settings: &SshSettings) -> Result<HostSession, HostError> {
        let addr = format!("{}:{}", settings.address, settings.port);
        match tokio::time::timeout(
            settings.connect_timeout,
            Self::connect_inner(name, settings),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(HostError::ConnectTimeout {
                host: name.to_string(),
                addr,
                timeout: settings.connect_timeout,
            }),
        }
    }

    async fn connect_inner(name: &str, settings: &SshSettings) -> Result<HostSession, HostError> {
        let addr = format!("{}:{}", settings.address, settings.port);
        let mut handle = Self::handshake(name, settings, &addr).await?;
        let mut tried = Vec::new();
        let authenticated = Self::auth_with_agent(&mut handle, settings, &mut tried).await
            || Self::auth_with_key_file(&mut handle, name, settings, &addr, &mut tried).await?;
        if authenticated {
            return Ok(HostSession {
                name: name.to_string(),
                settings: settings.clone(),
                handle,
            });
        }
        Err(HostError::AuthFailed {
            host: name.to_string(),
            user: settings.user.clone(),
            tried: if tried.is_empty() {
                "nothing: no usable agent and no private_key_file".into()
            } else {
                tried.join(", ")
            },
        })
    }

    /// TCP connect and SSH handshake, the host key checked by [`Verifier`] (whose verdict
    /// is the error when it refused the key).
    async fn handshake(
        name: &str,
        settings: &SshSettings,
        addr: &str,
    ) -> Result<client::Handle<Verifier>, HostError> {
        let verdict = Arc::new(StdMutex::new(None));
        let handler = Verifier {
            host: name.to_string(),
            settings: settings.clone(),
            known_hosts: expand_tilde(&settings.known_hosts_file),
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            ..Default::default()
        });
        let connected =
            client::connect(config, (settings.address.as_str(), settings.port), handler).await;
        connected.map_err(|e| {
            if let Some(v) = verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return v;
            }
            HostError::Connect {
                host: name.to_string(),
                addr: addr.to_string(),
                detail: connect_error_detail(&e),
            }
        })
    }

    /// Offers the agent's keys, if an agent socket is configured and answers; whether one
    /// was accepted.
    async fn auth_with_agent(
        handle: &mut client::Handle<Verifier>,
        settings: &SshSettings,
        tried: &mut Vec<String>,
    ) -> bool {
        if let Some(sock) = &settings.agent_socket
            && let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_uds(sock).await
            && let Ok(ids) = agent.request_identities().await
        {
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = id else {
                    continue;
                };
                tried.push(format!("agent key {comment}"));
                let hash = rsa_hash(handle, &key).await;
                match handle
                    .authenticate_publickey_with(&settings.user, key, hash, &mut agent)
                    .await
                {
                    Ok(r) if r.success() => return true,
                    _ => continue,
                }
            }
        }
        false
    }

    /// Offers the configured private key file, if any; whether it was accepted.
    async fn auth_with_key_file(
        handle: &mut client::Handle<Verifier>,
        name: &str,
        settings: &SshSettings,
        addr: &str,
        tried: &mut Vec<String>,
    ) -> Result<bool, HostError> {
        let Some(kf) = &settings.private_key_file else {
            return Ok(false);
        };
        let path = expand_tilde(kf);
        let key = russh::keys::load_secret_key(&path, None).map_err(|e| HostError::PrivateKey {
            host: name.to_string(),
            path: path.clone(),
            detail: e.to_string(),
        })?;
        tried.push(format!("key file {}", path.display()));
        let hash = rsa_hash(handle, key.public_key()).await;
        let r = handle
            .authenticate_publickey(
                &settings.user,
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| HostError::Connect {
                host: name.to_string(),
                addr: addr.to_string(),
                detail: format!("during authentication: {e}"),
            })?;
        Ok(r.success())
    }

    /// The host's name (as given to [`HostSession::connect`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings used to connect.
    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// Whether the underlying connection is gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs one command line (already quoted by the caller, see [`crate::quote`]), feeding
    /// `stdin` and closing it, and collects stdout, stderr and the exit status, within
    /// `settings.command_timeout`. A non-zero exit status is NOT an error here.
    ///
    /// `label` names the command in errors and logs; it must not contain secrets (the command
    /// line never does either: secrets travel on stdin).
    pub async fn exec(
        &self,
        label: &str,
        command: &str,
        stdin: &[u8],
    ) -> Result<ExecOutput, HostError> {
        tracing::debug!(host = %self.name, command = %label, "ssh exec");
        let timeout = self.settings.command_timeout;
        match tokio::time::timeout(timeout, self.exec_inner(label, command, stdin)).await {
            Ok(r) => r,
            Err(_) => Err(HostError::CommandTimeout {
                host: self.name.clone(),
                command: label.to_string(),
                timeout,
            }),
        }
    }

    async fn exec_inner(
        &self,
        label: &str,
        command: &str,
        stdin: &[u8],
    ) -> Result<ExecOutput, HostError> {
        let chan_err = |e: russh::Error| HostError::Channel {
            host: self.name.clone(),
            command: label.to_string(),
            detail: e.to_string(),
        };
        let channel = self.handle.channel_open_session().await.map_err(chan_err)?;
        channel.exec(true, command).await.map_err(chan_err)?;
        let (mut read, write) = channel.split();
        // Feed stdin concurrently with reading, so large inputs and outputs cannot deadlock.
        let writer = async {
            if !stdin.is_empty() {
                write.data(stdin).await.map_err(chan_err)?;
            }
            write.eof().await.map_err(chan_err)
        };
        let reader = async {
            let mut out = ExecOutput::default();
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out
        };
        let (w, out) = tokio::join!(writer, reader);
        // The remote side may exit without reading all of stdin; then the write fails but
        // the exit status is what matters.
        if let Err(e) = w
            && out.status.is_none()
        {
            return Err(e);
        }
        Ok(out)
    }

    /// [`exec`](Self::exec), and an error naming the command when the exit status is not 0.
    pub async fn run(
        &self,
        label: &str,
        command: &str,
        stdin: &[u8],
    ) -> Result<ExecOutput, HostError> {
        let out = self.exec(label, command, stdin).await?;
        if out.status != Some(0) {
            return Err(self.failed(label, &out));
        }
        Ok(out)
    }

    pub(crate) fn failed(&self, label: &str, out: &ExecOutput) -> HostError {
        self.failed_redacted(label, out, &[])
    }

    /// [`Self::failed`] with `secrets` redacted from stderr before it is cut to 2,000
    /// characters (cut first, a secret across the cut would keep its first part).
    pub(crate) fn failed_redacted(
        &self,
        label: &str,
        out: &ExecOutput,
        secrets: &[crate::act::Secret],
    ) -> HostError {
        let mut stderr = crate::act::redact(out.stderr_str().trim(), secrets);
        if stderr.len() > 2000 {
            let mut cut = 2000;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push('…');
        }
        HostError::CommandFailed {
            host: self.name.clone(),
            command: label.to_string(),
            status: out.status.map_or_else(
                || "no exit status (signal)".into(),
                |s| format!("status {s}"),
            ),
            stderr,
        }
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "k3splan done", "en")
            .await;
    }
}

async fn rsa_hash(handle: &client::Handle<Verifier>, key: &PublicKey) -> Option<HashAlg> {
    if key.algorithm().is_rsa() {
        handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
    } else {
        None
    }
}

fn connect_error_detail(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// One host's cached connection; the inner lock serialises connecting to that host.
type SessionSlot = Arc<Mutex<Option<Arc<HostSession>>>>;

/// Connections to a set of named hosts, opened lazily (at most `parallelism` at once) and
/// reused for the rest of the run.
///
/// A failed connect is not cached: the next call tries again. A cached connection that has
/// closed is replaced on the next [`HostPool::session`] call.
pub struct HostPool {
    hosts: BTreeMap<String, SshSettings>,
    parallelism: usize,
    connect_permits: Arc<Semaphore>,
    sessions: Mutex<HashMap<String, SessionSlot>>,
}

impl HostPool {
    /// A pool over `(name, settings)` pairs; `parallelism` 0 means [`DEFAULT_PARALLELISM`].
    pub fn new(hosts: impl IntoIterator<Item = (String, SshSettings)>, parallelism: usize) -> Self {
        let parallelism = if parallelism == 0 {
            DEFAULT_PARALLELISM
        } else {
            parallelism
        };
        HostPool {
            hosts: hosts.into_iter().collect(),
            parallelism,
            connect_permits: Arc::new(Semaphore::new(parallelism)),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a host that the pool does not know yet; open connections are kept. Returns
    /// false (and changes nothing) when `name` is already in the pool.
    pub fn add_host(&mut self, name: impl Into<String>, settings: SshSettings) -> bool {
        match self.hosts.entry(name.into()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(settings);
                true
            }
            std::collections::btree_map::Entry::Occupied(_) => false,
        }
    }

    /// Host names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    /// The parallelism bound.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// The connection to `name`, opening it if needed.
    pub async fn session(&self, name: &str) -> Result<Arc<HostSession>, HostError> {
        let settings = self
            .hosts
            .get(name)
            .ok_or_else(|| HostError::UnknownHost(name.to_string()))?;
        let slot = {
            let mut map = self.sessions.lock().await;
            map.entry(name.to_string()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let _permit = self
            .connect_permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let s = Arc::new(HostSession::connect(name, settings).await?);
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Forgets the cached connection to `name` (after it broke); the next
    /// [`HostPool::session`] reconnects.
    pub async fn invalidate(&self, name: &str) {
        let slot = self.sessions.lock().await.get(name).cloned();
        if let Some(slot) = slot {
            slot.lock().await.take();
        }
    }

    /// Closes every open connection.
    pub async fn close_all(&self) {
        let map = std::mem::take(&mut *self.sessions.lock().await);
        for (_, slot) in map {
            if let Some(s) = slot.lock().await.take() {
                s.close().await;
            }
        }
    }
}
