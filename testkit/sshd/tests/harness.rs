//! The harness itself, checked with the OpenSSH client.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use k3splan_testkit_caps::{ssh_client, sshd};
use k3splan_testkit_sshd::{BlackHole, SshdFleet, SshdHost};

k3splan_testkit_caps::main! {
    hosts_have_their_own_files_hostname_and_strict_host_keys needs [sshd, ssh_client],
    black_hole_accepts_tcp_but_never_speaks,
}

fn ssh(h: &SshdHost, fleet: &SshdFleet, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.client.known_hosts().display()
        ))
        .arg("-i")
        .arg(fleet.client.private_key())
        .arg("-p")
        .arg(h.addr().port().to_string())
        .arg(format!("root@{}", h.addr().ip()))
        .arg(cmd)
        .output()
        .expect("run ssh")
}

fn hosts_have_their_own_files_hostname_and_strict_host_keys() {
    let fleet = SshdFleet::start(&["h-one", "h-two"]).unwrap();
    for (i, h) in fleet.hosts.iter().enumerate() {
        h.write("/etc/rancher/k3s/config.yaml", format!("node-name: n{i}\n"))
            .unwrap();
        h.write("/var/lib/rancher/k3s/marker", h.hostname())
            .unwrap();
    }
    assert_ne!(fleet.hosts[0].addr(), fleet.hosts[1].addr());
    for (i, h) in fleet.hosts.iter().enumerate() {
        let out = ssh(
            h,
            &fleet,
            "hostname; cat /etc/rancher/k3s/config.yaml /var/lib/rancher/k3s/marker",
        );
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            h.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{0}\nnode-name: n{i}\n{0}", h.hostname())
        );
    }
    // The real host's /etc/rancher is untouched by the hosts' files.
    assert!(
        !std::path::Path::new("/etc/rancher/k3s/config.yaml").exists()
            || std::fs::read_to_string("/etc/rancher/k3s/config.yaml").unwrap()
                != "node-name: n0\n"
    );

    // A rotated host key makes strict OpenSSH refuse, too.
    fleet.hosts[1].rotate_host_key().unwrap();
    let out = ssh(&fleet.hosts[1], &fleet, "true");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"));

    // stop/start and Drop: the port stops accepting.
    let h0 = &fleet.hosts[0];
    let addr = h0.addr();
    h0.stop();
    assert!(!h0.is_running());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    h0.start().unwrap();
    assert!(ssh(h0, &fleet, "true").status.success());
    drop(fleet);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

fn black_hole_accepts_tcp_but_never_speaks() {
    let hole = BlackHole::start().unwrap();
    let mut s = TcpStream::connect_timeout(&hole.addr(), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 8];
    let r = std::io::Read::read(&mut s, &mut buf);
    assert!(r.is_err(), "a black hole must not send anything: {r:?}");
}
