//! [`Lab::start`]: bringing the lab up (addresses, sshd hosts, PKI, the Kubernetes API, the
//! initial servers joined one at a time, the VIP and the seed workloads).

use super::*;

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
        // The API's certificate names every server and spare address and the VIP, as each k3s
        // server's certificate names its node IPs and tls-san (k3s-io/k3s
        // pkg/cli/server/server.go, `ControlConfig.SANs`): an operator's kubeconfig may name
        // `https://SERVER_IP:6443` (a proxy to this API, see docs/lab.md "Port 6443").
        let mut extra_sans: Vec<std::net::IpAddr> = plan
            .iter()
            .filter(|(_, role, _)| *role != HostRole::Agent)
            .map(|(_, _, o)| std::net::IpAddr::V4(block.ip(*o)))
            .collect();
        extra_sans.extend(vip.map(std::net::IpAddr::V4));
        let kube = {
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let r = KubeApiServer::start(ServerOptions {
                    tls: true,
                    controllers: Controllers::all(),
                    extra_sans,
                    // A wrong token gets 401, as from a real API server.
                    bearer_token: Some(crate::KUBE_TOKEN.into()),
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

        // Each host's own VIP view (vipns.rs): its network namespace must exist before its
        // sshd (and so its mount namespace) starts.
        let vip_ns = if spec.vip {
            let hosts: Vec<(String, Ipv4Addr)> = plan
                .iter()
                .map(|(name, _, o)| (name.clone(), block.ip(*o)))
                .collect();
            Some(Arc::new(vipns::VipNetns::create(&hosts)?))
        } else {
            None
        };
        // Hosts.
        let opts: Vec<HostOptions> = plan
            .iter()
            .map(|(name, _, o)| {
                // The installer's unit env files live in /etc/systemd/system: per host.
                let mut h = HostOptions::new(name.clone()).private_dir(hostcfg::SYSTEMD_DIR);
                if vip_ns.is_some() {
                    h = h.private_dir(vipns::WRAPPER_DIR);
                }
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
            vip_ns,
            vip_holders: Arc::new(Mutex::new(Vec::new())),
        };
        if let Some(ns) = &lab.vip_ns {
            for h in &lab.hosts {
                if let Some(text) = ns.wrapper(&h.name) {
                    h.sshd.write(vipns::IP_WRAPPER, text)?;
                    let p = h.path(vipns::IP_WRAPPER);
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &p))?;
                }
            }
        }
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
                kube_token: crate::KUBE_TOKEN.into(),
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
        // Agent-less servers never have a Node: only the agents' Nodes are awaited then.
        let mut ready: Vec<String> = if spec.agentless {
            Vec::new()
        } else {
            servers.clone()
        };
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
}
