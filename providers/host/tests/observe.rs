//! Observing real sshd hosts: facts, unreachable hosts, host-key policy.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k3splan_host::{
    ConfigFile, HostError, HostObservation, HostPool, HostSession, ManifestFile, ServiceState,
    SshSettings, UnreachableKind, keepalived::KeepalivedSpec, render_manifest,
};
use k3splan_testkit_caps::sshd;
use k3splan_testkit_sshd::{BlackHole, SshdFleet};

k3splan_testkit_caps::main! {
    observe_three_hosts_with_different_config_files needs [sshd],
    raw_files_come_back_byte_exact_in_the_observe_round_and_never_serialize needs [sshd],
    stopped_and_black_holed_hosts_are_unreachable_while_others_answer needs [sshd],
    host_keys_unknown_changed_and_accept_new needs [sshd],
    wrong_user_key_is_an_auth_error_and_connections_are_reused needs [sshd],
    authenticates_with_an_ssh_agent_and_no_key_file needs [sshd],
}

const TOKEN: &str = "K10secret-token-value::server:abcdef";

fn manifest(priority: u8, state: &str) -> String {
    render_manifest(&KeepalivedSpec {
        image: "osixia/keepalived:2.0.20".into(),
        interface: "eth0".into(),
        virtual_ip: "192.168.0.66".into(),
        router_id: 66,
        priority,
        state: state.into(),
        unicast_peers: vec![],
        password: Some("vrrp-pass-xyz".into()),
    })
}

