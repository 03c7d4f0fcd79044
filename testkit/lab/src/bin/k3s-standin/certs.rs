//! `k3s certificate rotate [--data-dir D]`, as k3s does it (k3s `pkg/cli/cert/cert.go`,
//! `rotate`): the `server/tls` dir is copied to `server/tls-<unix>`, the leaf certificates
//! (every `server/tls/*.crt` and its `.key` except the CAs, `*-ca.*`) are deleted, and the
//! next start issues new ones. The stand-in issues them at its next start
//! ([`regenerate_rotated`]) with the openssl CLI: self-signed, 365 days (k3s's leaf
//! validity), the CN of the file's stem. The lab's etcd PKI (`server/tls/etcd/`) is not
//! rotated: it is the lab's, shared by every host.

use super::*;

const PENDING: &str = "rotate-pending";

pub(super) fn certificate(args: &[String]) -> i32 {
    let mut data_dir = "/var/lib/rancher/k3s".to_string();
    let mut it = args.iter();
    let mut sub = None;
    while let Some(a) = it.next() {
        match a.split_once('=') {
            Some(("--data-dir" | "-d", v)) => data_dir = v.to_string(),
            _ if a == "--data-dir" || a == "-d" => {
                data_dir = it.next().cloned().unwrap_or_default()
            }
            _ if a == "rotate" && sub.is_none() => sub = Some("rotate"),
            _ => {
                eprintln!("unsupported certificate argument {a} (the lab supports `rotate`)");
                return 1;
            }
        }
    }
    if sub != Some("rotate") {
        eprintln!("usage: k3s certificate rotate [--data-dir D]");
        return 1;
    }
    let tls = format!("{data_dir}/server/tls");
    if !Path::new(&tls).is_dir() {
        log("fatal", &format!("certificate rotate: no {tls}"));
        return 1;
    }
    let backup = format!("{data_dir}/server/tls-{}", unix_now());
    let copied = Command::new("cp").args(["-a", &tls, &backup]).status();
    if !copied.is_ok_and(|s| s.success()) {
        log(
            "fatal",
            &format!("certificate rotate: backing up {tls} to {backup} failed"),
        );
        return 1;
    }
    let mut rotated = Vec::new();
    if let Ok(rd) = fs::read_dir(&tls) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".crt") else {
                continue;
            };
            if stem.ends_with("-ca") || !e.path().is_file() {
                continue;
            }
            let _ = fs::remove_file(e.path());
            let _ = fs::remove_file(format!("{tls}/{stem}.key"));
            rotated.push(stem.to_string());
        }
    }
    if let Err(e) = fs::write(format!("{tls}/{PENDING}"), rotated.join("\n")) {
        log("fatal", &format!("certificate rotate: {e}"));
        return 1;
    }
    log(
        "info",
        &format!(
            "Successfully backed up certificates to {backup}, please restart k3s server or agent to rotate certificates"
        ),
    );
    0
}

/// At server start: issues the leaf certificates a rotation deleted.
pub(super) fn regenerate_rotated(data_dir: &str) {
    let tls = format!("{data_dir}/server/tls");
    let pending = format!("{tls}/{PENDING}");
    let Ok(list) = fs::read_to_string(&pending) else {
        return;
    };
    for stem in list.lines().filter(|l| !l.is_empty()) {
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "365", "-subj", &format!("/CN={stem}")])
            .arg("-keyout")
            .arg(format!("{tls}/{stem}.key"))
            .arg("-out")
            .arg(format!("{tls}/{stem}.crt"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            fatal(&format!("issuing {tls}/{stem}.crt failed"));
        }
    }
    let _ = fs::remove_file(pending);
}
