//! Building the `cluster` block.

use super::*;

impl Loader<'_> {
    pub(super) fn build_cluster(&mut self, b: &RawBlock, ctx: &Context) -> Option<Cluster> {
        let v = self.eval_block(b, ctx);
        let data_dir = str_of(&v, "data_dir").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        if let Some(val) = v.get("data_dir")
            && !data_dir.starts_with('/')
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!(
                    "`data_dir` must be an absolute path, found {data_dir_q}",
                    data_dir_q = quote(&data_dir)
                ),
            );
        }
        let api_endpoint = str_of(&v, "api_endpoint");
        if let (Some(ep), Some(val)) = (&api_endpoint, v.get("api_endpoint"))
            && let Err(why) = check_https_url(ep)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!("`api_endpoint` {why}"),
            );
        }
        if let (Some(ver), Some(val)) = (str_of(&v, "k3s_version"), v.get("k3s_version"))
            && !is_k3s_version(&ver)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!(
                    "`k3s_version` must look like \"v1.28.5+k3s1\", found {ver_q}",
                    ver_q = quote(&ver)
                ),
            );
        }
        let ssh = self.build_ssh(b.child("ssh"), ctx, &SshSettings::default());

        let mut etcd = EtcdSettings::default();
        if let Some(eb) = b.child("etcd") {
            let ev = self.eval_block(eb, ctx);
            etcd.ca_file = str_of(&ev, "ca_file").map(PathBuf::from);
            etcd.cert_file = str_of(&ev, "cert_file").map(PathBuf::from);
            etcd.key_file = str_of(&ev, "key_file").map(PathBuf::from);
            let set = [&etcd.ca_file, &etcd.cert_file, &etcd.key_file]
                .iter()
                .filter(|f| f.is_some())
                .count();
            if set != 0 && set != 3 {
                self.err(
                    eb.file,
                    eb.ident_span.clone(),
                    "`ca_file`, `cert_file` and `key_file` go together: k3s's etcd requires a client certificate, so set all three (k3s: server/tls/etcd/server-ca.crt, client.crt, client.key)",
                );
            }
            if let Some(list) = list_of(&ev, "endpoints") {
                for (i, ep) in list.iter().enumerate() {
                    if let Err(why) = check_https_url(ep) {
                        let a = &ev["endpoints"].attr;
                        let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                        self.err(eb.file, span, format!("etcd endpoint {why}"));
                    }
                }
                etcd.endpoints = list;
            }
            if let Some(s) = bool_of(&ev, "snapshot_before_apply") {
                etcd.snapshot_before_apply = s;
            }
        }

        let vip = b.child("vip").and_then(|vb| {
            let vv = self.eval_block(vb, ctx);
            let addr_s = str_of(&vv, "address")?;
            let address = match addr_s.parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        vb.file,
                        vv["address"].attr.expr_span.clone(),
                        format!(
                            "invalid IP address {addr_s_q} for the VIP",
                            addr_s_q = quote(&addr_s)
                        ),
                    );
                    return None;
                }
            };
            let interface = str_of(&vv, "interface")?;
            if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
                self.err(
                    vb.file,
                    vv["interface"].attr.expr_span.clone(),
                    format!(
                        "invalid network interface name {interface_q}",
                        interface_q = quote(&interface)
                    ),
                );
            }
            let router_id = int_of(&vv, "router_id")? as u8;
            let manifest_path =
                str_of(&vv, "manifest_path").unwrap_or_else(|| DEFAULT_VIP_MANIFEST.into());
            if !manifest_path.starts_with('/') {
                self.err(
                    vb.file,
                    vv["manifest_path"].attr.expr_span.clone(),
                    "`manifest_path` must be an absolute path",
                );
            }
            Some(Vip {
                address,
                interface,
                router_id,
                password: secret_of(&vv, "password"),
                manifest_path,
            })
        });

        Some(Cluster {
            name: b.label().to_string(),
            k3s_version: str_of(&v, "k3s_version"),
            token: secret_of(&v, "token"),
            api_endpoint,
            kubeconfig: str_of(&v, "kubeconfig").map(PathBuf::from),
            kube_context: str_of(&v, "kube_context"),
            data_dir,
            install_command: str_of(&v, "install_command"),
            host: self.build_host(b.child("host"), ctx),
            etcd,
            vip,
            ssh,
        })
    }
}