fn observe_three_hosts_with_different_config_files() {
    let fleet = SshdFleet::start(&["srv-a", "srv-b", "agt-c"]).unwrap();
    let [a, b, c] = &fleet.hosts[..] else {
        unreachable!()
    };
    // a: the first server, cluster-init, primary VIP holder, running.
    install_standins(a);
    a.write(
        "/etc/rancher/k3s/config.yaml",
        format!(
            "cluster-init: true\ntoken: \"{TOKEN}\"\nnode-name: srv-a\nnode-label:\n  - role=db\n  - zone=a\ntls-san: [192.168.0.66]\n"
        ),
    )
    .unwrap();
    a.write(MANIFEST, manifest(100, "MASTER")).unwrap();
    a.write("/var/lib/rancher/svc/.keep", "").unwrap();
    // b: control-plane-only server joining through a (seed 001 shape), backup VIP.
    install_standins(b);
    b.write(
        "/etc/rancher/k3s/config.yaml",
        format!(
            "server: https://10.0.0.1:6443\ntoken: {TOKEN}\ndisable-etcd: true\nnode-taint: \"CriticalAddonsOnly=true:NoExecute\"\n"
        ),
    )
    .unwrap();
    b.write(MANIFEST, manifest(90, "BACKUP")).unwrap();
    // c: no k3s at all, no config, no manifest, but a stale etcd data dir (seed 002).
    c.write(
        "/var/lib/rancher/k3s/server/db/etcd/name",
        "old-host-1a2b3c4d\n",
    )
    .unwrap();
    c.write(
        "/var/lib/rancher/k3s/server/db/etcd/config",
        "name: old-host-1a2b3c4d\ninitial-advertise-peer-urls: https://10.0.0.9:2380\ninitial-cluster: old-host-1a2b3c4d=https://10.0.0.9:2380,srv-a-11111111=https://10.0.0.1:2380\ninitial-cluster-state: existing\n",
    )
    .unwrap();
    c.write("/var/lib/rancher/k3s/server/db/etcd/member/snap/db", "x")
        .unwrap();
    c.write("/var/lib/rancher/k3s/server/db/etcd/tombstone", "")
        .unwrap();

    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    // a's server unit is running.
    rt.block_on(async {
        let s = pool.session("srv-a").await.unwrap();
        s.service(&layout(), "k3s", k3splan_host::ServiceAction::Start)
            .await
            .unwrap();
    });
    let obs = rt.block_on(pool.observe_all(&spec()));
    assert_eq!(obs.len(), 3);

    let fa = obs["srv-a"].facts().expect("srv-a reachable");
    assert_eq!(fa.hostname, "srv-a");
    // The OS and kernel read with shell builtins from /etc/os-release and /proc (issue 20:
    // fewer processes per observe) say what `sed` on os-release and `uname -sr` say.
    let pretty = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        });
    assert_eq!(fa.os, pretty);
    let uname = std::process::Command::new("uname")
        .arg("-sr")
        .output()
        .unwrap();
    assert_eq!(
        fa.kernel.as_deref(),
        Some(String::from_utf8_lossy(&uname.stdout).trim())
    );
    assert!(fa.k3s_binary.present);
    assert_eq!(fa.k3s_binary.version.as_deref(), Some("v1.28.5+k3s1"));
    assert_eq!(fa.server_service, ServiceState::Active);
    assert_eq!(fa.agent_service, ServiceState::Inactive);
    let ConfigFile::Present(ca) = &fa.config else {
        panic!("config of a: {:?}", fa.config)
    };
    assert!(ca.cluster_init);
    assert!(ca.token_present);
    assert_eq!(ca.server, None);
    assert_eq!(ca.node_name.as_deref(), Some("srv-a"));
    assert_eq!(ca.node_labels, vec!["role=db", "zone=a"]);
    assert_eq!(ca.tls_san, vec!["192.168.0.66"]);
    let ManifestFile::Present(ka) = &fa.keepalived else {
        panic!("manifest of a: {:?}", fa.keepalived)
    };
    assert_eq!(ka.priority, Some(100));
    assert_eq!(ka.state.as_deref(), Some("MASTER"));
    assert_eq!(ka.virtual_ips, vec!["192.168.0.66"]);
    assert_eq!(ka.router_id, Some(66));
    assert_eq!(ka.interface.as_deref(), Some("eth0"));
    assert!(ka.password_present);
    assert!(!fa.etcd_data.exists);
    let disk = fa.disk.as_ref().expect("disk space");
    assert!(disk.available_bytes > 0 && disk.total_bytes >= disk.available_bytes);

    let fb = obs["srv-b"].facts().expect("srv-b reachable");
    assert_eq!(fb.hostname, "srv-b");
    assert_eq!(fb.server_service, ServiceState::Inactive);
    let ConfigFile::Present(cb) = &fb.config else {
        panic!("config of b: {:?}", fb.config)
    };
    assert_eq!(cb.server.as_deref(), Some("https://10.0.0.1:6443"));
    assert!(!cb.cluster_init);
    assert!(cb.disable_etcd);
    assert!(!cb.disable_apiserver);
    assert_eq!(cb.node_taints, vec!["CriticalAddonsOnly=true:NoExecute"]);
    let ManifestFile::Present(kb) = &fb.keepalived else {
        panic!("manifest of b: {:?}", fb.keepalived)
    };
    assert_eq!(kb.priority, Some(90));
    assert_eq!(kb.state.as_deref(), Some("BACKUP"));

    let fc = obs["agt-c"].facts().expect("agt-c reachable");
    assert_eq!(fc.hostname, "agt-c");
    assert!(!fc.k3s_binary.present);
    assert_eq!(fc.k3s_binary.version, None);
    assert_eq!(fc.config, ConfigFile::Absent);
    assert_eq!(fc.keepalived, ManifestFile::Absent);
    // The service manager stand-in is not installed on c: state unknown, not "inactive".
    assert!(matches!(fc.server_service, ServiceState::Unknown(_)));
    let e = &fc.etcd_data;
    assert!(e.exists && e.has_member_dir && e.tombstone, "{e:?}");
    assert_eq!(e.member_name.as_deref(), Some("old-host-1a2b3c4d"));
    assert_eq!(e.peer_urls.as_deref(), Some("https://10.0.0.9:2380"));
    assert_eq!(e.initial_cluster_state.as_deref(), Some("existing"));
    assert!(
        e.initial_cluster
            .as_deref()
            .unwrap()
            .contains("srv-a-11111111")
    );

    // Secrets never leave the host: not in the facts, not in their JSON.
    let json = serde_json::to_string(&obs).unwrap();
    assert!(!json.contains("secret-token"), "token leaked: {json}");
    assert!(!json.contains("vrrp-pass"), "VRRP password leaked: {json}");
    assert!(!format!("{obs:?}").contains("secret-token"));
}

