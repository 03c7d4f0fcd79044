//! Building the `cluster` block.

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    pub(super) fn build_cluster(&mut self, b: &RawBlock, ctx: &Context) -> Option<Cluster> {
        let v = self.eval_block(b, ctx);
        let data_dir = str_of(&v, attr::DATA_DIR).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        if let Some(val) = v.get(attr::DATA_DIR)
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
        let api_endpoint = str_of(&v, attr::API_ENDPOINT);
        if let (Some(ep), Some(val)) = (&api_endpoint, v.get(attr::API_ENDPOINT))
            && let Err(why) = check_https_url(ep)
        {
            self.err(
                b.file,
                val.attr.expr_span.clone(),
                format!("`api_endpoint` {why}"),
            );
        }
        if let (Some(ver), Some(val)) = (str_of(&v, attr::K3S_VERSION), v.get(attr::K3S_VERSION))
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
        let ssh = self.build_ssh(b.child(&schema::SSH), ctx, &SshSettings::default());

        let etcd = self.build_etcd(b.child(&schema::ETCD), ctx);
        let vip = b.child(&schema::VIP).and_then(|vb| self.build_vip(vb, ctx));

        Some(Cluster {
            name: b.label().to_string(),
            k3s_version: str_of(&v, attr::K3S_VERSION),
            token: secret_of(&v, attr::TOKEN),
            api_endpoint,
            kubeconfig: str_of(&v, attr::KUBECONFIG).map(PathBuf::from),
            kube_context: str_of(&v, attr::KUBE_CONTEXT),
            data_dir,
            install_command: str_of(&v, attr::INSTALL_COMMAND),
            host: self.build_host(b.child(&schema::HOST), ctx),
            timeouts: self.build_timeouts(b.child(&schema::TIMEOUTS), ctx),
            upgrade: self.build_upgrade(b.child(&schema::UPGRADE), ctx),
            etcd,
            vip,
            ssh,
        })
    }

    /// The `upgrade` block (issue 15): `max_unavailable` a whole number from 1, or a
    /// percentage string `"N%"` from 1 to 100.
    fn build_upgrade(&mut self, ub: Option<&RawBlock>, ctx: &Context) -> UpgradeSettings {
        let mut u = UpgradeSettings::default();
        let Some(ub) = ub else {
            return u;
        };
        let v = self.eval_block(ub, ctx);
        let Some(val) = v.get(attr::MAX_UNAVAILABLE) else {
            return u;
        };
        let parsed = match &val.value {
            Value::Number(n) => n
                .as_u64()
                .filter(|n| (1..=10_000).contains(n))
                .map(|n| MaxUnavailable::Count(n as u32)),
            Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p))
                .map(MaxUnavailable::Percent),
            _ => None,
        };
        match parsed {
            Some(m) => u.max_unavailable = m,
            None => {
                let found = match &val.value {
                    Value::String(s) => quote(s),
                    other => other.to_string(),
                };
                self.err(
                    ub.file,
                    val.attr.expr_span.clone(),
                    format!(
                        "`upgrade.max_unavailable` must be a whole number of agents from 1 (such as 2) or a percentage of the agents from \"1%\" to \"100%\" (such as \"25%\"), found {found}"
                    ),
                );
            }
        }
        u
    }

    /// The `timeouts` block: each attribute a duration string from 1s to 24h.
    fn build_timeouts(&mut self, tb: Option<&RawBlock>, ctx: &Context) -> Timeouts {
        let mut t = Timeouts::default();
        let Some(tb) = tb else {
            return t;
        };
        let v = self.eval_block(tb, ctx);
        for key in [
            attr::LEARNER_PROMOTED,
            attr::NODE_READY,
            attr::POD_RESCHEDULED,
            attr::DRAIN,
            attr::VERIFY,
        ] {
            let Some(text) = str_of(&v, key) else {
                continue;
            };
            let d = match parse_duration(&text) {
                Ok(d) if d.as_secs() == 0 => Err("is zero".to_string()),
                Ok(d) if d.as_secs() > 24 * 3600 => Err("is longer than 24h".to_string()),
                other => other,
            };
            match d {
                Ok(d) => {
                    let slot = match key {
                        attr::LEARNER_PROMOTED => &mut t.learner_promoted,
                        attr::NODE_READY => &mut t.node_ready,
                        attr::POD_RESCHEDULED => &mut t.pod_rescheduled,
                        attr::DRAIN => &mut t.drain,
                        attr::VERIFY => &mut t.verify,
                        _ => continue,
                    };
                    *slot = Some(d);
                }
                Err(why) => self.err(
                    tb.file,
                    v[key].attr.expr_span.clone(),
                    format!(
                        "`timeouts.{key}` must be a duration from \"1s\" to \"24h\" such as \"90s\", \"3m\" or \"1h30m\"; {text_q} {why}",
                        text_q = quote(&text)
                    ),
                ),
            }
        }
        t
    }

    /// The `etcd` block: client certificate files (all three or none) and https endpoints.
    fn build_etcd(&mut self, eb: Option<&RawBlock>, ctx: &Context) -> EtcdSettings {
        let mut etcd = EtcdSettings::default();
        let Some(eb) = eb else {
            return etcd;
        };
        let ev = self.eval_block(eb, ctx);
        etcd.ca_file = str_of(&ev, attr::CA_FILE).map(PathBuf::from);
        etcd.cert_file = str_of(&ev, attr::CERT_FILE).map(PathBuf::from);
        etcd.key_file = str_of(&ev, attr::KEY_FILE).map(PathBuf::from);
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
        if let Some(list) = list_of(&ev, attr::ENDPOINTS) {
            for (i, ep) in list.iter().enumerate() {
                if let Err(why) = check_https_url(ep) {
                    let a = &ev[attr::ENDPOINTS].attr;
                    let span = elem_span(&a.expr, i).unwrap_or(a.expr_span.clone());
                    self.err(eb.file, span, format!("etcd endpoint {why}"));
                }
            }
            etcd.endpoints = list;
        }
        if let Some(s) = bool_of(&ev, attr::SNAPSHOT_BEFORE_APPLY) {
            etcd.snapshot_before_apply = s;
        }
        etcd
    }

    /// The `vip` block: a VIP address, an interface name, a router id.
    fn build_vip(&mut self, vb: &RawBlock, ctx: &Context) -> Option<Vip> {
        let vv = self.eval_block(vb, ctx);
        let addr_s = str_of(&vv, attr::ADDRESS)?;
        let address = match addr_s.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    vb.file,
                    vv[attr::ADDRESS].attr.expr_span.clone(),
                    format!(
                        "invalid IP address {addr_s_q} for the VIP",
                        addr_s_q = quote(&addr_s)
                    ),
                );
                return None;
            }
        };
        let interface = str_of(&vv, attr::INTERFACE)?;
        if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
            self.err(
                vb.file,
                vv[attr::INTERFACE].attr.expr_span.clone(),
                format!(
                    "invalid network interface name {interface_q}",
                    interface_q = quote(&interface)
                ),
            );
        }
        let router_id = int_of(&vv, attr::ROUTER_ID)? as u8;
        let manifest_path =
            str_of(&vv, attr::MANIFEST_PATH).unwrap_or_else(|| DEFAULT_VIP_MANIFEST.into());
        if !manifest_path.starts_with('/') {
            self.err(
                vb.file,
                vv[attr::MANIFEST_PATH].attr.expr_span.clone(),
                "`manifest_path` must be an absolute path",
            );
        }
        Some(Vip {
            address,
            interface,
            router_id,
            password: secret_of(&vv, attr::PASSWORD),
            manifest_path,
        })
    }
}
