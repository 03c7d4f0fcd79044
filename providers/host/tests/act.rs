//! Changing real sshd hosts: atomic writes, hostile values, services, etcd data dir, snapshots.

mod common;

use common::*;
use k3splan_host::{
    FileWrite, HostError, InstallRequest, K3sLayout, K3sRole, Secret, ServiceAction,
    ServiceManager, UnitStatus,
};
use k3splan_testkit_caps::sshd;
use k3splan_testkit_sshd::SshdFleet;

k3splan_testkit_caps::main! {
    atomic_write_keeps_a_backup_and_returns_the_diff needs [sshd],
    hostile_values_reach_the_host_verbatim_through_every_builder needs [sshd],
    stale_etcd_data_is_detected_and_moved_aside_only_when_stopped needs [sshd],
    service_control_and_uninstall_show_in_observe needs [sshd],
}

const CONFIG: &str = "/etc/rancher/k3s/config.yaml";

fn atomic_write_keeps_a_backup_and_returns_the_diff() {
    let fleet = SshdFleet::start(&["writer"]).unwrap();
    let h = &fleet.hosts[0];
    let old = "server: https://10.0.0.1:6443\ntoken: old-token-123\nnode-name: writer\n";
    h.write(CONFIG, old).unwrap();
    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    let s = rt.block_on(pool.session("writer")).unwrap();

    let new = "server: https://192.168.0.66:6443\ntoken: new-token-456\nnode-name: writer\n";
    let mut w = FileWrite::new(CONFIG, new);
    w.mode = 0o600;
    w.secrets = vec![Secret::new("old-token-123"), Secret::new("new-token-456")];

    let preview = rt.block_on(s.preview_write(&w)).unwrap();
    assert_eq!(
        std::fs::read_to_string(h.path(CONFIG)).unwrap(),
        old,
        "preview wrote"
    );

    let out = rt.block_on(s.write_file(&w)).unwrap();
    assert!(out.changed);
    assert_eq!(out.diff, preview);
    let expected_diff = "--- a/etc/rancher/k3s/config.yaml\n+++ b/etc/rancher/k3s/config.yaml\n@@ -1,3 +1,3 @@\n-server: https://10.0.0.1:6443\n-token: <redacted>\n+server: https://192.168.0.66:6443\n+token: <redacted>\n node-name: writer\n";
    assert_eq!(out.diff, expected_diff);

    // New content and mode in place, old content in the backup, no temp file left.
    use std::os::unix::fs::PermissionsExt;
    let target = h.path(CONFIG);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), new);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let backup = out.backup.clone().expect("backup path");
    assert!(
        backup.starts_with("/etc/rancher/k3s/config.yaml.k3splan-backup-"),
        "{backup}"
    );
    assert_eq!(std::fs::read_to_string(h.path(&backup)).unwrap(), old);
    let names: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only the file and its backup: {names:?}");
    assert!(!names.iter().any(|n| n.contains("k3splan-tmp")));

    // Same content again: nothing written, no second backup.
    let again = rt.block_on(s.write_file(&w)).unwrap();
    assert!(!again.changed);
    assert_eq!(again.diff, "");
    assert_eq!(again.backup, None);
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        2
    );

    // A second change within the same second gets a distinct backup.
    let third = rt
        .block_on(s.write_file(&FileWrite::new(CONFIG, "node-name: writer\n")))
        .unwrap();
    let b2 = third.backup.expect("second backup");
    assert_ne!(b2, backup);
    assert_eq!(std::fs::read_to_string(h.path(&b2)).unwrap(), new);

    // A new file: diff against /dev/null, no backup, parents created.
    let fresh = rt
        .block_on(s.write_file(&FileWrite::new(MANIFEST, "kind: Pod\n")))
        .unwrap();
    assert!(fresh.diff.starts_with("--- /dev/null\n"), "{}", fresh.diff);
    assert_eq!(fresh.backup, None);
    assert_eq!(
        std::fs::read_to_string(h.path(MANIFEST)).unwrap(),
        "kind: Pod\n"
    );
}