/// `plan` shows and rewrites config.yaml and the keepalived manifest from the text read in the
/// observe round (no second round trip per host): the bytes must be exact, whatever the file
/// holds, and the secrets they carry must not reach the facts' Debug or JSON.
fn raw_files_come_back_byte_exact_in_the_observe_round_and_never_serialize() {
    let fleet = SshdFleet::start(&["raw-a", "raw-b"]).unwrap();
    let [a, b] = &fleet.hosts[..] else {
        unreachable!()
    };
    // No trailing newline, CRLF, a tab, quotes, a non-UTF-8 byte and a line that looks like
    // the script's section marker.
    let mut cfg = format!(
        "token: \"{TOKEN}\"\r\nserver: https://10.0.0.1:6443\n\tnode-label: [\"a=b\"]\n@@k3splan-0@@ end\n"
    )
    .into_bytes();
    cfg.extend_from_slice(&[0xff, b'x']);
    a.write("/etc/rancher/k3s/config.yaml", cfg.clone())
        .unwrap();
    a.write(MANIFEST, manifest(100, "MASTER")).unwrap();
    // b: an empty config, no manifest.
    b.write("/etc/rancher/k3s/config.yaml", "").unwrap();

    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    let mut with_raw = spec();
    with_raw.raw_files = true;
    let obs = rt.block_on(pool.observe_all(&with_raw));
    let fa = obs["raw-a"]
        .facts()
        .unwrap_or_else(|| panic!("raw-a: {:?}", obs["raw-a"]));
    assert_eq!(
        fa.raw_config.as_ref().expect("config text").expose(),
        &cfg[..]
    );
    assert_eq!(
        fa.raw_keepalived.as_ref().expect("manifest text").expose(),
        manifest(100, "MASTER").as_bytes()
    );
    let fb = obs["raw-b"].facts().expect("raw-b reachable");
    assert_eq!(
        fb.raw_config.as_ref().expect("empty config text").expose(),
        b""
    );
    assert_eq!(fb.raw_keepalived, None);
    let json = serde_json::to_string(&obs).unwrap();
    let debug = format!("{obs:?}");
    for secret in ["secret-token", "vrrp-pass"] {
        assert!(!json.contains(secret), "{secret} in JSON: {json}");
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
    }

    // Without `raw_files`, the bytes are not sent at all.
    let obs = rt.block_on(pool.observe_all(&spec()));
    assert_eq!(obs["raw-a"].facts().unwrap().raw_config, None);
    assert_eq!(obs["raw-a"].facts().unwrap().raw_keepalived, None);
}

fn stopped_and_black_holed_hosts_are_unreachable_while_others_answer() {
    let fleet = SshdFleet::start(&["up-1", "down-2", "up-3"]).unwrap();
    fleet.hosts[1].stop();
    let hole = BlackHole::start().unwrap();
    let connect_timeout = Duration::from_secs(3);
    let mut hosts: Vec<(String, SshSettings)> = fleet
        .hosts
        .iter()
        .map(|h| {
            let mut s = settings(h, &fleet.client);
            s.connect_timeout = connect_timeout;
            (h.hostname().to_string(), s)
        })
        .collect();
    let mut wedged = settings(&fleet.hosts[0], &fleet.client);
    wedged.address = hole.addr().ip().to_string();
    wedged.port = hole.addr().port();
    wedged.connect_timeout = connect_timeout;
    hosts.push(("wedged-4".into(), wedged));
    let pool = HostPool::new(hosts, 0);
    let rt = rt();
    let t0 = Instant::now();
    let obs = rt.block_on(pool.observe_all(&spec()));
    let elapsed = t0.elapsed();

    assert_eq!(obs["up-1"].facts().unwrap().hostname, "up-1");
    assert_eq!(obs["up-3"].facts().unwrap().hostname, "up-3");
    match &obs["down-2"] {
        HostObservation::Unreachable { reason, kind } => {
            assert_eq!(*kind, UnreachableKind::Network, "{reason}");
            assert!(reason.contains("down-2"), "{reason}");
            assert!(
                reason.contains(&fleet.hosts[1].addr().to_string()),
                "{reason}"
            );
        }
        other => panic!("down-2 should be unreachable: {other:?}"),
    }
    match &obs["wedged-4"] {
        HostObservation::Unreachable { reason, kind } => {
            assert_eq!(*kind, UnreachableKind::Timeout, "{reason}");
            assert!(reason.contains("timed out after 3s"), "{reason}");
        }
        other => panic!("wedged-4 should be unreachable: {other:?}"),
    }
    // Hosts are observed in parallel: the wedged host costs one connect timeout, not more
    // (generous bound for a loaded machine).
    assert!(
        elapsed < connect_timeout + Duration::from_secs(25),
        "{elapsed:?}"
    );

    // The host comes back: the next observation reaches it (failures are not cached).
    fleet.hosts[1].start().unwrap();
    let again = rt.block_on(pool.observe("down-2", &spec()));
    assert_eq!(again.facts().expect("back up").hostname, "down-2");
}

