//! Unit tests of the loader.

use super::*;

fn load_env(src: &str, env: &[(&str, &str)]) -> Loaded {
    let env = EnvSource::Map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    load_sources_with(
        &MemFs::new(),
        vec![SourceFile::new("t.hcl", src)],
        &LoadOptions {
            base_dir: None,
            env,
        },
    )
}

fn ok(src: &str) -> Topology {
    let l = load_env(src, &[("K3S_TOKEN", "tok")]);
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    l.topology.unwrap()
}

fn errors(src: &str) -> Vec<String> {
    let l = load_env(src, &[("K3S_TOKEN", "tok")]);
    assert!(l.topology.is_none() || !l.diagnostics.has_errors());
    l.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect()
}

const CLUSTER: &str = "cluster \"c\" {\n  token = env(\"K3S_TOKEN\")\n}\n";

fn node(name: &str, addr: &str, roles: &str, extra: &str) -> String {
    format!("node \"{name}\" {{\n  address = \"{addr}\"\n  roles = [{roles}]\n{extra}}}\n")
}

#[test]
fn defaults_are_applied() {
    let t = ok(&format!(
        "{CLUSTER}{}",
        node("a", "10.0.0.1", "\"server\"", "")
    ));
    assert_eq!(t.cluster.data_dir, DEFAULT_DATA_DIR);
    assert!(t.cluster.etcd.snapshot_before_apply);
    assert_eq!(t.cluster.ssh.user, "root");
    assert_eq!(t.cluster.ssh.port, 22);
    assert_eq!(t.nodes[0].ssh, t.cluster.ssh);
    assert!(!t.nodes[0].replace && !t.nodes[0].primary);
}

#[test]
fn node_ssh_overrides_merge_with_cluster_defaults() {
    let src = format!(
        "cluster \"c\" {{\n  ssh {{\n    user = \"ops\"\n    port = 2222\n  }}\n}}\n{}",
        node(
            "a",
            "10.0.0.1",
            "\"server\"",
            "  ssh {\n    port = 22022\n  }\n"
        )
    );
    let t = ok(&src);
    assert_eq!(t.nodes[0].ssh.user, "ops");
    assert_eq!(t.nodes[0].ssh.port, 22022);
    assert_eq!(t.cluster.ssh.port, 2222);
}

#[test]
fn token_from_env_is_a_secret_with_its_source() {
    let t = ok(&format!(
        "{CLUSTER}{}",
        node("a", "10.0.0.1", "\"server\"", "")
    ));
    let tok = t.cluster.token.clone().unwrap();
    assert_eq!(tok.source(), "env(\"K3S_TOKEN\")");
    assert_eq!(tok.expose(), Some("tok"));
    assert!(!format!("{t:?}").contains("tok\""));
}

#[test]
fn unset_env_secret_is_accepted_at_validation_but_has_no_value() {
    let l = load_env(
        &format!("{CLUSTER}{}", node("a", "10.0.0.1", "\"server\"", "")),
        &[],
    );
    assert!(l.diagnostics.is_empty(), "{}", l.diagnostics);
    assert_eq!(l.topology.unwrap().cluster.token.unwrap().expose(), None);
}

#[test]
fn literal_token_is_a_warning_not_an_error() {
    let l = load_env(
        &format!(
            "cluster \"c\" {{\n  token = \"abc\"\n}}\n{}",
            node("a", "10.0.0.1", "\"server\"", "")
        ),
        &[],
    );
    assert_eq!(l.diagnostics.warnings(), 1);
    assert!(l.topology.is_some());
}

#[test]
fn variables_locals_templates_and_env_override() {
    let src = format!(
        "variable \"net\" {{\n  default = \"10.9.0\"\n}}\nlocals {{\n  first = \"${{var.net}}.1\"\n  also = local.first\n}}\n{CLUSTER}node \"a\" {{\n  address = local.also\n  roles = [\"server\"]\n}}\n"
    );
    assert_eq!(ok(&src).nodes[0].address.to_string(), "10.9.0.1");
    let l = load_env(&src, &[("K3SPLAN_VAR_net", "10.7.0")]);
    assert_eq!(l.topology.unwrap().nodes[0].address.to_string(), "10.7.0.1");
}

