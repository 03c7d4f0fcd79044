//! Building the model from evaluated blocks.

use super::*;
use crate::config::schema::attr;

impl Loader<'_> {
    /// The model, in dependency order: cluster, nodes, storage (refers to nodes), add-ons,
    /// backend; then the whole-topology rules.
    pub(super) fn build(&mut self, top: &[RawBlock], ctx: &Context) -> Option<Topology> {
        let cluster_block = self.cluster_block(top);
        let cluster = cluster_block.and_then(|b| self.build_cluster(b, ctx));
        let (nodes, node_blocks, complete) = self.build_nodes(top, ctx, cluster.as_ref());
        let storage = self.build_storages(top, ctx, &nodes);
        let addons = self.build_addons(top, ctx);
        let backend = top
            .iter()
            .find(|b| b.is(&schema::BACKEND))
            .and_then(|b| self.build_backend(b, ctx));

        let check = self.build_check(top, ctx);

        // Whole-topology rules.
        if let (Some(cb), Some(cluster)) = (cluster_block, cluster.as_ref()) {
            self.topology_rules(cb, cluster, &nodes, &node_blocks, complete);
        }

        let cluster = cluster?;
        Some(Topology {
            cluster,
            nodes,
            storage,
            addons,
            backend,
            check,
        })
    }

    /// The one `cluster` block (a missing one is reported unless a `cluster` block was
    /// rejected for its own errors).
    fn cluster_block<'b>(&mut self, top: &'b [RawBlock]) -> Option<&'b RawBlock> {
        let clusters: Vec<&RawBlock> = top.iter().filter(|b| b.is(&schema::CLUSTER)).collect();
        match clusters.first() {
            Some(c) => Some(*c),
            None if self.seen_idents.contains_key(schema::CLUSTER.ident) => None,
            None => {
                let path = self
                    .files
                    .first()
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                self.diags.push(Diagnostic::global(
                    Severity::Error,
                    &path,
                    "no `cluster` block: a topology needs exactly one `cluster \"NAME\" { … }`",
                ));
                None
            }
        }
    }

    /// The `node` blocks: unique names and addresses. Returns the nodes built and their
    /// blocks, and whether every node block was built.
    fn build_nodes<'b>(
        &mut self,
        top: &'b [RawBlock],
        ctx: &Context,
        cluster: Option<&Cluster>,
    ) -> (Vec<Node>, Vec<&'b RawBlock>, bool) {
        let node_block_count = self
            .seen_idents
            .get(schema::NODE.ident)
            .copied()
            .unwrap_or(0);
        let mut nodes = Vec::new();
        let mut node_blocks = Vec::new();
        let mut names: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        let mut addrs: HashMap<IpAddr, (usize, Range<usize>, String)> = HashMap::new();
        for b in top.iter().filter(|b| b.is(&schema::NODE)) {
            let name = b.label().to_string();
            let msg = format!("duplicate node name {name_q}", name_q = quote(&name));
            if self.duplicate(&mut names, name.clone(), b, msg) {
                continue;
            }
            if !is_dns_name(&name) {
                self.err(
                    b.file,
                    b.label_span(),
                    format!("node name {name_q} is not a valid Kubernetes node name (lowercase letters, digits, '-' and '.')", name_q = quote(&name)),
                );
            }
            let ssh_default = cluster.map(|c| c.ssh.clone()).unwrap_or_default();
            if let Some(node) = self.build_node(b, ctx, &ssh_default) {
                if let Some((f, s, other)) = addrs.get(&node.address) {
                    let note = self.note_at(*f, s);
                    let d = Diagnostic::at(
                        Severity::Error,
                        &self.files[b.file],
                        b.expr_span_of(attr::ADDRESS),
                        format!(
                            "address {} is already used by node {other_q}",
                            node.address,
                            other_q = quote(other)
                        ),
                    )
                    .with_note(format!(
                        "{other_q} declared at {note}",
                        other_q = quote(other)
                    ));
                    self.diags.push(d);
                } else {
                    addrs.insert(
                        node.address,
                        (b.file, b.expr_span_of(attr::ADDRESS), node.name.clone()),
                    );
                }
                nodes.push(node);
                node_blocks.push(b);
            }
        }
        let complete = nodes.len() == node_block_count;
        (nodes, node_blocks, complete)
    }

    /// The `storage` blocks, with unique labels.
    fn build_storages(
        &mut self,
        top: &[RawBlock],
        ctx: &Context,
        nodes: &[Node],
    ) -> Vec<StorageBinding> {
        let mut storage = Vec::new();
        let mut seen_storage: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        for b in top.iter().filter(|b| b.is(&schema::STORAGE)) {
            let key = b.label().to_string();
            let msg = format!("duplicate storage binding {key_q}", key_q = quote(&key));
            if self.duplicate(&mut seen_storage, key, b, msg) {
                continue;
            }
            if let Some(s) = self.build_storage(b, ctx, nodes) {
                storage.push(s);
            }
        }
        storage
    }

    /// The `addon` blocks, unique per namespace.
    fn build_addons(&mut self, top: &[RawBlock], ctx: &Context) -> Vec<Addon> {
        let mut addons = Vec::new();
        let mut seen_addons: HashMap<String, (usize, Range<usize>)> = HashMap::new();
        for b in top.iter().filter(|b| b.is(&schema::ADDON)) {
            let v = self.eval_block(b, ctx);
            let namespace = str_of(&v, attr::NAMESPACE).unwrap_or_else(|| "kube-system".into());
            let key = format!("{namespace}/{}", b.label());
            let msg = format!(
                "duplicate addon {} in namespace {}",
                quote(b.label()),
                quote(&namespace)
            );
            if self.duplicate(&mut seen_addons, key, b, msg) {
                continue;
            }
            let spread = str_of(&v, attr::SPREAD);
            if let (Some(s), Some(val)) = (&spread, v.get(attr::SPREAD))
                && (s.is_empty() || s.contains(char::is_whitespace))
            {
                self.err(
                        b.file,
                        val.attr.expr_span.clone(),
                        format!("`spread` must be a node label key such as \"kubernetes.io/hostname\", found {s_q}", s_q = quote(s)),
                    );
            }
            let Some(replicas) = int_of(&v, attr::REPLICAS) else {
                continue;
            };
            addons.push(Addon {
                name: b.label().to_string(),
                namespace,
                replicas: replicas as u32,
                spread,
            });
        }
        addons
    }

    pub(super) fn build_ssh(
        &mut self,
        b: Option<&RawBlock>,
        ctx: &Context,
        base: &SshSettings,
    ) -> SshSettings {
        let mut ssh = base.clone();
        if let Some(b) = b {
            let v = self.eval_block(b, ctx);
            if let Some(u) = str_of(&v, attr::USER) {
                if u.is_empty() {
                    self.err(
                        b.file,
                        v[attr::USER].attr.expr_span.clone(),
                        "`user` must not be empty",
                    );
                }
                ssh.user = u;
            }
            if let Some(p) = int_of(&v, attr::PORT) {
                ssh.port = p as u16;
            }
            if let Some(k) = str_of(&v, attr::PRIVATE_KEY_FILE) {
                ssh.private_key_file = Some(PathBuf::from(k));
            }
            if let Some(k) = str_of(&v, attr::KNOWN_HOSTS_FILE) {
                ssh.known_hosts_file = PathBuf::from(k);
            }
        }
        ssh
    }

    pub(super) fn build_host(&mut self, b: Option<&RawBlock>, ctx: &Context) -> HostLayout {
        let mut h = HostLayout::default();
        let Some(b) = b else {
            return h;
        };
        let v = self.eval_block(b, ctx);
        for key in [attr::K3S_BINARY, attr::CONFIG_PATH] {
            if let Some(p) = str_of(&v, key) {
                if !p.starts_with('/') {
                    self.err(
                        b.file,
                        v[key].attr.expr_span.clone(),
                        format!(
                            "`{key}` must be an absolute path, found {p_q}",
                            p_q = quote(&p)
                        ),
                    );
                }
                match key {
                    attr::K3S_BINARY => h.k3s_binary = p,
                    _ => h.config_path = p,
                }
            }
        }
        for key in [
            attr::SERVICE_COMMAND,
            attr::UNINSTALL_COMMAND,
            attr::AGENT_UNINSTALL_COMMAND,
        ] {
            if let Some(list) = list_of(&v, key) {
                if list.is_empty() && key != attr::SERVICE_COMMAND {
                    self.err(
                        b.file,
                        v[key].attr.expr_span.clone(),
                        format!("`{key}` must not be empty"),
                    );
                }
                match key {
                    attr::SERVICE_COMMAND => h.service_command = list,
                    attr::UNINSTALL_COMMAND => h.uninstall_command = list,
                    _ => h.agent_uninstall_command = list,
                }
            }
        }
        h
    }

    pub(super) fn build_backend(&mut self, b: &RawBlock, ctx: &Context) -> Option<Backend> {
        let v = self.eval_block(b, ctx);
        match b.label() {
            "local" => {
                for k in [
                    attr::ENDPOINTS,
                    attr::PREFIX,
                    attr::CA_FILE,
                    attr::CERT_FILE,
                    attr::KEY_FILE,
                ] {
                    if let Some(x) = v.get(k) {
                        self.err(
                            b.file,
                            x.attr.key_span.clone(),
                            format!("`{k}` is not an attribute of the local backend (only `path`)"),
                        );
                    }
                }
                Some(Backend::Local {
                    path: str_of(&v, attr::PATH).map(PathBuf::from),
                })
            }
            "etcd" => {
                if let Some(x) = v.get(attr::PATH) {
                    self.err(
                        b.file,
                        x.attr.key_span.clone(),
                        "`path` is not an attribute of the etcd backend",
                    );
                }
                let endpoints = list_of(&v, attr::ENDPOINTS).unwrap_or_default();
                if endpoints.is_empty() {
                    self.err(
                        b.file,
                        b.ident_span.clone(),
                        "the etcd backend needs `endpoints`",
                    );
                }
                Some(Backend::Etcd {
                    endpoints,
                    prefix: str_of(&v, attr::PREFIX).unwrap_or_else(|| "k3splan/".into()),
                    ca_file: str_of(&v, attr::CA_FILE).map(PathBuf::from),
                    cert_file: str_of(&v, attr::CERT_FILE).map(PathBuf::from),
                    key_file: str_of(&v, attr::KEY_FILE).map(PathBuf::from),
                })
            }
            other => {
                let msg = unknown_choice("backend", other, &["local", "etcd"]);
                self.err(b.file, b.label_span(), msg);
                None
            }
        }
    }
}

pub(super) fn str_of(v: &Evaluated, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.value.as_str().map(str::to_string))
}

pub(super) fn bool_of(v: &Evaluated, k: &str) -> Option<bool> {
    v.get(k).and_then(|x| x.value.as_bool())
}

pub(super) fn int_of(v: &Evaluated, k: &str) -> Option<i64> {
    v.get(k).and_then(|x| x.value.as_i64())
}

pub(super) fn list_of(v: &Evaluated, k: &str) -> Option<Vec<String>> {
    v.get(k).and_then(|x| {
        x.value.as_array().map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
    })
}

pub(super) fn secret_of(v: &Evaluated, k: &str) -> Option<Secret> {
    let packed = str_of(v, k)?;
    Some(match packed.split_once('\u{0}') {
        Some((src, val)) => Secret::new(src, Some(val.to_string())),
        None => Secret::new(packed, None),
    })
}
