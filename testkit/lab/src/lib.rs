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
//!   server whose keepalived manifest has the highest priority) and the seed 004 workloads.
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
            for f in [hostcfg::pid_file(unit), hostcfg::etcd_pid_file(unit)] {
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
    /// Brings up a lab (see the crate docs). Takes 10–40 s for 3 servers, more on a loaded
    /// machine. Fails with the failing host's output when a bootstrap step fails.
    pub fn start(spec: LabSpec) -> Result<Lab> {
        let standin_src = match &spec.standin {
            Some(p) => p.clone(),
            None => find_standin()?,
        };
        let mut octets = Vec::new();
        let mut plan: Vec<(String, HostRole, u8)> = Vec::new();
        for i in 0..spec.servers {
            plan.push((format!("server-{}", i + 1), HostRole::Server, 11 + i as u8));
        }
        for i in 0..spec.spare_hosts {
            plan.push((format!("spare-{}", i + 1), HostRole::Spare, 21 + i as u8));
        }
        for i in 0..spec.agents {
            plan.push((format!("agent-{}", i + 1), HostRole::Agent, 31 + i as u8));
        }
        octets.extend(plan.iter().map(|p| p.2));
        if spec.vip {
            octets.push(100);
        }
        let block = AddressBlock::reserve(&octets)?;
        let dir = tempfile::Builder::new()
            .prefix("k3splan-lab-")
            .tempdir()
            .map_err(io_err("create temp dir", Path::new("/tmp")))?;
        let d = dir.path().to_path_buf();
        let bindir = d.join("bin");
        fs::create_dir_all(&bindir).map_err(io_err("create", &bindir))?;
        let standin = bindir.join("k3s-standin");
        fs::copy(&standin_src, &standin).map_err(io_err("copy the stand-in to", &standin))?;
        fs::set_permissions(&standin, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &standin))?;
        let vip = spec.vip.then(|| block.ip(100));

        // PKI: one CA for client and peer traffic; a server cert per host with its IP, the
        // VIP and 127.0.0.1.
        let pki = k3splan_testkit_etcd::Pki::create(&d.join("pki"), "k3s-lab-etcd-ca")?;
        let client = pki.issue_client("client")?;

        // Kubernetes API.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LabError::Kube(format!("tokio runtime: {e}")))?;
        let kube = {
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let r = KubeApiServer::start(ServerOptions {
                    tls: true,
                    controllers: Controllers::all(),
                    ..Default::default()
                })
                .await;
                let _ = tx.send(r);
            });
            rx.recv()
                .map_err(|e| LabError::Kube(e.to_string()))?
                .map_err(|e| LabError::Kube(e.to_string()))?
        };
        let kube = Arc::new(kube);
        let kubeconfig = d.join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig)
            .map_err(|e| LabError::Kube(e.to_string()))?;

        // Hosts.
        let opts: Vec<HostOptions> = plan
            .iter()
            .map(|(name, _, o)| {
                let mut h = HostOptions::new(name.clone());
                h.address = Some(block.ip(*o));
                h
            })
            .collect();
        let fleet = SshdFleet::start_with(opts)?;
        let SshdFleet {
            client: keys,
            hosts,
        } = fleet;
        let hosts: Vec<LabHost> = hosts
            .into_iter()
            .zip(plan.iter())
            .map(|(sshd, (name, role, _))| LabHost {
                name: name.clone(),
                role: *role,
                sshd,
                fault: Mutex::new(Fault::None),
            })
            .collect();
        let files = LabFiles {
            kubeconfig,
            etcd_ca: client.ca_file.clone(),
            etcd_cert: client.cert_file.clone(),
            etcd_key: client.key_file.clone(),
            ssh_key: keys.private_key(),
            known_hosts: keys.known_hosts(),
            standin,
        };
        let token = format!(
            "K10lab{:x}::server:{:x}",
            block.b,
            std::process::id() ^ 0x5eed
        );
        let mut lab = Lab {
            spec: spec.clone(),
            hosts,
            client: Some(keys),
            block,
            vip,
            token,
            files,
            kube: Some(kube),
            rt: Some(rt),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            vip_target: Arc::new(Mutex::new(None)),
            dir: Some(dir),
        };
        let kube_ca = lab.kube().ca_pem().unwrap_or_default().to_string();
        let kube_url = lab.kube().url().to_string();
        for h in &lab.hosts {
            let ip = h.address();
            let mut ips = vec![std::net::IpAddr::V4(ip), "127.0.0.1".parse().expect("ip")];
            if let Some(v) = vip {
                ips.push(std::net::IpAddr::V4(v));
            }
            let (cert, key) = pki.issue_server(&format!("server-{}", h.name), &ips)?;
            for (src, dst) in [
                (pki.ca_file().to_path_buf(), "ca.crt"),
                (cert, "server.crt"),
                (key, "server.key"),
                (client.cert_file.clone(), "client.crt"),
                (client.key_file.clone(), "client.key"),
            ] {
                let data = fs::read(&src).map_err(io_err("read", &src))?;
                h.sshd.write(&format!("{}/{dst}", hostcfg::PKI_DIR), data)?;
            }
            h.sshd
                .write(&format!("{}/kube-ca.crt", hostcfg::LAB_DIR), &kube_ca)?;
            let cfg = hostcfg::HostConfig {
                node_ip: ip.to_string(),
                kube_url: kube_url.clone(),
                kube_ca_file: format!("{}/kube-ca.crt", hostcfg::LAB_DIR),
                kube_token: "kubeapi-test-token".into(),
                lab_pid: std::process::id(),
                etcd_bin: std::env::var("K3SPLAN_ETCD_BIN")
                    .unwrap_or_else(|_| "/usr/bin/etcd".into()),
                etcdctl_bin: std::env::var("K3SPLAN_ETCDCTL_BIN")
                    .unwrap_or_else(|_| "/usr/bin/etcdctl".into()),
                heartbeat_secs: 2,
                promote_secs: 2,
                start_timeout_secs: 60,
                no_leader_exit_secs: 10,
                etcd_heartbeat_ms: 250,
                etcd_election_ms: 2500,
            };
            h.sshd.write(
                hostcfg::HOST_CONFIG,
                serde_json::to_vec_pretty(&cfg).expect("json"),
            )?;
        }
        lab.start_controller();
        lab.say(&format!(
            "lab: hosts up on 127.77.{}.0/24, Kubernetes API at {}",
            lab.block.b, kube_url
        ));

        // Bootstrap servers one at a time, then agents.
        let servers: Vec<String> = lab
            .hosts
            .iter()
            .filter(|h| h.role == HostRole::Server)
            .map(|h| h.name.clone())
            .collect();
        let first_url = lab.host(&servers[0])?.server_url();
        for (i, s) in servers.iter().enumerate() {
            let join = (i > 0).then_some(first_url.as_str());
            lab.say(&format!(
                "lab: installing k3s on {s} ({})",
                join.map(|u| format!("joining through {u}"))
                    .unwrap_or_else(|| "cluster-init".into())
            ));
            lab.install_server(s, join)?;
            lab.wait_voters(i + 1, Duration::from_secs(90))?;
        }
        let agents: Vec<String> = lab
            .hosts
            .iter()
            .filter(|h| h.role == HostRole::Agent)
            .map(|h| h.name.clone())
            .collect();
        for a in &agents {
            lab.say(&format!("lab: installing k3s agent on {a}"));
            lab.install_agent(a, &first_url)?;
        }
        let mut ready: Vec<String> = servers.clone();
        ready.extend(agents);
        for n in &ready {
            lab.wait_node_ready(n, true, Duration::from_secs(60))?;
        }
        if spec.vip {
            for (i, s) in servers.iter().enumerate() {
                lab.write_keepalived(s, if i == 0 { 100 } else { 90 })?;
            }
            lab.start_vip()?;
        }
        if spec.seed_workloads {
            lab.load_seed004()?;
        }
        lab.say("lab: ready");
        Ok(lab)
    }

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

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.kube().store()
    }

    // ------------------------------------------------------------------------------------------
    // running things on hosts

    /// Runs a shell script on a host over SSH (the `ssh` client, the lab key, strict host key
    /// checking against the lab's known_hosts). `env` is exported first (sent on stdin, never
    /// on a command line). Returns `(exit status, stdout+stderr)`.
    pub fn ssh(&self, host: &str, env: &[(&str, &str)], script: &str) -> Result<(i32, String)> {
        let h = self.host(host)?;
        let mut stdin = String::new();
        for (k, v) in env {
            let _ = writeln!(stdin, "export {k}={}", sh_quote(v));
        }
        stdin.push_str(script);
        stdin.push('\n');
        let mut child = Command::new("ssh")
            .args(["-F", "/dev/null", "-T", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.files.known_hosts.display()
            ))
            .arg("-i")
            .arg(&self.files.ssh_key)
            .arg("-p")
            .arg(h.ssh_port().to_string())
            .arg(format!("root@{}", h.address()))
            .args(["sh", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("run", Path::new("ssh")))?;
        if let Some(mut si) = child.stdin.take() {
            let _ = si.write_all(stdin.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(io_err("wait for", Path::new("ssh")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text))
    }

    fn ssh_ok(
        &self,
        host: &str,
        env: &[(&str, &str)],
        script: &str,
        label: &str,
    ) -> Result<String> {
        let (code, out) = self.ssh(host, env, script)?;
        if code != 0 {
            return Err(LabError::Remote {
                host: host.into(),
                command: label.into(),
                status: format!("exit {code}"),
                output: out.replace(&self.token, "<token>"),
            });
        }
        Ok(out)
    }

    /// The install command a topology uses: `<lab dir>/bin/k3s-standin install`.
    pub fn install_command(&self) -> String {
        format!("{} install", self.files.standin.display())
    }

    /// Writes `/etc/rancher/k3s/config.yaml` on a host for a server (`cluster-init` when
    /// `join` is `None`, else `server: JOIN`) and runs the install command over SSH, as an
    /// operator would. Returns the installer output; fails when k3s does not become ready.
    pub fn install_server(&self, host: &str, join: Option<&str>) -> Result<String> {
        let h = self.host(host)?;
        let mut cfg = format!(
            "node-name: {}\nnode-ip: {}\ntoken: {}\n",
            h.name,
            h.address(),
            hcl_str(&self.token)
        );
        match join {
            Some(u) => {
                let _ = writeln!(cfg, "server: {u}");
            }
            None => cfg.push_str("cluster-init: true\n"),
        }
        h.sshd.write("/etc/rancher/k3s/config.yaml", cfg)?;
        let mut env = vec![
            ("INSTALL_K3S_VERSION", K3S_VERSION),
            ("INSTALL_K3S_EXEC", "server"),
            ("K3S_TOKEN", self.token.as_str()),
        ];
        if let Some(u) = join {
            env.push(("K3S_URL", u));
        }
        self.ssh_ok(host, &env, &self.install_command(), "k3s install (server)")
    }

    /// Installs an agent joining through `server_url`.
    pub fn install_agent(&self, host: &str, server_url: &str) -> Result<String> {
        let h = self.host(host)?;
        let cfg = format!("node-name: {}\nnode-ip: {}\n", h.name, h.address());
        h.sshd.write("/etc/rancher/k3s/config.yaml", cfg)?;
        let env = [
            ("INSTALL_K3S_VERSION", K3S_VERSION),
            ("INSTALL_K3S_EXEC", "agent"),
            ("K3S_TOKEN", self.token.as_str()),
            ("K3S_URL", server_url),
        ];
        self.ssh_ok(host, &env, &self.install_command(), "k3s install (agent)")
    }

    /// Runs `k3s-standin service VERB UNIT` on a host over SSH; returns `(status, output)`.
    pub fn service(&self, host: &str, verb: &str, unit: &str) -> Result<(i32, String)> {
        self.ssh(
            host,
            &[],
            &format!(
                "{} service {} {}",
                sh_quote(&self.files.standin.display().to_string()),
                sh_quote(verb),
                sh_quote(unit)
            ),
        )
    }

    /// The stand-in's log of a unit on a host (`/var/lib/rancher/lab/<unit>.log`).
    pub fn k3s_log(&self, host: &str) -> String {
        self.read_file(host, &hostcfg::log_file("k3s"))
            .unwrap_or_default()
    }

    /// Contents of an in-host file (read from the host's private directories; empty string
    /// semantics are the caller's: `None` when absent).
    pub fn read_file(&self, host: &str, in_host: &str) -> Option<String> {
        let h = self.host(host).ok()?;
        fs::read_to_string(h.path(in_host)).ok()
    }

    /// Writes an in-host file directly (setup of scenarios).
    pub fn write_file(&self, host: &str, in_host: &str, contents: &str) -> Result<()> {
        Ok(self.host(host)?.sshd.write(in_host, contents)?)
    }

    // ------------------------------------------------------------------------------------------
    // fault injection

    /// The machine dies: sshd, the k3s daemon and etcd are SIGKILLed. The Node goes NotReady
    /// after [`NODE_GRACE_SECS`]; its etcd member stays listed (membership is not liveness).
    pub fn kill_host(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        h.sshd.stop();
        for p in h.pids() {
            // SAFETY: SIGCONT (in case it was cut) then SIGKILL of processes this lab started.
            unsafe {
                libc::kill(p, libc::SIGCONT);
                libc::kill(p, libc::SIGKILL);
            }
        }
        *h.fault.lock().unwrap_or_else(|p| p.into_inner()) = Fault::Killed;
        Ok(())
    }

    /// The host's SSH host key is replaced (as after a reinstall, or by a man-in-the-middle)
    /// and its sshd restarted; the lab's known_hosts keeps the old key.
    pub fn rotate_host_key(&self, name: &str) -> Result<()> {
        self.host(name)?.sshd.rotate_host_key()?;
        Ok(())
    }

    /// The host's network is cut, its processes stay alive: sshd (its listener process
    /// group), the k3s daemon and etcd are SIGSTOPped. Peers and clients time out instead of
    /// being refused (like dropped packets); heartbeats stop so the Node goes NotReady.
    /// [`heal_network`](Self::heal_network) resumes them.
    pub fn cut_network(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        self.signal_host(h, libc::SIGSTOP);
        *h.fault.lock().unwrap_or_else(|p| p.into_inner()) = Fault::Cut;
        Ok(())
    }

    /// Undoes [`cut_network`](Self::cut_network).
    pub fn heal_network(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        self.signal_host(h, libc::SIGCONT);
        *h.fault.lock().unwrap_or_else(|p| p.into_inner()) = Fault::None;
        Ok(())
    }

    fn signal_host(&self, h: &LabHost, sig: i32) {
        let port = h.ssh_port();
        // sshd's listener: find it by its listen address in /proc (its pid is private to
        // the sshd harness); every process whose cmdline names this host's sshd_config.
        let needle = format!("{}:{port}", h.address());
        for pid in sshd_pids(&needle) {
            // SAFETY: signals to processes this lab started.
            unsafe { libc::kill(-pid, sig) };
        }
        for p in h.pids() {
            // SAFETY: as above.
            unsafe { libc::kill(p, sig) };
        }
    }

    /// Writes a garbage etcd data dir (`<data-dir>/server/db/etcd/member/...` with random
    /// bytes) on a host: etcd refuses to start from it.
    pub fn corrupt_data_dir(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        h.sshd.write(
            "/var/lib/rancher/k3s/server/db/etcd/member/snap/db",
            vec![0xA5u8; 4096],
        )?;
        h.sshd.write(
            "/var/lib/rancher/k3s/server/db/etcd/member/wal/0000000000000000-0000000000000000.wal",
            vec![0x5Au8; 4096],
        )?;
        Ok(())
    }

    /// Seed 002: plants on `name` the etcd data dir of ANOTHER cluster (a real one-member
    /// cluster bootstrapped on this host's address, then stopped), plus that cluster's k3s
    /// `config` and `name` files, as a previous installation would have left them. A k3s
    /// started with `server:` on this host then starts etcd from that data and never joins.
    pub fn plant_stale_etcd_data(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        let ip = h.address();
        let data = h.path("/var/lib/rancher/k3s/server/db/etcd");
        fs::create_dir_all(&data).map_err(io_err("create", &data))?;
        let tls = h.path("/var/lib/rancher/lab/pki");
        let mname = format!("{name}-0ld0c1u5");
        let old_peer = format!("https://{}:2380", self.block.ip(250));
        let config = format!(
            "name: {mname}\ndata-dir: /var/lib/rancher/k3s/server/db/etcd\nlisten-client-urls: https://{ip}:2379\nadvertise-client-urls: https://{ip}:2379\nlisten-peer-urls: https://{ip}:2380\ninitial-advertise-peer-urls: https://{ip}:2380\ninitial-cluster: {mname}=https://{ip}:2380,old-peer={old_peer}\ninitial-cluster-state: new\nheartbeat-interval: 250\nelection-timeout: 2500\nlogger: zap\nlog-outputs: [stderr]\nclient-transport-security:\n  cert-file: /var/lib/rancher/k3s/server/tls/etcd/server-client.crt\n  key-file: /var/lib/rancher/k3s/server/tls/etcd/server-client.key\n  trusted-ca-file: /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt\n  client-cert-auth: true\npeer-transport-security:\n  cert-file: /var/lib/rancher/k3s/server/tls/etcd/peer-server-client.crt\n  key-file: /var/lib/rancher/k3s/server/tls/etcd/peer-server-client.key\n  trusted-ca-file: /var/lib/rancher/k3s/server/tls/etcd/peer-ca.crt\n  client-cert-auth: true\n"
        );
        // Run a real etcd once on the host's real data path to create a genuine data dir of a
        // two-member cluster whose other member never existed (no quorum: it only writes its
        // WAL and member dir), then stop it.
        let etcd = std::env::var("K3SPLAN_ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into());
        let mut child = Command::new(&etcd)
            .args(["--name", &mname])
            .arg("--data-dir")
            .arg(&data)
            .arg(format!("--listen-peer-urls=https://{ip}:2380"))
            .arg(format!("--initial-advertise-peer-urls=https://{ip}:2380"))
            .arg(format!("--listen-client-urls=https://{ip}:2379"))
            .arg(format!("--advertise-client-urls=https://{ip}:2379"))
            .arg(format!(
                "--initial-cluster={mname}=https://{ip}:2380,old-peer={old_peer}"
            ))
            .arg("--initial-cluster-token=another-cluster")
            .arg(format!("--cert-file={}", tls.join("server.crt").display()))
            .arg(format!("--key-file={}", tls.join("server.key").display()))
            .arg(format!(
                "--trusted-ca-file={}",
                tls.join("ca.crt").display()
            ))
            .arg(format!(
                "--peer-cert-file={}",
                tls.join("server.crt").display()
            ))
            .arg(format!(
                "--peer-key-file={}",
                tls.join("server.key").display()
            ))
            .arg(format!(
                "--peer-trusted-ca-file={}",
                tls.join("ca.crt").display()
            ))
            .args(["--client-cert-auth", "--peer-client-cert-auth"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("run", Path::new(&etcd)))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !data.join("member/wal").is_dir() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        let _ = child.wait();
        fs::write(data.join("config"), config).map_err(io_err("write", &data))?;
        fs::write(data.join("name"), format!("{mname}\n")).map_err(io_err("write", &data))?;
        Ok(())
    }

    // ------------------------------------------------------------------------------------------
    // observation

    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("lab runtime task")
    }

    /// An etcd provider for the given endpoints (default: every server and spare host),
    /// with the lab's client TLS and a 3 s timeout.
    pub fn etcd_provider(&self, endpoints: Option<Vec<String>>) -> EtcdProvider {
        let eps = endpoints.unwrap_or_else(|| {
            self.hosts
                .iter()
                .filter(|h| h.role != HostRole::Agent)
                .map(LabHost::etcd_endpoint)
                .collect()
        });
        EtcdProvider::new(
            EtcdConfig::new(eps)
                .with_tls(k3splan_etcd::TlsFiles {
                    ca_file: self.files.etcd_ca.clone(),
                    cert_file: self.files.etcd_cert.clone(),
                    key_file: self.files.etcd_key.clone(),
                })
                .with_timeout(Duration::from_secs(3)),
        )
        .expect("valid etcd config")
    }

    /// Observes etcd through the provider (members, health, leader) over every lab host's
    /// endpoint.
    pub fn etcd(&self) -> Observation {
        let p = self.etcd_provider(None);
        self.block_on(async move { p.observe().await })
    }

    /// Waits until etcd lists `n` voters, all healthy, with no learner left.
    pub fn wait_voters(&self, n: usize, timeout: Duration) -> Result<Observation> {
        self.wait_etcd(&format!("{n} healthy etcd voters"), timeout, |o| {
            o.health.voters == n && o.health.healthy_voters == n && o.health.learners == 0
        })
    }

    /// Waits until `pred` holds for an etcd observation.
    pub fn wait_etcd(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Observation) -> bool,
    ) -> Result<Observation> {
        let start = Instant::now();
        loop {
            let o = self.etcd();
            if pred(&o) {
                return Ok(o);
            }
            if start.elapsed() > timeout {
                return Err(LabError::Timeout {
                    what: what.into(),
                    waited: timeout,
                    last: describe_etcd(&o),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether a Node exists and is Ready.
    pub fn node_ready(&self, name: &str) -> bool {
        self.store().node_ready(name)
    }

    /// Node names in the API.
    pub fn nodes(&self) -> Vec<String> {
        self.store()
            .all(store::ty("Node"), None)
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// A Node object (JSON), if present.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.store().get(store::ty("Node"), "", name).ok()
    }

    /// Waits until a Node's readiness is `ready` (a missing Node counts as not ready).
    pub fn wait_node_ready(&self, name: &str, ready: bool, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.node_ready(name) == ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(LabError::Timeout {
                    what: format!("Node {name} Ready={ready}"),
                    waited: timeout,
                    last: self
                        .node(name)
                        .map(|n| n["status"]["conditions"].to_string())
                        .unwrap_or_else(|| "no such Node".into()),
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Pods as `(namespace/name, phase, node)`; `namespace` filters when given.
    pub fn pods(&self, namespace: Option<&str>) -> Vec<(String, String, String)> {
        self.store()
            .all(store::ty("Pod"), namespace)
            .iter()
            .map(|p| {
                (
                    format!(
                        "{}/{}",
                        p["metadata"]["namespace"].as_str().unwrap_or(""),
                        p["metadata"]["name"].as_str().unwrap_or("")
                    ),
                    p["status"]["phase"].as_str().unwrap_or("").to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Which host the VIP forwards to right now (`None`: no live candidate or no VIP).
    pub fn vip_holder(&self) -> Option<String> {
        self.vip_target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    // ------------------------------------------------------------------------------------------
    // topology

    /// Renders a topology HCL for k3splan with the given nodes (see docs/lab.md for the
    /// output). `extra` is appended verbatim (storage/addon blocks of a scenario). With
    /// seed workloads the three seed 004 `storage` blocks are included.
    pub fn render_topology(&self, nodes: &[TopologyNode], extra: &str) -> Result<String> {
        let mut s = String::new();
        let api = match self.vip {
            Some(v) => format!("https://{v}:6443"),
            None => {
                let first = nodes
                    .iter()
                    .find(|n| n.roles.iter().any(|r| r != "agent"))
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
                self.host(&first)?.server_url()
            }
        };
        let standin = self.files.standin.display().to_string();
        let _ = writeln!(
            s,
            "# k3splan lab topology (block 127.77.{}.0/24), rendered by k3splan-lab\n",
            self.block.b
        );
        let _ = writeln!(s, "cluster \"lab\" {{");
        let _ = writeln!(s, "  k3s_version     = {}", hcl_str(K3S_VERSION));
        let _ = writeln!(s, "  token           = env(\"K3S_TOKEN\")");
        let _ = writeln!(s, "  api_endpoint    = {}", hcl_str(&api));
        let _ = writeln!(
            s,
            "  kubeconfig      = {}",
            hcl_str(&self.files.kubeconfig.display().to_string())
        );
        let _ = writeln!(
            s,
            "  install_command = {}\n",
            hcl_str(&self.install_command())
        );
        let _ = writeln!(s, "  host {{");
        let _ = writeln!(
            s,
            "    k3s_binary              = {}",
            hcl_str(hostcfg::K3S_BIN)
        );
        let _ = writeln!(
            s,
            "    service_command         = [{}, \"service\"]",
            hcl_str(&standin)
        );
        let _ = writeln!(
            s,
            "    uninstall_command       = [{}, \"uninstall\"]",
            hcl_str(hostcfg::K3S_BIN)
        );
        let _ = writeln!(
            s,
            "    agent_uninstall_command = [{}, \"agent-uninstall\"]",
            hcl_str(hostcfg::K3S_BIN)
        );
        let _ = writeln!(s, "  }}\n");
        let _ = writeln!(s, "  etcd {{");
        for (k, p) in [
            ("ca_file  ", &self.files.etcd_ca),
            ("cert_file", &self.files.etcd_cert),
            ("key_file ", &self.files.etcd_key),
        ] {
            let _ = writeln!(s, "    {k} = {}", hcl_str(&p.display().to_string()));
        }
        let _ = writeln!(s, "  }}\n");
        if let Some(v) = self.vip {
            let _ = writeln!(s, "  vip {{");
            let _ = writeln!(s, "    address       = {}", hcl_str(&v.to_string()));
            let _ = writeln!(s, "    interface     = \"lo\"");
            let _ = writeln!(s, "    router_id     = 66");
            let _ = writeln!(s, "    manifest_path = {}", hcl_str(KEEPALIVED_MANIFEST));
            let _ = writeln!(s, "  }}\n");
        }
        let _ = writeln!(s, "  ssh {{");
        let _ = writeln!(s, "    user             = \"root\"");
        let _ = writeln!(
            s,
            "    private_key_file = {}",
            hcl_str(&self.files.ssh_key.display().to_string())
        );
        let _ = writeln!(
            s,
            "    known_hosts_file = {}",
            hcl_str(&self.files.known_hosts.display().to_string())
        );
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        for n in nodes {
            let h = self.host(&n.name)?;
            let roles: Vec<String> = n.roles.iter().map(|r| hcl_str(r)).collect();
            let _ = writeln!(s, "\nnode {} {{", hcl_str(&n.name));
            let _ = writeln!(s, "  address = {}", hcl_str(&h.address().to_string()));
            let _ = writeln!(s, "  roles   = [{}]", roles.join(", "));
            if n.primary && self.vip.is_some() {
                let _ = writeln!(s, "  primary = true");
            }
            let _ = writeln!(s, "\n  ssh {{\n    port = {}\n  }}", h.ssh_port());
            let _ = writeln!(s, "}}");
        }
        if self.spec.seed_workloads {
            s.push_str(
                "\nstorage \"onecloud-minio/minio\" {\n  kind         = \"StatefulSet\"\n  on_node_loss = \"rebind\"\n}\n\
                 \nstorage \"onecloud-monitoring/monitor-minio\" {\n  kind         = \"StatefulSet\"\n  on_node_loss = \"rebind\"\n}\n\
                 \nstorage \"onecloud/default-victoria-metrics\" {\n  kind         = \"Deployment\"\n  on_node_loss = \"recreate\"\n}\n",
            );
        }
        if !extra.is_empty() {
            s.push('\n');
            s.push_str(extra);
            if !extra.ends_with('\n') {
                s.push('\n');
            }
        }
        Ok(s)
    }

    /// Renders the topology into `<lab dir>/<file>` and returns its path.
    pub fn write_topology(
        &self,
        file: &str,
        nodes: &[TopologyNode],
        extra: &str,
    ) -> Result<PathBuf> {
        let p = self.dir().join(file);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        fs::write(&p, self.render_topology(nodes, extra)?).map_err(io_err("write", &p))?;
        Ok(p)
    }

    // ------------------------------------------------------------------------------------------
    // VIP and node lifecycle

    /// Writes the keepalived static pod manifest on a server (providers/host's format).
    pub fn write_keepalived(&self, host: &str, priority: u8) -> Result<()> {
        let vip = self.vip.map(|v| v.to_string()).unwrap_or_default();
        let spec = k3splan_host::keepalived::KeepalivedSpec {
            image: "osixia/keepalived:2.0.20".into(),
            interface: "lo".into(),
            virtual_ip: vip,
            router_id: 66,
            priority,
            state: if priority >= 100 { "MASTER" } else { "BACKUP" }.into(),
            unicast_peers: Vec::new(),
            password: None,
        };
        let text = k3splan_host::keepalived::render_manifest(&spec);
        Ok(self.host(host)?.sshd.write(KEEPALIVED_MANIFEST, text)?)
    }

    fn start_vip(&mut self) -> Result<()> {
        let Some(vip) = self.vip else { return Ok(()) };
        for port in [6443u16, 2379] {
            let l = TcpListener::bind((vip, port))
                .map_err(io_err("bind the VIP", Path::new(&format!("{vip}:{port}"))))?;
            l.set_nonblocking(true)
                .map_err(io_err("set nonblocking", Path::new("vip")))?;
            let stop = self.stop.clone();
            let target = self.vip_target.clone();
            let addrs: BTreeMap<String, Ipv4Addr> = self
                .hosts
                .iter()
                .map(|h| (h.name.clone(), h.address()))
                .collect();
            self.threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let t = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            let Some(ip) = t.and_then(|n| addrs.get(&n).copied()) else {
                                continue; // no holder: the connection is dropped
                            };
                            std::thread::spawn(move || proxy(c, SocketAddr::from((ip, port))));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        // Wait for a first holder.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.vip_holder().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn start_controller(&mut self) {
        let stop = self.stop.clone();
        let kube = self.kube.clone().expect("kube");
        let target = self.vip_target.clone();
        let servers: Vec<(String, Ipv4Addr, PathBuf)> = self
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.address(), h.path(KEEPALIVED_MANIFEST)))
            .collect();
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                node_lifecycle(&kube);
                // VIP: the live host whose manifest has the highest priority.
                let mut best: Option<(u8, String)> = None;
                for (name, ip, manifest) in &servers {
                    let Ok(text) = fs::read_to_string(manifest) else {
                        continue;
                    };
                    let Ok(cfg) =
                        k3splan_host::keepalived::parse_manifest(KEEPALIVED_MANIFEST, &text)
                    else {
                        continue;
                    };
                    let prio = cfg.priority.unwrap_or(0);
                    if best.as_ref().is_some_and(|(b, _)| *b >= prio) {
                        continue;
                    }
                    if TcpStream::connect_timeout(
                        &SocketAddr::from((*ip, 6443)),
                        Duration::from_millis(300),
                    )
                    .is_ok()
                    {
                        best = Some((prio, name.clone()));
                    }
                }
                *target.lock().unwrap_or_else(|p| p.into_inner()) = best.map(|b| b.1);
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }

    // ------------------------------------------------------------------------------------------
    // workloads

    /// Loads the seed 004 workloads (namespaces, StorageClass, MinIO and monitor-MinIO
    /// StatefulSets, victoria-metrics Deployment, k3s add-ons at 1 replica, their PVs/PVCs
    /// and pods) with `lzx-ha-env`, `-2`, `-3` renamed to `server-1..3` and their addresses
    /// to the lab's. The fixture's Node objects are skipped (the stand-ins registered the
    /// real ones) and every pod starts Ready on its (live) node.
    pub fn load_seed004(&self) -> Result<()> {
        let map: Vec<(String, String)> = [
            ("lzx-ha-env", "server-1", "192.168.0.254"),
            ("lzx-ha-env-2", "server-2", "192.168.0.244"),
            ("lzx-ha-env-3", "server-3", "192.168.0.243"),
        ]
        .iter()
        .flat_map(|(old, new, ip)| {
            let addr = self
                .host(new)
                .map(|h| h.address().to_string())
                .unwrap_or_default();
            vec![(old.to_string(), new.to_string()), (ip.to_string(), addr)]
        })
        .collect();
        let mut docs = Vec::new();
        for de in serde_yaml::Deserializer::from_str(SEED004_YAML) {
            let v: Value = serde::Deserialize::deserialize(de)
                .map_err(|e| LabError::Kube(format!("seed004.yaml: {e}")))?;
            if v.is_null() || v["kind"] == "Node" {
                continue;
            }
            let mut v = rename(v, &map);
            if v["kind"] == "Pod" {
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("deletionTimestamp");
                    m.remove("deletionGracePeriodSeconds");
                }
                v["status"]["phase"] = json!("Running");
                v["status"]["conditions"] = json!([
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": store::now()}
                ]);
            }
            docs.push(v);
        }
        self.kube()
            .load_values(docs)
            .map_err(|e| LabError::Kube(format!("loading seed 004 workloads: {e}")))
    }
}

fn rename(v: Value, map: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(
            map.iter()
                .find(|(o, _)| *o == s)
                .map(|(_, n)| n.clone())
                .unwrap_or(s),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| rename(x, map)).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, x)| (k, rename(x, map))).collect())
        }
        x => x,
    }
}

fn proxy(client: TcpStream, to: SocketAddr) {
    let Ok(up) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
        return;
    };
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let (mut c1, mut u1) = (client, up);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut u1, &mut c1);
    let _ = c1.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// The node lifecycle controller: `Ready=True` with a `lastHeartbeatTime` older than
/// [`NODE_GRACE_SECS`] → `Unknown` + unreachable taints; a fresh heartbeat on a tainted node
/// → taints removed.
fn node_lifecycle(kube: &KubeApiServer) {
    let mut st = kube.store();
    let nt = store::ty("Node");
    let now = jiff::Timestamp::now();
    for n in st.all(nt, None) {
        let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
        let Some(ready) = n["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
            .cloned()
        else {
            continue;
        };
        let Some(hb) = ready["lastHeartbeatTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let age = now.as_second() - hb.as_second();
        let tainted = n["spec"]["taints"].as_array().is_some_and(|a| {
            a.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable")
        });
        if ready["status"] == "True" && age > NODE_GRACE_SECS {
            let _ = st.set_node_ready(&name, false);
        } else if ready["status"] == "True" && tainted && age <= NODE_GRACE_SECS {
            // Back from the dead: clear the taints and the pods' readiness like the node
            // lifecycle controller (set_node_ready only acts on a readiness change).
            let _ = st.patch(
                nt,
                "",
                &name,
                "application/merge-patch+json",
                &json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            );
            let _ = st.set_node_ready(&name, true);
        }
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

/// A one-line summary of an etcd observation (for messages and the demo).
pub fn describe_etcd(o: &Observation) -> String {
    let leader = o.health.leader.map(|l| l.to_string());
    let members: Vec<String> = o
        .members
        .iter()
        .map(|m| {
            format!(
                "{}{}{}",
                m.name,
                if m.is_learner { "(learner)" } else { "" },
                if m.is_healthy() { "" } else { "(unhealthy)" }
            )
        })
        .collect();
    format!(
        "voters {}/{} healthy, learners {}, quorum {}, leader {}, members [{}]",
        o.health.healthy_voters,
        o.health.voters,
        o.health.learners,
        o.health.quorum,
        leader.unwrap_or_else(|| "none".into()),
        members.join(", ")
    )
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
