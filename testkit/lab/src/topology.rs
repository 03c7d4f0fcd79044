//! The k3splan topology (HCL) that describes the lab.

use super::*;

impl Lab {
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
            if self.spec.agentless && n.roles.iter().any(|r| r != "agent") {
                let _ = writeln!(s, "  k3s_config = {{ \"disable-agent\" = true }}");
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
}
