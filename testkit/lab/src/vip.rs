//! The keepalived VIP (a TCP forwarder to the highest-priority live server) and the node
//! lifecycle controller (heartbeats → `NotReady` and unreachable taints).

use super::*;

impl Lab {
    // ------------------------------------------------------------------------------------------
    // VIP and node lifecycle

    /// Writes the keepalived static pod manifest on a server (providers/host's format).
    pub fn write_keepalived(&self, host: &str, priority: u8) -> Result<()> {
        self.write_keepalived_vrid(host, priority, 66)
    }

    /// As [`Self::write_keepalived`] with the VRRP `virtual_router_id` (the lab's manifests
    /// use 66): hosts of different IDs do not hear each other, each ID elects its own
    /// master, and both then hold the VIP — the split brain `k3splan check` reports.
    pub fn write_keepalived_vrid(&self, host: &str, priority: u8, router_id: u8) -> Result<()> {
        let vip = self.vip.map(|v| v.to_string()).unwrap_or_default();
        let spec = k3splan_host::keepalived::KeepalivedSpec {
            image: "osixia/keepalived:2.0.20".into(),
            interface: "lo".into(),
            virtual_ip: vip,
            router_id,
            priority,
            state: if priority >= 100 { "MASTER" } else { "BACKUP" }.into(),
            unicast_peers: Vec::new(),
            password: None,
        };
        let text = k3splan_host::keepalived::render_manifest(&spec);
        Ok(self.host(host)?.sshd.write(KEEPALIVED_MANIFEST, text)?)
    }

    pub(crate) fn start_vip(&mut self) -> Result<()> {
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

    pub(crate) fn start_controller(&mut self) {
        let stop = self.stop.clone();
        let kube = self.kube.clone().expect("kube");
        let target = self.vip_target.clone();
        let holders_out = self.vip_holders.clone();
        let vip = self.vip;
        let vip_ns = self.vip_ns.clone();
        let servers: Vec<(String, Ipv4Addr, PathBuf)> = self
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.address(), h.path(KEEPALIVED_MANIFEST)))
            .collect();
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                node_lifecycle(&kube);
                let masters = vrrp_masters(&servers);
                let holders: Vec<String> = masters.iter().map(|m| m.2.clone()).collect();
                if let (Some(vip), Some(ns)) = (vip, &vip_ns) {
                    for (name, _, _) in &servers {
                        ns.set(name, vip, holders.contains(name));
                    }
                }
                // The forwarder follows the master of highest priority (with two, clients
                // on a real network reach whichever answered ARP last).
                *target.lock().unwrap_or_else(|p| p.into_inner()) =
                    masters.first().map(|m| m.2.clone());
                *holders_out.lock().unwrap_or_else(|p| p.into_inner()) = holders;
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }
}

/// The VRRP masters: per `virtual_router_id` (instances of different IDs ignore each
/// other's adverts, RFC 5798 section 7.1, so each ID elects its own master), the live host
/// whose manifest has the highest priority (a tie: the first host in lab order — real VRRP
/// prefers the higher primary address). "Live": its `:6443` accepts connections (the
/// keepalived static pod runs while k3s does). Highest priority first.
fn vrrp_masters(servers: &[(String, Ipv4Addr, PathBuf)]) -> Vec<(u8, usize, String)> {
    let mut best: BTreeMap<u8, (u8, usize, String)> = BTreeMap::new();
    for (i, (name, ip, manifest)) in servers.iter().enumerate() {
        let Ok(text) = fs::read_to_string(manifest) else {
            continue;
        };
        let Ok(cfg) = k3splan_host::keepalived::parse_manifest(KEEPALIVED_MANIFEST, &text) else {
            continue;
        };
        let prio = cfg.priority.unwrap_or(0);
        let rid = cfg.router_id.unwrap_or(0);
        if best.get(&rid).is_some_and(|(b, _, _)| *b >= prio) {
            continue;
        }
        if TcpStream::connect_timeout(&SocketAddr::from((*ip, 6443)), Duration::from_millis(300))
            .is_ok()
        {
            best.insert(rid, (prio, i, name.clone()));
        }
    }
    let mut masters: Vec<(u8, usize, String)> = best.into_values().collect();
    masters.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    masters
}

fn proxy(client: TcpStream, to: SocketAddr) {
    let Ok(up) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
        return;
    };
    splice(client, up);
}

/// Copies bytes both ways between two connected streams until both directions are closed
/// (each side's write half is shut down when the other side's read ends). Blocks; used by
/// the VIP forwarder and by the stand-in's supervisor port.
pub fn splice(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let (mut c1, mut u1) = (client, upstream);
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