#[test]
fn role_rules() {
    let t = ok(&format!(
        "{CLUSTER}{}{}{}",
        node("e", "10.0.0.1", "\"etcd\"", ""),
        node("cp", "10.0.0.2", "\"control-plane\"", ""),
        node("w", "10.0.0.3", "\"agent\"", "")
    ));
    assert_eq!(t.etcd_nodes().count(), 1);
    assert_eq!(t.server_nodes().count(), 2);
    let e = errors(&format!(
        "{CLUSTER}{}",
        node("a", "10.0.0.1", "\"agent\", \"server\"", "")
    ));
    assert!(
        e[0].contains("cannot be both \"agent\" and \"server\""),
        "{e:?}"
    );
    let e = errors(&format!(
        "{CLUSTER}{}",
        node("a", "10.0.0.1", "\"agent\"", "")
    ));
    assert_eq!(
        e,
        vec!["no node runs etcd: give at least one node the role \"server\" or \"etcd\""]
    );
}

#[test]
fn even_voter_count_is_a_warning() {
    let l = load_env(
        &format!(
            "{CLUSTER}{}{}",
            node("a", "10.0.0.1", "\"server\"", ""),
            node("b", "10.0.0.2", "\"server\"", "")
        ),
        &[],
    );
    assert!(!l.diagnostics.has_errors());
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.message.starts_with("2 etcd members"))
    );
}

/// Issue 13: `replace = true` replaced the node on every apply while it stayed in the
/// file. It is refused, pointing to the one-shot `-replace=node.NAME`; `replace = false`
/// is a deprecation warning. On main both were accepted silently.
#[test]
fn issue13_replace_attribute_is_refused_pointing_to_the_flag() {
    let l = load_env(
        &format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"server\"", "  replace = true\n")
        ),
        &[("K3S_TOKEN", "tok")],
    );
    let errs: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("-replace=node.a"), "{errs:?}");
    assert!(errs[0].contains("every apply"), "{errs:?}");
    let l = load_env(
        &format!(
            "{CLUSTER}{}",
            node("a", "10.0.0.1", "\"server\"", "  replace = false\n")
        ),
        &[("K3S_TOKEN", "tok")],
    );
    assert!(!l.diagnostics.has_errors());
    assert!(
        l.diagnostics
            .iter()
            .any(|d| !d.is_error() && d.message.contains("-replace=node.a")),
        "deprecation warning"
    );
    assert!(!l.topology.unwrap().nodes[0].replace);
}

#[test]
fn vip_priorities() {
    let src = format!(
        "cluster \"c\" {{\n  vip {{\n    address = \"10.0.0.100\"\n    interface = \"eth0\"\n    router_id = 5\n  }}\n}}\n{}{}{}",
        node("a", "10.0.0.1", "\"server\"", "  primary = true\n"),
        node("b", "10.0.0.2", "\"server\"", ""),
        node("c", "10.0.0.3", "\"server\"", "  vip_priority = 95\n")
    );
    let t = ok(&src);
    let p: Vec<Option<u8>> = t.nodes.iter().map(|n| t.vip_priority(n)).collect();
    assert_eq!(p, vec![Some(100), Some(90), Some(95)]);
    assert_eq!(
        t.cluster.vip.as_ref().unwrap().manifest_path,
        DEFAULT_VIP_MANIFEST
    );
    let bad = src.replace("vip_priority = 95", "vip_priority = 120");
    let e = errors(&bad);
    assert!(
        e[0].contains("has VIP priority 120, not below the primary \"a\" (100)"),
        "{e:?}"
    );
}

#[test]
fn storage_policies() {
    let src = format!(
        "{CLUSTER}{}storage \"ns/db\" {{\n  kind = \"StatefulSet\"\n  on_node_loss = \"rebind\"\n  prefer_nodes = [\"a\"]\n}}\nstorage \"ns/vm\" {{\n  kind = \"Deployment\"\n}}\n",
        node("a", "10.0.0.1", "\"server\"", "")
    );
    let t = ok(&src);
    assert_eq!(t.storage[0].on_node_loss, OnNodeLoss::Rebind);
    assert_eq!(t.storage[0].key(), "ns/db");
    assert_eq!(
        t.storage[1].on_node_loss,
        OnNodeLoss::Keep,
        "the default never deletes"
    );
}