/// Values that a shell would interpret if they were not quoted.
const HOSTILE: &str = "it's \"q\" $(touch /var/lib/rancher/PWNED) `touch /var/lib/rancher/PWNED2` ; touch /var/lib/rancher/PWNED3 && echo $HOME\nsecond line\\n ${PATH} *";

fn hostile_values_reach_the_host_verbatim_through_every_builder() {
    let fleet = SshdFleet::start(&["hostile"]).unwrap();
    let h = &fleet.hosts[0];
    install_standins(h);
    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    let s = rt.block_on(pool.session("hostile")).unwrap();
    let pwned = || {
        ["PWNED", "PWNED2", "PWNED3"]
            .iter()
            .filter(|p| h.path(&format!("/var/lib/rancher/{p}")).exists())
            .count()
    };

    // 1. write_file: hostile path (directory and name), content, and owner arg.
    let dir = format!("/var/lib/rancher/d {HOSTILE}");
    let path = format!("{dir}/f;{HOSTILE}.yaml");
    let out = rt
        .block_on(s.write_file(&FileWrite::new(path.clone(), HOSTILE)))
        .unwrap();
    assert!(out.changed);
    assert_eq!(std::fs::read_to_string(h.path(&path)).unwrap(), HOSTILE);
    let again = rt
        .block_on(s.write_file(&FileWrite::new(path.clone(), "v2")))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(h.path(&again.backup.unwrap())).unwrap(),
        HOSTILE
    );

    // 2. installer: token, URL, version, extra variables arrive verbatim in the environment,
    //    and the token is on no command line.
    let inst_layout = K3sLayout {
        install_command: r#"printf '%s' "$K3S_TOKEN" > /var/lib/rancher/got-token
printf '%s' "$K3S_URL" > /var/lib/rancher/got-url
printf '%s' "$INSTALL_K3S_VERSION" > /var/lib/rancher/got-version
printf '%s' "$INSTALL_K3S_EXEC" > /var/lib/rancher/got-exec
printf '%s' "$EXTRA_VAR" > /var/lib/rancher/got-extra
ps -eo args > /var/lib/rancher/got-ps
tr '\0' ' ' < /proc/$$/cmdline > /var/lib/rancher/got-cmdline
printf 'installing with %s\n' "$K3S_TOKEN"
printf 'exec %s\n' "$INSTALL_K3S_EXEC"
"#
        .into(),
        ..layout()
    };
    let token = format!("K10{HOSTILE}::server:tok");
    let req = InstallRequest {
        role: K3sRole::Server,
        k3s_version: Some(format!("v1.28.5+k3s1{HOSTILE}")),
        server_url: Some(format!("https://10.0.0.1:6443/{HOSTILE}")),
        token: Some(Secret::new(token.clone())),
        extra_env: vec![("EXTRA_VAR".into(), Secret::new(HOSTILE))],
        exec_args: ["--disable", "traefik", "--token=arg-s3cret"]
            .map(String::from)
            .to_vec(),
    };
    let inst = rt.block_on(s.install_k3s(&inst_layout, &req)).unwrap();
    let got = |f: &str| std::fs::read_to_string(h.path(&format!("/var/lib/rancher/{f}"))).unwrap();
    assert_eq!(got("got-token"), token);
    assert_eq!(got("got-url"), format!("https://10.0.0.1:6443/{HOSTILE}"));
    assert_eq!(got("got-version"), format!("v1.28.5+k3s1{HOSTILE}"));
    assert_eq!(
        got("got-exec"),
        "server --disable traefik --token=arg-s3cret"
    );
    // The unit's arguments are passed; a token among them is redacted from the output.
    assert!(
        inst.output
            .contains("exec server --disable traefik --token=<redacted>")
            && !inst.output.contains("arg-s3cret"),
        "{}",
        inst.output
    );
    assert_eq!(got("got-extra"), HOSTILE);
    assert!(!got("got-ps").contains("K10it's"), "token visible in ps");
    assert_eq!(got("got-cmdline").trim(), "sh -s");
    assert!(
        inst.output.contains("installing with <redacted>"),
        "{}",
        inst.output
    );
    assert!(!inst.output.contains("K10"), "{}", inst.output);
    // A failing installer's error carries its stderr, redacted.
    let failing = K3sLayout {
        install_command: "printf 'bad token %s' \"$K3S_TOKEN\" >&2; exit 7".into(),
        ..layout()
    };
    let err = rt.block_on(s.install_k3s(&failing, &req)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("status 7") && msg.contains("hostile"), "{msg}");
    assert!(
        msg.contains("bad token <redacted>") && !msg.contains("K10"),
        "{msg}"
    );

    // An argument install.sh would split or unquote is refused before the installer runs.
    std::fs::remove_file(h.path("/var/lib/rancher/got-exec")).unwrap();
    let bad = InstallRequest {
        exec_args: vec!["--node-label".into(), "team=a b".into()],
        ..req.clone()
    };
    let msg = rt
        .block_on(s.install_k3s(&inst_layout, &bad))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("invalid INSTALL_K3S_EXEC: argument 2 of ExecStart contains a blank"),
        "{msg}"
    );
    assert!(!h.path("/var/lib/rancher/got-exec").exists());

    // 3. service commands: a hostile unit name is one argument, verbatim.
    rt.block_on(s.service(&inst_layout, HOSTILE, ServiceAction::Start))
        .unwrap();
    assert_eq!(got("svc/last-unit"), HOSTILE);
    assert!(
        rt.block_on(s.service_active(&inst_layout, HOSTILE))
            .unwrap()
    );
    rt.block_on(s.service(&inst_layout, HOSTILE, ServiceAction::Stop))
        .unwrap();
    assert!(
        !rt.block_on(s.service_active(&inst_layout, HOSTILE))
            .unwrap()
    );
    assert_eq!(
        rt.block_on(s.service_status(&inst_layout, "k3s")).unwrap(),
        UnitStatus::Inactive
    );
    // A unit waiting out RestartSec: not active, but not stopped either.
    rt.block_on(s.run(
        "mark k3s activating",
        &k3splan_host::quote::sh_command(&[
            "sh",
            "-c",
            "touch /var/lib/rancher/svc/activating-$(printf k3s | cksum | cut -d' ' -f1)",
        ]),
        b"",
    ))
    .unwrap();
    assert_eq!(
        rt.block_on(s.service_status(&inst_layout, "k3s")).unwrap(),
        UnitStatus::Activating
    );
    assert!(!rt.block_on(s.service_active(&inst_layout, "k3s")).unwrap());

    // 4. etcd snapshot and data-dir move with a hostile data dir and snapshot name.
    let data_dir = format!("/var/lib/rancher/dd {HOSTILE}");
    h.write(&format!("{data_dir}/server/db/etcd/name"), "x-1")
        .unwrap();
    let hostile_layout = K3sLayout {
        data_dir: data_dir.clone(),
        server_unit: HOSTILE.into(),
        ..inst_layout.clone()
    };
    let snap = rt
        .block_on(s.etcd_snapshot_save(&hostile_layout, Some("pre-apply")))
        .unwrap();
    assert_eq!(
        got("k3s-args"),
        format!("etcd-snapshot\nsave\n--data-dir\n{data_dir}\n--name\npre-apply\n")
    );
    assert!(
        snap.starts_with(&format!(
            "{data_dir}/server/db/snapshots/pre-apply-hostile-"
        )),
        "{snap}"
    );
    assert!(h.path(&snap).exists(), "{snap}");
    let moved = rt
        .block_on(s.move_etcd_data_aside(&hostile_layout))
        .unwrap();
    assert!(
        moved.starts_with(&format!("{data_dir}/server/db/etcd-backup-")),
        "{moved}"
    );
    assert!(h.path(&format!("{moved}/name")).exists());

    // 5. read_file of a hostile path.
    let f = rt.block_on(s.read_file(&path)).unwrap().unwrap();
    assert_eq!(f.contents, b"v2");

    assert_eq!(pwned(), 0, "a hostile value was executed by a shell");
}

