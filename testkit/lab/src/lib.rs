//! The lab: a local k3s-like HA cluster on one machine, made of real parts.
//!
//! [`Lab::start`] brings up, on loopback addresses reserved for this lab only:
//! - one real OpenSSH `sshd` per host (servers, spare hosts, agents), each with its own
//!   `127.77.B.x` address, hostname and private `/etc/rancher`, `/var/lib/rancher`, `/root`
//!   ([`k3splan_testkit_sshd`]);
//! - the in-memory Kubernetes API over HTTPS ([`k3splan_testkit_kubeapi`]) with its
//!   StatefulSet/Deployment/scheduler/operator controllers, plus the lab's node lifecycle
//!   controller (a Node whose heartbeats stop goes `NotReady` with the `unreachable` taints);
//! - a lab PKI for etcd ([`k3splan_testkit_etcd::Pki`]) handed to every host;
//! - the initial servers, bootstrapped as an operator would: the `k3s-standin` install
//!   command run over SSH (`ssh` CLI, verified host keys) with `INSTALL_K3S_*`/`K3S_*`
//!   variables; the first server with `cluster-init`, the others joining through the first
//!   (each a learner promoted to voter before the next joins). Every server runs its host's
//!   REAL etcd member (`/usr/bin/etcd`, TLS) at `ADDRESS:2379/2380`;
//! - optionally the keepalived VIP (a TCP forwarder on `VIP:6443` and `VIP:2379` to the live
//!   server whose keepalived manifest has the highest priority; each host's `ip` answers from
//!   its own network namespace, which holds the VIP while the host is a VRRP master — see
//!   `vipns.rs`) and the seed 004 workloads.
//!
//! Guarantees: no two labs (threads or processes) share an address block (an `flock`ed lock
//! file per block under `/tmp`); dropping the [`Lab`] — also while a test panics — kills every
//! process it started (sshd, stand-in daemons, etcd) and removes its files. A stand-in daemon
//! whose lab process died (SIGKILL) stops itself and its etcd within a second.
//!
//! Caveats: needs root (mount namespaces, sshd), `/usr/bin/etcd`, `etcdctl`, `ssh`, `curl`.
//! The API is blocking; from an async test call it inside `spawn_blocking`. See docs/lab.md.

#![warn(missing_docs)]

pub mod hostcfg;

mod faults;
mod observe;
mod remote;
mod start;
mod topology;
mod vip;
mod vipns;
mod workloads;

pub use observe::{describe_etcd, qualified_name};
pub use vip::splice;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k3splan_etcd::{EtcdConfig, EtcdProvider, Observation};
use k3splan_testkit_kubeapi::store::{self, Store};
use k3splan_testkit_kubeapi::{Controllers, KubeApiServer, SEED004_YAML, ServerOptions};
use k3splan_testkit_sshd::{HostOptions, SshdFleet, SshdHost};
use serde_json::{Value, json};

/// `None` when the lab can run here (real sshd hosts and real etcd members), otherwise why
/// a test that needs it is skipped (`k3splan_testkit_caps::lab`, probed once per process).
pub use k3splan_testkit_caps::lab as skip_reason;

/// The k3s version the lab installs.
pub const K3S_VERSION: &str = hostcfg::DEFAULT_VERSION;
/// Where each server's keepalived static pod manifest lives (k3s's default path).
pub const KEEPALIVED_MANIFEST: &str = "/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml";
/// Seconds without a heartbeat after which the lab marks a Node `NotReady`.
pub const NODE_GRACE_SECS: i64 = 8;
/// The bearer token of the lab's kubeconfig; the lab's API answers any other with 401.
pub const KUBE_TOKEN: &str = "kubeapi-test-token";