#[test]
fn addon_defaults_to_kube_system() {
    let t = ok(&format!(
        "{CLUSTER}{}addon \"coredns\" {{\n  replicas = 3\n  spread = \"kubernetes.io/hostname\"\n}}\n",
        node("a", "10.0.0.1", "\"server\"", "")
    ));
    assert_eq!(t.addons[0].namespace, "kube-system");
    assert_eq!(t.addons[0].replicas, 3);
}

#[test]
fn backend_blocks() {
    let t = ok(&format!(
        "{CLUSTER}{}backend \"etcd\" {{\n  endpoints = [\"https://10.0.0.1:2379\"]\n}}\n",
        node("a", "10.0.0.1", "\"server\"", "")
    ));
    assert!(matches!(t.backend, Some(Backend::Etcd { ref prefix, .. }) if prefix == "k3splan/"));
    let e = errors(&format!(
        "{CLUSTER}{}backend \"etcd\" {{\n}}\n",
        node("a", "10.0.0.1", "\"server\"", "")
    ));
    assert_eq!(e, vec!["the etcd backend needs `endpoints`"]);
}

#[test]
fn errors_in_several_files_are_all_reported_in_file_order() {
    let files = vec![
        SourceFile::new(
            "b.hcl",
            "node \"x\" {\n  address = \"1.2.3\"\n  roles = [\"server\"]\n}\n",
        ),
        SourceFile::new("a.hcl", "cluster \"c\" {\n  bogus = 1\n}\n"),
    ];
    let l = load_sources_with(&MemFs::new(), files, &LoadOptions::default());
    let locs: Vec<String> = l.diagnostics.iter().map(|d| d.location()).collect();
    assert_eq!(locs, vec!["a.hcl:2:3", "b.hcl:2:13"]);
}

#[test]
fn https_urls_and_versions() {
    assert!(check_https_url("https://10.0.0.1:6443").is_ok());
    assert!(check_https_url("https://[fd00::1]:6443").is_ok());
    assert!(check_https_url("https://vip.example").is_ok());
    assert!(check_https_url("http://x:1").is_err());
    assert!(check_https_url("https://x:0").is_err());
    assert!(check_https_url("https://:6443").is_err());
    assert!(is_k3s_version("v1.28.5+k3s1"));
    assert!(!is_k3s_version("1.28.5"));
}

#[test]
fn taints_parse() {
    let t = parse_taint("dedicated=db:NoSchedule").unwrap();
    assert_eq!(t.to_string(), "dedicated=db:NoSchedule");
    assert!(parse_taint("k:Nope").is_err());
}

// -- the loader reads only through the sources it is given ----------------------------------

const NODE: &str = "node \"s1\" {\n  address = \"10.0.0.1\"\n  roles   = [\"server\"]\n}\n";

