# Seed 004: a 3-server k3s cluster with a keepalived VIP and MinIO on local-path volumes,
# after lzx-ha-env (192.168.0.254, the first server and VIP primary) died and was replaced
# by lzx-test-add-node. Deleting its node block was the whole change.

cluster "cloudpods" {
  k3s_version  = "v1.28.5+k3s1"
  token        = env("K3S_TOKEN") # never a literal
  api_endpoint = "https://192.168.0.66:6443" # the VIP

  etcd {
    ca_file               = "secrets/etcd/server-ca.crt"
    cert_file             = "secrets/etcd/client.crt"
    key_file              = "secrets/etcd/client.key"
    snapshot_before_apply = true
  }

  vip {
    address       = "192.168.0.66"
    interface     = "eth0"
    router_id     = 66
    password      = env("VRRP_PASSWORD")
    manifest_path = "/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml"
  }

  ssh {
    user             = "root"
    private_key_file = "~/.ssh/id_ed25519"
    known_hosts_file = "~/.ssh/known_hosts"
  }
}

node "lzx-ha-env-2" {
  address = "192.168.0.244"
  roles   = ["server", "etcd"]
  primary = true # keepalived priority 100; the others get 90
}

node "lzx-ha-env-3" {
  address = "192.168.0.243"
  roles   = ["server", "etcd"]
}

node "lzx-test-add-node" {
  address = "192.168.0.239"
  roles   = ["server", "etcd"]
}

storage "onecloud-minio/minio" {
  kind         = "StatefulSet"
  on_node_loss = "rebind" # delete PVC + pod; the StatefulSet recreates both elsewhere
  prefer_nodes = ["lzx-test-add-node"]
}

storage "onecloud-monitoring/monitor-minio" {
  kind         = "StatefulSet"
  on_node_loss = "rebind"
}

storage "onecloud/default-victoria-metrics" {
  kind         = "Deployment"
  on_node_loss = "recreate" # delete PVC + Deployment; its operator recreates them
}

addon "coredns" {
  namespace = "kube-system"
  replicas  = 3
  spread    = "kubernetes.io/hostname"
}