/// Errors of the lab; each names the host, file or command involved.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A host (sshd) could not be started.
    #[error("lab: starting hosts: {0}")]
    Sshd(#[from] k3splan_testkit_sshd::HarnessError),
    /// The etcd PKI could not be created.
    #[error("lab: etcd PKI: {0}")]
    Pki(#[from] k3splan_testkit_etcd::HarnessError),
    /// The Kubernetes API could not be started or loaded.
    #[error("lab: Kubernetes API: {0}")]
    Kube(String),
    /// A file operation failed.
    #[error("lab: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No free address block.
    #[error("lab: no free loopback address block 127.77.1-254.0/24 (all locked or ports busy)")]
    NoAddressBlock,
    /// The stand-in binary was not found.
    #[error(
        "lab: k3s-standin binary not found (looked at {0}); build it with `cargo build -p k3splan-lab --bins` or set K3SPLAN_STANDIN_BIN"
    )]
    NoStandin(String),
    /// A command run over SSH on a host failed.
    #[error("lab: host {host}: `{command}` failed ({status}):\n{output}")]
    Remote {
        /// The host.
        host: String,
        /// The command (without secrets).
        command: String,
        /// Exit status.
        status: String,
        /// stdout + stderr.
        output: String,
    },
    /// A wait timed out.
    #[error("lab: timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last observation.
        last: String,
    },
    /// An unknown host name was passed.
    #[error("lab: no host named {0}")]
    NoHost(String),
    /// The hosts' VIP network namespaces could not be set up (`ip netns`).
    #[error("lab: per-host VIP network namespaces: {0}")]
    Vip(String),
}

type Result<T> = std::result::Result<T, LabError>;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError + use<> {
    let path = path.to_path_buf();
    move |source| LabError::Io { what, path, source }
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Servers bootstrapped into the cluster (3 to 5): `server-1` (cluster-init), `server-2`, …
    pub servers: usize,
    /// Hosts with sshd but no k3s (`spare-1`, …): replacements and scale-out targets.
    pub spare_hosts: usize,
    /// Agents joined through `server-1` (`agent-1`, …).
    pub agents: usize,
    /// Emulate the keepalived VIP (`127.77.B.100`), keepalived manifests on the servers.
    pub vip: bool,
    /// Pre-load the seed 004 workloads bound to `server-1..3` (needs 3+ servers).
    pub seed_workloads: bool,
    /// Run every server agent-less (`disable-agent: true` in its config.yaml, and
    /// `k3s_config = { "disable-agent" = true }` on the server blocks of rendered
    /// topologies): like k3s, such a server registers no Node (issue 19).
    pub agentless: bool,
    /// Print progress lines to stderr.
    pub verbose: bool,
    /// The `k3s-standin` binary; `None`: `$K3SPLAN_STANDIN_BIN`, else next to the current
    /// executable or in its parent directory (`target/debug/` for tests).
    pub standin: Option<PathBuf>,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            servers: 3,
            spare_hosts: 0,
            agents: 0,
            vip: false,
            seed_workloads: false,
            agentless: false,
            verbose: false,
            standin: None,
        }
    }
}

/// The role of a lab host at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRole {
    /// Bootstrapped server.
    Server,
    /// Spare host: sshd only.
    Spare,
    /// Agent.
    Agent,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Fault {
    #[default]
    None,
    Killed,
    Cut,
}

/// One lab host.
#[derive(Debug)]
pub struct LabHost {
    name: String,
    role: HostRole,
    sshd: SshdHost,
    fault: Mutex<Fault>,
}

impl LabHost {
    /// Node name and hostname.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Role at start.
    pub fn role(&self) -> HostRole {
        self.role
    }
    /// The host's address (node IP, etcd at `:2379/:2380`, supervisor at `:6443`).
    pub fn address(&self) -> Ipv4Addr {
        match self.sshd.addr().ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => unreachable!("lab hosts are IPv4"),
        }
    }
    /// SSH port.
    pub fn ssh_port(&self) -> u16 {
        self.sshd.addr().port()
    }
    /// Real path of an in-host path below the private dirs.
    pub fn path(&self, in_host: &str) -> PathBuf {
        self.sshd.path(in_host)
    }
    /// `https://ADDRESS:2379`.
    pub fn etcd_endpoint(&self) -> String {
        format!("https://{}:2379", self.address())
    }
    /// `https://ADDRESS:6443` (the server URL joiners use).
    pub fn server_url(&self) -> String {
        format!("https://{}:6443", self.address())
    }
    fn pids(&self) -> Vec<i32> {
        let mut v = Vec::new();
        for unit in ["k3s", "k3s-agent"] {
            // The supervisor first: a killed daemon must not be restarted by it.
            for f in [
                hostcfg::supervisor_pid_file(unit),
                hostcfg::pid_file(unit),
                hostcfg::etcd_pid_file(unit),
            ] {
                if let Some(p) = fs::read_to_string(self.path(&f))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    && is_lab_process(p)
                {
                    v.push(p);
                }
            }
        }
        v
    }
}

