//! Each lab host's own view of the keepalived VIP.
//!
//! The lab's hosts share one network namespace (their addresses are `127.77.B.x` on the one
//! loopback), so an address added there would be seen by every host. On a real host,
//! keepalived's VRRP instance in MASTER state adds each `virtual_ipaddress` to its interface
//! (keepalived `keepalived/vrrp/vrrp_ipaddress.c`, `netlink_ipaddress(…, IPADDRESS_ADD)`, a
//! `/32` when no prefix is given) and removes it on leaving MASTER or stopping; `ip -o addr
//! show` on that host then lists `inet VIP/32 … IFACE`, on the other hosts not.
//!
//! The lab models this with one real network namespace per host (`ip netns add
//! k3splan-lab-ADDRESS`), created before the host's sshd so that its mount namespace has the
//! `/run/netns` entry. The lab's VRRP model (vip.rs) adds the VIP to that namespace's `lo`
//! with `ip -n NS addr add VIP/32 dev lo` on the hosts it makes MASTER and deletes it from
//! the others. On the host, `/usr/local/sbin` (first in sshd's root `PATH`) is private and
//! holds an `ip` that runs the real `ip` inside that namespace (`nsenter --net`): `ip -o addr
//! show` over SSH answers what the host's keepalived did. Only `ip` is redirected; every other
//! program (sshd, etcd, the stand-in) stays in the shared namespace. See docs/lab.md.

use super::*;

/// In-host path of the `ip` that answers from the host's VIP namespace.
pub(crate) const IP_WRAPPER: &str = "/usr/local/sbin/ip";
/// The private directory that holds it (first in sshd's `PATH` for root).
pub(crate) const WRAPPER_DIR: &str = "/usr/local/sbin";

/// The per-host VIP namespaces of one lab; dropping it deletes them.
#[derive(Debug)]
pub(crate) struct VipNetns {
    /// Host name → namespace name.
    names: BTreeMap<String, String>,
    /// The real `ip` binary (absolute, never the wrapper).
    ip_bin: String,
    /// Host → whether its namespace holds the VIP now (as last applied).
    applied: Mutex<BTreeMap<String, bool>>,
}

fn real_ip() -> Option<String> {
    ["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(str::to_string)
}

fn run_ip(ip: &str, args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{ip} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{ip} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl VipNetns {
    /// Creates one namespace per `(host, address)` (a stale one of the same name, left by a
    /// killed lab that had this address block, is deleted first), each with `lo` up.
    pub(crate) fn create(hosts: &[(String, Ipv4Addr)]) -> Result<Self> {
        let ip_bin = real_ip().ok_or_else(|| LabError::Vip("no `ip` binary".into()))?;
        let mut me = VipNetns {
            names: BTreeMap::new(),
            ip_bin,
            applied: Mutex::new(BTreeMap::new()),
        };
        for (host, addr) in hosts {
            let ns = format!("k3splan-lab-{addr}");
            let _ = run_ip(&me.ip_bin, &["netns", "delete", &ns]);
            run_ip(&me.ip_bin, &["netns", "add", &ns]).map_err(LabError::Vip)?;
            me.names.insert(host.clone(), ns.clone());
            run_ip(&me.ip_bin, &["-n", &ns, "link", "set", "lo", "up"]).map_err(LabError::Vip)?;
        }
        Ok(me)
    }

    /// The text of the host's `ip`.
    pub(crate) fn wrapper(&self, host: &str) -> Option<String> {
        let ns = self.names.get(host)?;
        Some(format!(
            "#!/bin/sh\n# k3splan lab: `ip` answers from this host's VIP namespace (docs/lab.md, \"keepalived VIP\").\nexec nsenter --net=/run/netns/{ns} {ip} \"$@\"\n",
            ip = self.ip_bin
        ))
    }

    /// Makes the host's namespace hold `vip` (on `lo`, as `/32`) or not; acts only on a
    /// change from the last call.
    pub(crate) fn set(&self, host: &str, vip: Ipv4Addr, holds: bool) {
        let Some(ns) = self.names.get(host) else {
            return;
        };
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if applied.get(host) == Some(&holds) {
            return;
        }
        let addr = format!("{vip}/32");
        let r = if holds {
            run_ip(
                &self.ip_bin,
                &["-n", ns, "addr", "replace", &addr, "dev", "lo"],
            )
        } else {
            match run_ip(&self.ip_bin, &["-n", ns, "addr", "del", &addr, "dev", "lo"]) {
                // Not there: already what is wanted.
                Err(e) if e.contains("Cannot assign") => Ok(()),
                r => r,
            }
        };
        if r.is_ok() {
            applied.insert(host.to_string(), holds);
        }
    }
}

impl Drop for VipNetns {
    fn drop(&mut self) {
        for ns in self.names.values() {
            let _ = run_ip(&self.ip_bin, &["netns", "delete", ns]);
        }
    }
}
