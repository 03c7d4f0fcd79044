//! Fault injection: killed hosts, rotated host keys, cut networks, corrupt or stale etcd data.

use super::*;

impl Lab {
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

    pub(crate) fn signal_host(&self, h: &LabHost, sig: i32) {
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
}