struct AddressBlock {
    b: u8,
    _lock: fs::File,
}

impl AddressBlock {
    fn ip(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 77, self.b, last)
    }

    fn reserve(host_octets: &[u8]) -> Result<Self> {
        let start = (std::process::id() % 250) as u8;
        for i in 0..254u16 {
            let b = 1 + ((start as u16 + i) % 254) as u8;
            let path = PathBuf::from(format!("/tmp/k3splan-lab-127.77.{b}.lock"));
            let Ok(f) = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            // SAFETY: flock(2) on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            let blk = AddressBlock { b, _lock: f };
            // Ports left busy by a crashed lab: skip the block.
            let busy = host_octets.iter().any(|o| {
                [2379u16, 2380, 6443]
                    .iter()
                    .any(|p| TcpListener::bind((blk.ip(*o), *p)).is_err())
            });
            if !busy {
                return Ok(blk);
            }
        }
        Err(LabError::NoAddressBlock)
    }
}

/// Files k3splan needs to reach the lab.
#[derive(Debug, Clone)]
pub struct LabFiles {
    /// kubeconfig of the lab's API.
    pub kubeconfig: PathBuf,
    /// etcd CA (k3s: `server-ca.crt`).
    pub etcd_ca: PathBuf,
    /// etcd client certificate (k3s: `client.crt`).
    pub etcd_cert: PathBuf,
    /// Its key.
    pub etcd_key: PathBuf,
    /// SSH private key authorised on every host.
    pub ssh_key: PathBuf,
    /// known_hosts with every host's key.
    pub known_hosts: PathBuf,
    /// The stand-in (copied into the lab dir): install command and service manager.
    pub standin: PathBuf,
}

/// A node of a rendered topology.
#[derive(Debug, Clone)]
pub struct TopologyNode {
    /// Lab host name.
    pub name: String,
    /// Roles (`["server", "etcd"]`, `["etcd"]`, `["control-plane"]`, `["agent"]`).
    pub roles: Vec<String>,
    /// VIP primary.
    pub primary: bool,
}

impl TopologyNode {
    /// A full server (`["server", "etcd"]`).
    pub fn server(name: &str) -> Self {
        TopologyNode {
            name: name.into(),
            roles: vec!["server".into(), "etcd".into()],
            primary: false,
        }
    }
    /// An agent.
    pub fn agent(name: &str) -> Self {
        TopologyNode {
            name: name.into(),
            roles: vec!["agent".into()],
            primary: false,
        }
    }
    /// Marks the node as the VIP primary.
    pub fn primary(mut self) -> Self {
        self.primary = true;
        self
    }
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    spec: LabSpec,
    hosts: Vec<LabHost>,
    client: Option<k3splan_testkit_sshd::ClientKeys>,
    block: AddressBlock,
    vip: Option<Ipv4Addr>,
    token: String,
    files: LabFiles,
    kube: Option<Arc<KubeApiServer>>,
    rt: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    vip_target: Arc<Mutex<Option<String>>>,
    dir: Option<tempfile::TempDir>,
    /// Each host's own VIP view (`ip` answers from it), with a VIP only.
    vip_ns: Option<Arc<vipns::VipNetns>>,
    /// Every host that holds the VIP now (VRRP MASTER of its group), by name.
    vip_holders: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("block", &format!("127.77.{}.0/24", self.block.b))
            .field(
                "hosts",
                &self.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn find_standin() -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Ok(p) = std::env::var("K3SPLAN_STANDIN_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut d = exe.parent().map(Path::to_path_buf);
        for _ in 0..2 {
            if let Some(dir) = d {
                let c = dir.join("k3s-standin");
                if c.exists() {
                    return Ok(c);
                }
                tried.push(c.display().to_string());
                d = dir.parent().map(Path::to_path_buf);
            }
        }
    }
    Err(LabError::NoStandin(tried.join(", ")))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn hcl_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

impl Lab {
    fn say(&self, msg: &str) {
        if self.spec.verbose {
            eprintln!("{msg}");
        }
    }

    /// The spec the lab was started with.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// All hosts (servers, spares, agents), in that order.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Result<&LabHost> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::NoHost(name.into()))
    }

    /// The VIP address, when emulated.
    pub fn vip(&self) -> Option<Ipv4Addr> {
        self.vip
    }

    /// The join token (give it to k3splan as `K3S_TOKEN`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Files for k3splan.
    pub fn files(&self) -> &LabFiles {
        &self.files
    }

    /// The lab's directory (kubeconfig, PKI, stand-in, rendered topologies).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("lab dir").path()
    }

