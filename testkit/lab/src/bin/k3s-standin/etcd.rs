//! The host's real etcd member, driven through `etcdctl`: TLS, membership, the join plan.

use super::*;

pub(super) struct Tls {
    pub(super) dir: String,
}

impl Tls {
    pub(super) fn ca(&self) -> String {
        format!("{}/server-ca.crt", self.dir)
    }
    pub(super) fn client_cert(&self) -> String {
        format!("{}/client.crt", self.dir)
    }
    pub(super) fn client_key(&self) -> String {
        format!("{}/client.key", self.dir)
    }
}

/// Copies the lab PKI into `<data-dir>/server/tls/etcd/` under k3s's file names (what real
/// k3s generates on the first server and hands to joiners with the bootstrap data).
pub(super) fn ensure_tls(data_dir: &str) -> Tls {
    let dir = format!("{data_dir}/server/tls/etcd");
    let _ = fs::create_dir_all(&dir);
    let pki = hostcfg::PKI_DIR;
    let files = [
        ("ca.crt", "server-ca.crt"),
        ("ca.crt", "peer-ca.crt"),
        ("server.crt", "server-client.crt"),
        ("server.key", "server-client.key"),
        ("server.crt", "peer-server-client.crt"),
        ("server.key", "peer-server-client.key"),
        ("client.crt", "client.crt"),
        ("client.key", "client.key"),
    ];
    for (src, dst) in files {
        let to = format!("{dir}/{dst}");
        if !Path::new(&to).exists()
            && let Err(e) = fs::copy(format!("{pki}/{src}"), &to)
        {
            fatal(&format!(
                "preparing etcd TLS: copying {pki}/{src} to {to}: {e}"
            ))
        }
    }
    Tls { dir }
}