fn host_keys_unknown_changed_and_accept_new() {
    let fleet = SshdFleet::start(&["keyed"]).unwrap();
    let h = &fleet.hosts[0];
    let rt = rt();
    let good = settings(h, &fleet.client);

    // Known key: connects.
    let s = rt.block_on(HostSession::connect("keyed", &good)).unwrap();
    rt.block_on(s.close());

    // Unknown key (empty known_hosts): refused, naming host and fingerprint.
    let dir = tempfile::tempdir().unwrap();
    let empty_kh = dir.path().join("known_hosts");
    std::fs::write(&empty_kh, "").unwrap();
    let mut unknown = good.clone();
    unknown.known_hosts_file = empty_kh.clone();
    let err = rt
        .block_on(HostSession::connect("keyed", &unknown))
        .unwrap_err();
    assert!(matches!(err, HostError::UnknownHostKey { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("keyed") && msg.contains("SHA256:"), "{msg}");
    assert!(
        msg.contains(&format!("[{}]:{}", h.addr().ip(), h.addr().port())),
        "{msg}"
    );

    // accept-new: trusted and recorded, then found again without the flag.
    unknown.accept_new_host_keys = true;
    rt.block_on(HostSession::connect("keyed", &unknown))
        .unwrap();
    let recorded = std::fs::read_to_string(&empty_kh).unwrap();
    let host_key = h.host_public_key().unwrap();
    let b64 = host_key.split_whitespace().nth(1).unwrap();
    assert!(recorded.contains(b64), "{recorded}");
    unknown.accept_new_host_keys = false;
    rt.block_on(HostSession::connect("keyed", &unknown))
        .unwrap();

    // Changed key: refused, also with accept-new, and observe reports it as host-key trouble.
    h.rotate_host_key().unwrap();
    let err = rt
        .block_on(HostSession::connect("keyed", &good))
        .unwrap_err();
    assert!(
        matches!(err, HostError::HostKeyChanged { line: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HOST KEY CHANGED"), "{err}");
    // issue 13: the message names the expected (recorded) and the offered fingerprints,
    // and they differ.
    let msg = err.to_string();
    let fps: Vec<&str> = msg
        .split("SHA256:")
        .skip(1)
        .map(|r| {
            r.split(|c: char| c.is_whitespace() || c == ')' || c == ',')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(fps.len(), 2, "expected and offered fingerprints: {msg}");
    assert_ne!(fps[0], fps[1], "{msg}");
    assert!(msg.contains("expected"), "{msg}");
    unknown.accept_new_host_keys = true;
    let err = rt
        .block_on(HostSession::connect("keyed", &unknown))
        .unwrap_err();
    assert!(matches!(err, HostError::HostKeyChanged { .. }), "{err}");
    let pool = HostPool::new([("keyed".to_string(), good)], 0);
    match rt.block_on(pool.observe("keyed", &spec())) {
        HostObservation::Unreachable { kind, .. } => {
            assert_eq!(kind, UnreachableKind::HostKeyChanged)
        }
        other => panic!("expected unreachable: {other:?}"),
    }
}

fn wrong_user_key_is_an_auth_error_and_connections_are_reused() {
    let fleet = SshdFleet::start(&["auth"]).unwrap();
    let h = &fleet.hosts[0];
    let rt = rt();
    let other = k3splan_testkit_sshd::ClientKeys::generate().unwrap();
    let mut s = settings(h, &fleet.client);
    s.private_key_file = Some(other.private_key());
    let err = rt.block_on(HostSession::connect("auth", &s)).unwrap_err();
    assert!(matches!(err, HostError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("auth"), "{err}");

    let pool = pool(&fleet.hosts, &fleet.client);
    let (a, b) = rt.block_on(async {
        (
            pool.session("auth").await.unwrap(),
            pool.session("auth").await.unwrap(),
        )
    });
    assert!(Arc::ptr_eq(&a, &b), "second call must reuse the connection");
    // After the host dies and comes back, the closed connection is replaced.
    h.stop();
    h.start().unwrap();
    let obs = rt.block_on(pool.observe("auth", &spec()));
    assert_eq!(obs.facts().expect("reconnected").hostname, "auth");
}

/// Kills the ssh-agent started by a test.
struct Agent(std::process::Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn authenticates_with_an_ssh_agent_and_no_key_file() {
    let fleet = SshdFleet::start(&["agented"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = Agent(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = rt();
    let mut s = settings(&fleet.hosts[0], &fleet.client);
    s.private_key_file = None;
    s.agent_socket = Some(sock.clone());
    // Empty agent: authentication fails, saying what was tried.
    let err = rt
        .block_on(HostSession::connect("agented", &s))
        .unwrap_err();
    assert!(matches!(err, HostError::AuthFailed { .. }), "{err}");
    let added = std::process::Command::new("ssh-add")
        .arg(fleet.client.private_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let session = rt.block_on(HostSession::connect("agented", &s)).unwrap();
    let facts = rt.block_on(session.observe(&spec())).unwrap();
    assert_eq!(facts.hostname, "agented");
}