fn map_env(vars: &[(&str, &str)]) -> EnvSource {
    EnvSource::Map(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Loads `cluster` + one node with `fs` and `env`, files relative to `/cfg`.
fn load_with(fs: &MemFs, env: EnvSource, cluster_attrs: &str) -> Loaded {
    let src = format!("cluster \"lab\" {{\n{cluster_attrs}\n}}\n{NODE}");
    let opts = LoadOptions {
        base_dir: Some(PathBuf::from("/cfg")),
        env,
    };
    load_sources_with(fs, vec![SourceFile::new("t.hcl", src)], &opts)
}

#[test]
fn file_reads_the_given_file_system_relative_to_the_base_dir() {
    let fs = MemFs::new().with_file("/cfg/secrets/token", "s3cret\n");
    let l = load_with(&fs, map_env(&[]), "  token = file(\"secrets/token\")");
    let t = l.topology.expect("loads");
    assert_eq!(t.cluster.token.unwrap().expose(), Some("s3cret"));
}

#[test]
fn home_comes_from_the_given_environment_never_the_process() {
    // The process HOME is set (any test runner has one); the map has none.
    assert!(
        std::env::var_os("HOME").is_some(),
        "the test needs a process HOME"
    );
    let home = std::env::var("HOME").unwrap();
    let fs = MemFs::new()
        .with_file(format!("{home}/k3s-token"), "from-process-home")
        .with_file("/home/map/k3s-token", "from-map-home");
    let l = load_with(&fs, map_env(&[]), "  token = file(\"~/k3s-token\")");
    let errors: Vec<String> = l.diagnostics.iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        errors,
        [
            "file(): cannot read \"~/k3s-token\" (relative to the configuration directory): ~/k3s-token: not in the in-memory file system"
        ],
        "HOME unset in the map: the path stays as written"
    );
    let l = load_with(
        &fs,
        map_env(&[("HOME", "/home/map")]),
        "  token = file(\"~/k3s-token\")",
    );
    let t = l.topology.expect("loads");
    assert_eq!(t.cluster.token.unwrap().expose(), Some("from-map-home"));
}

#[test]
fn env_and_variables_come_from_the_given_environment_never_the_process() {
    // PATH is set in every process environment, never in this map.
    assert!(std::env::var_os("PATH").is_some());
    let l = load_with(&MemFs::new(), map_env(&[]), "  kubeconfig = env(\"PATH\")");
    assert!(l.diagnostics.has_errors());
    assert!(
        l.diagnostics
            .to_string()
            .contains("environment variable PATH is not set")
    );
    let l = load_with(
        &MemFs::new(),
        map_env(&[("PATH", "/kube/config")]),
        "  kubeconfig = env(\"PATH\")",
    );
    let t = l.topology.expect("loads");
    assert_eq!(t.cluster.kubeconfig, Some(PathBuf::from("/kube/config")));
}

#[test]
fn env_and_file_results_with_quotes_and_interpolations_are_taken_literally() {
    let fs = MemFs::new().with_file("/cfg/v", "a\"b${c}%{d}");
    let l = load_with(
        &fs,
        map_env(&[("X", "x\"y${z}")]),
        "  install_command = \"${env(\"X\")}|${file(\"v\")}\"",
    );
    let t = l.topology.expect("loads");
    assert_eq!(
        t.cluster.install_command.as_deref(),
        Some("x\"y${z}|a\"b${c}%{d}")
    );
}

#[test]
fn load_path_reads_only_the_given_file_system() {
    let fs = MemFs::new()
        .with_file("/cfg/a.hcl", "cluster \"lab\" {}\n")
        .with_file("/cfg/b.hcl", NODE)
        .with_file("/cfg/notes.txt", "not HCL");
    let l = load_path_with(&fs, Path::new("/cfg"), map_env(&[])).expect("reads");
    assert!(!l.diagnostics.has_errors(), "{}", l.diagnostics);
    let names: Vec<_> = l.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        names,
        [PathBuf::from("/cfg/a.hcl"), PathBuf::from("/cfg/b.hcl")]
    );
    let err = load_path_with(&fs, Path::new("/etc"), map_env(&[])).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}

/// Every attribute the schema accepts is read by the loader through its [`attr`] constant
/// (`variable`'s `description` and `sensitive` are documentation: accepted, never read).
#[test]
fn every_schema_attribute_is_consumed_by_the_loader() {
    use crate::config::schema;
    let loader = [
        include_str!("build.rs"),
        include_str!("check_block.rs"),
        include_str!("cluster.rs"),
        include_str!("node.rs"),
        include_str!("k3s_config.rs"),
        include_str!("rules.rs"),
        include_str!("evaluate.rs"),
        include_str!("typecheck.rs"),
    ]
    .concat();
    let documentation_only = [schema::attr::DESCRIPTION, schema::attr::SENSITIVE];
    let mut unread = Vec::new();
    for b in schema::ROOT.blocks.iter().chain(schema::CLUSTER.blocks) {
        for a in b.attrs {
            let constant = format!("attr::{}", a.name.to_uppercase());
            if !documentation_only.contains(&a.name) && !loader.contains(&constant) {
                unread.push(format!("{}.{}", b.ident, a.name));
            }
        }
    }
    assert!(
        unread.is_empty(),
        "schema attributes the loader never reads: {unread:?}"
    );
}