    /// The in-memory API server (direct store access for tests).
    pub fn kube(&self) -> &KubeApiServer {
        self.kube.as_ref().expect("kube api")
    }

    /// Environment k3splan needs (`K3S_TOKEN`, `KUBECONFIG`).
    pub fn k3splan_env(&self) -> Vec<(String, String)> {
        vec![
            ("K3S_TOKEN".into(), self.token.clone()),
            (
                "KUBECONFIG".into(),
                self.files.kubeconfig.display().to_string(),
            ),
            // The lab kills hosts seconds before it plans; k3splan's default (a Node NotReady
            // for 300 s before its volumes are rebound) would refuse every rebind here. The
            // evidence that the host is gone is still demanded.
            ("K3SPLAN_REBIND_MIN_NOT_READY".into(), "0".into()),
        ]
    }

    /// Writes an operator's kubeconfig to `<lab dir>/FILE`: the lab's CA and credentials
    /// (`token`, else [`KUBE_TOKEN`]), naming `server_url`, e.g. `https://SERVER_IP:6443` as
    /// in a kubeconfig copied from a server and edited to name it (the lab's API certificate
    /// names every server address and the VIP, see docs/lab.md "Port 6443").
    pub fn write_kubeconfig_for(
        &self,
        file: &str,
        server_url: &str,
        token: Option<&str>,
    ) -> Result<PathBuf> {
        let kube = self.kube();
        let text = kube.kubeconfig_yaml().replace(
            &format!("server: {}\n", kube.url()),
            &format!("server: {server_url}\n"),
        );
        let text = match token {
            Some(t) => text.replace(&format!("token: {KUBE_TOKEN}\n"), &format!("token: {t}\n")),
            None => text,
        };
        let path = self.dir().join(file);
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        fs::write(&path, text).map_err(io_err("write", &path))?;
        Ok(path)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.kube().store()
    }
}

/// Guards against pid reuse: only the stand-in (`.../k3s server|agent`) and etcd are ours.
fn is_lab_process(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let first = c.split(|b| *b == 0).next().unwrap_or(&[]);
        let first = String::from_utf8_lossy(first);
        first.ends_with("/k3s") || first.ends_with("etcd")
    })
}

fn sshd_pids(listen: &str) -> Vec<i32> {
    // The sshd of a lab host runs `sshd -D -e -f <dir>/sshd_config` whose config names the
    // listen address; match the config file content.
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let mut args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // OpenSSH 9 rewrites its title: the listener's cmdline is one string,
        // `sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] 0 of 10-100 startups`.
        if let Some(title) = args.first().and_then(|a| a.strip_prefix("sshd: ")) {
            args = title.split_whitespace().map(str::to_string).collect();
        }
        if !args.first().is_some_and(|a| a.ends_with("sshd")) || !args.iter().any(|a| a == "-D") {
            continue;
        }
        if let Some(i) = args.iter().position(|a| a == "-f")
            && let Some(cfg) = args.get(i + 1)
            && fs::read_to_string(cfg).is_ok_and(|c| {
                c.lines()
                    .any(|l| l.trim() == format!("ListenAddress {listen}"))
            })
        {
            out.push(pid);
        }
    }
    out
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Resume cut hosts, then kill every daemon and etcd (their pids are in the hosts'
        // private dirs), then sshd (LabHost drop).
        for h in &self.hosts {
            self.signal_host(h, libc::SIGCONT);
            for p in h.pids() {
                // SAFETY: SIGKILL of processes this lab started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.hosts.clear();
        self.client.take();
        self.kube.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        self.dir.take();
    }
}
