//! k3splan test harness: real OpenSSH `sshd` hosts, each with its own loopback address,
//! hostname and filesystem view.
//!
//! Every [`SshdHost`] is one simulated machine:
//!
//! - a real `/usr/sbin/sshd -D -f <generated config>` listening on its own `127.0.0.x` address
//!   and a free port (picked by binding port 0, re-picked if sshd fails to bind);
//! - its own UTS and mount namespace (`unshare -m -u`), with a per-host root directory
//!   bind-mounted over `/etc/rancher`, `/var/lib/rancher` and `/root` (plus any extra
//!   directories the caller asks for), and its own hostname;
//! - a generated ed25519 host key, and an ed25519 user key authorised for `root`;
//! - a `known_hosts` file (OpenSSH `[addr]:port` syntax) a client can verify the host key with.
//!
//! [`SshdFleet`] starts many hosts that share one user key and one `known_hosts` file, which is
//! what a k3splan topology looks like (one `ssh {}` block for all nodes).
//!
//! Guarantees: sshd (and every process of its process group) is killed when the host value is
//! dropped, also when a test panics; temporary directories are removed then. Hosts can be
//! stopped and started again on the same address and port ([`SshdHost::stop`],
//! [`SshdHost::start`]) and their host key rotated ([`SshdHost::rotate_host_key`]).
//! [`BlackHole`] is a TCP listener that completes the TCP handshake but never speaks SSH, to
//! test connect timeouts.
//!
//! Requirements and caveats: runs as root (sshd privilege separation and `unshare -m`). The
//! mount points `/etc/rancher` and `/var/lib/rancher` (and extra bind targets) are created on
//! the real host as empty directories when missing; nothing is ever mounted outside the
//! private namespaces. When `unshare` is not permitted, [`SshdHost::start_new`] returns
//! [`HarnessError::NamespacesUnavailable`]; tests should call [`skip_reason`] first and skip
//! with its message.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Errors of the harness. Messages name the host and the command or file involved.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or directory operation failed.
    #[error("sshd harness: {what} {path}: {source}")]
    Io {
        /// What the harness was doing.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A helper command (`ssh-keygen`, `unshare`, `sshd`) failed.
    #[error("sshd harness: host {host}: command `{command}` failed: {detail}")]
    Command {
        /// The simulated host.
        host: String,
        /// The command line.
        command: String,
        /// Exit status and output.
        detail: String,
    },
    /// sshd did not start listening in time.
    #[error("sshd harness: host {host}: sshd on {addr} did not come up: {detail}")]
    StartTimeout {
        /// The simulated host.
        host: String,
        /// The address sshd should listen on.
        addr: SocketAddr,
        /// Log excerpt.
        detail: String,
    },
    /// Mount/UTS namespaces cannot be created here (not root, or seccomp forbids unshare).
    #[error("sshd harness: mount namespaces unavailable (`unshare -m -u` failed): {0}")]
    NamespacesUnavailable(String),
}

type Result<T> = std::result::Result<T, HarnessError>;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + use<> {
    let path = path.to_path_buf();
    move |source| HarnessError::Io { what, path, source }
}

/// `None` when the harness can run here; otherwise a message saying why tests must be skipped
/// (not root, no sshd binary, `unshare -m -u` refused). Probed once per process; the probe is
/// shared by every test binary (`k3splan_testkit_caps::sshd`).
pub use k3splan_testkit_caps::sshd as skip_reason;

use k3splan_testkit_caps::SSHD;

/// Directories every simulated host gets its own copy of. `/root` is included so that each
/// host has its own (empty) home: the build machine's `~/.bashrc` (which bash sources for
/// every SSH command) does not run on the simulated hosts.
pub const DEFAULT_PRIVATE_DIRS: [&str; 3] = ["/etc/rancher", "/var/lib/rancher", "/root"];

