//! Where the Kubernetes API may answer when the kubeconfig's server does not: the fallback
//! list given to the Kubernetes provider (`KubeSettings::fallback_servers`).
//!
//! Order (after the kubeconfig's own server, which the provider tries first): the VIP's
//! `https://VIP:6443`, then `api_endpoint`, then each declared server that runs the control
//! plane at `https://ADDRESS:6443`, in the topology's order; duplicates are dropped (the first
//! description wins). A kubeconfig naming `127.0.0.1` or `localhost` (as k3s writes it) is a
//! candidate like any other: from another machine it does not answer, and the next one is
//! tried. etcd-only nodes (`disable-apiserver`) serve no API and are not candidates.

use std::net::IpAddr;

use k3splan_kube::FallbackServer;

use crate::config::Topology;

/// `https://ADDR:6443` (IPv6 in brackets).
fn url_6443(a: IpAddr) -> String {
    match a {
        IpAddr::V6(a) => format!("https://[{a}]:6443"),
        IpAddr::V4(a) => format!("https://{a}:6443"),
    }
}

/// The fallback API servers of `t`, in order of preference, without duplicates.
pub fn api_fallbacks(t: &Topology) -> Vec<FallbackServer> {
    let mut out: Vec<FallbackServer> = Vec::new();
    let mut push = |url: String, what: String| {
        let key = url.trim_end_matches('/').to_ascii_lowercase();
        if !out
            .iter()
            .any(|f| f.url.trim_end_matches('/').to_ascii_lowercase() == key)
        {
            out.push(FallbackServer { url, what });
        }
    };
    if let Some(v) = &t.cluster.vip {
        push(url_6443(v.address), "the VIP".into());
    }
    if let Some(ep) = &t.cluster.api_endpoint {
        push(ep.clone(), "api_endpoint".into());
    }
    for n in &t.nodes {
        if n.roles.runs_control_plane() {
            push(url_6443(n.address), format!("server {}", n.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(hcl: &str) -> Topology {
        let loaded = crate::config::load_str("main.hcl", hcl);
        loaded
            .topology
            .unwrap_or_else(|| panic!("valid topology: {:?}", loaded.diagnostics))
    }

    #[test]
    fn the_vip_comes_first_then_api_endpoint_then_each_control_plane_server_once() {
        let t = topology(
            r#"
cluster "c" {
  api_endpoint = "https://10.0.0.100:6443"
  vip {
    address   = "10.0.0.100"
    interface = "eth0"
    router_id = 66
  }
}
node "s1" {
  address = "10.0.0.11"
  roles   = ["server", "etcd"]
  primary = true
}
node "e1" {
  address = "10.0.0.21"
  roles   = ["etcd"]
}
node "e2" {
  address = "10.0.0.22"
  roles   = ["etcd"]
}
node "cp1" {
  address = "fd00::12"
  roles   = ["control-plane"]
}
node "a1" {
  address = "10.0.0.31"
  roles   = ["agent"]
}
"#,
        );
        let got: Vec<(String, String)> = api_fallbacks(&t)
            .into_iter()
            .map(|f| (f.url, f.what))
            .collect();
        assert_eq!(
            got,
            [
                ("https://10.0.0.100:6443".into(), "the VIP".into()),
                ("https://10.0.0.11:6443".into(), "server s1".into()),
                ("https://[fd00::12]:6443".into(), "server cp1".into()),
            ]
        );
    }

    #[test]
    fn without_a_vip_api_endpoint_leads() {
        let t = topology(
            r#"
cluster "c" {
  api_endpoint = "https://lb.example:6443"
}
node "s1" {
  address = "10.0.0.11"
  roles   = ["server"]
}
"#,
        );
        let got: Vec<String> = api_fallbacks(&t).into_iter().map(|f| f.url).collect();
        assert_eq!(got, ["https://lb.example:6443", "https://10.0.0.11:6443"]);
    }
}
