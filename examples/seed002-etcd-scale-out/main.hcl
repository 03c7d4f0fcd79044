# Seed 002: scale etcd out from 3 to 5 members. One of the new hosts, store-5, held etcd
# data from an earlier cluster: a plain join would keep dialing the old members. k3splan
# sees the stale data dir, moves it aside (never deletes it), and adds the members one at a
# time, each as a learner promoted before the next.

variable "subnet" {
  description = "First three octets of the node addresses"
  default     = "172.16.8"
}

cluster "store" {
  k3s_version = "v1.30.4+k3s1"
  token       = env("K3S_TOKEN")
  data_dir    = "/var/lib/rancher/k3s"

  etcd {
    ca_file               = "secrets/etcd/server-ca.crt"
    cert_file             = "secrets/etcd/client.crt"
    key_file              = "secrets/etcd/client.key"
    snapshot_before_apply = true
  }

  ssh {
    user = "root"
    port = 22
  }
}

node "store-1" {
  address = "${var.subnet}.11"
  roles   = ["server"]
}

node "store-2" {
  address = "${var.subnet}.12"
  roles   = ["server"]
}

node "store-3" {
  address = "${var.subnet}.13"
  roles   = ["server"]
}

# New members.
node "store-4" {
  address = "${var.subnet}.14"
  roles   = ["server"]
}

node "store-5" {
  address = "${var.subnet}.15" # held another cluster's etcd data
  roles   = ["server"]
}

addon "coredns" {
  replicas = 3
  spread   = "kubernetes.io/hostname"
}

addon "metrics-server" {
  replicas = 2
  spread   = "kubernetes.io/hostname"
}

addon "local-path-provisioner" {
  replicas = 2
}
