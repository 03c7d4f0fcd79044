//! What the lab looks like now: etcd membership and health, Nodes, Pods, the VIP holder.

use super::*;

impl Lab {
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
                    qualified_name(p),
                    p["status"]["phase"].as_str().unwrap_or("").to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Every host that holds the VIP right now (the VRRP master of each
    /// `virtual_router_id`; two or more is a split brain), highest priority first.
    pub fn vip_holders(&self) -> Vec<String> {
        self.vip_holders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until exactly `hosts` hold the VIP (in any order) and their `ip -o addr show`
    /// over SSH says so, every other host's not.
    pub fn wait_vip_holders(&self, hosts: &[&str], timeout: Duration) -> Result<()> {
        let vip = self.vip.map(|v| format!(" {v}/")).unwrap_or_default();
        let mut want: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for h in &self.hosts {
                if let Ok((0, out)) = self.ssh(&h.name, &[], "ip -o addr show")
                    && out.contains(&vip)
                {
                    seen.push(h.name.clone());
                }
            }
            seen.sort();
            let mut model = self.vip_holders();
            model.sort();
            if seen == want && model == want {
                return Ok(());
            }
            let last = format!("ip addr shows the VIP on {seen:?}, VRRP masters {model:?}");
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("VIP holders {want:?}"),
                    waited: timeout,
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Which host the VIP forwards to right now (`None`: no live candidate or no VIP).
    pub fn vip_holder(&self) -> Option<String> {
        self.vip_target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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

/// `namespace/name` of a Kubernetes object (empty parts for missing fields).
pub fn qualified_name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}
