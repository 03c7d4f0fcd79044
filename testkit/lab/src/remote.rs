//! Running things on the lab's hosts as an operator would: SSH, the install command,
//! services, files.

use super::*;

impl Lab {
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
        if self.spec.agentless {
            cfg.push_str("disable-agent: true\n");
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

    /// `etcdctl ARGS` (API v3) against `host`'s member with the lab's client certificate, as
    /// an operator would run it: stdout when it succeeds, stderr when it fails.
    pub fn etcdctl(&self, host: &str, args: &[&str]) -> std::result::Result<String, String> {
        let f = self.files();
        let endpoint = self.host(host).map_err(|e| e.to_string())?.etcd_endpoint();
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", f.etcd_ca.display()))
            .arg(format!("--cert={}", f.etcd_cert.display()))
            .arg(format!("--key={}", f.etcd_key.display()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