/// Options of one simulated host.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Hostname inside the host's UTS namespace (what `hostname` prints over SSH).
    pub hostname: String,
    /// Absolute directories that get a per-host copy (bind mount of `<root><dir>` over `<dir>`).
    /// Defaults to [`DEFAULT_PRIVATE_DIRS`].
    pub private_dirs: Vec<PathBuf>,
    /// Loopback address to listen on; `None` picks a `127.0.0.x` address (x ≥ 2).
    pub address: Option<Ipv4Addr>,
}

impl HostOptions {
    /// Options with the given hostname and the default private directories.
    pub fn new(hostname: impl Into<String>) -> Self {
        HostOptions {
            hostname: hostname.into(),
            private_dirs: DEFAULT_PRIVATE_DIRS.iter().map(PathBuf::from).collect(),
            address: None,
        }
    }

    /// Adds an absolute directory to the per-host private directories.
    pub fn private_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.private_dirs.push(dir.into());
        self
    }
}

/// A client identity (ed25519 key pair) and a `known_hosts` file, shared by the hosts that
/// authorise it.
#[derive(Debug)]
pub struct ClientKeys {
    dir: tempfile::TempDir,
}

impl ClientKeys {
    /// Generates a fresh ed25519 user key with `ssh-keygen`, and an empty known_hosts file.
    pub fn generate() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("k3splan-sshclient-")
            .tempdir()
            .map_err(io_err("create temp dir", Path::new("/tmp")))?;
        keygen("client", &dir.path().join("id_ed25519"))?;
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, "").map_err(io_err("write", &kh))?;
        Ok(ClientKeys { dir })
    }

    /// Path of the private key (OpenSSH format, no passphrase).
    pub fn private_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// Path of the public key.
    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519.pub")
    }

    /// Path of the client's known_hosts file; hosts started with these keys add their line.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    fn add_known_host(&self, line: &str) -> Result<()> {
        let kh = self.known_hosts();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&kh)
            .map_err(io_err("append", &kh))?;
        // One write per line: hosts start in parallel, and `writeln!` may split a line
        // into several writes that interleave with another thread's.
        let mut entry = line.to_string();
        entry.push('\n');
        f.write_all(entry.as_bytes()).map_err(io_err("append", &kh))
    }
}

/// One simulated host: a real sshd in its own mount/UTS namespace. Dropping it kills sshd.
#[derive(Debug)]
pub struct SshdHost {
    opts: HostOptions,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
}

static NEXT_ADDR: AtomicU32 = AtomicU32::new(0);

fn pick_address() -> Ipv4Addr {
    // Spread processes (nextest runs one test per process) over 127.0.<b>.<c>; the port is
    // picked free on the chosen address anyway, so a collision is harmless.
    let n = NEXT_ADDR.fetch_add(1, Ordering::Relaxed);
    let b = (std::process::id() % 250) as u8;
    let c = 2 + (n % 250) as u8;
    Ipv4Addr::new(127, 0, b, c)
}

fn free_port(ip: Ipv4Addr) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).map_err(|e| HarnessError::Io {
        what: "bind a free port on",
        path: PathBuf::from(ip.to_string()),
        source: e,
    })?;
    Ok(l.local_addr()
        .expect("bound listener has an address")
        .port())
}

fn keygen(host: &str, path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("k3splan-test-{host}"))
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("run ssh-keygen for", path))?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            host: host.to_string(),
            command: format!("ssh-keygen -t ed25519 -f {}", path.display()),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

