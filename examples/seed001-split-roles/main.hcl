# Seed 001: split roles. Three etcd-only servers hold the datastore; two control-plane-only
# servers run the API server and join through a server URL. When the first etcd node died,
# the control-plane nodes could not start: their `server:` join URL named it. Here the join
# URL is the VIP, and k3splan rewrites any config.yaml that still names a dead server.

cluster "split" {
  k3s_version  = "v1.31.6+k3s1"
  token        = file("secrets/k3s-token")
  api_endpoint = "https://10.20.0.100:6443"

  etcd {
    ca_file   = "secrets/etcd/server-ca.crt"
    cert_file = "secrets/etcd/client.crt"
    key_file  = "secrets/etcd/client.key"
  }

  vip {
    address   = "10.20.0.100"
    interface = "ens3"
    router_id = 51
    password  = env("VRRP_PASSWORD")
  }

  ssh {
    user             = "ops"
    private_key_file = "~/.ssh/k3s_ed25519"
  }
}

locals {
  etcd_taint = "node-role.kubernetes.io/etcd=true:NoExecute"
}

node "etcd-1" {
  address = "10.20.0.11"
  roles   = ["etcd"]
  taints  = [local.etcd_taint]
}

node "etcd-2" {
  address = "10.20.0.12"
  roles   = ["etcd"]
  taints  = [local.etcd_taint]
}

node "etcd-3" {
  address = "10.20.0.13"
  roles   = ["etcd"]
  taints  = [local.etcd_taint]
}

node "cp-1" {
  address = "10.20.0.21"
  roles   = ["control-plane"]
  primary = true
}

node "cp-2" {
  address = "10.20.0.22"
  roles   = ["control-plane"]
}

node "worker-1" {
  address = "10.20.0.31"
  roles   = ["agent"]
  labels  = {
    "topology.kubernetes.io/zone" = "a"
  }
}
