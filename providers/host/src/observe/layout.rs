//! Where k3s lives on a host and how its services are controlled.

use serde::{Deserialize, Serialize};

use crate::quote::sh_command;

/// Commands that check and control services. Each is an argv prefix; the unit name is
/// appended as one more (quoted) argument. `is_active` must exit 0 exactly when the unit runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceManager {
    /// e.g. `["systemctl", "is-active"]` (it prints the state; exit 0 = active).
    pub is_active: Vec<String>,
    /// e.g. `["systemctl", "start"]`.
    pub start: Vec<String>,
    /// e.g. `["systemctl", "stop"]`.
    pub stop: Vec<String>,
    /// e.g. `["systemctl", "restart"]`.
    pub restart: Vec<String>,
}

impl ServiceManager {
    /// systemd (real k3s hosts).
    pub fn systemd() -> Self {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        ServiceManager {
            is_active: v(&["systemctl", "is-active"]),
            start: v(&["systemctl", "start"]),
            stop: v(&["systemctl", "stop"]),
            restart: v(&["systemctl", "restart"]),
        }
    }

    /// One program taking `<verb> <unit>` with verbs `is-active|start|stop|restart` (the
    /// lab's stand-in, OpenRC-like wrappers, …).
    pub fn single_program(program: &str) -> Self {
        let v = |verb: &str| vec![program.to_string(), verb.to_string()];
        ServiceManager {
            is_active: v("is-active"),
            start: v("start"),
            stop: v("stop"),
            restart: v("restart"),
        }
    }

    pub(crate) fn command(&self, action: ServiceAction, unit: &str) -> String {
        let prefix = match action {
            ServiceAction::Start => &self.start,
            ServiceAction::Stop => &self.stop,
            ServiceAction::Restart => &self.restart,
        };
        let mut argv = prefix.clone();
        argv.push(unit.to_string());
        sh_command(&argv)
    }

    pub(crate) fn is_active_command(&self, unit: &str) -> String {
        let mut argv = self.is_active.clone();
        argv.push(unit.to_string());
        sh_command(&argv)
    }
}

impl Default for ServiceManager {
    fn default() -> Self {
        Self::systemd()
    }
}

/// A service action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceAction {
    /// Start the unit.
    Start,
    /// Stop the unit.
    Stop,
    /// Restart the unit.
    Restart,
}

/// Where k3s lives on a host and how it is controlled. Defaults follow the official installer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct K3sLayout {
    /// k3s data dir (`/var/lib/rancher/k3s`).
    pub data_dir: String,
    /// k3s config file (`/etc/rancher/k3s/config.yaml`).
    pub config_path: String,
    /// The k3s binary (`/usr/local/bin/k3s`).
    pub k3s_bin: String,
    /// Server unit (`k3s`).
    pub server_unit: String,
    /// Agent unit (`k3s-agent`).
    pub agent_unit: String,
    /// Where the installer puts the units and their environment files
    /// (`/etc/systemd/system`): it writes `K3S_*` and proxy variables to
    /// `<systemd_dir>/<unit>.service.env` (install.sh `create_env_file`).
    #[serde(default = "default_systemd_dir")]
    pub systemd_dir: String,
    /// Service commands (systemd by default).
    pub services: ServiceManager,
    /// Uninstaller of a server (`/usr/local/bin/k3s-uninstall.sh`), argv.
    pub uninstall_server: Vec<String>,
    /// Uninstaller of an agent (`/usr/local/bin/k3s-agent-uninstall.sh`), argv.
    pub uninstall_agent: Vec<String>,
    /// Shell snippet that installs k3s; it sees `INSTALL_K3S_VERSION`, `INSTALL_K3S_EXEC`,
    /// `K3S_URL`, `K3S_TOKEN` (and any extra variables) in its environment. Default:
    /// `curl -sfL https://get.k3s.io | sh -s -`. Trusted configuration: run as written.
    pub install_command: String,
}

fn default_systemd_dir() -> String {
    "/etc/systemd/system".into()
}

/// The default installer snippet.
pub const DEFAULT_INSTALL_COMMAND: &str = "curl -sfL https://get.k3s.io | sh -s -";

impl Default for K3sLayout {
    fn default() -> Self {
        K3sLayout {
            data_dir: "/var/lib/rancher/k3s".into(),
            config_path: "/etc/rancher/k3s/config.yaml".into(),
            k3s_bin: "/usr/local/bin/k3s".into(),
            server_unit: "k3s".into(),
            agent_unit: "k3s-agent".into(),
            systemd_dir: default_systemd_dir(),
            services: ServiceManager::systemd(),
            uninstall_server: vec!["/usr/local/bin/k3s-uninstall.sh".into()],
            uninstall_agent: vec!["/usr/local/bin/k3s-agent-uninstall.sh".into()],
            install_command: DEFAULT_INSTALL_COMMAND.into(),
        }
    }
}

impl K3sLayout {
    /// The installer's environment file of `unit`: `<systemd_dir>/<unit>.service.env`
    /// (install.sh: `FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env`).
    pub fn env_file(&self, unit: &str) -> String {
        format!(
            "{}/{unit}.service.env",
            self.systemd_dir.trim_end_matches('/')
        )
    }

    /// The unit file the installer writes for `unit`: `<systemd_dir>/<unit>.service`
    /// (install.sh: `FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SERVICE_K3S}`); its `ExecStart=`
    /// holds the install's arguments ([`crate::unit`]).
    pub fn unit_file(&self, unit: &str) -> String {
        format!("{}/{unit}.service", self.systemd_dir.trim_end_matches('/'))
    }

    /// `<data_dir>/server/db/etcd`.
    pub fn etcd_dir(&self) -> String {
        format!("{}/server/db/etcd", self.data_dir.trim_end_matches('/'))
    }
}