pub(super) fn etcdctl(
    lab: &HostConfig,
    tls: &Tls,
    endpoint: &str,
    args: &[&str],
) -> Result<String, String> {
    let out = Command::new(&lab.etcdctl_bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", tls.ca()))
        .arg(format!("--cert={}", tls.client_cert()))
        .arg(format!("--key={}", tls.client_key()))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", lab.etcdctl_bin))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {} at {endpoint}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `(member_id, leader_id, cluster_id, raft_index, is_learner)` of one endpoint.
pub(super) fn endpoint_status(
    lab: &HostConfig,
    tls: &Tls,
    ep: &str,
) -> Result<(u64, u64, u64, u64, bool), String> {
    let out = etcdctl(lab, tls, ep, &["endpoint", "status", "-w", "json"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &v[0]["Status"];
    Ok((
        s["header"]["member_id"].as_u64().unwrap_or(0),
        s["leader"].as_u64().unwrap_or(0),
        s["header"]["cluster_id"].as_u64().unwrap_or(0),
        s["raftIndex"].as_u64().unwrap_or(0),
        s["isLearner"].as_bool().unwrap_or(false),
    ))
}

pub(super) fn member_list(lab: &HostConfig, tls: &Tls, ep: &str) -> Result<Vec<Value>, String> {
    let out = etcdctl(lab, tls, ep, &["member", "list", "-w", "json"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(v["members"].as_array().cloned().unwrap_or_default())
}

pub(super) fn token_hash(token: &str) -> String {
    // Not cryptographic strength needed here: the lab compares, it does not protect. Still,
    // the token itself is never stored: FNV-1a 64 of "k3s-lab:" + token, hex.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("k3s-lab:{token}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

pub(super) const TOKEN_KEY: &str = "/k3splan-lab/bootstrap/token-hash";

pub(super) fn random_hex8() -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    format!("{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

pub(super) struct EtcdPlan {
    pub(super) name: String,
    pub(super) initial_cluster: String,
    pub(super) state: &'static str,
}

pub(super) fn write_etcd_config(
    lab: &HostConfig,
    s: &Settings,
    tls: &Tls,
    plan: &EtcdPlan,
) -> String {
    let dir = format!("{}/server/db/etcd", s.data_dir);
    let _ = fs::create_dir_all(&dir);
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    let ip = &s.node_ip;
    let t = &tls.dir;
    let config = format!(
        "name: {name}\n\
         data-dir: {dir}\n\
         listen-client-urls: https://{ip}:2379\n\
         advertise-client-urls: https://{ip}:2379\n\
         listen-peer-urls: https://{ip}:2380\n\
         initial-advertise-peer-urls: https://{ip}:2380\n\
         initial-cluster: {ic}\n\
         initial-cluster-state: {state}\n\
         heartbeat-interval: {hb}\n\
         election-timeout: {el}\n\
         logger: zap\n\
         log-outputs: [stderr]\n\
         client-transport-security:\n  cert-file: {t}/server-client.crt\n  key-file: {t}/server-client.key\n  trusted-ca-file: {t}/server-ca.crt\n  client-cert-auth: true\n\
         peer-transport-security:\n  cert-file: {t}/peer-server-client.crt\n  key-file: {t}/peer-server-client.key\n  trusted-ca-file: {t}/peer-ca.crt\n  client-cert-auth: true\n",
        name = plan.name,
        ic = plan.initial_cluster,
        state = plan.state,
        hb = lab.etcd_heartbeat_ms,
        el = lab.etcd_election_ms,
    );
    let cfgp = format!("{dir}/config");
    let _ = fs::write(&cfgp, config);
    let _ = fs::write(format!("{dir}/name"), format!("{}\n", plan.name));
    cfgp
}

pub(super) fn spawn_etcd(lab: &HostConfig, cfg_path: &str, data_dir: &str, unit: &str) -> Child {
    let logp = format!("{data_dir}/server/db/etcd.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&logp)
        .unwrap_or_else(|e| fatal(&format!("opening {logp}: {e}")));
    let mut cmd = Command::new(&lab.etcd_bin);
    cmd.arg("--config-file")
        .arg(cfg_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log);
    // SAFETY: prctl is async-signal-safe. Embedded etcd dies with k3s: so does ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fatal(&format!("starting etcd {}: {e}", lab.etcd_bin)));
    let _ = fs::write(hostcfg::etcd_pid_file(unit), format!("{}\n", child.id()));
    child
}

pub(super) fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or(url.strip_prefix("http://"))?;
    let hostport = rest.split('/').next()?;
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hostport,
    };
    Some(host.trim_matches(['[', ']']).to_string())
}

pub(super) fn url_port(url: &str) -> u16 {
    let rest = url
        .strip_prefix("https://")
        .or(url.strip_prefix("http://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    hostport
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(6443)
}

/// Real k3s first fetches `https://SERVER/cacerts` from the server's supervisor. The lab's
/// supervisor is the stand-in's TCP endpoint on port 6443: probe it the same way.
pub(super) fn probe_supervisor(url: &str) -> Result<(), String> {
    let host = url_host(url).ok_or_else(|| format!("invalid server URL {url}"))?;
    let port = url_port(url);
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}"))?;
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "failed to get CA certs: Get \"{}/cacerts\": dial tcp {addr}: connect: {}",
            url.trim_end_matches('/'),
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connection refused".to_string()
            } else if e.kind() == std::io::ErrorKind::TimedOut {
                "i/o timeout".to_string()
            } else {
                e.to_string()
            }
        )),
    }
}

pub(super) fn wait_probe(url: &str, tries: u32) -> Result<(), String> {
    let mut last = String::new();
    for i in 0..tries {
        match probe_supervisor(url) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log("info", &format!("Waiting to retrieve the cluster CA: {e}"));
                last = e;
            }
        }
        if i + 1 < tries {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Err(last)
}

/// k3s's `ETCD.setName(false)`, called from `ETCD.Register` when the server starts, before
/// any join: the member name is read from `<data-dir>/server/db/etcd/name`, or generated
/// (`<name>-<8 hex>`) and written there (the directory created 0700). So on a real host the
/// etcd data dir exists, holding only this file, for the seconds before the member is added
/// (k3s-io/k3s pkg/etcd/etcd.go: `Register` → `setName`; `Start` → `join` after AgentReady).
pub(super) fn set_name(etcd_dir: &str, base: &str) -> String {
    let file = format!("{etcd_dir}/name");
    if let Ok(n) = fs::read_to_string(&file)
        && !n.trim().is_empty()
    {
        return n.trim().to_string();
    }
    let name = format!("{base}-{}", random_hex8());
    let _ = fs::create_dir_all(etcd_dir);
    let _ = fs::set_permissions(etcd_dir, fs::Permissions::from_mode(0o700));
    if let Err(e) = fs::write(&file, &name) {
        fatal(&format!("writing {file}: {e}"));
    }
    name
}

/// Joins through `url` as member `name`: validates the token, then follows k3s's
/// `ETCD.join` (k3s-io/k3s pkg/etcd/etcd.go) against the member list of the server's etcd
/// (`<server host>:2379`, lab client certificate):
/// - a member without a name whose peer URL has our address is us (added, not yet started);
/// - a member with our name and address is us: not added again;
/// - a member with another name whose node-name part (before the last `-`) is ours is an old
///   incarnation of this host: k3s removes its name file and fails with "duplicate node name
///   found" (it never removes the old member itself — whoever removed this node must have);
/// - otherwise `MemberAddAsLearner`; etcd itself refuses a peer URL that is already listed.
pub(super) fn join_plan(
    lab: &HostConfig,
    s: &Settings,
    tls: &Tls,
    url: &str,
    name: &str,
) -> EtcdPlan {
    if let Err(e) = wait_probe(url, 3) {
        fatal(&format!("starting kubernetes: preparing server: {e}"));
    }
    let host = url_host(url).unwrap_or_default();
    let ep = format!("https://{host}:2379");
    let token = s.token.clone().unwrap_or_else(|| {
        fatal("starting kubernetes: preparing server: token is required to join a cluster (K3S_TOKEN or token:)")
    });
    match etcdctl(lab, tls, &ep, &["get", TOKEN_KEY, "--print-value-only"]) {
        Ok(v) if !v.trim().is_empty() && v.trim() != token_hash(&token) => fatal(&format!(
            "starting kubernetes: preparing server: failed to validate token: the token does not match the cluster of {url}"
        )),
        Ok(_) => {}
        Err(e) => fatal(&format!(
            "starting kubernetes: preparing server: failed to get the cluster's bootstrap data from {url}: {e}"
        )),
    }
    let peer = format!("https://{}:2380", s.node_ip);
    let node_name_of = |member: &str| match member.rfind('-') {
        Some(i) if i > 1 => member[..i].to_string(),
        _ => member.to_string(),
    };
    let own_base = node_name_of(name);
    let deadline = Instant::now() + Duration::from_secs(lab.start_timeout_secs.max(10));
    loop {
        let members = match member_list(lab, tls, &ep) {
            Ok(m) => m,
            Err(e) => fatal(&format!(
                "starting kubernetes: preparing server: listing etcd members through {url}: {e}"
            )),
        };
        let mut add = true;
        for m in &members {
            let mut mname = m["name"].as_str().unwrap_or("").to_string();
            let ours = m["peerURLs"].as_array().is_some_and(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .any(|u| url_host(u).as_deref() == Some(s.node_ip.as_str()))
            });
            if mname.is_empty() && ours {
                mname = name.to_string();
            }
            if mname == name && ours {
                add = false;
            }
            if mname != name && !mname.is_empty() && node_name_of(&mname) == own_base {
                let _ = fs::remove_file(format!("{}/server/db/etcd/name", s.data_dir));
                fatal(&format!(
                    "ETCD join failed: duplicate node name found, please use a unique name for this node (member {mname} is listed)"
                ));
            }
        }
        if add {
            match etcdctl(
                lab,
                tls,
                &ep,
                &[
                    "member",
                    "add",
                    name,
                    "--learner",
                    &format!("--peer-urls={peer}"),
                ],
            ) {
                Ok(_) => log(
                    "info",
                    &format!("Adding member {name}={peer} to etcd cluster as a learner"),
                ),
                Err(e) => {
                    if Instant::now() > deadline {
                        fatal(&format!(
                            "ETCD join failed: adding this server to the etcd cluster through {url}: {e}"
                        ));
                    }
                    log("info", &format!("Failed to add etcd member, retrying: {e}"));
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let members = member_list(lab, tls, &ep).unwrap_or_else(|e| fatal(&e));
        let mut ic: Vec<String> = Vec::new();
        for m in &members {
            let peers: Vec<&str> = m["peerURLs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if peers.contains(&peer.as_str()) {
                ic.push(format!("{name}={peer}"));
            } else if let Some(n) = m["name"].as_str().filter(|n| !n.is_empty()) {
                for p in peers {
                    ic.push(format!("{n}={p}"));
                }
            }
        }
        return EtcdPlan {
            name: name.to_string(),
            initial_cluster: ic.join(","),
            state: "existing",
        };
    }
}