fn stale_etcd_data_is_detected_and_moved_aside_only_when_stopped() {
    let fleet = SshdFleet::start(&["stale"]).unwrap();
    let h = &fleet.hosts[0];
    install_standins(h);
    let etcd = "/var/lib/rancher/k3s/server/db/etcd";
    h.write(&format!("{etcd}/name"), "stale-0123abcd\n")
        .unwrap();
    h.write(&format!("{etcd}/member/wal/0.wal"), "wal").unwrap();
    h.write("/var/lib/rancher/k3s/server/token", "keep-me")
        .unwrap();
    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    let s = rt.block_on(pool.session("stale")).unwrap();
    let l = layout();

    let before = rt.block_on(s.observe(&spec())).unwrap();
    assert!(before.etcd_data.exists && before.etcd_data.has_member_dir);
    assert_eq!(
        before.etcd_data.member_name.as_deref(),
        Some("stale-0123abcd")
    );

    // Refused while k3s runs.
    rt.block_on(s.service(&l, "k3s", ServiceAction::Start))
        .unwrap();
    let err = rt.block_on(s.move_etcd_data_aside(&l)).unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("stale") && err.to_string().contains("k3s"),
        "{err}"
    );
    assert!(h.path(etcd).exists());

    rt.block_on(s.service(&l, "k3s", ServiceAction::Stop))
        .unwrap();
    let backup = rt.block_on(s.move_etcd_data_aside(&l)).unwrap();
    assert!(
        backup.starts_with("/var/lib/rancher/k3s/server/db/etcd-backup-"),
        "{backup}"
    );
    assert!(!h.path(etcd).exists());
    assert_eq!(
        std::fs::read_to_string(h.path(&format!("{backup}/member/wal/0.wal"))).unwrap(),
        "wal"
    );
    assert!(h.path("/var/lib/rancher/k3s/server/token").exists());

    let after = rt.block_on(s.observe(&spec())).unwrap();
    assert!(!after.etcd_data.exists);
    assert_eq!(after.etcd_data.backups, vec![backup]);

    // Nothing left to move: a clear error, not a silent success.
    let err = rt.block_on(s.move_etcd_data_aside(&l)).unwrap_err();
    assert!(err.to_string().contains("no etcd data dir"), "{err}");
}