impl SshdHost {
    /// Creates and starts a host that authorises `client`'s key, and appends the host's key
    /// to `client`'s known_hosts.
    pub fn start_new(opts: HostOptions, client: &ClientKeys) -> Result<Self> {
        if let Some(reason) = skip_reason() {
            return Err(HarnessError::NamespacesUnavailable(reason));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("k3splan-sshd-{}-", opts.hostname))
            .tempdir()
            .map_err(io_err("create temp dir", Path::new("/tmp")))?;
        let run_sshd = Path::new("/run/sshd");
        fs::create_dir_all(run_sshd).map_err(io_err("create", run_sshd))?;
        let _ = fs::set_permissions(run_sshd, fs::Permissions::from_mode(0o755));
        for d in &opts.private_dirs {
            fs::create_dir_all(d).map_err(io_err("create mount point", d))?;
            let src = root_path(dir.path(), d);
            fs::create_dir_all(&src).map_err(io_err("create", &src))?;
        }
        keygen(&opts.hostname, &dir.path().join("ssh_host_ed25519_key"))?;
        let ak = dir.path().join("authorized_keys");
        fs::copy(client.public_key(), &ak).map_err(io_err("write", &ak))?;
        let ip = opts.address.unwrap_or_else(pick_address);
        let mut last = None;
        for _ in 0..5 {
            let addr = SocketAddr::from((ip, free_port(ip)?));
            match spawn_sshd(dir.path(), &opts, addr) {
                Ok(child) => {
                    let host = SshdHost {
                        opts,
                        addr,
                        child: Mutex::new(Some(child)),
                        dir,
                    };
                    client.add_known_host(&host.known_hosts_line()?)?;
                    return Ok(host);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The hostname set in the host's namespace.
    pub fn hostname(&self) -> &str {
        &self.opts.hostname
    }

    /// Address and port sshd listens on (stable across [`stop`](Self::stop)/[`start`](Self::start)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host's private root: `root().join("etc/rancher/k3s/config.yaml")` is what the host
    /// sees as `/etc/rancher/k3s/config.yaml`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Maps an absolute in-host path below one of the private dirs to the real path on disk.
    pub fn path(&self, in_host: &str) -> PathBuf {
        root_path(self.dir.path(), Path::new(in_host))
    }

    /// Writes a file at an in-host path (creating parent directories).
    pub fn write(&self, in_host: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        let p = self.path(in_host);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        fs::write(&p, contents).map_err(io_err("write", &p))
    }

    /// The host's ed25519 public key line (`ssh-ed25519 AAAA… comment`).
    pub fn host_public_key(&self) -> Result<String> {
        let p = self.dir.path().join("ssh_host_ed25519_key.pub");
        Ok(fs::read_to_string(&p)
            .map_err(io_err("read", &p))?
            .trim()
            .to_string())
    }

    /// The `known_hosts` line for this host: `[addr]:port ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> Result<String> {
        let key = self.host_public_key()?;
        let mut parts = key.split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        Ok(format!(
            "[{}]:{} {alg} {b64}",
            self.addr.ip(),
            self.addr.port()
        ))
    }

    /// The sshd log (`sshd -e` output) so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Whether sshd is currently running.
    pub fn is_running(&self) -> bool {
        let mut g = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts sshd (again) on the same address and port; waits until it answers with an SSH
    /// banner (up to 20 s). A no-op when it already runs.
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let child = spawn_sshd(self.dir.path(), &self.opts, self.addr)?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    /// Stops the host ("the machine died"): kills sshd and its whole process group, including
    /// open sessions started from it. New connections are refused afterwards.
    pub fn stop(&self) {
        self.kill();
    }

    fn kill(&self) {
        let mut g = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = g.take() {
            kill_group(&mut c);
        }
    }

    /// Replaces the host key by a freshly generated one (as after a reinstall, or a
    /// man-in-the-middle) and restarts sshd. The client's known_hosts is left unchanged.
    pub fn rotate_host_key(&self) -> Result<()> {
        self.kill();
        for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
            let p = self.dir.path().join(f);
            fs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
        keygen(
            &self.opts.hostname,
            &self.dir.path().join("ssh_host_ed25519_key"),
        )?;
        self.start()
    }
}

fn spawn_sshd(dir: &Path, opts: &HostOptions, addr: SocketAddr) -> Result<Child> {
    let cfg = dir.join("sshd_config");
    let d = dir.display();
    let config = format!(
        "ListenAddress {addr}\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         MaxStartups 200:30:400\n\
         MaxSessions 64\n\
         LoginGraceTime 60\n\
         Subsystem sftp internal-sftp\n",
        addr = addr
    );
    fs::write(&cfg, config).map_err(io_err("write", &cfg))?;
    let mut script = String::from("set -e\n");
    for private in &opts.private_dirs {
        script.push_str(&format!(
            "mount --bind {} {}\n",
            sh_quote(&root_path(dir, private).to_string_lossy()),
            sh_quote(&private.to_string_lossy())
        ));
    }
    script.push_str(&format!("hostname {}\n", sh_quote(&opts.hostname)));
    script.push_str(&format!(
        "exec {SSHD} -D -e -f {}\n",
        sh_quote(&cfg.to_string_lossy())
    ));
    let log_path = dir.join("sshd.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("open", &log_path))?;
    let log2 = log.try_clone().map_err(io_err("open", &log_path))?;
    let command = format!(
        "unshare -m -u --propagation private sh -c <script> for host {}",
        opts.hostname
    );
    let mut child = Command::new("unshare")
        .args(["-m", "-u", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::Command {
            host: opts.hostname.clone(),
            command: command.clone(),
            detail: e.to_string(),
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HarnessError::Command {
                host: opts.hostname.clone(),
                command,
                detail: format!("exited with {status}; log:\n{}", read_log(dir)),
            });
        }
        if banner_ok(addr) {
            break;
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            return Err(HarnessError::StartTimeout {
                host: opts.hostname.clone(),
                addr,
                detail: read_log(dir),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
}

fn kill_group(child: &mut Child) {
    let pgid = child.id();
    // sshd's per-connection children stay in the process group unless they setsid; the
    // user session does setsid, but dies with its connection.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for SshdHost {
    fn drop(&mut self) {
        self.kill();
    }
}

fn root_path(dir: &Path, in_host: &Path) -> PathBuf {
    let rel = in_host.strip_prefix("/").unwrap_or(in_host);
    dir.join("root").join(rel)
}

fn banner_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 8];
    matches!(s.read_exact(&mut buf), Ok(()) if &buf == b"SSH-2.0-")
}

/// POSIX single-quote quoting for the harness's own shell scripts.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Several hosts sharing one client identity and one known_hosts file.
#[derive(Debug)]
pub struct SshdFleet {
    /// The shared client keys and known_hosts.
    pub client: ClientKeys,
    /// The hosts, in start order.
    pub hosts: Vec<SshdHost>,
}

impl SshdFleet {
    /// Starts one host per hostname, in parallel threads (sshd start-up is mostly waiting).
    pub fn start(hostnames: &[&str]) -> Result<Self> {
        Self::start_with(hostnames.iter().map(|h| HostOptions::new(*h)).collect())
    }

    /// Starts one host per options value.
    pub fn start_with(opts: Vec<HostOptions>) -> Result<Self> {
        let client = ClientKeys::generate()?;
        let results: Vec<Result<SshdHost>> = std::thread::scope(|s| {
            let handles: Vec<_> = opts
                .into_iter()
                .map(|o| {
                    let c = &client;
                    s.spawn(move || SshdHost::start_new(o, c))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("host start thread panicked"))
                .collect()
        });
        let mut hosts = Vec::new();
        for r in results {
            hosts.push(r?);
        }
        Ok(SshdFleet { client, hosts })
    }
}

/// A TCP listener that accepts connections at the kernel level (the backlog completes the
/// handshake) but never sends an SSH banner: a client hangs until its own timeout, as with a
/// host whose sshd is wedged or a firewall that lets SYNs through but drops the rest.
#[derive(Debug)]
pub struct BlackHole {
    listener: TcpListener,
}

impl BlackHole {
    /// Binds a black hole on a free port of a loopback address.
    pub fn start() -> Result<Self> {
        let ip = pick_address();
        let listener = TcpListener::bind((ip, 0)).map_err(|e| HarnessError::Io {
            what: "bind black hole on",
            path: PathBuf::from(ip.to_string()),
            source: e,
        })?;
        Ok(BlackHole { listener })
    }

    /// The address clients should (fail to) reach.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }
}