fn service_control_and_uninstall_show_in_observe() {
    let fleet = SshdFleet::start(&["svc"]).unwrap();
    let h = &fleet.hosts[0];
    install_standins(h);
    h.write(
        &format!("{BIN}/k3s-uninstall.sh"),
        "#!/bin/sh\nrm -f /var/lib/rancher/testbin/k3s\necho uninstalled\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        h.path(&format!("{BIN}/k3s-uninstall.sh")),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let rt = rt();
    let pool = pool(&fleet.hosts, &fleet.client);
    let s = rt.block_on(pool.session("svc")).unwrap();
    let l = layout();
    use k3splan_host::ServiceState::*;
    let state = |s: &k3splan_host::HostSession| rt.block_on(s.observe(&spec())).unwrap();
    assert_eq!(state(&s).server_service, Inactive);
    rt.block_on(s.service(&l, "k3s", ServiceAction::Start))
        .unwrap();
    assert_eq!(state(&s).server_service, Active);
    rt.block_on(s.service(&l, "k3s", ServiceAction::Restart))
        .unwrap();
    assert_eq!(state(&s).server_service, Active);
    rt.block_on(s.service(&l, "k3s", ServiceAction::Stop))
        .unwrap();
    assert_eq!(state(&s).server_service, Inactive);

    // A service manager that fails: the error names the host and the action.
    let broken = K3sLayout {
        services: ServiceManager::single_program("/nonexistent/svc"),
        ..l.clone()
    };
    let err = rt
        .block_on(s.service(&broken, "k3s", ServiceAction::Start))
        .unwrap_err();
    assert!(
        err.to_string().contains("svc") && err.to_string().contains("start k3s"),
        "{err}"
    );

    assert!(state(&s).k3s_binary.present);
    let out = rt.block_on(s.uninstall_k3s(&l, K3sRole::Server)).unwrap();
    assert!(out.contains("uninstalled"));
    assert!(!state(&s).k3s_binary.present);
}
